"""xferd.metadata.sql on a real SQLite database: tenants, schema versions, the tree, blobs and quotas."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from xferd.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    LinkLoop,
    NotADirectory,
    NotFound,
    QuotaExceeded,
    StorageError,
)
from xferd.metadata import schema
from xferd.metadata.database import SqliteDatabase
from xferd.metadata.models import (
    Checksums,
    CommitResult,
    Inode,
    LockRecord,
    NewContent,
    Perm,
    Quota,
    Tenant,
    Usage,
    User,
)
from xferd.metadata.sql import SqlMetadataStore

from .support import OWNER

SUMS = Checksums("0" * 64, "0" * 32)
UNLIMITED = Quota()


async def rows(md: SqlMetadataStore, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return await md.db.read(lambda conn: conn.execute(sql, params).fetchall())


async def new_blob(md: SqlMetadataStore, tenant: Tenant) -> str:
    blob_id = secrets.token_hex(16)
    await md.add_pending_blob(blob_id, tenant.id, OWNER)
    return blob_id


async def commit(md: SqlMetadataStore, tenant: Tenant, parent: int, name: str, size: int,
                 owner: User | None = None, quota: Quota = UNLIMITED) -> CommitResult:
    """Commit ``size`` bytes of new content to ``parent/name``, as an upload's close does."""
    blob_id = await new_blob(md, tenant)
    content = NewContent(blob_id, size, SUMS, time.time())
    return await md.commit_content(tenant.id, parent, name, content, owner.id if owner else None, 0o644, quota)


async def lookup(md: SqlMetadataStore, tenant: Tenant, path: str, follow: bool = True,
                 root: int | None = None) -> Inode | None:
    parts = [p for p in path.split("/") if p]
    return (await md.resolve(tenant.id, root or tenant.root_ino, parts, follow)).inode


async def blob_of(md: SqlMetadataStore, tenant: Tenant, path: str) -> tuple[str, int]:
    inode = await lookup(md, tenant, path)
    assert inode is not None and inode.blob_id is not None
    record = await md.get_blob(tenant.id, inode.blob_id)
    assert record is not None
    return record.state, record.refs


@pytest.fixture
async def t(md: SqlMetadataStore) -> Tenant:
    return await md.ensure_tenant("default")


class TestTenants:
    async def test_ensure_tenant_is_idempotent(self, md: SqlMetadataStore) -> None:
        """ensure_tenant makes a tenant with a root directory once, then returns the same one."""
        first = await md.ensure_tenant("acme")
        assert first == await md.ensure_tenant("acme")
        root = await md.get_inode(first.id, first.root_ino)
        assert root is not None and "dir" == root.kind

    async def test_same_names_in_two_tenants_never_meet(self, md: SqlMetadataStore) -> None:
        """Two tenants with the same user and file names each see only their own."""
        for tenant in ("acme", "globex"):
            user = await md.create_user(tenant, "alice", None, "/alice", Perm.all(), Quota())
            home = await md.resolve(user.tenant.id, user.tenant.root_ino, ["alice"], True)
            assert home.inode is not None
            await commit(md, user.tenant, home.inode.ino, "report.txt", 10 if tenant == "acme" else 20, user)
        acme, globex = await md.get_tenant("acme"), await md.get_tenant("globex")
        assert acme is not None and globex is not None
        sizes = [(await lookup(md, x, "alice/report.txt")) for x in (acme, globex)]
        assert [10, 20] == [i.size for i in sizes if i is not None]
        logins = [await md.load_login(x, "alice") for x in ("acme", "globex")]
        assert [("acme", "/alice"), ("globex", "/alice")] == [
            (lg.user.tenant.name, lg.grants[0].path) for lg in logins if lg is not None]
        assert logins[0] is not None and logins[1] is not None and logins[0].user.id != logins[1].user.id
        assert ["alice"] == [u.name for u in await md.list_users("acme")]

    async def test_resolve_with_another_tenants_root_fails(self, md: SqlMetadataStore) -> None:
        """A lookup that names tenant A but starts from tenant B's root finds nothing."""
        acme, globex = await md.ensure_tenant("acme"), await md.ensure_tenant("globex")
        with pytest.raises(NotFound):
            await md.resolve(acme.id, globex.root_ino, ["x"], True)

    async def test_tree_calls_with_another_tenants_inodes_fail(self, md: SqlMetadataStore) -> None:
        """Every tree call scoped to tenant A refuses inodes and entries of tenant B."""
        acme, globex = await md.ensure_tenant("acme"), await md.ensure_tenant("globex")
        made = await commit(md, globex, globex.root_ino, "f", 5)
        await md.mkdir(globex.id, globex.root_ino, "d", 0o755, None)
        mine = await commit(md, acme, acme.root_ino, "mine", 3)
        blob_id = await new_blob(md, acme)
        calls = {
            "get_inode": md.get_inode(acme.id, made.inode.ino),
            "list_dir": md.list_dir(acme.id, globex.root_ino),
            "mkdir": md.mkdir(acme.id, globex.root_ino, "x", 0o755, None),
            "symlink": md.symlink(acme.id, globex.root_ino, "x", "f", None),
            "link_from": md.link(acme.id, made.inode.ino, acme.root_ino, "x"),
            "link_into": md.link(acme.id, mine.inode.ino, globex.root_ino, "x"),
            "unlink": md.unlink(acme.id, globex.root_ino, "f"),
            "rmdir": md.rmdir(acme.id, globex.root_ino, "d"),
            "rename_from": md.rename(acme.id, globex.root_ino, "f", acme.root_ino, "f", False),
            "rename_into": md.rename(acme.id, acme.root_ino, "mine", globex.root_ino, "f", True),
            "copy_from": md.copy_file(acme.id, made.inode.ino, acme.root_ino, "x", False, None, Quota()),
            "copy_into": md.copy_file(acme.id, mine.inode.ino, globex.root_ino, "f", True, None, Quota()),
            "commit_into": md.commit_content(acme.id, globex.root_ino, "f", NewContent(blob_id, 1, SUMS, 0.0), None,
                                             0o644, Quota()),
            "setattr": md.setattr(acme.id, made.inode.ino, mode=0o600),
            "get_blob": md.get_blob(acme.id, made.inode.blob_id or ""),
        }
        outcomes = {}
        for name, call in calls.items():
            try:
                outcomes[name] = await call
            except NotFound:
                outcomes[name] = "ENOENT"
        assert {name: ("ENOENT" if name not in ("get_inode", "get_blob") else None) for name in calls} == outcomes
        assert ([("d",), ("f",)], [("mine",)]) == (
            await rows(md, "SELECT name FROM entries WHERE tenant_id = ? ORDER BY name", globex.id),
            await rows(md, "SELECT name FROM entries WHERE tenant_id = ? ORDER BY name", acme.id))

    async def test_commit_of_another_tenants_blob_fails(self, md: SqlMetadataStore) -> None:
        """An upload cannot commit a blob reserved for another tenant."""
        acme, globex = await md.ensure_tenant("acme"), await md.ensure_tenant("globex")
        blob_id = await new_blob(md, globex)
        with pytest.raises(NotFound):
            await md.commit_content(acme.id, acme.root_ino, "f", NewContent(blob_id, 1, SUMS, 0.0), None, 0o644,
                                    Quota())
        assert [] == await md.list_dir(acme.id, acme.root_ino)

    async def test_create_user_twice_fails(self, md: SqlMetadataStore) -> None:
        """A user name is unique within a tenant."""
        await md.create_user("acme", "alice", None, "/alice", Perm.all(), Quota())
        with pytest.raises(AlreadyExists):
            await md.create_user("acme", "alice", None, "/alice", Perm.all(), Quota())

    async def test_create_user_makes_home_and_grant(self, md: SqlMetadataStore) -> None:
        """A new user gets their home directory (owned by them) and one grant on it."""
        user = await md.create_user("acme", "alice", None, "/home/alice", Perm.LIST | Perm.UPLOAD, Quota(5, 6))
        home = await lookup(md, user.tenant, "home/alice")
        login = await md.load_login("acme", "alice")
        assert login is not None and home is not None
        assert ("dir", user.id, "/home/alice", Perm.LIST | Perm.UPLOAD, 5, 6) == (
            home.kind, home.owner_id, login.grants[0].path, login.grants[0].perms, login.user.quota_bytes,
            login.user.quota_files)

    async def test_load_login_of_unknown_user(self, md: SqlMetadataStore) -> None:
        """An unknown user or tenant loads as None."""
        await md.create_user("acme", "alice", None, "/alice", Perm.all(), Quota())
        assert (None, None) == (await md.load_login("acme", "bob"), await md.load_login("nope", "alice"))

    async def test_group_grants_are_loaded(self, md: SqlMetadataStore) -> None:
        """A login carries its groups' grants as well as its own."""
        user = await md.create_user("acme", "alice", None, "/alice", Perm.all(), Quota())

        def add_group(conn: sqlite3.Connection) -> None:
            gid = conn.execute("INSERT INTO groups (tenant_id, name) VALUES (?, 'staff') RETURNING id",
                               (user.tenant.id,)).fetchone()[0]
            conn.execute("INSERT INTO group_members (group_id, user_id) VALUES (?, ?)", (gid, user.id))
            conn.execute("INSERT INTO grants (tenant_id, principal_kind, principal_id, path, perms) "
                         "VALUES (?, 'group', ?, '/shared', 'list,download')", (user.tenant.id, gid))

        await md.db.write(add_group)
        login = await md.load_login("acme", "alice")
        assert login is not None
        assert {("user:alice", "/alice", Perm.all()), ("group:staff", "/shared", Perm.LIST | Perm.DOWNLOAD)} == {
            (g.principal, g.path, g.perms) for g in login.grants}


