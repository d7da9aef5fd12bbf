"""What the VirtualFS asks of a blob store: immutable blobs by opaque id, written once.

A blob is created by :meth:`BlobStore.create`, filled through its :class:`BlobWriter` (writes at any
offset; a store that cannot write at offsets buffers), and made durable and readable by
:meth:`BlobWriter.commit`, which also returns its checksums, computed while the bytes streamed.
Nothing reads a blob before its commit, and no blob is changed after it. A store's limits are data
(:class:`Capabilities`), not methods that raise "unsupported".
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from xferd.metadata.models import Checksums

T = TypeVar("T")


@dataclass(frozen=True)
class Capabilities:
    random_write: bool  # writes at any offset without buffering
    server_side_copy: bool
    # The blob is made durable by commit() but put in its place by publish(), after the metadata
    # transaction; a store that owns its place alone redoes a lost publish at start
    # (recover_temporary), so its uploads need no pending reservation in the metadata store.
    publish_after_commit: bool = False


@dataclass(frozen=True)
class Committed:
    size: int
    checksums: Checksums


# What follows a blob's commit without the event loop in between: given the commit's result in the
# thread that made it, start the next step and return its future.
Then = Callable[[Committed], "concurrent.futures.Future[T]"]


class BlobWriter(Protocol):
    blob_id: str

    @property
    def size(self) -> int:
        """The size of the content so far: the end of the last byte written, or the truncated size."""

    async def write(self, offset: int, data: bytes) -> None:
        """Queue ``data`` at ``offset``; may return before it is on disk. Errors surface on a later
        call or on :meth:`commit`."""

    async def read(self, offset: int, size: int) -> bytes:
        """Read back content written so far (for read-write handles)."""

    async def flush(self) -> None:
        """Write out everything queued and make it durable (the blob stays unreadable)."""

    async def truncate(self, size: int) -> None: ...

    async def commit(self) -> Committed:
        """Make the blob durable and readable (with ``publish_after_commit``: durable, and readable
        through :meth:`BlobStore.open`); returns its size and checksums."""

    async def commit_then(self, then: Then[T]) -> tuple[Committed, T]:
        """:meth:`commit`, then ``then(committed)`` called in the thread that finished the commit;
        it starts the next step elsewhere (the metadata transaction) and returns its future, whose
        result is returned with the commit's. The caller waits once for both, not twice. A failure
        of either step aborts the blob, except when the wait is cancelled after the commit began:
        then the blob stays where the store's recovery finds it."""

    def publish(self) -> None:
        """After the metadata commit, with ``publish_after_commit``: move the blob to its place
        (no waiting; a failure leaves it readable where it is, and the next start moves it)."""

    async def abort(self) -> None:
        """Discard everything written; the blob never becomes readable."""


class BlobReader(Protocol):
    async def read(self, offset: int, size: int) -> bytes: ...

    async def close(self) -> None: ...


class BlobStore(Protocol):
    capabilities: Capabilities

    def new_blob_id(self) -> str: ...

    async def create(self, tenant_id: int, blob_id: str, base: str | None = None, base_size: int = 0,
                     materialize: bool = False) -> BlobWriter:
        """Start blob ``blob_id``. With ``base``, bytes below ``base_size`` that are never written
        come from that committed blob (a write without truncation); ``materialize`` copies them at
        once, for a handle that will also read."""

    async def open(self, tenant_id: int, blob_id: str) -> BlobReader: ...

    async def delete(self, tenant_id: int, blob_id: str) -> None:
        """Remove a blob, committed or not; removing a missing blob is not an error."""

    async def blob_ids(self) -> set[str]:
        """Every blob id the store holds bytes for, committed or not (for audits and tests)."""

    async def space(self) -> tuple[int, int] | None:
        """Total and free bytes behind the store, or None where that has no meaning (S3)."""

    async def close(self) -> None: ...
