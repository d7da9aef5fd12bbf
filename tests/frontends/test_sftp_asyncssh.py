"""asyncssh's SFTP client against a real daemon: the extensions xferd advertises, one by one.

asyncssh has no client API for several of them (check-file, space-available, copy-file,
expand-path, home-directory, users-groups-by-id); :func:`extended` sends those as raw
SSH_FXP_EXTENDED requests on the client's own handler and returns the reply packet.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.packet import Boolean, Byte, SSHPacket, String, UInt32, UInt64
from asyncssh.sftp import FXP_EXTENDED_REPLY, FXP_INIT, FXP_NAME, FXP_STATUS, FXP_VERSION

from tests.support import PASSWORD, Daemon, new_user
from xferd import __version__

MIB = 1024 * 1024


def connect(daemon: Daemon, key: Path, user: str = "alice") -> Any:
    """An SSH connection as ``user``, for ``async with``."""
    return asyncssh.connect("127.0.0.1", daemon.port, username=user, known_hosts=None,
                            client_keys=[str(key)], connect_timeout=30)


@pytest.fixture
async def sftp(server: Daemon, user: str, client_key: Path) -> AsyncIterator[asyncssh.SFTPClient]:
    """An SFTP session of this test's user."""
    async with connect(server, client_key, user) as conn, conn.start_sftp_client() as client:
        yield client


async def put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


async def get(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    async with sftp.open(path, "rb") as f:
        data = await f.read()
    assert isinstance(data, bytes)
    return data


async def extended(sftp: asyncssh.SFTPClient, name: bytes, *args: bytes) -> tuple[int, SSHPacket]:
    """Send an SSH_FXP_EXTENDED request; an error status raises its SFTPError, else (type, reply)."""
    handler = sftp._handler
    waiter: asyncio.Future[tuple[int, SSHPacket]] = asyncio.get_running_loop().create_future()
    handler._send_request(name, args, waiter)
    kind, packet = await asyncio.wait_for(waiter, 60)
    if kind == FXP_STATUS:
        handler._process_status(packet)
    return kind, packet


async def names_reply(sftp: asyncssh.SFTPClient, name: bytes, *args: bytes) -> list[str]:
    kind, packet = await extended(sftp, name, *args)
    assert FXP_NAME == kind
    names, _ = sftp._handler._process_name(packet)
    return [n.filename.decode() if isinstance(n.filename, bytes) else n.filename for n in names]


async def check_file(sftp: asyncssh.SFTPClient, path: str, algorithms: str, offset: int = 0, length: int = 0,
                     block: int = 0) -> tuple[str, bytes]:
    """check-file-name: the algorithm the server chose and the digests it sent."""
    kind, packet = await extended(sftp, b"check-file-name", String(path), String(algorithms), UInt64(offset),
                                  UInt64(length), UInt32(block))
    assert FXP_EXTENDED_REPLY == kind
    assert b"check-file" == packet.get_string()
    algorithm = packet.get_string().decode()
    return algorithm, packet.get_remaining_payload()


async def server_version(daemon: Daemon, key: Path, user: str) -> tuple[int, dict[bytes, bytes]]:
    """The SSH_FXP_VERSION packet the server answers a version 3 INIT with: version and extensions."""
    async with connect(daemon, key, user) as conn:
        writer, reader, _ = await conn.open_session(subsystem="sftp", encoding=None)
        writer.write(UInt32(5) + Byte(FXP_INIT) + UInt32(3))
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 30), "big")
        packet = SSHPacket(await asyncio.wait_for(reader.readexactly(length), 30))
        assert FXP_VERSION == packet.get_byte()
        version = packet.get_uint32()
        extensions = {}
        while packet:
            name = packet.get_string()
            extensions[name] = packet.get_string()
        writer.close()
        return version, extensions


def blob_files(daemon: Daemon) -> set[Path]:
    return {p for p in daemon.blob_dir.rglob("*") if p.is_file()}


