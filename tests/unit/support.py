"""Helpers for the unit tests: one-call uploads and downloads, log filtering, and stores with faults."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from xferd.storage.local import LocalBlobStore, LocalBlobWriter
from xferd.vfs.filesystem import OpenMode, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Upload

NODE = "node"
OWNER = f"{NODE}:boot"
CREATE = OpenMode(write=True, create=True, truncate=True)


async def put(vfs: VirtualFS, s: Session, path: str, data: bytes, mode: OpenMode = CREATE) -> None:
    """Upload ``data`` to ``path`` in one write and commit it."""
    upload = await vfs.open_write(s, path, mode)
    await upload.write(0, data)
    await upload.close()


async def get(vfs: VirtualFS, s: Session, path: str) -> bytes:
    """The whole content of ``path``, read through a download."""
    download = await vfs.open_read(s, path)
    try:
        return await download.read(0, 1 << 30)
    finally:
        await download.close()


async def write_all(upload: Upload, data: bytes, chunk: int = 32768) -> None:
    for pos in range(0, len(data), chunk):
        await upload.write(pos, data[pos:pos + chunk])


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("event") == name]


def tmp_files(store: LocalBlobStore) -> list[str]:
    return sorted(p.name for p in (store.root / ".tmp").iterdir())


def published(store: LocalBlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file() and ".tmp" not in p.parts)


class FlakyWriter(LocalBlobWriter):
    """A blob writer on a disk that fills up after ``budget`` bytes: later writes get the kernel's own
    ENOSPC, from /dev/full, through the writer's real error path."""

    budget = 0

    def _write_at(self, offset: int, chunks: list[bytes]) -> None:
        size = sum(map(len, chunks))
        if self.budget >= size:
            self.budget -= size
            return super()._write_at(offset, chunks)
        full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
        real, self._fd = self._fd, full
        try:
            super()._write_at(offset, chunks)
        finally:
            self._fd = real
            os.close(full)


class RecordingWriter(LocalBlobWriter):
    """A blob writer on a slow disk (``delay`` seconds per write) that records the most bytes it ever
    had queued in its lane."""

    peak_inflight = 0
    delay = 0.001

    def _write_at(self, offset: int, chunks: list[bytes]) -> None:
        time.sleep(self.delay)
        super()._write_at(offset, chunks)

    def _flush_batch(self) -> None:
        super()._flush_batch()
        self.peak_inflight = max(self.peak_inflight, self._inflight_bytes)


class FaultyStore(LocalBlobStore):
    """A LocalBlobStore whose writers are ``writer_class``; ``budget`` bytes per writer for FlakyWriter."""

    writer_class: type[LocalBlobWriter] = FlakyWriter
    budget = 0
    writers: list[LocalBlobWriter]

    async def create(self, tenant_id: int, blob_id: str, base: str | None = None, base_size: int = 0,
                     materialize: bool = False) -> LocalBlobWriter:
        writer = await super().create(tenant_id, blob_id, base, base_size, materialize)
        # LocalBlobStore.create names its writer class directly; swapping the class of the writer it
        # built keeps every line of the real create() in the test.
        writer.__class__ = self.writer_class
        if isinstance(writer, FlakyWriter):
            writer.budget = self.budget
        self.writers = [*getattr(self, "writers", []), writer]
        return writer
