"""The FTP control connection: greeting, limits, TLS policy, login, data-connection policy, audit.

This is pyftpdlib's ``TLS_FTPHandler`` with xferd's rules; the file commands are added in
:mod:`xferd.frontends.ftp.commands`. One instance per connection, in that connection's thread.

- **Limits**: connections overall and per address are counted when the connection arrives
  (``421`` and close), sessions per user at login (``421``); idle and data timeouts come from the
  config (``421`` too, pyftpdlib's reply).
- **TLS**: explicit (``AUTH TLS``) on the FTP port, implicit on its own port (the handshake comes
  before the greeting). Where TLS is required, ``USER`` before ``AUTH`` gets ``530`` and is
  audited (the password is never sent in the clear), and a data connection without ``PROT P``
  gets ``521``.
- **Login** goes through the shared :class:`~xferd.auth.Authenticator` (audited there) and opens a
  VirtualFS session, in one bridge hop. ``HOST`` (RFC 7151) picks the tenant of a configured
  virtual host; ``user@tenant`` works as over SFTP.
- **Data connections** go only to and come only from the client's own address (no FTP bounce);
  active mode can be switched off.
"""

from __future__ import annotations

import errno
import ipaddress
import select
from typing import Any

import structlog
from pyftpdlib.handlers import TLS_FTPHandler

from xferd import __version__
from xferd.auth import Authenticator
from xferd.frontends.ftp.dtp import ActiveConnector, PassiveListener, TlsDataChannel
from xferd.frontends.ftp.filesystem import VfsFilesystem
from xferd.frontends.net import is_loopback, plain_ip
from xferd.vfs import paths
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.session import Session

log = structlog.get_logger("xferd.ftp")

# Long enough for any valid path plus the command; longer lines are refused and discarded.
MAX_LINE_BYTES = paths.MAX_PATH_BYTES + 512
REPLY_CODES = {errno.EDQUOT: 552, errno.ENOSPC: 452, errno.EIO: 451, errno.ENAMETOOLONG: 553, errno.EILSEQ: 553}


class _GrantsLiveInTheVfs:
    """pyftpdlib asks its authorizer before each command; xferd's VirtualFS decides instead."""

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return True

    def get_perms(self, username: str) -> str:
        return "elradfmwMT"

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


async def _login(auth: Authenticator, vfs: VirtualFS, name: str, password: str, protocol: str,
                 remote: str) -> Session | None:
    login = await auth.password(name, password, protocol, remote)
    return None if login is None else await vfs.open_session(login, protocol, remote)


