"""Permissions and confinement over SFTP: every route to an operation is refused without its permission.

The tests share one daemon; each works with users of its own.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest

from tests.support import PASSWORD, Daemon, new_user, paramiko_sftp


def _errno_of(call: Any, *args: Any) -> int:
    with pytest.raises(OSError) as info:
        call(*args)
    return int(info.value.errno or 0)


@pytest.fixture
def shared(server: Daemon) -> Iterator[tuple[Any, Any]]:
    """A new user (the owner) has every permission on their home; a second one, bob, has the same
    home, with only what a test grants. Yields the owner's session and ``login(perms)`` for bob's."""
    owner_name = new_user(server, "alice")
    home = f"/{owner_name}"
    bob_name = new_user(server, "bob", PASSWORD, None, "--home", home, "--perms", "list")
    owner = paramiko_sftp(server, owner_name)
    owner.mkdir("dir")
    owner.putfo(io.BytesIO(b"original"), "dir/file.txt")
    owner.putfo(io.BytesIO(b"other"), "dir/other.txt")
    bob = None
    try:
        yield owner, lambda perms: _login_with(server, bob_name, home, perms)
    finally:
        owner.close()
        if bob is not None:
            bob.close()


def _login_with(daemon: Daemon, user: str, home: str, perms: str) -> Any:
    daemon.cli("user", "grant", user, home, perms)
    return paramiko_sftp(daemon, user)


class TestPermissionRefusals:
    def test_without_list_nothing_can_be_listed_or_stated(self, shared: Any) -> None:
        """A user without list gets PERMISSION_DENIED for readdir and stat."""
        _, login = shared
        bob = login("download")
        assert _errno_of(bob.listdir, "dir") == errno.EACCES
        assert _errno_of(bob.stat, "dir/file.txt") == errno.EACCES
        bob.close()

    def test_without_download_nothing_can_be_read(self, shared: Any) -> None:
        """Opening for reading needs download."""
        _, login = shared
        bob = login("list")
        assert _errno_of(bob.open, "dir/file.txt", "rb") == errno.EACCES
        bob.close()

    def test_without_upload_no_new_file(self, shared: Any) -> None:
        """Creating a file needs upload."""
        _, login = shared
        bob = login("list,download,overwrite")
        assert _errno_of(bob.putfo, io.BytesIO(b"x"), "dir/new.txt") == errno.EACCES
        assert "new.txt" not in bob.listdir("dir")
        bob.close()

    def test_without_overwrite_existing_files_stay(self, shared: Any) -> None:
        """Writing over a file, truncating it, or renaming onto it needs overwrite."""
        owner, login = shared
        bob = login("list,download,upload,rename")
        assert _errno_of(bob.putfo, io.BytesIO(b"changed"), "dir/file.txt") == errno.EACCES
        assert _errno_of(bob.truncate, "dir/file.txt", 0) == errno.EACCES
        assert _errno_of(bob.posix_rename, "dir/other.txt", "dir/file.txt") == errno.EACCES
        assert owner.open("dir/file.txt").read() == b"original"
        bob.close()

    def test_without_delete_nothing_is_removed(self, shared: Any) -> None:
        """remove and rmdir need delete."""
        owner, login = shared
        owner.mkdir("empty")
        bob = login("list,download,upload,overwrite,rename,mkdir")
        assert _errno_of(bob.remove, "dir/file.txt") == errno.EACCES
        assert _errno_of(bob.rmdir, "empty") == errno.EACCES
        assert "file.txt" in owner.listdir("dir")
        bob.close()

    def test_without_rename_nothing_moves(self, shared: Any) -> None:
        """rename and posix-rename need rename."""
        _, login = shared
        bob = login("list,download,upload,overwrite,delete")
        assert _errno_of(bob.rename, "dir/file.txt", "dir/moved.txt") == errno.EACCES
        assert _errno_of(bob.posix_rename, "dir/file.txt", "dir/moved.txt") == errno.EACCES
        bob.close()

    def test_without_mkdir_symlink_chmod(self, shared: Any) -> None:
        """mkdir, symlink and chmod each need their own permission."""
        _, login = shared
        bob = login("list,download,upload,overwrite")
        assert _errno_of(bob.mkdir, "newdir") == errno.EACCES
        assert _errno_of(bob.symlink, "dir/file.txt", "link") == errno.EACCES
        assert _errno_of(bob.chmod, "dir/file.txt", 0o600) == errno.EACCES
        bob.close()

    def test_subdirectory_grant_narrows_the_home_grant(self, server: Daemon) -> None:
        """A grant on a subdirectory replaces the home's grant there (the most specific path wins)."""
        carol = new_user(server, "carol")
        client = paramiko_sftp(server, carol)
        client.mkdir("readonly")
        client.close()
        server.cli("user", "grant", carol, f"/{carol}/readonly", "list,download")
        client = paramiko_sftp(server, carol)
        assert _errno_of(client.mkdir, "readonly/sub") == errno.EACCES
        assert _errno_of(client.putfo, io.BytesIO(b"x"), "readonly/x") == errno.EACCES
        client.putfo(io.BytesIO(b"x"), "writable")
        assert _errno_of(client.rename, "readonly", "moved") == errno.EACCES
        client.close()


