"""paramiko's SFTPClient against a real daemon: logins, random access, renames, links and visibility.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

from tests.support import PASSWORD, Daemon, new_user

MIB = 1024 * 1024


@contextlib.contextmanager
def connect(daemon: Daemon, user: str, *, password: str | None = None,
            key: Path | None = None) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session over its own SSH transport, logged in with ``password`` or ``key``."""
    transport = paramiko.Transport(("127.0.0.1", daemon.port))
    try:
        pkey = paramiko.Ed25519Key.from_private_key_file(str(key)) if key is not None else None
        transport.connect(username=user, password=password, pkey=pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.get_channel().settimeout(60)
        with sftp:
            yield sftp
    finally:
        transport.close()


@pytest.fixture
def sftp(server: Daemon, user: str, client_key: Path) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session of this test's user."""
    with connect(server, user, key=client_key) as client:
        yield client


def put_bytes(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    with sftp.open(path, "wb") as f:
        f.write(data)


def get_bytes(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path, "rb") as f:
        return f.read()


def statvfs(sftp: paramiko.SFTPClient, path: str) -> dict[str, int]:
    """The statvfs@openssh.com reply (paramiko has no API for it)."""
    kind, msg = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", path)
    assert CMD_EXTENDED_REPLY == kind
    names = ("bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid", "flag", "namemax")
    return {name: msg.get_int64() for name in names}


def hardlink(sftp: paramiko.SFTPClient, old: str, new: str) -> None:
    sftp._request(CMD_EXTENDED, "hardlink@openssh.com", old, new)


class TestLogin:
    def test_password_login(self, server: Daemon, user: str) -> None:
        """The right password opens a session that sees the home directory."""
        with connect(server, user, password=PASSWORD) as sftp:
            assert "/" == sftp.normalize(".")

    def test_key_login(self, server: Daemon, user: str, client_key: Path) -> None:
        """A registered ed25519 key opens a session."""
        with connect(server, user, key=client_key) as sftp:
            assert [] == sftp.listdir("/")

    def test_wrong_password_is_refused(self, server: Daemon, user: str) -> None:
        """A wrong password fails with AuthenticationException."""
        with pytest.raises(paramiko.AuthenticationException), connect(server, user, password="wrong"):
            pass

    def test_unknown_user_is_refused_like_a_wrong_password(self, server: Daemon, user: str) -> None:
        """An unknown user fails exactly as a wrong password does: nothing tells that the name is free."""
        with pytest.raises(paramiko.AuthenticationException) as unknown, \
                connect(server, "mallory", password=PASSWORD):
            pass
        with pytest.raises(paramiko.AuthenticationException) as wrong, connect(server, user, password="wrong"):
            pass
        assert type(wrong.value) is type(unknown.value)
        assert str(wrong.value) == str(unknown.value)

    def test_unregistered_key_is_refused(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """A key that is not the user's does not log in as the user."""
        path = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        with pytest.raises(paramiko.AuthenticationException), connect(server, user, key=path):
            pass


class TestRandomAccessWrites:
    def test_put_and_get_round_trip(self, sftp: paramiko.SFTPClient, tmp_path: Path) -> None:
        """put (pipelined writes) and get (prefetched reads) move a few MB byte for byte."""
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(5 * MIB + 99))
        attrs = sftp.put(str(src), "up.bin")
        sftp.get("up.bin", str(tmp_path / "back.bin"))
        assert (5 * MIB + 99, src.read_bytes()) == (attrs.st_size, (tmp_path / "back.bin").read_bytes())

    def test_chunks_written_out_of_order(self, sftp: paramiko.SFTPClient) -> None:
        """Chunks written at their offsets in any order make the file they describe."""
        data = os.urandom(5 * 65536 + 123)
        chunks = [(offset, data[offset:offset + 65536]) for offset in range(0, len(data), 65536)]
        with sftp.open("shuffled.bin", "wb") as f:
            for offset, chunk in [chunks[i] for i in (3, 0, 5, 1, 4, 2)]:
                f.seek(offset)
                f.write(chunk)
        assert data == get_bytes(sftp, "shuffled.bin")

    def test_gaps_read_as_zeros(self, sftp: paramiko.SFTPClient) -> None:
        """Bytes never written between two writes read back as zeros; the size ends at the last byte."""
        with sftp.open("sparse.bin", "wb") as f:
            f.seek(300_000)
            f.write(b"tail")
            f.seek(0)
            f.write(b"head")
        expected = b"head" + bytes(300_000 - 4) + b"tail"
        assert len(expected) == sftp.stat("sparse.bin").st_size
        assert expected == get_bytes(sftp, "sparse.bin")

    def test_rewrite_middle_of_existing_file(self, sftp: paramiko.SFTPClient) -> None:
        """A file opened with 'r+' keeps every byte around a rewritten region."""
        data = bytearray(os.urandom(MIB))
        put_bytes(sftp, "big.bin", bytes(data))
        patch = os.urandom(10_000)
        with sftp.open("big.bin", "r+") as f:
            f.seek(400_000)
            f.write(patch)
        data[400_000:410_000] = patch
        assert bytes(data) == get_bytes(sftp, "big.bin")

    def test_read_back_through_the_same_rw_handle(self, sftp: paramiko.SFTPClient) -> None:
        """An 'r+' handle reads its own writes and the untouched old bytes."""
        put_bytes(sftp, "rw.txt", b"0123456789")
        with sftp.open("rw.txt", "r+") as f:
            f.seek(3)
            f.write(b"abc")
            f.flush()
            f.seek(0)
            assert b"012abc6789" == f.read()


class TestRename:
    def test_posix_rename_replaces_the_target(self, sftp: paramiko.SFTPClient) -> None:
        """posix-rename@openssh.com overwrites an existing target and removes the source name."""
        put_bytes(sftp, "new.txt", b"new")
        put_bytes(sftp, "old.txt", b"old")
        sftp.posix_rename("new.txt", "old.txt")
        assert b"new" == get_bytes(sftp, "old.txt")
        assert ["old.txt"] == sftp.listdir(".")

    def test_rename_refuses_an_existing_target(self, sftp: paramiko.SFTPClient) -> None:
        """Plain SFTP rename fails on an existing target and changes neither file."""
        put_bytes(sftp, "a.txt", b"a")
        put_bytes(sftp, "b.txt", b"b")
        with pytest.raises(OSError):
            sftp.rename("a.txt", "b.txt")
        assert (b"a", b"b") == (get_bytes(sftp, "a.txt"), get_bytes(sftp, "b.txt"))

    def test_rename_moves_a_directory_with_its_content(self, sftp: paramiko.SFTPClient) -> None:
        """A renamed directory takes its files along."""
        sftp.mkdir("d1")
        put_bytes(sftp, "d1/f", b"x")
        sftp.rename("d1", "d2")
        assert (["d2"], b"x") == (sftp.listdir("."), get_bytes(sftp, "d2/f"))


class TestStatvfs:
    def test_reports_the_quota_and_its_use(self, server: Daemon, client_key: Path) -> None:
        """statvfs shows the byte quota as the size and what is left of it as free space."""
        quota = 4096 * 1000
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-bytes", str(quota))
        with connect(server, name, key=client_key) as sftp:
            put_bytes(sftp, "used.bin", os.urandom(4096 * 10))
            vfs = statvfs(sftp, "/")
        assert quota == vfs["blocks"] * vfs["frsize"]
        assert quota - 4096 * 10 == vfs["bfree"] * vfs["frsize"]
        assert vfs["bfree"] == vfs["bavail"]

    def test_a_changed_quota_applies_to_the_next_session(self, server: Daemon, user: str,
                                                         client_key: Path) -> None:
        """`xferd user quota` changes what the next session's statvfs reports."""
        server.cli("user", "quota", user, "--bytes", str(8192 * 512))
        with connect(server, user, key=client_key) as sftp:
            vfs = statvfs(sftp, ".")
        assert 8192 * 512 == vfs["blocks"] * vfs["frsize"]

    def test_missing_path_fails(self, sftp: paramiko.SFTPClient) -> None:
        """statvfs of a path that does not exist fails with ENOENT."""
        with pytest.raises(FileNotFoundError):
            statvfs(sftp, "/nowhere")


class TestQuota:
    def test_upload_beyond_the_byte_quota_fails_and_leaves_nothing(self, server: Daemon, client_key: Path) -> None:
        """An upload that outgrows the byte quota fails; no partial file is left behind."""
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-bytes", "100000")
        with connect(server, name, key=client_key) as sftp:
            with pytest.raises(OSError), sftp.open("big.bin", "wb") as f:
                f.write(os.urandom(200_000))
            assert [] == sftp.listdir(".")

    def test_overwrite_beyond_the_byte_quota_keeps_the_old_content(self, server: Daemon,
                                                                   client_key: Path) -> None:
        """An overwrite that outgrows the byte quota fails; the file keeps its previous content."""
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-bytes", "100000")
        old = os.urandom(10_000)
        with connect(server, name, key=client_key) as sftp:
            put_bytes(sftp, "f.bin", old)
            with pytest.raises(OSError), sftp.open("f.bin", "wb") as f:
                f.write(os.urandom(200_000))
            assert old == get_bytes(sftp, "f.bin")

    def test_file_quota_refuses_one_file_too_many(self, server: Daemon, client_key: Path) -> None:
        """With a quota of two files, the third upload fails and the first two stay."""
        name = new_user(server, "quota", PASSWORD, client_key.with_suffix(".pub"), "--quota-files", "2")
        with connect(server, name, key=client_key) as sftp:
            put_bytes(sftp, "one", b"1")
            put_bytes(sftp, "two", b"2")
            with pytest.raises(OSError), sftp.open("three", "wb") as f:
                f.write(b"3")
            assert ["one", "two"] == sorted(sftp.listdir("."))


class TestHardlink:
    def test_both_names_show_the_same_content(self, sftp: paramiko.SFTPClient) -> None:
        """After hardlink@openssh.com the new name reads the same bytes as the old one."""
        data = os.urandom(70_000)
        put_bytes(sftp, "orig.bin", data)
        hardlink(sftp, "orig.bin", "twin.bin")
        assert (data, data) == (get_bytes(sftp, "orig.bin"), get_bytes(sftp, "twin.bin"))

    def test_removing_one_name_keeps_the_other(self, sftp: paramiko.SFTPClient) -> None:
        """Removing the original name leaves the link with the content."""
        put_bytes(sftp, "orig.bin", b"keep me")
        hardlink(sftp, "orig.bin", "twin.bin")
        sftp.remove("orig.bin")
        assert (["twin.bin"], b"keep me") == (sftp.listdir("."), get_bytes(sftp, "twin.bin"))

    def test_an_upload_through_one_name_shows_through_the_other(self, sftp: paramiko.SFTPClient) -> None:
        """Both names are one file: new content written through one is read through the other."""
        put_bytes(sftp, "orig.bin", b"first")
        hardlink(sftp, "orig.bin", "twin.bin")
        put_bytes(sftp, "twin.bin", b"second")
        assert b"second" == get_bytes(sftp, "orig.bin")

    def test_existing_target_is_refused(self, sftp: paramiko.SFTPClient) -> None:
        """A hard link never replaces an existing name."""
        put_bytes(sftp, "a", b"a")
        put_bytes(sftp, "b", b"b")
        with pytest.raises(OSError):
            hardlink(sftp, "a", "b")
        assert b"b" == get_bytes(sftp, "b")


class TestFsync:
    def test_fsync_succeeds_and_does_not_publish(self, server: Daemon, user: str, client_key: Path) -> None:
        """fsync@openssh.com on an open upload succeeds; the content appears only at close."""
        with connect(server, user, key=client_key) as writer, connect(server, user, key=client_key) as reader:
            put_bytes(writer, "f.bin", b"old")
            f = writer.open("f.bin", "wb")
            f.write(b"new content")
            f.flush()
            writer._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
            assert b"old" == get_bytes(reader, "f.bin")
            f.close()
            assert b"new content" == get_bytes(reader, "f.bin")

    def test_fsync_of_a_read_handle_succeeds(self, sftp: paramiko.SFTPClient) -> None:
        """fsync on a handle open for reading is a harmless no-op."""
        put_bytes(sftp, "r.bin", b"r")
        with sftp.open("r.bin", "rb") as f:
            sftp._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
            assert b"r" == f.read()


async def _hardlinks(daemon: Daemon, user: str, key: Path, directory: str, count: int) -> None:
    """``count`` names for one empty file in ``directory``, made with many requests in flight."""
    async with asyncssh.connect("127.0.0.1", daemon.port, username=user, known_hosts=None,
                                client_keys=[str(key)]) as conn, conn.start_sftp_client() as sftp:
        await sftp.mkdir(directory)
        async with sftp.open(f"{directory}/f00000", "wb"):
            pass
        pending = asyncio.Semaphore(64)

        async def link(i: int) -> None:
            async with pending:
                await sftp.link(f"{directory}/f00000", f"{directory}/f{i:05d}")
        await asyncio.gather(*(link(i) for i in range(1, count)))


class TestListing:
    @pytest.mark.timeout(600)
    def test_ten_thousand_entries(self, server: Daemon, user: str, client_key: Path,
                                  sftp: paramiko.SFTPClient) -> None:
        """A directory of 10,000 files lists every name exactly once, with its attributes."""
        asyncio.run(_hardlinks(server, user, client_key, "big", 10_000))
        entries = sftp.listdir_attr("big")
        names = [e.filename for e in entries]
        assert 10_000 == len(names)
        assert {f"f{i:05d}" for i in range(10_000)} == set(names)
        assert {0} == {e.st_size for e in entries}
        assert all(stat.S_ISREG(e.st_mode or 0) for e in entries)

    def test_listdir_attr_sizes_and_modes(self, sftp: paramiko.SFTPClient) -> None:
        """listdir_attr reports each entry's size, permission bits and type."""
        put_bytes(sftp, "ten", b"0123456789")
        put_bytes(sftp, "empty", b"")
        sftp.chmod("empty", 0o600)
        sftp.mkdir("dir", 0o750)
        sftp.symlink("ten", "link")
        got = {e.filename: e for e in sftp.listdir_attr(".")}
        assert {"ten", "empty", "dir", "link"} == set(got)
        assert (10, 0o644) == (got["ten"].st_size, stat.S_IMODE(got["ten"].st_mode or 0))
        assert (0, 0o600) == (got["empty"].st_size, stat.S_IMODE(got["empty"].st_mode or 0))
        assert stat.S_ISDIR(got["dir"].st_mode or 0)
        assert 0o750 == stat.S_IMODE(got["dir"].st_mode or 0)
        assert stat.S_ISLNK(got["link"].st_mode or 0)
        assert stat.S_ISREG(got["ten"].st_mode or 0)

    def test_listing_a_file_fails(self, sftp: paramiko.SFTPClient) -> None:
        """listdir of a regular file fails and does not hang."""
        put_bytes(sftp, "f", b"f")
        with pytest.raises(OSError):
            sftp.listdir("f")


class TestAttributes:
    def test_utime_sets_both_times(self, sftp: paramiko.SFTPClient) -> None:
        """utime stores the access and modification times given."""
        put_bytes(sftp, "t", b"t")
        sftp.utime("t", (1_000_000_000, 1_234_567_890))
        st = sftp.stat("t")
        assert (1_000_000_000, 1_234_567_890) == (st.st_atime, st.st_mtime)

    def test_chmod(self, sftp: paramiko.SFTPClient) -> None:
        """chmod changes the permission bits and keeps the type."""
        put_bytes(sftp, "m", b"m")
        sftp.chmod("m", 0o640)
        mode = sftp.stat("m").st_mode or 0
        assert (0o640, True) == (stat.S_IMODE(mode), stat.S_ISREG(mode))

    def test_truncate_shrinks(self, sftp: paramiko.SFTPClient) -> None:
        """truncate to a smaller size keeps the head of the file."""
        put_bytes(sftp, "s", b"0123456789")
        sftp.truncate("s", 4)
        assert b"0123" == get_bytes(sftp, "s")

    def test_truncate_extends_with_zeros(self, sftp: paramiko.SFTPClient) -> None:
        """truncate to a larger size pads with zeros."""
        put_bytes(sftp, "s", b"abc")
        sftp.truncate("s", 8)
        assert b"abc" + bytes(5) == get_bytes(sftp, "s")

    def test_truncate_through_an_open_handle(self, sftp: paramiko.SFTPClient) -> None:
        """SFTPFile.truncate on a write handle cuts what was written."""
        with sftp.open("h", "wb") as f:
            f.write(b"0123456789")
            f.flush()
            f.truncate(3)
        assert b"012" == get_bytes(sftp, "h")


class TestOpenModes:
    def test_append_mode_appends(self, sftp: paramiko.SFTPClient) -> None:
        """A file opened with 'a' gets each write at its end."""
        put_bytes(sftp, "log", b"one\n")
        with sftp.open("log", "a") as f:
            f.write(b"two\n")
            f.flush()
            f.write(b"three\n")
        assert b"one\ntwo\nthree\n" == get_bytes(sftp, "log")

    def test_append_ignores_the_offset(self, sftp: paramiko.SFTPClient) -> None:
        """In append mode a write at offset 0 still lands at the end."""
        put_bytes(sftp, "log", b"head")
        with sftp.open("log", "a") as f:
            f.seek(0)
            f.write(b"+tail")
        assert b"head+tail" == get_bytes(sftp, "log")

    def test_exclusive_create_fails_on_an_existing_file(self, sftp: paramiko.SFTPClient) -> None:
        """Opening with 'x' (CREAT|EXCL, no WRITE) fails when the file exists, and leaves it alone."""
        put_bytes(sftp, "x", b"keep")
        with pytest.raises(OSError):
            sftp.open("x", "x")
        assert b"keep" == get_bytes(sftp, "x")

    def test_exclusive_write_fails_on_an_existing_file(self, sftp: paramiko.SFTPClient) -> None:
        """Opening with 'wx' fails when the file exists, and leaves it alone."""
        put_bytes(sftp, "x", b"keep")
        with pytest.raises(OSError):
            sftp.open("x", "wx")
        assert b"keep" == get_bytes(sftp, "x")

    def test_exclusive_create_makes_an_empty_file(self, sftp: paramiko.SFTPClient) -> None:
        """Opening a missing file with 'x' creates it empty, as open(O_CREAT|O_EXCL) does."""
        sftp.open("fresh", "x").close()
        assert b"" == get_bytes(sftp, "fresh")

    def test_exclusive_write_makes_a_new_file(self, sftp: paramiko.SFTPClient) -> None:
        """Opening a missing file with 'wx' creates it with what is written."""
        with sftp.open("fresh", "wx") as f:
            f.write(b"made")
        assert b"made" == get_bytes(sftp, "fresh")

    def test_write_mode_truncates(self, sftp: paramiko.SFTPClient) -> None:
        """Opening with 'w' replaces the whole old content."""
        put_bytes(sftp, "w", b"a long old content")
        put_bytes(sftp, "w", b"short")
        assert b"short" == get_bytes(sftp, "w")

    def test_reading_a_missing_file_fails(self, sftp: paramiko.SFTPClient) -> None:
        """Opening a missing file for reading fails with ENOENT."""
        with pytest.raises(FileNotFoundError):
            sftp.open("missing", "rb")


class TestUploadVisibility:
    def test_readers_see_the_old_content_until_close(self, server: Daemon, user: str, client_key: Path) -> None:
        """While another session uploads, readers see the complete old file; after close, the new one."""
        old, new = os.urandom(200_000), os.urandom(MIB)
        with connect(server, user, key=client_key) as writer, connect(server, user, key=client_key) as reader:
            put_bytes(writer, "f.bin", old)
            f = writer.open("f.bin", "wb")
            f.write(new[:600_000])
            f.flush()
            assert (old, len(old)) == (get_bytes(reader, "f.bin"), reader.stat("f.bin").st_size)
            f.write(new[600_000:])
            f.flush()
            assert old == get_bytes(reader, "f.bin")
            f.close()
            assert new == get_bytes(reader, "f.bin")

    def test_a_new_file_appears_only_at_close(self, server: Daemon, user: str, client_key: Path) -> None:
        """Another session does not see a file being created until its upload is closed."""
        with connect(server, user, key=client_key) as writer, connect(server, user, key=client_key) as reader:
            f = writer.open("new.bin", "wb")
            f.write(b"partial")
            f.flush()
            assert [] == reader.listdir(".")
            f.close()
            assert b"partial" == get_bytes(reader, "new.bin")

    def test_an_open_reader_keeps_its_snapshot(self, server: Daemon, user: str, client_key: Path) -> None:
        """A download opened before a new upload commits reads the old content to its end."""
        old = os.urandom(500_000)
        with connect(server, user, key=client_key) as writer, connect(server, user, key=client_key) as reader:
            put_bytes(writer, "f.bin", old)
            with reader.open("f.bin", "rb") as r:
                head = r.read(1000)
                put_bytes(writer, "f.bin", b"replaced")
                assert old == head + r.read()
            assert b"replaced" == get_bytes(reader, "f.bin")

    def test_interrupted_upload_keeps_the_previous_content(self, server: Daemon, user: str, client_key: Path) -> None:
        """An upload cut off by closing the transport is discarded: the file keeps its old bytes."""
        old = os.urandom(100_000)
        with connect(server, user, key=client_key) as sftp:
            put_bytes(sftp, "f.bin", old)
        transport = paramiko.Transport(("127.0.0.1", server.port))
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)))
        cut = paramiko.SFTPClient.from_transport(transport)
        assert cut is not None
        f = cut.open("f.bin", "wb")
        f.write(os.urandom(2 * MIB))
        f.flush()
        transport.close()
        server.wait_event("fs.upload", timeout=30, user=user, path="/f.bin", outcome="disconnected")
        with connect(server, user, key=client_key) as sftp:
            assert (old, len(old)) == (get_bytes(sftp, "f.bin"), sftp.stat("f.bin").st_size)

    def test_interrupted_new_upload_leaves_no_file(self, server: Daemon, user: str, client_key: Path) -> None:
        """A first upload of a name cut off by a dropped connection leaves no file behind."""
        transport = paramiko.Transport(("127.0.0.1", server.port))
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)))
        cut = paramiko.SFTPClient.from_transport(transport)
        assert cut is not None
        f = cut.open("partial.bin", "wb")
        f.write(os.urandom(300_000))
        f.flush()
        transport.close()
        server.wait_event("fs.upload", timeout=30, user=user, path="/partial.bin", outcome="disconnected")
        with connect(server, user, key=client_key) as sftp:
            assert [] == sftp.listdir(".")
