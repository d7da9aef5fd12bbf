"""The records the metadata store keeps: tenants, users, keys, grants, the file tree and blobs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

InodeKind = Literal["file", "dir", "symlink"]
BlobState = Literal["pending", "live", "garbage"]


class Perm(enum.Flag):
    """What a grant allows on a path and everything below it."""

    LIST = enum.auto()
    DOWNLOAD = enum.auto()
    UPLOAD = enum.auto()
    OVERWRITE = enum.auto()
    DELETE = enum.auto()
    RENAME = enum.auto()
    MKDIR = enum.auto()
    SYMLINK = enum.auto()
    CHMOD = enum.auto()
    CHTIMES = enum.auto()
    COPY = enum.auto()

    @classmethod
    def all(cls) -> Perm:
        value = cls(0)
        for member in cls:
            value |= member
        return value

    @classmethod
    def parse(cls, text: str) -> Perm:
        """``"list,download"`` or ``"*"``; raises ValueError naming an unknown permission."""
        value = cls(0)
        for word in (w.strip().lower() for w in text.split(",")):
            if not word:
                continue
            if word in ("*", "all"):
                value |= cls.all()
                continue
            try:
                value |= cls[word.upper()]
            except KeyError:
                known = ", ".join(m.name.lower() for m in cls if m.name)
                raise ValueError(f"unknown permission {word!r} (known: {known}, or *)") from None
        return value

    def render(self) -> str:
        if self == Perm.all():
            return "*"
        return ",".join(m.name.lower() for m in Perm if m in self and m.name)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    root_ino: int


@dataclass(frozen=True, slots=True)
class PublicKey:
    id: int
    key_type: str
    key_data: str  # the OpenSSH public key line
    fingerprint: str
    comment: str


@dataclass(frozen=True, slots=True)
class Grant:
    path: str  # tenant-absolute, normalized, "/" for the whole tenant
    perms: Perm
    principal: str  # "user:<name>" or "group:<name>"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    tenant: Tenant
    name: str
    password_hash: str | None
    disabled: bool
    home: str  # tenant-absolute, normalized
    quota_bytes: int  # 0: unlimited
    quota_files: int  # 0: unlimited


@dataclass(frozen=True, slots=True)
class Login:
    """Everything a login needs, read in one call: the user, their keys and grants."""

    user: User
    keys: tuple[PublicKey, ...]
    grants: tuple[Grant, ...]


@dataclass(slots=True)
class Inode:
    ino: int
    kind: InodeKind
    size: int
    mode: int  # permission bits only; the kind gives the type bits
    mtime: float
    atime: float
    ctime: float
    nlink: int
    blob_id: str | None
    target: str | None
    owner_id: int | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """A path looked up in the tree: its parent directory, last name, inode (None if absent),
    and the real path after following symbolic links, as components below the lookup root."""

    parent: int | None
    name: str
    inode: Inode | None
    real: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Checksums:
    """Whole-blob sums. SHA-256 is computed as the bytes stream in; MD5 (slower than the disk
    here) only when a client first asks for it, then stored: None until then."""

    sha256: str
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class BlobRecord:
    id: str
    tenant_id: int
    size: int
    checksums: Checksums | None
    state: BlobState
    refs: int


@dataclass(frozen=True, slots=True)
class NewContent:
    """What an upload commits: a live blob (or none for an empty file), its size and checksums."""

    blob_id: str | None
    size: int
    checksums: Checksums | None
    mtime: float
    atime: float | None = None  # None: the time of the commit


@dataclass(frozen=True, slots=True)
class Quota:
    bytes: int = 0  # 0: unlimited
    files: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    files: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    inode: Inode
    created: bool
    released_blobs: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AuditEvent:
    ts: float
    tenant: str
    user: str
    protocol: str
    remote: str
    event: str
    path: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LockRecord:
    """A WebDAV write lock on a tenant path (and, with depth "infinity", everything below it)."""

    token: str
    path: str  # tenant-absolute, no trailing slash ("/" for the tenant root)
    depth: str  # "0" or "infinity"
    scope: str  # "exclusive" or "shared"
    owner: str  # the client's <owner> XML, as sent
    user_id: int
    principal: str  # the user's name, as WebDAV shows it
    timeout: float  # seconds, as granted
    expire: float  # epoch seconds; negative: never

    def live(self, now: float) -> bool:
        return self.expire < 0 or self.expire > now

    def covers(self, path: str) -> bool:
        """Whether this lock protects ``path`` itself (not only its membership)."""
        return path == self.path or (self.depth == "infinity" and _below(self.path, path))


def _below(ancestor: str, path: str) -> bool:
    return ancestor == "/" or path.startswith(ancestor + "/")
