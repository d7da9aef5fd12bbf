"""The metadata store in SQL: users, tenants, keys, grants, the file tree, blobs and usage.

Every public method is one transaction run in the database thread (see :mod:`.database`). The SQL
is the subset SQLite and PostgreSQL share (``ON CONFLICT``, ``RETURNING``), so a PostgreSQL
database class can serve the same store. Every statement names the tenant, so one tenant's call
can never read or change another tenant's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog

from xferd.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    LinkLoop,
    NotADirectory,
    NotFound,
    QuotaExceeded,
)
from xferd.metadata.database import SqliteDatabase
from xferd.metadata.models import (
    AuditEvent,
    BlobRecord,
    Checksums,
    CommitResult,
    Grant,
    Inode,
    LockRecord,
    Login,
    NewContent,
    Perm,
    PublicKey,
    Quota,
    Resolved,
    Tenant,
    Usage,
    User,
)

Conn = sqlite3.Connection
log = structlog.get_logger("xferd.metadata")

LOCK_COLUMNS = "token, path, depth, scope, owner, user_id, principal, timeout, expire"
INODE_COLUMNS = "ino, kind, size, mode, mtime, atime, ctime, nlink, blob_id, target, owner_id"
LOOKUP_SQL = (f"SELECT {', '.join('i.' + c.strip() for c in INODE_COLUMNS.split(','))} "  # noqa: S608 - only constant column lists are interpolated
              "FROM entries e JOIN inodes i ON i.ino = e.ino AND i.tenant_id = e.tenant_id "
              "WHERE e.tenant_id = ? AND e.parent = ? AND e.name = ?")
GET_INODE_SQL = f"SELECT {INODE_COLUMNS} FROM inodes WHERE tenant_id = ? AND ino = ?"  # noqa: S608 - only constant column lists are interpolated
USER_COLUMNS = ("u.id, u.name, u.password_hash, u.disabled, u.home, u.quota_bytes, u.quota_files, "
                "t.id, t.name, t.root_ino")
MAX_SYMLINKS = 40
DIR_MODE = 0o755


def _inode(row: Sequence[Any]) -> Inode:
    return Inode(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10])


def _user(row: Sequence[Any]) -> User:
    tenant = Tenant(row[7], row[8], row[9])
    return User(row[0], tenant, row[1], row[2], bool(row[3]), row[4], row[5], row[6])


def _rows_in(conn: Conn, sql: str, before: Sequence[Any], values: Sequence[Any]) -> Iterator[Any]:
    """The rows of ``sql``, whose ``{marks}`` stands for an ``IN`` list of ``values``, asked 500 at a
    time (SQLite's limit on bound parameters); ``before``: the parameters that come first."""
    for start in range(0, len(values), 500):
        chunk = list(values[start:start + 500])
        yield from conn.execute(sql.format(marks=", ".join("?" * len(chunk))), [*before, *chunk])


def _get_inode(conn: Conn, tenant_id: int, ino: int) -> Inode | None:
    row = conn.execute(GET_INODE_SQL, (tenant_id, ino)).fetchone()
    return _inode(row) if row else None


def _lookup(conn: Conn, tenant_id: int, parent: int, name: str) -> Inode | None:
    row = conn.execute(LOOKUP_SQL, (tenant_id, parent, name)).fetchone()
    return _inode(row) if row else None


def _require_root(conn: Conn, tenant_id: int, ino: int) -> Inode:
    root = _get_inode(conn, tenant_id, ino)
    if root is None:
        raise NotFound("home directory is missing")
    return root


def _require_dir(conn: Conn, tenant_id: int, ino: int) -> Inode:
    inode = _get_inode(conn, tenant_id, ino)
    if inode is None:
        raise NotFound()
    if inode.kind != "dir":
        raise NotADirectory()
    return inode


def _next_id(conn: Conn, sequence: str) -> int:
    """A new id for ``sequence`` (``inodes`` or ``users``), never given out before (schema v3)."""
    row = conn.execute("UPDATE id_sequences SET last = last + 1 WHERE name = ? RETURNING last", (sequence,)).fetchone()
    return int(row[0])


def _new_inode(conn: Conn, tenant_id: int, kind: str, mode: int, now: float, owner: int | None,
               size: int = 0, blob_id: str | None = None, target: str | None = None,
               sha256: str | None = None) -> Inode:
    row = conn.execute(
        "INSERT INTO inodes (ino, tenant_id, kind, size, mode, mtime, atime, ctime, nlink, blob_id, target, "  # noqa: S608 - only constant column lists are interpolated
        f"owner_id, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING {INODE_COLUMNS}",
        (_next_id(conn, "inodes"), tenant_id, kind, size, mode, now, now, now, blob_id, target, owner,
         sha256)).fetchone()
    return _inode(row)


def _add_entry(conn: Conn, tenant_id: int, parent: int, name: str, ino: int, now: float) -> None:
    _insert_entry(conn, tenant_id, parent, name, ino)
    _touch(conn, tenant_id, parent, now)


def _insert_entry(conn: Conn, tenant_id: int, parent: int, name: str, ino: int) -> None:
    conn.execute("INSERT INTO entries (tenant_id, parent, name, ino) VALUES (?, ?, ?, ?)",
                 (tenant_id, parent, name, ino))


def _touch_dir(conn: Conn, tenant_id: int, ino: int, now: float) -> None:
    """Touch a directory about to get a new entry; NotFound or NotADirectory if it is not one
    (the check and the change in one statement: a new file's commit runs this on every upload)."""
    row = conn.execute("UPDATE inodes SET mtime = ?, ctime = ? WHERE tenant_id = ? AND ino = ? AND kind = 'dir' "
                       "RETURNING ino", (now, now, tenant_id, ino)).fetchone()
    if row is None:
        _require_dir(conn, tenant_id, ino)  # raises the right error
        raise NotFound()


def _create_entry(conn: Conn, tenant_id: int, parent: int, name: str, kind: str, mode: int, owner: int | None,
                  size: int = 0, target: str | None = None) -> Inode:
    """A new directory or symbolic link named ``name`` in ``parent``, which must not have that name.
    (An entry found means its parent is a directory: only a directory has entries.)"""
    if _lookup(conn, tenant_id, parent, name) is not None:
        raise AlreadyExists()
    now = time.time()
    _touch_dir(conn, tenant_id, parent, now)
    made = _new_inode(conn, tenant_id, kind, mode, now, owner, size=size, target=target)
    _insert_entry(conn, tenant_id, parent, name, made.ino)
    return made


def _touch(conn: Conn, tenant_id: int, ino: int, now: float) -> None:
    conn.execute("UPDATE inodes SET mtime = ?, ctime = ? WHERE tenant_id = ? AND ino = ?",
                 (now, now, tenant_id, ino))


def _charge(conn: Conn, tenant_id: int, user_id: int | None, nbytes: int, nfiles: int) -> None:
    if user_id is None or (nbytes == 0 and nfiles == 0):
        return
    conn.execute(
        "INSERT INTO usage (tenant_id, user_id, bytes, files) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, user_id) DO UPDATE SET bytes = usage.bytes + excluded.bytes, "
        "files = usage.files + excluded.files",
        (tenant_id, user_id, nbytes, nfiles))


def _usage(conn: Conn, tenant_id: int, user_id: int) -> Usage:
    row = conn.execute("SELECT bytes, files FROM usage WHERE tenant_id = ? AND user_id = ?",
                       (tenant_id, user_id)).fetchone()
    return Usage(row[0], row[1]) if row else Usage(0, 0)


def _check_quota(conn: Conn, tenant_id: int, user_id: int | None, quota: Quota,
                 add_bytes: int, add_files: int) -> None:
    if user_id is None or (not quota.bytes and not quota.files):
        return
    used = _usage(conn, tenant_id, user_id)
    if quota.bytes and add_bytes > 0 and used.bytes + add_bytes > quota.bytes:
        raise QuotaExceeded()
    if quota.files and add_files > 0 and used.files + add_files > quota.files:
        raise QuotaExceeded()


def _release_blob(conn: Conn, blob_id: str | None, now: float) -> list[str]:
    """Drop one reference to a blob; a blob nobody refers to becomes garbage for the collector."""
    if blob_id is None:
        return []
    row = conn.execute("UPDATE blobs SET refs = refs - 1, changed = ? WHERE id = ? RETURNING refs",
                       (now, blob_id)).fetchone()
    if row is not None and row[0] <= 0:
        conn.execute("UPDATE blobs SET state = 'garbage' WHERE id = ?", (blob_id,))
        return [blob_id]
    return []


def _drop_inode_link(conn: Conn, tenant_id: int, inode: Inode, now: float) -> list[str]:
    """One entry naming ``inode`` is gone: free the inode (and its blob) when none is left."""
    if inode.kind == "file" and inode.nlink > 1:
        conn.execute("UPDATE inodes SET nlink = nlink - 1, ctime = ? WHERE tenant_id = ? AND ino = ?",
                     (now, tenant_id, inode.ino))
        return []
    conn.execute("DELETE FROM inodes WHERE tenant_id = ? AND ino = ?", (tenant_id, inode.ino))
    conn.execute("DELETE FROM dead_props WHERE tenant_id = ? AND ino = ?", (tenant_id, inode.ino))
    if inode.kind == "file":
        _charge(conn, tenant_id, inode.owner_id, -inode.size, -1)
    return _release_blob(conn, inode.blob_id, now)


def _remove_entry(conn: Conn, tenant_id: int, parent: int, name: str, inode: Inode, now: float) -> list[str]:
    if inode.kind == "dir":
        child = conn.execute("SELECT 1 FROM entries WHERE tenant_id = ? AND parent = ? LIMIT 1",
                             (tenant_id, inode.ino)).fetchone()
        if child:
            raise DirectoryNotEmpty()
    conn.execute("DELETE FROM entries WHERE tenant_id = ? AND parent = ? AND name = ?", (tenant_id, parent, name))
    _touch(conn, tenant_id, parent, now)
    return _drop_inode_link(conn, tenant_id, inode, now)


def _parent_of(conn: Conn, tenant_id: int, ino: int) -> int | None:
    row = conn.execute("SELECT parent FROM entries WHERE tenant_id = ? AND ino = ? LIMIT 1",
                       (tenant_id, ino)).fetchone()
    return row[0] if row else None


def _log_failed_reservation(future: asyncio.Future[None]) -> None:
    # The upload's commit finds no pending row and fails with a clear error; this says why.
    if not future.cancelled() and future.exception() is not None:
        log.error("metadata.reservation_failed", error=str(future.exception()))


def _split(target: str) -> list[str]:
    return [p for p in target.split("/") if p and p != "."]


class SqlMetadataStore:
    """Tenants, users, grants, the tree and blobs in one SQL database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        # The tenants that have any lock row, where this process is the only one that takes locks
        # (SQLite: the embedded default, whose data directory one daemon holds): a change in any
        # other tenant needs no lock lookup. None: always look (a database several nodes share).
        self._lock_tenants: set[int] | None = None

    async def open(self) -> None:
        await self.db.open()
        if self.db.dialect == "sqlite":
            self._lock_tenants = set(await self.db.read(
                lambda conn: [r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM locks")]))

    async def close(self) -> None:
        await self.db.close()

    # -- tenants and users -------------------------------------------------------------------------

    async def ensure_tenant(self, name: str) -> Tenant:
        return await self.db.write(lambda conn: self._ensure_tenant(conn, name))

    @staticmethod
    def _ensure_tenant(conn: Conn, name: str) -> Tenant:
        row = conn.execute("SELECT id, name, root_ino FROM tenants WHERE name = ?", (name,)).fetchone()
        if row:
            return Tenant(*row)
        now = time.time()
        tenant_id = conn.execute("INSERT INTO tenants (name, created) VALUES (?, ?) RETURNING id",
                                 (name, now)).fetchone()[0]
        root = _new_inode(conn, tenant_id, "dir", DIR_MODE, now, None)
        conn.execute("UPDATE tenants SET root_ino = ? WHERE id = ?", (root.ino, tenant_id))
        return Tenant(tenant_id, name, root.ino)

    async def get_tenant(self, name: str) -> Tenant | None:
        def work(conn: Conn) -> Tenant | None:
            row = conn.execute("SELECT id, name, root_ino FROM tenants WHERE name = ?", (name,)).fetchone()
            return Tenant(*row) if row else None
        return await self.db.read(work)

    async def create_user(self, tenant: str, name: str, password_hash: str | None, home: str, perms: Perm,
                          quota: Quota, keys: Iterable[PublicKey] = ()) -> User:
        key_list = list(keys)

        def work(conn: Conn) -> User:
            t = self._ensure_tenant(conn, tenant)
            if conn.execute("SELECT 1 FROM users WHERE tenant_id = ? AND name = ?", (t.id, name)).fetchone():
                raise AlreadyExists(f"user {name} already exists in tenant {tenant}")
            now = time.time()
            user_id = _next_id(conn, "users")
            conn.execute(
                "INSERT INTO users (id, tenant_id, name, password_hash, home, quota_bytes, quota_files, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, t.id, name, password_hash, home, quota.bytes, quota.files, now))
            conn.execute("INSERT INTO grants (tenant_id, principal_kind, principal_id, path, perms) "
                         "VALUES (?, 'user', ?, ?, ?)", (t.id, user_id, home, perms.render()))
            for key in key_list:
                self._add_key(conn, t.id, user_id, key)
            self._ensure_dirs(conn, t, _split(home), user_id, now)
            return User(user_id, t, name, password_hash, False, home, quota.bytes, quota.files)
        return await self.db.write(work)

    @staticmethod
    def _add_key(conn: Conn, tenant_id: int, user_id: int, key: PublicKey) -> None:
        conn.execute(
            "INSERT INTO user_keys (tenant_id, user_id, key_type, key_data, fingerprint, comment) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, fingerprint) DO NOTHING",
            (tenant_id, user_id, key.key_type, key.key_data, key.fingerprint, key.comment))

    @staticmethod
    def _ensure_dirs(conn: Conn, tenant: Tenant, parts: list[str], owner: int | None, now: float) -> int:
        cur = tenant.root_ino
        for name in parts:
            found = _lookup(conn, tenant.id, cur, name)
            if found is None:
                made = _new_inode(conn, tenant.id, "dir", DIR_MODE, now, owner)
                _add_entry(conn, tenant.id, cur, name, made.ino, now)
                cur = made.ino
            elif found.kind == "dir":
                cur = found.ino
            else:
                raise NotADirectory(path="/" + "/".join(parts))
        return cur

    async def ensure_dirs(self, tenant: Tenant, parts: list[str], owner: int | None) -> int:
        return await self.db.write(lambda conn: self._ensure_dirs(conn, tenant, parts, owner, time.time()))

    def _find_user(self, conn: Conn, tenant: str, name: str) -> User:
        row = conn.execute(f"SELECT {USER_COLUMNS} FROM users u JOIN tenants t ON t.id = u.tenant_id "  # noqa: S608 - only constant column lists are interpolated
                           "WHERE t.name = ? AND u.name = ?", (tenant, name)).fetchone()
        if row is None:
            raise NotFound(f"no user {name} in tenant {tenant}")
        return _user(row)

    async def delete_user(self, tenant: str, name: str) -> None:
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            conn.execute("DELETE FROM grants WHERE tenant_id = ? AND principal_kind = 'user' AND principal_id = ?",
                         (user.tenant.id, user.id))
            conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
        await self.db.write(work)

    async def list_users(self, tenant: str | None = None) -> list[User]:
        def work(conn: Conn) -> list[User]:
            sql = f"SELECT {USER_COLUMNS} FROM users u JOIN tenants t ON t.id = u.tenant_id"  # noqa: S608 - only constant column lists are interpolated
            params: tuple[Any, ...] = ()
            if tenant is not None:
                sql += " WHERE t.name = ?"
                params = (tenant,)
            return [_user(r) for r in conn.execute(sql + " ORDER BY t.name, u.name", params)]
        return await self.db.read(work)

    async def set_password(self, tenant: str, name: str, password_hash: str) -> None:
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user.id))
        await self.db.write(work)

    async def set_disabled(self, tenant: str, name: str, disabled: bool) -> None:
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (disabled, user.id))
        await self.db.write(work)

    async def set_quota(self, tenant: str, name: str, quota: Quota) -> None:
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            conn.execute("UPDATE users SET quota_bytes = ?, quota_files = ? WHERE id = ?",
                         (quota.bytes, quota.files, user.id))
        await self.db.write(work)

    async def add_key(self, tenant: str, name: str, key: PublicKey) -> None:
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            self._add_key(conn, user.tenant.id, user.id, key)
        await self.db.write(work)

    async def set_grant(self, tenant: str, name: str, path: str, perms: Perm) -> None:
        """Give user ``name`` exactly ``perms`` on ``path`` (tenant-absolute) and below."""
        def work(conn: Conn) -> None:
            user = self._find_user(conn, tenant, name)
            conn.execute(
                "INSERT INTO grants (tenant_id, principal_kind, principal_id, path, perms) "
                "VALUES (?, 'user', ?, ?, ?) ON CONFLICT (tenant_id, principal_kind, principal_id, path) "
                "DO UPDATE SET perms = excluded.perms",
                (user.tenant.id, user.id, path, perms.render()))
        await self.db.write(work)

    async def load_login(self, tenant: str, name: str) -> Login | None:
        def work(conn: Conn) -> Login | None:
            try:
                user = self._find_user(conn, tenant, name)
            except NotFound:
                return None
            keys = tuple(PublicKey(*r) for r in conn.execute(
                "SELECT id, key_type, key_data, fingerprint, comment FROM user_keys "
                "WHERE tenant_id = ? AND user_id = ? ORDER BY id", (user.tenant.id, user.id)))
            grants = [Grant(path, Perm.parse(perms), f"user:{name}") for path, perms in conn.execute(
                "SELECT path, perms FROM grants WHERE tenant_id = ? AND principal_kind = 'user' "
                "AND principal_id = ?", (user.tenant.id, user.id))]
            grants += [Grant(path, Perm.parse(perms), f"group:{group}") for path, perms, group in conn.execute(
                "SELECT g.path, g.perms, gr.name FROM grants g JOIN group_members m ON m.group_id = g.principal_id "
                "JOIN groups gr ON gr.id = m.group_id WHERE g.tenant_id = ? AND g.principal_kind = 'group' "
                "AND m.user_id = ?", (user.tenant.id, user.id))]
            return Login(user, keys, tuple(grants))
        return await self.db.lookup(work)

    async def user_names(self, tenant_id: int, ids: Sequence[int]) -> dict[int, str]:
        def work(conn: Conn) -> dict[int, str]:
            out = {}
            for user_id in ids:
                row = conn.execute("SELECT name FROM users WHERE tenant_id = ? AND id = ?",
                                   (tenant_id, user_id)).fetchone()
                if row:
                    out[user_id] = row[0]
            return out
        return await self.db.lookup(work)

    # -- the tree ----------------------------------------------------------------------------------

    async def resolve(self, tenant_id: int, root_ino: int, parts: Sequence[str], follow_last: bool) -> Resolved:
        """Walk ``parts`` from ``root_ino``, following symbolic links inside that root.

        An absolute link target starts again at ``root_ino``, and ``..`` never climbs above it, so
        a lookup can never leave the root it was given. Only the last component may be missing.
        """
        return await self.db.lookup(lambda conn: self._resolve(conn, tenant_id, root_ino, parts, follow_last))

    @staticmethod
    def _resolve(conn: Conn, tenant_id: int, root_ino: int, parts: Sequence[str], follow_last: bool) -> Resolved:
        # The root's own row is read only when nothing below it was found: once a lookup has found
        # an entry there, the root exists, in this tenant (entries are looked up by tenant).
        stack: list[tuple[str, Inode]] = []
        todo = deque(parts)
        links = 0
        while todo:
            name = todo.popleft()
            if name == "..":
                if stack:
                    stack.pop()
                continue
            if name in ("", "."):
                continue
            if stack and stack[-1][1].kind != "dir":
                raise NotADirectory()
            current = stack[-1][1].ino if stack else root_ino
            found = _lookup(conn, tenant_id, current, name)
            if found is None:
                if any(p not in ("", ".") for p in todo):
                    raise NotFound()
                if not stack:
                    _require_root(conn, tenant_id, root_ino)
                real = (*(n for n, _ in stack), name)
                return Resolved(current, name, None, real)
            if found.kind == "symlink" and (todo or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise LinkLoop()
                target = found.target or ""
                if target.startswith("/"):
                    stack.clear()
                todo.extendleft(reversed(target.split("/")))
                continue
            stack.append((name, found))
        if not stack:
            return Resolved(None, "", _require_root(conn, tenant_id, root_ino), ())
        parent = stack[-2][1].ino if len(stack) > 1 else root_ino
        return Resolved(parent, stack[-1][0], stack[-1][1], tuple(n for n, _ in stack))

    async def prepare_upload(self, tenant_id: int, root_ino: int, parts: Sequence[str], blob_id: str,
                             blob_owner: str, user_id: int | None,
                             reserve: bool = True) -> tuple[Resolved, Usage | None]:
        """Resolve an upload's path and read the uploader's usage (inline; not without a
        ``user_id``, for an uploader without a quota), and, with ``reserve``,
        queue the blob's reservation as pending without waiting: opening a file for writing waits
        for no thread. The reservation is committed before anything submitted later, the upload's
        commit included; a crash before it leaves only a temporary file, which the store sweeps at
        start. A store that publishes after the commit needs no reservation (``reserve`` False)."""
        def read(conn: Conn) -> tuple[Resolved, Usage | None]:
            resolved = self._resolve(conn, tenant_id, root_ino, parts, True)
            return resolved, None if user_id is None else _usage(conn, tenant_id, user_id)

        def reserve_blob(conn: Conn) -> None:
            now = time.time()
            conn.execute("INSERT INTO blobs (id, tenant_id, state, refs, owner, created, changed) "
                         "VALUES (?, ?, 'pending', 0, ?, ?, ?)", (blob_id, tenant_id, blob_owner, now, now))
        result = await self.db.lookup(read)
        if reserve:
            self.db.queue(reserve_blob).add_done_callback(_log_failed_reservation)
        return result

    async def get_inode(self, tenant_id: int, ino: int) -> Inode | None:
        return await self.db.lookup(lambda conn: _get_inode(conn, tenant_id, ino))

    async def list_dir(self, tenant_id: int, ino: int) -> list[tuple[str, Inode]]:
        def work(conn: Conn) -> list[tuple[str, Inode]]:
            _require_dir(conn, tenant_id, ino)
            rows = conn.execute(
                "SELECT e.name, i.ino, i.kind, i.size, i.mode, i.mtime, i.atime, i.ctime, i.nlink, i.blob_id, "
                "i.target, i.owner_id FROM entries e JOIN inodes i ON i.ino = e.ino AND i.tenant_id = e.tenant_id "
                "WHERE e.tenant_id = ? AND e.parent = ? ORDER BY e.name", (tenant_id, ino)).fetchall()
            return [(r[0], _inode(r[1:])) for r in rows]
        return await self.db.read(work)

    async def mkdir(self, tenant_id: int, parent: int, name: str, mode: int, owner: int | None) -> Inode:
        return await self.db.write_small(lambda conn: _create_entry(conn, tenant_id, parent, name, "dir", mode, owner))

    async def symlink(self, tenant_id: int, parent: int, name: str, target: str, owner: int | None) -> Inode:
        return await self.db.write_small(lambda conn: _create_entry(
            conn, tenant_id, parent, name, "symlink", 0o777, owner, size=len(target.encode()), target=target))

    async def link(self, tenant_id: int, ino: int, parent: int, name: str) -> Inode:
        def work(conn: Conn) -> Inode:
            _require_dir(conn, tenant_id, parent)
            inode = _get_inode(conn, tenant_id, ino)
            if inode is None:
                raise NotFound()
            if inode.kind == "dir":
                raise IsADirectory("hard links to directories are not allowed")
            if _lookup(conn, tenant_id, parent, name) is not None:
                raise AlreadyExists()
            now = time.time()
            conn.execute("UPDATE inodes SET nlink = nlink + 1, ctime = ? WHERE tenant_id = ? AND ino = ?",
                         (now, tenant_id, ino))
            _add_entry(conn, tenant_id, parent, name, ino, now)
            inode.nlink += 1
            return inode
        return await self.db.write_small(work)

    async def unlink(self, tenant_id: int, parent: int, name: str) -> list[str]:
        """Remove a file or symbolic link entry; returns the blobs that became garbage."""
        def work(conn: Conn) -> list[str]:
            inode = _lookup(conn, tenant_id, parent, name)
            if inode is None:
                raise NotFound()
            if inode.kind == "dir":
                raise IsADirectory()
            return _remove_entry(conn, tenant_id, parent, name, inode, time.time())
        return await self.db.write_small(work)

    async def rmdir(self, tenant_id: int, parent: int, name: str) -> None:
        def work(conn: Conn) -> None:
            inode = _lookup(conn, tenant_id, parent, name)
            if inode is None:
                raise NotFound()
            if inode.kind != "dir":
                raise NotADirectory()
            _remove_entry(conn, tenant_id, parent, name, inode, time.time())
        await self.db.write_small(work)

    async def rename(self, tenant_id: int, src_parent: int, src_name: str, dst_parent: int, dst_name: str,
                     overwrite: bool) -> list[str]:
        """Move one entry, a whole directory included, in one transaction (POSIX rename(2) rules).

        With ``overwrite`` false an existing destination is :class:`AlreadyExists`. Returns the
        blobs that became garbage because an overwritten file's last link went.
        """
        def work(conn: Conn) -> list[str]:
            src = _lookup(conn, tenant_id, src_parent, src_name)
            if src is None:
                raise NotFound()
            _require_dir(conn, tenant_id, dst_parent)
            if src_parent == dst_parent and src_name == dst_name:
                return []
            if src.kind == "dir":
                cur: int | None = dst_parent
                while cur is not None:
                    if cur == src.ino:
                        raise InvalidArgument("cannot move a directory into itself")
                    cur = _parent_of(conn, tenant_id, cur)
            now = time.time()
            released: list[str] = []
            dst = _lookup(conn, tenant_id, dst_parent, dst_name)
            if dst is not None:
                if not overwrite:
                    raise AlreadyExists()
                if dst.ino == src.ino:
                    return []
                if dst.kind == "dir" and src.kind != "dir":
                    raise IsADirectory()
                if dst.kind != "dir" and src.kind == "dir":
                    raise NotADirectory()
                released = _remove_entry(conn, tenant_id, dst_parent, dst_name, dst, now)
            conn.execute("UPDATE entries SET parent = ?, name = ? WHERE tenant_id = ? AND parent = ? AND name = ?",
                         (dst_parent, dst_name, tenant_id, src_parent, src_name))
            conn.execute("UPDATE inodes SET ctime = ? WHERE tenant_id = ? AND ino = ?", (now, tenant_id, src.ino))
            _touch(conn, tenant_id, src_parent, now)
            if dst_parent != src_parent:
                _touch(conn, tenant_id, dst_parent, now)
            return released
        return await self.db.write_small(work)

    async def setattr(self, tenant_id: int, ino: int, mode: int | None = None, mtime: float | None = None,
                      atime: float | None = None) -> Inode:
        def work(conn: Conn) -> Inode:
            inode = _get_inode(conn, tenant_id, ino)
            if inode is None:
                raise NotFound()
            now = time.time()
            if mode is not None:
                inode.mode = mode & 0o7777
            if mtime is not None:
                inode.mtime = mtime
            if atime is not None:
                inode.atime = atime
            inode.ctime = now
            conn.execute("UPDATE inodes SET mode = ?, mtime = ?, atime = ?, ctime = ? WHERE tenant_id = ? AND ino = ?",
                         (inode.mode, inode.mtime, inode.atime, now, tenant_id, ino))
            return inode
        return await self.db.write_small(work)

    async def commit_content(self, tenant_id: int, parent: int, name: str, content: NewContent,
                             owner_id: int | None, mode: int | None, quota: Quota,
                             exclusive: bool = False, reserved: bool = True,
                             blob_owner: str = "") -> CommitResult:
        """:meth:`submit_commit_content`, awaited."""
        return await asyncio.wrap_future(self.submit_commit_content(
            tenant_id, parent, name, content, owner_id, mode, quota, exclusive, reserved, blob_owner))

    def submit_commit_content(self, tenant_id: int, parent: int, name: str, content: NewContent,
                              owner_id: int | None, mode: int | None, quota: Quota,
                              exclusive: bool = False, reserved: bool = True,
                              blob_owner: str = "") -> concurrent.futures.Future[CommitResult]:
        """Point ``parent/name`` at new content in one transaction: the moment an upload becomes visible.
        Callable from any thread (a blob store's, right after its commit): from a worker thread the
        transaction may run right there, and the future is then done on return
        (:meth:`SqliteDatabase.submit_write`).

        An existing file keeps its inode (its hard links see the new content); a missing one is
        created. The uploader is charged for the new size, exactly, or the commit is refused with
        :class:`QuotaExceeded` and nothing changes. Returns the blobs that became garbage. The
        blob was reserved as pending at the upload's start, or, without ``reserved``, is recorded
        here, live at once (for ``blob_owner``).
        """
        def work(conn: Conn) -> CommitResult:
            now = time.time()
            existing = _lookup(conn, tenant_id, parent, name)
            if existing is None:  # the parent must still be a directory; the new entry changes its mtime
                _touch_dir(conn, tenant_id, parent, now)
            if existing is not None and exclusive:
                raise AlreadyExists()  # another exclusive create of this name committed first
            if existing is not None and existing.kind != "file":
                raise IsADirectory() if existing.kind == "dir" else AlreadyExists("a symbolic link has that name")
            if existing is None:
                _check_quota(conn, tenant_id, owner_id, quota, content.size, 1)
            elif existing.owner_id == owner_id:
                _check_quota(conn, tenant_id, owner_id, quota, content.size - existing.size, 0)
            else:
                _check_quota(conn, tenant_id, owner_id, quota, content.size, 1)
            sha256 = content.checksums.sha256 if content.blob_id is not None and content.checksums else None
            if content.blob_id is not None and not reserved:
                assert content.checksums is not None
                conn.execute("INSERT INTO blobs (id, tenant_id, size, sha256, md5, state, refs, owner, created, "
                             "changed) VALUES (?, ?, ?, ?, ?, 'live', 1, ?, ?, ?)",
                             (content.blob_id, tenant_id, content.size, content.checksums.sha256,
                              content.checksums.md5, blob_owner, now, now))
            elif content.blob_id is not None:
                assert content.checksums is not None
                updated = conn.execute(
                    "UPDATE blobs SET state = 'live', refs = refs + 1, size = ?, sha256 = ?, md5 = ?, changed = ? "
                    "WHERE id = ? AND tenant_id = ? AND state = 'pending' RETURNING id",
                    (content.size, content.checksums.sha256, content.checksums.md5, now, content.blob_id,
                     tenant_id)).fetchone()
                if updated is None:
                    raise NotFound("the upload's data is gone (collected as abandoned)")
            atime = content.atime if content.atime is not None else now
            if existing is None:
                inode = _new_inode(conn, tenant_id, "file", 0o644 if mode is None else mode, content.mtime, owner_id,
                                   size=content.size, blob_id=content.blob_id, sha256=sha256)
                if content.atime is not None:
                    conn.execute("UPDATE inodes SET atime = ? WHERE tenant_id = ? AND ino = ?",
                                 (atime, tenant_id, inode.ino))
                    inode.atime = atime
                _insert_entry(conn, tenant_id, parent, name, inode.ino)
                _charge(conn, tenant_id, owner_id, content.size, 1)
                return CommitResult(inode, True)
            if existing.owner_id == owner_id:
                _charge(conn, tenant_id, owner_id, content.size - existing.size, 0)
            else:
                _charge(conn, tenant_id, existing.owner_id, -existing.size, -1)
                _charge(conn, tenant_id, owner_id, content.size, 1)
            conn.execute("UPDATE inodes SET size = ?, blob_id = ?, sha256 = ?, mtime = ?, atime = ?, ctime = ?, "
                         "owner_id = ?, "
                         "mode = COALESCE(?, mode) WHERE tenant_id = ? AND ino = ?",
                         (content.size, content.blob_id, sha256, content.mtime, atime, now, owner_id, mode, tenant_id,
                          existing.ino))
            existing.mode = existing.mode if mode is None else mode
            existing.atime = atime
            released = _release_blob(conn, existing.blob_id, now)
            existing.size, existing.blob_id, existing.mtime, existing.ctime = (
                content.size, content.blob_id, content.mtime, now)
            existing.owner_id = owner_id
            return CommitResult(existing, False, tuple(released))
        return self.db.submit_write(work)

    async def copy_file(self, tenant_id: int, src_ino: int, parent: int, name: str, overwrite: bool,
                        owner_id: int | None, quota: Quota) -> CommitResult:
        """Make ``parent/name`` a new file that shares the source's blob: a copy that moves no bytes."""
        def work(conn: Conn) -> CommitResult:
            src = _get_inode(conn, tenant_id, src_ino)
            if src is None:
                raise NotFound()
            if src.kind != "file":
                raise IsADirectory() if src.kind == "dir" else InvalidArgument("cannot copy a symbolic link")
            _require_dir(conn, tenant_id, parent)
            now = time.time()
            released: list[str] = []
            existing = _lookup(conn, tenant_id, parent, name)
            if existing is not None:
                if not overwrite:
                    raise AlreadyExists()
                if existing.kind == "dir":
                    raise IsADirectory()
                if existing.ino == src.ino:
                    return CommitResult(src, False)
            # An overwritten file of the same owner that loses its last name frees its bytes and its slot.
            freed = existing if existing is not None and existing.owner_id == owner_id and existing.nlink <= 1 \
                else None
            _check_quota(conn, tenant_id, owner_id, quota, src.size - (freed.size if freed else 0),
                         0 if freed else 1)
            if existing is not None:
                released = _remove_entry(conn, tenant_id, parent, name, existing, now)
            if src.blob_id is not None:
                conn.execute("UPDATE blobs SET refs = refs + 1, changed = ? WHERE id = ?", (now, src.blob_id))
            sha256 = conn.execute("SELECT sha256 FROM inodes WHERE tenant_id = ? AND ino = ?",
                                  (tenant_id, src.ino)).fetchone()[0]
            inode = _new_inode(conn, tenant_id, "file", src.mode, now, owner_id, size=src.size, blob_id=src.blob_id,
                               sha256=sha256)
            _add_entry(conn, tenant_id, parent, name, inode.ino, now)
            _charge(conn, tenant_id, owner_id, src.size, 1)
            return CommitResult(inode, True, tuple(released))
        return await self.db.write(work)

    async def usage(self, tenant_id: int, user_id: int) -> Usage:
        return await self.db.lookup(lambda conn: _usage(conn, tenant_id, user_id))

    # -- WebDAV locks and dead properties ------------------------------------------------------------

    async def create_lock(self, tenant_id: int, lock: LockRecord) -> None:
        if self._lock_tenants is not None:
            self._lock_tenants.add(tenant_id)  # before the row exists: a lookup too many, never one too few

        def work(conn: Conn) -> None:
            conn.execute(f"INSERT INTO locks (tenant_id, {LOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - only constant column lists are interpolated
                         (tenant_id, lock.token, lock.path, lock.depth, lock.scope, lock.owner, lock.user_id,
                          lock.principal, lock.timeout, lock.expire))
        await self.db.write_small(work)

    async def get_lock(self, tenant_id: int, token: str) -> LockRecord | None:
        def work(conn: Conn) -> LockRecord | None:
            row = conn.execute(f"SELECT {LOCK_COLUMNS} FROM locks WHERE tenant_id = ? AND token = ?",  # noqa: S608 - only constant column lists are interpolated
                               (tenant_id, token)).fetchone()
            return LockRecord(*row) if row else None
        lock = await self.db.lookup(work)
        return lock if lock is not None and lock.live(time.time()) else None

    async def refresh_lock(self, tenant_id: int, token: str, lifetime: float, expire: float) -> LockRecord | None:
        def work(conn: Conn) -> LockRecord | None:
            row = conn.execute(f"UPDATE locks SET timeout = ?, expire = ? WHERE tenant_id = ? AND token = ? "  # noqa: S608 - only constant column lists are interpolated
                               f"RETURNING {LOCK_COLUMNS}", (lifetime, expire, tenant_id, token)).fetchone()
            return LockRecord(*row) if row else None
        return await self.db.write_small(work)

    async def delete_lock(self, tenant_id: int, token: str) -> bool:
        def work(conn: Conn) -> bool:
            return conn.execute("DELETE FROM locks WHERE tenant_id = ? AND token = ?",
                                (tenant_id, token)).rowcount > 0
        return await self.db.write_small(work)

    async def locks_near(self, tenant_id: int, path: str, below: bool) -> list[LockRecord]:
        """Live locks on ``path`` and each of its ancestors, and with ``below`` on everything under it."""
        if self._lock_tenants is not None and tenant_id not in self._lock_tenants:
            return []
        ancestors = ["/"]
        parts = [p for p in path.split("/") if p]
        ancestors += ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]

        def work(conn: Conn) -> list[LockRecord]:
            marks = ", ".join("?" * len(ancestors))
            sql = f"SELECT {LOCK_COLUMNS} FROM locks WHERE tenant_id = ? AND (path IN ({marks})"  # noqa: S608 - only placeholders are interpolated
            args: list[Any] = [tenant_id, *ancestors]
            if below:
                prefix = path.rstrip("/") + "/"
                sql += " OR (path > ? AND path < ?)"
                args += [prefix, prefix[:-1] + "0"]  # "0" sorts right after "/"
            rows = conn.execute(sql + ")", args).fetchall()
            return [LockRecord(*r) for r in rows]
        now = time.time()
        return [lock for lock in await self.db.lookup(work) if lock.live(now)]

    async def delete_locks_at(self, tenant_id: int, path: str) -> None:
        """Drop the locks on ``path`` and below it (the object is gone or moved away)."""
        prefix = path.rstrip("/") + "/"
        await self.db.write(lambda conn: conn.execute(
            "DELETE FROM locks WHERE tenant_id = ? AND (path = ? OR (path > ? AND path < ?) OR expire BETWEEN 0 AND ?)",
            (tenant_id, path, prefix, prefix[:-1] + "0", time.time())))

    async def dead_props(self, tenant_id: int, inos: Sequence[int]) -> dict[int, dict[str, str]]:
        """The dead properties of each inode that has any: {ino: {"{ns}name": xml}}."""
        def work(conn: Conn) -> dict[int, dict[str, str]]:
            out: dict[int, dict[str, str]] = {}
            for ino, name, value in _rows_in(conn, "SELECT ino, name, value FROM dead_props "
                                                   "WHERE tenant_id = ? AND ino IN ({marks})", [tenant_id], inos):
                out.setdefault(ino, {})[name] = value
            return out
        if not inos:
            return {}
        return await self.db.lookup(work)

    async def set_dead_props(self, tenant_id: int, ino: int, changes: dict[str, str | None]) -> None:
        """Set (a value) or remove (None) dead properties of one inode, all or none."""
        def work(conn: Conn) -> None:
            for name, value in changes.items():
                if value is None:
                    conn.execute("DELETE FROM dead_props WHERE tenant_id = ? AND ino = ? AND name = ?",
                                 (tenant_id, ino, name))
                else:
                    conn.execute("INSERT INTO dead_props (tenant_id, ino, name, value) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT (tenant_id, ino, name) DO UPDATE SET value = excluded.value",
                                 (tenant_id, ino, name, value))
        await self.db.write(work)

    async def copy_dead_props(self, tenant_id: int, src_ino: int, dst_ino: int) -> None:
        def work(conn: Conn) -> None:
            conn.execute("DELETE FROM dead_props WHERE tenant_id = ? AND ino = ?", (tenant_id, dst_ino))
            conn.execute("INSERT INTO dead_props (tenant_id, ino, name, value) SELECT tenant_id, ?, name, value "
                         "FROM dead_props WHERE tenant_id = ? AND ino = ?", (dst_ino, tenant_id, src_ino))
        await self.db.write(work)

    # -- blobs ---------------------------------------------------------------------------------------

    async def add_pending_blob(self, blob_id: str, tenant_id: int, owner: str) -> None:
        def work(conn: Conn) -> None:
            now = time.time()
            conn.execute("INSERT INTO blobs (id, tenant_id, state, refs, owner, created, changed) "
                         "VALUES (?, ?, 'pending', 0, ?, ?, ?)", (blob_id, tenant_id, owner, now, now))
        await self.db.write(work)

    async def abandon_blob(self, blob_id: str) -> None:
        """An upload that will not commit gives its blob to the collector."""
        def work(conn: Conn) -> None:
            conn.execute("UPDATE blobs SET state = 'garbage', changed = ? WHERE id = ? AND state = 'pending'",
                         (time.time(), blob_id))
        await self.db.write(work)

    async def get_blob(self, tenant_id: int, blob_id: str) -> BlobRecord | None:
        def work(conn: Conn) -> BlobRecord | None:
            row = conn.execute("SELECT id, tenant_id, size, sha256, md5, state, refs FROM blobs "
                               "WHERE id = ? AND tenant_id = ?", (blob_id, tenant_id)).fetchone()
            if row is None:
                return None
            sums = Checksums(row[3], row[4]) if row[3] else None
            return BlobRecord(row[0], row[1], row[2], sums, row[5], row[6])
        return await self.db.lookup(work)

    async def live_blobs(self, blob_ids: Sequence[str]) -> dict[str, int]:
        """Which of ``blob_ids`` are committed (live), with their tenant: {blob id: tenant id}."""
        def work(conn: Conn) -> dict[str, int]:
            return dict(_rows_in(conn, "SELECT id, tenant_id FROM blobs WHERE state = 'live' AND id IN ({marks})",
                                 [], blob_ids))
        return await self.db.read(work) if blob_ids else {}

    async def set_blob_md5(self, tenant_id: int, blob_id: str, md5: str) -> None:
        """Store a blob's MD5, computed when a client first asked for it (blobs never change)."""
        def work(conn: Conn) -> None:
            conn.execute("UPDATE blobs SET md5 = ? WHERE id = ? AND tenant_id = ?", (md5, blob_id, tenant_id))
        await self.db.write(work)

    async def blob_etags(self, tenant_id: int, blob_ids: Sequence[str]) -> dict[str, str]:
        def work(conn: Conn) -> dict[str, str]:
            return dict(_rows_in(conn, "SELECT id, sha256 FROM blobs WHERE tenant_id = ? AND sha256 IS NOT NULL "
                                       "AND id IN ({marks})", [tenant_id], blob_ids))
        return await self.db.lookup(work) if blob_ids else {}

    async def list_dir_etags(self, tenant_id: int, ino: int) -> tuple[list[tuple[str, Inode]], dict[str, str]]:
        """:meth:`list_dir` and the stored SHA-256 of each file's blob (WebDAV ETags), in one query of
        the tree (each file's row carries its content's SHA-256, schema v4)."""
        def work(conn: Conn) -> tuple[list[tuple[str, Inode]], dict[str, str]]:
            _require_dir(conn, tenant_id, ino)
            rows = conn.execute(
                "SELECT e.name, i.ino, i.kind, i.size, i.mode, i.mtime, i.atime, i.ctime, i.nlink, i.blob_id, "
                "i.target, i.owner_id, i.sha256 FROM entries e "
                "JOIN inodes i ON i.ino = e.ino AND i.tenant_id = e.tenant_id "
                "WHERE e.tenant_id = ? AND e.parent = ? ORDER BY e.name",
                (tenant_id, ino)).fetchall()
            return [(r[0], _inode(r[1:12])) for r in rows], {r[9]: r[12] for r in rows if r[12] is not None}
        return await self.db.read(work)

    async def mark_stale_pending(self, owner_prefix: str, current_owner: str, older_than: float) -> int:
        """Pending blobs of an earlier run of this node, or older than ``older_than``, become garbage."""
        def work(conn: Conn) -> int:
            now = time.time()
            cur = conn.execute(
                "UPDATE blobs SET state = 'garbage', changed = ? WHERE state = 'pending' AND "
                "((substr(owner, 1, ?) = ? AND owner != ?) OR created < ?)",
                (now, len(owner_prefix), owner_prefix, current_owner, older_than))
            return cur.rowcount
        return await self.db.write(work)

    async def garbage(self, changed_before: float, limit: int = 1000) -> list[tuple[str, int]]:
        def work(conn: Conn) -> list[tuple[str, int]]:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT id, tenant_id FROM blobs WHERE state = 'garbage' AND changed < ? ORDER BY changed LIMIT ?",
                (changed_before, limit))]
        return await self.db.read(work)

    async def forget_blobs(self, blob_ids: Sequence[str]) -> None:
        def work(conn: Conn) -> None:
            conn.executemany("DELETE FROM blobs WHERE id = ? AND state = 'garbage'", [(b,) for b in blob_ids])
        await self.db.write(work)

    async def blob_states(self) -> dict[str, str]:
        """Every blob id and its state: for the collector's checks and for tests."""
        return await self.db.read(lambda conn: dict(conn.execute("SELECT id, state FROM blobs").fetchall()))

    # -- audit ---------------------------------------------------------------------------------------

    async def record_audit(self, events: Sequence[AuditEvent]) -> None:
        def work(conn: Conn) -> None:
            conn.executemany(
                "INSERT INTO audit (ts, tenant, username, protocol, remote, event, path, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.ts, e.tenant, e.user, e.protocol, e.remote, e.event, e.path, e.outcome, e.detail)
                 for e in events])
        await self.db.write(work)

    async def audit_events(self, limit: int = 1000) -> list[AuditEvent]:
        def work(conn: Conn) -> list[AuditEvent]:
            rows = conn.execute("SELECT ts, tenant, username, protocol, remote, event, path, outcome, detail "
                                "FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [AuditEvent(*r) for r in reversed(rows)]
        return await self.db.read(work)
