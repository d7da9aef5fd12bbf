"""The garbage collector: deletes the bytes of blobs that nothing refers to any more.

Blobs become garbage in the transaction that drops their last reference (a file replaced or
deleted) or when an upload is abandoned; this collector deletes them later, never inline, so a
failed delete costs a retry, not a transfer. It waits ``grace`` seconds after a blob became garbage
and skips blobs that open downloads in this process still read. At start, pending blobs that an
earlier run of this node left behind (a crash mid-upload) become garbage too.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from xferd.config import GcConfig
from xferd.metadata.base import BlobLedger
from xferd.storage.base import BlobStore
from xferd.vfs.filesystem import VirtualFS

log = structlog.get_logger("xferd.gc")


class Collector:
    def __init__(self, metadata: BlobLedger, storage: BlobStore, vfs: VirtualFS | None, config: GcConfig,
                 node_id: str, owner: str) -> None:
        self.md = metadata
        self.storage = storage
        self.vfs = vfs
        self.config = config
        self.node_id = node_id
        self.owner = owner

    async def reclaim_crashed_uploads(self) -> int:
        """Pending blobs from an earlier run of this node, or too old to be alive, become garbage."""
        count = await self.md.mark_stale_pending(self.node_id + ":", self.owner,
                                                 time.time() - self.config.pending_max_age)
        if count:
            log.info("gc.abandoned_uploads", blobs=count)
        return count

    async def run_once(self) -> int:
        """Delete the bytes of every collectable blob; returns how many were deleted."""
        deleted = 0
        while True:
            batch = await self.md.garbage(time.time() - self.config.grace)
            leased = self.vfs.leases if self.vfs is not None else {}
            batch = [(blob_id, tenant) for blob_id, tenant in batch if blob_id not in leased]
            if not batch:
                break
            done = []
            for blob_id, tenant in batch:
                try:
                    await self.storage.delete(tenant, blob_id)
                    done.append(blob_id)
                except OSError as exc:
                    log.warning("gc.delete_failed", blob=blob_id, error=str(exc))
            await self.md.forget_blobs(done)
            deleted += len(done)
            if len(done) < len(batch):
                break
        log.info("gc.collected", blobs=deleted)
        return deleted

    async def run_forever(self) -> None:
        while True:
            try:
                await self.reclaim_crashed_uploads()
                await self.run_once()
            except Exception as exc:  # one failed round must not stop collecting
                log.error("gc.failed", error=str(exc))
            await asyncio.sleep(self.config.interval)
