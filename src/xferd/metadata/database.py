"""Runs SQL work in one dedicated thread, a whole transaction per call.

A store method hands a synchronous function to :meth:`Database.read` or :meth:`Database.write`;
the function runs every statement of its transaction in the database thread and returns plain
records. One VirtualFS operation is therefore one thread hop (about 50 us), whatever its number
of statements, and the event loop never waits on SQLite's locks or fsyncs.

Point lookups on hot paths (a path's resolution, a stat, a login) use :meth:`Database.lookup`
instead, answered inline on the event loop's thread, because in WAL mode a reader never waits for
a writer: on the writing connection when it is free this instant (its page cache survives its own
commits, while any other connection's is dropped after every commit, which costs a lookup tens of
microseconds), else on a read-only connection of the loop's own. A read can still meet a lock in
the cases SQLite lists for WAL (another connection in exclusive locking mode, which xferd never
uses, or the recovery after a crash, which runs when the daemon opens the database): the read-only
connection then gives up at once (``busy_timeout`` 0) and the lookup runs in the database thread.

:meth:`Database.queue` submits a write without waiting for it; the database thread runs work in
order, so anything submitted later sees it. A worker thread that needs a transaction right
after its own work (a blob store's thread, committing an upload) runs it itself when nothing
submitted earlier is still waiting (:meth:`Database.submit_write`), saving a hop; one lock keeps
the writing connection to one thread at a time. The event loop's thread does the same for an
upload's commit and other transactions of a few statements (:meth:`Database.write_small`) while
write transactions are fast (their running average under :data:`WRITE_INLINE_LIMIT`, see
:mod:`xferd.inline`) and the lock is free that instant: it never waits for the lock, nor for
SQLite's write lock held by another process (the CLI), nor runs a transaction on a database whose
commits take long.

SQL errors are translated here, at one boundary: a busy or broken database becomes
:class:`~xferd.errors.StorageError`; the domain errors a function raises pass through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from xferd.errors import StorageError, XferdError
from xferd.inline import InlineBudget
from xferd.metadata import schema

T = TypeVar("T")
log = structlog.get_logger("xferd.metadata")

Work = Callable[[sqlite3.Connection], T]
# A write transaction runs on the event loop's thread only while they take less than this on average.
WRITE_INLINE_LIMIT = 300e-6
# How long the database thread waits for SQLite's write lock when another process holds it.
BUSY_TIMEOUT_MS = 10000
# The WAL is copied back into the database (a checkpoint) by the database thread after this many
# commits, never by the committing thread: SQLite's automatic checkpoint (every 1000 pages) would
# run inside whichever COMMIT crossed the mark, on the event loop too, and it writes megabytes and
# fsyncs the database file.
CHECKPOINT_EVERY = 64  # about the 1000 pages of SQLite's own default, at some 14 pages per new file


class SqliteDatabase:
    """One SQLite connection in WAL mode, owned by one thread."""

    dialect = "sqlite"

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xferd-sql")
        self._lock = threading.Lock()  # whoever holds it uses the writing connection
        self._waiting = 0  # work submitted to the database thread and not yet begun
        self._waiting_lock = threading.Lock()
        self._loop_thread: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._thread_id: int | None = None
        self.write_budget = InlineBudget(WRITE_INLINE_LIMIT)
        self._commits = 0  # since the last checkpoint was queued

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the database thread checkpoints (_checkpoint)
        self._conn = conn
        self._thread_id = threading.get_ident()
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
            current = 0
            if exists:
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                current = row[0] if row else 0
            if current > schema.SCHEMA_VERSION:
                raise StorageError(
                    f"metadata database {self.path} has schema version {current}, newer than this "
                    f"xferd knows ({schema.SCHEMA_VERSION}): upgrade xferd")
            if current < schema.SCHEMA_VERSION:
                for stmt in schema.statements(self.dialect, current):
                    conn.execute(stmt)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (schema.SCHEMA_VERSION,))
                log.info("metadata.migrated", path=str(self.path), from_version=current,
                         to_version=schema.SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        self._loop_thread = threading.get_ident()
        await self._submit(self._connect)
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.0)
        reader.execute("PRAGMA query_only=ON")
        reader.execute("PRAGMA busy_timeout=0")
        self._reader = reader

    def open_sync(self) -> None:
        self._to_thread(self._connect).result()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._submit(self._close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        self._to_thread(self._close).result()
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def read(self, work: Work[T]) -> T:
        return await self._submit(self._run, work, False)

    async def write(self, work: Work[T]) -> T:
        return await self._submit(self._run, work, True)

    async def lookup(self, work: Work[T]) -> T:
        """A small read, answered inline on the event loop's thread when SQLite is not busy."""
        if self._conn is not None and self._lock.acquire(blocking=False):
            try:
                return self._run(work, False)
            finally:
                self._lock.release()
        reader = self._reader
        if reader is not None:
            try:
                return work(reader)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    log.error("metadata.failed", error=str(exc), error_type=type(exc).__name__)
                    raise StorageError(f"metadata store failed: {exc}") from exc
        return await self.read(work)

    async def write_small(self, work: Work[T]) -> T:
        """A write transaction of a few statements (one entry, one inode, one lock): right here on
        the event loop's thread when :meth:`submit_write` would run it there, else as :meth:`write`."""
        done = self.submit_write(work)
        if done.done():
            return done.result()
        return await asyncio.wrap_future(done)

    def queue(self, work: Work[T]) -> asyncio.Future[T]:
        """Submit a write transaction without waiting for it."""
        return asyncio.wrap_future(self._to_thread(self._run, work, True))

    def submit_write(self, work: Work[T]) -> concurrent.futures.Future[T]:
        """Submit a write transaction from any thread. From a worker thread (not the event loop's),
        it runs right there, at once, when no work submitted earlier is still waiting to begin
        (waiting for a transaction in progress, if any): the returned future is then done. From
        the event loop's thread, likewise when write transactions are fast and no transaction is
        in progress; otherwise it goes to the database thread."""
        if threading.get_ident() != self._loop_thread:
            with self._lock:
                if not self._waiting:
                    return self._run_now(work, begun=False)
        elif self.write_budget.allows() and not self._waiting and self._lock.acquire(blocking=False):
            try:
                # Nothing was submitted before the lock was taken, and no other process holds
                # SQLite's write lock (the loop does not wait for it either).
                if not self._waiting and self._begin_now():
                    return self._run_now(work, begun=True)
            finally:
                self._lock.release()
        return self._to_thread(self._run, work, True)

    def read_sync(self, work: Work[T]) -> T:
        done: concurrent.futures.Future[T] = self._to_thread(self._run, work, False)
        return done.result()

    def write_sync(self, work: Work[T]) -> T:
        done: concurrent.futures.Future[T] = self._to_thread(self._run, work, True)
        return done.result()

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._to_thread(fn, *args))

    def _to_thread(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        with self._waiting_lock:
            self._waiting += 1
        try:
            return self._executor.submit(self._locked, fn, *args)
        except BaseException:  # not submitted (the executor is shut down): nothing waits after all
            with self._waiting_lock:
                self._waiting -= 1
            raise

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            with self._waiting_lock:
                self._waiting -= 1
            return fn(*args)

    def _begin_now(self) -> bool:
        """Begin a write transaction if SQLite's write lock is free this instant (another process,
        such as the CLI, may hold it); the caller holds the lock."""
        conn = self._conn
        if conn is None:
            return False
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.Error:
            return False  # the database thread will wait for it, or report the error
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _run(self, work: Work[T], writing: bool, begun: bool = False) -> T:
        """Run ``work`` on the writing connection; the caller holds the lock. ``begun``: the
        write transaction was begun already (:meth:`_begin_now`)."""
        conn = self._conn
        if conn is None:
            raise StorageError("metadata database is closed")
        try:
            if not writing:
                return work(conn)
            with self.write_budget.timed():
                if not begun:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY:
                self._commits = 0
                self._queue_checkpoint()
            return result
        except XferdError:
            raise
        except sqlite3.Error as exc:
            log.error("metadata.failed", error=str(exc), error_type=type(exc).__name__)
            raise StorageError(f"metadata store failed: {exc}") from exc

    def _run_now(self, work: Work[T], begun: bool) -> concurrent.futures.Future[T]:
        """``work``'s write transaction, run in this thread now; its outcome as a done future."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            done.set_result(self._run(work, True, begun))
        except BaseException as exc:
            done.set_exception(exc)
        return done

    def _queue_checkpoint(self) -> None:
        with contextlib.suppress(RuntimeError):  # closing: the last connection's close checkpoints
            self._to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database as far as readers allow (PASSIVE: it waits for
        nobody); in the database thread, under the lock."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the WAL only grows meanwhile; the next one tries again
            log.warning("metadata.checkpoint_failed", error=str(exc))
