"""xferd.metadata.database: which thread runs what, on which connection, in which order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from xferd.metadata.database import CHECKPOINT_EVERY, SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "m.db")
    await database.open()
    await database.write(lambda conn: conn.execute("CREATE TABLE t (n INTEGER, thread INTEGER)"))
    yield database
    await database.close()


def insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?, ?)", (n, threading.get_ident()))
        return threading.get_ident()
    return work


async def numbers(db: SqliteDatabase) -> list[int]:
    return [n for (n,) in await db.read(lambda conn: conn.execute("SELECT n FROM t ORDER BY rowid").fetchall())]


def hold(db: SqliteDatabase) -> tuple[threading.Event, threading.Event, concurrent.futures.Future[None]]:
    """A write transaction in the database thread that stays open until released."""
    begun, release = threading.Event(), threading.Event()

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (0, 0)")
        begun.set()
        release.wait(10)
    held = db._to_thread(db._run, work, True)  # in the database thread
    assert begun.wait(10)
    return begun, release, held


class TestSubmitWrite:
    async def test_a_worker_thread_runs_its_transaction_itself_when_nothing_waits(self, db: SqliteDatabase) -> None:
        """From a worker thread with nothing queued, the transaction runs in that thread and is done on return."""
        def from_worker() -> tuple[bool, int, int]:
            done = db.submit_write(insert(1))
            return done.done(), done.result(), threading.get_ident()
        finished, ran_in, worker = await asyncio.to_thread(from_worker)
        assert (True, worker, [1]) == (finished, ran_in, await numbers(db))

    async def test_the_loop_runs_a_transaction_itself_while_writes_are_fast(self, db: SqliteDatabase) -> None:
        """From the event loop's thread, with write transactions fast and nothing in progress, the
        transaction runs right there and is done on return."""
        db.write_budget.average = 0.0
        done = db.submit_write(insert(1))
        assert (True, threading.get_ident(), [1]) == (done.done(), done.result(), await numbers(db))

    async def test_the_loop_hands_transactions_over_while_writes_are_slow(self, db: SqliteDatabase) -> None:
        """From the event loop's thread, with write transactions slow, the transaction goes to the
        database thread."""
        db.write_budget.average = 1.0
        ran_in = await asyncio.wrap_future(db.submit_write(insert(1)))
        assert threading.get_ident() != ran_in

    async def test_the_loop_never_waits_for_a_transaction_in_progress(self, db: SqliteDatabase) -> None:
        """With writes fast but another thread's transaction open, the loop's goes to the database
        thread (the loop does not wait for the lock) and runs after it."""
        db.write_budget.average = 0.0
        _, release, held = hold(db)
        mine = db.submit_write(insert(2))
        not_done = not mine.done()
        release.set()
        await asyncio.wrap_future(held)
        ran_in = await asyncio.wrap_future(mine)
        assert (True, True, [0, 2]) == (not_done, threading.get_ident() != ran_in, await numbers(db))

    async def test_the_loop_never_waits_for_another_process_holding_the_write_lock(self, db: SqliteDatabase) -> None:
        """With writes fast but SQLite's write lock held by another connection (another process, such
        as the CLI), the loop's transaction goes to the database thread at once, which waits for the
        lock and then commits it; the connection's busy timeout is back for that thread."""
        db.write_budget.average = 0.0
        other = sqlite3.connect(db.path, isolation_level=None, timeout=10.0)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        mine = db.submit_write(insert(2))
        returned_after = time.monotonic() - started
        not_done = not mine.done()
        await asyncio.sleep(0.2)  # the database thread is waiting for the lock meanwhile
        still_waiting = not mine.done()
        other.execute("COMMIT")
        other.close()
        ran_in = await asyncio.wrap_future(mine)
        assert (True, True, True, [2]) == (not_done, still_waiting, threading.get_ident() != ran_in,
                                          await numbers(db))
        assert returned_after < 2.0  # not a speed check: waiting for the lock would take the 10 s busy timeout

    async def test_a_slow_transaction_sends_the_next_ones_to_the_database_thread(self, db: SqliteDatabase) -> None:
        """Every write transaction is timed: after one that took long (a disk that got busy), the
        loop's next transaction goes to the database thread."""
        db.write_budget.average = 0.0

        def slow(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (9, 0)")
            time.sleep(0.01)
        await db.write(slow)
        ran_in = await asyncio.wrap_future(db.submit_write(insert(1)))
        assert threading.get_ident() != ran_in

    async def test_work_submitted_earlier_runs_first(self, db: SqliteDatabase) -> None:
        """A worker's transaction never overtakes work queued before it: it is queued behind it."""
        gate = threading.Event()
        db._executor.submit(gate.wait, 10)  # the database thread is busy (outside any transaction)
        queued = db.queue(insert(1))

        def from_worker() -> concurrent.futures.Future[int]:
            return db.submit_write(insert(2))
        mine = await asyncio.to_thread(from_worker)
        assert not mine.done()
        gate.set()
        await queued
        await asyncio.wrap_future(mine)
        assert [1, 2] == await numbers(db)

    async def test_a_worker_waits_for_a_transaction_in_progress(self, db: SqliteDatabase) -> None:
        """With nothing queued but a transaction open, the worker's runs after it, in the worker's thread."""
        _, release, held = hold(db)
        loop = asyncio.get_running_loop()
        mine = loop.run_in_executor(None, lambda: db.submit_write(insert(2)).result())
        await asyncio.sleep(0.05)
        assert not mine.done()
        release.set()
        await asyncio.wrap_future(held)
        await mine
        assert [0, 2] == await numbers(db)


class TestLookup:
    async def test_lookup_while_a_transaction_is_open_does_not_wait(self, db: SqliteDatabase) -> None:
        """A lookup answers at once during another thread's transaction, from the last committed state."""
        await db.write(insert(7))
        _, release, held = hold(db)
        try:
            seen = await asyncio.wait_for(db.lookup(lambda conn: conn.execute("SELECT n FROM t").fetchall()), 5)
        finally:
            release.set()
            await asyncio.wrap_future(held)
        assert [(7,)] == seen

    async def test_lookup_when_idle_sees_the_last_commit(self, db: SqliteDatabase) -> None:
        """With the writing connection free, a lookup reads it, and sees what was just committed."""
        await db.write(insert(7))
        assert [(7,)] == await db.lookup(lambda conn: conn.execute("SELECT n FROM t").fetchall())


class TestWriteSmall:
    async def test_on_the_loop_while_writes_are_fast(self, db: SqliteDatabase) -> None:
        """A small write runs on the loop's thread while write transactions are fast."""
        db.write_budget.average = 0.0
        assert (threading.get_ident(), [1]) == (await db.write_small(insert(1)), await numbers(db))

    async def test_in_the_database_thread_while_writes_are_slow(self, db: SqliteDatabase) -> None:
        """A small write goes to the database thread while write transactions are slow."""
        db.write_budget.average = 1.0
        assert threading.get_ident() != await db.write_small(insert(1))

    async def test_behind_work_queued_before_it(self, db: SqliteDatabase) -> None:
        """A small write never overtakes work queued before it, fast transactions or not."""
        db.write_budget.average = 0.0
        gate = threading.Event()
        db._executor.submit(gate.wait, 10)
        queued = db.queue(insert(1))
        mine = asyncio.ensure_future(db.write_small(insert(2)))
        await asyncio.sleep(0.02)
        not_done = not mine.done()
        gate.set()
        await queued
        await mine
        assert (True, [1, 2]) == (not_done, await numbers(db))

    async def test_errors_come_through(self, db: SqliteDatabase) -> None:
        """A small write that fails on the loop raises its error and leaves nothing."""
        db.write_budget.average = 0.0

        def failing(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (5, 0)")
            raise FileExistsError("taken")
        with pytest.raises(FileExistsError):
            await db.write_small(failing)
        assert [] == await numbers(db)


class TestCheckpoints:
    async def test_the_database_thread_checkpoints_and_commits_never_do(self, db: SqliteDatabase,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """SQLite's automatic checkpoint is off on the writing connection; after every
        CHECKPOINT_EVERY commits, from the loop or elsewhere, the database thread checkpoints the
        WAL, and the WAL does not grow past what those commits wrote."""
        db.write_budget.limit, db.write_budget.average = float("inf"), 0.0  # commits on the loop
        ran_in: list[int] = []
        real = db._checkpoint

        def checkpoint() -> None:
            ran_in.append(threading.get_ident())
            real()
        monkeypatch.setattr(db, "_checkpoint", checkpoint)
        for n in range(3 * CHECKPOINT_EVERY + 1):
            await db.write_small(insert(n))
        await db.read(lambda conn: None)  # what was queued has run
        automatic = await db.read(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        wal = db.path.with_name(db.path.name + "-wal").stat().st_size
        assert (0, 3, {False}) == (automatic, len(ran_in), {t == threading.get_ident() for t in ran_in})
        assert wal < 2 * CHECKPOINT_EVERY * 2 * 4200  # about two pages per commit, restarted at each checkpoint

    async def test_work_refused_after_close_leaves_nothing_waiting(self, tmp_path: Path) -> None:
        """Work submitted after close is refused, and counts as waiting for nothing (a checkpoint
        queued by the last commits of a closing daemon is dropped this way)."""
        database = SqliteDatabase(tmp_path / "closed.db")
        await database.open()
        await database.close()
        with pytest.raises(RuntimeError):
            database._to_thread(lambda: None)
        assert 0 == database._waiting