class SessionHandler(TLS_FTPHandler):  # type: ignore[misc]  # pyftpdlib is untyped
    frontend: Any = None  # the FtpFrontend; set on the per-frontend subclass
    implicit = False
    authorizer = _GrantsLiveInTheVfs()
    dtp_handler = TlsDataChannel
    passive_dtp = PassiveListener
    active_dtp = ActiveConnector
    abstracted_fs = VfsFilesystem
    use_sendfile = True  # for plain binary downloads of local blobs (DataChannel.use_sendfile)
    auth_failed_timeout = 1  # seconds before a failed login is answered (slows guessing)
    # pyftpdlib's own state, typed for the places this class touches it
    _in_buffer: list[bytes]
    _in_buffer_len: int
    _dtp_acceptor: Any
    _in_dtp_queue: Any
    _out_dtp_queue: Any
    _restart_position: int

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self.config = self.frontend.config
        self.vfs: VirtualFS = self.frontend.vfs
        self.bridge = self.frontend.bridge
        self.timeout = self.config.idle_timeout
        self.session: Session | None = None
        self.tls_required = False
        self._admitted = False
        self._user_key: tuple[str, str] | None = None
        self._host_tenant: str | None = None
        self._greeted = False
        self._discarding = False
        self._armed_on: Any = None
        super().__init__(conn, server, ioloop)
        self.banner = self.config.banner or f"xferd {__version__} ready."
        self.remote = plain_ip(self.remote_ip) if self.remote_ip else "?"

    @property
    def protocol(self) -> str:
        return "ftps" if self._ssl_established else "ftp"

    plain_ip = staticmethod(plain_ip)

    # -- arrival -----------------------------------------------------------------------------------

    def handle(self) -> None:
        """Runs when the connection is accepted, before it gets its own thread."""
        mode = self.config.require_tls
        self.tls_required = mode == "always" or (mode == "auto" and not is_loopback(self.socket.getsockname()[0]))
        if not self.frontend.limits.connect(self.remote):
            log.warning("ftp.too_many_connections", remote=self.remote)
            if not self.implicit:
                self.respond("421 Too many connections; try again later.")
            self.close_when_done()
            return
        self._admitted = True
        self.on_connect()
        if self.implicit:
            self.secure_connection(self.ssl_context)  # the greeting follows the handshake
        else:
            self._greet()

    def handle_ssl_established(self) -> None:
        if self.implicit and not self._greeted:
            self._pbsz = self._prot = True  # implicit FTPS protects data connections unless told otherwise
            self._greet()

    def _greet(self) -> None:
        self._greeted = True
        lines = self.banner.splitlines() or ["ready."]
        for line in lines[:-1]:
            self.push(f"220-{line}\r\n")
        self.respond(f"220 {lines[-1]}")

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        super().add_channel(map, events)
        # pyftpdlib arms the idle timer on the accepting thread's loop, then moves the connection
        # to a thread of its own: re-arm it there, or it would fire on (and race with) the wrong thread.
        idler = getattr(self, "_idler", None)
        if idler is not None and not idler.cancelled and self._armed_on is not self.ioloop:
            idler.cancel()
            self._idler = self.ioloop.call_later(self.timeout, self.handle_timeout, _errback=self.handle_error)
            self._armed_on = self.ioloop

    # -- reading commands --------------------------------------------------------------------------

    def collect_incoming_data(self, data: bytes) -> None:
        if self._discarding:
            return
        self._in_buffer.append(data)
        self._in_buffer_len += len(data)
        if self._in_buffer_len > MAX_LINE_BYTES:
            self._in_buffer, self._in_buffer_len, self._discarding = [], 0, True
            self.respond("500 Command too long.")
            self.audit_bad_request("E2BIG", f"command line longer than {MAX_LINE_BYTES} bytes")

    def found_terminator(self) -> None:
        if self._discarding:  # the tail of a line already refused
            self._in_buffer, self._in_buffer_len, self._discarding = [], 0, False
            return
        super().found_terminator()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        full = f"SITE {arg.split(' ')[0].upper()}" if cmd == "SITE" and arg else cmd
        if full and full not in self.proto_cmds and full[-4:] not in ("ABOR", "STAT", "QUIT"):
            self.audit_bad_request("EOPNOTSUPP", f"unknown command {full[:40]!r}")
        super().pre_process_command(line, cmd, arg)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if cmd in ("PASV", "EPSV", "PORT", "EPRT") and self.tls_required and not self._prot:
            self.respond("521 Data connections must be protected: send PBSZ 0 and PROT P.")
            return
        super().process_command(cmd, *args, **kwargs)

    # -- login -------------------------------------------------------------------------------------

    def ftp_HOST(self, line: str) -> None:
        """RFC 7151: the virtual host, sent before USER; a configured host selects its tenant."""
        if self.authenticated or self.username:
            self.respond("503 HOST must come before USER.")
            return
        tenants = self.config.host_tenants
        if tenants:
            tenant = tenants.get(line.strip().strip("[]").lower())
            if tenant is None:
                self.respond("504 Unknown host.")
                return
            self._host_tenant = tenant
        self.respond("220 Host accepted.")

    def ftp_USER(self, line: str) -> None:
        if self.tls_required and not self._ssl_established:
            self.respond("530 TLS is required: send AUTH TLS first, or use the implicit TLS port.")
            self.bridge.call_soon(self.frontend.auth.record, self._login_name(line), "tls_required", "password",
                                  self.protocol, self.remote)
            return
        super().ftp_USER(line)

    def _login_name(self, username: str) -> str:
        return f"{username}@{self._host_tenant}" if self._host_tenant and "@" not in username else username

    def ftp_PASS(self, line: str) -> None:
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        try:
            session = self.bridge.call(_login, self.frontend.auth, self.vfs, self._login_name(self.username), line,
                                       self.protocol, self.remote)
        except OSError as exc:
            self.respond(self.reply_for(exc))
            return
        if session is None:
            self.handle_auth_failed("", "")
            return
        key = (session.tenant.name, session.user.name)
        if not self.frontend.limits.login(key):
            session.log.warning("ftp.too_many_sessions")
            self.respond("421 Too many sessions for this user.")
            self.close_when_done()
            return
        self._user_key, self.session = key, session
        self.handle_auth_success("/", "", "Logged in.")
        session.log.info("ftp.session_started", tls=self._ssl_established)

    def flush_account(self) -> None:
        """REIN, or USER again: back to before the login."""
        self._release_user()
        super().flush_account()
        if self.implicit:
            self._pbsz = self._prot = True

    def close(self) -> None:
        if not self._closed:
            self._release_user()
            if self._admitted:
                self._admitted = False
                self.frontend.limits.disconnect(self.remote)
        super().close()

    def _release_user(self) -> None:
        if self._user_key is not None:
            self.frontend.limits.logout(self._user_key)
            self._user_key = None
        if self.session is not None:
            self.session.log.info("ftp.session_ended")
            self.session = None

    # -- data connections --------------------------------------------------------------------------

    def _make_epasv(self, extmode: bool = False) -> None:
        if not extmode and ":" in plain_ip(self.socket.getsockname()[0]):
            self.respond("425 PASV cannot name an IPv6 address; use EPSV.")
            return
        super()._make_epasv(extmode)
        if self._dtp_acceptor is not None and self._dtp_acceptor.failed:
            self._dtp_acceptor.close()
            self._dtp_acceptor = None

    def _make_eport(self, ip: str, port: int) -> None:
        if not self.config.allow_active:
            self.audit_bad_request("EACCES", "active mode (PORT/EPRT) is disabled")
            self.respond("502 Active mode is disabled; use PASV or EPSV.")
            return
        if not _same_host(ip, self.remote):
            self.audit_bad_request("EACCES", f"PORT to {ip}:{port}, not the client's own address")
            self.respond("501 Data connections go only to the client's own address.")
            return
        super()._make_eport(ip, port)

    def advertised_address(self, local_ip: str) -> str:
        """The address PASV names: the first configured network the client is in decides, then
        ``masquerade_address``, then the address the client connected to."""
        client = ipaddress.ip_address(self.remote)
        for network, address in self.frontend.masquerade:
            if client.version == network.version and client in network:
                return str(address)
        return str(self.config.masquerade_address or plain_ip(local_ip))

    def refuse_pending_transfer(self, reply: str) -> bool:
        """Fail the transfer waiting for its data connection (if any) with ``reply``."""
        queued_in, queued_out = self._in_dtp_queue, self._out_dtp_queue
        if queued_in is None and queued_out is None:
            return False
        self._in_dtp_queue = self._out_dtp_queue = None
        file_obj = queued_in[0] if queued_in is not None else queued_out[2]
        if file_obj is not None:
            file_obj.close()
        self.respond(reply)
        return True

    def control_alive(self) -> bool:
        """Whether the client still holds the control connection (no hang-up seen on it)."""
        if self._closed or not self._fileno:
            return False
        poller = select.poll()
        poller.register(self._fileno, select.POLLRDHUP)
        return not poller.poll(0)

    # -- replies and records -----------------------------------------------------------------------

    @staticmethod
    def reply_for(exc: OSError, store: bool = False) -> str:
        """The one place VirtualFS errors become FTP replies: 550 unless a better code exists."""
        code = REPLY_CODES.get(exc.errno or 0, 553 if store and exc.errno == errno.EINVAL else 550)
        return f"{code} {exc.strerror or exc}."

    def audit_bad_request(self, outcome: str, error: str) -> None:
        if self.session is not None:
            logger, fields = self.session.log, self.session.fields
        else:
            fields = {"tenant": self._host_tenant or "", "user": self.username, "protocol": self.protocol,
                      "remote": self.remote}
            logger = structlog.get_logger("xferd.audit").bind(**fields)
        self.bridge.call_soon(self.vfs.audit.emit, logger, fields, "ftp.bad_request", "", outcome, True, error=error)

    def log_warning(self, event: str, **fields: Any) -> None:
        (self.session.log if self.session else log.bind(remote=self.remote)).warning(event, **fields)


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(plain_ip(a)) == ipaddress.ip_address(plain_ip(b))
    except ValueError:
        return False
