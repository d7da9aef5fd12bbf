"""asyncssh's SFTPServer methods as one-line adapters over the VirtualFS.

Errors need no mapping here: VirtualFS errors are OSErrors, which asyncssh turns into SFTP status
codes (ENOENT -> NO_SUCH_FILE, EACCES -> PERMISSION_DENIED, EDQUOT -> QUOTA_EXCEEDED, ...).
"""

from __future__ import annotations

import stat as statmod
from typing import Any

import asyncssh

from xferd.errors import InvalidArgument
from xferd.metadata.models import Inode
from xferd.vfs.filesystem import OpenMode, SetAttrs, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download, Upload

TYPE_BITS = {"file": statmod.S_IFREG, "dir": statmod.S_IFDIR, "symlink": statmod.S_IFLNK}
UINT32_MAX = 0xFFFFFFFF

Handle = Upload | Download


def time32(value: float) -> int:
    return min(max(int(value), 0), UINT32_MAX)


def to_attrs(inode: Inode) -> asyncssh.SFTPAttrs:
    owner = inode.owner_id or 0
    return asyncssh.SFTPAttrs(size=inode.size, uid=owner, gid=owner,
                              permissions=TYPE_BITS[inode.kind] | inode.mode,
                              atime=time32(inode.atime), mtime=time32(inode.mtime))


def to_setattrs(attrs: asyncssh.SFTPAttrs) -> SetAttrs:
    return SetAttrs(size=attrs.size, mode=None if attrs.permissions is None else attrs.permissions & 0o7777,
                    mtime=attrs.mtime, atime=attrs.atime, uid=attrs.uid, gid=attrs.gid)


def open_mode(pflags: int) -> OpenMode:
    return OpenMode(read=bool(pflags & asyncssh.FXF_READ), write=bool(pflags & asyncssh.FXF_WRITE),
                    create=bool(pflags & asyncssh.FXF_CREAT), truncate=bool(pflags & asyncssh.FXF_TRUNC),
                    exclusive=bool(pflags & asyncssh.FXF_EXCL), append=bool(pflags & asyncssh.FXF_APPEND))


def handle_of(file_obj: object) -> Handle:
    """asyncssh hands back whatever ``open`` returned, typed as object."""
    if isinstance(file_obj, Upload | Download):
        return file_obj
    raise asyncssh.SFTPInvalidHandle("Invalid file handle")


class VfsSFTPServer(asyncssh.SFTPServer):
    """One per SFTP session."""

    def __init__(self, chan: Any, vfs: VirtualFS, session: Session) -> None:
        super().__init__(chan)
        self.vfs = vfs
        self.session = session

    async def realpath(self, path: bytes) -> bytes:
        return (await self.vfs.realpath(self.session, path)).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self._stat(path, follow=True)

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self._stat(path, follow=False)

    async def _stat(self, path: bytes, follow: bool) -> asyncssh.SFTPAttrs:
        """A file this session is creating exists for this session (sshfs stats it right after OPEN)."""
        try:
            return to_attrs(await self.vfs.stat(self.session, path, follow=follow))
        except FileNotFoundError:
            upload = self.vfs.creating(self.session, await self.vfs.realpath(self.session, path))
            if upload is None:
                raise
            return to_attrs(upload.attrs())

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        return to_attrs(handle_of(file_obj).attrs())

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self.vfs.setstat(self.session, path, to_setattrs(attrs))

    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self.vfs.setstat(self.session, path, to_setattrs(attrs), follow=False)

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        file_obj = handle_of(file_obj)
        if isinstance(file_obj, Upload):
            if attrs.size is not None:
                await file_obj.truncate(attrs.size)
            file_obj.set_times(attrs.mtime, attrs.atime)
            if attrs.permissions is not None:
                file_obj.set_mode(attrs.permissions)
            return
        await self.vfs.setstat(self.session, file_obj.path, to_setattrs(attrs))

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Handle:
        mode = open_mode(pflags)
        # CREAT, TRUNC or EXCL without WRITE still create or empty the file, as open(2) does.
        if mode.write or mode.append or mode.create or mode.truncate:
            perm_bits = None if attrs.permissions is None else attrs.permissions & 0o7777
            return await self.vfs.open_write(self.session, path, mode, perm_bits)
        return await self.vfs.open_read(self.session, path)

    async def close(self, file_obj: object) -> None:
        await handle_of(file_obj).close()

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        return await handle_of(file_obj).read(offset, size)

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        file_obj = handle_of(file_obj)
        if not isinstance(file_obj, Upload):
            raise InvalidArgument("File was not opened for writing", path=file_obj.path)
        return await file_obj.write(offset, data)

    async def fsync(self, file_obj: object) -> None:
        file_obj = handle_of(file_obj)
        if isinstance(file_obj, Upload):
            await file_obj.flush()

    async def remove(self, path: bytes) -> None:
        await self.vfs.remove(self.session, path)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self.vfs.rename(self.session, oldpath, newpath, overwrite=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self.vfs.rename(self.session, oldpath, newpath, overwrite=True)

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        mode = 0o755 if attrs.permissions is None else attrs.permissions & 0o7777
        await self.vfs.mkdir(self.session, path, mode)

    async def rmdir(self, path: bytes) -> None:
        await self.vfs.rmdir(self.session, path)

    async def readlink(self, path: bytes) -> bytes:
        return (await self.vfs.readlink(self.session, path)).encode()

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        await self.vfs.symlink(self.session, newpath, oldpath)

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        await self.vfs.link(self.session, oldpath, newpath)

    async def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        await self.vfs.stat(self.session, path)
        return await self._vfs_attrs()

    async def fstatvfs(self, file_obj: object) -> asyncssh.SFTPVFSAttrs:
        return await self._vfs_attrs()

    async def _vfs_attrs(self) -> asyncssh.SFTPVFSAttrs:
        space = await self.vfs.space(self.session)
        bsize = space.block_size
        return asyncssh.SFTPVFSAttrs(bsize=bsize, frsize=bsize, blocks=space.total // bsize,
                                     bfree=space.free // bsize, bavail=space.free // bsize,
                                     files=space.files_total, ffree=space.files_free, favail=space.files_free,
                                     fsid=self.session.tenant.id, flag=0, namemax=255)

    def exit(self) -> None:
        pass
