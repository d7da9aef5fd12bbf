"""The FTP frontend: listeners for explicit FTPS (the FTP port) and implicit FTPS (its own port),
served by pyftpdlib's ``ThreadedFTPServer`` inside the daemon.

Threads, and who does what:

- one *accept* thread polls every listening socket (one pyftpdlib IOLoop for all of them) and
  starts a thread per connection, as ``ThreadedFTPServer`` does;
- each *connection* thread runs that connection's control and data channels and blocks on the
  bridge while the VirtualFS works on the event loop; a slow VirtualFS call stalls only its own
  session (pyftpdlib's single-loop server froze every session for 4 s when one call stalled);
- the event loop calls :meth:`FtpFrontend.start`, :meth:`stop_accepting` and :meth:`close_all`;
  the blocking parts of stopping run in the bridge's executor.

Limits are counted here, across all listeners: connections in total and per client address,
and sessions per user.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from typing import Any

import structlog
from OpenSSL import SSL
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from xferd.auth import Authenticator
from xferd.config import FtpConfig
from xferd.frontends.bridge import Bridge
from xferd.frontends.ftp.commands import FtpHandler
from xferd.vfs.filesystem import VirtualFS

log = structlog.get_logger("xferd.ftp")

ACCEPT_POLL_SECONDS = 0.25
THREAD_JOIN_SECONDS = 5.0


class ConnectionLimits:
    """Counts shared by every connection thread, hence the lock."""

    def __init__(self, config: FtpConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.total = 0
        self.per_address: Counter[str] = Counter()
        self.per_user: Counter[tuple[str, str]] = Counter()

    def connect(self, address: str) -> bool:
        with self._lock:
            if (self.total >= self.config.max_connections
                    or self.per_address[address] >= self.config.max_connections_per_address):
                return False
            self.total += 1
            self.per_address[address] += 1
            return True

    def disconnect(self, address: str) -> None:
        with self._lock:
            self.total -= 1
            self.per_address[address] -= 1
            if self.per_address[address] <= 0:
                del self.per_address[address]

    def login(self, user: tuple[str, str]) -> bool:
        with self._lock:
            if self.per_user[user] >= self.config.max_connections_per_user:
                return False
            self.per_user[user] += 1
            return True

    def logout(self, user: tuple[str, str]) -> None:
        with self._lock:
            self.per_user[user] -= 1
            if self.per_user[user] <= 0:
                del self.per_user[user]


class _Listener(ThreadedFTPServer):  # type: ignore[misc]  # pyftpdlib is untyped
    def __init__(self, sock: socket.socket, handler: type[FtpHandler], ioloop: Any) -> None:
        # ThreadedFTPServer keeps its stop event and lock on the class, shared by every instance
        # in the process; each listener gets its own.
        self._exit = threading.Event()
        self._lock = threading.Lock()
        super().__init__(sock, handler, ioloop=ioloop, backlog=128)
        self.max_cons = 0  # the frontend's limits apply across listeners (ConnectionLimits)

    def _start_task(self, *args: Any, **kwargs: Any) -> threading.Thread:
        # Daemon threads: a session that outlives shutdown's join must not keep the process alive.
        return threading.Thread(*args, daemon=True, **kwargs)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)


def _bind(address: str, port: int) -> socket.socket:
    try:
        return _create_server(address, port)
    except OSError as exc:
        exc.port = port  # type: ignore[attr-defined]  # the daemon names the port in its message
        raise


def _create_server(address: str, port: int) -> socket.socket:
    if address in ("*", ""):
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128)
        return socket.create_server(("", port), backlog=128)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.create_server((address, port), family=family, backlog=128)


class FtpFrontend:
    def __init__(self, config: FtpConfig, vfs: VirtualFS, auth: Authenticator, bridge: Bridge,
                 ssl_context: SSL.Context) -> None:
        self.config = config
        self.vfs = vfs
        self.auth = auth
        self.bridge = bridge
        self.limits = ConnectionLimits(config)
        self.masquerade = [(net, ipaddress.ip_address(addr)) for net, addr in config.masquerade_map]
        # pyftpdlib configures handlers through class attributes: one subclass per frontend and mode.
        attrs = {"frontend": self, "ssl_context": ssl_context}
        self.explicit_handler = type("ExplicitFtpHandler", (FtpHandler,), {**attrs, "implicit": False})
        self.implicit_handler = type("ImplicitFtpHandler", (FtpHandler,), {**attrs, "implicit": True})
        self.ioloop = IOLoop()
        self.listeners: list[tuple[str, _Listener]] = []  # ("ftp" | "ftps", listener)
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """(protocol, host, port) of each listener: "ftp" (explicit TLS) or "ftps" (implicit TLS)."""
        return [(kind, *listener.address) for kind, listener in self.listeners]

    async def start(self) -> None:
        """Bind every configured address and port, or none: a failure closes what was bound."""
        ports = [("ftp", self.config.port, self.explicit_handler)]
        if self.config.implicit_tls_port:
            ports.append(("ftps", self.config.implicit_tls_port, self.implicit_handler))
        try:
            for address in self.config.addresses:
                for kind, port, handler in ports:
                    self.listeners.append((kind, _Listener(_bind(address, port), handler, self.ioloop)))
        except BaseException:
            self._close_listeners()
            raise
        self._accept_thread = threading.Thread(target=self._accept_loop, name="xferd-ftp-accept", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        poll, scheduled = self.ioloop.poll, self.ioloop.sched.poll
        while not self._stopping.is_set():
            try:
                poll(ACCEPT_POLL_SECONDS)
                scheduled()
            except Exception:
                log.exception("ftp.accept_loop_error")
        self._close_listeners()

    def _close_listeners(self) -> None:
        for _, listener in self.listeners:
            listener.close()

    async def stop_accepting(self) -> None:
        """Close the listening sockets; established sessions go on (transfers may finish)."""
        self._stopping.set()
        if self._accept_thread is not None:
            await self.bridge.run_blocking(self._accept_thread.join, THREAD_JOIN_SECONDS)
        else:
            self._close_listeners()

    async def close_all(self) -> None:
        """End every session: each connection thread closes its channels, which aborts its open uploads."""
        await self.bridge.run_blocking(self._close_sessions)

    def _close_sessions(self) -> None:
        for _, listener in self.listeners:
            listener._exit.set()
        for _, listener in self.listeners:
            with listener._lock:
                tasks, listener._active_tasks = list(listener._active_tasks), []
            for task in tasks:
                task.join(THREAD_JOIN_SECONDS)
                if task.is_alive():
                    log.warning("ftp.session_thread_still_running", thread=task.name)
        self.ioloop.close()
