"""xferd.storage.local: blobs written at any offset, hashed as they stream, published on commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from xferd.errors import NoSpace, NotFound, StorageError
from xferd.metadata.models import Checksums
from xferd.storage.local import BATCH, INLINE_COMMIT, LocalBlobStore, LocalBlobWriter

from .support import FaultyStore, FlakyWriter, RecordingWriter, published, tmp_files

TENANT = 7


def sums(data: bytes) -> Checksums:
    return Checksums(hashlib.sha256(data).hexdigest())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    s = LocalBlobStore(tmp_path / "blobs", fsync=False, max_buffered=1024 * 1024)
    yield s
    await s.close()


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[FaultyStore]:
    s = FaultyStore(tmp_path / "faulty", fsync=False, max_buffered=8 * BATCH)
    yield s
    await s.close()


async def stored(store: LocalBlobStore, blob_id: str) -> bytes:
    reader = await store.open(TENANT, blob_id)
    try:
        return await reader.read(0, 1 << 30)
    finally:
        await reader.close()


async def committed_blob(store: LocalBlobStore, data: bytes) -> str:
    writer = await store.create(TENANT, store.new_blob_id())
    await writer.write(0, data)
    await writer.commit()
    writer.publish()
    return writer.blob_id


class TestWriter:
    @pytest.mark.parametrize("fsync", [False, True])
    async def test_sequential_writes(self, tmp_path: Path, fsync: bool) -> None:
        """Chunks written in order give the content and its SHA-256 and MD5, computed while streaming."""
        store = LocalBlobStore(tmp_path / "b", fsync=fsync)
        try:
            data = os.urandom(3 * BATCH + 12345)
            writer = await store.create(TENANT, store.new_blob_id())
            for pos in range(0, len(data), 32768):
                await writer.write(pos, data[pos:pos + 32768])
            result = await writer.commit()
            assert (len(data), sums(data), data) == (result.size, result.checksums,
                                                     await stored(store, writer.blob_id))
        finally:
            await store.close()

    async def test_empty_blob(self, store: LocalBlobStore) -> None:
        """A blob with no writes commits as empty content with the empty digests."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"")
        result = await writer.commit()
        assert (0, sums(b""), b"") == (result.size, result.checksums, await stored(store, writer.blob_id))

    async def test_out_of_order_writes(self, store: LocalBlobStore) -> None:
        """Chunks written in a shuffled order give the same bytes and checksums as in order."""
        data = os.urandom(200_000)
        chunks = [(pos, data[pos:pos + 7000]) for pos in range(0, len(data), 7000)]
        random.Random(4).shuffle(chunks)
        writer = await store.create(TENANT, store.new_blob_id())
        for pos, chunk in chunks:
            await writer.write(pos, chunk)
        result = await writer.commit()
        assert (sums(data), data) == (result.checksums, await stored(store, writer.blob_id))

    async def test_overlapping_writes(self, store: LocalBlobStore) -> None:
        """A later write over earlier bytes wins, and the checksums are of the final bytes."""
        expected = bytearray()
        writer = await store.create(TENANT, store.new_blob_id())
        for offset, chunk in [(0, b"a" * 100), (50, b"B" * 30), (10, b"C" * 5), (95, b"D" * 10), (0, b"E")]:
            await writer.write(offset, chunk)
            expected.extend(bytes(max(0, offset + len(chunk) - len(expected))))
            expected[offset:offset + len(chunk)] = chunk
        result = await writer.commit()
        assert (105, sums(bytes(expected)), bytes(expected)) == (result.size, result.checksums,
                                                                 await stored(store, writer.blob_id))

    async def test_rewrite_of_the_tail_after_a_gap_fill(self, store: LocalBlobStore) -> None:
        """Writes that fill a gap and then rewrite the bytes after it hash the final content."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(10, b"x" * 10)
        await writer.write(0, b"y" * 10)
        await writer.write(10, b"z" * 10)
        result = await writer.commit()
        assert (sums(b"y" * 10 + b"z" * 10), b"y" * 10 + b"z" * 10) == (result.checksums,
                                                                        await stored(store, writer.blob_id))

    async def test_hole_reads_as_zeros(self, store: LocalBlobStore) -> None:
        """A write past the end leaves zeros in between, as a sparse POSIX file does."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"ab")
        await writer.write(10, b"cd")
        result = await writer.commit()
        expected = b"ab" + bytes(8) + b"cd"
        assert (12, sums(expected), expected) == (result.size, result.checksums, await stored(store, writer.blob_id))

    async def test_read_back_before_commit(self, store: LocalBlobStore) -> None:
        """A writer reads back what was written so far, clipped at its size."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"hello world")
        got = (await writer.read(6, 100), await writer.read(100, 5), writer.size)
        await writer.abort()
        assert (b"world", b"", 11) == got

    async def test_truncate_shorter(self, store: LocalBlobStore) -> None:
        """Truncating below what was written drops the tail from the content and the checksums."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"0123456789")
        await writer.truncate(4)
        result = await writer.commit()
        assert (4, sums(b"0123"), b"0123") == (result.size, result.checksums, await stored(store, writer.blob_id))

    async def test_truncate_longer(self, store: LocalBlobStore) -> None:
        """Truncating past the end extends with zeros."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"abc")
        await writer.truncate(8)
        result = await writer.commit()
        expected = b"abc" + bytes(5)
        assert (8, sums(expected), expected) == (result.size, result.checksums, await stored(store, writer.blob_id))

    async def test_truncate_then_write(self, store: LocalBlobStore) -> None:
        """Writes after a truncation land on the truncated content."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"0123456789")
        await writer.truncate(2)
        await writer.write(2, b"xy")
        result = await writer.commit()
        assert (sums(b"01xy"), b"01xy") == (result.checksums, await stored(store, writer.blob_id))


