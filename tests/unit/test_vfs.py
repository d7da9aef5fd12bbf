"""xferd.vfs.filesystem over a real SQLite store and a real local blob store: the whole API, its
permissions, its confinement, its atomic uploads and its audit events."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from xferd.config import Config
from xferd.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    InvalidPath,
    IsADirectory,
    LinkLoop,
    NoSpace,
    NotADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unsupported,
)
from xferd.metadata.database import SqliteDatabase
from xferd.metadata.models import Perm, Quota
from xferd.metadata.sql import SqlMetadataStore
from xferd.storage.local import BATCH, LocalBlobStore
from xferd.vfs.audit import AuditSink
from xferd.vfs.filesystem import OpenMode, SetAttrs, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download

from .conftest import MakeSession
from .support import CREATE, OWNER, FaultyStore, events, get, put, tmp_files, write_all

Logs = list[dict[str, Any]]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def names(vfs: VirtualFS, s: Session, path: str = "/") -> list[str]:
    return [name for name, _ in (await vfs.list(s, path)).entries]


async def tree(vfs: VirtualFS, s: Session, path: str = "/") -> list[tuple[str, str, int]]:
    """Every entry below ``path`` as (path, kind, size), for before/after comparisons."""
    out = []
    for name, inode in (await vfs.list(s, path)).entries:
        child = path.rstrip("/") + "/" + name
        out.append((child, inode.kind, inode.size))
        if inode.kind == "dir":
            out += await tree(vfs, s, child)
    return out


@pytest.fixture
async def admin(make_session: MakeSession) -> Session:
    """A user whose home is the tenant's root, with every permission."""
    return await make_session("admin", home="/")


class TestSessions:
    async def test_home_is_created(self, vfs: VirtualFS, md: SqlMetadataStore, alice: Session) -> None:
        """A session is rooted at the user's home directory, made if missing."""
        home = await md.resolve(alice.tenant.id, alice.tenant.root_ino, ["alice"], True)
        assert home.inode is not None
        assert (alice.root_ino, "dir") == (home.inode.ino, home.inode.kind)

    async def test_session_fields(self, alice: Session) -> None:
        """A session carries who, over what and from where, for its log lines."""
        fields = alice.fields
        assert ("default", "alice", "test", "127.0.0.1", 12) == (
            fields["tenant"], fields["user"], fields["protocol"], fields["remote"], len(fields["session"]))

    async def test_home_removed_behind_the_session_is_recreated(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                                admin: Session) -> None:
        """A user whose home disappeared gets a new empty one at the next login."""
        await md.create_user("default", "carol", None, "/carol", Perm.all(), Quota())
        await vfs.rmdir(admin, "/carol")
        login = await md.load_login("default", "carol")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        assert ([], True) == (await names(vfs, s), "carol" in await names(vfs, admin))


