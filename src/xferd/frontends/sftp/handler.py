"""The SFTP protocol handler: asyncssh's, with the extensions and fixes xferd needs.

On top of asyncssh's server handler this adds:

- ``check-file-handle`` / ``check-file-name``: whole-file SHA-256 and MD5 answered from the sums
  stored at upload; other algorithms and ranges computed once by reading;
- ``space-available``, ``copy-file`` (a copy that shares the blob), ``expand-path@openssh.com``,
  ``home-directory`` and ``users-groups-by-id@openssh.com``;
- WRITE packets with bytes after the data are accepted (rclone 1.60 sends them);
- OPENDIR lists the directory in one VirtualFS call and READDIR sends pre-encoded names in large
  batches (the stock handler formats each name on every call);
- a session that ends with files still open aborts their uploads: a dropped connection never
  commits a partial file;
- the limits reply carries the configured packet size.
"""

from __future__ import annotations

import stat as statmod
import struct
import time
from collections.abc import Sequence
from typing import Any, cast

import asyncssh
from asyncssh.packet import PacketDecodeError, String, UInt32, UInt64
from asyncssh.sftp import (
    FXP_CLOSE,
    FXP_EXTENDED,
    FXP_EXTENDED_REPLY,
    FXP_NAME,
    FXP_OPENDIR,
    FXP_READDIR,
    FXP_WRITE,
    SFTPHandler,
    SFTPServerHandler,
)

from xferd import __version__
from xferd.errors import InvalidArgument, NotFound
from xferd.frontends.sftp.adapter import TYPE_BITS, VfsSFTPServer, time32
from xferd.metadata.models import Inode
from xferd.vfs.transfers import Download, Upload

READDIR_MAX_NAMES = 1000
READDIR_MAX_BYTES = 128 * 1024
ATTR_FLAGS = (asyncssh.FILEXFER_ATTR_SIZE | asyncssh.FILEXFER_ATTR_UIDGID | asyncssh.FILEXFER_ATTR_PERMISSIONS |
              asyncssh.FILEXFER_ATTR_ACMODTIME)
_ATTRS = struct.Struct(">IQIIIII")
STORED_HASHES = ("sha256", "md5")
COMPUTED_HASHES = ("sha1", "sha224", "sha384", "sha512", "crc32")


