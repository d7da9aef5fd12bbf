"""pyftpdlib's ``AbstractedFS`` as one-hop adapters over the VirtualFS.

pyftpdlib hands these methods "real" paths made by ``ftp2fs``. Here the real path *is* the
client's path, normalized: confinement to the home, links and permissions are the VirtualFS's
business, so ``validpath`` has nothing to check. Every method is one :meth:`Bridge.call`; where
a command needs two VirtualFS calls (a listing and its owners' names, a size and a checksum) a
small coroutine below makes them in the same hop. Errors are the VirtualFS's OSErrors.
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pyftpdlib.filesystems import AbstractedFS

from xferd.errors import NotADirectory
from xferd.frontends.bridge import Bridge
from xferd.frontends.ftp import files
from xferd.frontends.ftp.files import DownloadFile, UploadFile
from xferd.metadata.models import Inode
from xferd.vfs import paths
from xferd.vfs.filesystem import SetAttrs, VirtualFS
from xferd.vfs.paths import Parts
from xferd.vfs.session import Session

T = TypeVar("T")
Entries = list[tuple[str, Inode]]
UNIQUE_TRIES = 10


class VfsFilesystem(AbstractedFS):  # type: ignore[misc]  # pyftpdlib is untyped
    def __init__(self, root: str, cmd_channel: Any) -> None:
        super().__init__("/", cmd_channel)
        self.session: Session = cmd_channel.session
        self.vfs: VirtualFS = cmd_channel.frontend.vfs
        self.bridge: Bridge = cmd_channel.frontend.bridge

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.bridge.call(fn, *args, session=self.session)

    # -- paths: the client's own, normalized; the VirtualFS confines them -------------------------

    def ftp2fs(self, ftppath: str) -> str:
        return str(self.ftpnorm(ftppath))

    def fs2ftp(self, fspath: str) -> str:
        return fspath

    def validpath(self, path: str) -> bool:
        return True

    def realpath(self, path: str) -> str:
        return path

    # -- the tree ----------------------------------------------------------------------------------

    def chdir(self, path: str) -> None:
        if self.stat(path).kind != "dir":
            raise NotADirectory(path=path)
        self.cwd = path

    def mkdir(self, path: str) -> None:
        self._call(self.vfs.mkdir, self.session, path)

    def rmdir(self, path: str) -> None:
        self._call(self.vfs.rmdir, self.session, path)

    def remove(self, path: str) -> None:
        self._call(self.vfs.remove, self.session, path)

    def rename(self, src: str, dst: str) -> None:
        # FTP servers rename as rename(2) does: a file replaces an existing file.
        self._call(self.vfs.rename, self.session, src, dst, True)

    def chmod(self, path: str, mode: int) -> None:
        self._call(self.vfs.setstat, self.session, path, SetAttrs(mode=mode))

    def utime(self, path: str, timeval: float) -> Inode:
        return self._call(self.vfs.setstat, self.session, path, SetAttrs(mtime=timeval))

    def stat(self, path: str) -> Inode:
        return self._call(self.vfs.stat, self.session, path)

    def lstat(self, path: str) -> Inode:
        return self._call(self.vfs.stat, self.session, path, False)

    def readlink(self, path: str) -> str:
        return self._call(self.vfs.readlink, self.session, path)

    def _kind(self, path: str, follow: bool = True) -> str | None:
        try:
            return (self.stat(path) if follow else self.lstat(path)).kind
        except OSError:
            return None

    def isfile(self, path: str) -> bool:
        return self._kind(path) == "file"

    def isdir(self, path: str) -> bool:
        return self._kind(path) == "dir"

    def islink(self, path: str) -> bool:
        return self._kind(path, follow=False) == "symlink"

    def lexists(self, path: str) -> bool:
        return self._kind(path, follow=False) is not None

    def getsize(self, path: str) -> int:
        return self.stat(path).size

    def getmtime(self, path: str) -> float:
        return self.stat(path).mtime

    def listdir(self, path: str) -> list[str]:
        return [name for name, _ in self.listing(path)[1]]

    def listing(self, path: str, files_too: bool = False, owners: bool = False) -> tuple[Parts, Entries,
                                                                                          dict[int, str]]:
        """A directory's entries with their attributes (and owner names), in one hop; with
        ``files_too`` a file lists as itself (LIST and STAT accept either)."""
        return self._call(_listing, self.vfs, self.session, path, files_too, owners)

    # -- content -----------------------------------------------------------------------------------

    def open(self, filename: str, mode: str) -> UploadFile | DownloadFile:
        """pyftpdlib's modes: rb (RETR), wb (STOR), ab (APPE), r+b (STOR after REST)."""
        if mode == "rb":
            return self.open_download(filename, 0)
        return self.open_upload(filename, 0, append=mode == "ab")

    def open_upload(self, path: str, offset: int, append: bool) -> UploadFile:
        upload = self._call(files.open_upload, self.vfs, self.session, path, offset, append)
        return UploadFile(self.bridge, upload, upload.size if append else offset)

    def open_download(self, path: str, offset: int) -> DownloadFile:
        download, first = self._call(files.open_download, self.vfs, self.session, path, offset)
        return DownloadFile(self.bridge, download, first, offset)

    def mkstemp(self, suffix: str = "", prefix: str = "", dir: str | None = None, mode: str = "wb") -> UploadFile:
        """STOU: a new file under a name nobody has."""
        for attempt in range(UNIQUE_TRIES):
            path = posixpath.join(dir or self.cwd, f"{prefix}{secrets.token_hex(4)}{suffix}")
            try:
                upload = self._call(files.open_unique, self.vfs, self.session, path)
            except FileExistsError:
                if attempt == UNIQUE_TRIES - 1:
                    raise
                continue
            return UploadFile(self.bridge, upload, 0)
        raise AssertionError("unreachable")  # pragma: no cover

    def checksum(self, path: str, algorithm: str) -> tuple[int, str]:
        """(size, hex digest) of a whole file."""
        return self._call(_checksum, self.vfs, self.session, path, algorithm)

    def available(self, path: str) -> int:
        """Bytes the user may still store (the quota's remainder, or the store's free space)."""
        return self._call(_available, self.vfs, self.session, path)


async def _listing(vfs: VirtualFS, s: Session, path: str, files_too: bool,
                   owners: bool) -> tuple[Parts, Entries, dict[int, str]]:
    try:
        listing = await vfs.list(s, path)
        real, entries = listing.real, listing.entries
    except NotADirectoryError:
        if not files_too:
            raise
        inode = await vfs.stat(s, path, follow=False)
        real, entries = paths.split(path)[:-1], [(posixpath.basename(path), inode)]
    names: dict[int, str] = {}
    if owners:
        names = await vfs.user_names(s, sorted({i.owner_id for _, i in entries if i.owner_id is not None}))
        names.setdefault(s.user.id, s.user.name)
    return real, entries, names


async def _checksum(vfs: VirtualFS, s: Session, path: str, algorithm: str) -> tuple[int, str]:
    inode = await vfs.stat(s, path)
    return inode.size, await vfs.checksum(s, path, algorithm)


async def _available(vfs: VirtualFS, s: Session, path: str) -> int:
    if (await vfs.stat(s, path)).kind != "dir":
        raise NotADirectory(path=path)
    return (await vfs.space(s)).free