class TestTree:
    async def test_mkdir_list_stat(self, vfs: VirtualFS, alice: Session) -> None:
        """mkdir makes a directory that list and stat show, owned by the user, with the mode asked for."""
        await vfs.mkdir(alice, "docs", 0o750)
        await vfs.mkdir(alice, "/docs/sub")
        listing = await vfs.list(alice, "/docs/..")
        st = await vfs.stat(alice, "docs")
        sub = await names(vfs, alice, "docs")
        assert ((), ["docs"], "dir", 0o750, alice.user.id, ["sub"]) == (
            listing.real, [n for n, _ in listing.entries], st.kind, st.mode, st.owner_id, sub)

    async def test_mkdir_existing_is_eexist(self, vfs: VirtualFS, alice: Session) -> None:
        """mkdir over an existing name is EEXIST."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(AlreadyExists):
            await vfs.mkdir(alice, "d")

    async def test_mkdir_root_is_einval(self, vfs: VirtualFS, alice: Session) -> None:
        """The home itself cannot be made, removed or renamed."""
        for call in (vfs.mkdir(alice, "/"), vfs.rmdir(alice, "."), vfs.rename(alice, "/", "x"),
                     vfs.remove(alice, "")):
            with pytest.raises(InvalidPath):
                await call

    async def test_stat_missing_is_enoent(self, vfs: VirtualFS, alice: Session) -> None:
        """stat of nothing is ENOENT; through a missing directory too."""
        for path in ("nope", "nope/deeper"):
            with pytest.raises(NotFound):
                await vfs.stat(alice, path)

    async def test_list_a_file_is_enotdir(self, vfs: VirtualFS, alice: Session) -> None:
        """Listing a file is ENOTDIR."""
        await put(vfs, alice, "f", b"x")
        with pytest.raises(NotADirectory):
            await vfs.list(alice, "f")

    async def test_realpath(self, vfs: VirtualFS, alice: Session) -> None:
        """realpath follows links and normalizes; the last component need not exist."""
        await vfs.mkdir(alice, "d")
        await vfs.symlink(alice, "l", "d")
        assert ("/d/new", "/", "/d") == (await vfs.realpath(alice, "./l/../l/new"), await vfs.realpath(alice, ".."),
                                         await vfs.realpath(alice, "/../../l"))

    async def test_rmdir(self, vfs: VirtualFS, alice: Session) -> None:
        """rmdir removes an empty directory; a non-empty one is ENOTEMPTY; a file ENOTDIR."""
        await vfs.mkdir(alice, "d")
        await put(vfs, alice, "d/f", b"x")
        with pytest.raises(DirectoryNotEmpty):
            await vfs.rmdir(alice, "d")
        with pytest.raises(NotADirectory):
            await vfs.rmdir(alice, "d/f")
        await vfs.remove(alice, "d/f")
        await vfs.rmdir(alice, "d")
        assert [] == await names(vfs, alice)

    async def test_remove(self, vfs: VirtualFS, alice: Session) -> None:
        """remove deletes a file; a directory is EISDIR; nothing is ENOENT."""
        await put(vfs, alice, "f", b"x")
        await vfs.mkdir(alice, "d")
        await vfs.remove(alice, "f")
        with pytest.raises(IsADirectory):
            await vfs.remove(alice, "d")
        with pytest.raises(NotFound):
            await vfs.remove(alice, "f")
        assert ["d"] == await names(vfs, alice)

    async def test_rename_file(self, vfs: VirtualFS, alice: Session) -> None:
        """rename moves a file with its content; the old name is gone."""
        await vfs.mkdir(alice, "d")
        await put(vfs, alice, "f", b"content")
        await vfs.rename(alice, "f", "d/g")
        assert (["d"], b"content") == (await names(vfs, alice), await get(vfs, alice, "d/g"))

    async def test_rename_directory_moves_its_tree(self, vfs: VirtualFS, alice: Session) -> None:
        """Renaming a directory moves everything below it."""
        await vfs.mkdir(alice, "a")
        await vfs.mkdir(alice, "a/b")
        await put(vfs, alice, "a/b/f", b"deep")
        await vfs.rename(alice, "a", "z")
        assert (["z"], b"deep") == (await names(vfs, alice), await get(vfs, alice, "z/b/f"))

    async def test_rename_without_overwrite_is_eexist(self, vfs: VirtualFS, alice: Session) -> None:
        """Without overwrite an existing destination is EEXIST and both files stay."""
        await put(vfs, alice, "a", b"A")
        await put(vfs, alice, "b", b"B")
        with pytest.raises(AlreadyExists):
            await vfs.rename(alice, "a", "b")
        assert (b"A", b"B") == (await get(vfs, alice, "a"), await get(vfs, alice, "b"))

    async def test_rename_with_overwrite(self, vfs: VirtualFS, alice: Session) -> None:
        """With overwrite a file replaces a file (POSIX rename)."""
        await put(vfs, alice, "a", b"A")
        await put(vfs, alice, "b", b"B")
        await vfs.rename(alice, "a", "b", overwrite=True)
        assert (["b"], b"A") == (await names(vfs, alice), await get(vfs, alice, "b"))

    async def test_rename_into_own_subtree_is_einval(self, vfs: VirtualFS, alice: Session) -> None:
        """A directory cannot move below itself."""
        await vfs.mkdir(alice, "a")
        await vfs.mkdir(alice, "a/b")
        with pytest.raises(InvalidArgument):
            await vfs.rename(alice, "a", "a/b/c")

    async def test_rename_moves_a_symlink_not_its_target(self, vfs: VirtualFS, alice: Session) -> None:
        """Renaming a link renames the link."""
        await put(vfs, alice, "f", b"x")
        await vfs.symlink(alice, "l", "f")
        await vfs.rename(alice, "l", "m")
        assert (["f", "m"], "f") == (await names(vfs, alice), await vfs.readlink(alice, "m"))

    async def test_symlink_and_readlink(self, vfs: VirtualFS, alice: Session) -> None:
        """A link stores its target as given; stat follows it, stat without follow does not."""
        await put(vfs, alice, "f", b"12345")
        await vfs.symlink(alice, "l", "./f")
        followed = await vfs.stat(alice, "l")
        own = await vfs.stat(alice, "l", follow=False)
        assert ("./f", "file", 5, "symlink", 3) == (await vfs.readlink(alice, "l"), followed.kind, followed.size,
                                                    own.kind, own.size)

    async def test_readlink_of_a_file_is_einval(self, vfs: VirtualFS, alice: Session) -> None:
        """readlink of something that is not a link is EINVAL."""
        await put(vfs, alice, "f", b"x")
        with pytest.raises(InvalidArgument):
            await vfs.readlink(alice, "f")

    async def test_symlink_over_existing_is_eexist(self, vfs: VirtualFS, alice: Session) -> None:
        """A link needs a free name; a dangling link still occupies its name."""
        await vfs.symlink(alice, "l", "nowhere")
        with pytest.raises(AlreadyExists):
            await vfs.symlink(alice, "l", "elsewhere")

    async def test_symlink_loop_is_eloop(self, vfs: VirtualFS, alice: Session) -> None:
        """Following a link loop is ELOOP."""
        await vfs.symlink(alice, "a", "b")
        await vfs.symlink(alice, "b", "a")
        with pytest.raises(LinkLoop):
            await vfs.stat(alice, "a")

    async def test_upload_through_dangling_link_creates_target(self, vfs: VirtualFS, alice: Session) -> None:
        """Writing through a dangling link creates the file it points at."""
        await vfs.symlink(alice, "l", "target")
        await put(vfs, alice, "l", b"via link")
        assert (["l", "target"], b"via link") == (await names(vfs, alice), await get(vfs, alice, "target"))

    async def test_hard_link(self, vfs: VirtualFS, alice: Session) -> None:
        """A hard link is a second name for the same file: new content shows through both."""
        await put(vfs, alice, "f", b"one")
        linked = await vfs.link(alice, "f", "g")
        await put(vfs, alice, "g", b"two", OpenMode(write=True, truncate=True))
        await vfs.remove(alice, "g")
        assert (2, b"two", 1) == (linked.nlink, await get(vfs, alice, "f"), (await vfs.stat(alice, "f")).nlink)

    async def test_hard_link_to_directory_is_eisdir(self, vfs: VirtualFS, alice: Session) -> None:
        """Directories cannot be hard-linked."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.link(alice, "d", "e")

    async def test_copy(self, vfs: VirtualFS, alice: Session, md: SqlMetadataStore) -> None:
        """copy makes an independent file that shares the blob: no bytes move."""
        await put(vfs, alice, "f", b"shared")
        copied = await vfs.copy(alice, "f", "g")
        original = await vfs.stat(alice, "f")
        blob = await md.get_blob(alice.tenant.id, original.blob_id or "")
        await put(vfs, alice, "f", b"changed")
        assert (True, original.blob_id, 2, b"shared") == (
            copied.ino != original.ino, copied.blob_id, blob.refs if blob else None, await get(vfs, alice, "g"))

    async def test_copy_rules(self, vfs: VirtualFS, alice: Session) -> None:
        """copy refuses a directory source (EISDIR) and an existing destination without overwrite (EEXIST)."""
        await put(vfs, alice, "f", b"1")
        await put(vfs, alice, "g", b"2")
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.copy(alice, "d", "e")
        with pytest.raises(AlreadyExists):
            await vfs.copy(alice, "f", "g")
        await vfs.copy(alice, "f", "g", overwrite=True)
        assert b"1" == await get(vfs, alice, "g")

    async def test_setstat_mode_and_times(self, vfs: VirtualFS, alice: Session) -> None:
        """setstat changes permission bits and times."""
        await put(vfs, alice, "f", b"x")
        await vfs.setstat(alice, "f", SetAttrs(mode=0o100600, mtime=1_000_000.0, atime=2_000_000.0))
        st = await vfs.stat(alice, "f")
        assert (0o600, 1_000_000.0, 2_000_000.0) == (st.mode, st.mtime, st.atime)

    async def test_setstat_owner_change_is_unsupported(self, vfs: VirtualFS, alice: Session) -> None:
        """Changing the owner is EOPNOTSUPP; 'changing' it to the current owner is fine."""
        await put(vfs, alice, "f", b"x")
        await vfs.setstat(alice, "f", SetAttrs(uid=alice.user.id, gid=alice.user.id))
        with pytest.raises(Unsupported):
            await vfs.setstat(alice, "f", SetAttrs(uid=alice.user.id + 1))

    async def test_setstat_size(self, vfs: VirtualFS, alice: Session) -> None:
        """setstat with a size truncates or extends the content with zeros."""
        await put(vfs, alice, "f", b"0123456789")
        shorter = await vfs.setstat(alice, "f", SetAttrs(size=4))
        short = await get(vfs, alice, "f")
        await vfs.setstat(alice, "f", SetAttrs(size=6))
        assert (4, b"0123", b"0123\0\0") == (shorter.size, short, await get(vfs, alice, "f"))

    async def test_setstat_size_of_directory_is_eisdir(self, vfs: VirtualFS, alice: Session) -> None:
        """A directory has no size to set."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.setstat(alice, "d", SetAttrs(size=1))


class TestContent:
    async def test_round_trip(self, vfs: VirtualFS, alice: Session) -> None:
        """Bytes uploaded in chunks come back exactly, with the file's size and mode."""
        data = bytes(range(256)) * 5000
        upload = await vfs.open_write(alice, "f", CREATE, perm_bits=0o640)
        await write_all(upload, data)
        inode = await upload.close()
        assert (len(data), 0o640, data) == (inode.size, inode.mode, await get(vfs, alice, "f"))

    async def test_empty_file(self, vfs: VirtualFS, alice: Session) -> None:
        """A file closed without writes exists and is empty."""
        upload = await vfs.open_write(alice, "e", CREATE)
        inode = await upload.close()
        assert (0, b"", sha256(b"")) == (inode.size, await get(vfs, alice, "e"),
                                         await vfs.checksum(alice, "e", "sha256"))

    async def test_read_with_offsets(self, vfs: VirtualFS, alice: Session) -> None:
        """A download reads any range and nothing past the end."""
        await put(vfs, alice, "f", b"0123456789")
        download = await vfs.open_read(alice, "f")
        try:
            got = (await download.read(3, 4), await download.read(8, 100), await download.read(10, 5))
        finally:
            await download.close()
        assert (b"3456", b"89", b"") == got

    async def test_open_read_of_directory_is_eisdir(self, vfs: VirtualFS, alice: Session) -> None:
        """A directory cannot be downloaded."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.open_read(alice, "d")

    async def test_open_write_missing_without_create_is_enoent(self, vfs: VirtualFS, alice: Session) -> None:
        """Opening a missing file for writing without create is ENOENT."""
        with pytest.raises(NotFound):
            await vfs.open_write(alice, "nope", OpenMode(write=True))

    async def test_open_write_directory_is_eisdir(self, vfs: VirtualFS, alice: Session) -> None:
        """A directory cannot be written."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.open_write(alice, "d", CREATE)

    async def test_exclusive_create(self, vfs: VirtualFS, alice: Session) -> None:
        """create+exclusive makes a new file but refuses an existing one (EEXIST), which keeps its content."""
        excl = OpenMode(write=True, create=True, exclusive=True)
        await put(vfs, alice, "f", b"first", excl)
        with pytest.raises(AlreadyExists):
            await vfs.open_write(alice, "f", excl)
        assert b"first" == await get(vfs, alice, "f")

    async def test_exclusive_create_is_atomic(self, vfs: VirtualFS, alice: Session) -> None:
        """Of two exclusive creates of one name racing, only one succeeds (O_EXCL lock files rely on it)."""
        excl = OpenMode(write=True, create=True, exclusive=True)
        first = await vfs.open_write(alice, "lock", excl)
        second = await vfs.open_write(alice, "lock", excl)
        await first.write(0, b"first")
        await second.write(0, b"second")
        await first.close()
        with pytest.raises(AlreadyExists):
            await second.close()
        assert b"first" == await get(vfs, alice, "lock")

    async def test_no_partial_file_is_visible(self, vfs: VirtualFS, alice: Session) -> None:
        """While an upload is open, stat, list and reads show the old content; after close, the new."""
        await put(vfs, alice, "f", b"old")
        upload = await vfs.open_write(alice, "f", CREATE)
        await write_all(upload, b"new content " * 10_000)
        during = ((await vfs.stat(alice, "f")).size, await get(vfs, alice, "f"),
                  [(n, i.size) for n, i in (await vfs.list(alice, "/")).entries])
        await upload.close()
        assert ((3, b"old", [("f", 3)]), b"new content " * 10_000) == (during, await get(vfs, alice, "f"))

    async def test_new_file_appears_only_at_close(self, vfs: VirtualFS, alice: Session) -> None:
        """A file being created does not exist for anyone until its upload closes."""
        upload = await vfs.open_write(alice, "new", CREATE)
        await upload.write(0, b"data")
        with pytest.raises(NotFound):
            await vfs.stat(alice, "new")
        during = await names(vfs, alice)
        await upload.close()
        assert ([], ["new"]) == (during, await names(vfs, alice))

    async def test_abort_keeps_old_content(self, vfs: VirtualFS, alice: Session, md: SqlMetadataStore,
                                           storage: LocalBlobStore) -> None:
        """An aborted upload changes nothing; its blob leaves no trace (no row, no file)."""
        await put(vfs, alice, "f", b"old")
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"never seen")
        await upload.abort()
        assert (b"old", None, [], set(), False) == (
            await get(vfs, alice, "f"), (await md.blob_states()).get(upload.writer.blob_id), tmp_files(storage),
            vfs.open_transfers, upload.writer.blob_id in await storage.blob_ids())

    async def test_read_download_survives_replacement(self, vfs: VirtualFS, alice: Session) -> None:
        """A download opened before the file is replaced keeps reading the content it opened."""
        await put(vfs, alice, "f", b"old content")
        download = await vfs.open_read(alice, "f")
        try:
            await put(vfs, alice, "f", b"new")
            await vfs.remove(alice, "f")
            assert b"old content" == await download.read(0, 100)
        finally:
            await download.close()

    async def test_scp_style_overwrite(self, vfs: VirtualFS, alice: Session) -> None:
        """Writing over an existing file without TRUNC, then setting the size, leaves exactly the new content."""
        await put(vfs, alice, "f", b"0123456789" * 1000)
        upload = await vfs.open_write(alice, "f", OpenMode(write=True, create=True))
        await upload.write(0, b"abcd")
        await upload.close()
        merged = await get(vfs, alice, "f")
        await vfs.setstat(alice, "f", SetAttrs(size=4))
        assert (b"abcd" + (b"0123456789" * 1000)[4:], b"abcd", sha256(b"abcd")) == (
            merged, await get(vfs, alice, "f"), await vfs.checksum(alice, "f", "sha256"))

    async def test_truncate_on_the_open_handle(self, vfs: VirtualFS, alice: Session) -> None:
        """An fsetstat-style truncate before close gives the new content only."""
        await put(vfs, alice, "f", b"0123456789")
        upload = await vfs.open_write(alice, "f", OpenMode(write=True))
        await upload.write(0, b"ab")
        await upload.truncate(2)
        await upload.close()
        assert b"ab" == await get(vfs, alice, "f")

    async def test_append(self, vfs: VirtualFS, alice: Session) -> None:
        """In append mode every write goes to the end, whatever offset it names."""
        await put(vfs, alice, "log", b"one\n")
        upload = await vfs.open_write(alice, "log", OpenMode(write=True, append=True))
        await upload.write(0, b"two\n")
        await upload.write(0, b"three\n")
        await upload.close()
        assert b"one\ntwo\nthree\n" == await get(vfs, alice, "log")

    async def test_read_write_handle_sees_old_content(self, vfs: VirtualFS, alice: Session) -> None:
        """A read-write handle reads the existing bytes and its own writes."""
        await put(vfs, alice, "f", b"0123456789")
        upload = await vfs.open_write(alice, "f", OpenMode(read=True, write=True))
        await upload.write(2, b"ab")
        seen = await upload.read(0, 10)
        await upload.close()
        assert (b"01ab456789", b"01ab456789") == (seen, await get(vfs, alice, "f"))

    async def test_write_only_handle_cannot_read(self, vfs: VirtualFS, alice: Session) -> None:
        """Reading a handle opened only for writing is EACCES."""
        upload = await vfs.open_write(alice, "f", CREATE)
        try:
            with pytest.raises(PermissionDenied):
                await upload.read(0, 1)
        finally:
            await upload.abort()

    async def test_set_times_before_close(self, vfs: VirtualFS, alice: Session) -> None:
        """Times set on an open upload are the file's times once it commits (scp -p, sftp put -p)."""
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"x")
        upload.set_times(1_000_000.0, 2_000_000.0)
        await upload.close()
        st = await vfs.stat(alice, "f")
        assert (1_000_000.0, 2_000_000.0) == (st.mtime, st.atime)

    async def test_overwrite_keeps_mode(self, vfs: VirtualFS, alice: Session) -> None:
        """Replacing a file's content keeps its permission bits."""
        upload = await vfs.open_write(alice, "f", CREATE, perm_bits=0o600)
        await upload.close()
        await put(vfs, alice, "f", b"new")
        assert 0o600 == (await vfs.stat(alice, "f")).mode

    async def test_flush_keeps_the_upload_invisible(self, vfs: VirtualFS, alice: Session) -> None:
        """flush() (SFTP fsync) makes written bytes durable without showing them; close still commits."""
        await put(vfs, alice, "f", b"old")
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"new")
        try:
            await upload.flush()
            assert b"old" == await get(vfs, alice, "f")
            await upload.close()
        finally:
            await upload.abort()
        assert b"new" == await get(vfs, alice, "f")

    async def test_close_twice_is_an_error(self, vfs: VirtualFS, alice: Session) -> None:
        """A second close does not commit again."""
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.close()
        with pytest.raises(OSError):
            await upload.close()

    async def test_transfers_are_tracked(self, vfs: VirtualFS, alice: Session) -> None:
        """Open uploads and downloads are counted until they close (the daemon's shutdown waits on them)."""
        await put(vfs, alice, "f", b"x")
        upload = await vfs.open_write(alice, "g", CREATE)
        download = await vfs.open_read(alice, "f")
        during = (len(vfs.open_transfers), vfs.transfers_idle.is_set())
        await upload.close()
        await download.close()
        assert ((2, False), (0, True)) == (during, (len(vfs.open_transfers), vfs.transfers_idle.is_set()))