class TestSchema:
    async def test_new_database_gets_current_version(self, md: SqlMetadataStore) -> None:
        """A new database is migrated to SCHEMA_VERSION and records it once."""
        assert [(schema.SCHEMA_VERSION,)] == await rows(md, "SELECT version FROM schema_version")

    async def test_reopening_a_current_database_is_a_no_op(self, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
        """Opening a database already at the current version migrates nothing and keeps the data."""
        path = tmp_path / "m.db"
        first = SqlMetadataStore(SqliteDatabase(path))
        await first.open()
        await first.create_user("acme", "alice", None, "/alice", Perm.all(), Quota())
        await first.close()
        migrated_before = len([e for e in logs if e["event"] == "metadata.migrated"])
        second = SqlMetadataStore(SqliteDatabase(path))
        await second.open()
        try:
            assert (1, 0, [(schema.SCHEMA_VERSION,)], ["alice"]) == (
                migrated_before, len([e for e in logs if e["event"] == "metadata.migrated"]) - migrated_before,
                await rows(second, "SELECT version FROM schema_version"),
                [u.name for u in await second.list_users()])
        finally:
            await second.close()

    async def test_newer_database_is_refused(self, tmp_path: Path) -> None:
        """A database written by a newer xferd refuses to open, with StorageError, and is left unchanged."""
        path = tmp_path / "m.db"
        store = SqlMetadataStore(SqliteDatabase(path))
        await store.open()
        await store.close()
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE schema_version SET version = ?", (schema.SCHEMA_VERSION + 1,))
        conn.close()
        newer = SqlMetadataStore(SqliteDatabase(path))
        try:
            with pytest.raises(StorageError, match="newer than this xferd knows"):
                await newer.open()
        finally:
            await newer.close()
        with sqlite3.connect(path) as conn:
            assert [(schema.SCHEMA_VERSION + 1,)] == conn.execute("SELECT version FROM schema_version").fetchall()
        conn.close()

    async def test_version_2_database_gets_id_sequences_above_its_rows(self, tmp_path: Path) -> None:
        """A database of schema version 2 is migrated: new inodes and users get ids above every
        existing one, and no id is given out twice after that; a file's listed SHA-256 is its blob's."""
        path = tmp_path / "m.db"
        with sqlite3.connect(path) as conn:
            for migration in schema.MIGRATIONS[:2]:
                for stmt in migration:
                    conn.execute(stmt.replace("{id}", schema.DIALECT_IDENTITY["sqlite"]))
            conn.execute("INSERT INTO schema_version (version) VALUES (2)")
            conn.execute("INSERT INTO tenants (id, name, root_ino, created) VALUES (1, 'acme', 1, 0)")
            conn.execute("INSERT INTO users (id, tenant_id, name, home, created) VALUES (7, 1, 'old', '/', 0)")
            conn.executemany("INSERT INTO inodes (ino, tenant_id, kind, mode, mtime, atime, ctime) "
                             "VALUES (?, 1, 'dir', 493, 0, 0, 0)", [(1,), (40,)])
            conn.execute("INSERT INTO inodes (ino, tenant_id, kind, size, mode, mtime, atime, ctime, blob_id) "
                         "VALUES (39, 1, 'file', 1, 420, 0, 0, 0, 'b1')")
            conn.execute("INSERT INTO entries (tenant_id, parent, name, ino) VALUES (1, 1, 'old.txt', 39)")
            conn.execute("INSERT INTO blobs (id, tenant_id, size, sha256, state, refs, created, changed) "
                         "VALUES ('b1', 1, 1, 'abc', 'live', 1, 0, 0)")
        conn.close()
        md = SqlMetadataStore(SqliteDatabase(path))
        await md.open()
        try:
            acme = await md.ensure_tenant("acme")
            made = await md.mkdir(acme.id, acme.root_ino, "a", 0o755, None)
            await md.rmdir(acme.id, acme.root_ino, "a")
            again = await md.mkdir(acme.id, acme.root_ino, "b", 0o755, None)
            user = await md.create_user("acme", "new", None, "/", Perm.all(), Quota())
            _, sums = await md.list_dir_etags(acme.id, acme.root_ino)
            assert (41, 42, 8, {"b1": "abc"}, [(schema.SCHEMA_VERSION,)]) == (
                made.ino, again.ino, user.id, sums, await rows(md, "SELECT version FROM schema_version"))
        finally:
            await md.close()

    def test_statements_fill_the_dialect(self) -> None:
        """The identity column is spelled for each dialect; nothing is left as a placeholder."""
        for dialect in ("sqlite", "postgresql"):
            assert [] == [s for s in schema.statements(dialect, 0) if "{id}" in s]
        assert [] == schema.statements("sqlite", schema.SCHEMA_VERSION)


class TestResolve:
    async def test_root(self, md: SqlMetadataStore, t: Tenant) -> None:
        """No components is the root itself, with no parent."""
        r = await md.resolve(t.id, t.root_ino, [], True)
        assert (None, "", t.root_ino, ()) == (r.parent, r.name, r.inode.ino if r.inode else None, r.real)

    async def test_only_the_last_component_may_be_missing(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A missing last component resolves to its parent and name; a missing middle one is ENOENT."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        r = await md.resolve(t.id, t.root_ino, ["d", "new"], True)
        assert (d.ino, "new", None, ("d", "new")) == (r.parent, r.name, r.inode, r.real)
        with pytest.raises(NotFound):
            await md.resolve(t.id, t.root_ino, ["missing", "new"], True)

    async def test_file_in_the_middle_is_enotdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A file used as a directory is ENOTDIR."""
        await commit(md, t, t.root_ino, "f", 1)
        with pytest.raises(NotADirectory):
            await md.resolve(t.id, t.root_ino, ["f", "x"], True)

    async def test_relative_symlink(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A relative target is resolved from the link's directory."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        made = await commit(md, t, t.root_ino, "f", 3)
        await md.symlink(t.id, d.ino, "link", "../f", None)
        r = await md.resolve(t.id, t.root_ino, ["d", "link"], True)
        assert (made.inode.ino, ("f",)) == (r.inode.ino if r.inode else None, r.real)

    async def test_symlink_without_follow(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Without follow_last the link itself is returned; links in the middle are always followed."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        await md.symlink(t.id, t.root_ino, "dl", "d", None)
        await md.symlink(t.id, d.ino, "link", "x", None)
        r = await md.resolve(t.id, t.root_ino, ["dl", "link"], False)
        assert ("symlink", "x", ("d", "link")) == (r.inode.kind if r.inode else None,
                                                     r.inode.target if r.inode else None, r.real)

    async def test_absolute_symlink_starts_at_the_lookup_root(self, md: SqlMetadataStore, t: Tenant) -> None:
        """An absolute target starts again at the root the lookup was given (a user's home), not the tenant's."""
        home = await md.mkdir(t.id, t.root_ino, "home", 0o755, None)
        await commit(md, t, t.root_ino, "secret", 1)
        mine = await commit(md, t, home.ino, "secret", 2)
        await md.symlink(t.id, home.ino, "link", "/secret", None)
        r = await md.resolve(t.id, home.ino, ["link"], True)
        assert (mine.inode.ino, ("secret",)) == (r.inode.ino if r.inode else None, r.real)

    @pytest.mark.parametrize("target", ["../secret", "../../../secret", "/../secret", "a/../../../secret",
                                        "./../../secret", "/../../../secret"])
    async def test_dotdot_in_targets_cannot_escape(self, md: SqlMetadataStore, t: Tenant, target: str) -> None:
        """'..' in a link target stops at the lookup root: the tenant's /secret stays out of reach."""
        home = await md.mkdir(t.id, t.root_ino, "home", 0o755, None)
        await md.mkdir(t.id, home.ino, "a", 0o755, None)
        await commit(md, t, t.root_ino, "secret", 1)
        await md.symlink(t.id, home.ino, "link", target, None)
        r = await md.resolve(t.id, home.ino, ["link"], True)
        assert (home.ino, "secret", None, ("secret",)) == (r.parent, r.name, r.inode, r.real)

    async def test_symlink_chain(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Links to links are followed to the end."""
        made = await commit(md, t, t.root_ino, "f", 1)
        await md.symlink(t.id, t.root_ino, "l1", "f", None)
        await md.symlink(t.id, t.root_ino, "l2", "/l1", None)
        await md.symlink(t.id, t.root_ino, "l3", "./l2", None)
        r = await md.resolve(t.id, t.root_ino, ["l3"], True)
        assert made.inode.ino == (r.inode.ino if r.inode else None)

    @pytest.mark.parametrize("follow", [True, False])
    async def test_loop_is_eloop(self, md: SqlMetadataStore, t: Tenant, follow: bool) -> None:
        """A cycle of links is ELOOP when followed (always, when it is in the middle of a path)."""
        await md.symlink(t.id, t.root_ino, "a", "b", None)
        await md.symlink(t.id, t.root_ino, "b", "/a", None)
        await md.symlink(t.id, t.root_ino, "self", "self/x", None)
        with pytest.raises(LinkLoop):
            await md.resolve(t.id, t.root_ino, ["a"] if follow else ["a", "x"], follow)
        with pytest.raises(LinkLoop):
            await md.resolve(t.id, t.root_ino, ["self"], True)

    async def test_dangling_symlink(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A dangling link resolves to its missing target (where a create through it would go)."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        await md.symlink(t.id, t.root_ino, "link", "d/nothing", None)
        r = await md.resolve(t.id, t.root_ino, ["link"], True)
        assert (d.ino, "nothing", None, ("d", "nothing")) == (r.parent, r.name, r.inode, r.real)

    async def test_dangling_symlink_in_the_middle_is_enoent(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A path through a dangling link has a missing middle component."""
        await md.symlink(t.id, t.root_ino, "link", "nothing", None)
        with pytest.raises(NotFound):
            await md.resolve(t.id, t.root_ino, ["link", "x"], True)


class TestTreeChanges:
    async def test_mkdir_and_list(self, md: SqlMetadataStore, t: Tenant) -> None:
        """mkdir adds a directory; list_dir returns entries sorted by name."""
        await md.mkdir(t.id, t.root_ino, "b", 0o700, None)
        await md.mkdir(t.id, t.root_ino, "a", 0o755, None)
        assert [("a", "dir", 0o755), ("b", "dir", 0o700)] == [
            (n, i.kind, i.mode) for n, i in await md.list_dir(t.id, t.root_ino)]

    async def test_mkdir_existing_is_eexist(self, md: SqlMetadataStore, t: Tenant) -> None:
        """mkdir over any existing name is EEXIST."""
        await commit(md, t, t.root_ino, "f", 1)
        with pytest.raises(AlreadyExists):
            await md.mkdir(t.id, t.root_ino, "f", 0o755, None)

    async def test_list_a_file_is_enotdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Listing a file is ENOTDIR."""
        made = await commit(md, t, t.root_ino, "f", 1)
        with pytest.raises(NotADirectory):
            await md.list_dir(t.id, made.inode.ino)

    async def test_rmdir_rules(self, md: SqlMetadataStore, t: Tenant) -> None:
        """rmdir removes an empty directory; a non-empty one is ENOTEMPTY, a file ENOTDIR."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        await md.mkdir(t.id, d.ino, "sub", 0o755, None)
        await commit(md, t, t.root_ino, "f", 1)
        with pytest.raises(DirectoryNotEmpty):
            await md.rmdir(t.id, t.root_ino, "d")
        with pytest.raises(NotADirectory):
            await md.rmdir(t.id, t.root_ino, "f")
        await md.rmdir(t.id, d.ino, "sub")
        await md.rmdir(t.id, t.root_ino, "d")
        assert (["f"], []) == ([n for n, _ in await md.list_dir(t.id, t.root_ino)],
                               await rows(md, "SELECT ino FROM inodes WHERE ino IN (?, ?)", d.ino, d.ino + 1))

    async def test_unlink_a_directory_is_eisdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """unlink refuses directories."""
        await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        with pytest.raises(IsADirectory):
            await md.unlink(t.id, t.root_ino, "d")

    async def test_unlink_symlink_leaves_target(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Removing a link removes the link, not what it points at."""
        await commit(md, t, t.root_ino, "f", 1)
        await md.symlink(t.id, t.root_ino, "l", "f", None)
        assert [] == await md.unlink(t.id, t.root_ino, "l")
        assert ["f"] == [n for n, _ in await md.list_dir(t.id, t.root_ino)]

    async def test_setattr(self, md: SqlMetadataStore, t: Tenant) -> None:
        """setattr changes the mode bits and times it is given, and leaves the others."""
        made = await commit(md, t, t.root_ino, "f", 1)
        changed = await md.setattr(t.id, made.inode.ino, mode=0o100600, mtime=1000.0)
        stored = await md.get_inode(t.id, made.inode.ino)
        assert stored is not None
        assert (0o600, 1000.0, made.inode.atime) == (stored.mode, stored.mtime, stored.atime)
        assert (changed.mode, changed.mtime) == (stored.mode, stored.mtime)


class TestRename:
    async def test_rename_of_a_big_directory_is_one_small_transaction(self, md: SqlMetadataStore,
                                                                       t: Tenant) -> None:
        """Moving a directory of 10,000 files is one transaction that changes one entries row and no blob."""
        src = await md.mkdir(t.id, t.root_ino, "src", 0o755, None)
        dst = await md.mkdir(t.id, t.root_ino, "dst", 0o755, None)
        big = await md.mkdir(t.id, src.ino, "big", 0o755, None)

        def fill(conn: sqlite3.Connection) -> None:
            now = time.time()
            for i in range(10_000):
                blob_id = f"blob{i:05d}"
                conn.execute("INSERT INTO blobs (id, tenant_id, size, state, refs, created, changed) "
                             "VALUES (?, ?, 1, 'live', 1, ?, ?)", (blob_id, t.id, now, now))
                ino = conn.execute("INSERT INTO inodes (tenant_id, kind, size, mode, mtime, atime, ctime, blob_id) "
                                   "VALUES (?, 'file', 1, 420, ?, ?, ?, ?) RETURNING ino",
                                   (t.id, now, now, now, blob_id)).fetchone()[0]
                conn.execute("INSERT INTO entries (tenant_id, parent, name, ino) VALUES (?, ?, ?, ?)",
                             (t.id, big.ino, f"f{i:05d}", ino))

        await md.db.write(fill)
        entries_before = set(await rows(md, "SELECT tenant_id, parent, name, ino FROM entries"))
        blobs_before = await rows(md, "SELECT * FROM blobs ORDER BY id")
        statements: list[str] = []
        await md.db.read(lambda conn: conn.set_trace_callback(statements.append))
        try:
            await md.rename(t.id, src.ino, "big", dst.ino, "moved", False)
        finally:
            await md.db.read(lambda conn: conn.set_trace_callback(None))
        entries_after = set(await rows(md, "SELECT tenant_id, parent, name, ino FROM entries"))
        assert ({(t.id, src.ino, "big", big.ino)}, {(t.id, dst.ino, "moved", big.ino)}) == (
            entries_before - entries_after, entries_after - entries_before)
        assert blobs_before == await rows(md, "SELECT * FROM blobs ORDER BY id")
        assert (1, 1, 0) == (statements.count("BEGIN IMMEDIATE"), statements.count("COMMIT"),
                             statements.count("ROLLBACK"))
        assert len(statements) < 20, statements
        assert 10_000 == len(await md.list_dir(t.id, big.ino))

    @pytest.mark.parametrize("depth", [0, 1, 3])
    async def test_into_own_subtree_is_einval(self, md: SqlMetadataStore, t: Tenant, depth: int) -> None:
        """A directory cannot move into itself or anything below it."""
        a = await md.mkdir(t.id, t.root_ino, "a", 0o755, None)
        cur = a
        for i in range(depth):
            cur = await md.mkdir(t.id, cur.ino, f"s{i}", 0o755, None)
        with pytest.raises(InvalidArgument):
            await md.rename(t.id, t.root_ino, "a", cur.ino, "x", False)
        assert ["a"] == [n for n, _ in await md.list_dir(t.id, t.root_ino)]

    async def test_file_over_file_replaces_it(self, md: SqlMetadataStore, t: Tenant) -> None:
        """With overwrite a file replaces a file; the replaced file's blob becomes garbage."""
        old = await commit(md, t, t.root_ino, "old", 1)
        new = await commit(md, t, t.root_ino, "new", 2)
        released = await md.rename(t.id, t.root_ino, "new", t.root_ino, "old", True)
        blob = await md.get_blob(t.id, old.inode.blob_id or "")
        assert ([old.inode.blob_id], "garbage") == (released, blob.state if blob else None)
        assert [("old", new.inode.ino)] == [(n, i.ino) for n, i in await md.list_dir(t.id, t.root_ino)]

    async def test_no_overwrite_is_eexist(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Without overwrite any existing destination is EEXIST and nothing changes."""
        await commit(md, t, t.root_ino, "a", 1)
        await commit(md, t, t.root_ino, "b", 1)
        with pytest.raises(AlreadyExists):
            await md.rename(t.id, t.root_ino, "a", t.root_ino, "b", False)
        assert ["a", "b"] == [n for n, _ in await md.list_dir(t.id, t.root_ino)]

    async def test_file_over_directory_is_eisdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A file cannot replace a directory."""
        await commit(md, t, t.root_ino, "f", 1)
        await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        with pytest.raises(IsADirectory):
            await md.rename(t.id, t.root_ino, "f", t.root_ino, "d", True)

    async def test_directory_over_file_is_enotdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A directory cannot replace a file."""
        await commit(md, t, t.root_ino, "f", 1)
        await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        with pytest.raises(NotADirectory):
            await md.rename(t.id, t.root_ino, "d", t.root_ino, "f", True)

    async def test_directory_over_non_empty_directory_is_enotempty(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A directory replaces only an empty directory."""
        await md.mkdir(t.id, t.root_ino, "a", 0o755, None)
        full = await md.mkdir(t.id, t.root_ino, "full", 0o755, None)
        await commit(md, t, full.ino, "f", 1)
        with pytest.raises(DirectoryNotEmpty):
            await md.rename(t.id, t.root_ino, "a", t.root_ino, "full", True)
        assert ["a", "full"] == [n for n, _ in await md.list_dir(t.id, t.root_ino)]

    async def test_directory_over_empty_directory(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A directory replaces an empty directory, whose inode goes."""
        a = await md.mkdir(t.id, t.root_ino, "a", 0o755, None)
        empty = await md.mkdir(t.id, t.root_ino, "empty", 0o755, None)
        await md.rename(t.id, t.root_ino, "a", t.root_ino, "empty", True)
        assert ([("empty", a.ino)], None) == ([(n, i.ino) for n, i in await md.list_dir(t.id, t.root_ino)],
                                              await md.get_inode(t.id, empty.ino))

    async def test_onto_itself_is_a_no_op(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Renaming a name to itself, or onto another link of the same file, changes nothing."""
        made = await commit(md, t, t.root_ino, "f", 1)
        await md.link(t.id, made.inode.ino, t.root_ino, "g")
        assert [] == await md.rename(t.id, t.root_ino, "f", t.root_ino, "f", False)
        assert [] == await md.rename(t.id, t.root_ino, "f", t.root_ino, "g", True)
        assert ["f", "g"] == [n for n, _ in await md.list_dir(t.id, t.root_ino)]

    async def test_missing_source_is_enoent(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Renaming nothing is ENOENT."""
        with pytest.raises(NotFound):
            await md.rename(t.id, t.root_ino, "nope", t.root_ino, "x", False)


class TestLinksAndCopies:
    async def test_hard_link_counts(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Each hard link adds one to nlink and each unlink takes one; the blob lives until the last goes."""
        made = await commit(md, t, t.root_ino, "f", 7)
        await md.link(t.id, made.inode.ino, t.root_ino, "g")
        linked = await md.link(t.id, made.inode.ino, t.root_ino, "h")
        counts = [linked.nlink]
        released = [await md.unlink(t.id, t.root_ino, "f")]
        counts.append((await md.get_inode(t.id, made.inode.ino)).nlink)  # type: ignore[union-attr]
        released.append(await md.unlink(t.id, t.root_ino, "g"))
        counts.append((await md.get_inode(t.id, made.inode.ino)).nlink)  # type: ignore[union-attr]
        assert ([3, 2, 1], [[], []], ("live", 1)) == (counts, released, await blob_of(md, t, "h"))
        assert [made.inode.blob_id] == await md.unlink(t.id, t.root_ino, "h")
        blob = await md.get_blob(t.id, made.inode.blob_id or "")
        assert (None, "garbage", 0) == (await md.get_inode(t.id, made.inode.ino), blob.state if blob else None,
                                        blob.refs if blob else None)

    async def test_links_share_content(self, md: SqlMetadataStore, t: Tenant) -> None:
        """New content committed through one link is seen through the others (the inode is kept)."""
        made = await commit(md, t, t.root_ino, "f", 1)
        await md.link(t.id, made.inode.ino, t.root_ino, "g")
        result = await commit(md, t, t.root_ino, "g", 9)
        f = await lookup(md, t, "f")
        assert (False, made.inode.ino, 9) == (result.created, f.ino if f else None, f.size if f else None)

    async def test_link_to_a_directory_is_eisdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Directories cannot be hard-linked."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        with pytest.raises(IsADirectory):
            await md.link(t.id, d.ino, t.root_ino, "d2")

    async def test_link_over_existing_is_eexist(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A link needs a free name."""
        made = await commit(md, t, t.root_ino, "f", 1)
        with pytest.raises(AlreadyExists):
            await md.link(t.id, made.inode.ino, t.root_ino, "f")

    async def test_usage_counts_a_linked_file_once(self, md: SqlMetadataStore) -> None:
        """Hard links cost no quota; removing all of them gives the bytes and the file back."""
        user = await md.create_user("default", "alice", None, "/", Perm.all(), Quota())
        t = user.tenant
        made = await commit(md, t, t.root_ino, "f", 100, user)
        await md.link(t.id, made.inode.ino, t.root_ino, "g")
        linked = await md.usage(t.id, user.id)
        await md.unlink(t.id, t.root_ino, "f")
        await md.unlink(t.id, t.root_ino, "g")
        assert (Usage(100, 1), Usage(0, 0)) == (linked, await md.usage(t.id, user.id))

    async def test_copy_shares_the_blob(self, md: SqlMetadataStore) -> None:
        """copy_file makes a new inode that points at the same blob, now with two references."""
        user = await md.create_user("default", "alice", None, "/", Perm.all(), Quota())
        t = user.tenant
        made = await commit(md, t, t.root_ino, "f", 100, user)
        copied = await md.copy_file(t.id, made.inode.ino, t.root_ino, "g", False, user.id, Quota())
        assert (True, made.inode.blob_id, ("live", 2), Usage(200, 2)) == (
            copied.inode.ino != made.inode.ino, copied.inode.blob_id, await blob_of(md, t, "f"),
            await md.usage(t.id, user.id))
        await md.unlink(t.id, t.root_ino, "f")
        assert ("live", 1) == await blob_of(md, t, "g")

    async def test_copy_overwrite_rules(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A copy onto an existing file needs overwrite and releases the old content; onto a directory EISDIR."""
        made = await commit(md, t, t.root_ino, "f", 1)
        old = await commit(md, t, t.root_ino, "g", 2)
        await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        with pytest.raises(AlreadyExists):
            await md.copy_file(t.id, made.inode.ino, t.root_ino, "g", False, None, Quota())
        with pytest.raises(IsADirectory):
            await md.copy_file(t.id, made.inode.ino, t.root_ino, "d", True, None, Quota())
        result = await md.copy_file(t.id, made.inode.ino, t.root_ino, "g", True, None, Quota())
        assert ((old.inode.blob_id,), 1) == (result.released_blobs, result.inode.size)

    async def test_copy_over_own_file_charges_the_delta(self, md: SqlMetadataStore) -> None:
        """A copy that replaces one's own file needs no extra file slot and only the size difference."""
        quota = Quota(bytes=300, files=2)
        user = await md.create_user("default", "alice", None, "/", Perm.all(), quota)
        t = user.tenant
        made = await commit(md, t, t.root_ino, "f", 100, user, quota)
        await commit(md, t, t.root_ino, "g", 150, user, quota)
        await md.copy_file(t.id, made.inode.ino, t.root_ino, "g", True, user.id, quota)
        assert Usage(200, 2) == await md.usage(t.id, user.id)

    async def test_copy_respects_quota(self, md: SqlMetadataStore) -> None:
        """A copy that would pass the quota is refused and changes nothing."""
        user = await md.create_user("default", "alice", None, "/", Perm.all(), Quota(bytes=150))
        t = user.tenant
        made = await commit(md, t, t.root_ino, "f", 100, user, Quota(bytes=150))
        with pytest.raises(QuotaExceeded):
            await md.copy_file(t.id, made.inode.ino, t.root_ino, "g", False, user.id, Quota(bytes=150))
        assert (("live", 1), Usage(100, 1)) == (await blob_of(md, t, "f"), await md.usage(t.id, user.id))


class TestCommitContent:
    async def test_new_file(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Committing to a new name creates the file and makes its blob live with one reference."""
        result = await commit(md, t, t.root_ino, "f", 10)
        blob = await md.get_blob(t.id, result.inode.blob_id or "")
        assert (True, 10, "live", 1, SUMS) == (result.created, result.inode.size, blob.state if blob else None,
                                               blob.refs if blob else None, blob.checksums if blob else None)

    async def test_replacing_releases_the_old_blob(self, md: SqlMetadataStore, t: Tenant) -> None:
        """New content for an existing file keeps its inode and makes the old blob garbage."""
        first = await commit(md, t, t.root_ino, "f", 10)
        second = await commit(md, t, t.root_ino, "f", 20)
        blob = await md.get_blob(t.id, first.inode.blob_id or "")
        assert (False, first.inode.ino, (first.inode.blob_id,), "garbage") == (
            second.created, second.inode.ino, second.released_blobs, blob.state if blob else None)

    async def test_empty_file_has_no_blob(self, md: SqlMetadataStore, t: Tenant) -> None:
        """An empty file commits without a blob."""
        result = await md.commit_content(t.id, t.root_ino, "e", NewContent(None, 0, None, 5.0), None, 0o600,
                                         Quota())
        assert (None, 0, 5.0, 0o600) == (result.inode.blob_id, result.inode.size, result.inode.mtime,
                                         result.inode.mode)

    async def test_over_a_directory_is_eisdir(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Content cannot replace a directory; the blob stays pending for the upload to abandon."""
        await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        blob_id = await new_blob(md, t)
        with pytest.raises(IsADirectory):
            await md.commit_content(t.id, t.root_ino, "d", NewContent(blob_id, 1, SUMS, 0.0), None, 0o644, Quota())
        assert "pending" == (await md.blob_states())[blob_id]

    async def test_over_a_symlink_is_eexist(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Content is never committed onto a link entry."""
        await md.symlink(t.id, t.root_ino, "l", "f", None)
        with pytest.raises(AlreadyExists):
            await commit(md, t, t.root_ino, "l", 1)

    async def test_blob_already_collected_is_enoent(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A blob that was abandoned (collected as a crashed upload) cannot be committed."""
        blob_id = await new_blob(md, t)
        await md.abandon_blob(blob_id)
        with pytest.raises(NotFound):
            await md.commit_content(t.id, t.root_ino, "f", NewContent(blob_id, 1, SUMS, 0.0), None, 0o644, Quota())
        assert [] == await md.list_dir(t.id, t.root_ino)

    async def test_quota_bytes_is_exact(self, md: SqlMetadataStore) -> None:
        """Filling the byte quota exactly is allowed; one byte more is EDQUOT."""
        quota = Quota(bytes=100)
        user = await md.create_user("default", "alice", None, "/", Perm.all(), quota)
        t = user.tenant
        await commit(md, t, t.root_ino, "a", 60, user, quota)
        await commit(md, t, t.root_ino, "b", 40, user, quota)
        with pytest.raises(QuotaExceeded):
            await commit(md, t, t.root_ino, "c", 1, user, quota)
        assert Usage(100, 2) == await md.usage(t.id, user.id)

    async def test_quota_files_is_exact(self, md: SqlMetadataStore) -> None:
        """Filling the file-count quota exactly is allowed; one file more is EDQUOT (even an empty one)."""
        quota = Quota(files=2)
        user = await md.create_user("default", "alice", None, "/", Perm.all(), quota)
        t = user.tenant
        await commit(md, t, t.root_ino, "a", 1, user, quota)
        await commit(md, t, t.root_ino, "b", 1, user, quota)
        with pytest.raises(QuotaExceeded):
            await md.commit_content(t.id, t.root_ino, "c", NewContent(None, 0, None, 0.0), user.id, 0o644, quota)
        assert Usage(2, 2) == await md.usage(t.id, user.id)

    async def test_a_deleted_users_id_is_not_given_to_a_new_user(self, md: SqlMetadataStore) -> None:
        """A user made after another was deleted gets a new id: none of the old user's usage."""
        quota = Quota(bytes=100, files=10)
        await md.create_user("default", "keep", None, "/keep", Perm.all(), quota)
        gone = await md.create_user("default", "gone", None, "/gone", Perm.all(), quota)
        t = gone.tenant
        await commit(md, t, t.root_ino, "big", 90, gone, quota)
        await md.delete_user("default", "gone")
        new = await md.create_user("default", "new", None, "/new", Perm.all(), quota)
        assert (True, Usage(0, 0)) == (new.id > gone.id, await md.usage(t.id, new.id))

    async def test_replacing_own_file_charges_the_delta(self, md: SqlMetadataStore) -> None:
        """Replacing one's own file counts only the size difference, and no extra file."""
        quota = Quota(bytes=100, files=1)
        user = await md.create_user("default", "alice", None, "/", Perm.all(), quota)
        t = user.tenant
        await commit(md, t, t.root_ino, "a", 60, user, quota)
        await commit(md, t, t.root_ino, "a", 100, user, quota)
        grown = await md.usage(t.id, user.id)
        with pytest.raises(QuotaExceeded):
            await commit(md, t, t.root_ino, "a", 101, user, quota)
        await commit(md, t, t.root_ino, "a", 30, user, quota)
        assert (Usage(100, 1), Usage(30, 1)) == (grown, await md.usage(t.id, user.id))

    async def test_replacing_another_users_file_moves_the_charge(self, md: SqlMetadataStore) -> None:
        """Replacing someone else's file takes it off their usage and charges it to the replacer."""
        alice = await md.create_user("default", "alice", None, "/", Perm.all(), Quota())
        bob = await md.create_user("default", "bob", None, "/", Perm.all(), Quota())
        t = alice.tenant
        await commit(md, t, t.root_ino, "f", 50, alice)
        await commit(md, t, t.root_ino, "f", 70, bob)
        f = await lookup(md, t, "f")
        assert (Usage(0, 0), Usage(70, 1), bob.id) == (await md.usage(t.id, alice.id), await md.usage(t.id, bob.id),
                                                       f.owner_id if f else None)

    async def test_refused_commit_changes_nothing(self, md: SqlMetadataStore) -> None:
        """A commit refused for quota leaves the tree, the usage and every blob exactly as they were."""
        quota = Quota(bytes=100)
        user = await md.create_user("default", "alice", None, "/", Perm.all(), quota)
        t = user.tenant
        first = await commit(md, t, t.root_ino, "a", 90, user, quota)
        blob_id = await new_blob(md, t)
        tables = ("entries", "inodes", "blobs", "usage")
        before = [await rows(md, f"SELECT * FROM {table} ORDER BY 1, 2") for table in tables]  # noqa: S608
        with pytest.raises(QuotaExceeded):
            await md.commit_content(t.id, t.root_ino, "a", NewContent(blob_id, 111, SUMS, 0.0), user.id, 0o644,
                                    quota)
        after = [await rows(md, f"SELECT * FROM {table} ORDER BY 1, 2") for table in tables]  # noqa: S608
        assert before == after
        assert ("live", "pending") == ((await md.blob_states())[first.inode.blob_id or ""],
                                       (await md.blob_states())[blob_id])

    async def test_unlink_gives_back_quota(self, md: SqlMetadataStore) -> None:
        """Deleting a file gives its bytes and its file slot back."""
        user = await md.create_user("default", "alice", None, "/", Perm.all(), Quota())
        t = user.tenant
        await commit(md, t, t.root_ino, "a", 90, user)
        await md.unlink(t.id, t.root_ino, "a")
        assert Usage(0, 0) == await md.usage(t.id, user.id)


class TestNewEntryParent:
    @pytest.mark.parametrize("make", ["commit", "mkdir", "symlink"])
    async def test_a_parent_that_is_gone_or_a_file_is_refused_and_nothing_changes(self, md: SqlMetadataStore,
                                                                                t: Tenant, make: str) -> None:
        """A new entry in a directory removed meanwhile is ENOENT, in a file ENOTDIR; nothing is added."""
        gone = await md.mkdir(t.id, t.root_ino, "gone", 0o755, None)
        await md.rmdir(t.id, t.root_ino, "gone")
        a_file = (await commit(md, t, t.root_ino, "f", 1)).inode

        async def create(parent: int) -> object:
            if make == "commit":
                return await commit(md, t, parent, "x", 1)
            if make == "mkdir":
                return await md.mkdir(t.id, parent, "x", 0o755, None)
            return await md.symlink(t.id, parent, "x", "target", None)
        with pytest.raises(NotFound):
            await create(gone.ino)
        with pytest.raises(NotADirectory):
            await create(a_file.ino)
        assert (["f"], (await md.get_inode(t.id, a_file.ino))) == (
            [name for name, _ in await md.list_dir(t.id, t.root_ino)], a_file)

    async def test_a_new_file_touches_its_directory_a_replaced_one_does_not(self, md: SqlMetadataStore,
                                                                           t: Tenant) -> None:
        """Creating a file changes its directory's mtime and ctime; replacing one leaves them."""
        d = await md.mkdir(t.id, t.root_ino, "d", 0o755, None)
        await md.setattr(t.id, d.ino, mtime=1000.0)
        await commit(md, t, d.ino, "f", 1)
        after_create = await md.get_inode(t.id, d.ino)
        await md.setattr(t.id, d.ino, mtime=2000.0)
        await commit(md, t, d.ino, "f", 2)
        after_replace = await md.get_inode(t.id, d.ino)
        assert after_create is not None and after_replace is not None
        assert (True, 2000.0) == (after_create.mtime > 1000.0, after_replace.mtime)


class TestBlobs:
    async def test_mark_stale_pending(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Pending blobs of an earlier run of this node (or too old) become garbage; the current run's stay."""
        def add(blob_id: str, owner: str, created: float) -> Any:
            return md.db.write(lambda conn: conn.execute(
                "INSERT INTO blobs (id, tenant_id, state, owner, created, changed) VALUES (?, ?, 'pending', ?, ?, ?)",
                (blob_id, t.id, owner, created, created)))

        now = time.time()
        await add("old-boot", "node:old", now)
        await add("current", "node:boot", now)
        await add("other-node", "other:boot", now)
        await add("ancient", "other:boot", now - 10_000)
        count = await md.mark_stale_pending("node:", "node:boot", now - 5_000)
        assert (2, {"old-boot": "garbage", "current": "pending", "other-node": "pending", "ancient": "garbage"}) == (
            count, await md.blob_states())

    @pytest.mark.parametrize("other", ["nodeX1:boot", "NODE_1:boot"])
    async def test_mark_stale_pending_matches_the_node_exactly(self, md: SqlMetadataStore, t: Tenant,
                                                               other: str) -> None:
        """Another node's upload is never reclaimed, though its name matches this node's as a LIKE pattern."""
        await md.add_pending_blob("theirs", t.id, other)
        await md.mark_stale_pending("node_1:", "node_1:boot", 0.0)
        assert {"theirs": "pending"} == await md.blob_states()

    async def test_garbage_and_forget(self, md: SqlMetadataStore, t: Tenant) -> None:
        """garbage() lists blobs that became garbage before a time; forget_blobs drops only garbage rows."""
        first = await commit(md, t, t.root_ino, "f", 1)
        await md.unlink(t.id, t.root_ino, "f")
        live = await commit(md, t, t.root_ino, "g", 1)
        listed = await md.garbage(time.time() + 1)
        none_yet = await md.garbage(0.0)
        await md.forget_blobs([first.inode.blob_id or "", live.inode.blob_id or ""])
        assert ([(first.inode.blob_id, t.id)], [], {live.inode.blob_id: "live"}) == (
            listed, none_yet, await md.blob_states())


class TestLockLookups:
    """locks_near answers from the table; a tenant that never had a lock is answered without it."""

    @staticmethod
    def _lock(path: str) -> LockRecord:
        return LockRecord(secrets.token_hex(8), path, "0", "exclusive", "", 1, "alice", 60.0, -1.0)

    async def test_locks_are_per_tenant(self, md: SqlMetadataStore, t: Tenant) -> None:
        """A lock in one tenant is found there, at and above its path, and not in another tenant."""
        other = await md.ensure_tenant("other")
        lock = self._lock("/a/b")
        await md.create_lock(t.id, lock)
        assert ([lock], [lock], [], [], []) == (
            await md.locks_near(t.id, "/a/b", False), await md.locks_near(t.id, "/a", True),
            await md.locks_near(t.id, "/a/c", False), await md.locks_near(other.id, "/a/b", True),
            await md.locks_near(other.id, "/", True))

    async def test_locks_taken_before_a_restart_are_found(self, tmp_path: Path) -> None:
        """A store opened over a database that already holds locks finds them."""
        path = tmp_path / "metadata.db"
        first = SqlMetadataStore(SqliteDatabase(path))
        await first.open()
        tenant = await first.ensure_tenant("default")
        lock = self._lock("/kept")
        await first.create_lock(tenant.id, lock)
        await first.close()
        second = SqlMetadataStore(SqliteDatabase(path))
        await second.open()
        try:
            assert [lock] == await second.locks_near(tenant.id, "/kept", False)
        finally:
            await second.close()


class TestLookupsByMany:
    async def test_more_ids_than_one_query_binds(self, md: SqlMetadataStore, t: Tenant) -> None:
        """Lookups by a list of ids ask in chunks (SQLite binds at most 999 parameters): blobs
        spread over 1,200 ids, at both ends and across a chunk boundary, are all found."""
        found = [(await commit(md, t, t.root_ino, f"f{i}", 1)).inode.blob_id for i in range(3)]
        assert all(found)
        ids = [secrets.token_hex(16) for _ in range(1200)]
        for position, blob_id in zip((0, 500, 1199), found, strict=True):
            ids[position] = str(blob_id)
        assert ({str(b): SUMS.sha256 for b in found}, {str(b): t.id for b in found}) == (
            await md.blob_etags(t.id, ids), await md.live_blobs(ids))
