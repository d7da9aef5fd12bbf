"""WebDAV locks bind every protocol: a lock taken over WebDAV refuses other users' changes over SFTP, FTP
and WebDAV, never its holder's; and an upload in progress over SFTP or FTP refuses a WebDAV LOCK.

One daemon serves the whole module (alice and bob share the home /shared); each test works in a
directory of its own, so no lock of one test covers another's files."""

from __future__ import annotations

import contextlib
import errno
import ftplib
import io
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import PASSWORD, Daemon, ftp_login, paramiko_sftp

LOCKED = 423
_dirs = itertools.count()


def _lock_body(owner: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<D:lockinfo xmlns:D="DAV:">'
            "<D:lockscope><D:exclusive/></D:lockscope>"
            "<D:locktype><D:write/></D:locktype>"
            f"<D:owner><D:href>{owner}</D:href></D:owner>"
            "</D:lockinfo>").encode()


class Dav:
    """An httpx client for one user, with paths below one directory of the shared home."""

    def __init__(self, daemon: Daemon, user: str, base: str) -> None:
        self.daemon = daemon
        self.user = user
        self.base = base
        self.client = httpx.Client(auth=(user, PASSWORD), timeout=30)

    def url(self, path: str) -> str:
        return self.daemon.dav_url(self.base + path)

    def lock(self, path: str, depth: str = "0", timeout: str | None = None) -> httpx.Response:
        headers = {"Depth": depth, "Content-Type": 'application/xml; charset="utf-8"'}
        if timeout is not None:
            headers["Timeout"] = timeout
        return self.client.request("LOCK", self.url(path), content=_lock_body(self.user), headers=headers)

    def unlock(self, path: str, token: str) -> httpx.Response:
        return self.client.request("UNLOCK", self.url(path), headers={"Lock-Token": f"<{token}>"})

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, self.url(path), **kwargs)

    def close(self) -> None:
        self.client.close()


def _token(response: httpx.Response) -> str:
    assert 200 == response.status_code, response.text
    header = response.headers["Lock-Token"]
    assert header.startswith("<opaquelocktoken:") and header.endswith(">")
    return header[1:-1]


def _errno_of(call: Callable[..., Any], *args: Any) -> int:
    with pytest.raises(OSError) as info:
        call(*args)
    return int(info.value.errno or 0)


def _ftp_code(call: Callable[..., Any], *args: Any) -> str:
    with pytest.raises(ftplib.error_perm) as info:
        call(*args)
    return str(info.value)[:3]


def _read(sftp: Any, path: str) -> bytes:
    with sftp.open(path, "rb") as f:
        return bytes(f.read())


def _close_sftp(client: Any) -> None:
    """Close the SFTP channel and its SSH connection (paramiko leaves the connection open otherwise,
    and the daemon counts connections against max_sessions_per_user)."""
    transport = client.get_channel().get_transport()
    client.close()
    transport.close()


def _put(sftp: Any, path: str, data: bytes) -> None:
    with sftp.open(path, "wb") as f:
        f.write(data)


