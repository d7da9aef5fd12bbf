"""What the rest of xferd asks of the metadata store, as narrow Protocols.

:class:`~xferd.metadata.sql.SqlMetadataStore` implements all of them; an HTTP client to a central
metadata API or a cached wrapper would implement the same. Each method is one transaction.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import Protocol

from xferd.metadata.models import (
    BlobRecord,
    CommitResult,
    Inode,
    LockRecord,
    Login,
    NewContent,
    Quota,
    Resolved,
    Tenant,
    Usage,
)


class Accounts(Protocol):
    async def load_login(self, tenant: str, name: str) -> Login | None:
        """The user with their keys and grants, or None."""

    async def user_names(self, tenant_id: int, ids: Sequence[int]) -> dict[int, str]: ...


class Tree(Protocol):
    """The file tree: entries (parent, name) pointing at inodes, per tenant."""

    async def resolve(self, tenant_id: int, root_ino: int, parts: Sequence[str], follow_last: bool) -> Resolved: ...

    async def ensure_dirs(self, tenant: Tenant, parts: list[str], owner: int | None) -> int: ...

    async def get_inode(self, tenant_id: int, ino: int) -> Inode | None: ...

    async def list_dir(self, tenant_id: int, ino: int) -> list[tuple[str, Inode]]: ...

    async def mkdir(self, tenant_id: int, parent: int, name: str, mode: int, owner: int | None) -> Inode: ...

    async def rmdir(self, tenant_id: int, parent: int, name: str) -> None: ...

    async def unlink(self, tenant_id: int, parent: int, name: str) -> list[str]: ...

    async def rename(self, tenant_id: int, src_parent: int, src_name: str, dst_parent: int, dst_name: str,
                     overwrite: bool) -> list[str]: ...

    async def symlink(self, tenant_id: int, parent: int, name: str, target: str, owner: int | None) -> Inode: ...

    async def link(self, tenant_id: int, ino: int, parent: int, name: str) -> Inode: ...

    async def setattr(self, tenant_id: int, ino: int, mode: int | None = None, mtime: float | None = None,
                      atime: float | None = None) -> Inode: ...

    async def prepare_upload(self, tenant_id: int, root_ino: int, parts: Sequence[str], blob_id: str,
                             blob_owner: str, user_id: int | None,
                             reserve: bool = True) -> tuple[Resolved, Usage | None]: ...

    async def commit_content(self, tenant_id: int, parent: int, name: str, content: NewContent,
                             owner_id: int | None, mode: int | None, quota: Quota,
                             exclusive: bool = False, reserved: bool = True,
                             blob_owner: str = "") -> CommitResult: ...

    def submit_commit_content(self, tenant_id: int, parent: int, name: str, content: NewContent,
                              owner_id: int | None, mode: int | None, quota: Quota,
                              exclusive: bool = False, reserved: bool = True,
                              blob_owner: str = "") -> concurrent.futures.Future[CommitResult]: ...

    async def copy_file(self, tenant_id: int, src_ino: int, parent: int, name: str, overwrite: bool,
                        owner_id: int | None, quota: Quota) -> CommitResult: ...

    async def usage(self, tenant_id: int, user_id: int) -> Usage: ...


class BlobLedger(Protocol):
    """Which blobs exist and who refers to them: what the collector works from."""

    async def get_blob(self, tenant_id: int, blob_id: str) -> BlobRecord | None: ...

    async def abandon_blob(self, blob_id: str) -> None: ...

    async def live_blobs(self, blob_ids: Sequence[str]) -> dict[str, int]: ...

    async def set_blob_md5(self, tenant_id: int, blob_id: str, md5: str) -> None: ...

    async def blob_etags(self, tenant_id: int, blob_ids: Sequence[str]) -> dict[str, str]: ...

    async def list_dir_etags(self, tenant_id: int, ino: int) -> tuple[list[tuple[str, Inode]], dict[str, str]]: ...

    async def mark_stale_pending(self, owner_prefix: str, current_owner: str, older_than: float) -> int: ...

    async def garbage(self, changed_before: float, limit: int = 1000) -> list[tuple[str, int]]: ...

    async def forget_blobs(self, blob_ids: Sequence[str]) -> None: ...


class Annotations(Protocol):
    """WebDAV's state beside the tree: locks by tenant path, dead properties by inode."""

    async def create_lock(self, tenant_id: int, lock: LockRecord) -> None: ...

    async def get_lock(self, tenant_id: int, token: str) -> LockRecord | None: ...

    async def refresh_lock(self, tenant_id: int, token: str, lifetime: float, expire: float) -> LockRecord | None: ...

    async def delete_lock(self, tenant_id: int, token: str) -> bool: ...

    async def locks_near(self, tenant_id: int, path: str, below: bool) -> list[LockRecord]: ...

    async def delete_locks_at(self, tenant_id: int, path: str) -> None: ...

    async def dead_props(self, tenant_id: int, inos: Sequence[int]) -> dict[int, dict[str, str]]: ...

    async def set_dead_props(self, tenant_id: int, ino: int, changes: dict[str, str | None]) -> None: ...

    async def copy_dead_props(self, tenant_id: int, src_ino: int, dst_ino: int) -> None: ...


class MetadataStore(Accounts, Tree, BlobLedger, Annotations, Protocol):
    """Everything the VirtualFS needs."""
