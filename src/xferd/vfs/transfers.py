"""Open files: an :class:`Upload` writes a new blob and commits it on close; a :class:`Download`
reads a committed blob it holds a lease on, so the collector leaves it alone while it is read.

The life of an upload::

    open_write ── resolve the path and read the quota usage (a store that publishes before the
                  commit also gets the blob reserved as pending)
    write*     ── queued to the blob writer (any offset); the quota is checked as the size grows
    close      ── the writer makes the blob durable, then ONE transaction records it and points
                  the file at it: before that instant readers see the old content, after it the
                  new; then the blob is moved into place (publish)
    abort      ── (a dropped connection, an error) the blob is discarded; the old content stays
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING

from xferd.errors import NotFound, PermissionDenied, QuotaExceeded, StorageError, errno_name
from xferd.metadata.models import Checksums, CommitResult, Inode, NewContent
from xferd.storage.base import BlobReader, BlobWriter, Committed
from xferd.vfs import paths
from xferd.vfs.paths import Parts
from xferd.vfs.session import Session

if TYPE_CHECKING:
    from xferd.vfs.filesystem import OpenMode, VirtualFS


class Upload:
    def __init__(self, vfs: VirtualFS, session: Session, parent: int, name: str, real: Parts, writer: BlobWriter,
                 base: str | None, mode: int, open_mode: OpenMode, allowance: int | None,
                 ino: int | None) -> None:
        self.vfs = vfs
        self.session = session
        self.parent = parent
        self.name = name
        self.real = real
        self.writer = writer
        self.base = base
        self.mode = mode
        self.open_mode = open_mode
        self.allowance = allowance
        self.ino = ino
        self.mtime: float | None = None
        self.atime: float | None = None
        self.started = time.time()
        self.done = False
        self.mode_set = False  # a client chose the permissions (fsetstat) while the file was open
        # An existing file opened for writing but never written, truncated or set keeps everything,
        # its mtime included (as open(2) with O_RDWR and no write would).
        self.changed = ino is None or open_mode.truncate
        self.failed: OSError | None = None  # a write failed: the upload is incomplete and must not commit
        self.checksums: Checksums | None = None  # the committed content's, once closed
        vfs.track(self)

    @property
    def path(self) -> str:
        return paths.to_client(self.real)

    @property
    def size(self) -> int:
        return self.writer.size

    async def write(self, offset: int, data: bytes) -> int:
        if self.open_mode.append:
            offset = self.writer.size
        end = offset + len(data)
        with self._changing(end):
            await self.writer.write(offset, data)
        return len(data)

    async def read(self, offset: int, size: int) -> bytes:
        if not self.open_mode.read:
            raise PermissionDenied("File was not opened for reading", path=self.path)
        return await self.writer.read(offset, size)

    async def truncate(self, size: int) -> None:
        with self._changing(size):
            await self.writer.truncate(size)

    def _changing(self, end: int) -> _Change:
        """Around a change that makes the content ``end`` bytes long (or keeps it shorter): refuse
        growth past the quota allowance, and remember a failure so that close() aborts."""
        self.changed = True
        if self.allowance is not None and end > self.writer.size and end > self.allowance:
            exc = QuotaExceeded(path=self.path)
            self.failed = self.failed or exc
            raise exc
        return _Change(self)

    def set_times(self, mtime: float | None, atime: float | None) -> None:
        """Times to give the file when it commits (a client preserving timestamps sets them first)."""
        self.changed = self.changed or mtime is not None or atime is not None
        if mtime is not None:
            self.mtime = mtime
        if atime is not None:
            self.atime = atime

    def set_mode(self, mode: int) -> None:
        """Permissions to give the file when it commits, an existing file's too."""
        self.mode, self.mode_set, self.changed = mode & 0o7777, True, True

    async def flush(self) -> None:
        """Make what was written so far durable in the pending blob (it stays invisible)."""
        await self.writer.flush()

    async def finish(self, offset: int, tail: bytes) -> Inode:
        """Write the last bytes (``tail`` at ``offset``, possibly none) and commit; a failed write
        aborts the upload (the frontends' last hop: the end of a body and the commit in one call)."""
        if tail:
            try:
                await self.write(offset, tail)
            except BaseException as exc:
                await self.abort(errno_name(exc) if isinstance(exc, OSError) else "failed")
                raise
        return await self.close()

    def _commit_metadata(self, committed: Committed) -> concurrent.futures.Future[CommitResult]:
        s, vfs = self.session, self.vfs
        content = NewContent(self.writer.blob_id, committed.size, committed.checksums,
                             self.mtime if self.mtime is not None else time.time(), self.atime)
        return vfs.md.submit_commit_content(s.tenant.id, self.parent, self.name, content, s.user.id,
                                            self.mode if self.mode_set or self.ino is None else None,
                                            s.quota, exclusive=self.open_mode.exclusive and self.ino is None,
                                            reserved=vfs.reserves_blobs, blob_owner=vfs.blob_owner)

    async def close(self) -> Inode:
        """Commit: make the blob durable, point the file at it in one transaction, publish it."""
        if self.done:
            raise StorageError("upload already closed", path=self.path)
        if self.failed is not None:
            await self.abort("failed")
            raise self.failed
        if not self.changed:
            await self.abort("unchanged")
            inode = await self.vfs.md.get_inode(self.session.tenant.id, self.ino or 0)
            if inode is None:
                raise NotFound(path=self.path)
            return inode
        self.done = True
        s = self.session
        vfs = self.vfs
        try:
            try:
                # The metadata transaction is submitted by the blob's thread as soon as the blob
                # is durable: this task wakes once, for both.
                committed, result = await self.writer.commit_then(self._commit_metadata)
                self.checksums = committed.checksums
            except BaseException as exc:
                # Not committed: the collector takes a reserved blob (the writer already removed its
                # bytes, or they were published and are now unreferenced); an unreserved one is still
                # only a temporary file, removed here. Unless the wait was cancelled: then the
                # transaction may have committed after all, and the file stays in .tmp, where reads
                # find it and the next start moves it into place or deletes it, as the store says.
                if vfs.reserves_blobs:
                    await vfs.md.abandon_blob(self.writer.blob_id)
                elif isinstance(exc, Exception):
                    await self.writer.abort()
                raise
            self.writer.publish()
        except OSError as exc:
            vfs.audit.emit(s.log, s.fields, "fs.upload", self.path, errno_name(exc), True,
                           error=str(exc.strerror or exc))
            raise
        except Exception as exc:
            s.log.exception("internal_error", op="fs.upload", path=self.path)
            vfs.audit.emit(s.log, s.fields, "fs.upload", self.path, "EIO", True, error="internal error")
            raise StorageError("Internal server error", path=self.path) from exc
        finally:
            self._finish()
        vfs.audit.emit(s.log, s.fields, "fs.upload", self.path, "ok", True, size=committed.size,
                       sha256=committed.checksums.sha256, seconds=round(time.time() - self.started, 3))
        return result.inode

    async def abort(self, reason: str = "aborted") -> None:
        """Discard the upload: the file keeps the content it had (or stays absent)."""
        if self.done:
            return
        self.done = True
        s = self.session
        try:
            await self.writer.abort()
            if self.vfs.reserves_blobs:
                await self.vfs.md.abandon_blob(self.writer.blob_id)
        finally:
            self._finish()
            self.vfs.audit.emit(s.log, s.fields, "fs.upload", self.path, reason, True, size=self.writer.size)

    def _finish(self) -> None:
        self.vfs.release(self.base)
        self.vfs.untrack(self)

    def attrs(self) -> Inode:
        now = time.time()
        return Inode(self.ino or 0, "file", self.writer.size, self.mode, self.mtime or now, self.atime or now, now,
                     1, None, None, self.session.user.id)