class _Encoded:
    """Bytes asyncssh sends as they are, where it expects an object with ``encode(version)``."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, version: int) -> bytes:
        return self.data

    def __str__(self) -> str:
        return f"<{len(self.data)} bytes>"


def _longname(name: str, inode: Inode, owner: str) -> str:
    mode = statmod.filemode(TYPE_BITS[inode.kind] | inode.mode)
    mtime = time.localtime(inode.mtime)
    if time.time() - inode.mtime < 182 * 86400:
        when = time.strftime("%b %e %H:%M", mtime)
    else:
        when = time.strftime("%b %e  %Y", mtime)
    return f"{mode} {inode.nlink:4d} {owner:<8} {owner:<8} {inode.size:8d} {when} {name}"


def encode_name(name: str, inode: Inode, owner: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    long = _longname(name, inode, owner).encode("utf-8", "surrogateescape")
    uid = inode.owner_id or 0
    attrs = _ATTRS.pack(ATTR_FLAGS, inode.size, uid, uid, TYPE_BITS[inode.kind] | inode.mode,
                        time32(inode.atime), time32(inode.mtime))
    return struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(long)) + long + attrs


def _audit_bad_requests(fn: Any) -> Any:
    """Wrap a packet handler so that a malformed packet or an unknown handle, which asyncssh answers
    with BAD_MESSAGE or FAILURE, also leaves an audit event."""
    async def run(self: XferdSFTPHandler, packet: Any) -> Any:
        try:
            return await fn(self, packet)
        except PacketDecodeError as exc:
            self.audit_bad_request("EBADMSG", str(exc))
            raise
        except asyncssh.SFTPInvalidHandle as exc:
            self.audit_bad_request("EBADF", str(exc.reason))
            raise
    return run


class XferdSFTPHandler(SFTPServerHandler):
    _vendor_id = String("xferd") + String("xferd") + String(__version__) + UInt64(0)

    _extensions = [
        (b"vendor-id", _vendor_id),
        (b"posix-rename@openssh.com", b"1"),
        (b"statvfs@openssh.com", b"2"),
        (b"fstatvfs@openssh.com", b"2"),
        (b"hardlink@openssh.com", b"1"),
        (b"fsync@openssh.com", b"1"),
        (b"lsetstat@openssh.com", b"1"),
        (b"limits@openssh.com", b"1"),
        (b"expand-path@openssh.com", b"1"),
        (b"copy-data", b"1"),
        (b"copy-file", b""),
        (b"home-directory", b""),
        (b"users-groups-by-id@openssh.com", b"1"),
        (b"check-file", b""),
        (b"space-available", b""),
    ]

    _return_types = {
        **SFTPServerHandler._return_types,
        b"check-file-handle": FXP_EXTENDED_REPLY,
        b"check-file-name": FXP_EXTENDED_REPLY,
        b"space-available": FXP_EXTENDED_REPLY,
        b"users-groups-by-id@openssh.com": FXP_EXTENDED_REPLY,
        b"expand-path@openssh.com": FXP_NAME,
        b"home-directory": FXP_NAME,
    }

    def __init__(self, server: VfsSFTPServer, reader: Any, writer: Any, max_packet: int, on_activity: Any) -> None:
        super().__init__(server, reader, writer, 3)
        self.vfs_server = server
        self.max_packet = max_packet
        self.on_activity = on_activity
        self._listings: dict[bytes, list[bytes]] = {}

    async def _process_packet(self, pkttype: int, pktid: int, packet: Any) -> None:
        self.on_activity()
        if pkttype != FXP_EXTENDED and pkttype not in self._packet_handlers:
            self.audit_bad_request("EOPNOTSUPP", f"unknown request type {pkttype}")
        await super()._process_packet(pkttype, pktid, packet)

    def audit_bad_request(self, outcome: str, error: str) -> None:
        session = self.vfs_server.session
        self.vfs_server.vfs.audit.emit(session.log, session.fields, "sftp.bad_request", "", outcome, True,
                                       error=error)

    async def _cleanup(self, exc: Exception | None) -> None:
        """The session is over: abort uploads still open, close downloads; never commit."""
        for file_obj in list(self._file_handles.values()):
            if isinstance(file_obj, Upload):
                await file_obj.abort("disconnected")
            elif isinstance(file_obj, Download):
                await file_obj.close("disconnected")
        self._file_handles = {}
        self._dir_handles = {}
        self._listings = {}
        if self._writer is not None:
            # An exit status before the channel closes: scp and sftp report "-1" and fail without one.
            channel = self._writer.channel
            if isinstance(channel, asyncssh.SSHServerChannel):
                channel.exit(0 if exc is None else 1)
        await SFTPHandler._cleanup(self, exc)

    # -- tolerant WRITE --------------------------------------------------------------------------

    async def _process_write(self, packet: Any) -> int:
        handle = packet.get_string()
        offset = packet.get_uint64()
        data = packet.get_string()
        # No check_end(): rclone 1.60 sends bytes after the data; they are ignored.
        file_obj = self._file_handles.get(handle)
        if not file_obj:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        return await self.vfs_server.write(file_obj, offset, data)

    # -- directory listings ------------------------------------------------------------------------

    async def _process_opendir(self, packet: Any) -> bytes:
        path = packet.get_string()
        packet.check_end()
        server = self.vfs_server
        listing = await server.vfs.list(server.session, path)
        names = await server.vfs.user_names(server.session, sorted(
            {i.owner_id for _, i in listing.entries if i.owner_id is not None}))
        me = server.session.user
        names.setdefault(me.id, me.name)

        def owner(inode: Inode) -> str:
            return names.get(inode.owner_id or 0, str(inode.owner_id or 0))

        encoded = [encode_name(".", listing.directory, owner(listing.directory)),
                   encode_name("..", listing.directory, owner(listing.directory))]
        encoded += [encode_name(name, inode, owner(inode)) for name, inode in listing.entries]
        handle = self._get_next_handle()
        self._dir_handles[handle] = _EmptyIterator()
        self._listings[handle] = encoded
        return bytes(handle)

    async def _process_readdir(self, packet: Any) -> tuple[Sequence[asyncssh.SFTPName], bool]:
        handle = packet.get_string()
        packet.check_end()
        pending = self._listings.get(handle)
        if pending is None:
            if handle in self._dir_handles:
                raise asyncssh.SFTPEOFError()
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        if not pending:
            raise asyncssh.SFTPEOFError()
        count, size = 0, 0
        while count < len(pending) and count < READDIR_MAX_NAMES and size + len(pending[count]) < READDIR_MAX_BYTES:
            size += len(pending[count])
            count += 1
        count = max(count, 1)
        batch, self._listings[handle] = pending[:count], pending[count:]
        # asyncssh only calls encode() on what it sends, so pre-encoded names stand in for SFTPName.
        return cast(list[asyncssh.SFTPName], [_Encoded(name) for name in batch]), False

    async def _process_close(self, packet: Any) -> None:
        handle = packet.get_string()
        packet.check_end()
        self._listings.pop(handle, None)
        file_obj = self._file_handles.pop(handle, None)
        if file_obj is not None:
            await self.vfs_server.close(file_obj)
            return
        if self._dir_handles.pop(handle, None) is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")

    # -- extensions --------------------------------------------------------------------------------

    async def _process_limits(self, packet: Any) -> asyncssh.SFTPLimits:
        packet.check_end()
        data_len = self.max_packet - 1024
        return asyncssh.SFTPLimits(self.max_packet, data_len, data_len, 1024)

    async def _process_expand_path(self, packet: Any) -> tuple[list[asyncssh.SFTPName], bool]:
        path = packet.get_string()
        packet.check_end()
        if path == b"~" or path.startswith(b"~/"):
            path = b"/" + path[2:]
        elif path.startswith(b"~"):
            raise NotFound("No such user home", path=path.decode("utf-8", "replace"))
        real = await self.vfs_server.realpath(path)
        return [asyncssh.SFTPName(real)], False

    async def _process_home_directory(self, packet: Any) -> tuple[list[asyncssh.SFTPName], bool]:
        packet.get_string()  # the user name; a session only knows its own home, which is "/"
        packet.check_end()
        return [asyncssh.SFTPName(b"/")], False

    async def _process_users_groups_by_id(self, packet: Any) -> _Encoded:
        uid_data = packet.get_string()
        gid_data = packet.get_string()
        packet.check_end()
        uids = [int.from_bytes(uid_data[i:i + 4], "big") for i in range(0, len(uid_data) - 3, 4)]
        gids = [int.from_bytes(gid_data[i:i + 4], "big") for i in range(0, len(gid_data) - 3, 4)]
        server = self.vfs_server
        names = await server.vfs.user_names(server.session, sorted(set(uids + gids)))
        users = b"".join(String(names.get(u, "")) for u in uids)
        groups = b"".join(String(names.get(g, "")) for g in gids)
        return _Encoded(String(users) + String(groups))

    async def _process_space_available(self, packet: Any) -> _Encoded:
        path = packet.get_string()
        packet.check_end()
        server = self.vfs_server
        await server.vfs.stat(server.session, path)
        space = await server.vfs.space(server.session)
        return _Encoded(UInt64(space.total) + UInt64(space.free) + UInt64(space.total) + UInt64(space.free) +
                        UInt32(space.block_size))

    async def _process_copy_file(self, packet: Any) -> None:
        src = packet.get_string()
        dst = packet.get_string()
        overwrite = packet.get_boolean()
        packet.check_end()
        server = self.vfs_server
        await server.vfs.copy(server.session, src, dst, overwrite=overwrite)

    async def _check_file(self, path: str, algorithms: bytes, offset: int, length: int, block: int) -> _Encoded:
        wanted = [a.strip().lower() for a in algorithms.decode("ascii", "replace").split(",")]
        choice = next((a for a in wanted if a in STORED_HASHES), None) or next(
            (a for a in wanted if a in COMPUTED_HASHES), None)
        if choice is None:
            raise asyncssh.SFTPOpUnsupported("None of the requested hash algorithms is supported")
        if block not in (0,) and block < 256:
            raise InvalidArgument("block size must be 0 or at least 256")
        server = self.vfs_server
        inode = await server.vfs.stat(server.session, path)
        end = inode.size if length == 0 else min(inode.size, offset + length)
        digests: list[bytes] = []
        if block == 0 or block >= end - offset:
            digests.append(bytes.fromhex(await server.vfs.checksum(server.session, path, choice, offset,
                                                                   end - offset)))
        else:
            for start in range(offset, end, block):
                digests.append(bytes.fromhex(await server.vfs.checksum(server.session, path, choice, start,
                                                                       min(block, end - start))))
        return _Encoded(String("check-file") + String(choice) + b"".join(digests))

    async def _process_check_file_name(self, packet: Any) -> _Encoded:
        path = packet.get_string()
        algorithms = packet.get_string()
        offset, length, block = packet.get_uint64(), packet.get_uint64(), packet.get_uint32()
        packet.check_end()
        return await self._check_file(path, algorithms, offset, length, block)

    async def _process_check_file_handle(self, packet: Any) -> _Encoded:
        handle = packet.get_string()
        algorithms = packet.get_string()
        offset, length, block = packet.get_uint64(), packet.get_uint64(), packet.get_uint32()
        packet.check_end()
        file_obj = self._file_handles.get(handle)
        if not isinstance(file_obj, Download):
            raise asyncssh.SFTPInvalidHandle("Invalid file handle (check-file needs a file open for reading)")
        return await self._check_file(file_obj.path, algorithms, offset, length, block)

    # Typed loosely: asyncssh types the table for its own handler class.
    _packet_handlers: dict[int | bytes, Any] = {key: _audit_bad_requests(fn) for key, fn in {
        **SFTPServerHandler._packet_handlers,
        FXP_WRITE: _process_write,
        FXP_OPENDIR: _process_opendir,
        FXP_READDIR: _process_readdir,
        FXP_CLOSE: _process_close,
        b"limits@openssh.com": _process_limits,
        b"expand-path@openssh.com": _process_expand_path,
        b"home-directory": _process_home_directory,
        b"users-groups-by-id@openssh.com": _process_users_groups_by_id,
        b"space-available": _process_space_available,
        b"copy-file": _process_copy_file,
        b"check-file-name": _process_check_file_name,
        b"check-file-handle": _process_check_file_handle,
    }.items()}


class _EmptyIterator:
    """Stands in asyncssh's directory-handle table; the names live in ``_listings``."""

    def __aiter__(self) -> _EmptyIterator:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration

