"""xferd.vfs.gc: the bytes of blobs nothing refers to are deleted later, never while someone reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xferd.config import Config, GcConfig
from xferd.metadata.sql import SqlMetadataStore
from xferd.storage.local import LocalBlobStore
from xferd.vfs.audit import AuditSink
from xferd.vfs.filesystem import OpenMode, VirtualFS
from xferd.vfs.gc import Collector
from xferd.vfs.session import Session

from .support import CREATE, NODE, OWNER, events, get, put, tmp_files


def collector(md: SqlMetadataStore, storage: LocalBlobStore, vfs: VirtualFS | None, grace: float = 0.0,
              owner: str = OWNER) -> Collector:
    return Collector(md, storage, vfs, GcConfig(interval=3600.0, grace=grace, pending_max_age=86400.0), NODE, owner)


async def blob_of(vfs: VirtualFS, s: Session, path: str) -> str:
    blob_id = (await vfs.stat(s, path)).blob_id
    assert blob_id is not None
    return blob_id


def on_disk(storage: LocalBlobStore, s: Session, blob_id: str) -> bool:
    return storage.path_of(s.tenant.id, blob_id).exists()


class FailingDeleteStore(LocalBlobStore):
    """A blob store whose first ``failures`` deletes fail, as on a disk that briefly refuses."""

    failures = 1

    async def delete(self, tenant_id: int, blob_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise PermissionError(13, "Permission denied")
        await super().delete(tenant_id, blob_id)


class SmallBatches(SqlMetadataStore):
    """The same store, handing the collector garbage ten blobs at a time."""

    async def garbage(self, changed_before: float, limit: int = 1000) -> list[tuple[str, int]]:
        return await super().garbage(changed_before, 10)


class TestCollector:
    async def test_replaced_blob_is_deleted(self, vfs: VirtualFS, md: SqlMetadataStore, storage: LocalBlobStore,
                                            alice: Session) -> None:
        """After a file is replaced its old blob's bytes and row go; the new blob stays."""
        await put(vfs, alice, "f", b"v1")
        old = await blob_of(vfs, alice, "f")
        await put(vfs, alice, "f", b"v2")
        new = await blob_of(vfs, alice, "f")
        before = on_disk(storage, alice, old)
        deleted = await collector(md, storage, vfs).run_once()
        states = await md.blob_states()
        assert (True, 1, False, None, True, "live", b"v2") == (
            before, deleted, on_disk(storage, alice, old), states.get(old), on_disk(storage, alice, new),
            states.get(new), await get(vfs, alice, "f"))

    async def test_deleted_file_blob_is_deleted(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                storage: LocalBlobStore, alice: Session) -> None:
        """After a file is removed its blob's bytes go; nothing is left in the store."""
        await put(vfs, alice, "f", b"data")
        blob_id = await blob_of(vfs, alice, "f")
        await vfs.remove(alice, "f")
        await collector(md, storage, vfs).run_once()
        assert (False, {}, set()) == (on_disk(storage, alice, blob_id), await md.blob_states(),
                                      await storage.blob_ids())

    async def test_shared_blob_survives_until_its_last_reference(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                                 storage: LocalBlobStore, alice: Session) -> None:
        """A blob shared by a copy stays while one file still points at it."""
        await put(vfs, alice, "f", b"shared")
        blob_id = await blob_of(vfs, alice, "f")
        await vfs.copy(alice, "f", "g")
        await vfs.remove(alice, "f")
        gc = collector(md, storage, vfs)
        kept = (await gc.run_once(), on_disk(storage, alice, blob_id))
        await vfs.remove(alice, "g")
        assert ((0, True), 1, False) == (kept, await gc.run_once(), on_disk(storage, alice, blob_id))

    async def test_grace_period(self, vfs: VirtualFS, md: SqlMetadataStore, storage: LocalBlobStore,
                                alice: Session) -> None:
        """Garbage younger than the grace period is left for a later round."""
        await put(vfs, alice, "f", b"data")
        blob_id = await blob_of(vfs, alice, "f")
        await vfs.remove(alice, "f")
        assert (0, True, "garbage") == (await collector(md, storage, vfs, grace=3600).run_once(),
                                        on_disk(storage, alice, blob_id), (await md.blob_states())[blob_id])

    async def test_leased_blob_survives_until_the_download_closes(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                                  storage: LocalBlobStore, alice: Session) -> None:
        """A blob an open download reads is not deleted, even though it is garbage; after close it is."""
        await put(vfs, alice, "f", b"being read")
        blob_id = await blob_of(vfs, alice, "f")
        download = await vfs.open_read(alice, "f")
        gc = collector(md, storage, vfs)
        try:
            await put(vfs, alice, "f", b"replaced")
            first = await gc.run_once()
            still = (on_disk(storage, alice, blob_id), await download.read(0, 100))
        finally:
            await download.close()
        second = await gc.run_once()
        assert ((0, (True, b"being read")), 1, False) == ((first, still), second, on_disk(storage, alice, blob_id))

    async def test_leased_base_of_an_upload_survives(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                     storage: LocalBlobStore, alice: Session) -> None:
        """The old content an open upload keeps (a write without truncation) is not collected under it."""
        await put(vfs, alice, "f", b"0123456789")
        upload = await vfs.open_write(alice, "f", OpenMode(write=True))
        await upload.write(0, b"ab")
        await put(vfs, alice, "f", b"replaced meanwhile")
        await collector(md, storage, vfs).run_once()
        await upload.close()
        assert b"ab23456789" == await get(vfs, alice, "f")

    async def test_abandoned_upload_is_deleted(self, vfs: VirtualFS, md: SqlMetadataStore,
                                               storage: LocalBlobStore, alice: Session) -> None:
        """An aborted upload's blob is collected; no temp file or row is left."""
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"partial")
        await upload.abort()
        await collector(md, storage, vfs).run_once()
        assert ({}, [], set()) == (await md.blob_states(), tmp_files(storage), await storage.blob_ids())

    async def test_many_blobs_in_batches(self, vfs: VirtualFS, md: SqlMetadataStore, storage: LocalBlobStore,
                                         alice: Session) -> None:
        """run_once keeps going until every collectable blob is gone."""
        for i in range(25):
            await put(vfs, alice, f"f{i}", b"x")
            await vfs.remove(alice, f"f{i}")
        gc = collector(SmallBatches(md.db), storage, vfs)
        assert (25, set(), {}) == (await gc.run_once(), await storage.blob_ids(), await md.blob_states())

    async def test_failed_delete_is_retried(self, config: Config, md: SqlMetadataStore, audit: AuditSink,
                                            tmp_path: Path, alice: Session, logs: list[dict[str, Any]]) -> None:
        """A delete that fails keeps the blob as garbage for the next round, which deletes it."""
        store = FailingDeleteStore(tmp_path / "failing", fsync=False)
        try:
            vfs = VirtualFS(md, store, audit, OWNER, config.transfer)
            await put(vfs, alice, "f", b"data")
            blob_id = await blob_of(vfs, alice, "f")
            await vfs.remove(alice, "f")
            gc = collector(md, store, vfs)
            first = (await gc.run_once(), (await md.blob_states()).get(blob_id))
            second = (await gc.run_once(), (await md.blob_states()).get(blob_id))
            assert ((0, "garbage"), (1, None), False) == (first, second, on_disk(store, alice, blob_id))
            assert [blob_id] == [e["blob"] for e in events(logs, "gc.delete_failed")]
        finally:
            await store.close()


