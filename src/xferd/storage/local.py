"""Blobs as files on a local disk: the embedded default.

Layout under the store's root::

    .tmp/<blob-id>                  a blob being written, or committed and about to be moved
    <tenant-id>/<id[:2]>/<blob-id>  a committed blob, immutable

A blob is committed in this order: its bytes and its ``.tmp`` entry are made durable (fsync of the
file and of ``.tmp``), then the metadata transaction makes it live, then it is renamed into place
(:meth:`LocalBlobWriter.publish`, no fsync). A crash before the transaction leaves a temporary file
that no row names: deleted at the next start. A crash after it leaves a live blob in ``.tmp``:
renamed into place at the next start (:meth:`LocalBlobStore.recover_temporary`), and readable
there meanwhile (:meth:`LocalBlobStore.open` looks in ``.tmp`` too). So no upload needs a pending
row in the metadata store, and none is ever visible before its commit.

A writer's file I/O and hashing run in a "lane": a single-thread executor, so one upload's chunks
are written and hashed in order while the event loop only queues them. Contiguous writes are batched
to about 1 MiB per hop, and at most ``max_buffered`` bytes per upload wait in a lane (backpressure),
so memory per upload is bounded. Data written exactly where the stream is (the usual case) is hashed
(SHA-256) as it goes, in a second thread beside the write; anything else (writes out of order, a
resumed upload, a truncation) is hashed once, from the file, at commit. MD5 is not computed here:
at about 600 MB/s per core it would cap every upload; the VirtualFS computes it once, on first ask.

The commit (the last bytes, the checksum, the fsyncs, then the metadata transaction) runs in the
lane too, as one job. A small upload's commit runs on the event loop's thread instead while the
store's commits take less than :data:`COMMIT_INLINE_LIMIT` on average (:mod:`xferd.inline`): on
fast storage the two thread wake-ups of a hop cost as much as the commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import itertools
import os
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from xferd.errors import NoSpace, NotFound, QuotaExceeded, StorageError
from xferd.inline import InlineBudget
from xferd.metadata.models import Checksums
from xferd.storage.base import Capabilities, Committed, Then

T = TypeVar("T")
log = structlog.get_logger("xferd.storage")

BATCH = 1024 * 1024
HASH_BLOCK = 1024 * 1024
# Batches smaller than this are hashed in the write lane itself: a hop to the hash lane costs more.
INLINE_HASH = 256 * 1024
# An upload of at most this many bytes commits on the event loop's thread while blob commits (the
# last write, SHA-256, fsync of the file and of .tmp) take less than COMMIT_INLINE_LIMIT seconds on
# average (xferd.inline); otherwise, and for larger ones, in its lane.
INLINE_COMMIT = 64 * 1024
COMMIT_INLINE_LIMIT = 200e-6


def _storage_error(exc: OSError, what: str) -> Exception:
    """Translate a disk error once, here: a full disk is ENOSPC for the client, the rest EIO."""
    if exc.errno == errno.ENOSPC:
        return NoSpace()
    if exc.errno == errno.EDQUOT:
        return QuotaExceeded()
    return StorageError(f"{what}: {exc.strerror}")


class _Extents:
    """The byte ranges a writer has written, merged; usually one range."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        ranges = self.ranges
        if ranges and ranges[-1][0] <= start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)
            return
        ranges.append([start, end])
        ranges.sort()
        merged: list[list[int]] = []
        for s, e in ranges:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.ranges = merged

    def clip(self, size: int) -> None:
        self.ranges = [[s, min(e, size)] for s, e in self.ranges if s < size]

    def gaps(self, limit: int) -> list[tuple[int, int]]:
        out, pos = [], 0
        for s, e in self.ranges:
            if s >= limit:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < limit:
            out.append((pos, limit))
        return out


def _pass_on(done: concurrent.futures.Future[T], committed: Committed,
             outcome: concurrent.futures.Future[tuple[Committed, Any]]) -> None:
    """The step after a commit is over: its result, with the commit's, or its failure."""
    if done.cancelled():  # nothing cancels it today; the waiter must hear of it all the same
        outcome.set_exception(StorageError("the step after the blob's commit was cancelled"))
        return
    exc = done.exception()
    if exc is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result((committed, done.result()))


