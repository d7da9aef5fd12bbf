"""sshfs (SFTP through FUSE) against a real daemon: ordinary file APIs on a mounted home.

sshfs sends CLOSE when the kernel releases a file, which happens after ``close()`` returns; the
upload commits at that CLOSE, so a test that reads a file written through the mount from another
session first waits for the daemon's ``fs.upload`` event.

The tests share one daemon; each mounts the home of a user of its own, empty at first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.support import IN_CI, Daemon, require_tool

MIB = 1024 * 1024


def require_fuse() -> None:
    """Skip where no FUSE device exists, except under CI=true (CI must run every test); else need sshfs."""
    if not Path("/dev/fuse").exists():
        message = "no /dev/fuse here: FUSE mounts are impossible in this environment"
        if IN_CI:
            pytest.fail(message + " (CI must run every test)")
        pytest.skip(message)
    require_tool("sshfs")


def unmount(point: Path) -> None:
    for command in (["fusermount3", "-u"], ["fusermount", "-u"], ["umount"]):
        if shutil.which(command[0]) is None:
            continue
        for _ in range(50):
            if subprocess.run([*command, str(point)], capture_output=True, timeout=60).returncode == 0:
                return
            time.sleep(0.2)  # busy: a release may still be on its way
    subprocess.run(["fusermount3", "-u", "-z", str(point)], capture_output=True, timeout=60)
    raise AssertionError(f"could not unmount {point}")


@contextlib.contextmanager
def sshfs(daemon: Daemon, user: str, key: Path, point: Path) -> Iterator[Path]:
    point.mkdir(exist_ok=True)
    options = f"IdentityFile={key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR"
    subprocess.run(["sshfs", "-p", str(daemon.port), "-o", options, f"{user}@127.0.0.1:/", str(point)],
                   check=True, capture_output=True, timeout=60)
    try:
        assert os.path.ismount(point)
        yield point
    finally:
        unmount(point)


@pytest.fixture
def mount(server: Daemon, user: str, client_key: Path, tmp_path: Path) -> Iterator[Path]:
    """This test's user's home, mounted with sshfs."""
    require_fuse()
    with sshfs(server, user, client_key, tmp_path / "mnt") as point:
        yield point


@pytest.fixture
def sftp(server: Daemon, user: str, client_key: Path) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session of this test's user."""
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)))
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        with client:
            yield client
    finally:
        transport.close()


def commits(daemon: Daemon, user: str, path: str) -> int:
    """How many times ``user``'s ``path`` has been committed (since the test began)."""
    return sum(1 for e in daemon.events("fs.upload")
               if e.get("user") == user and e.get("path") == path and e.get("outcome") == "ok")


def wait_commits(daemon: Daemon, user: str, path: str, count: int, timeout: float = 30.0) -> None:
    """Wait until ``user``'s ``path`` has been committed ``count`` times in all."""
    deadline = time.monotonic() + timeout
    while commits(daemon, user, path) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not committed {count} times")
        time.sleep(0.05)


def get_bytes(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path, "rb") as f:
        return f.read()


