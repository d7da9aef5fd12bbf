"""The plain-HTTP WebDAV listener on the event loop: which requests it answers itself, how it hands
the rest to cheroot and takes connections back, and what it does with clients that misbehave.

A real WebdavFrontend runs in this process on a real SQLite store and local blob store; clients are
asyncio streams on loopback, so every byte crosses a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.support import free_port
from xferd.auth import Authenticator, hash_password
from xferd.config import Config
from xferd.frontends.bridge import Bridge
from xferd.frontends.webdav import propfind
from xferd.frontends.webdav.loopfront import HEAD_MAX, RENDER_ON_LOOP_MAX, XML_ON_LOOP_MAX, LoopFront, parse
from xferd.frontends.webdav.server import WebdavFrontend
from xferd.metadata.models import Perm, Quota
from xferd.metadata.sql import SqlMetadataStore
from xferd.vfs.audit import AuditSink
from xferd.vfs.filesystem import VirtualFS

from .support import events

PASSWORD = "loop-front-password"
BLOCK = 64 * 1024


@pytest.fixture(scope="module")
def stored_hash() -> str:
    """One argon2id hash for the module: each costs about half a second."""
    return hash_password(PASSWORD)


@pytest.fixture
async def frontend(config: Config, md: SqlMetadataStore, vfs: VirtualFS, audit: AuditSink,
                   stored_hash: str) -> AsyncIterator[WebdavFrontend]:
    await md.create_user("default", "alice", stored_hash, "/alice", Perm.all(), Quota())
    await md.create_user("default", "bob", stored_hash, "/bob", Perm.all(), Quota())
    dav = replace(config.webdav, addresses=("127.0.0.1",), port=free_port(), tls_port=0, block_size=BLOCK, threads=4,
                  idle_timeout=2.0)
    bridge = Bridge(asyncio.get_running_loop(), timeout=10.0)
    front = WebdavFrontend(dav, vfs, Authenticator(md, audit), bridge, None, shutdown_grace=2.0)
    await front.start()
    yield front
    await front.stop_accepting()
    bridge.close()


def loop_front(frontend: WebdavFrontend) -> LoopFront:
    assert frontend.front is not None
    return frontend.front


async def back_on_the_loop(frontend: WebdavFrontend, adopted: int) -> int:
    """Wait until cheroot has given a connection back (once it found it idle); the new count."""
    for _ in range(200):
        if loop_front(frontend).adopted > adopted:
            return loop_front(frontend).adopted
        await asyncio.sleep(0.02)
    raise AssertionError("cheroot did not give the connection back")


def auth(user: str = "alice", password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def put_bytes(path: str, body: bytes, *extra: str, user: str = "alice", password: str = PASSWORD) -> bytes:
    head = [f"PUT {path} HTTP/1.1", "Host: test", f"Authorization: {auth(user, password)}",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def request_bytes(method: str, path: str, *extra: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: test", f"Authorization: {auth()}", f"Content-Length: {len(body)}",
            *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Client:
    """One keep-alive connection: send raw bytes, read responses one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, frontend: WebdavFrontend) -> Client:
        port = next(port for kind, _, port in frontend.addresses if kind == "http")
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body (by Content-Length)."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        body = b"" if head_only else await asyncio.wait_for(self.reader.readexactly(length), 10)
        return int(lines[0].split()[1]), headers, body

    async def response_chunked(self) -> tuple[int, dict[str, str], bytes]:
        """The next response, its body by Content-Length or in chunks."""
        status, headers, _ = await self.response(head_only=True)
        if "content-length" in headers:
            return status, headers, await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 10)
        parts = []
        while True:
            size = int((await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 10)).strip(), 16)
            chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), 10)
            if not size:
                return status, headers, b"".join(parts)
            parts.append(chunk[:-2])

    async def closed(self) -> bool:
        """Whether the server closed the connection (within a few seconds)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 5) == b""
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def client(frontend: WebdavFrontend) -> AsyncIterator[Client]:
    c = await Client.connect(frontend)
    yield c
    await c.close()


async def content(vfs: VirtualFS, md: SqlMetadataStore, path: str) -> bytes:
    login = await md.load_login("default", "alice")
    assert login is not None
    s = await vfs.open_session(login, "test", "127.0.0.1")
    download = await vfs.open_read(s, path)
    try:
        return await download.read(0, 1 << 30)
    finally:
        await download.close()


class TestParse:
    """The parser accepts only plain PUTs and GETs, and leaves anything unusual to cheroot."""

    def parsed(self, data: bytes) -> Any:
        return parse(data, data.find(b"\r\n\r\n"), BLOCK)

    def test_plain_put(self) -> None:
        """A PUT with a length, a host and Basic credentials is taken, its path percent-decoded as UTF-8."""
        request = self.parsed(put_bytes("/a%20b/caf%C3%A9", b"1234"))
        assert request is not None
        assert (request.path, request.length, request.credentials) == ("/a b/café", 4, ("alice", PASSWORD))

    @pytest.mark.parametrize("extra", ["If-Match: \"x\"", "If: (<urn:x>)", "Content-Range: bytes 0-3/4",
                                       "Transfer-Encoding: chunked", "Expect: something", "Range: bytes=0-1",
                                       "X-Expected-Entity-Length: 99", "Content-Length: 4"])
    def test_headers_that_make_it_not_plain(self, extra: str) -> None:
        """Conditions, ranges, encodings, odd expectations, a second length: cheroot's."""
        assert self.parsed(put_bytes("/f", b"1234", extra)) is None

    def test_plain_get(self) -> None:
        """A GET with a host and Basic credentials, and no body, is taken."""
        request = self.parsed(request_bytes("GET", "/caf%C3%A9").replace(b"Content-Length: 0\r\n", b""))
        assert request is not None
        assert (b"GET", "/café", 0) == (request.method, request.path, request.length)

    @pytest.mark.parametrize("extra", ["Range: bytes=0-1", "If-None-Match: \"x\"", "If-Modified-Since: x",
                                       "If-Range: \"x\"", "Transfer-Encoding: chunked"])
    def test_gets_that_are_not_plain(self, extra: str) -> None:
        """A GET with a range, a condition or a body encoding is cheroot's."""
        assert self.parsed(request_bytes("GET", "/f", extra)) is None

    def test_get_with_a_body(self) -> None:
        """A GET that carries a body is cheroot's."""
        assert self.parsed(request_bytes("GET", "/f", body=b"xyz")) is None

    @pytest.mark.parametrize(("depth", "members"), [("0", False), ("1", True)])
    def test_propfind_depth_0_and_1(self, depth: str, members: bool) -> None:
        """A PROPFIND with Depth 0 or 1 and a body within max_xml_bytes is taken, a collection's path too."""
        data = request_bytes("PROPFIND", "/d/", f"Depth: {depth}", body=b"<x/>")
        request = parse(data, data.find(b"\r\n\r\n"), BLOCK, 100)
        assert request is not None
        assert (b"PROPFIND", "/d/", 4, members) == (request.method, request.path, request.length, request.members)

    @pytest.mark.parametrize("extra", [(), ("Depth: infinity",), ("Depth: 2",), ("Depth: 0", "If: (<urn:x>)")])
    def test_propfinds_left_to_cheroot(self, extra: tuple[str, ...]) -> None:
        """Without Depth 0 or 1 (the default is infinity), or with a condition: cheroot's."""
        data = request_bytes("PROPFIND", "/d/", *extra)
        assert parse(data, data.find(b"\r\n\r\n"), BLOCK, 100) is None

    def test_delete(self) -> None:
        """A DELETE with no body is taken; one with a body, or with a condition, is cheroot's."""
        plain = request_bytes("DELETE", "/f")
        request = self.parsed(plain)
        assert (b"DELETE", "/f") == (request.method, request.path)
        assert (None, None) == (self.parsed(request_bytes("DELETE", "/f", body=b"x")),
                                self.parsed(request_bytes("DELETE", "/f", 'If: (<urn:x>)')))

    @pytest.mark.parametrize(("destination", "path"), [
        ("/x", "/x"), ("http://test/a%20b/c", "/a b/c"), ("http://TEST/x/", "/x/")])
    def test_move(self, destination: str, path: str) -> None:
        """A MOVE to a path, or to a URL of this host, is taken with the decoded destination."""
        request = self.parsed(request_bytes("MOVE", "/f", f"Destination: {destination}"))
        assert (b"MOVE", path, True) == (request.method, request.destination, request.overwrite)

    @pytest.mark.parametrize("extra", [(), ("Destination: https://test/x",), ("Destination: http://other/x",),
                                       ("Destination: /x?y",), ("Destination: /a%2Fb",), ("Destination: /a/../b",),
                                       ("Destination: /",), ("Destination: /x", "Depth: 0"),
                                       ("Destination: /x", "Overwrite: maybe"), ("Destination: x",)])
    def test_moves_left_to_cheroot(self, extra: tuple[str, ...]) -> None:
        """No Destination, another scheme or host, a query, an encoded slash, '..', the root, a
        depth other than infinity, an odd Overwrite, a relative path: cheroot's."""
        assert self.parsed(request_bytes("MOVE", "/f", *extra)) is None

    def test_propfind_body_over_the_xml_limit(self) -> None:
        """A body over max_xml_bytes is cheroot's (it answers 413)."""
        data = request_bytes("PROPFIND", "/f", "Depth: 0", body=b"x" * 101)
        assert parse(data, data.find(b"\r\n\r\n"), BLOCK, 100) is None

    @pytest.mark.parametrize("data", [
        b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n",  # no credentials
        b"COPY /f HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YTpi\r\n\r\n",
        b"HEAD /f HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YTpi\r\n\r\n",
        b"PUT /f HTTP/1.0\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"PUT /f HTTP/1.1\r\nContent-Length: 0\r\nAuthorization: Basic YTpi\r\n\r\n",  # no Host
        b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",  # no credentials
        b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\nAuthorization: Basic YTpi\r\n\r\n",
        b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\nAuthorization: Basic YTpi\r\n\r\nx",
        b"PUT /f HTTP/1.1\r\nHost: t\r\n folded\r\nContent-Length: 0\r\nAuthorization: Basic YTpi\r\n\r\n",
    ])
    def test_unusual_requests(self, data: bytes) -> None:
        """Another method or version, a missing Host or credentials, a malformed header: cheroot's."""
        assert self.parsed(data) is None

    @pytest.mark.parametrize("path", ["/dir/", "/a/../b", "/a%2Fb", "/f?x=1", "http://test/f", "/%FF"])
    def test_paths_left_to_cheroot(self, path: str) -> None:
        """Collections, '..' segments, encoded slashes, queries, absolute targets, non-UTF-8: cheroot's."""
        assert self.parsed(put_bytes(path, b"1")) is None

    def test_body_over_one_hop(self) -> None:
        """A body larger than block_size streams through cheroot."""
        assert self.parsed(put_bytes("/f", b"x" * (BLOCK + 1))) is None