class TestReadWhole:
    """read_whole: a small file's content in one call (a WebDAV GET answered on the loop)."""

    async def test_small_file_with_its_etag(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """The content and its stored SHA-256 come back, and the download is audited."""
        await put(vfs, alice, "f", b"small")
        found = await vfs.read_whole(alice, "f", 100)
        assert found is not None
        inode, data, etag = found
        assert (b"small", sha256(b"small"), 5) == (data, etag, inode.size)
        assert [("/f", "ok", 5)] == [(e["path"], e["outcome"], e["bytes"]) for e in events(logs, "fs.download")]
        assert set() == vfs.open_transfers

    async def test_empty_file(self, vfs: VirtualFS, alice: Session) -> None:
        """An empty file (no blob) is read as empty, with the SHA-256 of nothing."""
        await (await vfs.open_write(alice, "e", CREATE)).close()
        found = await vfs.read_whole(alice, "e", 100)
        assert found is not None
        assert (b"", sha256(b"")) == found[1:]

    async def test_a_file_up_to_the_limit(self, vfs: VirtualFS, alice: Session) -> None:
        """A file of exactly the limit is read; one byte more is declined."""
        await put(vfs, alice, "f", b"12345")
        assert (await vfs.read_whole(alice, "f", 5), await vfs.read_whole(alice, "f", 4)) == (
            (await vfs.stat(alice, "f"), b"12345", sha256(b"12345")), None)

    async def test_what_it_declines_leaves_no_trace(self, vfs: VirtualFS, alice: Session,
                                                    make_session: MakeSession, logs: Logs) -> None:
        """A missing path, a missing parent, a directory, a file over the limit, or a reader without
        the download permission: None, and no audit event (the full path answers and audits)."""
        await put(vfs, alice, "f", b"12345")
        await vfs.mkdir(alice, "d")
        blind = await make_session("blind", home="/alice", perms=Perm.all() & ~Perm.DOWNLOAD)
        logs.clear()
        got = [await vfs.read_whole(alice, "missing", 10), await vfs.read_whole(alice, "nodir/x", 10),
               await vfs.read_whole(alice, "d", 10), await vfs.read_whole(alice, "f", 4),
               await vfs.read_whole(blind, "f", 10)]
        assert [None] * 5 == got
        assert [] == [e for e in logs if str(e.get("event", "")).startswith("fs.")]

    async def test_a_blob_gone_from_the_store_is_declined(self, vfs: VirtualFS, alice: Session,
                                                          storage: LocalBlobStore, logs: Logs) -> None:
        """A file whose blob cannot be opened is left to the full path (which meets the same error
        and audits it): None, and no trace here."""
        await put(vfs, alice, "f", b"12345")
        inode = await vfs.stat(alice, "f")
        assert inode.blob_id is not None
        storage.path_of(alice.tenant.id, inode.blob_id).unlink()
        logs.clear()
        assert (None, []) == (await vfs.read_whole(alice, "f", 10),
                              [e for e in logs if str(e.get("event", "")).startswith("fs.")])

    async def test_a_read_error_is_audited_and_raised(self, vfs: VirtualFS, alice: Session, logs: Logs,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """Once open, a failing read is the download's failure: raised, and audited as such."""
        await put(vfs, alice, "f", b"12345")

        async def broken(self: Any, offset: int, size: int) -> bytes:
            raise StorageError("disk gone")

        monkeypatch.setattr(Download, "read", broken)
        with pytest.raises(StorageError):
            await vfs.read_whole(alice, "f", 10)
        assert ["EIO"] == [e["outcome"] for e in events(logs, "fs.download")]
        assert set() == vfs.open_transfers


class TestRemovePlain:
    """remove_plain: a file's removal in one call (a WebDAV DELETE answered on the loop)."""

    async def test_a_file_and_a_link_are_removed(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A file and a symbolic link go, each audited as fs.remove."""
        await put(vfs, alice, "f", b"x")
        await vfs.symlink(alice, "l", "f")
        assert (True, True, []) == (await vfs.remove_plain(alice, "f"), await vfs.remove_plain(alice, "l"),
                                    await names(vfs, alice))
        assert [("f", "ok"), ("l", "ok")] == [(e["path"], e["outcome"]) for e in events(logs, "fs.remove")]

    async def test_what_it_declines_stays_and_leaves_no_trace(self, vfs: VirtualFS, alice: Session,
                                                              make_session: MakeSession, logs: Logs) -> None:
        """Nothing there, a directory, a reader without the delete permission, a file locked by
        anyone (its owner too: the lock token is for the full path to check), a file in a locked
        directory: False, nothing removed, no audit event."""
        await vfs.mkdir(alice, "d")
        for name in ("f", "mine", "d/in"):
            await put(vfs, alice, name, b"x")
        keeper = await make_session("keeper", home="/alice", perms=Perm.all() & ~Perm.DELETE)
        await vfs.lock(alice, "/mine", "0", "exclusive", "", 60)
        await vfs.lock(alice, "/d", "0", "exclusive", "", 60)
        logs.clear()
        got = [await vfs.remove_plain(alice, "missing"), await vfs.remove_plain(alice, "d"),
               await vfs.remove_plain(keeper, "f"), await vfs.remove_plain(alice, "mine"),
               await vfs.remove_plain(alice, "d/in")]
        assert [] == [e for e in logs if str(e.get("event", "")).startswith("fs.")]
        assert ([False] * 5, ["d", "f", "mine"], ["in"]) == (got, await names(vfs, alice), await names(vfs, alice, "d"))


class TestMkdirPlain:
    """mkdir_plain: a new directory in one call (a WebDAV MKCOL answered on the loop)."""

    async def test_a_directory_is_made(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A new directory is made, audited as fs.mkdir."""
        assert (True, ["d"]) == (await vfs.mkdir_plain(alice, "d"), await names(vfs, alice))
        assert [("d", "ok")] == [(e["path"], e["outcome"]) for e in events(logs, "fs.mkdir")]

    async def test_what_it_declines_leaves_no_trace(self, vfs: VirtualFS, alice: Session,
                                                    make_session: MakeSession, logs: Logs) -> None:
        """Something there already (the home itself too), no parent, a file as parent, a user
        without the mkdir permission, a locked parent: False, nothing made, no audit event."""
        await put(vfs, alice, "f", b"x")
        await vfs.mkdir(alice, "locked")
        await vfs.lock(alice, "/locked", "0", "exclusive", "", 60)
        flat = await make_session("flat", home="/alice", perms=Perm.all() & ~Perm.MKDIR)
        logs.clear()
        got = [await vfs.mkdir_plain(alice, "f"), await vfs.mkdir_plain(alice, "/"),
               await vfs.mkdir_plain(alice, "none/d"), await vfs.mkdir_plain(alice, "f/d"),
               await vfs.mkdir_plain(flat, "new"), await vfs.mkdir_plain(alice, "locked/d")]
        assert [] == [e for e in logs if str(e.get("event", "")).startswith("fs.")]
        assert ([False] * 6, ["f", "locked"], []) == (got, await names(vfs, alice), await names(vfs, alice, "locked"))


class TestRenamePlain:
    """rename_plain: a move in one call (a WebDAV MOVE answered on the loop)."""

    async def test_files_and_directories_move(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A file to a new name (False: nothing replaced), a file over another (True), a directory
        with what is in it: each moved, audited as fs.rename."""
        await put(vfs, alice, "a", b"a")
        await put(vfs, alice, "b", b"b")
        await vfs.mkdir(alice, "d")
        await put(vfs, alice, "d/x", b"x")
        got = [await vfs.rename_plain(alice, "a", "c", True), await vfs.rename_plain(alice, "c", "b", True),
               await vfs.rename_plain(alice, "d", "e", False)]
        assert ([False, True, False], ["b", "e"], b"a", ["x"]) == (
            got, await names(vfs, alice), await get(vfs, alice, "b"), await names(vfs, alice, "e"))
        assert ["ok"] * 3 == [e["outcome"] for e in events(logs, "fs.rename")]

    async def test_what_it_declines_leaves_no_trace(self, vfs: VirtualFS, alice: Session,
                                                    make_session: MakeSession, logs: Logs) -> None:
        """No source, onto itself or inside itself, no destination directory, an existing
        destination without overwrite or where either side is a directory, no permission, a lock
        on the source, on the destination's directory or below a moved directory: None, nothing
        moved, no audit event."""
        await put(vfs, alice, "f", b"f")
        await put(vfs, alice, "g", b"g")
        await vfs.mkdir(alice, "d")
        await vfs.mkdir(alice, "d/sub")
        await vfs.mkdir(alice, "e")
        await vfs.mkdir(alice, "held")
        await put(vfs, alice, "e/in", b"x")
        await put(vfs, alice, "locked", b"l")
        await vfs.lock(alice, "/locked", "0", "exclusive", "", 60)
        await vfs.lock(alice, "/held", "0", "exclusive", "", 60)
        await vfs.lock(alice, "/e/in", "0", "exclusive", "", 60)
        fixed = await make_session("fixed", home="/alice", perms=Perm.all() & ~Perm.RENAME)
        logs.clear()
        cases = [(alice, "missing", "x", True), (alice, "f", "f", True), (alice, "d", "d/sub/x", True),
                 (alice, "f", "none/x", True), (alice, "f", "g", False), (alice, "f", "d", True),
                 (alice, "d", "g", True), (fixed, "f", "x", True), (alice, "locked", "x", True),
                 (alice, "f", "held/x", True), (alice, "e", "e2", True)]
        got = [await vfs.rename_plain(s, src, dst, over) for s, src, dst, over in cases]
        assert [] == [e for e in logs if str(e.get("event", "")).startswith("fs.")]
        assert ([None] * len(cases), ["d", "e", "f", "g", "held", "locked"]) == (got, await names(vfs, alice))


class TestChecksumAndSpace:
    async def test_whole_file_sums_come_from_the_upload(self, vfs: VirtualFS, alice: Session) -> None:
        """Whole-file SHA-256 and MD5 are the digests of the content."""
        data = b"checksum me" * 1000
        await put(vfs, alice, "f", data)
        assert (sha256(data), hashlib.md5(data).hexdigest()) == (
            await vfs.checksum(alice, "f", "sha256"), await vfs.checksum(alice, "f", "md5"))

    async def test_md5_is_computed_once_then_stored(self, vfs: VirtualFS, alice: Session) -> None:
        """An upload stores SHA-256 only; the first MD5 request reads the file and stores the sum,
        so a later request answers from the store (here: even with the bytes gone from storage)."""
        data = b"md5 on demand" * 500
        await put(vfs, alice, "f", data)
        inode = await vfs.stat(alice, "f")
        assert inode.blob_id is not None
        before = await vfs.md.get_blob(alice.tenant.id, inode.blob_id)
        assert before is not None and before.checksums is not None
        first = await vfs.checksum(alice, "f", "md5")
        await vfs.storage.delete(alice.tenant.id, inode.blob_id)
        after = await vfs.md.get_blob(alice.tenant.id, inode.blob_id)
        assert after is not None and after.checksums is not None
        assert ((sha256(data), None), hashlib.md5(data).hexdigest(), hashlib.md5(data).hexdigest(),
                hashlib.md5(data).hexdigest()) == (
            (before.checksums.sha256, before.checksums.md5), first, after.checksums.md5,
            await vfs.checksum(alice, "f", "md5"))

    @pytest.mark.parametrize("algorithm", ["sha1", "sha512", "md5", "sha256"])
    async def test_range(self, vfs: VirtualFS, alice: Session, algorithm: str) -> None:
        """A range of a file is hashed by reading it."""
        data = bytes(range(256)) * 100
        await put(vfs, alice, "f", data)
        assert hashlib.new(algorithm, data[100:5100]).hexdigest() == await vfs.checksum(alice, "f", algorithm,
                                                                                          100, 5000)

    async def test_crc32(self, vfs: VirtualFS, alice: Session) -> None:
        """CRC32 is supported, as 8 hex digits."""
        await put(vfs, alice, "f", b"abc")
        assert f"{zlib.crc32(b'abc'):08x}" == await vfs.checksum(alice, "f", "crc32")

    async def test_unknown_algorithm(self, vfs: VirtualFS, alice: Session) -> None:
        """An algorithm xferd does not know is EOPNOTSUPP."""
        await put(vfs, alice, "f", b"abc")
        with pytest.raises(Unsupported):
            await vfs.checksum(alice, "f", "whirlpool")

    async def test_checksum_of_directory_is_eisdir(self, vfs: VirtualFS, alice: Session) -> None:
        """Directories have no checksum."""
        await vfs.mkdir(alice, "d")
        with pytest.raises(IsADirectory):
            await vfs.checksum(alice, "d", "sha256")

    async def test_space_with_quota(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """With a quota, space is the quota and what is left of it."""
        s = await make_session("q", quota=Quota(bytes=1000, files=10))
        await put(vfs, s, "f", b"x" * 300)
        space = await vfs.space(s)
        assert (1000, 700, 10, 9) == (space.total, space.free, space.files_total, space.files_free)

    async def test_space_without_quota_is_the_disk(self, vfs: VirtualFS, alice: Session,
                                                   storage: LocalBlobStore) -> None:
        """Without a quota, space is the blob store's disk."""
        space = await vfs.space(alice)
        disk = await storage.space()
        assert disk is not None
        assert disk[0] == space.total


class TestQuota:
    async def test_write_past_the_quota_fails_early(self, vfs: VirtualFS, make_session: MakeSession,
                                                    storage: LocalBlobStore) -> None:
        """A write that would pass the byte quota is EDQUOT at once, before the upload ends."""
        s = await make_session("q", quota=Quota(bytes=100_000))
        upload = await vfs.open_write(s, "f", CREATE)
        await upload.write(0, b"x" * 100_000)
        with pytest.raises(QuotaExceeded) as info:
            await upload.write(100_000, b"y")
        await upload.abort()
        assert (errno.EDQUOT, [], []) == (info.value.errno, await names(vfs, s), tmp_files(storage))

    async def test_replacing_own_file_counts_its_size(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """Overwriting one's own file may use the space that file held."""
        s = await make_session("q", quota=Quota(bytes=1000))
        await put(vfs, s, "f", b"x" * 900)
        await put(vfs, s, "f", b"y" * 1000)
        assert 1000 == (await vfs.stat(s, "f")).size

    async def test_quota_is_checked_again_at_commit(self, vfs: VirtualFS, make_session: MakeSession,
                                                    md: SqlMetadataStore, logs: Logs) -> None:
        """Two uploads that each fit but not together: the second to close is EDQUOT and leaves nothing."""
        s = await make_session("q", quota=Quota(bytes=1000))
        first = await vfs.open_write(s, "a", CREATE)
        second = await vfs.open_write(s, "b", CREATE)
        await first.write(0, b"a" * 600)
        await second.write(0, b"b" * 600)
        await first.close()
        with pytest.raises(QuotaExceeded):
            await second.close()
        assert (["a"], None, set(), False) == (
            await names(vfs, s), (await md.blob_states()).get(second.writer.blob_id), vfs.open_transfers,
            second.writer.blob_id in await vfs.storage.blob_ids())
        assert ["ok", "EDQUOT"] == [e["outcome"] for e in events(logs, "fs.upload")]

    async def test_file_quota_refuses_at_open(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """With the file quota used up, opening a new file is EDQUOT; overwriting an existing one is fine."""
        s = await make_session("q", quota=Quota(files=1))
        await put(vfs, s, "a", b"1")
        with pytest.raises(QuotaExceeded):
            await vfs.open_write(s, "b", CREATE)
        await put(vfs, s, "a", b"2")
        assert ["a"] == await names(vfs, s)

    async def test_copy_counts_against_quota(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """A copy costs its size, even though no byte moves."""
        s = await make_session("q", quota=Quota(bytes=150))
        await put(vfs, s, "a", b"x" * 100)
        with pytest.raises(QuotaExceeded):
            await vfs.copy(s, "a", "b")

    async def test_setstat_growth_past_quota_leaves_nothing_open(self, vfs: VirtualFS, make_session: MakeSession,
                                                                  storage: LocalBlobStore,
                                                                  md: SqlMetadataStore) -> None:
        """Growing a file past the quota with setstat is EDQUOT and leaves no upload, temp file or pending blob."""
        s = await make_session("q", quota=Quota(bytes=100))
        await put(vfs, s, "f", b"x" * 10)
        with pytest.raises(QuotaExceeded):
            await vfs.setstat(s, "f", SetAttrs(size=1000))
        assert (10, set(), [], []) == ((await vfs.stat(s, "f")).size, vfs.open_transfers, tmp_files(storage),
                                       [b for b, state in (await md.blob_states()).items() if state == "pending"])


async def _close_cancelled(upload: Any) -> None:
    """Start closing ``upload``, let the commit get stuck where the test made it wait, then cancel
    the wait."""
    closing = asyncio.create_task(upload.close())
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing


class TestCommitCancelled:
    async def test_blob_of_a_cancelled_commit_stays_until_the_store_decides(
            self, vfs: VirtualFS, alice: Session, md: SqlMetadataStore, storage: LocalBlobStore,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """When the wait for the commit transaction is cancelled after it committed, the blob is not
        deleted: reads find it in .tmp, and recovery at the next start moves it into place."""
        loop = asyncio.get_running_loop()
        real = md.submit_commit_content
        committed = asyncio.Event()
        held: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def commit_then_hold(*args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            real(*args, **kwargs).result()  # in the blob's lane: the transaction has committed
            loop.call_soon_threadsafe(committed.set)
            return held  # ... but the waiter does not learn it before it is cancelled

        monkeypatch.setattr(md, "submit_commit_content", commit_then_hold)
        storage.commit_budget.limit = 0.0  # the commit runs in the blob's lane, not on this loop
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"committed")
        closing = asyncio.create_task(upload.close())
        await committed.wait()
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        held.set_result(None)
        monkeypatch.undo()
        in_tmp = tmp_files(storage)
        before = await get(vfs, alice, "f")
        moved = storage.recover_temporary(await md.live_blobs(storage.temporary_ids()))
        assert ([upload.writer.blob_id], b"committed", (1, 0), [], b"committed") == (
            in_tmp, before, moved, tmp_files(storage), await get(vfs, alice, "f"))

    async def test_a_loop_commit_whose_transaction_waits_leaves_its_blob_when_cancelled(
            self, vfs: VirtualFS, alice: Session, md: SqlMetadataStore, storage: LocalBlobStore) -> None:
        """A small commit on the loop whose transaction had to queue behind the database thread's
        work, cancelled while it waits: the blob stays in .tmp, the transaction still commits, reads
        find the content there, and recovery moves it into place."""
        storage.commit_budget.limit = float("inf")  # the blob's steps on this loop
        db = md.db
        assert isinstance(db, SqliteDatabase)
        gate = threading.Event()
        db._to_thread(gate.wait, 10)  # the database thread holds the connection: the transaction queues
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"committed")
        await _close_cancelled(upload)
        gate.set()
        await db.read(lambda conn: None)  # the queued transaction has run
        in_tmp = tmp_files(storage)
        before = await get(vfs, alice, "f")
        moved = storage.recover_temporary(await md.live_blobs(storage.temporary_ids()))
        assert ([upload.writer.blob_id], b"committed", (1, 0), [], b"committed") == (
            in_tmp, before, moved, tmp_files(storage), await get(vfs, alice, "f"))

    async def test_commit_cancelled_before_it_began_leaves_nothing(self, vfs: VirtualFS, alice: Session,
                                                                   storage: LocalBlobStore) -> None:
        """A commit cancelled while it still waits for its blob's thread never starts: no file, no
        temporary file, and the thread does not touch the blob afterwards."""
        storage.commit_budget.limit = 0.0  # the commit waits for the blob's lane
        upload = await vfs.open_write(alice, "f", CREATE)
        await upload.write(0, b"never")
        gate = threading.Event()
        lane = upload.writer._lane  # type: ignore[attr-defined]
        lane.submit(gate.wait)  # the lane is busy with something else
        await _close_cancelled(upload)
        gate.set()
        await asyncio.wrap_future(lane.submit(lambda: None))  # the lane has run what was queued
        with pytest.raises(NotFound):
            await vfs.stat(alice, "f")
        assert [] == tmp_files(storage)


class TestWriteErrors:
    @pytest.fixture
    async def flaky(self, config: Config, md: SqlMetadataStore, audit: AuditSink,
                    tmp_path: Path) -> AsyncIterator[tuple[VirtualFS, FaultyStore]]:
        store = FaultyStore(tmp_path / "flaky", fsync=False, max_buffered=config.transfer.max_buffered_bytes)
        yield VirtualFS(md, store, audit, OWNER, config.transfer), store
        await store.close()

    async def test_disk_full_during_upload(self, flaky: tuple[VirtualFS, FaultyStore], md: SqlMetadataStore,
                                           logs: Logs) -> None:
        """A disk filling up mid-upload fails a write with ENOSPC; the abort keeps the old content, no temp file."""
        vfs, store = flaky
        store.budget = 1 << 30
        await md.create_user("default", "alice", None, "/alice", Perm.all(), Quota())
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        await put(vfs, s, "f", b"old")
        store.budget = BATCH
        upload = await vfs.open_write(s, "f", CREATE)
        with pytest.raises(NoSpace):
            await write_all(upload, bytes(16 * BATCH), 65536)
        await upload.abort()
        assert (b"old", [], None) == (await get(vfs, s, "f"), tmp_files(store),
                                      (await md.blob_states()).get(upload.writer.blob_id))
        assert ["ok", "aborted"] == [e["outcome"] for e in events(logs, "fs.upload")]

    @pytest.mark.parametrize("size", [3, BATCH + 3])
    async def test_disk_full_at_close(self, flaky: tuple[VirtualFS, FaultyStore], md: SqlMetadataStore,
                                      logs: Logs, size: int) -> None:
        """An ENOSPC first seen by close fails it, keeps the old content and cleans up the temp file and blob."""
        vfs, store = flaky
        await md.create_user("default", "alice", None, "/alice", Perm.all(), Quota())
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        store.budget = 1 << 30
        await put(vfs, s, "f", b"old")
        store.budget = 0
        upload = await vfs.open_write(s, "f", CREATE)
        await upload.write(0, b"n" * size)
        with pytest.raises(NoSpace):
            await upload.close()
        try:
            assert (b"old", ["ok", "ENOSPC"], set()) == (
                await get(vfs, s, "f"), [e["outcome"] for e in events(logs, "fs.upload")], vfs.open_transfers)
            assert ([], None) == (tmp_files(store), (await md.blob_states()).get(upload.writer.blob_id))
        finally:
            await upload.writer.abort()


class TestPermissions:
    """A user with every permission but one on their home is refused each route that needs it."""

    @pytest.fixture
    async def prepared(self, vfs: VirtualFS, admin: Session) -> Session:
        await vfs.mkdir(admin, "/lim")
        await put(vfs, admin, "/lim/f", b"content")
        await put(vfs, admin, "/lim/f2", b"other")
        await vfs.mkdir(admin, "/lim/d")
        await put(vfs, admin, "/lim/d/x", b"x")
        await vfs.mkdir(admin, "/lim/e")
        await vfs.symlink(admin, "/lim/l", "f")
        return admin

    ROUTES: list[tuple[Perm, str, Callable[[VirtualFS, Session], Awaitable[Any]]]] = [
        (Perm.LIST, "fs.stat", lambda v, s: v.stat(s, "f")),
        (Perm.LIST, "fs.stat", lambda v, s: v.stat(s, "l", follow=False)),
        (Perm.LIST, "fs.list", lambda v, s: v.list(s, "/")),
        (Perm.LIST, "fs.list", lambda v, s: v.list(s, "d")),
        (Perm.LIST, "fs.readlink", lambda v, s: v.readlink(s, "l")),
        (Perm.DELETE, "fs.remove", lambda v, s: v.remove(s, "f")),
        (Perm.DELETE, "fs.remove", lambda v, s: v.remove(s, "l")),
        (Perm.DELETE, "fs.rmdir", lambda v, s: v.rmdir(s, "e")),
        (Perm.RENAME, "fs.rename", lambda v, s: v.rename(s, "f", "g")),
        (Perm.RENAME, "fs.rename", lambda v, s: v.rename(s, "d", "d2")),
        (Perm.UPLOAD, "fs.open_write", lambda v, s: v.open_write(s, "new", CREATE)),
        (Perm.UPLOAD, "fs.open_write", lambda v, s: v.open_write(s, "d/new", OpenMode(write=True, create=True))),
        (Perm.OVERWRITE, "fs.open_write", lambda v, s: v.open_write(s, "f", CREATE)),
        (Perm.OVERWRITE, "fs.open_write", lambda v, s: v.open_write(s, "f", OpenMode(write=True, append=True))),
        (Perm.OVERWRITE, "fs.open_write", lambda v, s: v.open_write(s, "l", CREATE)),
        (Perm.OVERWRITE, "fs.rename", lambda v, s: v.rename(s, "f", "f2", overwrite=True)),
        (Perm.OVERWRITE, "fs.copy", lambda v, s: v.copy(s, "f", "f2", overwrite=True)),
        (Perm.OVERWRITE, "fs.setstat", lambda v, s: v.setstat(s, "f", SetAttrs(size=1))),
        (Perm.DOWNLOAD, "fs.open_read", lambda v, s: v.open_read(s, "f")),
        (Perm.DOWNLOAD, "fs.open_read", lambda v, s: v.open_read(s, "l")),
        (Perm.DOWNLOAD, "fs.checksum", lambda v, s: v.checksum(s, "f", "sha256")),
        (Perm.DOWNLOAD, "fs.checksum", lambda v, s: v.checksum(s, "f", "sha1", 1, 2)),
        (Perm.DOWNLOAD, "fs.copy", lambda v, s: v.copy(s, "f", "new")),
        (Perm.DOWNLOAD, "fs.link", lambda v, s: v.link(s, "f", "new")),
        (Perm.DOWNLOAD, "fs.open_write", lambda v, s: v.open_write(s, "f", OpenMode(read=True, write=True))),
        (Perm.MKDIR, "fs.mkdir", lambda v, s: v.mkdir(s, "new")),
        (Perm.SYMLINK, "fs.symlink", lambda v, s: v.symlink(s, "new", "f")),
        (Perm.SYMLINK, "fs.link", lambda v, s: v.link(s, "f", "new")),
        (Perm.CHMOD, "fs.setstat", lambda v, s: v.setstat(s, "f", SetAttrs(mode=0o600))),
        (Perm.CHTIMES, "fs.setstat", lambda v, s: v.setstat(s, "f", SetAttrs(mtime=1.0))),
        (Perm.CHTIMES, "fs.setstat", lambda v, s: v.setstat(s, "f", SetAttrs(atime=1.0))),
        (Perm.COPY, "fs.copy", lambda v, s: v.copy(s, "f", "new")),
    ]

    @pytest.mark.parametrize(("missing", "event", "call"), ROUTES,
                             ids=[f"{p.name}-{e}-{i}" for i, (p, e, _) in enumerate(ROUTES)])
    async def test_refused(self, vfs: VirtualFS, make_session: MakeSession, prepared: Session, logs: Logs,
                           storage: LocalBlobStore, missing: Perm, event: str,
                           call: Callable[[VirtualFS, Session], Awaitable[Any]]) -> None:
        """The route is EACCES, audited as such, and changes nothing."""
        s = await make_session("lim", perms=Perm.all() & ~missing)
        before = await tree(vfs, prepared, "/lim")
        with pytest.raises(PermissionDenied) as info:
            await call(vfs, s)
        assert (errno.EACCES, before, [], set()) == (info.value.errno, await tree(vfs, prepared, "/lim"),
                                                     tmp_files(storage), vfs.open_transfers)
        assert ["EACCES"] == [e["outcome"] for e in events(logs, event) if e["user"] == "lim"]

    @pytest.mark.parametrize(("missing", "event", "call"), ROUTES,
                             ids=[f"{p.name}-{e}-{i}" for i, (p, e, _) in enumerate(ROUTES)])
    async def test_allowed_with_the_permission(self, vfs: VirtualFS, make_session: MakeSession, prepared: Session,
                                               missing: Perm, event: str,
                                               call: Callable[[VirtualFS, Session], Awaitable[Any]]) -> None:
        """With every permission the same route succeeds (so each refusal is about the one permission)."""
        s = await make_session("lim")
        result = await call(vfs, s)
        done = getattr(result, "abort", None) or getattr(result, "close", None)
        if done is not None:
            await done()
        assert set() == vfs.open_transfers

    async def test_no_grant_at_all(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """A user with no permissions cannot even list their home."""
        s = await make_session("nobody", perms=Perm(0))
        with pytest.raises(PermissionDenied):
            await vfs.list(s, "/")

    async def test_read_only_subtree(self, vfs: VirtualFS, make_session: MakeSession, md: SqlMetadataStore) -> None:
        """A deeper read-only grant refuses writes below it, but not beside it."""
        s = await make_session("alice")
        await vfs.mkdir(s, "ro")
        await put(vfs, s, "ro/f", b"x")
        await md.set_grant("default", "alice", "/alice/ro", Perm.LIST | Perm.DOWNLOAD)
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        for call in (vfs.open_write(s, "ro/f", CREATE), vfs.remove(s, "ro/f"), vfs.mkdir(s, "ro/d"),
                     vfs.rename(s, "ro/f", "g")):
            with pytest.raises(PermissionDenied):
                await call
        await put(vfs, s, "rw", b"ok")
        assert (b"x", ["ro", "rw"]) == (await get(vfs, s, "ro/f"), await names(vfs, s))

    async def test_hard_link_cannot_lend_write_access(self, vfs: VirtualFS, make_session: MakeSession,
                                                      md: SqlMetadataStore) -> None:
        """A file in a read-only subtree cannot be changed through a hard link made outside it."""
        s = await make_session("alice")
        await vfs.mkdir(s, "ro")
        await put(vfs, s, "ro/f", b"protected")
        await md.set_grant("default", "alice", "/alice/ro", Perm.LIST | Perm.DOWNLOAD)
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        with contextlib.suppress(PermissionDenied):
            await vfs.link(s, "ro/f", "door")
        with contextlib.suppress(PermissionDenied):
            await put(vfs, s, "door", b"changed")
        with contextlib.suppress(PermissionDenied, NotFound):
            await vfs.setstat(s, "door", SetAttrs(mode=0o777))
        st = await vfs.stat(s, "ro/f")
        assert (b"protected", 0o644) == (await get(vfs, s, "ro/f"), st.mode)

    async def test_directory_with_rules_inside_cannot_move(self, vfs: VirtualFS, make_session: MakeSession,
                                                           md: SqlMetadataStore) -> None:
        """A directory holding a permission rule cannot be renamed (the rule would not follow it)."""
        s = await make_session("alice")
        await vfs.mkdir(s, "top")
        await vfs.mkdir(s, "top/ro")
        await md.set_grant("default", "alice", "/alice/top/ro", Perm.LIST)
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        with pytest.raises(PermissionDenied):
            await vfs.rename(s, "top", "moved")
        assert ["top"] == await names(vfs, s)

    async def test_permissions_follow_the_real_path(self, vfs: VirtualFS, make_session: MakeSession,
                                                    md: SqlMetadataStore) -> None:
        """A link into a read-only subtree does not lend its own directory's permissions."""
        s = await make_session("alice")
        await vfs.mkdir(s, "ro")
        await put(vfs, s, "ro/f", b"x")
        await vfs.symlink(s, "rw-link", "ro")
        await md.set_grant("default", "alice", "/alice/ro", Perm.LIST | Perm.DOWNLOAD)
        login = await md.load_login("default", "alice")
        assert login is not None
        s = await vfs.open_session(login, "test", "127.0.0.1")
        with pytest.raises(PermissionDenied):
            await vfs.open_write(s, "rw-link/f", CREATE)
        with pytest.raises(PermissionDenied):
            await vfs.remove(s, "rw-link/f")


class TestConfinement:
    """alice (home /alice) can never reach bob's files in /bob."""

    @pytest.fixture
    async def sessions(self, vfs: VirtualFS, make_session: MakeSession, admin: Session) -> tuple[Session, Session]:
        bob = await make_session("bob")
        await put(vfs, bob, "secret", b"bob's secret")
        alice = await make_session("alice")
        return alice, admin

    @pytest.mark.parametrize("path", ["../bob/secret", "/../bob/secret", "/bob/secret", "../../bob/secret",
                                      "x/../../bob/secret", "/./../bob/./secret", "%2e%2e/bob/secret",
                                      b"../bob/secret"])
    async def test_paths_cannot_leave_home(self, vfs: VirtualFS, sessions: tuple[Session, Session],
                                           path: str | bytes) -> None:
        """Any spelling of a path stays in alice's home, where there is no bob/secret."""
        alice, _ = sessions
        for call in (vfs.stat(alice, path), vfs.open_read(alice, path), vfs.remove(alice, path),
                     vfs.checksum(alice, path, "sha256"), vfs.link(alice, path, "mine"),
                     vfs.copy(alice, path, "mine"), vfs.rename(alice, path, "mine")):
            with pytest.raises(NotFound):
                await call

    async def test_dotdot_lists_home(self, vfs: VirtualFS, sessions: tuple[Session, Session]) -> None:
        """'..' of the home is the home."""
        alice, _ = sessions
        await put(vfs, alice, "mine", b"x")
        assert (["mine"], ()) == (await names(vfs, alice, "../.."), (await vfs.list(alice, "/..")).real)

    @pytest.mark.parametrize("target", ["/../bob", "../bob", "../../bob", "/bob", "../bob/../../bob"])
    async def test_own_symlinks_cannot_leave_home(self, vfs: VirtualFS, sessions: tuple[Session, Session],
                                                  target: str) -> None:
        """A link alice makes to bob's home resolves inside hers."""
        alice, admin = sessions
        await vfs.symlink(alice, "evil", target)
        with pytest.raises(NotFound):
            await get(vfs, alice, "evil/secret")
        with pytest.raises(NotFound):
            await put(vfs, alice, "evil/planted", b"x")
        assert ["secret"] == await names(vfs, admin, "/bob")

    @pytest.mark.parametrize("target", ["/bob/secret", "../bob/secret", "/alice/../bob/secret"])
    async def test_symlinks_made_by_others_resolve_in_her_home(self, vfs: VirtualFS,
                                                               sessions: tuple[Session, Session],
                                                               target: str) -> None:
        """A link planted in alice's home by a user rooted higher up reaches bob's file for its maker, not for her."""
        alice, admin = sessions
        await vfs.symlink(admin, "/alice/trap", target)
        assert b"bob's secret" == await get(vfs, admin, "/alice/trap")
        with pytest.raises(NotFound):
            await get(vfs, alice, "trap")
        with pytest.raises(NotFound):
            await vfs.copy(alice, "trap", "stolen")

    async def test_uploads_through_links_stay_home(self, vfs: VirtualFS, sessions: tuple[Session, Session]) -> None:
        """A dangling link to bob's path makes alice's upload land in her own home."""
        alice, admin = sessions
        await vfs.symlink(admin, "/alice/drop", "/bob/planted")
        await vfs.mkdir(alice, "bob")
        await put(vfs, alice, "drop", b"x")
        assert (["secret"], ["planted"]) == (await names(vfs, admin, "/bob"), await names(vfs, alice, "bob"))

    async def test_rename_cannot_leave_home(self, vfs: VirtualFS, sessions: tuple[Session, Session]) -> None:
        """Renaming to '../bob/x' stays in alice's home (and fails there: no such directory)."""
        alice, admin = sessions
        await put(vfs, alice, "mine", b"x")
        with pytest.raises(NotFound):
            await vfs.rename(alice, "mine", "../bob/mine")
        assert (["secret"], ["mine"]) == (await names(vfs, admin, "/bob"), await names(vfs, alice))


class TestDeletedHome:
    async def test_a_session_whose_home_was_deleted_never_reaches_a_new_directory(
            self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """A directory made after a home was deleted never takes the home's inode number: the
        session still open on that home finds nothing, not the new directory's files."""
        admin = await make_session("root", home="/")
        victim = await make_session("victim")  # its home is the newest inode
        await vfs.rmdir(admin, "/victim")
        await vfs.mkdir(admin, "/secret")
        await put(vfs, admin, "/secret/plans.txt", b"top secret")
        with pytest.raises(NotFound):
            await get(vfs, victim, "plans.txt")
        with pytest.raises(NotFound):
            await vfs.list(victim, "/")


class TestAudit:
    async def test_rename_ok_carries_the_session(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A rename logs fs.rename with its source, target, outcome ok and every session field."""
        await put(vfs, alice, "a", b"x")
        await vfs.rename(alice, "a", "b")
        assert [{"event": "fs.rename", "path": "a", "target": "b", "outcome": "ok", "log_level": "info",
                 **alice.fields}] == events(logs, "fs.rename")

    async def test_refused_rename_is_eacces(self, vfs: VirtualFS, make_session: MakeSession, logs: Logs) -> None:
        """A refused rename logs outcome EACCES, at warning level, with the error."""
        s = await make_session("ro", perms=Perm.all() & ~Perm.RENAME)
        await put(vfs, s, "a", b"x")
        with pytest.raises(PermissionDenied):
            await vfs.rename(s, "a", "b")
        assert [("EACCES", "warning", "Permission denied", "a", "b", "ro")] == [
            (e["outcome"], e["log_level"], e["error"], e["path"], e["target"], e["user"])
            for e in events(logs, "fs.rename")]

    async def test_failed_call_names_its_errno(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """Each failure is audited with the errno name of the error raised."""
        for call in (vfs.remove(alice, "nope"), vfs.mkdir(alice, "a\x00b")):
            with pytest.raises(OSError):
                await call
        assert [("fs.remove", "ENOENT"), ("fs.mkdir", "EINVAL")] == [
            (e["event"], e["outcome"]) for e in logs if e["event"] in ("fs.remove", "fs.mkdir")]

    async def test_upload_event_has_size_and_sha256(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A committed upload logs fs.upload with its size and SHA-256."""
        data = b"audited bytes" * 1000
        await put(vfs, alice, "f", data)
        [event] = events(logs, "fs.upload")
        assert ("/f", "ok", len(data), sha256(data), "alice", "test") == (
            event["path"], event["outcome"], event["size"], event["sha256"], event["user"], event["protocol"])

    async def test_download_event_has_bytes_sent(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """A finished download logs fs.download with the bytes sent and the file's size."""
        await put(vfs, alice, "f", b"0123456789")
        download = await vfs.open_read(alice, "f")
        await download.read(0, 4)
        await download.close()
        [event] = events(logs, "fs.download")
        assert ("/f", "ok", 4, 10) == (event["path"], event["outcome"], event["bytes"], event["size"])

    async def test_changes_are_durable_reads_are_not(self, vfs: VirtualFS, alice: Session, audit: AuditSink,
                                                     md: SqlMetadataStore) -> None:
        """Changes are kept in the audit table with the session's fields; stats and listings only logged."""
        await vfs.mkdir(alice, "d")
        await vfs.stat(alice, "d")
        await vfs.list(alice, "/")
        with pytest.raises(NotFound):
            await vfs.rmdir(alice, "nope")
        await audit.flush()
        assert [("fs.mkdir", "d", "ok", "alice", "test", "127.0.0.1"),
                ("fs.rmdir", "nope", "ENOENT", "alice", "test", "127.0.0.1")] == [
            (e.event, e.path, e.outcome, e.user, e.protocol, e.remote) for e in await md.audit_events()]

    async def test_undecodable_name_does_not_break_the_audit_table(self, vfs: VirtualFS, alice: Session,
                                                                   audit: AuditSink, md: SqlMetadataStore) -> None:
        """A str path with undecodable bytes is refused as a client error and every event still reaches the table."""
        await vfs.mkdir(alice, "before")
        with pytest.raises(InvalidPath):
            await vfs.mkdir(alice, "bad\udcff")
        await vfs.mkdir(alice, "after")
        await audit.flush()
        shown = [e.path for e in await md.audit_events()]
        assert ("before", "bad", "after") == (shown[0], shown[1][:3], shown[-1])

    async def test_long_and_binary_paths_are_shown_safely(self, vfs: VirtualFS, alice: Session, logs: Logs) -> None:
        """Paths in audit events are text, cut at 512 characters."""
        for path in (b"\xff\xfe", "x/" * 1000):
            with pytest.raises(OSError):
                await vfs.stat(alice, path)
        shown = [e["path"] for e in events(logs, "fs.stat")]
        assert ("\ufffd\ufffd", 515) == (shown[0], len(shown[1]))