class TestVersion:
    async def test_advertised_extensions(self, server: Daemon, user: str, client_key: Path) -> None:
        """The server answers version 3 and names every extension it implements, with its version."""
        version, extensions = await server_version(server, client_key, user)
        assert 3 == version
        assert {
            b"posix-rename@openssh.com": b"1",
            b"statvfs@openssh.com": b"2",
            b"fstatvfs@openssh.com": b"2",
            b"hardlink@openssh.com": b"1",
            b"fsync@openssh.com": b"1",
            b"lsetstat@openssh.com": b"1",
            b"limits@openssh.com": b"1",
            b"expand-path@openssh.com": b"1",
            b"copy-data": b"1",
            b"copy-file": b"",
            b"home-directory": b"",
            b"users-groups-by-id@openssh.com": b"1",
            b"check-file": b"",
            b"space-available": b"",
        } == {name: data for name, data in extensions.items() if name != b"vendor-id"}

    async def test_vendor_id(self, server: Daemon, user: str, client_key: Path) -> None:
        """vendor-id names xferd as vendor and product, with the installed version."""
        _, extensions = await server_version(server, client_key, user)
        vendor = SSHPacket(extensions[b"vendor-id"])
        assert (b"xferd", b"xferd", __version__.encode(), 0) == (
            vendor.get_string(), vendor.get_string(), vendor.get_string(), vendor.get_uint64())

    async def test_client_sees_the_openssh_extensions(self, sftp: asyncssh.SFTPClient) -> None:
        """asyncssh enables remote copy, hard links, fsync and lsetstat from the advertisement."""
        handler = sftp._handler
        assert (True, True, True, True, True) == (sftp.supports_remote_copy, handler._supports_hardlink,
                                                  handler._supports_fsync, handler._supports_lsetstat,
                                                  handler._supports_posix_rename)


class TestLimits:
    async def test_limits_follow_the_default_packet_size(self, sftp: asyncssh.SFTPClient) -> None:
        """limits@openssh.com reports the packet size, 1 KiB less for reads and writes, and 1024 handles."""
        kind, packet = await extended(sftp, b"limits@openssh.com")
        assert FXP_EXTENDED_REPLY == kind
        limits = asyncssh.SFTPLimits.decode(packet)
        assert (263168, 262144, 262144, 1024) == (limits.max_packet_len, limits.max_read_len,
                                                  limits.max_write_len, limits.max_open_handles)
        assert (262144, 262144) == (sftp.limits.max_read_len, sftp.limits.max_write_len)

    async def test_limits_follow_the_configured_packet_size(self, tmp_path: Path, client_key: Path) -> None:
        """A configured sftp.max_packet_size is what limits@openssh.com reports."""
        daemon = Daemon(tmp_path, sftp={"max_packet_size": 65536 + 1024}).start()
        try:
            daemon.add_user("alice", PASSWORD, client_key.with_suffix(".pub"))
            async with connect(daemon, client_key) as conn, conn.start_sftp_client() as client:
                _, packet = await extended(client, b"limits@openssh.com")
                limits = asyncssh.SFTPLimits.decode(packet)
                data = os.urandom(300_000)
                await put(client, "f", data)
                assert data == await get(client, "f")
        finally:
            daemon.stop()
        assert (65536 + 1024, 65536, 65536) == (limits.max_packet_len, limits.max_read_len, limits.max_write_len)


class TestCopyData:
    async def test_remote_only_copy(self, sftp: asyncssh.SFTPClient) -> None:
        """copy(remote_only=True) copies a file server side, byte for byte."""
        data = os.urandom(3 * MIB + 17)
        await put(sftp, "src.bin", data)
        await sftp.copy("src.bin", "dst.bin", remote_only=True)
        assert data == await get(sftp, "dst.bin")

    async def test_ranges_and_offsets(self, sftp: asyncssh.SFTPClient) -> None:
        """copy-data copies the requested range to the requested offset and keeps the rest of the target."""
        await put(sftp, "src", b"0123456789")
        await put(sftp, "dst", b"abcdefghij")
        async with sftp.open("src", "rb") as src, sftp.open("dst", "r+b") as dst:
            await sftp.remote_copy(src, dst, src_offset=2, src_length=3, dst_offset=5)
        assert b"abcde234ij" == await get(sftp, "dst")

    async def test_copy_of_an_empty_file(self, sftp: asyncssh.SFTPClient) -> None:
        """An empty file copies to an empty file."""
        await put(sftp, "empty", b"")
        await sftp.copy("empty", "copy", remote_only=True)
        assert b"" == await get(sftp, "copy")


