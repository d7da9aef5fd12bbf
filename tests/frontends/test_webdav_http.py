"""WebDAV over HTTP and HTTPS with httpx, curl, cadaver and raw sockets: authentication, content,
collections, names, depth, quota, TLS, and bad input (the right status, an audit event, nothing
half-written).

Most tests share one daemon (users alice, bob and two with quotas); each works in a collection of its
own. Tests that need other settings start their own daemon.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from tests.support import PASSWORD, Daemon, require_tool, running_daemon

DAV = "{DAV:}"
QUOTA_BYTES = 1_000_000
QUOTA_PROPFIND = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop>'
                  b"<D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>")
ALLPROP = b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


# -- daemons and clients ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with the default WebDAV settings and users alice, bob, carol and dave (the last two
    with a byte quota each)."""
    with running_daemon(tmp_path_factory.mktemp("webdav-shared"), ("alice", "bob")) as daemon:
        daemon.add_user("carol", PASSWORD, None, "--quota-bytes", str(QUOTA_BYTES))
        daemon.add_user("dave", PASSWORD, None, "--quota-bytes", str(QUOTA_BYTES))
        yield daemon


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that answers PROPFIND Depth: infinity and takes XML bodies of at most 4 KiB."""
    with running_daemon(tmp_path_factory.mktemp("webdav-tuned"),
                        webdav={"allow_depth_infinity": True, "max_xml_bytes": 4096}) as daemon:
        yield daemon


def dav(daemon: Daemon, user: str = "alice", password: str = PASSWORD, tls: bool = False,
        verify: Any = False) -> httpx.Client:
    return httpx.Client(base_url=daemon.dav_url("", tls=tls), auth=(user, password), timeout=30, verify=verify)


@pytest.fixture
def client(shared: Daemon) -> Iterator[httpx.Client]:
    with dav(shared) as c:
        yield c


@pytest.fixture
def base(client: httpx.Client, request: pytest.FixtureRequest) -> str:
    """A fresh collection of alice's for this test, as a URL path without the trailing slash."""
    path = "/" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)
    assert 201 == client.request("MKCOL", path).status_code
    return path


def propfind(client: httpx.Client, path: str, depth: str = "1", body: bytes = ALLPROP) -> dict[str, ET.Element]:
    """The multistatus answer to PROPFIND as {decoded href: its D:response element}."""
    response = client.request("PROPFIND", path, content=body, headers={"Depth": depth})
    assert 207 == response.status_code, response.text
    root = ET.fromstring(response.content)  # noqa: S314 - the daemon's own answer, XML it wrote
    return {unquote(r.findtext(f"{DAV}href") or ""): r for r in root.iterfind(f"{DAV}response")}


def basic(user: str = "alice", password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers, without the blank line) as is, with Connection: close,
    and read the whole answer: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    header_block, _, payload = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def raw_get(daemon: Daemon, target: str, user: str = "alice") -> tuple[int, dict[str, str], bytes]:
    """GET with the request target exactly as given (no client normalizes it)."""
    return raw_request(daemon.dav_port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.dav_port}\r\n"
                                        f"Authorization: {basic(user)}")


def cut_off_put(daemon: Daemon, path: str, announced: int = 1_000_000, sent: int = 1000) -> None:
    """A PUT that announces ``announced`` bytes, sends ``sent`` and closes the connection."""
    with socket.create_connection(("127.0.0.1", daemon.dav_port), timeout=10) as s:
        s.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.dav_port}\r\nAuthorization: {basic()}\r\n"
                  f"Content-Length: {announced}\r\n\r\n".encode() + b"n" * sent)
        time.sleep(0.2)


def wait_for(daemon: Daemon, name: str | None, check: Callable[[dict[str, Any]], bool],
             timeout: float = 10.0) -> dict[str, Any]:
    """The first ``name`` event that passes ``check``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in daemon.events(name):
            if check(record):
                return record
        time.sleep(0.05)
    raise AssertionError(f"no matching {name or ''} event in the daemon log".replace("  ", " "))


def ok_uploads(daemon: Daemon, path: str) -> int:
    return sum(1 for e in daemon.events("fs.upload") if e.get("path") == path and e.get("outcome") == "ok")


def nothing_pending(daemon: Daemon) -> bool:
    """No upload left behind in the blob store's temporary area."""
    tmp = daemon.blob_dir / ".tmp"
    return not any(tmp.iterdir()) if tmp.exists() else True


# -- authentication --------------------------------------------------------------------------------


class TestAuthentication:
    def test_options_without_credentials(self, shared: Daemon) -> None:
        """An anonymous OPTIONS is 200 and announces DAV classes 1, 2 and 3 and MS-Author-Via."""
        response = httpx.options(shared.dav_url("/"), timeout=30)
        assert 200 == response.status_code
        assert "1,2,3" == response.headers["DAV"].replace(" ", "")
        assert "DAV" == response.headers["MS-Author-Via"]

    def test_get_without_credentials_is_401(self, shared: Daemon) -> None:
        """A GET without credentials is 401 with a Basic challenge."""
        response = httpx.get(shared.dav_url("/"), timeout=30)
        assert 401 == response.status_code
        assert response.headers["WWW-Authenticate"].startswith("Basic ")

    def test_wrong_password_is_401_and_audited(self, shared: Daemon) -> None:
        """A wrong password is 401 and an auth.login event with outcome bad_credentials."""
        with dav(shared, password="not the password") as c:
            assert 401 == c.get("/").status_code
        shared.wait_event("auth.login", user="alice", protocol="webdav", outcome="bad_credentials")

    def test_unknown_user_is_401_and_audited(self, shared: Daemon) -> None:
        """An unknown user is 401 as well, audited as unknown_user."""
        with dav(shared, user="mallory") as c:
            assert 401 == c.get("/").status_code
        shared.wait_event("auth.login", user="mallory", protocol="webdav", outcome="unknown_user")