class TestBase:
    async def test_partial_overwrite_keeps_the_rest(self, store: LocalBlobStore) -> None:
        """A write into a copy of a committed blob (no truncation) keeps the base's other bytes."""
        base = os.urandom(300_000)
        base_id = await committed_blob(store, base)
        writer = await store.create(TENANT, store.new_blob_id(), base=base_id, base_size=len(base))
        await writer.write(1000, b"X" * 5000)
        await writer.write(250_000, b"Y" * 10)
        expected = base[:1000] + b"X" * 5000 + base[6000:250_000] + b"Y" * 10 + base[250_010:]
        result = await writer.commit()
        assert (len(base), sums(expected), expected) == (result.size, result.checksums,
                                                         await stored(store, writer.blob_id))
        assert base == await stored(store, base_id)

    async def test_resume_appends_after_the_base(self, store: LocalBlobStore) -> None:
        """A resumed upload writes from the base's end; the result is base plus the new tail."""
        base = os.urandom(100_000)
        base_id = await committed_blob(store, base)
        tail = os.urandom(50_000)
        writer = await store.create(TENANT, store.new_blob_id(), base=base_id, base_size=len(base))
        await writer.write(len(base), tail)
        result = await writer.commit()
        assert (sums(base + tail), base + tail) == (result.checksums, await stored(store, writer.blob_id))

    async def test_write_beyond_the_base_end(self, store: LocalBlobStore) -> None:
        """A longer write over the whole base replaces it entirely."""
        base_id = await committed_blob(store, b"old content")
        writer = await store.create(TENANT, store.new_blob_id(), base=base_id, base_size=11)
        await writer.write(0, b"brand new content")
        result = await writer.commit()
        assert (sums(b"brand new content"), b"brand new content") == (result.checksums,
                                                                      await stored(store, writer.blob_id))

    async def test_truncate_below_the_base(self, store: LocalBlobStore) -> None:
        """Truncation cuts the base too; growing again gives zeros, not the base's old bytes."""
        base_id = await committed_blob(store, b"0123456789")
        writer = await store.create(TENANT, store.new_blob_id(), base=base_id, base_size=10)
        await writer.write(0, b"ab")
        await writer.truncate(4)
        await writer.truncate(6)
        result = await writer.commit()
        expected = b"ab23" + bytes(2)
        assert (sums(expected), expected) == (result.checksums, await stored(store, writer.blob_id))

    async def test_materialize_reads_the_base(self, store: LocalBlobStore) -> None:
        """With materialize a read-write handle sees the base's bytes at once."""
        base_id = await committed_blob(store, b"0123456789")
        writer = await store.create(TENANT, store.new_blob_id(), base=base_id, base_size=10, materialize=True)
        await writer.write(2, b"ab")
        seen = await writer.read(0, 10)
        result = await writer.commit()
        assert (b"01ab456789", sums(b"01ab456789"), b"01ab456789") == (
            seen, result.checksums, await stored(store, writer.blob_id))

    async def test_missing_base_is_enoent(self, store: LocalBlobStore) -> None:
        """A base whose bytes are gone fails the commit with ENOENT and leaves nothing behind."""
        writer = await store.create(TENANT, store.new_blob_id(), base="f" * 32, base_size=10)
        await writer.write(0, b"ab")
        with pytest.raises(NotFound):
            await writer.commit()
        assert ([], []) == (tmp_files(store), published(store))


