"""The plain-HTTP WebDAV listener, on the event loop, in front of cheroot.

Every connection of the plain listener starts here. A request this module can answer whole is
answered on the loop, where the VirtualFS lives, with no thread hand-off: today that is a plain
PUT of at most one hop (``block_size``), a plain GET of a file of at most 256 KiB, a PROPFIND of
depth 0 or 1 (a client's stat or a directory listing), the DELETE of a file, the MKCOL of a new
collection and a plain MOVE: the many-small-files cases, where cheroot's parsing, the hand-over
and the bridge cost more than the work itself.

A PUT follows :mod:`.fastput`'s rules: a ``Content-Length`` body, no conditions, ranges, encodings
or lock tokens, no ``Expect`` but ``100-continue``, authenticated Basic credentials
(:mod:`.logins`), and the VirtualFS declines any path under a lock. A GET has no body, conditions or
range, and answers with :mod:`.fastget`'s headers; the VirtualFS declines anything but a small file
the user may read (:meth:`~xferd.vfs.filesystem.VirtualFS.read_whole`). A PROPFIND has ``Depth: 0``
or ``1``, a body of at most 16 KiB that parses without a document type (or none), and asks for
``allprop`` or named properties; :mod:`.propfind` gathers the answer in one call and renders it, on
the loop for up to 128 entries and for more in a thread of the listener's own, so that a large
directory does not hold the loop; everything it leaves to wsgidav (``propname``, a missing target,
no permission) is handed over. A DELETE has no body, and the VirtualFS declines anything but a file
or link the user may delete with no lock of anyone on it
(:meth:`~xferd.vfs.filesystem.VirtualFS.remove_plain`); a MKCOL likewise has no body, and anything
but a new directory in an unlocked one is declined
(:meth:`~xferd.vfs.filesystem.VirtualFS.mkdir_plain`). A MOVE has no body, a Destination on this
host, no lock of anyone on either side, and does not replace a collection or keep an existing
destination (:meth:`~xferd.vfs.filesystem.VirtualFS.rename_plain`).

Everything else, and everything this parser is not sure of, goes to cheroot with the bytes read
so far (:meth:`LoopFront.hand_over`, :mod:`.handover`): the socket is given to one of its worker
threads, which reads those bytes first and serves the request through :class:`~.app.WebdavApp`, exactly as the
HTTPS listener does. When that request is done and the client has sent nothing more, cheroot
gives the connection back (:class:`HandBackServer`); pipelined requests stay with cheroot until
it is idle. cheroot itself listens only on a Unix socket in a private directory, which nobody
connects to.

A request handed over after a VirtualFS refusal (a lock, a missing parent, no permission) is
answered and audited by wsgidav; nothing was changed or logged here. A PUT whose upload opened
and then failed (quota, storage) is answered here, with the status wsgidav would give.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import http
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import structlog

from xferd import eager
from xferd.frontends.net import plain_ip
from xferd.frontends.webdav import fastget, fastput, propfind
from xferd.frontends.webdav.app import (
    Frontend,
    XmlRefused,
    is_apple_metadata,
    parse_xml,
    tls_required,
    xml_parser,
)
from xferd.frontends.webdav.handover import HandBackServer, primed_makefile
from xferd.frontends.webdav.logins import basic_credentials
from xferd.frontends.webdav.propfind import http_date
from xferd.frontends.webdav.provider import status_of
from xferd.vfs.session import Session

log = structlog.get_logger("xferd.webdav")

HEAD_MAX = 64 * 1024  # a longer request head goes to cheroot, which has its own limits
# A GET of a file up to this size (and block_size) is read and answered on the loop: a page-cache
# read of it costs tens of microseconds. A larger file goes to cheroot, which sends it with sendfile.
GET_ON_LOOP_MAX = 256 * 1024
METHODS = (b"PUT", b"GET", b"PROPFIND", b"DELETE", b"MKCOL", b"MOVE")  # the rest is cheroot's
NO_BODY = (b"GET", b"DELETE", b"MKCOL", b"MOVE")
# A PROPFIND body up to this size is parsed on the loop (clients send a few hundred bytes); a larger
# one, up to webdav.max_xml_bytes, is parsed in a cheroot thread, so no request holds the loop long.
XML_ON_LOOP_MAX = 16 * 1024
# A PROPFIND answer of up to this many entries is rendered on the loop (a few us each); a larger
# one in a thread of the listener's own, while the loop goes on serving others. It is rendered
# whole (750 bytes or so per entry, beside the entries themselves, which are in memory already),
# then sent: rendering part by part while the loop sends the last part makes the two threads take
# the GIL from each other, and costs 40% more time on 10,000 entries.
RENDER_ON_LOOP_MAX = 128
# The loop's own parser: lxml serialises the users of one parser, and the loop must not wait for a
# cheroot thread.
_XML_PARSER = xml_parser()
# fastput's headers for wsgidav (named as in a WSGI environ), and chunked bodies, which cheroot decodes.
NOT_PLAIN = frozenset({key[5:].replace("_", "-").lower().encode() for key in fastput.NOT_PLAIN}
                      | {b"transfer-encoding"})


class Request:
    """A parsed request head that this module may answer (see :func:`parse`)."""

    __slots__ = ("close", "continue_", "credentials", "destination", "head_end", "length", "members", "method",
                 "overwrite", "path")

    def __init__(self, path: str, length: int, credentials: tuple[str, str], close: bool, continue_: bool,
                 head_end: int, method: bytes = b"PUT", destination: str = "", overwrite: bool = True,
                 members: bool = False) -> None:
        self.method = method
        self.members = members  # PROPFIND: Depth 1
        self.destination = destination  # MOVE: the Destination's path, decoded
        self.overwrite = overwrite  # MOVE: the Overwrite header (T, the default, or F)
        self.path = path
        self.length = length
        self.credentials = credentials
        self.close = close
        self.continue_ = continue_  # the client waits for "100 Continue" before it sends the body
        self.head_end = head_end  # where the body starts in the buffer

    @property
    def end(self) -> int:
        return self.head_end + self.length


def parse(buf: bytes | bytearray, end: int, block_size: int, xml_limit: int = 0) -> Request | None:
    """The plain request (:data:`METHODS`) whose head is ``buf[:end]`` (``end`` at its blank line),
    or None when cheroot should answer. Anything unusual is cheroot's: this parser only has to be
    right about the requests it accepts. GET, DELETE, MKCOL and MOVE have no body; none has a
    condition or range; a PROPFIND has ``Depth: 0`` or ``1`` and a body of at most ``xml_limit`` bytes (its
    XML is looked at later); a MOVE's Destination is on this host (:func:`_move_target`)."""
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in METHODS or parts[2] != b"HTTP/1.1":
        return None
    method = parts[0]
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            return None
        name = name.lower()
        if name in headers or name in NOT_PLAIN:
            return None
        headers[name] = value.strip()
    length_text = headers.get(b"content-length", b"" if method == b"PUT" else b"0")
    if not length_text.isdigit() or b"host" not in headers or (method in NO_BODY and int(length_text)):
        return None
    if method == b"PROPFIND" and (headers.get(b"depth") not in (b"0", b"1") or int(length_text) > xml_limit):
        return None
    expect = headers.get(b"expect", b"").lower()
    if expect not in (b"", b"100-continue"):
        return None
    length = int(length_text)
    expected = headers.get(b"x-expected-entity-length")
    if length > block_size or (expected and expected != length_text):
        return None
    target = parts[1]
    if not target.startswith(b"/") or b"?" in target or b"#" in target or b"%2f" in target.lower():
        return None
    try:
        path = unquote_to_bytes(target).decode("utf-8")
        credentials = basic_credentials(headers.get(b"authorization", b"").decode("latin-1"))
    except UnicodeDecodeError:
        return None
    if credentials is None or (path.endswith("/") and method not in (b"PROPFIND", b"MKCOL", b"MOVE")) \
            or ".." in path.split("/"):
        return None
    destination, overwrite = "", True
    if method == b"MOVE":
        moved = _move_target(headers)
        if moved is None:
            return None
        destination, overwrite = moved
    close = headers.get(b"connection", b"").lower() == b"close"
    return Request(path, length, credentials, close, expect == b"100-continue", end + 4, method, destination,
                   overwrite, headers.get(b"depth") == b"1")


