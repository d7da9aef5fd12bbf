"""The WebDAV listeners: cheroot serving :class:`~.app.WebdavApp` over HTTP and HTTPS.

The plain-HTTP sockets are the event loop's (:mod:`.loopfront`): it answers plain small PUTs
itself and hands every other request to a cheroot server of its own, which listens only on a
Unix socket in a private directory. The HTTPS sockets are cheroot's (TLS state cannot move
between the two).

Threads: one cheroot server per HTTPS socket and one behind the loop, each with an accept thread
and ``threads`` worker threads. A worker serves one request at a time and blocks on the bridge
while the VirtualFS works on the event loop, so a slow call stalls only its own request.

Stopping: :meth:`stop_accepting` closes the listening sockets and idle keep-alive connections and
waits (up to the daemon's grace) for requests in progress, which go on meanwhile; a request still
running after that has its connection closed, which aborts its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import structlog
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from xferd.auth import Authenticator
from xferd.config import WebdavConfig
from xferd.frontends.bridge import Bridge
from xferd.frontends.certs import TlsFiles
from xferd.frontends.webdav.app import Frontend, WebdavApp
from xferd.frontends.webdav.fastget import SendfileGateway
from xferd.frontends.webdav.handover import HandBackServer
from xferd.frontends.webdav.loopfront import LoopFront
from xferd.vfs.filesystem import VirtualFS

log = structlog.get_logger("xferd.webdav")
S = TypeVar("S", bound=wsgi.Server)


class _TlsAdapter(BuiltinSSLAdapter):
    """cheroot's adapter, limited to TLS 1.2 and newer."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(str(cert), str(key))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_COMPRESSION


@contextlib.contextmanager
def _naming(listener: str) -> Iterator[None]:
    """A failure to listen carries what failed (``port 8080``), which the daemon names."""
    try:
        yield
    except OSError as exc:
        exc.listener = listener  # type: ignore[attr-defined]
        raise


def _listen(host: str, port: int) -> socket.socket:
    if host == "::":
        return socket.create_server((host, port), family=socket.AF_INET6, dualstack_ipv6=True)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                    flags=socket.AI_PASSIVE)[0]
    return socket.create_server(sockaddr[:2], family=family)


def _bind_address(address: str) -> tuple[str, int]:
    if address in ("*", ""):
        return ("::" if socket.has_dualstack_ipv6() else "0.0.0.0", 0)
    return (address, 0)


class WebdavFrontend:
    def __init__(self, config: WebdavConfig, vfs: VirtualFS, auth: Authenticator, bridge: Bridge,
                 tls: TlsFiles | None, shutdown_grace: float) -> None:
        self.config = config
        self.shared = Frontend(config, vfs, auth, bridge)
        self.app = WebdavApp(self.shared)
        self.bridge = bridge
        self.tls = tls
        self.shutdown_grace = shutdown_grace
        self.servers: list[tuple[str, wsgi.Server]] = []  # ("https", server); at stop also ("http", behind)
        self.threads: list[threading.Thread] = []
        self.front: LoopFront | None = None
        self.behind: HandBackServer | None = None
        self.private_dir = ""

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        out = []
        if self.front is not None:
            for listener in self.front.servers:
                for sock in listener.sockets:
                    host, port = sock.getsockname()[:2]
                    out.append(("http", str(host), int(port)))
        for kind, server in self.servers:
            host, port = server.bind_addr[:2]
            out.append((kind, str(host), int(port)))
        return out

    def _cheroot(self, bind: tuple[str, int] | str, cls: type[S]) -> S:
        server = cls(bind, self.app, numthreads=self.config.threads, server_name="xferd",
                     timeout=int(max(self.config.idle_timeout, 1)), shutdown_timeout=int(self.shutdown_grace))
        server.gateway = SendfileGateway
        return server

    async def start(self) -> None:
        """Bind every configured address and port, or none."""
        try:
            if self.config.port:
                await self._start_plain()
            if self.config.tls_port and self.tls is not None:
                for address in self.config.addresses:
                    host, _ = _bind_address(address)
                    server = self._cheroot((host, self.config.tls_port), wsgi.Server)
                    server.ssl_adapter = _TlsAdapter(self.tls.cert, self.tls.key)
                    with _naming(f"port {self.config.tls_port}"):
                        server.prepare()
                    self.servers.append(("https", server))
        except BaseException:
            await self._stop_plain(0.0)
            for _, server in self.servers:
                server.stop()
            self.servers.clear()
            self._remove_private_dir()
            raise
        for kind, server in self.servers:
            self._serve(kind, server)

    async def _start_plain(self) -> None:
        """The loop's listening sockets, and the cheroot server it hands requests to."""
        self.private_dir = tempfile.mkdtemp(prefix="xferd-webdav-")  # mode 0700: nobody else connects
        behind = self._cheroot(f"{self.private_dir}/cheroot.sock", HandBackServer)
        with _naming(f"its private socket in {self.private_dir}"):
            behind.prepare()
        self.behind = behind
        self.front = LoopFront(self.shared, behind, asyncio.get_running_loop())
        for address in self.config.addresses:
            host, _ = _bind_address(address)
            with _naming(f"port {self.config.port}"):
                await self.front.listen(_listen(host, self.config.port))
        self._serve("http", behind)

    def _serve(self, kind: str, server: wsgi.Server) -> None:
        thread = threading.Thread(target=server.serve, name=f"xferd-webdav-{kind}", daemon=True)
        thread.start()
        self.threads.append(thread)

    async def _stop_plain(self, grace: float) -> None:
        if self.front is not None:
            await self.front.close(grace)
        if self.behind is not None:
            self.servers.append(("http", self.behind))  # stopped with the others
            self.behind = None

    async def stop_accepting(self) -> None:
        """Stop listening; requests in progress get up to the shutdown grace to finish."""
        await self._stop_plain(self.shutdown_grace)
        await self.bridge.run_blocking(self._stop)

    def _stop(self) -> None:
        for _, server in self.servers:
            try:
                server.stop()
            except Exception:
                log.exception("webdav.stop_failed")
        for thread in self.threads:
            thread.join(5.0)
        self._remove_private_dir()

    def _remove_private_dir(self) -> None:
        if self.private_dir:
            shutil.rmtree(self.private_dir, ignore_errors=True)
            self.private_dir = ""

    async def close_all(self) -> None:
        await self.stop_accepting()