@pytest.fixture(scope="module")
def alice_session(server: Daemon) -> Iterator[Any]:
    """A session of user alice (home /alice, the only user of that name here), who has secret.txt in
    her home."""
    server.add_user("alice")
    client = paramiko_sftp(server, "alice")
    client.putfo(io.BytesIO(b"alice's secret"), "secret.txt")
    yield client
    client.close()


class TestConfinement:
    @pytest.fixture
    def two_users(self, server: Daemon, alice_session: Any) -> Iterator[tuple[Any, Any]]:
        """alice's session, and one of a new user of this test (mallory)."""
        mallory = paramiko_sftp(server, new_user(server, "mallory"))
        yield alice_session, mallory
        mallory.close()

    @pytest.mark.parametrize("path", ["../alice/secret.txt", "/../alice/secret.txt", "/../../alice/secret.txt",
                                      "a/../../../alice/secret.txt", "..%2falice/secret.txt",
                                      "%2e%2e/alice/secret.txt", "//alice/secret.txt"])
    def test_no_spelling_of_a_path_leaves_the_home(self, two_users: Any, path: str) -> None:
        """Paths are resolved inside the home: another user's file is simply not there."""
        _, mallory = two_users
        assert _errno_of(mallory.open, path, "rb") == errno.ENOENT

    def test_realpath_of_dotdot_is_the_root(self, two_users: Any) -> None:
        """Climbing above the home stops at '/'."""
        _, mallory = two_users
        assert mallory.normalize("../../..") == "/"

    def test_symlinks_cannot_point_outside(self, two_users: Any) -> None:
        """A link to ../alice/secret.txt resolves inside mallory's home, where nothing is."""
        _, mallory = two_users
        for i, target in enumerate(["../alice/secret.txt", "/../alice/secret.txt", "/alice/secret.txt"]):
            mallory.symlink(target, f"link{i}")
            assert mallory.readlink(f"link{i}") == target
            assert _errno_of(mallory.open, f"link{i}", "rb") == errno.ENOENT

    def test_directory_symlink_to_root_stays_home(self, two_users: Any) -> None:
        """A link to '/' is the user's own home, listed as such."""
        _, mallory = two_users
        mallory.putfo(io.BytesIO(b"mine"), "mine.txt")
        mallory.symlink("/../..", "up")
        assert "mine.txt" in mallory.listdir("up")
        assert "secret.txt" not in mallory.listdir("up")

    def test_session_of_a_deleted_home_never_reaches_a_newer_directory(self, server: Daemon) -> None:
        """A user's home removed while their session is open, then a directory made by someone else:
        the open session finds nothing, never the new directory's files."""
        admin = paramiko_sftp(server, new_user(server, "admin", PASSWORD, None, "--home", "/"))
        victim_name = new_user(server, "victim")
        victim = paramiko_sftp(server, victim_name)  # its home is the newest directory
        try:
            admin.rmdir(f"/{victim_name}")
            admin.mkdir(f"/secret-of-{victim_name}")
            admin.putfo(io.BytesIO(b"not the victim's"), f"/secret-of-{victim_name}/plans.txt")
            assert (errno.ENOENT, errno.ENOENT) == (_errno_of(victim.listdir, "."),
                                                    _errno_of(victim.open, "plans.txt", "rb"))
        finally:
            victim.close()
            admin.close()


class TestLoginRefusals:
    def test_disabled_user_cannot_log_in(self, server: Daemon) -> None:
        """Disabling a user refuses their next login at once."""
        name = new_user(server)
        paramiko_sftp(server, name).close()
        server.cli("user", "disable", name)
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_sftp(server, name)
        server.wait_event("auth.login", outcome="disabled", user=name)

    def test_password_change_applies_to_the_next_login(self, server: Daemon) -> None:
        """A new password works at once and the old one stops working."""
        name = new_user(server)
        server.cli("user", "passwd", name, "--password-stdin", input="new password\n")
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_sftp(server, name)
        paramiko_sftp(server, name, password="new password").close()