class TestCheckFile:
    async def test_sha256_of_the_whole_file(self, sftp: asyncssh.SFTPClient) -> None:
        """'sha256,md5' is answered with the SHA-256 of the uploaded bytes."""
        data = os.urandom(2 * MIB + 5)
        await put(sftp, "f", data)
        assert ("sha256", hashlib.sha256(data).digest()) == await check_file(sftp, "f", "sha256,md5")

    async def test_md5_of_the_whole_file(self, sftp: asyncssh.SFTPClient) -> None:
        """'md5' alone is answered with the MD5 of the uploaded bytes."""
        data = os.urandom(100_000)
        await put(sftp, "f", data)
        assert ("md5", hashlib.md5(data).digest()) == await check_file(sftp, "f", "md5")

    async def test_first_supported_algorithm_wins(self, sftp: asyncssh.SFTPClient) -> None:
        """Unknown names in the list are skipped; the first stored one is used."""
        await put(sftp, "f", b"abc")
        assert ("md5", hashlib.md5(b"abc").digest()) == await check_file(
            sftp, "f", "whirlpool,md5,sha256")

    async def test_sha1_is_computed(self, sftp: asyncssh.SFTPClient) -> None:
        """An algorithm not stored at upload (sha1) is computed from the content."""
        data = os.urandom(1_500_000)
        await put(sftp, "f", data)
        assert ("sha1", hashlib.sha1(data).digest()) == await check_file(sftp, "f", "sha1")

    async def test_sha512_is_computed(self, sftp: asyncssh.SFTPClient) -> None:
        """sha512 is computed too."""
        data = os.urandom(10_000)
        await put(sftp, "f", data)
        assert ("sha512", hashlib.sha512(data).digest()) == await check_file(sftp, "f", "sha512")

    async def test_a_range(self, sftp: asyncssh.SFTPClient) -> None:
        """An offset and a length hash just that range."""
        data = os.urandom(300_000)
        await put(sftp, "f", data)
        assert ("sha256", hashlib.sha256(data[1000:51000]).digest()) == await check_file(
            sftp, "f", "sha256", offset=1000, length=50_000)

    async def test_a_range_to_the_end(self, sftp: asyncssh.SFTPClient) -> None:
        """An offset with length 0 hashes from the offset to the end of the file."""
        data = os.urandom(300_000)
        await put(sftp, "f", data)
        assert ("md5", hashlib.md5(data[7:]).digest()) == await check_file(
            sftp, "f", "md5", offset=7)

    async def test_blocks(self, sftp: asyncssh.SFTPClient) -> None:
        """A block size gives one digest per block, the last one short."""
        data = os.urandom(2500)
        await put(sftp, "f", data)
        expected = b"".join(hashlib.sha256(data[i:i + 1024]).digest() for i in (0, 1024, 2048))
        assert ("sha256", expected) == await check_file(sftp, "f", "sha256", block=1024)

    async def test_empty_file(self, sftp: asyncssh.SFTPClient) -> None:
        """An empty file has the digest of no bytes."""
        await put(sftp, "empty", b"")
        assert ("sha256", hashlib.sha256(b"").digest()) == await check_file(sftp, "empty", "sha256")

    async def test_stored_sums_after_random_access_writes(self, sftp: asyncssh.SFTPClient) -> None:
        """The sums stored at commit match the content after out-of-order and overlapping writes."""
        data = bytearray(os.urandom(600_000))
        async with sftp.open("f", "wb") as f:
            await f.write(bytes(data[300_000:]), 300_000)
            await f.write(bytes(data[:200_000]), 0)
            await f.write(bytes(data[100_000:300_000]), 100_000)
        await self._assert_sums(sftp, "f", bytes(data))

    async def test_stored_sums_after_a_partial_rewrite(self, sftp: asyncssh.SFTPClient) -> None:
        """The sums match after an 'r+' rewrite of a middle region (the rest comes from the old content)."""
        data = bytearray(os.urandom(500_000))
        await put(sftp, "f", bytes(data))
        async with sftp.open("f", "r+b") as f:
            await f.write(b"x" * 1000, 250_000)
        data[250_000:251_000] = b"x" * 1000
        await self._assert_sums(sftp, "f", bytes(data))

    async def test_stored_sums_after_an_append(self, sftp: asyncssh.SFTPClient) -> None:
        """The sums match after an append to an existing file."""
        await put(sftp, "f", b"head")
        async with sftp.open("f", "ab") as f:
            await f.write(b"tail")
        await self._assert_sums(sftp, "f", b"headtail")

    async def test_stored_sums_after_truncate(self, sftp: asyncssh.SFTPClient) -> None:
        """The sums match after truncating a file down and extending it again."""
        await put(sftp, "f", b"0123456789")
        await sftp.truncate("f", 4)
        await sftp.truncate("f", 6)
        await self._assert_sums(sftp, "f", b"0123\0\0")

    @staticmethod
    async def _assert_sums(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
        assert data == await get(sftp, path)
        assert ("sha256", hashlib.sha256(data).digest()) == await check_file(sftp, path, "sha256")
        assert ("md5", hashlib.md5(data).digest()) == await check_file(sftp, path, "md5")

    async def test_unsupported_algorithm(self, sftp: asyncssh.SFTPClient) -> None:
        """A list of only unknown algorithms is refused as unsupported."""
        await put(sftp, "f", b"x")
        with pytest.raises(asyncssh.SFTPOpUnsupported):
            await check_file(sftp, "f", "whirlpool")

    async def test_missing_file(self, sftp: asyncssh.SFTPClient) -> None:
        """check-file-name of a missing file fails with no-such-file."""
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await check_file(sftp, "missing", "sha256")

    async def test_by_handle(self, sftp: asyncssh.SFTPClient) -> None:
        """check-file-handle on a file open for reading hashes that file."""
        data = os.urandom(70_000)
        await put(sftp, "f", data)
        async with sftp.open("f", "rb") as f:
            kind, packet = await extended(sftp, b"check-file-handle", String(f.handle), String("sha1"),
                                          UInt64(0), UInt64(0), UInt32(0))
        assert (FXP_EXTENDED_REPLY, b"check-file", b"sha1") == (kind, packet.get_string(), packet.get_string())
        assert hashlib.sha1(data).digest() == packet.get_remaining_payload()


class TestSpaceAvailable:
    async def test_reports_the_quota(self, server: Daemon, client_key: Path) -> None:
        """space-available reports the quota as the device size and what is left as unused."""
        quota, used = 1_000_000 * 4096, 123_456
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-bytes", str(quota))
        async with connect(server, client_key, name) as conn, conn.start_sftp_client() as sftp:
            await put(sftp, "f", os.urandom(used))
            kind, packet = await extended(sftp, b"space-available", String("/"))
        assert FXP_EXTENDED_REPLY == kind
        assert (quota, quota - used, quota, quota - used, 4096) == (
            packet.get_uint64(), packet.get_uint64(), packet.get_uint64(), packet.get_uint64(),
            packet.get_uint32())

    async def test_missing_path(self, sftp: asyncssh.SFTPClient) -> None:
        """space-available of a missing path fails with no-such-file."""
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await extended(sftp, b"space-available", String("/nowhere"))


class TestStatvfs:
    async def test_reports_the_quota(self, server: Daemon, client_key: Path) -> None:
        """statvfs@openssh.com gives the quota in blocks, the free blocks, and the files quota."""
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-bytes",
                        str(4096 * 256), "--quota-files", "10")
        async with connect(server, client_key, name) as conn, conn.start_sftp_client() as sftp:
            await put(sftp, "f", bytes(4096 * 6))
            vfs = await sftp.statvfs("/")
        assert (4096, 256, 250, 250, 10, 9) == (vfs.frsize, vfs.blocks, vfs.bfree, vfs.bavail, vfs.files,
                                                vfs.ffree)