class TestOnTheLoop:
    async def test_put_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client, vfs: VirtualFS,
                                               md: SqlMetadataStore) -> None:
        """A plain PUT is created (201) then replaced (204) with its SHA-256 as ETag, with no hand-over."""
        body = b"on the loop"
        await client.send(put_bytes("/f.txt", body))
        status, headers, _ = await client.response()
        assert (201, f'"{hashlib.sha256(body).hexdigest()}"') == (status, headers["etag"])
        await client.send(put_bytes("/f.txt", b"again"))
        assert (await client.response())[0] == 204
        assert (2, 0) == (loop_front(frontend).answered, loop_front(frontend).handed)
        assert b"again" == await content(vfs, md, "/f.txt")

    async def test_get_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client,
                                               logs: list[dict[str, Any]]) -> None:
        """A plain GET of a small file gets its bytes with the sendfile path's headers (ETag, type,
        dates), with no hand-over; the download is audited."""
        body = b"<p>read on the loop</p>"
        await client.send(put_bytes("/page.html", body))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("GET", "/page.html"))
        status, headers, got = await client.response()
        assert (200, body, f'"{hashlib.sha256(body).hexdigest()}"', "text/html", "bytes") == (
            status, got, headers["etag"], headers["content-type"], headers["accept-ranges"])
        assert {"last-modified", "date"} <= set(headers)
        assert (2, 0) == (loop_front(frontend).answered, loop_front(frontend).handed)
        assert [("/page.html", "ok", len(body))] == [(e["path"], e["outcome"], e["bytes"])
                                                      for e in events(logs, "fs.download")]

    async def test_get_of_an_empty_file(self, client: Client) -> None:
        """An empty file is 200 with no body and the SHA-256 of nothing as ETag."""
        await client.send(put_bytes("/empty", b""))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("GET", "/empty"))
        status, headers, got = await client.response()
        assert (200, b"", f'"{hashlib.sha256(b"").hexdigest()}"') == (status, got, headers["etag"])

    async def test_propfind_depth_0_is_answered_on_the_loop(self, frontend: WebdavFrontend,
                                                            client: Client) -> None:
        """A client's stat (PROPFIND Depth 0, allprop or named properties, of a file or a
        collection) is answered on the loop with the body cheroot gives the same request."""
        await client.send(put_bytes("/s.txt", b"stat me"))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("MKCOL", "/col"))
        assert (await client.response())[0] == 201
        adopted = loop_front(frontend).adopted
        named = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop>'
                 b"<D:getcontentlength/><D:getetag/><D:resourcetype/><Z:nothing/></D:prop></D:propfind>")
        answers = []
        for path, body in (("/s.txt", b""), ("/s.txt", named), ("/col/", b""), ("/col/", named)):
            handed = loop_front(frontend).handed
            await client.send(request_bytes("PROPFIND", path, "Depth: 0", body=body))
            status, _, got = await client.response()
            assert (207, handed) == (status, loop_front(frontend).handed)
            answers.append(got)
            # The same request with a query is cheroot's (which ignores the query): the same answer.
            await client.send(request_bytes("PROPFIND", path + "?via=cheroot", "Depth: 0", body=body))
            status, _, theirs = await client.response_chunked()
            assert (207, handed + 1, got) == (status, loop_front(frontend).handed, theirs)
            adopted = await back_on_the_loop(frontend, adopted)
        assert b'<D:getetag>"' + hashlib.sha256(b"stat me").hexdigest().encode() in answers[0]
        assert b"<D:collection/>" in answers[2] and b"404 Not Found" in answers[3]

    @pytest.mark.parametrize("count", [3, RENDER_ON_LOOP_MAX + 2])
    async def test_propfind_depth_1_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client,
                                                            count: int, monkeypatch: pytest.MonkeyPatch) -> None:
        """A directory listing (PROPFIND Depth 1, allprop or named properties, with a dead property
        and a lock among its members) is answered on the loop with the body cheroot gives the same
        request; one of more than RENDER_ON_LOOP_MAX entries is rendered off the loop (here in
        pieces of about 1 KiB, so there are many), the same bytes."""
        monkeypatch.setattr(propfind, "CHUNK", 1024)
        await client.send(request_bytes("MKCOL", "/dir"))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("MKCOL", "/dir/sub"))
        assert (await client.response())[0] == 201
        for i in range(count):
            await client.send(put_bytes(f"/dir/f%20{i}.txt", f"file {i}".encode()))
            assert (await client.response())[0] == 201
        adopted = loop_front(frontend).adopted
        patch = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
                 b"<Z:colour>blue &amp; green</Z:colour></D:prop></D:set></D:propertyupdate>")
        await client.send(request_bytes("PROPPATCH", "/dir/f%200.txt", body=patch))
        assert (await client.response())[0] == 207
        adopted = await back_on_the_loop(frontend, adopted)
        lock = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                b"<D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>")
        await client.send(request_bytes("LOCK", "/dir/f%201.txt", "Timeout: Second-600", body=lock))
        assert (await client.response())[0] == 200
        adopted = await back_on_the_loop(frontend, adopted)
        named = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop>'
                 b"<D:getcontentlength/><D:getetag/><D:resourcetype/><D:lockdiscovery/><Z:colour/></D:prop>"
                 b"</D:propfind>")
        answers = []
        for body in (b"", named):
            handed = loop_front(frontend).handed
            await client.send(request_bytes("PROPFIND", "/dir/", "Depth: 1", body=body))
            status, _, got = await client.response()
            assert (207, handed) == (status, loop_front(frontend).handed)
            answers.append(got)
            await client.send(request_bytes("PROPFIND", "/dir/?via=cheroot", "Depth: 1", body=body))
            status, _, theirs = await client.response_chunked()
            # A lock's timeout is what is left of it: it may tick between the two answers.
            assert (207, handed + 1, re.sub(rb"Second-\d+", b"", got)) == (
                status, loop_front(frontend).handed, re.sub(rb"Second-\d+", b"", theirs))
            adopted = await back_on_the_loop(frontend, adopted)
        for got in answers:
            assert (count + 2, 1, 1) == (got.count(b"<D:response>"), got.count(b"blue &amp; green"),
                                         got.count(b">me</"))
            assert b"<D:href>/dir/f%201.txt</D:href>" in got and b"<D:href>/dir/sub/</D:href>" in got
        assert (2 if count > RENDER_ON_LOOP_MAX else 0) == loop_front(frontend).rendered

    async def test_delete_of_a_file_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client,
                                                            vfs: VirtualFS, md: SqlMetadataStore,
                                                            logs: list[dict[str, Any]]) -> None:
        """A DELETE of a file is 204 with no body, on the loop, and audited; the file is gone."""
        await client.send(put_bytes("/gone.txt", b"x"))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("DELETE", "/gone.txt"))
        status, headers, body = await client.response()
        assert (204, "0", b"", 0) == (status, headers["content-length"], body, loop_front(frontend).handed)
        assert ["ok"] == [e["outcome"] for e in events(logs, "fs.remove")]
        with pytest.raises(FileNotFoundError):
            await content(vfs, md, "/gone.txt")

    async def test_move_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client, vfs: VirtualFS,
                                                md: SqlMetadataStore) -> None:
        """A MOVE to a new name is 201, over a file 204 (Overwrite T, the default), with no body,
        on the loop; the Destination may be a full URL of this host or a path."""
        for name in ("/a.txt", "/b.txt"):
            await client.send(put_bytes(name, name.encode()))
            assert (await client.response())[0] == 201
        await client.send(request_bytes("MOVE", "/a.txt", "Destination: http://test/c%20d.txt"))
        created = await client.response()
        await client.send(request_bytes("MOVE", "/c%20d.txt", "Destination: /b.txt"))
        replaced = await client.response()
        assert ((201, b""), (204, b""), 0) == ((created[0], created[2]), (replaced[0], replaced[2]),
                                               loop_front(frontend).handed)
        assert b"/a.txt" == await content(vfs, md, "/b.txt")

    async def test_log_fields_follow_the_session_of_each_request(self, frontend: WebdavFrontend,
                                                                 client: Client) -> None:
        """What is logged while a request runs carries the session of that request, also when the
        next request on the connection logs in as someone else."""
        seen = []
        for user in ("alice", "alice", "bob"):
            await client.send(put_bytes(f"/{user}.txt", b"x", user=user))
            assert (await client.response())[0] in (201, 204)
            (conn,) = loop_front(frontend).connections
            seen.append(conn.context.run(structlog.contextvars.get_contextvars).get("user"))
        assert ["alice", "alice", "bob"] == seen
        assert "user" not in structlog.contextvars.get_contextvars()  # nothing leaks outside the connection

    async def test_expect_100_continue(self, frontend: WebdavFrontend, client: Client) -> None:
        """A client that waits for 100 Continue gets it, sends the body and gets 201, on the loop."""
        await client.send(put_bytes("/c.txt", b"", "Expect: 100-continue").replace(b"Length: 0", b"Length: 5"))
        status, _, _ = await client.response()
        assert status == 100
        await client.send(b"hello")
        assert (await client.response())[0] == 201
        assert loop_front(frontend).handed == 0

    async def test_wrong_password_is_one_401_and_one_audit_event(self, frontend: WebdavFrontend, client: Client,
                                                                 logs: list[dict[str, Any]]) -> None:
        """A wrong password is checked once: 401 with a challenge, one failed-login event."""
        await client.send(put_bytes("/f.txt", b"x", password="wrong"))
        status, headers, _ = await client.response()
        assert (401, True) == (status, headers["www-authenticate"].startswith("Basic"))
        assert 1 == len([e for e in events(logs, "auth.login") if e["outcome"] != "ok"])
        assert loop_front(frontend).handed == 0

    async def test_connection_close_is_honoured(self, client: Client) -> None:
        """Connection: close gets its answer, then the connection is closed."""
        await client.send(put_bytes("/f.txt", b"x", "Connection: close"))
        assert (await client.response())[0] == 201
        assert await client.closed()

    async def test_cut_off_body_writes_nothing(self, frontend: WebdavFrontend, vfs: VirtualFS,
                                               md: SqlMetadataStore, logs: list[dict[str, Any]]) -> None:
        """A client that goes away mid-body leaves the old content and no upload open; the attempt is
        audited with the bytes received."""
        first = await Client.connect(frontend)
        await first.send(put_bytes("/keep.txt", b"old"))
        assert (await first.response())[0] == 201
        await first.send(put_bytes("/keep.txt", b"n" * 1000)[:-400])
        await first.close()
        for _ in range(100):
            cut = [e for e in events(logs, "fs.upload") if e["outcome"] == "client body incomplete"]
            if cut:
                break
            await asyncio.sleep(0.02)
        assert [("/keep.txt", 600)] == [(e["path"], e["size"]) for e in cut]
        assert b"old" == await content(vfs, md, "/keep.txt")
        assert not vfs.open_transfers

    async def test_idle_connection_is_closed(self, client: Client) -> None:
        """A connection idle for idle_timeout is closed."""
        assert await asyncio.wait_for(client.closed(), 10)

    async def test_stop_closes_idle_connections(self, frontend: WebdavFrontend, client: Client) -> None:
        """Stopping closes connections that wait for a request."""
        await client.send(put_bytes("/f.txt", b"x"))
        assert (await client.response())[0] == 201
        await frontend.stop_accepting()
        assert await client.closed()