class Shared:
    """Clients for alice and bob, all in this test's directory (``base``); closed at the end."""

    def __init__(self, daemon: Daemon, base: str) -> None:
        self.daemon = daemon
        self.base = base
        self._closers: list[Callable[[], None]] = []

    def sftp(self, user: str) -> Any:
        client = paramiko_sftp(self.daemon, user)
        self._closers.append(lambda: _close_sftp(client))
        client.chdir(self.base)
        return client

    def ftp(self, user: str) -> ftplib.FTP:
        client = ftp_login(self.daemon, user)
        self._closers.append(client.close)
        client.cwd(self.base)
        return client

    def dav(self, user: str) -> Dav:
        client = Dav(self.daemon, user, self.base)
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):  # a connection the daemon's restart dropped
                close()
        self._closers.clear()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, with alice and bob, both at home in /shared with every permission."""
    d = Daemon(tmp_path_factory.mktemp("locks"))
    d.start()
    try:
        d.add_user("alice", PASSWORD, None, "--home", "/shared")
        d.add_user("bob", PASSWORD, None, "--home", "/shared")
        yield d
    finally:
        if d.proc is not None:
            d.stop()


@pytest.fixture
def shared(server: Daemon) -> Iterator[Shared]:
    """A fresh directory with f.txt ("original", mode 644) in it, made by alice."""
    base = f"/t{next(_dirs)}"
    alice = paramiko_sftp(server, "alice")
    try:
        alice.mkdir(base)
        _put(alice, f"{base}/f.txt", b"original")
    finally:
        _close_sftp(alice)
    users = Shared(server, base)
    try:
        yield users
    finally:
        users.close()


@pytest.fixture
def locked(shared: Shared) -> tuple[Shared, str]:
    """f.txt locked by alice over WebDAV (exclusive, depth 0); the lock token comes with it."""
    return shared, _token(shared.dav("alice").lock("/f.txt"))


class TestFileLockRefusesOthers:
    def test_sftp_changes_are_refused(self, locked: tuple[Shared, str]) -> None:
        """bob's overwrite, rename, remove and chmod over SFTP get PERMISSION_DENIED."""
        users, _ = locked
        bob = users.sftp("bob")
        assert errno.EACCES == _errno_of(bob.open, "f.txt", "w")
        assert errno.EACCES == _errno_of(bob.posix_rename, "f.txt", "moved.txt")
        assert errno.EACCES == _errno_of(bob.rename, "f.txt", "moved.txt")
        assert errno.EACCES == _errno_of(bob.remove, "f.txt")
        assert errno.EACCES == _errno_of(bob.chmod, "f.txt", 0o600)
        assert (b"original", ["f.txt"], 0o644) == (_read(bob, "f.txt"), bob.listdir("."),
                                                   bob.stat("f.txt").st_mode & 0o7777)

    def test_ftp_changes_are_refused(self, locked: tuple[Shared, str]) -> None:
        """bob's STOR, RNFR/RNTO and DELE over FTP get 550."""
        users, _ = locked
        bob = users.ftp("bob")
        assert "550" == _ftp_code(bob.storbinary, "STOR f.txt", io.BytesIO(b"changed"))
        assert "550" == _ftp_code(bob.rename, "f.txt", "moved.txt")
        assert "550" == _ftp_code(bob.delete, "f.txt")
        assert (b"original", ["f.txt"]) == (_read(users.sftp("alice"), "f.txt"), bob.nlst())

    def test_webdav_changes_are_refused(self, locked: tuple[Shared, str]) -> None:
        """bob's PUT, DELETE and MOVE over WebDAV get 423 Locked."""
        users, _ = locked
        bob = users.dav("bob")
        assert LOCKED == bob.request("PUT", "/f.txt", content=b"changed").status_code
        assert LOCKED == bob.request("DELETE", "/f.txt").status_code
        assert LOCKED == bob.request("MOVE", "/f.txt", headers={"Destination": bob.url("/moved.txt")}).status_code
        alice = users.sftp("alice")
        assert (b"original", ["f.txt"]) == (_read(alice, "f.txt"), alice.listdir("."))

    def test_holder_may_still_overwrite_over_sftp(self, locked: tuple[Shared, str]) -> None:
        """alice holds the lock: her own SFTP overwrite goes through."""
        users, _ = locked
        _put(users.sftp("alice"), "f.txt", b"alice's change")
        assert b"alice's change" == _read(users.sftp("bob"), "f.txt")

    def test_unlock_lets_others_write_again(self, locked: tuple[Shared, str]) -> None:
        """After UNLOCK with the Lock-Token header, bob's SFTP overwrite succeeds."""
        users, token = locked
        bob = users.sftp("bob")
        assert errno.EACCES == _errno_of(bob.open, "f.txt", "w")
        assert 204 == users.dav("alice").unlock("/f.txt", token).status_code
        _put(bob, "f.txt", b"bob's change")
        assert b"bob's change" == _read(users.sftp("alice"), "f.txt")


class TestNamesNeedingQuoting:
    def test_lock_on_a_name_with_spaces_and_utf8(self, shared: Shared) -> None:
        """A lock on a name that URLs must quote binds that very file (not one named as quoted)."""
        alice, bob = shared.sftp("alice"), shared.sftp("bob")
        alice.mkdir("dir é")
        _put(alice, "dir é/with space.txt", b"original")
        token = _token(shared.dav("alice").lock("/dir%20%C3%A9/with%20space.txt"))
        assert errno.EACCES == _errno_of(bob.open, "dir é/with space.txt", "w")
        assert (b"original", ["with space.txt"]) == (_read(bob, "dir é/with space.txt"), bob.listdir("dir é"))
        found = shared.dav("alice").request("PROPFIND", "/dir%20%C3%A9/with%20space.txt", headers={"Depth": "0"})
        assert token in found.text

    def test_lock_null_resource_with_a_quoted_name(self, shared: Shared) -> None:
        """LOCK of a new URL with a space creates that file, empty, and locks it."""
        assert 201 == shared.dav("alice").lock("/new%20file.txt").status_code
        bob = shared.sftp("bob")
        assert (True, 0) == ("new file.txt" in bob.listdir("."), bob.stat("new file.txt").st_size)
        assert errno.EACCES == _errno_of(bob.remove, "new file.txt")