class Download:
    def __init__(self, vfs: VirtualFS, session: Session, real: Parts, inode: Inode, reader: BlobReader | None) -> None:
        self.vfs = vfs
        self.session = session
        self.real = real
        self.inode = inode
        self.reader = reader
        self.sent = 0
        self.started = time.time()
        self.done = False
        vfs.lease(inode.blob_id)
        vfs.track(self)

    @property
    def path(self) -> str:
        return paths.to_client(self.real)

    def local_file(self) -> int | None:
        """The blob's open file descriptor when the store keeps blobs as local files (for
        ``sendfile``); None otherwise. Reading it bypasses :meth:`read`: set :attr:`sent`."""
        fileno = getattr(self.reader, "fileno", None)
        return int(fileno()) if fileno is not None else None

    async def read(self, offset: int, size: int) -> bytes:
        if self.reader is None or offset >= self.inode.size:
            return b""
        data = await self.reader.read(offset, min(size, self.inode.size - offset))
        self.sent += len(data)
        return data

    async def close(self, outcome: str = "ok") -> None:
        if self.done:
            return
        self.done = True
        try:
            if self.reader is not None:
                await self.reader.close()
        finally:
            self.vfs.release(self.inode.blob_id)
            self.vfs.untrack(self)
            s = self.session
            self.vfs.audit.emit(s.log, s.fields, "fs.download", self.path, outcome, True, bytes=self.sent,
                                size=self.inode.size, seconds=round(time.time() - self.started, 3))

    def attrs(self) -> Inode:
        return self.inode



class _Change:
    """The context of :meth:`Upload._changing`: a failed change is remembered, so close() aborts."""

    __slots__ = ("upload",)

    def __init__(self, upload: Upload) -> None:
        self.upload = upload

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError):
            self.upload.failed = self.upload.failed or exc