def _move_target(headers: dict[bytes, bytes]) -> tuple[str, bool] | None:
    """A plain MOVE's destination path and Overwrite flag: a Destination on this listener's host
    (plain HTTP), no query, fragment or encoded slash, a depth of infinity (or none); else None."""
    overwrite = headers.get(b"overwrite", b"T")
    if overwrite not in (b"T", b"F") or headers.get(b"depth", b"infinity") != b"infinity":
        return None
    try:
        target = urlsplit(headers.get(b"destination", b"").decode("ascii"))
        host = headers[b"host"].decode("ascii")
    except UnicodeDecodeError:
        return None
    if target.scheme not in ("", "http") or target.netloc.lower() not in ("", host.lower()) \
            or target.query or target.fragment or not target.path.startswith("/") or "%2f" in target.path.lower():
        return None
    try:
        path = unquote_to_bytes(target.path).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if ".." in path.split("/") or not path.strip("/"):
        return None
    return path, overwrite == b"T"


class LoopFront:
    """The listening sockets and connections of the plain-HTTP listener."""

    def __init__(self, shared: Frontend, cheroot_server: HandBackServer, loop: asyncio.AbstractEventLoop) -> None:
        self.shared = shared
        self.cheroot = cheroot_server
        self.loop = loop
        self.servers: list[asyncio.Server] = []
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.background: set[asyncio.Task[None]] = set()  # adoptions, audit events of cut-off requests
        # What happened to requests and connections, for tests and debugging.
        self.answered = 0  # requests answered on the loop
        self.handed = 0  # connections handed to cheroot
        self.adopted = 0  # connections taken back from it
        self.rendered = 0  # PROPFIND answers rendered off the loop
        # Renders large PROPFIND answers (a thread like cheroot's would, off the loop).
        self.renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xferd-webdav-render")
        cheroot_server.front = self

    async def listen(self, sock: socket.socket) -> None:
        self.servers.append(await self.loop.create_server(lambda: HttpConnection(self), sock=sock))

    def hand_over(self, sock: socket.socket, peer: tuple[Any, ...], prefix: bytes) -> None:
        """Give a connection to cheroot; ``prefix`` is what was read from it and not answered."""
        if self.closing:
            sock.close()
            return
        sock.settimeout(self.cheroot.timeout)
        conn = self.cheroot.ConnectionClass(self.cheroot, sock, primed_makefile(prefix))
        conn.remote_addr, conn.remote_port = str(peer[0]), int(peer[1])
        conn.ssl_env = {}
        self.cheroot.process_conn(conn)
        self.handed += 1

    def adopt(self, sock: socket.socket) -> None:
        """Take back an idle connection from cheroot (on the loop)."""
        if self.closing:
            sock.close()
            return
        self.in_background(self._adopt(sock))
        self.adopted += 1

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: HttpConnection(self), sock)
        except OSError as exc:  # the client went away meanwhile
            log.info("webdav.adopt_failed", error=str(exc))
            sock.close()

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        self.background.add(task)  # a task needs a reference to be sure to run to its end
        task.add_done_callback(self.background.discard)

    async def close(self, grace: float) -> None:
        """Stop listening, close idle connections, give requests in progress ``grace`` seconds."""
        self.closing = True
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + grace
        while True:
            for conn in list(self.connections):
                if conn.task is None:
                    conn.abort()
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self.background:
            await asyncio.wait(list(self.background), timeout=max(deadline - time.monotonic(), 1.0))
        self.renderer.shutdown(wait=False)