class TestExpandPath:
    async def test_tilde_is_the_home(self, sftp: asyncssh.SFTPClient) -> None:
        """'~' expands to the home directory, which is the session's root."""
        assert ["/"] == await names_reply(sftp, b"expand-path@openssh.com", String("~"))

    async def test_tilde_slash_path(self, sftp: asyncssh.SFTPClient) -> None:
        """'~/a/b' expands below the home."""
        await sftp.makedirs("a/b")
        assert ["/a/b"] == await names_reply(sftp, b"expand-path@openssh.com", String("~/a/b"))

    async def test_relative_path_is_canonical(self, sftp: asyncssh.SFTPClient) -> None:
        """A relative path with '..' and '.' is made absolute and canonical."""
        await sftp.makedirs("x/y")
        assert ["/x"] == await names_reply(sftp, b"expand-path@openssh.com", String("x/./y/.."))

    async def test_other_users_home_is_refused(self, sftp: asyncssh.SFTPClient) -> None:
        """'~bob' is refused: a session knows only its own home."""
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await extended(sftp, b"expand-path@openssh.com", String("~bob/x"))

    async def test_realpath_of_the_root(self, sftp: asyncssh.SFTPClient) -> None:
        """realpath('.') is '/': the home is the root of the session."""
        assert "/" == await sftp.realpath(".")