# -- content ---------------------------------------------------------------------------------------


class TestContent:
    def test_put_get_round_trip(self, client: httpx.Client, base: str) -> None:
        """A few MB of random bytes come back as they went."""
        data = os.urandom(3 * 1024 * 1024 + 17)
        assert 201 == client.put(f"{base}/big.bin", content=data).status_code
        response = client.get(f"{base}/big.bin")
        assert 200 == response.status_code
        assert data == response.content

    def test_head_gives_length_and_etag(self, client: httpx.Client, base: str) -> None:
        """HEAD answers Content-Length and an ETag, without a body."""
        client.put(f"{base}/f", content=b"x" * 12345)
        response = client.head(f"{base}/f")
        assert 200 == response.status_code
        assert "12345" == response.headers["Content-Length"]
        assert response.headers["ETag"].strip('"')
        assert b"" == response.content

    def test_range(self, client: httpx.Client, base: str) -> None:
        """Range: bytes=10-19 is 206 with exactly those bytes and a Content-Range."""
        data = os.urandom(100_000)
        client.put(f"{base}/f", content=data)
        response = client.get(f"{base}/f", headers={"Range": "bytes=10-19"})
        assert 206 == response.status_code
        assert data[10:20] == response.content
        assert "bytes 10-19/100000" == response.headers["Content-Range"]

    def test_if_none_match_is_304(self, client: httpx.Client, base: str) -> None:
        """A GET with If-None-Match of the current ETag is 304."""
        client.put(f"{base}/f", content=b"content")
        etag = client.head(f"{base}/f").headers["ETag"]
        assert 304 == client.get(f"{base}/f", headers={"If-None-Match": etag}).status_code

    def test_if_match_with_a_wrong_etag_is_412(self, client: httpx.Client, base: str) -> None:
        """A PUT with If-Match of another ETag is 412 and the file keeps its content."""
        client.put(f"{base}/f", content=b"kept")
        assert 412 == client.put(f"{base}/f", content=b"lost", headers={"If-Match": '"0123456789abcdef"'}).status_code
        assert b"kept" == client.get(f"{base}/f").content

    def test_if_match_with_the_right_etag_replaces(self, client: httpx.Client, base: str) -> None:
        """A PUT with If-Match of the current ETag replaces the content."""
        client.put(f"{base}/f", content=b"old")
        etag = client.head(f"{base}/f").headers["ETag"]
        assert 204 == client.put(f"{base}/f", content=b"new", headers={"If-Match": etag}).status_code
        assert b"new" == client.get(f"{base}/f").content

    def test_etag_changes_with_content(self, client: httpx.Client, base: str) -> None:
        """The ETag changes when the content does."""
        client.put(f"{base}/f", content=b"one")
        first = client.head(f"{base}/f").headers["ETag"]
        client.put(f"{base}/f", content=b"two")
        second = client.head(f"{base}/f").headers["ETag"]
        assert first != second


LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>alice</D:owner></D:lockinfo>")


class TestSmallPut:
    """A PUT of at most one hop is answered in one call; whatever that call declines (a lock, a
    refusal) gets wsgidav's answer, with one audit event, as any PUT."""

    def test_created_then_replaced_with_the_sha256_as_etag(self, shared: Daemon, client: httpx.Client,
                                                            base: str) -> None:
        """201 for a new file, 204 for a replaced one, each with the content's SHA-256 as ETag, which
        GET and PROPFIND give too; one successful upload event each."""
        first, second = os.urandom(4096), os.urandom(5000)
        created = client.put(f"{base}/f", content=first)
        replaced = client.put(f"{base}/f", content=second)
        got = client.get(f"{base}/f")
        listed = propfind(client, f"{base}/f", depth="0")[f"{base}/f"].findtext(f".//{DAV}getetag")
        assert ((201, f'"{hashlib.sha256(first).hexdigest()}"'), (204, f'"{hashlib.sha256(second).hexdigest()}"'),
                second, got.headers["etag"], got.headers["etag"]) == (
            (created.status_code, created.headers.get("etag")), (replaced.status_code, replaced.headers.get("etag")),
            got.content, replaced.headers.get("etag"), listed)
        wait_for(shared, "fs.upload", lambda e: e.get("path") == f"{base}/f" and e.get("size") == 5000)
        assert 2 == ok_uploads(shared, f"{base}/f")

    def test_empty_body(self, client: httpx.Client, base: str) -> None:
        """An empty PUT makes an empty file, with the ETag of no bytes."""
        response = client.put(f"{base}/empty", content=b"")
        assert (201, f'"{hashlib.sha256(b"").hexdigest()}"', b"") == (
            response.status_code, response.headers.get("etag"), client.get(f"{base}/empty").content)

    def test_own_lock_needs_its_token(self, client: httpx.Client, base: str) -> None:
        """The lock holder's PUT without the lock token is 423 (RFC 4918 7.4), with it 204."""
        assert 201 == client.put(f"{base}/locked", content=b"v1").status_code
        lock = client.request("LOCK", f"{base}/locked", content=LOCK_BODY, headers={"Depth": "0"})
        token = lock.headers["lock-token"].strip("<>")
        without = client.put(f"{base}/locked", content=b"v2")
        with_token = client.put(f"{base}/locked", content=b"v3", headers={"If": f"(<{token}>)"})
        assert (200, 423, 204, b"v3") == (lock.status_code, without.status_code, with_token.status_code,
                                          client.get(f"{base}/locked").content)

    def test_new_member_of_a_locked_collection_needs_the_token(self, client: httpx.Client, base: str) -> None:
        """A collection's lock protects its membership: a new file in it needs the token."""
        assert 201 == client.request("MKCOL", f"{base}/box").status_code
        lock = client.request("LOCK", f"{base}/box", content=LOCK_BODY, headers={"Depth": "0"})
        token = lock.headers["lock-token"].strip("<>")
        without = client.put(f"{base}/box/new", content=b"x")
        with_token = client.put(f"{base}/box/new", content=b"x", headers={"If": f"<{base}/box> (<{token}>)"})
        assert (423, 201) == (without.status_code, with_token.status_code)

    def test_refusals_keep_their_status(self, client: httpx.Client, base: str) -> None:
        """A missing parent is 409 and a collection 405, as wsgidav answers them."""
        assert 201 == client.request("MKCOL", f"{base}/dir").status_code
        assert (409, 405) == (client.put(f"{base}/no/such/f", content=b"x").status_code,
                              client.put(f"{base}/dir", content=b"x").status_code)

    def test_over_quota_is_507_with_one_event(self, shared: Daemon) -> None:
        """A small PUT that does not fit the quota is 507; the file does not appear, and the refusal
        is audited once."""
        with dav(shared, user="dave") as c:
            assert 201 == c.put("/fits", content=os.urandom(QUOTA_BYTES - 1000)).status_code
            assert 507 == c.put("/too-much", content=os.urandom(2000)).status_code
            assert 404 == c.get("/too-much").status_code
            assert 201 == c.put("/fits-too", content=os.urandom(1000)).status_code
            assert 204 == c.delete("/fits").status_code
            assert 204 == c.delete("/fits-too").status_code
        wait_for(shared, "fs.upload", lambda e: e.get("user") == "dave" and e.get("path") == "/too-much")
        refused = [e for e in shared.events("fs.upload") if e.get("user") == "dave" and e.get("path") == "/too-much"]
        assert ["EDQUOT"] == [e.get("outcome") for e in refused]

    def test_path_that_is_not_utf8_is_400_and_audited(self, shared: Daemon, base: str) -> None:
        """A request path whose percent-decoded bytes are not UTF-8 is 400, audited."""
        status, _, _ = raw_request(shared.dav_port, f"PUT {base}/bad%FF%FEname HTTP/1.1\r\n"
                                                    f"Host: 127.0.0.1:{shared.dav_port}\r\n"
                                                    f"Authorization: {basic()}\r\nContent-Length: 1", b"x")
        assert 400 == status
        wait_for(shared, "webdav.bad_request", lambda e: e.get("error") == "path is not UTF-8")