class TestPublishAndAbort:
    async def test_commit_then_publish_at_the_tenant_path(self, store: LocalBlobStore) -> None:
        """A committed blob stays in .tmp, readable through open(), until publish() moves it to
        <root>/<tenant>/<id[:2]>/<id>."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"data")
        await writer.commit()
        committed = (tmp_files(store), published(store), await stored(store, writer.blob_id))
        writer.publish()
        path = store.root / str(TENANT) / writer.blob_id[:2] / writer.blob_id
        assert (([writer.blob_id], [], b"data"), [], [path], b"data", b"data") == (
            committed, tmp_files(store), published(store), path.read_bytes(), await stored(store, writer.blob_id))
        assert {writer.blob_id} == await store.blob_ids()

    async def test_publish_into_an_existing_or_a_vanished_folder(self, store: LocalBlobStore) -> None:
        """The folder is made by the first blob that goes there; a second blob with the same prefix
        goes into it, and one whose folder was removed meanwhile makes it again."""
        def blob_id(n: int) -> str:
            return f"ab{n:030x}"

        async def commit_and_publish(bid: str) -> Path:
            writer = await store.create(TENANT, bid)
            await writer.write(0, bid.encode())
            await writer.commit()
            writer.publish()
            return store.root / str(TENANT) / "ab" / bid

        first, second = await commit_and_publish(blob_id(1)), await commit_and_publish(blob_id(2))
        for path in (first, second):
            path.unlink()
        first.parent.rmdir()
        third = await commit_and_publish(blob_id(3))
        assert ([], [third], blob_id(3).encode()) == (tmp_files(store), published(store), third.read_bytes())

    async def test_publish_of_a_vanished_temporary_file_is_logged(self, store: LocalBlobStore) -> None:
        """publish() never raises: a temporary file that is gone (nothing to move) is logged."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"data")
        await writer.commit()
        (store.root / ".tmp" / writer.blob_id).unlink()
        with structlog.testing.capture_logs() as entries:
            writer.publish()
        assert [("storage.publish_failed", writer.blob_id)] == [
            (e["event"], e["blob"]) for e in entries if e["event"] == "storage.publish_failed"]
        assert [] == published(store)

    async def test_a_store_that_publishes_in_the_commit(self, tmp_path: Path) -> None:
        """With publish_after_commit off, commit() itself moves the blob into place."""
        store = LocalBlobStore(tmp_path / "b", fsync=False, publish_after_commit=False)
        try:
            writer = await store.create(TENANT, store.new_blob_id())
            await writer.write(0, b"data")
            await writer.commit()
            path = store.root / str(TENANT) / writer.blob_id[:2] / writer.blob_id
            assert ([], [path], False) == (tmp_files(store), published(store),
                                           store.capabilities.publish_after_commit)
        finally:
            await store.close()

    async def test_recover_temporary(self, store: LocalBlobStore) -> None:
        """At start, committed blobs left in .tmp are moved into place and the rest deleted."""
        live = await store.create(TENANT, store.new_blob_id())
        await live.write(0, b"committed, never moved")
        await live.commit()
        unfinished = await store.create(TENANT, store.new_blob_id())
        await unfinished.write(0, b"cut off")
        await unfinished.flush()
        moved = store.recover_temporary({live.blob_id: TENANT, "f" * 32: TENANT})
        path = store.root / str(TENANT) / live.blob_id[:2] / live.blob_id
        assert ((1, 1), [], [path], b"committed, never moved") == (
            moved, tmp_files(store), published(store), path.read_bytes())

    async def test_abort_leaves_nothing(self, store: LocalBlobStore) -> None:
        """An aborted blob leaves no temp file and is never published."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, os.urandom(3 * BATCH))
        await writer.abort()
        assert ([], [], set()) == (tmp_files(store), published(store), await store.blob_ids())

    async def test_commit_then_returns_the_next_steps_result(self, store: LocalBlobStore) -> None:
        """commit_then calls the next step with the commit's result and returns both."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"then")
        seen: list[int] = []

        def then(committed: Any) -> concurrent.futures.Future[str]:
            seen.append(committed.size)
            done: concurrent.futures.Future[str] = concurrent.futures.Future()
            done.set_result("next")
            return done
        committed, result = await writer.commit_then(then)
        assert ([4], "next", hashlib.sha256(b"then").hexdigest()) == (seen, result, committed.checksums.sha256)

    @pytest.mark.parametrize(("size", "average", "on_loop"), [
        (100, 0.0, True),  # small, on storage whose commits are fast
        (INLINE_COMMIT, 0.0, True),
        (INLINE_COMMIT + 1, 0.0, False),  # larger than a small upload
        (100, 1.0, False),  # commits are slow
    ])
    async def test_where_a_commit_runs(self, store: LocalBlobStore, size: int, average: float,
                                       on_loop: bool) -> None:
        """A small upload commits on the event loop's thread while the store's commits are fast;
        a larger one, or any on slow storage, in its lane. The blob is the same either way."""
        store.commit_budget.average = average
        data = os.urandom(size)
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, data)
        threads: list[int] = []

        def then(committed: Any) -> concurrent.futures.Future[None]:
            threads.append(threading.get_ident())
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        committed, _ = await writer.commit_then(then)
        writer.publish()
        reader = await store.open(TENANT, writer.blob_id)
        stored = await reader.read(0, size + 1)
        await reader.close()
        assert ([on_loop], sums(data), data) == (
            [t == threading.get_ident() for t in threads], committed.checksums, stored)

    async def test_a_slow_commit_sends_the_next_ones_to_the_lane(self, store: LocalBlobStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """Every commit is timed, wherever it runs: after one that took long (a slow fsync), small
        commits go to the lane again."""
        store.commit_budget.average = 0.0
        settle = LocalBlobWriter._settle

        def slow_settle(writer: LocalBlobWriter) -> None:
            time.sleep(0.01)
            settle(writer)
        monkeypatch.setattr(LocalBlobWriter, "_settle", slow_settle)
        await committed_blob(store, b"slow")
        assert not store.commit_budget.allows()

    @pytest.mark.parametrize("outcome", ["failed", "cancelled"])
    async def test_commit_then_whose_next_step_fails_leaves_nothing(self, store: LocalBlobStore,
                                                                    outcome: str) -> None:
        """A next step that fails (or is cancelled) fails the commit, and the blob is discarded."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"x")

        def then(committed: Any) -> concurrent.futures.Future[str]:
            done: concurrent.futures.Future[str] = concurrent.futures.Future()
            if outcome == "cancelled":
                done.cancel()
            else:
                done.set_exception(NotFound("the parent went away"))
            return done
        with pytest.raises(StorageError if outcome == "cancelled" else NotFound):
            await asyncio.wait_for(writer.commit_then(then), 10)
        assert ([], [], set()) == (tmp_files(store), published(store), await store.blob_ids())

    async def test_open_missing_blob_is_enoent(self, store: LocalBlobStore) -> None:
        """Opening a blob that does not exist is ENOENT."""
        with pytest.raises(NotFound):
            await store.open(TENANT, "0" * 32)

    async def test_delete(self, store: LocalBlobStore) -> None:
        """delete removes a committed or a temp blob; deleting a missing one is not an error."""
        done = await committed_blob(store, b"x")
        writer = await store.create(TENANT, store.new_blob_id())
        for blob_id in (done, writer.blob_id, "0" * 32):
            await store.delete(TENANT, blob_id)
        await writer.abort()
        assert ([], [], set()) == (tmp_files(store), published(store), await store.blob_ids())

    async def test_space(self, store: LocalBlobStore) -> None:
        """space() reports the disk's total and free bytes."""
        space = await store.space()
        assert space is not None
        total, free = space
        assert 0 <= free <= total


class TestWriteErrors:
    async def test_enospc_surfaces_on_a_later_write(self, faulty: FaultyStore) -> None:
        """A disk that fills up mid-upload raises ENOSPC (NoSpace) from a later write, and abort cleans up."""
        faulty.budget = BATCH
        writer = await faulty.create(TENANT, faulty.new_blob_id())
        with pytest.raises(NoSpace) as info:
            for pos in range(0, 64 * BATCH, 65536):
                await writer.write(pos, bytes(65536))
        await writer.abort()
        assert (errno.ENOSPC, [], []) == (info.value.errno, tmp_files(faulty), published(faulty))

    @pytest.mark.parametrize("size", [100, BATCH + 100])
    async def test_enospc_surfaces_on_commit(self, faulty: FaultyStore, size: int) -> None:
        """An error no write saw (last batch or an earlier queued one) is raised by commit; nothing is published."""
        faulty.budget = 0
        writer = await faulty.create(TENANT, faulty.new_blob_id())
        await writer.write(0, b"x" * size)
        with pytest.raises(NoSpace):
            await writer.commit()
        await writer.abort()
        assert ([], []) == (tmp_files(faulty), published(faulty))

    @pytest.mark.parametrize("size", [100, BATCH + 100])
    async def test_failed_commit_cleans_up_by_itself(self, faulty: FaultyStore, size: int) -> None:
        """A failed commit removes its temp file itself, wherever the write error was first seen."""
        faulty.budget = 0
        writer = await faulty.create(TENANT, faulty.new_blob_id())
        await writer.write(0, b"x" * size)
        with pytest.raises(NoSpace):
            await writer.commit()
        try:
            assert ([], []) == (tmp_files(faulty), published(faulty))
        finally:
            await writer.abort()

    async def test_flush(self, store: LocalBlobStore) -> None:
        """flush writes out what is queued (a read sees it) without publishing anything."""
        writer = await store.create(TENANT, store.new_blob_id())
        await writer.write(0, b"abc")
        await writer.flush()
        on_disk = (store.root / ".tmp" / writer.blob_id).read_bytes()
        await writer.abort()
        assert (b"abc", []) == (on_disk, published(store))

    async def test_error_is_sticky(self, faulty: FaultyStore) -> None:
        """After a write error every later write fails too, even ones the disk would take."""
        faulty.budget = 0
        writer = await faulty.create(TENANT, faulty.new_blob_id())
        await writer.write(0, b"x")
        with pytest.raises(NoSpace):
            await writer.read(0, 1)
        assert isinstance(writer, FlakyWriter)
        writer.budget = 1 << 30
        with pytest.raises(NoSpace):
            await writer.write(1, b"y")
        await writer.abort()


class TestBackpressure:
    @pytest.mark.parametrize(("chunk", "in_order"), [(32768, True), (4096, False), (BATCH + 7, True)])
    async def test_inflight_bytes_stay_bounded(self, tmp_path: Path, chunk: int, in_order: bool) -> None:
        """However many writes come, the bytes queued in the lane exceed max_buffered by at most one batch."""
        store = FaultyStore(tmp_path / "b", fsync=False, max_buffered=256 * 1024)
        store.writer_class = RecordingWriter
        try:
            data = os.urandom(12 * BATCH)
            positions = list(range(0, len(data), chunk))
            if not in_order:
                random.Random(1).shuffle(positions)
                positions = positions[:500]
            writer = await store.create(TENANT, store.new_blob_id())
            assert isinstance(writer, RecordingWriter)
            for pos in positions:
                await writer.write(pos, data[pos:pos + chunk])
                assert writer._inflight_bytes <= store.max_buffered + max(BATCH, chunk)
            await writer.commit()
            assert 0 < writer.peak_inflight <= store.max_buffered + max(BATCH, chunk) + chunk
        finally:
            await store.close()

    async def test_writer_subclass_is_used(self, faulty: FaultyStore) -> None:
        """(The fault-injection store really hands out its writer class.)"""
        writer = await faulty.create(TENANT, faulty.new_blob_id())
        kind = type(writer)
        await writer.abort()
        assert (FlakyWriter, True) == (kind, issubclass(kind, LocalBlobWriter))