class TestHomeDirectory:
    async def test_own_home(self, sftp: asyncssh.SFTPClient, user: str) -> None:
        """home-directory answers '/' for the logged-in user."""
        assert ["/"] == await names_reply(sftp, b"home-directory", String(user))


    async def test_empty_name_means_the_current_user(self, sftp: asyncssh.SFTPClient) -> None:
        """An empty user name asks for the logged-in user's home."""
        assert ["/"] == await names_reply(sftp, b"home-directory", String(""))


class TestUsersGroupsById:
    async def test_names_of_the_owner(self, sftp: asyncssh.SFTPClient, user: str) -> None:
        """The uid and gid of a user's files map to the user's name; an unknown id maps to an empty name."""
        await put(sftp, "f", b"x")
        attrs = await sftp.stat("f")
        assert attrs.uid is not None and attrs.gid is not None
        kind, packet = await extended(sftp, b"users-groups-by-id@openssh.com",
                                      String(UInt32(attrs.uid) + UInt32(999_999)), String(UInt32(attrs.gid)))
        assert FXP_EXTENDED_REPLY == kind
        users, groups = SSHPacket(packet.get_string()), SSHPacket(packet.get_string())
        assert (user.encode(), b"") == (users.get_string(), users.get_string())
        assert user.encode() == groups.get_string()
        assert (False, False) == (bool(users), bool(groups))

    async def test_empty_request(self, sftp: asyncssh.SFTPClient) -> None:
        """No ids give two empty lists."""
        _, packet = await extended(sftp, b"users-groups-by-id@openssh.com", String(b""), String(b""))
        assert (b"", b"") == (packet.get_string(), packet.get_string())


class TestCopyFile:
    async def test_copy_has_the_same_bytes(self, sftp: asyncssh.SFTPClient) -> None:
        """copy-file makes a second file with the same content."""
        data = os.urandom(MIB)
        await put(sftp, "orig", data)
        await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(False))
        assert data == await get(sftp, "copy")

    async def test_copy_shares_the_blob(self, server: Daemon, sftp: asyncssh.SFTPClient) -> None:
        """copy-file stores no new bytes: the copy points at the original's blob."""
        await put(sftp, "orig", os.urandom(MIB))
        before = blob_files(server)
        await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(False))
        assert before == blob_files(server)

    async def test_changing_the_copy_keeps_the_original(self, sftp: asyncssh.SFTPClient) -> None:
        """Writing into the copy leaves the original's bytes unchanged (it is not a hard link)."""
        data = os.urandom(200_000)
        await put(sftp, "orig", data)
        await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(False))
        async with sftp.open("copy", "r+b") as f:
            await f.seek(100)
            await f.write(b"changed")
        assert data == await get(sftp, "orig")
        assert data[:100] + b"changed" + data[107:] == await get(sftp, "copy")

    async def test_existing_target_without_overwrite(self, sftp: asyncssh.SFTPClient) -> None:
        """Without the overwrite flag an existing target is refused and kept."""
        await put(sftp, "orig", b"orig")
        await put(sftp, "copy", b"other")
        with pytest.raises(asyncssh.SFTPError):
            await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(False))
        assert b"other" == await get(sftp, "copy")

    async def test_existing_target_with_overwrite(self, sftp: asyncssh.SFTPClient) -> None:
        """With the overwrite flag an existing target is replaced."""
        await put(sftp, "orig", b"orig")
        await put(sftp, "copy", b"other")
        await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(True))
        assert b"orig" == await get(sftp, "copy")

    async def test_overwrite_at_the_file_quota(self, server: Daemon, client_key: Path) -> None:
        """Overwriting one file with a copy of another adds no file, so a full file quota allows it."""
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-files", "2")
        async with connect(server, client_key, name) as conn, conn.start_sftp_client() as sftp:
            await put(sftp, "orig", b"orig")
            await put(sftp, "copy", b"other")
            await extended(sftp, b"copy-file", String("orig"), String("copy"), Boolean(True))
            assert (b"orig", 0) == (await get(sftp, "copy"), (await sftp.statvfs("/")).ffree)

    async def test_directory_is_refused(self, sftp: asyncssh.SFTPClient) -> None:
        """copy-file of a directory fails."""
        await sftp.mkdir("d")
        with pytest.raises(asyncssh.SFTPError):
            await extended(sftp, b"copy-file", String("d"), String("d2"), Boolean(False))


