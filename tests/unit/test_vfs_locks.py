"""WebDAV locks and dead properties in the VirtualFS: a lock of one user refuses the changes of
every other user, whatever the protocol; the holder is not refused; properties follow the object."""

from __future__ import annotations

import time

import pytest

from xferd.errors import Locked, PermissionDenied
from xferd.metadata.models import Perm
from xferd.metadata.sql import SqlMetadataStore
from xferd.vfs.filesystem import OpenMode, SetAttrs, VirtualFS
from xferd.vfs.session import Session

from .conftest import MakeSession
from .support import get, put


@pytest.fixture
async def ann(make_session: MakeSession) -> Session:
    """A user with the shared home /team."""
    return await make_session("ann", home="/team")


@pytest.fixture
async def ben(make_session: MakeSession) -> Session:
    """Another user with the same home."""
    return await make_session("ben", home="/team")


async def lock(vfs: VirtualFS, s: Session, path: str, depth: str = "0", scope: str = "exclusive",
               lifetime: float = 600.0) -> str:
    return (await vfs.lock(s, path, depth, scope, "<D:owner xmlns:D='DAV:'>t</D:owner>", lifetime)).token


class TestLockedFile:
    @pytest.fixture
    async def locked(self, vfs: VirtualFS, ann: Session) -> str:
        await put(vfs, ann, "/f.txt", b"old")
        return await lock(vfs, ann, "/f.txt")

    async def test_overwrite_refused(self, vfs: VirtualFS, ben: Session, locked: str) -> None:
        """Another user cannot overwrite a locked file; its content stays."""
        with pytest.raises(Locked):
            await put(vfs, ben, "/f.txt", b"new", OpenMode(write=True, create=True, truncate=True))
        assert b"old" == await get(vfs, ben, "/f.txt")

    async def test_remove_rename_setstat_refused(self, vfs: VirtualFS, ben: Session, locked: str) -> None:
        """Removing, renaming (away or onto it) and changing its attributes are refused too."""
        await put(vfs, ben, "/other.txt", b"x")
        attempts = [vfs.remove(ben, "/f.txt"), vfs.rename(ben, "/f.txt", "/g.txt"),
                    vfs.rename(ben, "/other.txt", "/f.txt", True), vfs.setstat(ben, "/f.txt", SetAttrs(mode=0o600))]
        refused = 0
        for attempt in attempts:
            with pytest.raises(Locked):
                await attempt
            refused += 1
        assert 4 == refused

    async def test_locked_is_a_permission_error(self, vfs: VirtualFS, ben: Session, locked: str) -> None:
        """SFTP and FTP see a permission error (EACCES)."""
        with pytest.raises(PermissionError) as caught:
            await vfs.remove(ben, "/f.txt")
        assert 13 == caught.value.errno

    async def test_holder_may_change(self, vfs: VirtualFS, ann: Session, locked: str) -> None:
        """The lock's holder changes the file over any protocol."""
        await put(vfs, ann, "/f.txt", b"new", OpenMode(write=True, create=True, truncate=True))
        assert b"new" == await get(vfs, ann, "/f.txt")

    async def test_unlock_frees(self, vfs: VirtualFS, ann: Session, ben: Session, locked: str) -> None:
        """After unlocking, the other user may change it."""
        assert await vfs.unlock(ann, "/f.txt", locked)
        await vfs.remove(ben, "/f.txt")

    async def test_removal_by_holder_drops_lock(self, vfs: VirtualFS, ann: Session, ben: Session,
                                                locked: str) -> None:
        """When the holder deletes the file, its lock goes with it; a new file there is free."""
        await vfs.remove(ann, "/f.txt")
        assert [] == await vfs.locks(ann, "/f.txt", False)
        await put(vfs, ben, "/f.txt", b"ben's")

    async def test_expired_lock_does_not_bind(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """A lock past its timeout no longer refuses anything."""
        await put(vfs, ann, "/e.txt", b"x")
        await lock(vfs, ann, "/e.txt", lifetime=0.05)
        time.sleep(0.1)
        await vfs.remove(ben, "/e.txt")


class TestLockedCollection:
    async def test_depth_infinity_protects_members(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """A depth-infinity lock on a directory refuses changes anywhere below it."""
        await vfs.mkdir(ann, "/d")
        await vfs.mkdir(ann, "/d/sub")
        await put(vfs, ann, "/d/sub/x", b"x")
        await lock(vfs, ann, "/d", depth="infinity")
        for attempt in (put(vfs, ben, "/d/new", b"n"), vfs.remove(ben, "/d/sub/x"), vfs.mkdir(ben, "/d/sub/m")):
            with pytest.raises(Locked):
                await attempt
        await put(vfs, ann, "/d/new", b"n")

    async def test_depth_zero_protects_membership(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """A depth-0 lock on a directory refuses adding or removing its members, not changing them."""
        await vfs.mkdir(ann, "/d0")
        await put(vfs, ann, "/d0/x", b"x")
        await lock(vfs, ann, "/d0")
        with pytest.raises(Locked):
            await put(vfs, ben, "/d0/y", b"y")
        with pytest.raises(Locked):
            await vfs.remove(ben, "/d0/x")
        await put(vfs, ben, "/d0/x", b"changed", OpenMode(write=True, create=True, truncate=True))

    async def test_renaming_a_tree_with_a_locked_member(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """A directory holding a locked file cannot be moved or replaced by another user."""
        await vfs.mkdir(ann, "/t")
        await put(vfs, ann, "/t/x", b"x")
        await lock(vfs, ann, "/t/x")
        with pytest.raises(Locked):
            await vfs.rename(ben, "/t", "/t2")


class TestTakingLocks:
    async def test_exclusive_conflicts(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """An exclusive lock refuses every other lock on the path; shared locks coexist."""
        await put(vfs, ann, "/s.txt", b"x")
        await lock(vfs, ann, "/s.txt", scope="shared")
        await lock(vfs, ben, "/s.txt", scope="shared")
        with pytest.raises(Locked):
            await lock(vfs, ben, "/s.txt")

    async def test_infinity_lock_conflicts_with_member_lock(self, vfs: VirtualFS, ann: Session,
                                                            ben: Session) -> None:
        """A depth-infinity lock cannot be taken over a member someone else has locked."""
        await vfs.mkdir(ann, "/c")
        await put(vfs, ann, "/c/m", b"x")
        await lock(vfs, ben, "/c/m")
        with pytest.raises(Locked):
            await lock(vfs, ann, "/c", depth="infinity")

    async def test_upload_in_progress_refuses_lock(self, vfs: VirtualFS, ann: Session, ben: Session) -> None:
        """A file being uploaded (by any protocol) cannot be locked until the upload ends."""
        upload = await vfs.open_write(ben, "/up.bin", OpenMode(write=True, create=True, truncate=True))
        await upload.write(0, b"part")
        with pytest.raises(Locked):
            await lock(vfs, ann, "/up.bin")
        await upload.close()
        await lock(vfs, ann, "/up.bin")

    async def test_lock_needs_write_permission(self, vfs: VirtualFS, make_session: MakeSession) -> None:
        """A user who may only read cannot lock others out."""
        reader = await make_session("reader", home="/team", perms=Perm.LIST | Perm.DOWNLOAD)
        with pytest.raises(PermissionDenied):
            await lock(vfs, reader, "/anything")

    async def test_timeout_is_capped(self, vfs: VirtualFS, ann: Session) -> None:
        """An infinite timeout is granted as the longest one (a week)."""
        record = await vfs.lock(ann, "/cap", "0", "exclusive", "", -1)
        assert 7 * 86400.0 == record.timeout

    async def test_locks_are_per_tenant(self, vfs: VirtualFS, ann: Session, make_session: MakeSession) -> None:
        """A lock in one tenant binds nobody in another with the same paths."""
        await put(vfs, ann, "/f", b"x")
        await lock(vfs, ann, "/f")
        other = await make_session("ann", home="/team", tenant="other")
        await put(vfs, other, "/f", b"mine")
        assert [] == await vfs.locks(other, "/f", False)


class TestDeadProperties:
    async def test_set_and_read(self, vfs: VirtualFS, ann: Session) -> None:
        """Properties are set, replaced and removed on an object."""
        await put(vfs, ann, "/p", b"x")
        await vfs.set_props(ann, "/p", {"{urn:a}x": "<a:x xmlns:a='urn:a'>1</a:x>", "{urn:a}y": "<y/>"})
        await vfs.set_props(ann, "/p", {"{urn:a}x": "<a:x xmlns:a='urn:a'>2</a:x>", "{urn:a}y": None})
        assert {"{urn:a}x": "<a:x xmlns:a='urn:a'>2</a:x>"} == await vfs.props(ann, "/p")

    async def test_follow_rename(self, vfs: VirtualFS, ann: Session) -> None:
        """A rename keeps the object's properties (they belong to the inode)."""
        await put(vfs, ann, "/q", b"x")
        await vfs.set_props(ann, "/q", {"{urn:a}x": "v"})
        await vfs.rename(ann, "/q", "/r")
        assert {"{urn:a}x": "v"} == await vfs.props(ann, "/r")

    async def test_copied_and_deleted(self, vfs: VirtualFS, ann: Session, md: SqlMetadataStore) -> None:
        """copy_props gives the copy the same properties; deleting an object deletes its properties."""
        await put(vfs, ann, "/c1", b"x")
        await vfs.set_props(ann, "/c1", {"{urn:a}x": "v"})
        await vfs.copy(ann, "/c1", "/c2")
        await vfs.copy_props(ann, "/c1", "/c2")
        assert {"{urn:a}x": "v"} == await vfs.props(ann, "/c2")
        ino = (await vfs.stat(ann, "/c1")).ino
        await vfs.remove(ann, "/c1")
        assert {} == await md.dead_props(ann.tenant.id, [ino])

    async def test_setting_needs_permission(self, vfs: VirtualFS, ann: Session, make_session: MakeSession) -> None:
        """Changing properties needs the permission to change times (metadata)."""
        await put(vfs, ann, "/m", b"x")
        reader = await make_session("reader2", home="/team", perms=Perm.LIST | Perm.DOWNLOAD)
        with pytest.raises(PermissionDenied):
            await vfs.set_props(reader, "/m", {"{urn:a}x": "v"})


class TestListingWithSums:
    async def test_sha256_of_each_file(self, vfs: VirtualFS, ann: Session) -> None:
        """list_etags gives the listing and each file's stored SHA-256 by blob (directories have none)."""
        import hashlib

        await vfs.mkdir(ann, "/l")
        await vfs.mkdir(ann, "/l/sub")
        await put(vfs, ann, "/l/a", b"alpha")
        await put(vfs, ann, "/l/b", b"beta")
        listing, sums = await vfs.list_etags(ann, "/l")
        by_name = {name: sums.get(inode.blob_id or "") for name, inode in listing.entries}
        assert {"a": hashlib.sha256(b"alpha").hexdigest(), "b": hashlib.sha256(b"beta").hexdigest(),
                "sub": None} == by_name

    async def test_replaced_and_copied_files_list_their_own_content(self, vfs: VirtualFS, ann: Session) -> None:
        """After a file is replaced, and copied, each name lists the SHA-256 of its current content."""
        import hashlib

        await vfs.mkdir(ann, "/r")
        await put(vfs, ann, "/r/a", b"first")
        await put(vfs, ann, "/r/a", b"second")
        await vfs.copy(ann, "/r/a", "/r/copy")
        await put(vfs, ann, "/r/a", b"third")  # the copy alone names the second content now
        listing, sums = await vfs.list_etags(ann, "/r")
        assert {"a": hashlib.sha256(b"third").hexdigest(), "copy": hashlib.sha256(b"second").hexdigest()} == {
            name: sums.get(inode.blob_id or "") for name, inode in listing.entries}