class TestSmallRequestsOnTheLoop:
    """Over plain HTTP the event loop answers small GETs, depth-0 PROPFINDs, and plain DELETE, MKCOL
    and MOVE itself; HTTPS goes through wsgidav. Both give the same answers and audit events, and
    what the loop declines (a lock, a refusal) gets wsgidav's answer."""

    def test_get_and_stat_as_over_https(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A small file's GET and its depth-0 PROPFIND (allprop and named) are the same over HTTP
        and HTTPS, headers included (the dates aside)."""
        data = os.urandom(10_000)
        assert 201 == client.put(f"{base}/s.bin", content=data).status_code
        named = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/>'
                 b"<D:nothing/></D:prop></D:propfind>")
        answers = []
        for tls in (False, True):
            with dav(shared, tls=tls) as c:
                got = c.get(f"{base}/s.bin")
                headers = {k: v for k, v in got.headers.items() if k in ("content-type", "content-length", "etag",
                                                                          "last-modified", "accept-ranges")}
                stats = [c.request("PROPFIND", f"{base}/s.bin", content=body, headers={"Depth": "0"})
                         for body in (b"", named)]
                answers.append((got.status_code, got.content, headers,
                                [(r.status_code, r.content) for r in stats]))
        assert answers[0] == answers[1]
        assert (200, data, f'"{hashlib.sha256(data).hexdigest()}"') == (
            answers[0][0], answers[0][1], answers[0][2]["etag"])

    def test_listing_as_over_https(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A directory's PROPFIND Depth 1 (allprop and named) is the same over HTTP and HTTPS."""
        assert 201 == client.request("MKCOL", f"{base}/ls").status_code
        for name in ("a b.txt", "ü.bin", "sub/"):
            assert 201 == (client.request("MKCOL", f"{base}/ls/{name}") if name.endswith("/")
                           else client.put(f"{base}/ls/{name}", content=name.encode())).status_code
        named = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/>'
                 b"<D:resourcetype/></D:prop></D:propfind>")
        answers = []
        for tls in (False, True):
            with dav(shared, tls=tls) as c:
                listed = [c.request("PROPFIND", f"{base}/ls/", content=body, headers={"Depth": "1"})
                          for body in (b"", named)]
                answers.append([(r.status_code, r.content) for r in listed])
        assert answers[0] == answers[1]
        assert [207, 207] == [status for status, _ in answers[0]]
        assert {f"{base}/ls/", f"{base}/ls/a b.txt", f"{base}/ls/ü.bin", f"{base}/ls/sub/"} == set(
            propfind(client, f"{base}/ls/"))

    def test_mkcol_move_delete(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """MKCOL 201, MOVE 201 then 204 over a file, DELETE 204: each done, and audited once."""
        assert 201 == client.request("MKCOL", f"{base}/d/").status_code
        for name in ("a", "b"):
            assert 201 == client.put(f"{base}/d/{name}", content=name.encode()).status_code
        moved = client.request("MOVE", f"{base}/d/a", headers={"Destination": shared.dav_url(f"{base}/d/c")})
        replaced = client.request("MOVE", f"{base}/d/c", headers={"Destination": f"{base}/d/b"})
        deleted = client.request("DELETE", f"{base}/d/b")
        assert (201, 201, 204, 204, 404) == (client.request("MKCOL", f"{base}/e").status_code, moved.status_code,
                                             replaced.status_code, deleted.status_code,
                                             client.get(f"{base}/d/b").status_code)
        wait_for(shared, "fs.remove", lambda e: e.get("path") == f"{base}/d/b")
        renames = [e for e in shared.events("fs.rename") if e.get("path", "").startswith(f"{base}/d/")]
        mkdirs = [e for e in shared.events("fs.mkdir") if e.get("path") in (f"{base}/d/", f"{base}/e")]
        assert (["ok", "ok"], ["ok", "ok"]) == ([e["outcome"] for e in renames], [e["outcome"] for e in mkdirs])

    def test_locked_file_is_refused_by_wsgidav(self, client: httpx.Client, base: str) -> None:
        """A locked file cannot be deleted or moved without its token (423); with it, it can."""
        assert 201 == client.put(f"{base}/locked", content=b"x").status_code
        lock = client.request("LOCK", f"{base}/locked", content=LOCK_BODY, headers={"Depth": "0"})
        token = lock.headers["lock-token"]
        refused = [client.request("DELETE", f"{base}/locked").status_code,
                   client.request("MOVE", f"{base}/locked", headers={"Destination": f"{base}/other"}).status_code]
        allowed = client.request("DELETE", f"{base}/locked", headers={"If": f"({token})"}).status_code
        assert ([423, 423], 204, 404) == (refused, allowed, client.get(f"{base}/locked").status_code)


class TestStreamedPut:
    """A PUT larger than one hop with a Content-Length is received straight from the socket, hop by
    hop; declined cases go to wsgidav, as for a small PUT."""

    SIZE = 5 * 1024 * 1024 + 123

    @pytest.mark.parametrize("tls", [False, True])
    def test_round_trip_then_replace(self, shared: Daemon, base: str, tls: bool) -> None:
        """201 then 204, each with the content's SHA-256 as ETag; the content reads back, and the
        connection stays usable (the next request on it works)."""
        first, second = os.urandom(self.SIZE), os.urandom(self.SIZE - 1000)
        with dav(shared, tls=tls) as c:
            created = c.put(f"{base}/big-{tls}", content=first)
            replaced = c.put(f"{base}/big-{tls}", content=second)
            got = c.get(f"{base}/big-{tls}")
        assert ((201, f'"{hashlib.sha256(first).hexdigest()}"'), (204, f'"{hashlib.sha256(second).hexdigest()}"'),
                hashlib.sha256(second).hexdigest()) == (
            (created.status_code, created.headers.get("etag")), (replaced.status_code, replaced.headers.get("etag")),
            hashlib.sha256(got.content).hexdigest())

    def test_cut_off_keeps_the_old_content(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A large PUT cut off mid-body leaves the old content, is audited as incomplete, and leaves
        no temporary file."""
        assert 201 == client.put(f"{base}/f", content=b"old").status_code
        cut_off_put(shared, f"{base}/f", announced=self.SIZE, sent=2 * 1024 * 1024 + 5)
        event = wait_for(shared, "fs.upload", lambda e: e.get("path") == f"{base}/f" and e.get("outcome") != "ok")
        assert ("client body incomplete", b"old", 1) == (event["outcome"], client.get(f"{base}/f").content,
                                                          ok_uploads(shared, f"{base}/f"))
        assert nothing_pending(shared)

    def test_locked_file_needs_the_token(self, client: httpx.Client, base: str) -> None:
        """The lock holder's large PUT without the token is 423 and changes nothing; with it, 204."""
        assert 201 == client.put(f"{base}/locked", content=b"v1").status_code
        lock = client.request("LOCK", f"{base}/locked", content=LOCK_BODY, headers={"Depth": "0"})
        token = lock.headers["lock-token"].strip("<>")
        data = os.urandom(self.SIZE)
        without = client.put(f"{base}/locked", content=data)
        kept = client.get(f"{base}/locked").content
        with_token = client.put(f"{base}/locked", content=data, headers={"If": f"(<{token}>)"})
        assert (423, b"v1", 204, data) == (without.status_code, kept, with_token.status_code,
                                           client.get(f"{base}/locked").content)


class TestChunkedPut:
    @staticmethod
    def _chunks(data: bytes, size: int = 100_000) -> Iterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i:i + size]

    def test_chunked_put(self, client: httpx.Client, base: str) -> None:
        """A PUT with Transfer-Encoding: chunked (wsgidav's path) stores the whole body, and answers
        with the content's SHA-256 as ETag, as the GET does."""
        data = os.urandom(1_500_000)
        response = client.put(f"{base}/f", content=self._chunks(data))
        assert "chunked" == response.request.headers["Transfer-Encoding"]
        assert 201 == response.status_code
        got = client.get(f"{base}/f")
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        assert (data, etag, etag) == (got.content, response.headers.get("ETag"), got.headers["ETag"])

    def test_finder_expected_entity_length(self, client: httpx.Client, base: str) -> None:
        """Finder's chunked PUT with X-Expected-Entity-Length stores the whole body."""
        data = os.urandom(500_000)
        response = client.put(f"{base}/f", content=self._chunks(data),
                              headers={"X-Expected-Entity-Length": str(len(data))})
        assert 201 == response.status_code
        assert data == client.get(f"{base}/f").content

    def test_finder_body_shorter_than_announced(self, client: httpx.Client, base: str) -> None:
        """A chunked body shorter than its X-Expected-Entity-Length is 400 and stores nothing."""
        response = client.put(f"{base}/f", content=self._chunks(os.urandom(500_000)),
                              headers={"X-Expected-Entity-Length": "600000"})
        assert 400 == response.status_code
        assert 404 == client.get(f"{base}/f").status_code


# -- collections and names -------------------------------------------------------------------------


class TestCollections:
    def test_mkcol(self, client: httpx.Client, base: str) -> None:
        """MKCOL creates a collection (201); again on the same name is 405."""
        assert 201 == client.request("MKCOL", f"{base}/d").status_code
        assert 405 == client.request("MKCOL", f"{base}/d").status_code
        assert f"{base}/d/" in propfind(client, f"{base}/")

    def test_copy_file(self, client: httpx.Client, base: str) -> None:
        """COPY makes a readable copy and leaves the original as it was."""
        client.put(f"{base}/a", content=b"original")
        response = client.request("COPY", f"{base}/a", headers={"Destination": str(client.base_url.join(f"{base}/b"))})
        assert 201 == response.status_code
        assert b"original" == client.get(f"{base}/b").content
        assert b"original" == client.get(f"{base}/a").content

    def test_move_without_overwrite_onto_existing_is_412(self, client: httpx.Client, base: str) -> None:
        """MOVE with Overwrite: F onto an existing file is 412; both files stay as they were."""
        client.put(f"{base}/a", content=b"a")
        client.put(f"{base}/b", content=b"b")
        response = client.request("MOVE", f"{base}/a", headers={"Destination": str(client.base_url.join(f"{base}/b")),
                                                                "Overwrite": "F"})
        assert 412 == response.status_code
        assert (b"a", b"b") == (client.get(f"{base}/a").content, client.get(f"{base}/b").content)

    def test_move_with_overwrite_replaces(self, client: httpx.Client, base: str) -> None:
        """MOVE with Overwrite: T replaces the target (204) and the source is gone."""
        client.put(f"{base}/a", content=b"a")
        client.put(f"{base}/b", content=b"b")
        response = client.request("MOVE", f"{base}/a", headers={"Destination": str(client.base_url.join(f"{base}/b")),
                                                                "Overwrite": "T"})
        assert 204 == response.status_code
        assert b"a" == client.get(f"{base}/b").content
        assert 404 == client.get(f"{base}/a").status_code

    def test_delete_collection_with_contents(self, client: httpx.Client, base: str) -> None:
        """DELETE of a collection removes it with everything in it."""
        client.request("MKCOL", f"{base}/d")
        client.request("MKCOL", f"{base}/d/sub")
        client.put(f"{base}/d/f", content=b"f")
        client.put(f"{base}/d/sub/g", content=b"g")
        assert 204 == client.delete(f"{base}/d").status_code
        for path in ("/d", "/d/f", "/d/sub/g"):
            assert 404 == client.get(base + path).status_code
        assert [f"{base}/"] == list(propfind(client, f"{base}/"))


class TestNames:
    NAMES = ["with space.txt", "hash#tag.txt", "per%cent.txt", "ünïcødé ☃ 日本.txt", "100% #1 ?.txt"]

    def test_special_names_round_trip_and_list(self, client: httpx.Client, base: str) -> None:
        """Names with spaces, '#', '%', '?' and UTF-8 store, read back, and list decoded."""
        for name in self.NAMES:
            assert 201 == client.put(f"{base}/{quote(name)}", content=name.encode()).status_code, name
            assert name.encode() == client.get(f"{base}/{quote(name)}").content
        listing = propfind(client, f"{base}/")
        assert sorted([f"{base}/", *(f"{base}/{n}" for n in self.NAMES)]) == sorted(listing)
        names = {href: r.findtext(f"{DAV}propstat/{DAV}prop/{DAV}displayname") for href, r in listing.items()}
        assert {f"{base}/{n}": n for n in self.NAMES} == {h: n for h, n in names.items() if h != f"{base}/"}

    def test_special_collection_name(self, client: httpx.Client, base: str) -> None:
        """A collection with such a name lists its member below the decoded name."""
        folder = "dir #2 100% ü"
        assert 201 == client.request("MKCOL", f"{base}/{quote(folder)}").status_code
        client.put(f"{base}/{quote(folder)}/{quote('a b')}", content=b"x")
        assert {f"{base}/{folder}/", f"{base}/{folder}/a b"} == set(propfind(client, f"{base}/{quote(folder)}/"))


# -- PROPFIND depth ----------------------------------------------------------------------------------


class TestDepth:
    def test_depth_infinity_is_refused(self, client: httpx.Client, base: str) -> None:
        """PROPFIND Depth: infinity is 403 with the propfind-finite-depth precondition."""
        response = client.request("PROPFIND", f"{base}/", headers={"Depth": "infinity"})
        assert 403 == response.status_code
        assert "propfind-finite-depth" in response.text

    def test_missing_depth_means_infinity(self, client: httpx.Client, base: str) -> None:
        """PROPFIND without a Depth header is Depth: infinity (RFC 4918), refused alike."""
        response = client.request("PROPFIND", f"{base}/")
        assert 403 == response.status_code
        assert "propfind-finite-depth" in response.text

    def test_depth_one_of_a_file(self, client: httpx.Client, base: str) -> None:
        """PROPFIND Depth: 1 of a file answers for the file alone, with its length."""
        client.put(f"{base}/f", content=b"12345")
        listing = propfind(client, f"{base}/f")
        assert [f"{base}/f"] == list(listing)
        assert "5" == listing[f"{base}/f"].findtext(f"{DAV}propstat/{DAV}prop/{DAV}getcontentlength")

    def test_missing_target_is_404(self, client: httpx.Client, base: str) -> None:
        """PROPFIND of a path that does not exist is 404."""
        assert 404 == client.request("PROPFIND", f"{base}/nothing/", headers={"Depth": "1"}).status_code

    def test_depth_infinity_when_allowed(self, tuned: Daemon) -> None:
        """With allow_depth_infinity, Depth: infinity is 207 and lists the whole tree."""
        with dav(tuned) as c:
            c.request("MKCOL", "/inf")
            c.request("MKCOL", "/inf/a")
            c.put("/inf/a/deep.txt", content=b"deep")
            assert {"/inf/", "/inf/a/", "/inf/a/deep.txt"} == set(propfind(c, "/inf/", depth="infinity"))


# -- quota -----------------------------------------------------------------------------------------


def _quota(client: httpx.Client) -> tuple[int, int]:
    response = propfind(client, "/", depth="0", body=QUOTA_PROPFIND)["/"]
    prop = f"{DAV}propstat/{DAV}prop/{DAV}"
    available = response.findtext(prop + "quota-available-bytes") or "-1"
    used = response.findtext(prop + "quota-used-bytes") or "-1"
    return int(available), int(used)


class TestQuota:
    def test_quota_properties(self, shared: Daemon) -> None:
        """quota-available-bytes and quota-used-bytes follow the user's byte quota and usage."""
        with dav(shared, user="carol") as c:
            assert (QUOTA_BYTES, 0) == _quota(c)
            assert 201 == c.put("/f", content=os.urandom(300_000)).status_code
            assert (QUOTA_BYTES - 300_000, 300_000) == _quota(c)

    @pytest.mark.parametrize("chunked", [False, True])
    def test_put_over_quota_is_507(self, shared: Daemon, chunked: bool) -> None:
        """A PUT larger than the quota is 507 and leaves nothing behind."""
        data = os.urandom(2 * QUOTA_BYTES)
        name = f"/big-{chunked}"
        with dav(shared, user="dave") as c:
            body = iter([data[:QUOTA_BYTES], data[QUOTA_BYTES:]]) if chunked else data
            assert 507 == c.put(name, content=body).status_code
            assert 404 == c.get(name).status_code
            assert [] == [h for h in propfind(c, "/") if h.startswith(name)]
            assert (QUOTA_BYTES, 0) == _quota(c)
        event = wait_for(shared, "fs.upload", lambda e: e.get("user") == "dave" and e.get("path") == name)
        assert "ok" != event["outcome"]


# -- TLS -------------------------------------------------------------------------------------------


class TestTls:
    def test_https_round_trip(self, shared: Daemon) -> None:
        """PUT and GET work over HTTPS."""
        data = os.urandom(200_000)
        with dav(shared, tls=True) as c:
            assert 201 == c.put("/over-https.bin", content=data).status_code
            assert data == c.get("/over-https.bin").content

    def test_https_certificate_verifies(self, shared: Daemon) -> None:
        """The generated certificate verifies a connection to localhost."""
        context = ssl.create_default_context(cafile=str(shared.data_dir / "tls" / "cert.pem"))
        with httpx.Client(base_url=f"https://localhost:{shared.davs_port}", auth=("alice", PASSWORD), timeout=30,
                          verify=context) as c:
            assert 201 == c.put("/verified.txt", content=b"verified").status_code
            assert b"verified" == c.get("/verified.txt").content

    def test_require_tls_always(self, make_daemon: Callable[..., Daemon]) -> None:
        """With require_tls "always", plain HTTP with credentials is 403 and audited; HTTPS works."""
        daemon = make_daemon(webdav={"require_tls": "always"})
        daemon.add_user("alice")
        with dav(daemon) as c:
            response = c.put("/plain.txt", content=b"plain")
            assert 403 == response.status_code
        daemon.wait_event("webdav.bad_request", outcome="EACCES", path="/plain.txt")
        with dav(daemon, tls=True) as c:
            assert 404 == c.get("/plain.txt").status_code
            assert 201 == c.put("/secure.txt", content=b"secure").status_code
            assert b"secure" == c.get("/secure.txt").content


# -- curl and cadaver ------------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    require_tool("curl")
    result = subprocess.run(["curl", "--silent", "--show-error", "--fail", "--user", f"alice:{PASSWORD}",
                             "--connect-timeout", "30", *args], capture_output=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
    return result


class TestCurl:
    def test_upload_and_download(self, shared: Daemon, base: str, tmp_path: Path) -> None:
        """curl -T uploads a file and curl -o brings it back equal."""
        local = tmp_path / "up.bin"
        local.write_bytes(os.urandom(1_234_567))
        curl("-T", str(local), shared.dav_url(f"{base}/up.bin"))
        curl("-o", str(tmp_path / "down.bin"), shared.dav_url(f"{base}/up.bin"))
        assert local.read_bytes() == (tmp_path / "down.bin").read_bytes()

    def test_upload_and_download_over_https(self, shared: Daemon, base: str, tmp_path: Path) -> None:
        """The same over HTTPS, the certificate checked against the generated one."""
        local = tmp_path / "up.bin"
        local.write_bytes(os.urandom(300_000))
        url = f"https://localhost:{shared.davs_port}{base}/up.bin"
        cert = str(shared.data_dir / "tls" / "cert.pem")
        curl("--cacert", cert, "-T", str(local), url)
        curl("--cacert", cert, "-o", str(tmp_path / "down.bin"), url)
        assert local.read_bytes() == (tmp_path / "down.bin").read_bytes()

    def test_propfind(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """curl -X PROPFIND with Depth: 1 is 207 and lists the collection."""
        client.put(f"{base}/listed.txt", content=b"x")
        result = curl("-X", "PROPFIND", "-H", "Depth: 1", "-w", "\n%{http_code}", shared.dav_url(f"{base}/"))
        body, _, code = result.stdout.decode().rpartition("\n")
        assert "207" == code
        assert f"{base}/listed.txt" in body


class TestCadaver:
    def test_put_ls_get(self, shared: Daemon, client: httpx.Client, base: str, tmp_path: Path) -> None:
        """cadaver, scripted, uploads a file, lists it and downloads it back equal."""
        require_tool("cadaver")
        home = tmp_path / "home"
        home.mkdir()
        (home / ".netrc").write_text(f'machine 127.0.0.1\nlogin alice\npassword "{PASSWORD}"\n')
        (home / ".netrc").chmod(0o600)
        work = tmp_path / "work"
        work.mkdir()
        data = os.urandom(150_000)
        (work / "up.bin").write_bytes(data)
        script = "put up.bin\nls\nget up.bin down.bin\nquit\n"
        result = subprocess.run(["cadaver", shared.dav_url(f"{base}/")], input=script, capture_output=True, text=True,
                                cwd=work, env={**os.environ, "HOME": str(home)}, timeout=60)
        output = result.stdout + result.stderr
        assert 3 == output.count("succeeded"), output
        assert re.search(r"up\.bin\s+150000\b", output), output
        assert data == (work / "down.bin").read_bytes()
        assert data == client.get(f"{base}/up.bin").content


# -- bad input -------------------------------------------------------------------------------------


XXE = (b'<?xml version="1.0" encoding="utf-8"?>\n'
       b'<!DOCTYPE D:propfind [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&xxe;</D:displayname></D:prop></D:propfind>')
XXE_BODIES = {
    "PROPFIND": XXE,
    "PROPPATCH": (b'<?xml version="1.0" encoding="utf-8"?>\n'
                  b'<!DOCTYPE D:propertyupdate [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                  b'<D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x"><D:set><D:prop><x:leak>&xxe;</x:leak>'
                  b"</D:prop></D:set></D:propertyupdate>"),
    "LOCK": (b'<?xml version="1.0" encoding="utf-8"?>\n'
             b'<!DOCTYPE D:lockinfo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
             b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/>'
             b"</D:locktype><D:owner>&xxe;</D:owner></D:lockinfo>"),
}


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE D:propfind [' + "".join(entities).encode()
            + b']>\n<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol9;</D:displayname></D:prop></D:propfind>')


def _no_passwd(response: httpx.Response) -> None:
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    assert passwd not in response.text
    assert "root:" not in response.text


class TestBadXml:
    def test_malformed_xml_is_400_and_audited(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A PROPFIND body that is not well-formed XML is 400 and a webdav.bad_request event."""
        body = b'<?xml version="1.0"?>\n<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>'
        response = client.request("PROPFIND", f"{base}/", content=body, headers={"Depth": "0"})
        assert 400 == response.status_code
        shared.wait_event("webdav.bad_request", path=f"{base}/", method="PROPFIND")

    @pytest.mark.parametrize("method", sorted(XXE_BODIES))
    def test_external_entity_is_400(self, shared: Daemon, client: httpx.Client, base: str, method: str) -> None:
        """An XML body declaring an external entity (XXE) is 400 and audited, reveals nothing, and
        leaves nothing (no lock, no property, no file)."""
        target = f"{base}/target.txt"
        if method != "LOCK":
            client.put(target, content=b"x")
        response = client.request(method, target, content=XXE_BODIES[method], headers={"Depth": "0"})
        assert 400 == response.status_code
        _no_passwd(response)
        shared.wait_event("webdav.bad_request", path=target, method=method, outcome="EINVAL")
        if method == "LOCK":
            assert 404 == client.get(target).status_code
        else:
            found = propfind(client, target, depth="0")[target]
            assert [] == found.findall(f".//{DAV}activelock")
            assert found.find(".//{urn:x}leak") is None

    def test_external_entity_in_utf16_is_400(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """The same XXE body encoded as UTF-16 (which XML allows) is refused alike: 400 and audited."""
        body = XXE.decode().replace('encoding="utf-8"', 'encoding="UTF-16"').encode("utf-16")
        response = client.request("PROPFIND", f"{base}/", content=body, headers={"Depth": "0"})
        _no_passwd(response)
        assert 400 == response.status_code
        shared.wait_event("webdav.bad_request", path=f"{base}/", method="PROPFIND", outcome="EINVAL")

    def test_billion_laughs_is_400(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """An entity expansion bomb is 400 and audited, answered at once."""
        started = time.monotonic()
        response = client.request("PROPFIND", f"{base}/", content=billion_laughs(), headers={"Depth": "0"})
        assert 400 == response.status_code
        assert "lollollol" not in response.text
        assert time.monotonic() - started < 5
        shared.wait_event("webdav.bad_request", path=f"{base}/", method="PROPFIND", outcome="EINVAL")

    def test_body_over_max_xml_bytes_is_413(self, tuned: Daemon) -> None:
        """A PROPFIND body over max_xml_bytes is 413 and audited."""
        padding = b"<!-- " + b"x" * 10_000 + b" -->"
        body = ALLPROP.replace(b"<D:allprop/>", padding + b"<D:allprop/>")
        with dav(tuned) as c:
            response = c.request("PROPFIND", "/", content=body, headers={"Depth": "0"})
            assert 413 == response.status_code
            assert 207 == c.request("PROPFIND", "/", content=ALLPROP, headers={"Depth": "0"}).status_code
        tuned.wait_event("webdav.bad_request", path="/", method="PROPFIND", outcome="E2BIG")

    def test_chunked_body_over_max_xml_bytes_is_413(self, tuned: Daemon) -> None:
        """The same body sent chunked (no Content-Length) is 413 too."""
        padding = b"<!-- " + b"x" * 10_000 + b" -->"
        body = ALLPROP.replace(b"<D:allprop/>", padding + b"<D:allprop/>")
        with dav(tuned) as c:
            c.put("/chunked-target.txt", content=b"x")
            response = c.request("PROPPATCH", "/chunked-target.txt", content=iter([body[:5000], body[5000:]]))
            assert 413 == response.status_code
        tuned.wait_event("webdav.bad_request", path="/chunked-target.txt", method="PROPPATCH", outcome="E2BIG")


class TestCutOffPut:
    def test_existing_file_keeps_its_content(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A PUT cut off mid-body over a file leaves the old content, and its upload is logged as failed."""
        old = b"the old content, which must survive" * 100
        client.put(f"{base}/f", content=old)
        oks = ok_uploads(shared, f"{base}/f")
        cut_off_put(shared, f"{base}/f")
        event = wait_for(shared, "fs.upload", lambda e: e.get("path") == f"{base}/f" and e.get("outcome") != "ok")
        assert 1000 >= event.get("size", 0)
        assert old == client.get(f"{base}/f").content
        assert oks == ok_uploads(shared, f"{base}/f")
        assert nothing_pending(shared)

    def test_new_file_never_appears(self, shared: Daemon, client: httpx.Client, base: str) -> None:
        """A PUT cut off mid-body to a new name leaves no file."""
        cut_off_put(shared, f"{base}/new")
        wait_for(shared, "fs.upload", lambda e: e.get("path") == f"{base}/new" and e.get("outcome") != "ok")
        assert 404 == client.get(f"{base}/new").status_code
        assert [f"{base}/"] == list(propfind(client, f"{base}/"))
        assert 0 == ok_uploads(shared, f"{base}/new")
        assert nothing_pending(shared)


ESCAPES = [
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E/%2E%2E/%2E%2E/etc/passwd", "/..%2f..%2fetc%2fpasswd",
    "/../bob/secret.txt", "/%2e%2e/bob/secret.txt", "/.%2e/bob/secret.txt", "/%2e./bob/secret.txt",
    "/..%2fbob%2fsecret.txt", "/%2e%2e%2fbob%2fsecret.txt", "/x/../../bob/secret.txt", "/./../bob/secret.txt",
    "//bob/secret.txt", "/bob/secret.txt", "/..\\bob\\secret.txt", "/%252e%252e/bob/secret.txt",
    "/../../../../../../../etc/passwd",
]


@pytest.fixture(scope="module")
def bobs_secret(shared: Daemon) -> bytes:
    secret = b"bob's secret, for bob only"
    with dav(shared, user="bob") as c:
        assert c.put("/secret.txt", content=secret).status_code in (201, 204)
    return secret


class TestConfinement:
    @pytest.mark.parametrize("target", ESCAPES)
    def test_get_cannot_leave_the_home(self, shared: Daemon, bobs_secret: bytes, target: str) -> None:
        """GET of a path spelled to climb out of alice's home is 400 or 404, never bob's or the system's files."""
        status, _, body = raw_get(shared, target)
        assert status in (400, 404), (status, body[:200])
        assert bobs_secret not in body
        assert b"root:" not in body

    def test_bob_reads_his_own_file(self, shared: Daemon, bobs_secret: bytes) -> None:
        """The file the confinement tests look for is there, for bob."""
        assert (200, bobs_secret) == raw_get(shared, "/secret.txt", user="bob")[::2]

    @pytest.mark.parametrize("method", ["PUT", "MKCOL", "COPY", "MOVE"])
    def test_writes_cannot_leave_the_home(self, shared: Daemon, client: httpx.Client, base: str,
                                          bobs_secret: bytes, method: str) -> None:
        """Writes aimed at bob's home through '..' (target or Destination) change nothing there."""
        client.put(f"{base}/src.txt", content=b"planted")
        port = shared.dav_port
        for spelling in ("/..", "/%2e%2e", "/.%2e"):
            planted = f"{spelling}/bob/planted-{method}"
            if method in ("PUT", "MKCOL"):
                head, body = f"{method} {planted} HTTP/1.1", b"planted" if method == "PUT" else b""
            else:
                head, body = f"{method} {base}/src.txt HTTP/1.1\r\nDestination: http://127.0.0.1:{port}{planted}", b""
            status, _, _ = raw_request(port, f"{head}\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {basic()}\r\n"
                                             f"Content-Length: {len(body)}", body)
            assert status < 500, (spelling, status)
        with dav(shared, user="bob") as bob:
            assert ["/", "/secret.txt"] == sorted(propfind(bob, "/"))
            assert bobs_secret == bob.get("/secret.txt").content

    def test_listing_cannot_leave_the_home(self, shared: Daemon, bobs_secret: bytes) -> None:
        """PROPFIND of '..' spellings never lists bob's home."""
        for target in ("/..", "/%2e%2e/", "/../bob/", "/%2e%2e/bob/"):
            status, _, body = raw_request(shared.dav_port, f"PROPFIND {target} HTTP/1.1\r\n"
                                                           f"Host: 127.0.0.1:{shared.dav_port}\r\n"
                                                           f"Authorization: {basic()}\r\nDepth: 1\r\n"
                                                           "Content-Length: 0")
            assert status in (207, 400, 404), (target, status)
            assert b"secret.txt" not in body, target

    @pytest.mark.parametrize("target", ["/../bob/secret.txt", "/%2e%2e/bob/secret.txt"])
    def test_refusal_is_a_complete_response(self, shared: Daemon, target: str) -> None:
        """The answer to an escaping path carries the body its Content-Length announces, so a
        keep-alive client is not left waiting for it."""
        port = shared.dav_port
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {basic()}\r\n\r\n"
                      .encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, "connection closed before the headers"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            announced = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            assert announced, head.decode()
            length = int(announced.group(1))
            try:
                while len(body) < length and (chunk := s.recv(65536)):
                    body += chunk
            except TimeoutError:
                pass
        assert head.split(b" ")[1] in (b"400", b"404")
        assert length == len(body), head.decode()

    def test_escape_attempt_is_audited(self, shared: Daemon) -> None:
        """A request whose path climbs out of the home leaves an audit event naming that path."""
        target = "/../bob/audited-secret.txt"
        raw_get(shared, target)
        wait_for(shared, None, lambda e: e.get("user") == "alice" and e.get("outcome") not in (None, "ok")
                 and "audited-secret.txt" in str(e.get("path")), timeout=5)