class TestLinksAndAttributes:
    async def test_lsetstat_changes_the_link_not_the_target(self, sftp: asyncssh.SFTPClient) -> None:
        """setstat without following links (lsetstat@openssh.com) sets the symlink's times only."""
        await put(sftp, "target", b"t")
        await sftp.setstat("target", asyncssh.SFTPAttrs(atime=1_500_000_000, mtime=1_500_000_000))
        await sftp.symlink("target", "link")
        await sftp.setstat("link", asyncssh.SFTPAttrs(atime=1_000_000_000, mtime=1_111_111_111),
                           follow_symlinks=False)
        link, target = await sftp.lstat("link"), await sftp.stat("link")
        assert (stat.S_ISLNK(link.permissions or 0), 1_111_111_111) == (True, link.mtime)
        assert 1_500_000_000 == target.mtime

    async def test_setstat_follows_the_link(self, sftp: asyncssh.SFTPClient) -> None:
        """setstat through a symlink changes the target."""
        await put(sftp, "target", b"t")
        await sftp.symlink("target", "link")
        await sftp.chmod("link", 0o600)
        assert 0o600 == stat.S_IMODE((await sftp.stat("target")).permissions or 0)

    async def test_symlink_and_readlink(self, sftp: asyncssh.SFTPClient) -> None:
        """A symlink stores its target as given and reads through to it."""
        await put(sftp, "target", b"content")
        await sftp.symlink("target", "link")
        assert ("target", b"content") == (await sftp.readlink("link"), await get(sftp, "link"))

    async def test_hardlink(self, sftp: asyncssh.SFTPClient) -> None:
        """link() (hardlink@openssh.com) gives the file a second name."""
        await put(sftp, "a", b"same")
        await sftp.link("a", "b")
        await sftp.remove("a")
        assert b"same" == await get(sftp, "b")

    async def test_posix_rename(self, sftp: asyncssh.SFTPClient) -> None:
        """posix_rename replaces an existing target."""
        await put(sftp, "a", b"a")
        await put(sftp, "b", b"b")
        await sftp.posix_rename("a", "b")
        names = sorted(n for n in await sftp.listdir(".") if n not in (".", ".."))
        assert (["b"], b"a") == (names, await get(sftp, "b"))

    async def test_chmod_through_a_handle_of_a_new_file(self, sftp: asyncssh.SFTPClient) -> None:
        """fsetstat permissions on an open upload apply to the new file when it commits."""
        async with sftp.open("f", "wb") as f:
            await f.write(b"x")
            await f.chmod(0o600)
        assert 0o600 == stat.S_IMODE((await sftp.stat("f")).permissions or 0)

    async def test_chmod_through_a_handle_of_an_existing_file(self, sftp: asyncssh.SFTPClient) -> None:
        """fsetstat permissions on an upload over an existing file apply when it commits (put -p does this)."""
        await put(sftp, "f", b"old")
        async with sftp.open("f", "wb") as f:
            await f.write(b"new")
            await f.chmod(0o600)
        assert (b"new", 0o600) == (await get(sftp, "f"), stat.S_IMODE((await sftp.stat("f")).permissions or 0))

    async def test_times_through_a_handle(self, sftp: asyncssh.SFTPClient) -> None:
        """fsetstat times on an open upload are the committed file's times."""
        await put(sftp, "f", b"old")
        async with sftp.open("f", "wb") as f:
            await f.write(b"new")
            await f.utime((1_200_000_000, 1_300_000_000))
        attrs = await sftp.stat("f")
        assert (1_200_000_000, 1_300_000_000) == (attrs.atime, attrs.mtime)

    async def test_a_new_file_is_visible_to_its_uploader_while_open(self, sftp: asyncssh.SFTPClient) -> None:
        """The session creating a file can stat it while the upload is open (sshfs sends OPEN and LSTAT
        together and gives up on ENOENT); it is empty until the upload commits."""
        async with sftp.open("new", "wb") as f:
            attrs = await sftp.lstat("new")
            assert (True, 0) == (stat.S_ISREG(attrs.permissions or 0), attrs.size)
            await f.write(b"x")

    async def test_fsync(self, sftp: asyncssh.SFTPClient) -> None:
        """fsync on an upload succeeds and the upload commits on close."""
        async with sftp.open("f", "wb") as f:
            await f.write(b"durable")
            await f.fsync()
        assert b"durable" == await get(sftp, "f")