class TestHandOver:
    async def test_other_methods_go_to_cheroot_and_come_back(self, frontend: WebdavFrontend,
                                                             client: Client) -> None:
        """An authenticated OPTIONS is handed to cheroot; the next PUT on the same connection is
        the loop's again."""
        await client.send(request_bytes("OPTIONS", "/"))
        assert (await client.response())[0] == 200
        await back_on_the_loop(frontend, 0)  # once cheroot finds the connection idle
        await client.send(put_bytes("/f.txt", b"x"))
        assert (await client.response())[0] == 201
        front = loop_front(frontend)
        assert (1, 1, 1) == (front.handed, front.adopted, front.answered)

    async def test_mkcol_is_answered_on_the_loop(self, frontend: WebdavFrontend, client: Client,
                                                 logs: list[dict[str, Any]]) -> None:
        """A MKCOL of a new collection (with or without the trailing slash) is 201 with no body, on
        the loop, and audited; one that is not plain is wsgidav's: 405 where something is, 409
        with no parent."""
        for path in ("/a", "/a/b/"):
            await client.send(request_bytes("MKCOL", path))
            status, headers, body = await client.response()
            assert (201, "0", b"", 0) == (status, headers["content-length"], body, loop_front(frontend).handed)
        assert [("/a", "ok"), ("/a/b/", "ok")] == [(e["path"], e["outcome"]) for e in events(logs, "fs.mkdir")]
        await client.send(request_bytes("MKCOL", "/a"))
        assert ((await client.response_chunked())[0], loop_front(frontend).handed) == (405, 1)
        adopted = await back_on_the_loop(frontend, 0)
        await client.send(request_bytes("MKCOL", "/none/c"))
        assert ((await client.response_chunked())[0], loop_front(frontend).handed) == (409, 2)
        await back_on_the_loop(frontend, adopted)

    async def test_pipelined_requests_are_answered_in_order(self, client: Client) -> None:
        """A PUT, a GET of it and a PROPFIND sent in one write get their answers in order."""
        await client.send(put_bytes("/p.txt", b"pipelined") + request_bytes("GET", "/p.txt")
                          + request_bytes("PROPFIND", "/p.txt", "Depth: 0"))
        assert (await client.response())[0] == 201
        status, _, body = await client.response()
        assert (200, b"pipelined") == (status, body)
        assert (await client.response())[0] == 207

    async def test_many_pipelined_puts_are_answered_in_order(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                             client: Client) -> None:
        """Hundreds of small PUTs sent in one write (more than the interpreter's recursion limit
        would allow answers to nest) are each answered, in order, and each stored."""
        count = 300
        await client.send(b"".join(put_bytes(f"/pipe-{i}.txt", f"body {i}".encode()) for i in range(count)))
        statuses = [(await client.response())[0] for _ in range(count)]
        assert [201] * count == statuses
        assert [b"body 0", b"body 299"] == [await content(vfs, md, "/pipe-0.txt"),
                                            await content(vfs, md, "/pipe-299.txt")]

    @pytest.mark.parametrize(("path", "extra", "status"), [
        ("/nothing.txt", (), 404),            # missing: wsgidav answers and audits
        ("/dir", (), 403),                    # a collection: wsgidav's answer (no listing without "/")
        ("/big.bin", (), 200),                # over one hop: cheroot's sendfile path
        ("/small.txt", ("Range: bytes=1-2",), 206),
    ])
    async def test_gets_the_loop_leaves_to_cheroot(self, frontend: WebdavFrontend, client: Client,
                                                   path: str, extra: tuple[str, ...], status: int) -> None:
        """A GET of something else than a small file, or with a range, is answered by cheroot."""
        await client.send(put_bytes("/small.txt", b"small"))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("MKCOL", "/dir"))
        assert (await client.response())[0] == 201
        await asyncio.sleep(0.1)  # back on the loop
        big = bytes(range(256)) * (2 * BLOCK // 256)
        await client.send(put_bytes("/big.bin", big))
        assert (await client.response())[0] == 201
        await asyncio.sleep(0.1)
        before = loop_front(frontend).handed
        await client.send(request_bytes("GET", path, *extra))
        got_status, _, body = await client.response()
        assert (status, before + 1) == (got_status, loop_front(frontend).handed)
        if path == "/big.bin":
            assert big == body
        if status == 206:
            assert b"ma" == body

    async def test_a_large_propfind_body_is_parsed_by_cheroot(self, frontend: WebdavFrontend,
                                                              client: Client) -> None:
        """A depth-0 PROPFIND whose body is over the loop's XML limit (clients send a few hundred
        bytes) is parsed in a cheroot thread instead, and answered the same way."""
        await client.send(put_bytes("/f.txt", b"x"))
        assert (await client.response())[0] == 201
        padding = b"<!--" + b"x" * XML_ON_LOOP_MAX + b"-->"
        body = b'<D:propfind xmlns:D="DAV:">' + padding + b"<D:prop><D:getcontentlength/></D:prop></D:propfind>"
        before = loop_front(frontend).handed
        await client.send(request_bytes("PROPFIND", "/f.txt", "Depth: 0", body=body))
        status, _, answer = await client.response_chunked()
        assert (207, before + 1, True) == (status, loop_front(frontend).handed,
                                           b"<D:getcontentlength>1</D:getcontentlength>" in answer)

    @pytest.mark.parametrize(("path", "body", "status"), [
        ("/gone.txt", b"", 404),
        ("/f.txt", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><D:propfind xmlns:D="DAV:"/>', 400),
        ("/f.txt", b"<D:propfind xmlns:D='DAV:'><D:propname/></D:propfind>", 207),
        ("/f.txt", b"<not xml", 400),
    ])
    async def test_propfinds_the_loop_leaves_to_wsgidav(self, frontend: WebdavFrontend, client: Client,
                                                        path: str, body: bytes, status: int) -> None:
        """A missing target, a body with a document type or that does not parse, propname: handed
        over, and answered by wsgidav."""
        await client.send(put_bytes("/f.txt", b"x"))
        assert (await client.response())[0] == 201
        before = loop_front(frontend).handed
        await client.send(request_bytes("PROPFIND", path, "Depth: 0", body=body))
        assert (status, before + 1) == ((await client.response())[0], loop_front(frontend).handed)

    @pytest.mark.parametrize(("path", "status"), [("/nothing.txt", 404), ("/dir", 204), ("/locked.txt", 423)])
    async def test_deletes_the_loop_leaves_to_wsgidav(self, frontend: WebdavFrontend, client: Client,
                                                      path: str, status: int) -> None:
        """A DELETE of nothing, of a collection (with what is in it) or of a locked file is
        answered by wsgidav."""
        await client.send(request_bytes("MKCOL", "/dir"))
        assert (await client.response())[0] == 201
        await asyncio.sleep(0.1)
        for name in ("/dir/in.txt", "/locked.txt"):
            await client.send(put_bytes(name, b"x"))
            assert (await client.response())[0] == 201
        lock = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                b"<D:locktype><D:write/></D:locktype></D:lockinfo>")
        await client.send(request_bytes("LOCK", "/locked.txt", "Timeout: Second-60", body=lock))
        assert (await client.response())[0] == 200
        await asyncio.sleep(0.1)
        before = loop_front(frontend).handed
        await client.send(request_bytes("DELETE", path))
        assert (status, before + 1) == ((await client.response())[0], loop_front(frontend).handed)

    @pytest.mark.parametrize(("extra", "status"), [
        (("Destination: /b.txt", "Overwrite: F"), 412),       # wsgidav: the destination exists
        (("Destination: http://elsewhere/x.txt",), 502),       # another host
        (("Destination: /dir",), 204),                         # onto a collection: wsgidav replaces it
    ])
    async def test_moves_the_loop_leaves_to_wsgidav(self, frontend: WebdavFrontend, client: Client,
                                                    extra: tuple[str, ...], status: int) -> None:
        """A MOVE that would not overwrite, to another host, or onto a collection: wsgidav's."""
        for name in ("/a.txt", "/b.txt"):
            await client.send(put_bytes(name, b"x"))
            assert (await client.response())[0] == 201
        await client.send(request_bytes("MKCOL", "/dir"))
        assert (await client.response())[0] == 201
        await client.send(request_bytes("MOVE", "/a.txt", *extra))
        assert ((await client.response_chunked())[0], loop_front(frontend).handed) == (status, 1)

    async def test_declined_put_is_answered_by_wsgidav(self, frontend: WebdavFrontend, client: Client,
                                                       logs: list[dict[str, Any]]) -> None:
        """A PUT into a missing collection is declined on the loop and answered 409 by wsgidav, once."""
        await client.send(put_bytes("/missing/f.txt", b"x"))
        assert (await client.response())[0] == 409
        assert (0, 1) == (loop_front(frontend).answered, loop_front(frontend).handed)

    async def test_locked_file_is_423(self, client: Client) -> None:
        """A PUT without the lock's token is declined on the loop (even the holder's own) and refused 423
        by wsgidav, which matches lock tokens."""
        lock = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                b"<D:locktype><D:write/></D:locktype></D:lockinfo>")
        await client.send(request_bytes("LOCK", "/f.txt", "Timeout: Second-60", body=lock))
        assert (await client.response())[0] in (200, 201)
        await client.send(put_bytes("/f.txt", b"no token"))
        assert (await client.response())[0] == 423

    async def test_large_body_streams_through_cheroot(self, vfs: VirtualFS, md: SqlMetadataStore,
                                                      client: Client) -> None:
        """A body over one hop is streamed by cheroot's reader, the bytes read on the loop first."""
        body = bytes(range(256)) * (3 * BLOCK // 256)
        await client.send(put_bytes("/big.bin", body))
        assert (await client.response())[0] == 201
        assert body == await content(vfs, md, "/big.bin")

    async def test_oversized_head_is_refused_by_cheroot(self, client: Client) -> None:
        """A head longer than HEAD_MAX goes to cheroot, which answers it with an error."""
        await client.send(b"PUT /f HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * (HEAD_MAX + 10) + b"\r\n")
        status, _, _ = await client.response(head_only=True)
        assert status >= 400


class TestStartFailures:
    """A listener that cannot be opened fails the start with what failed, and leaves nothing behind."""

    def frontend(self, config: Config, vfs: VirtualFS, md: SqlMetadataStore, audit: AuditSink,
                 port: int) -> WebdavFrontend:
        dav = replace(config.webdav, addresses=("127.0.0.1",), port=port, tls_port=0, threads=2)
        return WebdavFrontend(dav, vfs, Authenticator(md, audit), Bridge(asyncio.get_running_loop(), 5.0), None,
                              shutdown_grace=1.0)

    async def test_port_in_use_is_named(self, config: Config, vfs: VirtualFS, md: SqlMetadataStore,
                                        audit: AuditSink) -> None:
        """The HTTP port taken by someone else: the error names the port; the private directory goes."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            front = self.frontend(config, vfs, md, audit, port)
            with pytest.raises(OSError) as failed:
                await front.start()
        assert (f"port {port}", "") == (failed.value.listener, front.private_dir)  # type: ignore[attr-defined]

    async def test_private_socket_failure_is_named(self, config: Config, vfs: VirtualFS, md: SqlMetadataStore,
                                                   audit: AuditSink, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """cheroot's private socket that cannot be bound (here: a path too long for a Unix socket):
        the error names that socket, not the HTTP port, and its directory is removed."""
        deep = tmp_path / ("d" * 120)

        def long_dir(prefix: str = "") -> str:
            deep.mkdir()
            return str(deep)
        monkeypatch.setattr("xferd.frontends.webdav.server.tempfile.mkdtemp", long_dir)
        front = self.frontend(config, vfs, md, audit, free_port())
        with pytest.raises(OSError) as failed:
            await front.start()
        assert (True, False) == (failed.value.listener.startswith("its private socket"),  # type: ignore[attr-defined]
                                 deep.exists())
