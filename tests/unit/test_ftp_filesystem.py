"""xferd.frontends.ftp.filesystem and files: pyftpdlib's filesystem calls, made from a thread,
over a real VirtualFS. None of them may touch the host's own filesystem."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from xferd.frontends.bridge import Bridge
from xferd.frontends.ftp.files import DownloadFile, RestOutOfRange, UploadFile
from xferd.frontends.ftp.filesystem import VfsFilesystem
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

from .support import get, put

T = TypeVar("T")


@pytest.fixture
async def fs(vfs: VirtualFS, alice: Session) -> AsyncIterator[VfsFilesystem]:
    bridge = Bridge(asyncio.get_running_loop(), timeout=10.0)
    channel = SimpleNamespace(session=alice, frontend=SimpleNamespace(vfs=vfs, bridge=bridge))
    yield VfsFilesystem("/ignored", channel)
    bridge.close()


async def thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a filesystem call the way pyftpdlib does: from a thread, never the loop's."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class TestPaths:
    async def test_paths_are_the_clients_own(self, fs: VfsFilesystem) -> None:
        """The "real" path is the client's path, normalized at the root: the VirtualFS confines it."""
        assert ("/a/b", "/x", "/", True, "/y") == (fs.ftp2fs("a/b"), fs.ftp2fs("/../../x"), fs.ftp2fs(".."),
                                                   fs.validpath("/anything"), fs.fs2ftp("/y"))


class TestTree:
    async def test_kinds_sizes_and_times(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """The os.path-style questions answer from the VirtualFS, and a missing path is just False."""
        await put(vfs, alice, "/f", b"12345")
        await vfs.mkdir(alice, "/d")
        await vfs.symlink(alice, "/l", "f")
        assert (True, False, True, True, False) == (
            await thread(fs.isfile, "/f"), await thread(fs.isdir, "/f"), await thread(fs.isdir, "/d"),
            await thread(fs.islink, "/l"), await thread(fs.lexists, "/nothing"))
        assert 5 == await thread(fs.getsize, "/f")
        assert abs(await thread(fs.getmtime, "/f") - (await vfs.stat(alice, "/f")).mtime) < 1e-6
        assert "f" == await thread(fs.readlink, "/l")
        assert ["d", "f", "l"] == await thread(fs.listdir, "/")

    async def test_changes(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """mkdir, rename (replacing), chmod, utime, remove and rmdir go to the VirtualFS."""
        await thread(fs.mkdir, "/d")
        await put(vfs, alice, "/d/a", b"a")
        await put(vfs, alice, "/d/b", b"b")
        await thread(fs.rename, "/d/a", "/d/b")
        await thread(fs.chmod, "/d/b", 0o600)
        inode = await thread(fs.utime, "/d/b", 1_500_000_000.0)
        assert (0o600, 1_500_000_000.0, b"a") == (inode.mode, inode.mtime, await get(vfs, alice, "/d/b"))
        await thread(fs.remove, "/d/b")
        await thread(fs.rmdir, "/d")
        assert [] == await thread(fs.listdir, "/")

    async def test_chdir_needs_a_directory(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """chdir into a file is ENOTDIR and leaves the working directory alone."""
        await put(vfs, alice, "/f", b"x")
        with pytest.raises(NotADirectoryError):
            await thread(fs.chdir, "/f")
        assert "/" == fs.cwd

    async def test_available_space(self, fs: VfsFilesystem) -> None:
        """AVBL of a path that is not a directory is refused."""
        assert await thread(fs.available, "/") > 0
        with pytest.raises(FileNotFoundError):
            await thread(fs.available, "/nothing")


class TestFiles:
    async def test_open_modes(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """pyftpdlib's open modes: wb creates, ab appends, rb reads; a file commits only when finished ok."""
        upload = await thread(fs.open, "/f", "wb")
        assert isinstance(upload, UploadFile)
        await thread(upload.write, b"one ")
        await thread(upload.finish, True)
        appended = await thread(fs.open, "/f", "ab")
        await thread(appended.write, b"two")
        await thread(appended.finish, True)
        reader = await thread(fs.open, "/f", "rb")
        assert isinstance(reader, DownloadFile)
        assert b"one two" == bytes(await thread(reader.read, 100))
        await thread(reader.close)

    async def test_a_closed_upload_is_aborted(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """close() without finish(True), as when a connection drops, keeps the old content."""
        await put(vfs, alice, "/f", b"old")
        upload = await thread(fs.open, "/f", "wb")
        await thread(upload.write, os.urandom(3 * 1024 * 1024))  # several hops already sent
        await thread(upload.close)
        assert b"old" == await get(vfs, alice, "/f")

    async def test_large_download_in_hops(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """A download larger than a hop comes back whole, read ahead one hop at a time, from an offset."""
        data = os.urandom(3 * 1024 * 1024 + 11)
        await put(vfs, alice, "/big", data)
        reader = await thread(fs.open_download, "/big", 100)
        out = bytearray()
        while chunk := await thread(reader.read, 65536):
            out += chunk
        await thread(reader.finish, True)
        assert data[100:] == bytes(out)

    async def test_rest_beyond_the_end(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """An offset past the end is refused for reading and for writing."""
        await put(vfs, alice, "/f", b"123")
        with pytest.raises(RestOutOfRange):
            await thread(fs.open_download, "/f", 4)
        with pytest.raises(RestOutOfRange):
            await thread(fs.open_upload, "/f", 4, False)
        assert b"123" == await get(vfs, alice, "/f")

    async def test_unique_names(self, fs: VfsFilesystem, vfs: VirtualFS, alice: Session) -> None:
        """mkstemp (STOU) creates a new name each time."""
        first = await thread(fs.mkstemp, "", "up.", "/")
        second = await thread(fs.mkstemp, "", "up.", "/")
        for f in (first, second):
            await thread(f.finish, True)
        assert first.name != second.name
        assert 2 == len(await thread(fs.listdir, "/"))

    async def test_failed_last_write_aborts(self, fs: VfsFilesystem, vfs: VirtualFS,
                                            make_session: Any) -> None:
        """When the last bytes exceed the quota at commit, the upload is aborted and the error raised."""
        from xferd.metadata.models import Quota

        small = await make_session("bob", quota=Quota(bytes=10))
        fs.session = small
        upload = await thread(fs.open, "/f", "wb")
        await thread(upload.write, b"x" * 100)
        with pytest.raises(OSError) as info:
            await thread(upload.finish, True)
        assert errno.EDQUOT == info.value.errno
        assert [] == await thread(fs.listdir, "/")