def _update(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore, tenant_id: int, blob_id: str, fd: int, tmp_path: str,
                 lane: concurrent.futures.ThreadPoolExecutor, base: str | None, base_size: int) -> None:
        self.blob_id = blob_id
        self._store = store
        self._tenant_id = tenant_id
        self._fd = fd
        self._tmp = tmp_path
        self._lane = lane
        self._base = base
        self._base_limit = base_size if base is not None else 0
        self._size = self._base_limit
        self._extents = _Extents()
        self._batch: list[bytes] = []
        self._batch_start = 0
        self._batch_len = 0
        self._inflight: deque[tuple[asyncio.Future[None], int]] = deque()
        self._inflight_bytes = 0
        self._error: BaseException | None = None
        # Touched only in the lane thread, in order:
        self._sha256 = hashlib.sha256()
        # SHA-256 runs beside the write in a second thread (both release the GIL), one batch at a
        # time: at most two batches are held, and the upload runs at the slower of the two.
        self._hash_lane = store.hash_lane()
        self._hash_pending: concurrent.futures.Future[None] | None = None
        self._hash_pos = 0
        self._hash_valid = True
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    # -- the event loop side ---------------------------------------------------------------------

    async def write(self, offset: int, data: bytes) -> None:
        self._raise_pending_error()
        if not data:
            return
        end = offset + len(data)
        if self._batch and offset == self._batch_start + self._batch_len and self._batch_len < BATCH:
            self._batch.append(data)
            self._batch_len += len(data)
        else:
            self._flush_batch()
            self._batch, self._batch_start, self._batch_len = [data], offset, len(data)
        self._extents.add(offset, end)
        if end > self._size:
            self._size = end
        if self._batch_len >= BATCH:
            self._flush_batch()
        while self._inflight_bytes > self._store.max_buffered and self._inflight:
            await self._wait_oldest()

    async def read(self, offset: int, size: int) -> bytes:
        await self._drain()
        end = min(offset + size, self._size)
        if end <= offset:
            return b""
        return await self._in_lane(os.pread, self._fd, end - offset, offset)

    async def flush(self) -> None:
        await self._drain()
        if self._store.fsync:
            await self._in_lane(os.fsync, self._fd)

    async def truncate(self, size: int) -> None:
        await self._drain()
        await self._in_lane(self._truncate, size)
        self._size = size
        self._extents.clip(size)
        self._base_limit = min(self._base_limit, size)

    async def materialize(self) -> None:
        """Copy the base's bytes in now, so reads through this writer see them."""
        if self._base is not None and self._base_limit:
            await self._drain()
            await self._in_lane(self._fill_from_base, self._extents.gaps(self._base_limit))
            self._extents.add(0, self._base_limit)

    async def commit(self) -> Committed:
        # One hop for the common small upload: the last batch, the checksums, fsync and publishing
        # all run in a single lane job.
        committed, _ = await self._commit(None)
        return committed

    async def commit_then(self, then: Then[T]) -> tuple[Committed, T]:
        return await self._commit(then)

    async def _commit(self, then: Then[T] | None) -> tuple[Committed, Any]:
        last = self._take_batch()
        gaps = self._extents.gaps(self._base_limit) if self._base is not None else []
        outcome: concurrent.futures.Future[tuple[Committed, Any]] | None = None
        try:
            while self._inflight:
                await self._wait_oldest()
            self._raise_pending_error()
            outcome = concurrent.futures.Future()
            if self._size <= INLINE_COMMIT and not gaps and self._store.commit_budget.allows():
                # Fast storage: two thread wake-ups would cost as much as the commit itself.
                self._commit_here(outcome, last, gaps, then)
                if outcome.done():  # else the metadata transaction went to its own thread
                    return outcome.result()
            else:
                self._lane.submit(self._commit_here, outcome, last, gaps, then)
            return await asyncio.wrap_future(outcome)
        except asyncio.CancelledError:
            # Once the lane has started the commit it owns the file, and ``then`` may commit it:
            # the blob stays in .tmp for the store's recovery to decide (the module's docstring).
            if outcome is not None and not outcome.cancelled():
                raise
            await self.abort()
            raise
        except BaseException:
            await self.abort()
            raise

    def _commit_here(self, outcome: concurrent.futures.Future[tuple[Committed, Any]],
                     last: tuple[int, list[bytes]] | None, gaps: list[tuple[int, int]],
                     then: Then[T] | None) -> None:
        """The commit, in the lane (or on the loop, for a small one on fast storage)."""
        if not outcome.set_running_or_notify_cancel():
            return  # the wait was cancelled before the lane got here; the caller aborts
        try:
            with self._store.commit_budget.timed():
                if last is not None:
                    self._write_at(*last)
                committed = Committed(self._size, self._finish(gaps))
                self._settle()
            if then is None:
                outcome.set_result((committed, None))
                return
            after = then(committed)
        except BaseException as exc:
            # The file is closed here: a waiter cancelled meanwhile no longer aborts it (its bytes
            # stay in .tmp until the next start).
            self._close_fd()
            outcome.set_exception(exc)
            return
        after.add_done_callback(lambda done: _pass_on(done, committed, outcome))

    def publish(self) -> None:
        if not self._store.capabilities.publish_after_commit:
            return
        try:
            self._store.place(self._tmp, self._tenant_id, self.blob_id)
        except OSError as exc:  # still readable from .tmp; the next start moves it
            log.warning("storage.publish_failed", blob=self.blob_id, error=exc.strerror)

    async def abort(self) -> None:
        self._batch = []
        for fut, _ in list(self._inflight):
            with contextlib.suppress(OSError):  # the upload is discarded; its write errors no longer matter
                await fut
        self._inflight.clear()
        self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def _raise_pending_error(self) -> None:
        while self._inflight and self._inflight[0][0].done():
            fut, nbytes = self._inflight.popleft()
            self._inflight_bytes -= nbytes
            exc = fut.exception()
            if exc is not None and self._error is None:
                self._error = exc
        if self._error is not None:
            raise self._error

    def _take_batch(self) -> tuple[int, list[bytes]] | None:
        # The chunks go to the lane as they are (pwritev): joining them would copy every byte once
        # more on the event loop's thread.
        if not self._batch:
            return None
        chunks, start = self._batch, self._batch_start
        self._batch, self._batch_len = [], 0
        return start, chunks

    def _flush_batch(self) -> None:
        batch = self._take_batch()
        if batch is None:
            return
        start, chunks = batch
        nbytes = sum(map(len, chunks))
        fut = asyncio.get_running_loop().run_in_executor(self._lane, self._write_at, start, chunks)
        self._inflight.append((fut, nbytes))
        self._inflight_bytes += nbytes

    async def _wait_oldest(self) -> None:
        fut, nbytes = self._inflight.popleft()
        self._inflight_bytes -= nbytes
        try:
            await fut
        except BaseException as exc:
            self._error = self._error or exc
            raise

    async def _drain(self) -> None:
        self._flush_batch()
        while self._inflight:
            await self._wait_oldest()
        self._raise_pending_error()

    async def _in_lane(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._lane, fn, *args)

    def _close_fd(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    # -- the lane side ---------------------------------------------------------------------------

    def _write_at(self, offset: int, chunks: list[bytes]) -> None:
        total = sum(map(len, chunks))
        try:
            written = os.pwritev(self._fd, chunks, offset)
            if written < total:  # a short write (rare): finish it piece by piece
                view = memoryview(b"".join(chunks))[written:]
                pos = offset + written
                while view:
                    n = os.pwrite(self._fd, view, pos)
                    view, pos = view[n:], pos + n
        except OSError as exc:
            raise _storage_error(exc, "writing a blob") from exc
        if offset == self._hash_pos:
            self._hash_done()
            if total < INLINE_HASH:
                _update(self._sha256, chunks)
            else:
                self._hash_pending = self._hash_lane.submit(_update, self._sha256, chunks)
            self._hash_pos += total
        elif offset < self._hash_pos:
            self._hash_valid = False

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise _storage_error(exc, "truncating a blob") from exc
        if size < self._hash_pos:
            self._hash_valid = False

    def _fill_from_base(self, gaps: list[tuple[int, int]]) -> None:
        if not gaps or self._base is None:
            return
        try:
            src = self._store.open_fd(self._tenant_id, self._base)
        except NotFound as exc:
            raise NotFound("the file's previous content is gone") from exc
        try:
            for start, end in gaps:
                pos = start
                while pos < end:
                    copied = os.copy_file_range(src, self._fd, end - pos, pos, pos)
                    if copied == 0:
                        break
                    pos += copied
        except OSError as exc:
            raise _storage_error(exc, "copying a blob") from exc
        finally:
            os.close(src)
        if gaps[0][0] < self._hash_pos:
            self._hash_valid = False

    def _hash_done(self) -> None:
        if self._hash_pending is not None:
            pending, self._hash_pending = self._hash_pending, None
            pending.result()

    def _finish(self, gaps: list[tuple[int, int]]) -> Checksums:
        self._hash_done()
        self._fill_from_base(gaps)
        try:
            if os.fstat(self._fd).st_size != self._size:
                os.ftruncate(self._fd, self._size)
            if not (self._hash_valid and self._hash_pos == self._size):
                self._rehash()
            if self._store.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise _storage_error(exc, "finishing a blob") from exc
        return Checksums(self._sha256.hexdigest())

    def _rehash(self) -> None:
        self._hash_done()
        self._sha256 = hashlib.sha256()
        pos = 0
        while pos < self._size:
            chunk = os.pread(self._fd, min(HASH_BLOCK, self._size - pos), pos)
            if not chunk:
                break
            self._sha256.update(chunk)
            pos += len(chunk)
        self._hash_pos = pos

    def _settle(self) -> None:
        """Make the temporary file's name durable; the rename is publish()'s. A store that does not
        publish after the commit moves the blob into place now."""
        self._close_fd()
        store = self._store
        try:
            if store.capabilities.publish_after_commit:
                if store.fsync:
                    os.fsync(store.tmp_dir_fd)
                return
            folder = store.place(self._tmp, self._tenant_id, self.blob_id)
            if store.fsync:
                _fsync_dir(folder)
        except OSError as exc:
            raise _storage_error(exc, "committing a blob") from exc


def _fsync_dir(path: str | Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LocalBlobReader:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, offset: int, size: int) -> bytes:
        # Page-cache reads of a few hundred KiB cost tens of microseconds: cheaper inline than a hop.
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise _storage_error(exc, "reading a blob") from exc

    async def close(self) -> None:
        os.close(self._fd)

    def fileno(self) -> int:
        """The open file, for frontends that send it with ``sendfile``."""
        return self._fd


class LocalBlobStore:
    writer_class = LocalBlobWriter

    def __init__(self, root: Path, fsync: bool = True, max_buffered: int = 8 * 1024 * 1024, lanes: int = 2,
                 publish_after_commit: bool = True) -> None:
        # publish_after_commit=False: blobs move into place before the metadata commit, and each
        # upload is reserved as pending there (the protocol of stores shared between nodes).
        self.capabilities = Capabilities(random_write=True, server_side_copy=True,
                                         publish_after_commit=publish_after_commit)
        self.root = root
        self.fsync = fsync
        self.max_buffered = max_buffered
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Plain strings on the per-upload path: pathlib costs tens of microseconds per file.
        self.tmp_dir = str(self._tmp)
        # Open for the store's life: every commit fsyncs .tmp (an open and a close fewer each).
        self.tmp_dir_fd = os.open(self.tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root = str(root)
        self._lanes = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"xferd-blob{i}")
                       for i in range(lanes)]
        self._next_lane = itertools.cycle(self._lanes)
        self._hash_lanes = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"xferd-hash{i}")
                            for i in range(lanes)]
        self._next_hash_lane = itertools.cycle(self._hash_lanes)
        self.commit_budget = InlineBudget(COMMIT_INLINE_LIMIT)

    def new_blob_id(self) -> str:
        return secrets.token_hex(16)

    def path_of(self, tenant_id: int, blob_id: str) -> Path:
        return Path(self._final(tenant_id, blob_id)[1])

    def _final(self, tenant_id: int, blob_id: str) -> tuple[str, str]:
        """A committed blob's folder and file name."""
        folder = f"{self._root}/{tenant_id}/{blob_id[:2]}"
        return folder, f"{folder}/{blob_id}"

    def place(self, tmp: str, tenant_id: int, blob_id: str) -> str:
        """Move a blob from ``tmp`` to its final name, making its folder when it is the first
        there; returns the folder."""
        folder, final = self._final(tenant_id, blob_id)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            os.makedirs(folder, exist_ok=True)
            os.rename(tmp, final)
        return folder

    def hash_lane(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread a new writer hashes in (beside its write lane)."""
        return next(self._next_hash_lane)

    async def create(self, tenant_id: int, blob_id: str, base: str | None = None, base_size: int = 0,
                     materialize: bool = False) -> LocalBlobWriter:
        tmp = f"{self.tmp_dir}/{blob_id}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _storage_error(exc, "creating a blob") from exc
        writer = self.writer_class(self, tenant_id, blob_id, fd, tmp, next(self._next_lane), base or None, base_size)
        if materialize:
            try:
                await writer.materialize()
            except BaseException:
                await writer.abort()
                raise
        return writer

    def open_fd(self, tenant_id: int, blob_id: str) -> int:
        """A committed blob's file, open for reading. One just committed may still be in .tmp
        (publish() renames it right after the commit): looked for there too, then in place once
        more in case the rename ran in between."""
        final = self._final(tenant_id, blob_id)[1]
        for path in (final, f"{self.tmp_dir}/{blob_id}", final):
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _storage_error(exc, "opening a blob") from exc
        raise NotFound("the file's content is missing from storage")

    async def open(self, tenant_id: int, blob_id: str) -> LocalBlobReader:
        fd = self.open_fd(tenant_id, blob_id)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return LocalBlobReader(fd)

    async def delete(self, tenant_id: int, blob_id: str) -> None:
        for path in (self.path_of(tenant_id, blob_id), self._tmp / blob_id):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def blob_ids(self) -> set[str]:
        ids = {p.name for p in self._tmp.iterdir()}
        for tenant_dir in self.root.iterdir():
            if tenant_dir.name == ".tmp" or not tenant_dir.is_dir():
                continue
            for prefix in tenant_dir.iterdir():
                ids.update(p.name for p in prefix.iterdir())
        return ids

    def temporary_ids(self) -> list[str]:
        """The blobs in .tmp: unfinished uploads, or committed ones not yet moved into place."""
        return [p.name for p in self._tmp.iterdir()]

    def recover_temporary(self, live: dict[str, int]) -> tuple[int, int]:
        """At start, for a daemon that owns the store alone: move the committed blobs among the
        temporary ones (``live``: blob id to tenant id, from the metadata store) into place, and
        delete the rest, which can only be uploads a stopped or crashed run never finished.
        Returns (moved, deleted)."""
        moved = deleted = 0
        for path in list(self._tmp.iterdir()):
            tenant_id = live.get(path.name)
            if tenant_id is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted += 1
                continue
            folder = self.place(str(path), tenant_id, path.name)
            if self.fsync:
                _fsync_dir(folder)
            moved += 1
        return moved, deleted

    async def space(self) -> tuple[int, int] | None:
        """Total and free bytes of the disk under the store."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    async def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True)
        for lane in self._hash_lanes:
            lane.shutdown(wait=True)
        if self.tmp_dir_fd >= 0:
            os.close(self.tmp_dir_fd)
            self.tmp_dir_fd = -1