class HttpConnection(asyncio.Protocol):
    """One client connection while it is on the loop."""

    def __init__(self, front: LoopFront) -> None:
        self.front = front
        self.config = front.shared.config
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[Any, ...] = ("", 0)
        self.remote = ""
        self.task: asyncio.Future[None] | None = None  # the request being answered
        self.starting = False  # an answer is running at once (see _start)
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.last_active = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.eof = False
        self.pending: Request | None = None  # a plain PUT whose body is still coming
        # Requests run in the connection's own context, where the session's log fields stay bound
        # from one request to the next (binding them costs more than parsing a request).
        self.context = contextvars.Context()
        self.bound: Session | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.remote = plain_ip(str(self.peer[0]))
        transport.set_write_buffer_limits(high=0)  # pause_writing whenever a response is not yet sent
        self.front.connections.add(self)
        self.idle_timer = self.front.loop.call_later(self.config.idle_timeout, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = time.monotonic()
        if self.task is None:
            self._next()
        elif len(self.buf) > self.config.block_size + HEAD_MAX and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        # A request being answered (or handed over) gets its answer first; what is left in the
        # buffer otherwise can never be completed.
        self.eof = True
        return self.task is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:  # the client went away mid-body: nothing was opened, but it is audited
            received = len(self.buf) - self.pending.head_end
            self.front.in_background(self._audit_cut_off(self.pending, received))
            self.pending = None
        self.front.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.transport = None
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = self.front.loop.create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- requests ----------------------------------------------------------------------------------

    def _next(self, inside: bool = False) -> None:
        """Look at the buffer: answer a complete plain request, hand anything else over, or wait.
        ``inside``: called from an answer (see :meth:`_start`)."""
        if self.transport is None or self.front.closing:
            return
        request = self.pending
        if request is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > HEAD_MAX:
                    self._hand_over()
                return
            xml_limit = min(self.config.max_xml_bytes, XML_ON_LOOP_MAX)
            request = parse(self.buf, end, self.config.block_size, xml_limit)
            if request is None or not self._allowed(request):
                self._hand_over()
                return
            if len(self.buf) < request.end and request.continue_:
                self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(self.buf) < request.end:
            self.pending = request  # its body is still coming: data_received calls again
            return
        self.pending = None
        self._start(request, inside)

    def _start(self, request: Request, inside: bool) -> None:
        """Answer ``request`` at once, up to its first wait (:mod:`xferd.eager`; a small PUT on fast
        storage never waits). The next request of a pipeline, found by an answer that is itself
        running at once, goes to a Task instead, so answers never nest deeper than that.
        ``inside``: called from an answer, which runs in the connection's context already."""
        if self.starting:
            self.task = self.front.loop.create_task(self._answer(request), context=self.context)
            return
        self.starting = True
        try:
            answer = eager.start(self.front.loop, self._answer(request), self.context, entered=inside)
        finally:
            self.starting = False
        if not answer.done():
            self.task = answer

    def _allowed(self, request: Request) -> bool:
        """What WebdavApp refuses before a PUT (plain HTTP from afar, Finder files when refused) it
        also answers and audits; those requests go to it."""
        if tls_required(self.config, self.remote):
            return False
        return not (self.config.apple_files == "refuse" and is_apple_metadata(request.path))

    async def _answer(self, request: Request) -> None:
        body = bytes(self.buf[request.head_end:request.end])
        try:
            handled = await (self._put(request, body) if request.method == b"PUT" else
                             self._get(request) if request.method == b"GET" else
                             self._delete(request) if request.method == b"DELETE" else
                             self._mkcol(request) if request.method == b"MKCOL" else
                             self._move(request) if request.method == b"MOVE" else
                             self._propfind(request, body))
        except Exception:
            log.exception("internal_error", op=f"webdav.{request.method.decode().lower()}", path=request.path)
            self._respond(500, b"Internal server error.\n")
            request.close, handled = True, True
        self.task = None
        if not handled:  # declined, nothing changed: wsgidav answers (and audits)
            self._hand_over()
            return
        del self.buf[:request.end]
        self.last_active = time.monotonic()
        if self.transport is None:
            return
        if request.close:
            self.transport.close()
            return
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.buf:
            self._next(inside=True)
        if self.eof and self.task is None:
            self.transport.close()

    async def _login(self, request: Request) -> Session | None:
        """The request's session, bound to the log context; None after answering 401."""
        session = await self.front.shared.logins.login(request.credentials, self.remote)
        if session is None:
            self._respond(401, b"Authentication required.\n",
                          ("WWW-Authenticate", f'Basic realm="{self.config.realm}", charset="UTF-8"'))
            return None
        if session is not self.bound:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**session.fields)
            self.bound = session
        return session

    async def _get(self, request: Request) -> bool:
        """Answer the GET of a small file; False when it is not one (a directory, a larger file,
        a refusal), to be answered by wsgidav. The headers are those of the sendfile path
        (:mod:`.fastget`)."""
        session = await self._login(request)
        if session is None:
            return True
        try:
            found = await self.front.shared.vfs.read_whole(session, request.path,
                                                           min(self.config.block_size, GET_ON_LOOP_MAX))
        except OSError as exc:  # the file opened and could not be read: audited
            self._respond(status_of(exc), f"{exc.strerror or exc}\n".encode())
            return True
        if found is None:
            return False
        inode, data, etag = found
        self.front.answered += 1
        self._answer_with("200 OK", [*fastget.file_headers(request.path, len(data), inode, etag),
                                     ("Date", http_date(time.time()))], data)
        return True

    async def _delete(self, request: Request) -> bool:
        """The DELETE of a file or link: 204; declined (a collection, a lock, a refusal, nothing
        there) for wsgidav."""
        vfs = self.front.shared.vfs

        async def change(s: Session) -> str | None:
            return "204 No Content" if await vfs.remove_plain(s, request.path) else None
        return await self._change(request, change)

    async def _mkcol(self, request: Request) -> bool:
        """The MKCOL of a new collection: 201 with no body, as nginx and Apache answer; declined
        (something there, no parent, a lock, a refusal) for wsgidav."""
        vfs = self.front.shared.vfs

        async def change(s: Session) -> str | None:
            return "201 Created" if await vfs.mkdir_plain(s, request.path) else None
        return await self._change(request, change)

    async def _move(self, request: Request) -> bool:
        """A plain MOVE: 201 when the destination is new, 204 when a file was replaced; declined
        (see VirtualFS.rename_plain) for wsgidav."""
        vfs = self.front.shared.vfs

        async def change(s: Session) -> str | None:
            replaced = await vfs.rename_plain(s, request.path, request.destination, request.overwrite)
            return None if replaced is None else "204 No Content" if replaced else "201 Created"
        return await self._change(request, change)

    async def _change(self, request: Request, change: Callable[[Session], Awaitable[str | None]]) -> bool:
        """Answer a change the VirtualFS makes in one call with its status and no body; False when
        it declined (nothing changed, nothing logged)."""
        session = await self._login(request)
        if session is None:
            return True
        try:
            status = await change(session)
        except OSError as exc:  # checked, then refused or failed: audited
            self._respond(status_of(exc), f"{exc.strerror or exc}\n".encode())
            return True
        if status is None:
            return False
        self.front.answered += 1
        self._answer_with(status, [("Content-Length", "0"), ("Date", http_date(time.time()))])
        return True

    async def _propfind(self, request: Request, body: bytes) -> bool:
        """Answer a PROPFIND of depth 0 or 1 as :mod:`.propfind` does; False for
        anything it leaves to wsgidav (an XML body with a document type or that does not parse,
        ``propname``, a missing target, no permission), which answers and audits it."""
        try:
            root = parse_xml(body, _XML_PARSER)
        except XmlRefused:
            return False
        wanted = propfind.wanted(root)
        if wanted is None:
            return False
        session = await self._login(request)
        if session is None:
            return True
        try:
            listing = await propfind.Listing.load(self.front.shared.vfs, session, request.path, request.members,
                                                  wanted)
        except OSError:
            return False
        if len(listing.entries) > RENDER_ON_LOOP_MAX:
            self.front.rendered += 1
            answer = await asyncio.get_running_loop().run_in_executor(self.front.renderer, b"".join, listing.render())
        else:
            answer = b"".join(listing.render())
        self.front.answered += 1
        self._answer_with("207 Multi-Status", [
            ("Content-Type", 'application/xml; charset="utf-8"'), ("Content-Length", str(len(answer))),
            ("Date", http_date(time.time()))], answer)
        return True

    async def _put(self, request: Request, body: bytes) -> bool:
        """Answer the PUT; False when the VirtualFS declined it before anything changed."""
        shared = self.front.shared
        session = await self._login(request)
        if session is None:
            return True
        try:
            done = await shared.vfs.write_whole(session, request.path, body)
        except OSError as exc:  # the upload opened and failed: it is audited
            self._respond(status_of(exc), f"{exc.strerror or exc}\n".encode())
            return True
        if done is None:
            return False
        self.front.answered += 1
        self._answer_with(*fastput.stored(*done))
        return True

    async def _audit_cut_off(self, request: Request, received: int) -> None:
        shared = self.front.shared
        session = await shared.logins.login(request.credentials, self.remote)
        if session is not None:
            shared.vfs.audit.emit(session.log, session.fields, "fs.upload", request.path, "client body incomplete",
                                  True, size=received)

    def _respond(self, status: int, body: bytes, *extra: tuple[str, str]) -> None:
        """A plain-text answer."""
        self._answer_with(f"{status} {http.HTTPStatus(status).phrase}",
                          [("Content-Length", str(len(body))), ("Content-Type", "text/plain; charset=utf-8"),
                           ("Date", http_date(time.time())), *extra], body)

    def _answer_with(self, status: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self._send(f"HTTP/1.1 {status}\r\n{head}Server: xferd\r\n\r\n".encode() + body)

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _hand_over(self) -> None:
        """Give the connection, and what was read of it, to cheroot (once the last response is sent)."""
        if self.transport is not None:
            self.task = self.front.loop.create_task(self._give())

    async def _give(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.pause_reading()
        if transport.get_write_buffer_size():
            assert self.drained is not None
            await self.drained
            if self.transport is None:
                return
        try:
            handed = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        except OSError as exc:
            log.warning("webdav.hand_over_failed", error=str(exc))
            transport.abort()
            return
        prefix = bytes(self.buf)
        self.buf.clear()
        self.pending = None
        transport.abort()  # closes the loop's descriptor only: the connection lives on in ``handed``
        try:
            self.front.hand_over(handed, self.peer, prefix)
        except Exception:
            log.exception("webdav.hand_over_failed")
            handed.close()

    def _idle_check(self) -> None:
        if self.transport is None:
            return
        idle = time.monotonic() - self.last_active
        if self.task is None and idle >= self.config.idle_timeout:
            self.transport.close()
            return
        self.idle_timer = self.front.loop.call_later(max(self.config.idle_timeout - idle, 1.0), self._idle_check)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
