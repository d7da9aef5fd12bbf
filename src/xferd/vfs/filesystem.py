"""The VirtualFS: every file operation of every protocol, with all of its policy, once.

A frontend turns a protocol request into one call here and maps the error back (the errors are
OSErrors, see :mod:`xferd.errors`). Each call takes the :class:`~xferd.vfs.session.Session` it
acts for; paths are the client's, confined to the user's home; permissions are checked on the real
path after symbolic links are followed; every call emits one audit event.

Content is never changed in place: an upload writes a new blob, and only :meth:`Upload.close`
points the file at it, in one metadata transaction (see :mod:`xferd.vfs.transfers`).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from xferd.config import TransferConfig
from xferd.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    Locked,
    NotADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unsupported,
    errno_name,
)
from xferd.metadata.base import MetadataStore
from xferd.metadata.models import Checksums, Inode, LockRecord, Login, Perm, Resolved
from xferd.storage.base import BlobStore
from xferd.vfs import paths
from xferd.vfs.audit import AuditSink
from xferd.vfs.paths import Parts
from xferd.vfs.policy import Policy
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download, Upload

P = ParamSpec("P")
T = TypeVar("T")

EMPTY_SUMS = Checksums(hashlib.sha256(b"").hexdigest(), hashlib.md5(b"").hexdigest())  # noqa: S324
HASH_CHUNK = 1024 * 1024
LOCK_TIMEOUT_MAX = 7 * 86400.0


@dataclass(frozen=True)
class OpenMode:
    read: bool = False
    write: bool = False
    create: bool = False
    truncate: bool = False
    exclusive: bool = False
    append: bool = False


REPLACE_MODE = OpenMode(write=True, create=True, truncate=True)


@dataclass(frozen=True)
class SetAttrs:
    size: int | None = None
    mode: int | None = None
    mtime: float | None = None
    atime: float | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class Space:
    total: int
    free: int
    files_total: int
    files_free: int
    block_size: int = 4096
    used: int = 0  # bytes the user's files take (RFC 4331 quota-used-bytes)


@dataclass(frozen=True)
class Listing:
    real: Parts
    directory: Inode
    entries: list[tuple[str, Inode]]


def _shown(path: object) -> str:
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    text = str(path).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text if len(text) <= 512 else text[:512] + "..."


def audited(event: str, durable: bool = True, pair: bool = False, failures_only: bool = False) -> Callable[
        [Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Emit ``event`` for each call, with its outcome: the path is the argument after the session
    (and with ``pair``, the next one is the target). With ``failures_only``, a success is left to
    the event of the transfer it starts (``fs.upload`` or ``fs.download``, emitted at its end)."""
    def wrap(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def run(self: VirtualFS, s: Session, path: Any, *args: Any, **kwargs: Any) -> T:
            extra = {"target": _shown(args[0])} if pair and args else {}
            try:
                result = await fn(self, s, path, *args, **kwargs)
            except OSError as exc:
                self.audit.emit(s.log, s.fields, event, _shown(path), errno_name(exc), durable,
                                error=str(exc.strerror or exc), **extra)
                raise
            except Exception as exc:
                s.log.exception("internal_error", op=event, path=_shown(path))
                self.audit.emit(s.log, s.fields, event, _shown(path), "EIO", durable, error="internal error",
                                **extra)
                raise StorageError("Internal server error") from exc
            if not failures_only:
                self.audit.emit(s.log, s.fields, event, _shown(path), "ok", durable, **extra)
            return result
        return run
    return wrap


class VirtualFS:
    def __init__(self, metadata: MetadataStore, storage: BlobStore, audit: AuditSink, blob_owner: str,
                 transfer: TransferConfig | None = None) -> None:
        self.md = metadata
        self.storage = storage
        self.audit = audit
        self.blob_owner = blob_owner
        # A store that publishes after the commit needs no pending reservation per upload.
        self.reserves_blobs = not storage.capabilities.publish_after_commit
        self.transfer = transfer or TransferConfig()
        self.leases: Counter[str] = Counter()
        self.open_transfers: set[Upload | Download] = set()
        self.transfers_idle = asyncio.Event()
        self.transfers_idle.set()

    # -- sessions ----------------------------------------------------------------------------------

    async def open_session(self, login: Login, protocol: str, remote: str) -> Session:
        """A session rooted at the user's home, which is created if it is missing."""
        user = login.user
        home = paths.split(user.home)
        tenant = user.tenant
        try:
            found = await self.md.resolve(tenant.id, tenant.root_ino, home, True)
            root = found.inode.ino if found.inode is not None and found.inode.kind == "dir" else None
        except (NotFound, NotADirectory):
            root = None
        if root is None:
            root = await self.md.ensure_dirs(tenant, list(home), user.id)
        return Session(user, Policy.of(login.grants), protocol, remote, root)

    # -- helpers -----------------------------------------------------------------------------------

    async def _resolve(self, s: Session, path: str | bytes, follow: bool, target: bool = False) -> Resolved:
        parts = paths.split_target(path) if target else paths.split(path)
        return await self.md.resolve(s.tenant.id, s.root_ino, parts, follow)

    @staticmethod
    def _allows(s: Session, real: Parts, perm: Perm) -> bool:
        return s.policy.allows(paths.tenant_path(s.user.home, real), perm)

    @staticmethod
    def _rules_inside(s: Session, real: Parts) -> bool:
        """Whether a permission rule applies below ``real`` (a directory moved there would carry
        entries out of its rule, or under another)."""
        return s.policy.has_rules_below(paths.tenant_path(s.user.home, real))

    @classmethod
    def _require(cls, s: Session, real: Parts, perm: Perm) -> None:
        if not cls._allows(s, real, perm):
            raise PermissionDenied(path=paths.to_client(real))

    @staticmethod
    def _existing(r: Resolved) -> Inode:
        if r.inode is None:
            raise NotFound(path=paths.to_client(r.real))
        return r.inode

    async def _unlocked(self, s: Session, real: Parts, membership: bool = False, below: bool = False,
                        strict: bool = False) -> list[LockRecord]:
        """Refuse a change at ``real`` that a lock of another user protects (with ``strict``, of any
        user, the caller's own included): the path itself, and with ``membership`` its parent's list
        of members, and with ``below`` anything under it (a whole tree that moves or goes). Returns
        the locks found at and below the path, for clean-up."""
        where = paths.tenant_path(s.user.home, real)
        found = await self.md.locks_near(s.tenant.id, where, below)
        if not found:
            return []
        parent = paths.tenant_path(s.user.home, real[:-1])
        blocking = [lk for lk in found
                    if lk.covers(where) or (membership and lk.path == parent) or (below and _inside(where, lk.path))]
        if blocking and (strict or all(lk.user_id != s.user.id for lk in blocking)):
            raise Locked(path=paths.to_client(real))
        return [lk for lk in found if lk.path == where or _inside(where, lk.path)]

    async def _drop_locks(self, s: Session, real: Parts, found: list[LockRecord]) -> None:
        if found:
            await self.md.delete_locks_at(s.tenant.id, paths.tenant_path(s.user.home, real))

    def track(self, transfer: Upload | Download) -> None:
        self.open_transfers.add(transfer)
        self.transfers_idle.clear()

    def creating(self, s: Session, path: str) -> Upload | None:
        """The upload this session has open that will create ``path`` (a client path), if any."""
        for t in self.open_transfers:
            if isinstance(t, Upload) and t.session is s and t.ino is None and t.path == path:
                return t
        return None

    def untrack(self, transfer: Upload | Download) -> None:
        self.open_transfers.discard(transfer)
        if not self.open_transfers:
            self.transfers_idle.set()

    def lease(self, blob_id: str | None) -> None:
        if blob_id:
            self.leases[blob_id] += 1

    def release(self, blob_id: str | None) -> None:
        if blob_id:
            self.leases[blob_id] -= 1
            if self.leases[blob_id] <= 0:
                del self.leases[blob_id]

    # -- reading the tree --------------------------------------------------------------------------

    @audited("fs.stat", durable=False)
    async def stat(self, s: Session, path: str | bytes, follow: bool = True, acting: Perm | None = None) -> Inode:
        """An object's attributes: for a user who may list its directory or, with ``acting``, who
        holds one of those permissions on the object itself (a WebDAV GET by a download-only user
        looks the file up first; SFTP and FTP open it without a stat)."""
        r = await self._resolve(s, path, follow)
        inode = self._existing(r)
        if not (acting and s.policy.perms(paths.tenant_path(s.user.home, r.real)) & acting):
            self._require(s, r.real[:-1], Perm.LIST)
        return inode

    async def realpath(self, s: Session, path: str | bytes) -> str:
        """The canonical client path, with links followed; the last component need not exist."""
        r = await self._resolve(s, path, True)
        return paths.to_client(r.real)

    @audited("fs.list", durable=False)
    async def list(self, s: Session, path: str | bytes) -> Listing:
        r, inode = await self._listable(s, path)
        return Listing(r.real, inode, await self.md.list_dir(s.tenant.id, inode.ino))

    async def _listable(self, s: Session, path: str | bytes) -> tuple[Resolved, Inode]:
        """A directory the user may list."""
        r = await self._resolve(s, path, True)
        inode = self._existing(r)
        if inode.kind != "dir":
            raise NotADirectory(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.LIST)
        return r, inode

    @audited("fs.list", durable=False)
    async def list_etags(self, s: Session, path: str | bytes) -> tuple[Listing, dict[str, str]]:
        """:meth:`list`, with the stored SHA-256 of each file by blob id (WebDAV's ETags), in one query."""
        r, inode = await self._listable(s, path)
        entries, etags = await self.md.list_dir_etags(s.tenant.id, inode.ino)
        return Listing(r.real, inode, entries), etags

    @audited("fs.readlink", durable=False)
    async def readlink(self, s: Session, path: str | bytes) -> str:
        r = await self._resolve(s, path, False)
        inode = self._existing(r)
        if inode.kind != "symlink" or inode.target is None:
            raise InvalidArgument("Not a symbolic link", path=paths.to_client(r.real))
        self._require(s, r.real[:-1], Perm.LIST)
        return inode.target

    # -- changing the tree -------------------------------------------------------------------------

    @audited("fs.mkdir")
    async def mkdir(self, s: Session, path: str | bytes, mode: int = 0o755) -> Inode:
        r = await self._resolve(s, path, False, target=True)
        if r.inode is not None:
            raise AlreadyExists(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.MKDIR)
        await self._unlocked(s, r.real, membership=True)
        assert r.parent is not None
        return await self.md.mkdir(s.tenant.id, r.parent, r.name, mode & 0o7777, s.user.id)

    async def mkdir_plain(self, s: Session, path: str | bytes) -> bool:
        """Make the directory ``path`` (a plain WebDAV MKCOL, on the event loop).

        False, and no trace, when the plain case does not hold: something is there already, the
        parent is missing or not a directory, no permission, or a lock of any user on the parent's
        membership (a request with lock tokens takes the full path, which answers and audits as
        usual). Once checked, it is :meth:`mkdir`, audited as ``fs.mkdir``.
        """
        if not await self._plain(s, path, Perm.MKDIR, lambda found: found is None):
            return False
        await self.mkdir(s, path)
        return True

    async def _plain(self, s: Session, path: str | bytes, perm: Perm, wanted: Callable[[Inode | None], bool]) -> bool:
        """Whether a one-entry change at ``path`` is plain, leaving no trace: it resolves (all but
        the last name), below the home, to what ``wanted`` accepts, ``perm`` allows it, and no lock
        of any user covers the entry or its directory's membership."""
        try:
            r = await self._resolve(s, path, False, target=True)
            if r.parent is None or not wanted(r.inode) or not self._allows(s, r.real, perm):
                return False
            await self._unlocked(s, r.real, membership=True, strict=True)
        except OSError:
            return False
        return True

    @audited("fs.rmdir")
    async def rmdir(self, s: Session, path: str | bytes) -> None:
        r = await self._resolve(s, path, False, target=True)
        inode = self._existing(r)
        if inode.kind != "dir":
            raise NotADirectory(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.DELETE)
        found = await self._unlocked(s, r.real, membership=True)
        assert r.parent is not None
        await self.md.rmdir(s.tenant.id, r.parent, r.name)
        await self._drop_locks(s, r.real, found)

    @audited("fs.remove")
    async def remove(self, s: Session, path: str | bytes) -> None:
        r = await self._resolve(s, path, False, target=True)
        inode = self._existing(r)
        if inode.kind == "dir":
            raise IsADirectory(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.DELETE)
        found = await self._unlocked(s, r.real, membership=True)
        assert r.parent is not None
        await self.md.unlink(s.tenant.id, r.parent, r.name)
        await self._drop_locks(s, r.real, found)

    async def remove_plain(self, s: Session, path: str | bytes) -> bool:
        """Remove the file or symbolic link at ``path`` (a plain WebDAV DELETE, on the event loop).

        False, and no trace, when the plain case does not hold: no such entry, a directory, no
        permission, or a lock of any user on the entry or its directory's membership (a request
        with lock tokens takes the full path, which answers and audits as usual). Once checked, it
        is :meth:`remove`, audited as ``fs.remove``.
        """
        if not await self._plain(s, path, Perm.DELETE, lambda found: found is not None and found.kind != "dir"):
            return False
        await self.remove(s, path)
        return True

    @audited("fs.rename", pair=True)
    async def rename(self, s: Session, src: str | bytes, dst: str | bytes, overwrite: bool = False) -> None:
        """Move a file or a whole directory in one metadata transaction; no byte is copied.

        Without ``overwrite`` an existing destination is refused (SFTP v3 RENAME); with it, a file
        replaces a file and a directory an empty directory (POSIX rename). Overwriting needs the
        ``overwrite`` permission on the destination.
        """
        rs = await self._resolve(s, src, False, target=True)
        source = self._existing(rs)
        rd = await self._resolve(s, dst, False, target=True)
        self._require(s, rs.real, Perm.RENAME)
        self._require(s, rd.real, Perm.RENAME)
        if rd.inode is not None and rd.inode.ino != source.ino:
            if not overwrite:
                raise AlreadyExists(path=paths.to_client(rd.real))
            self._require(s, rd.real, Perm.OVERWRITE)
        if source.kind == "dir":
            for real in (rs.real, rd.real):
                if self._rules_inside(s, real):
                    raise PermissionDenied("Directory has permission rules inside it", path=paths.to_client(real))
        found = await self._unlocked(s, rs.real, membership=True, below=source.kind == "dir")
        replaced = await self._unlocked(s, rd.real, membership=True, below=rd.inode is not None)
        assert rs.parent is not None and rd.parent is not None
        await self.md.rename(s.tenant.id, rs.parent, rs.name, rd.parent, rd.name, overwrite)
        await self._drop_locks(s, rs.real, found)
        await self._drop_locks(s, rd.real, replaced)

    async def rename_plain(self, s: Session, src: str | bytes, dst: str | bytes, overwrite: bool) -> bool | None:
        """Move ``src`` to ``dst`` (a plain WebDAV MOVE, on the event loop): whether a file at
        ``dst`` was replaced.

        None, and no trace, when the plain case does not hold: no source, the same entry or a
        destination inside the source, no destination directory, a destination that exists while
        ``overwrite`` is off or either side is a directory (wsgidav deletes the destination first),
        a missing permission, a directory with permission rules inside, or a lock of any user on
        either side (or below a moved directory). Once checked, it is :meth:`rename`, audited as
        ``fs.rename``.
        """
        try:
            rs = await self._resolve(s, src, False, target=True)
            rd = await self._resolve(s, dst, False, target=True)
            source, existing = rs.inode, rd.inode
            if source is None or rs.parent is None or rd.parent is None or rd.real[:len(rs.real)] == rs.real:
                return None
            if existing is not None and (not overwrite or existing.ino == source.ino
                                         or existing.kind == "dir" or source.kind == "dir"):
                return None
            wanted = [(rs.real, Perm.RENAME), (rd.real, Perm.RENAME)]
            if existing is not None:
                wanted.append((rd.real, Perm.OVERWRITE))
            if not all(self._allows(s, real, perm) for real, perm in wanted):
                return None
            if source.kind == "dir" and any(self._rules_inside(s, real) for real in (rs.real, rd.real)):
                return None
            await self._unlocked(s, rs.real, membership=True, below=source.kind == "dir", strict=True)
            await self._unlocked(s, rd.real, membership=True, below=existing is not None, strict=True)
        except OSError:
            return None
        await self.rename(s, src, dst, overwrite)
        return existing is not None

    @audited("fs.symlink", pair=True)
    async def symlink(self, s: Session, linkpath: str | bytes, target: str | bytes) -> Inode:
        """Create ``linkpath`` pointing at ``target``, stored exactly as given."""
        stored = paths.check_link_target(target)
        r = await self._resolve(s, linkpath, False, target=True)
        if r.inode is not None:
            raise AlreadyExists(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.SYMLINK)
        await self._unlocked(s, r.real, membership=True)
        assert r.parent is not None
        return await self.md.symlink(s.tenant.id, r.parent, r.name, stored, s.user.id)

    @audited("fs.link", pair=True)
    async def link(self, s: Session, src: str | bytes, dst: str | bytes) -> Inode:
        """A hard link: a second name for the same file."""
        rs = await self._resolve(s, src, False, target=True)
        source = self._existing(rs)
        rd = await self._resolve(s, dst, False, target=True)
        if rd.inode is not None:
            raise AlreadyExists(path=paths.to_client(rd.real))
        self._require(s, rs.real, Perm.DOWNLOAD)
        self._require(s, rd.real, Perm.SYMLINK)
        # Both names reach one inode: a link where the user may change more than at the file's own
        # path would lend that right to the original.
        widened = (s.policy.perms(paths.tenant_path(s.user.home, rd.real))
                   & ~s.policy.perms(paths.tenant_path(s.user.home, rs.real)))
        if widened & (Perm.OVERWRITE | Perm.CHMOD | Perm.CHTIMES):
            raise PermissionDenied("A link may not allow more than the file's own path", path=paths.to_client(rd.real))
        await self._unlocked(s, rd.real, membership=True)
        assert rd.parent is not None
        return await self.md.link(s.tenant.id, source.ino, rd.parent, rd.name)

    @audited("fs.copy", pair=True)
    async def copy(self, s: Session, src: str | bytes, dst: str | bytes, overwrite: bool = False) -> Inode:
        """Copy a file by sharing its blob: no byte moves, whatever the size."""
        rs = await self._resolve(s, src, True, target=True)
        source = self._existing(rs)
        if source.kind == "dir":
            raise IsADirectory(path=paths.to_client(rs.real))
        rd = await self._resolve(s, dst, False, target=True)
        self._require(s, rs.real, Perm.DOWNLOAD)
        self._require(s, rd.real, Perm.COPY)
        if rd.inode is not None:
            if not overwrite:
                raise AlreadyExists(path=paths.to_client(rd.real))
            self._require(s, rd.real, Perm.OVERWRITE)
        await self._unlocked(s, rd.real, membership=True)
        assert rd.parent is not None
        result = await self.md.copy_file(s.tenant.id, source.ino, rd.parent, rd.name, overwrite, s.user.id, s.quota)
        return result.inode

    @audited("fs.setstat")
    async def setstat(self, s: Session, path: str | bytes, attrs: SetAttrs, follow: bool = True) -> Inode:
        r = await self._resolve(s, path, follow)
        inode = self._existing(r)
        self._check_owner_change(inode, attrs)
        if attrs.mode is not None:
            self._require(s, r.real, Perm.CHMOD)
        if attrs.mtime is not None or attrs.atime is not None:
            self._require(s, r.real, Perm.CHTIMES)
        if attrs.mode is not None or attrs.mtime is not None or attrs.size is not None:
            await self._unlocked(s, r.real)
        if attrs.size is not None and attrs.size != inode.size:
            if inode.kind != "file":
                raise IsADirectory(path=paths.to_client(r.real))
            self._require(s, r.real, Perm.OVERWRITE)
            upload = await self._start_upload(s, r.real, OpenMode(write=True))
            try:
                await upload.truncate(attrs.size)
            except BaseException:
                await upload.abort("refused")
                raise
            await upload.close()
        if attrs.mode is None and attrs.mtime is None and attrs.atime is None:
            return await self.md.get_inode(s.tenant.id, inode.ino) or inode
        return await self.md.setattr(s.tenant.id, inode.ino, attrs.mode, attrs.mtime, attrs.atime)

    @staticmethod
    def _check_owner_change(inode: Inode, attrs: SetAttrs) -> None:
        if attrs.uid is not None and attrs.uid != (inode.owner_id or 0):
            raise Unsupported("Changing the owner is not supported")
        if attrs.gid is not None and attrs.gid != (inode.owner_id or 0):
            raise Unsupported("Changing the group is not supported")

    # -- content -----------------------------------------------------------------------------------

    @audited("fs.open_read", failures_only=True)
    async def open_read(self, s: Session, path: str | bytes) -> Download:
        r = await self._resolve(s, path, True, target=True)
        inode = self._existing(r)
        if inode.kind == "dir":
            raise IsADirectory(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.DOWNLOAD)
        reader = await self.storage.open(s.tenant.id, inode.blob_id) if inode.blob_id else None
        return Download(self, s, r.real, inode, reader)

    async def read_whole(self, s: Session, path: str | bytes, limit: int) -> tuple[Inode, bytes, str] | None:
        """The whole content of the file at ``path`` if it has at most ``limit`` bytes (a small
        WebDAV GET, answered on the event loop), with its stored SHA-256 (the ETag).

        None, and no trace, when the plain case does not hold: no such file, a directory, a file
        over ``limit``, or no permission. The caller then takes its full path, which answers and
        audits as usual. Once the file is open, the outcome is the download's (``fs.download``).
        """
        try:
            r = await self._resolve(s, path, True, target=True)
        except OSError:
            return None
        inode = r.inode
        if inode is None or inode.kind != "file" or inode.size > limit or not self._allows(s, r.real, Perm.DOWNLOAD):
            return None
        etag = EMPTY_SUMS.sha256
        reader = None
        if inode.blob_id:
            etag = (await self.md.blob_etags(s.tenant.id, [inode.blob_id])).get(inode.blob_id, etag)
            try:
                reader = await self.storage.open(s.tenant.id, inode.blob_id)
            except OSError:
                return None  # the full path meets the same error, and audits it
        download = Download(self, s, r.real, inode, reader)
        try:
            data = await download.read(0, inode.size)
        except BaseException as exc:
            await download.close(errno_name(exc) if isinstance(exc, OSError) else "failed")
            raise
        await download.close("ok")
        return inode, data, etag

    @audited("fs.open_write", failures_only=True)
    async def open_write(self, s: Session, path: str | bytes, mode: OpenMode, perm_bits: int | None = None) -> Upload:
        """Start an upload; nobody sees its content until :meth:`Upload.close` commits it."""
        return await self._start_upload(s, paths.split_target(path), mode, perm_bits)

    async def write_whole(self, s: Session, path: str | bytes, data: bytes) -> tuple[bool, str] | None:
        """Create or replace the file at ``path`` with ``data`` in one call (a small WebDAV PUT):
        whether it was created, and its SHA-256.

        None, and no trace, when the plain case does not hold: a lock on or above the path, of any
        user (the caller's own too, since only the full request knows its lock tokens), or any
        refusal. The caller then takes its full path, which answers and audits as usual. Once the
        upload is open, its outcome is the upload's: committed, or aborted with its audit event.
        """
        upload = await self.open_whole(s, path)
        if upload is None:
            return None
        created = upload.ino is None
        await upload.finish(0, data)
        assert upload.checksums is not None
        return created, upload.checksums.sha256

    async def open_whole(self, s: Session, path: str | bytes) -> Upload | None:
        """Start replacing the file at ``path`` (a WebDAV PUT streamed without wsgidav), or None, and
        no trace, in the cases :meth:`write_whole` declines."""
        try:
            return await self._start_upload(s, paths.split_target(path), REPLACE_MODE, strict_locks=True)
        except OSError:
            return None

    async def _start_upload(self, s: Session, parts: Parts, mode: OpenMode, perm_bits: int | None = None,
                            strict_locks: bool = False) -> Upload:
        blob_id = self.storage.new_blob_id()
        reserve = self.reserves_blobs
        limited = bool(s.quota.files or s.quota.bytes)
        r, usage = await self.md.prepare_upload(s.tenant.id, s.root_ino, parts, blob_id, self.blob_owner,
                                                s.user.id if limited else None, reserve)
        try:
            existing = r.inode
            if existing is not None:
                if mode.create and mode.exclusive:
                    raise AlreadyExists(path=paths.to_client(r.real))
                if existing.kind == "dir":
                    raise IsADirectory(path=paths.to_client(r.real))
                self._require(s, r.real, Perm.OVERWRITE)
            else:
                if not mode.create:
                    raise NotFound(path=paths.to_client(r.real))
                self._require(s, r.real, Perm.UPLOAD)
                if s.quota.files and usage is not None and usage.files >= s.quota.files:
                    raise QuotaExceeded(path=paths.to_client(r.real))
            if mode.read:
                self._require(s, r.real, Perm.DOWNLOAD)
            await self._unlocked(s, r.real, membership=existing is None, strict=strict_locks)
            keep = existing is not None and not mode.truncate and existing.blob_id is not None
            base = existing.blob_id if keep and existing is not None else None
            base_size = existing.size if keep and existing is not None else 0
            allowance = None
            if s.quota.bytes and usage is not None:
                own = existing.size if existing is not None and existing.owner_id == s.user.id else 0
                allowance = s.quota.bytes - usage.bytes + own
            self.lease(base)
            try:
                writer = await self.storage.create(s.tenant.id, blob_id, base, base_size,
                                                   materialize=mode.read and base is not None)
            except BaseException:
                self.release(base)
                raise
        except BaseException:
            if reserve:
                await self.md.abandon_blob(blob_id)
            raise
        assert r.parent is not None
        file_mode = existing.mode if existing is not None else (perm_bits if perm_bits is not None else 0o644)
        return Upload(self, s, r.parent, r.name, r.real, writer, base, file_mode & 0o7777, mode, allowance,
                      existing.ino if existing is not None else None)

    # -- space and checksums -----------------------------------------------------------------------

    async def space(self, s: Session) -> Space:
        """What df shows: the user's quota when they have one, else the store's free space."""
        usage = await self.md.usage(s.tenant.id, s.user.id)
        files_total = s.quota.files or 1 << 32
        files_free = max(files_total - usage.files, 0)
        if s.quota.bytes:
            return Space(s.quota.bytes, max(s.quota.bytes - usage.bytes, 0), files_total, files_free,
                         used=usage.bytes)
        store = await self.storage.space()
        if store is None:
            return Space(1 << 50, (1 << 50) - usage.bytes, files_total, files_free, used=usage.bytes)
        return Space(store[0], store[1], files_total, files_free, used=usage.bytes)

    @audited("fs.checksum", durable=False)
    async def checksum(self, s: Session, path: str | bytes, algorithm: str, offset: int = 0,
                       length: int = 0) -> str:
        """A hex digest of a file or a range of it. Whole-file SHA-256 comes from the sum stored at
        upload, and MD5 too once it has been asked for (it is computed by reading the first time, then
        stored: blobs never change); anything else is computed by reading."""
        r = await self._resolve(s, path, True, target=True)
        inode = self._existing(r)
        if inode.kind != "file":
            raise IsADirectory(path=paths.to_client(r.real))
        self._require(s, r.real, Perm.DOWNLOAD)
        whole = offset == 0 and (length == 0 or length >= inode.size)
        if whole and algorithm in ("sha256", "md5"):
            if inode.blob_id is None:
                return EMPTY_SUMS.sha256 if algorithm == "sha256" else str(EMPTY_SUMS.md5)
            record = await self.md.get_blob(s.tenant.id, inode.blob_id)
            if record is None or record.checksums is None:
                raise NotFound("the file's content record is missing", path=paths.to_client(r.real))
            if algorithm == "sha256":
                return record.checksums.sha256
            if record.checksums.md5 is not None:
                return record.checksums.md5
            md5 = await self._compute_digest(s, inode, "md5", 0, inode.size)
            await self.md.set_blob_md5(s.tenant.id, inode.blob_id, md5)
            return md5
        end = inode.size if length == 0 else min(inode.size, offset + length)
        return await self._compute_digest(s, inode, algorithm, offset, end)

    async def _compute_digest(self, s: Session, inode: Inode, algorithm: str, start: int, end: int) -> str:
        if algorithm == "crc32":
            hasher: Any = _Crc32()
        elif algorithm in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
            hasher = hashlib.new(algorithm)
        else:
            raise Unsupported(f"Unsupported hash algorithm {algorithm}")
        if inode.blob_id is None or end <= start:
            return str(hasher.hexdigest())
        reader = await self.storage.open(s.tenant.id, inode.blob_id)
        loop = asyncio.get_running_loop()
        try:
            pos = start
            while pos < end:
                chunk = await reader.read(pos, min(HASH_CHUNK, end - pos))
                if not chunk:
                    break
                await loop.run_in_executor(None, hasher.update, chunk)
                pos += len(chunk)
        finally:
            await reader.close()
        return str(hasher.hexdigest())

    # -- WebDAV locks and dead properties ---------------------------------------------------------
    #
    # Locks are kept by tenant path, so a lock taken over WebDAV by one user binds every other
    # user and protocol (see _unlocked). The frontend speaks client paths; these methods translate.

    @audited("fs.lock")
    async def lock(self, s: Session, path: str | bytes, depth: str, scope: str, owner: str,
                   lifetime: float) -> LockRecord:
        """Take a write lock, or raise :class:`Locked` when it conflicts with another lock or with
        an upload in progress (any protocol) on the same path."""
        real = paths.split(path)
        r = await self.md.resolve(s.tenant.id, s.root_ino, real, False)
        perm = Perm.OVERWRITE if r.inode is not None else Perm.UPLOAD
        self._require(s, r.real, perm)
        where = paths.tenant_path(s.user.home, r.real)
        await self._lock_conflicts(s, where, depth, scope, paths.to_client(r.real))
        lifetime = _lock_lifetime(lifetime)
        record = LockRecord(f"opaquelocktoken:{uuid.uuid4()}", where, depth, scope, owner, s.user.id, s.user.name,
                            lifetime, time.time() + lifetime)
        await self.md.create_lock(s.tenant.id, record)
        return record

    async def check_lockable(self, s: Session, path: str | bytes, depth: str, scope: str) -> None:
        """Raise :class:`Locked` if :meth:`lock` would (before a LOCK creates an empty file)."""
        real = paths.split(path)
        await self._lock_conflicts(s, paths.tenant_path(s.user.home, real), depth, scope, paths.to_client(real))

    async def _lock_conflicts(self, s: Session, where: str, depth: str, scope: str, shown: str) -> None:
        for lk in await self.md.locks_near(s.tenant.id, where, below=depth == "infinity"):
            relevant = lk.covers(where) or _inside(where, lk.path)
            if relevant and (scope == "exclusive" or lk.scope == "exclusive"):
                raise Locked(path=shown)
        for t in self.open_transfers:
            if (isinstance(t, Upload) and t.session.tenant.id == s.tenant.id
                    and paths.tenant_path(t.session.user.home, t.real) == where):
                raise Locked("An upload to this file is in progress", path=shown)

    async def refresh_lock(self, s: Session, token: str, lifetime: float) -> LockRecord | None:
        lifetime = _lock_lifetime(lifetime)
        return await self.md.refresh_lock(s.tenant.id, token, lifetime, time.time() + lifetime)

    @audited("fs.unlock")
    async def unlock(self, s: Session, path: str | bytes, token: str) -> bool:
        return await self.md.delete_lock(s.tenant.id, token)

    async def get_lock(self, s: Session, token: str) -> LockRecord | None:
        return await self.md.get_lock(s.tenant.id, token)

    async def locks(self, s: Session, path: str | bytes, below: bool) -> builtins.list[LockRecord]:
        """Live locks on ``path``, its ancestors and (with ``below``) under it, by tenant path."""
        return await self.md.locks_near(s.tenant.id, paths.tenant_path(s.user.home, paths.split(path)), below)

    async def dead_props(self, s: Session, inos: Sequence[int]) -> dict[int, dict[str, str]]:
        """Dead properties of inodes the caller has already found through a checked stat or list."""
        return await self.md.dead_props(s.tenant.id, inos)

    async def props(self, s: Session, path: str | bytes) -> dict[str, str]:
        """The dead properties of one object ({"{ns}name": xml})."""
        inode = await self.stat(s, path)
        return (await self.md.dead_props(s.tenant.id, [inode.ino])).get(inode.ino, {})

    async def blob_etags(self, s: Session, blob_ids: Sequence[str]) -> dict[str, str]:
        """Stored SHA-256 sums (WebDAV ETags) of blobs the caller found through a checked stat or list."""
        return await self.md.blob_etags(s.tenant.id, blob_ids)

    @audited("fs.proppatch")
    async def set_props(self, s: Session, path: str | bytes, changes: dict[str, str | None]) -> None:
        r = await self._resolve(s, path, True)
        inode = self._existing(r)
        self._require(s, r.real, Perm.CHTIMES)
        await self._unlocked(s, r.real)
        await self.md.set_dead_props(s.tenant.id, inode.ino, changes)

    async def copy_props(self, s: Session, src: str | bytes, dst: str | bytes) -> None:
        """After a copy: the destination gets the source's dead properties."""
        source = await self._resolve(s, src, True)
        target = await self._resolve(s, dst, True)
        if source.inode is not None and target.inode is not None and source.inode.ino != target.inode.ino:
            self._require(s, target.real, Perm.COPY)
            await self.md.copy_dead_props(s.tenant.id, source.inode.ino, target.inode.ino)

    async def user_names(self, s: Session, ids: Sequence[int]) -> dict[int, str]:
        return await self.md.user_names(s.tenant.id, ids)


def _lock_lifetime(requested: float) -> float:
    """The seconds a lock is granted: what was asked, at most a week (infinite, -1, is a week)."""
    return LOCK_TIMEOUT_MAX if requested < 0 else min(requested, LOCK_TIMEOUT_MAX)


def _inside(ancestor: str, path: str) -> bool:
    """Whether ``path`` is strictly below ``ancestor`` (both tenant-absolute)."""
    return path != ancestor and (ancestor == "/" or path.startswith(ancestor + "/"))


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"