class TestCollectionLock:
    @pytest.fixture
    def collection(self, shared: Shared) -> Shared:
        """d with d/x in it, locked by alice with depth infinity."""
        alice = shared.sftp("alice")
        alice.mkdir("d")
        _put(alice, "d/x", b"x")
        _token(shared.dav("alice").lock("/d", depth="infinity"))
        return shared

    def test_others_cannot_create_delete_or_rename(self, collection: Shared) -> None:
        """bob cannot create a file in d (SFTP, FTP), delete d/x or rename d."""
        bob = collection.sftp("bob")
        assert errno.EACCES == _errno_of(_put, bob, "d/new.txt", b"new")
        assert "550" == _ftp_code(collection.ftp("bob").storbinary, "STOR d/new2.txt", io.BytesIO(b"new"))
        assert errno.EACCES == _errno_of(bob.remove, "d/x")
        assert errno.EACCES == _errno_of(bob.rename, "d", "e")
        assert (["x"], ["d", "f.txt"]) == (bob.listdir("d"), sorted(bob.listdir(".")))

    def test_holder_can_create_delete_and_rename(self, collection: Shared) -> None:
        """alice, who holds the lock, can do all of it."""
        alice = collection.sftp("alice")
        _put(alice, "d/new.txt", b"new")
        collection.ftp("alice").storbinary("STOR d/new2.txt", io.BytesIO(b"new"))
        alice.remove("d/x")
        alice.rename("d", "e")
        assert (["new.txt", "new2.txt"], ["e", "f.txt"]) == (sorted(alice.listdir("e")), sorted(alice.listdir(".")))


class TestExpiry:
    def test_expired_lock_no_longer_blocks(self, shared: Shared) -> None:
        """A lock taken with Timeout: Second-1 binds no one once it has run out."""
        response = shared.dav("alice").lock("/f.txt", timeout="Second-1")
        _token(response)
        assert "<D:timeout>Second-1</D:timeout>" in response.text or "<D:timeout>Second-0</D:timeout>" in response.text
        time.sleep(2)
        bob = shared.sftp("bob")
        _put(bob, "f.txt", b"after expiry")
        assert b"after expiry" == _read(bob, "f.txt")
        assert 204 == shared.dav("bob").request("PUT", "/f.txt", content=b"over webdav").status_code


class TestUploadInProgress:
    def test_sftp_upload_refuses_lock(self, shared: Shared) -> None:
        """While bob writes big.bin over SFTP, alice's LOCK gets 423; once he has closed it, 200."""
        alice = shared.dav("alice")
        upload = shared.sftp("bob").open("big.bin", "wb")
        upload.write(b"\1" * 65536)
        upload.flush()
        assert LOCKED == alice.lock("/big.bin").status_code
        upload.close()
        _token(alice.lock("/big.bin"))
        assert b"\1" * 65536 == _read(shared.sftp("alice"), "big.bin")

    def test_ftp_upload_refuses_lock(self, shared: Shared) -> None:
        """While bob STORs big2.bin over FTP, alice's LOCK gets 423; once the STOR has ended, 200."""
        alice = shared.dav("alice")
        bob = shared.ftp("bob")
        bob.voidcmd("TYPE I")
        conn = bob.transfercmd("STOR big2.bin")
        try:
            conn.sendall(b"\2" * 65536)
            assert LOCKED == alice.lock("/big2.bin").status_code
        finally:
            conn.close()
        assert "226" == bob.voidresp()[:3]
        _token(alice.lock("/big2.bin"))
        assert b"\2" * 65536 == _read(shared.sftp("alice"), "big2.bin")

    def test_refused_lock_leaves_the_upload_alone(self, shared: Shared) -> None:
        """A LOCK refused for an upload in progress creates no file: bob's exclusive upload still commits."""
        upload = shared.sftp("bob").open("new.bin", "wxb")  # O_CREAT | O_EXCL
        upload.write(b"\3" * 1000)
        upload.flush()
        status = shared.dav("alice").lock("/new.bin").status_code
        seen = shared.sftp("alice").listdir(".")
        upload.close()  # paramiko ignores a failed CLOSE: the content tells
        assert (LOCKED, ["f.txt"], b"\3" * 1000) == (status, sorted(seen), _read(shared.sftp("alice"), "new.bin"))


class TestAuditAndRestart:
    def test_refusal_is_audited(self, locked: tuple[Shared, str]) -> None:
        """A refused SFTP remove is logged as fs.remove with outcome EACCES, for bob over SFTP."""
        users, _ = locked
        assert errno.EACCES == _errno_of(users.sftp("bob").remove, "f.txt")
        event = users.daemon.wait_event("fs.remove", outcome="EACCES", path=f"{users.base}/f.txt")
        assert ("bob", "sftp") == (event.get("user"), event.get("protocol"))

    def test_lock_survives_restart(self, locked: tuple[Shared, str]) -> None:
        """The lock is kept in the metadata store: after a restart bob is still refused."""
        users, _ = locked
        users.close()
        users.daemon.stop()
        users.daemon.start()
        bob = users.sftp("bob")
        assert errno.EACCES == _errno_of(bob.open, "f.txt", "w")
        assert LOCKED == users.dav("bob").request("PUT", "/f.txt", content=b"changed").status_code
        assert b"original" == _read(bob, "f.txt")
