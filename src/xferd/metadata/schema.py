"""The metadata schema, as numbered migrations.

Each migration is a list of statements in the SQL that SQLite and PostgreSQL share; where they differ
(the integer identity column), ``{id}`` stands for the dialect's spelling. A store applies every
migration above the number in ``schema_version`` in one transaction, and refuses a database whose
version is newer than it knows.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: tenants, users, keys, groups, grants, the tree, blobs, usage, audit
    [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        """CREATE TABLE tenants (
            id {id}, name TEXT NOT NULL UNIQUE, root_ino BIGINT, created DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE users (
            id {id}, tenant_id BIGINT NOT NULL REFERENCES tenants(id),
            name TEXT NOT NULL, password_hash TEXT, disabled BOOLEAN NOT NULL DEFAULT FALSE,
            home TEXT NOT NULL, quota_bytes BIGINT NOT NULL DEFAULT 0, quota_files BIGINT NOT NULL DEFAULT 0,
            created DOUBLE PRECISION NOT NULL, UNIQUE (tenant_id, name))""",
        """CREATE TABLE user_keys (
            id {id}, tenant_id BIGINT NOT NULL, user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key_type TEXT NOT NULL, key_data TEXT NOT NULL, fingerprint TEXT NOT NULL, comment TEXT NOT NULL,
            UNIQUE (user_id, fingerprint))""",
        """CREATE TABLE groups (
            id {id}, tenant_id BIGINT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
            UNIQUE (tenant_id, name))""",
        """CREATE TABLE group_members (
            group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
            user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (group_id, user_id))""",
        """CREATE TABLE grants (
            id {id}, tenant_id BIGINT NOT NULL, principal_kind TEXT NOT NULL, principal_id BIGINT NOT NULL,
            path TEXT NOT NULL, perms TEXT NOT NULL, UNIQUE (tenant_id, principal_kind, principal_id, path))""",
        """CREATE TABLE inodes (
            ino {id}, tenant_id BIGINT NOT NULL, kind TEXT NOT NULL, size BIGINT NOT NULL DEFAULT 0,
            mode INTEGER NOT NULL, mtime DOUBLE PRECISION NOT NULL, atime DOUBLE PRECISION NOT NULL,
            ctime DOUBLE PRECISION NOT NULL, nlink INTEGER NOT NULL DEFAULT 1, blob_id TEXT, target TEXT,
            owner_id BIGINT)""",
        """CREATE TABLE entries (
            tenant_id BIGINT NOT NULL, parent BIGINT NOT NULL, name TEXT NOT NULL, ino BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, parent, name))""",
        "CREATE INDEX entries_by_ino ON entries (ino)",
        """CREATE TABLE blobs (
            id TEXT PRIMARY KEY, tenant_id BIGINT NOT NULL, region TEXT NOT NULL DEFAULT '',
            size BIGINT NOT NULL DEFAULT 0, sha256 TEXT, md5 TEXT, state TEXT NOT NULL,
            refs INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '',
            created DOUBLE PRECISION NOT NULL, changed DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX blobs_by_state ON blobs (state, changed)",
        """CREATE TABLE usage (
            tenant_id BIGINT NOT NULL, user_id BIGINT NOT NULL, bytes BIGINT NOT NULL DEFAULT 0,
            files BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, user_id))""",
        """CREATE TABLE audit (
            id {id}, ts DOUBLE PRECISION NOT NULL, tenant TEXT NOT NULL, username TEXT NOT NULL,
            protocol TEXT NOT NULL, remote TEXT NOT NULL, event TEXT NOT NULL, path TEXT NOT NULL,
            outcome TEXT NOT NULL, detail TEXT NOT NULL)""",
        "CREATE INDEX audit_by_ts ON audit (ts)",
    ],
    # 2: WebDAV locks (by tenant path, so every protocol and node sees them) and dead properties
    [
        """CREATE TABLE locks (
            token TEXT PRIMARY KEY, tenant_id BIGINT NOT NULL, path TEXT NOT NULL, depth TEXT NOT NULL,
            scope TEXT NOT NULL, owner TEXT NOT NULL, user_id BIGINT NOT NULL, principal TEXT NOT NULL,
            timeout DOUBLE PRECISION NOT NULL, expire DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX locks_by_path ON locks (tenant_id, path)",
        """CREATE TABLE dead_props (
            tenant_id BIGINT NOT NULL, ino BIGINT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (tenant_id, ino, name))""",
    ],
    # 3: inode numbers and user ids that are never given out twice. SQLite hands a deleted row's id
    # (the highest) to the next row; a new directory with a deleted home's number would become the
    # home of a session still open on it, and a new user with a deleted user's id would inherit its
    # usage and files. Each new id is the last one given out, plus one.
    [
        "CREATE TABLE id_sequences (name TEXT PRIMARY KEY, last BIGINT NOT NULL)",
        "INSERT INTO id_sequences (name, last) SELECT 'inodes', COALESCE(MAX(ino), 0) FROM inodes",
        "INSERT INTO id_sequences (name, last) SELECT 'users', COALESCE(MAX(id), 0) FROM users",
    ],
    # 4: a file's SHA-256 beside its blob id, so that a listing with ETags (WebDAV PROPFIND) reads the
    # tree alone, not one blob row per file
    [
        "ALTER TABLE inodes ADD COLUMN sha256 TEXT",
        "UPDATE inodes SET sha256 = (SELECT b.sha256 FROM blobs b WHERE b.id = inodes.blob_id) "
        "WHERE blob_id IS NOT NULL",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

DIALECT_IDENTITY = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
}


def statements(dialect: str, start: int) -> list[str]:
    """The statements that bring a database at version ``start`` to :data:`SCHEMA_VERSION`."""
    identity = DIALECT_IDENTITY[dialect]
    return [stmt.replace("{id}", identity) for migration in MIGRATIONS[start:] for stmt in migration]