class TestCrashedUploads:
    """Reserved uploads: the protocol of a store that publishes before the commit (shared stores)."""

    @pytest.fixture
    async def storage(self, config: Config) -> AsyncIterator[LocalBlobStore]:
        store = LocalBlobStore(config.storage_path, fsync=False, publish_after_commit=False)
        yield store
        await store.close()

    @pytest.fixture
    async def earlier_boot(self, md: SqlMetadataStore, storage: LocalBlobStore, audit: AuditSink,
                           config: Config) -> AsyncIterator[VirtualFS]:
        """The VirtualFS of an earlier run of this node, whose uploads were cut off by a crash."""
        old = VirtualFS(md, storage, audit, f"{NODE}:earlier", config.transfer)
        yield old
        for transfer in list(old.open_transfers):
            await transfer.writer.abort()  # type: ignore[union-attr]

    async def test_earlier_boot_pending_blob_is_reclaimed(self, earlier_boot: VirtualFS, vfs: VirtualFS,
                                                          md: SqlMetadataStore, storage: LocalBlobStore,
                                                          alice: Session) -> None:
        """At start, a pending blob left by an earlier run of this node becomes garbage and its temp file goes."""
        crashed = await earlier_boot.open_write(alice, "f", CREATE)
        await crashed.write(0, b"cut off")
        await crashed.writer.read(0, 0)  # on disk, as a crash would leave it
        blob_id = crashed.writer.blob_id
        before = ((await md.blob_states())[blob_id], tmp_files(storage))
        gc = collector(md, storage, vfs)
        reclaimed = await gc.reclaim_crashed_uploads()
        state = (await md.blob_states())[blob_id]
        deleted = await gc.run_once()
        assert (("pending", [blob_id]), 1, "garbage", 1, [], {}) == (
            before, reclaimed, state, deleted, tmp_files(storage), await md.blob_states())

    async def test_current_owner_pending_blob_is_kept(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                      storage: LocalBlobStore, alice: Session) -> None:
        """A pending blob of the running owner is a live upload: it stays pending and can still commit."""
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"in flight")
        await upload.writer.read(0, 0)
        gc = collector(md, storage, vfs)
        reclaimed = await gc.reclaim_crashed_uploads()
        deleted = await gc.run_once()
        state = (await md.blob_states())[upload.writer.blob_id]
        files = tmp_files(storage)
        await upload.close()
        assert (0, 0, "pending", [upload.writer.blob_id], b"in flight") == (
            reclaimed, deleted, state, files, await get(vfs, alice, "f"))

    async def test_reclaimed_upload_cannot_commit(self, earlier_boot: VirtualFS, vfs: VirtualFS,
                                                  md: SqlMetadataStore, storage: LocalBlobStore,
                                                  alice: Session) -> None:
        """An upload whose blob was reclaimed fails at close (ENOENT) instead of pointing at deleted bytes."""
        await put(vfs, alice, "f", b"old")
        zombie = await earlier_boot.open_write(alice, "f", CREATE)
        await zombie.write(0, b"zombie")
        await collector(md, storage, vfs).reclaim_crashed_uploads()
        with pytest.raises(FileNotFoundError):
            await zombie.close()
        assert b"old" == await get(vfs, alice, "f")

    async def test_other_nodes_pending_blobs_are_kept(self, md: SqlMetadataStore, storage: LocalBlobStore,
                                                      vfs: VirtualFS, alice: Session, config: Config,
                                                      audit: AuditSink) -> None:
        """Pending blobs of other nodes sharing the database are theirs to reclaim."""
        other = VirtualFS(md, storage, audit, "othernode:boot", config.transfer)
        upload = await other.open_write(alice, "f", CREATE)
        try:
            assert 0 == await collector(md, storage, vfs).reclaim_crashed_uploads()
        finally:
            await upload.abort()