def put_bytes(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    with sftp.open(path, "wb") as f:
        f.write(data)


class TestMount:
    def test_mount_shows_the_home(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """The mounted root lists what the user's home holds."""
        sftp.mkdir("from-sftp")
        put_bytes(sftp, "from-sftp/f", b"f")
        assert (["from-sftp"], ["f"]) == (os.listdir(mount), os.listdir(mount / "from-sftp"))

    def test_unmount(self, server: Daemon, user: str, client_key: Path, tmp_path: Path) -> None:
        """An idle mount unmounts cleanly."""
        require_fuse()
        point = tmp_path / "m"
        with sshfs(server, user, client_key, point):
            pass
        assert not os.path.ismount(point)


class TestWritesThroughTheMount:
    def test_sequential_write_of_a_new_file(self, server: Daemon, user: str, mount: Path,
                                            sftp: paramiko.SFTPClient) -> None:
        """A new file written sequentially through the mount reads back the same, there and over SFTP."""
        data = os.urandom(3 * MIB + 7)
        with open(mount / "seq.bin", "wb") as f:
            for i in range(0, len(data), 100_000):
                f.write(data[i:i + 100_000])
        wait_commits(server, user, "/seq.bin", 1)
        assert data == (mount / "seq.bin").read_bytes()
        assert data == get_bytes(sftp, "seq.bin")

    def test_random_access_write_of_a_new_file(self, server: Daemon, user: str, mount: Path,
                                               sftp: paramiko.SFTPClient) -> None:
        """Writes at scattered offsets, with a hole, make the file they describe."""
        with open(mount / "rand.bin", "wb") as f:
            f.seek(200_000)
            f.write(b"B" * 1000)
            f.seek(0)
            f.write(b"A" * 1000)
            f.seek(500_000)
            f.write(b"C")
        expected = b"A" * 1000 + bytes(199_000) + b"B" * 1000 + bytes(299_000) + b"C"
        wait_commits(server, user, "/rand.bin", 1)
        assert expected == get_bytes(sftp, "rand.bin")
        assert expected == (mount / "rand.bin").read_bytes()

    def test_rewrite_inside_an_existing_file(self, server: Daemon, user: str, mount: Path,
                                             sftp: paramiko.SFTPClient) -> None:
        """Opening an existing file 'r+b' and writing in its middle keeps the bytes around it."""
        data = bytearray(os.urandom(MIB))
        put_bytes(sftp, "existing.bin", bytes(data))
        before = commits(server, user, "/existing.bin")
        with open(mount / "existing.bin", "r+b") as f:
            f.seek(123_456)
            f.write(b"patched!" * 100)
        data[123_456:124_256] = b"patched!" * 100
        wait_commits(server, user, "/existing.bin", before + 1)
        assert bytes(data) == get_bytes(sftp, "existing.bin")
        assert bytes(data) == (mount / "existing.bin").read_bytes()

    def test_overwrite_an_existing_file(self, server: Daemon, user: str, mount: Path,
                                        sftp: paramiko.SFTPClient) -> None:
        """Opening an existing file with 'wb' through the mount replaces its content."""
        put_bytes(sftp, "over.txt", b"a much longer old content")
        before = commits(server, user, "/over.txt")
        (mount / "over.txt").write_bytes(b"new")
        wait_commits(server, user, "/over.txt", before + 1)
        assert b"new" == get_bytes(sftp, "over.txt")

    def test_append_to_an_existing_file(self, server: Daemon, user: str, mount: Path,
                                        sftp: paramiko.SFTPClient) -> None:
        """Opening an existing file with 'ab' adds to its end."""
        put_bytes(sftp, "log.txt", b"one\n")
        before = commits(server, user, "/log.txt")
        with open(mount / "log.txt", "ab") as f:
            f.write(b"two\n")
        wait_commits(server, user, "/log.txt", before + 1)
        assert b"one\ntwo\n" == get_bytes(sftp, "log.txt")

    def test_create_an_empty_file(self, server: Daemon, user: str, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """touch through the mount creates an empty file."""
        (mount / "touched").touch()
        wait_commits(server, user, "/touched", 1)
        assert b"" == get_bytes(sftp, "touched")


class TestReadsThroughTheMount:
    def test_read_a_file_uploaded_over_sftp(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """A file uploaded over SFTP reads through the mount byte for byte, also at offsets."""
        data = os.urandom(2 * MIB + 1)
        put_bytes(sftp, "up.bin", data)
        assert data == (mount / "up.bin").read_bytes()
        with open(mount / "up.bin", "rb") as f:
            f.seek(MIB + 3)
            assert data[MIB + 3:MIB + 3 + 4096] == f.read(4096)

    def test_stat_through_the_mount(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """Size, permission bits and modification time show through the mount."""
        put_bytes(sftp, "s.bin", b"x" * 1234)
        sftp.chmod("s.bin", 0o640)
        sftp.utime("s.bin", (1_500_000_000, 1_500_000_000))
        st = (mount / "s.bin").stat()
        assert (1234, 0o640, 1_500_000_000) == (st.st_size, st.st_mode & 0o7777, int(st.st_mtime))


class TestTreeOperationsThroughTheMount:
    def test_rename_a_directory(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """Renaming a directory through the mount moves its whole subtree."""
        os.makedirs(mount / "d1" / "sub")
        put_bytes(sftp, "d1/sub/f", b"content")
        os.rename(mount / "d1", mount / "d2")
        assert (["d2"], b"content") == (sftp.listdir("."), get_bytes(sftp, "d2/sub/f"))
        assert b"content" == (mount / "d2" / "sub" / "f").read_bytes()

    def test_rename_a_file_over_another(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """os.replace through the mount replaces the target (posix-rename)."""
        put_bytes(sftp, "a", b"a")
        put_bytes(sftp, "b", b"b")
        os.replace(mount / "a", mount / "b")
        assert (["b"], b"a") == (sftp.listdir("."), get_bytes(sftp, "b"))

    def test_remove_and_rmdir(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """unlink and rmdir through the mount remove the file and the directory."""
        sftp.mkdir("d")
        put_bytes(sftp, "d/f", b"f")
        os.unlink(mount / "d" / "f")
        os.rmdir(mount / "d")
        assert [] == sftp.listdir(".")

    def test_chmod_and_utime(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """chmod and utime through the mount change the file on the server."""
        put_bytes(sftp, "m", b"m")
        os.chmod(mount / "m", 0o600)
        os.utime(mount / "m", (1_400_000_000, 1_400_000_000))
        st = sftp.stat("m")
        assert (0o600, 1_400_000_000) == ((st.st_mode or 0) & 0o7777, st.st_mtime)

    def test_truncate(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """os.truncate through the mount shortens the file."""
        put_bytes(sftp, "t", b"0123456789")
        os.truncate(mount / "t", 3)
        assert b"012" == get_bytes(sftp, "t")

    def test_symlink(self, mount: Path, sftp: paramiko.SFTPClient) -> None:
        """A symlink made through the mount points where it was told."""
        put_bytes(sftp, "target", b"t")
        os.symlink("target", mount / "link")
        assert ("target", b"t") == (sftp.readlink("link"), (mount / "link").read_bytes())
