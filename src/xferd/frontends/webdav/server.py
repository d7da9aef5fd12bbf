"""The WebDAV listeners: cheroot serving :class:`~.app.WebdavApp` over HTTP and HTTPS.

Threads: one cheroot server per listening socket, each with an accept thread and ``threads``
worker threads. A worker serves one request at a time and blocks on the bridge while the
VirtualFS works on the event loop, so a slow call stalls only its own request.

Stopping: :meth:`stop_accepting` closes the listening sockets and idle keep-alive connections and
waits (up to the daemon's grace) for requests in progress, which go on meanwhile; a request still
running after that has its connection closed, which aborts its upload.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import structlog
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from xferd.auth import Authenticator
from xferd.config import WebdavConfig
from xferd.frontends.bridge import Bridge
from xferd.frontends.certs import TlsFiles
from xferd.frontends.webdav.app import Frontend, WebdavApp
from xferd.frontends.webdav.fastget import SendfileGateway
from xferd.vfs.filesystem import VirtualFS

log = structlog.get_logger("xferd.webdav")


class _TlsAdapter(BuiltinSSLAdapter):
    """cheroot's adapter, limited to TLS 1.2 and newer."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(str(cert), str(key))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_COMPRESSION


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
        self.servers: list[tuple[str, wsgi.Server]] = []  # ("http" | "https", server)
        self.threads: list[threading.Thread] = []

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        out = []
        for kind, server in self.servers:
            host, port = server.bind_addr[:2]
            out.append((kind, str(host), int(port)))
        return out

    async def start(self) -> None:
        """Bind every configured address and port, or none."""
        ports = []
        if self.config.port:
            ports.append(("http", self.config.port))
        if self.config.tls_port and self.tls is not None:
            ports.append(("https", self.config.tls_port))
        try:
            for address in self.config.addresses:
                host, _ = _bind_address(address)
                for kind, port in ports:
                    server = wsgi.Server((host, port), self.app, numthreads=self.config.threads,
                                         server_name="xferd", timeout=int(max(self.config.idle_timeout, 1)),
                                         shutdown_timeout=int(self.shutdown_grace))
                    server.gateway = SendfileGateway
                    if kind == "https":
                        assert self.tls is not None
                        server.ssl_adapter = _TlsAdapter(self.tls.cert, self.tls.key)
                    try:
                        server.prepare()
                    except OSError as exc:
                        exc.port = port  # type: ignore[attr-defined]  # the daemon names the port
                        raise
                    self.servers.append((kind, server))
        except BaseException:
            for _, server in self.servers:
                server.stop()
            self.servers.clear()
            raise
        for kind, server in self.servers:
            thread = threading.Thread(target=server.serve, name=f"xferd-webdav-{kind}", daemon=True)
            thread.start()
            self.threads.append(thread)

    async def stop_accepting(self) -> None:
        """Stop listening; requests in progress get up to the shutdown grace to finish."""
        await self.bridge.run_blocking(self._stop)

    def _stop(self) -> None:
        for _, server in self.servers:
            try:
                server.stop()
            except Exception:
                log.exception("webdav.stop_failed")
        for thread in self.threads:
            thread.join(5.0)

    async def close_all(self) -> None:
        await self.stop_accepting()
