"""The SFTP frontend: SSH listeners, logins through the shared auth module, one SFTP session per channel.

The ``sftp`` subsystem is served, and, over exec, only the checksum commands rclone uses to compare
files (:mod:`.commands`): no shell, no other command, no forwarding. A connection that sends
nothing for ``sftp.idle_timeout`` seconds is closed; a user may hold ``sftp.max_sessions_per_user``
connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh
import structlog
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

from xferd import __version__
from xferd.auth import Authenticator
from xferd.config import SftpConfig
from xferd.frontends.sftp.adapter import VfsSFTPServer
from xferd.frontends.sftp.commands import is_checksum_command, run_checksum_command
from xferd.frontends.sftp.handler import XferdSFTPHandler
from xferd.metadata.models import Login
from xferd.vfs.filesystem import VirtualFS

log = structlog.get_logger("xferd.sftp")

# (file name, algorithm, key size): ed25519 for current clients, RSA for old ones.
HOST_KEY_TYPES = (("ssh_host_ed25519_key", "ssh-ed25519", 0), ("ssh_host_rsa_key", "ssh-rsa", 3072))


def load_host_keys(config: SftpConfig, key_dir: Path) -> list[asyncssh.SSHKey]:
    """The configured host keys, or ed25519 and RSA keys generated once in ``key_dir``."""
    if config.host_keys:
        return [asyncssh.read_private_key(path) for path in config.host_keys]
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = []
    for filename, alg, bits in HOST_KEY_TYPES:
        path = key_dir / filename
        if path.exists():
            keys.append(asyncssh.read_private_key(str(path)))
            continue
        key = asyncssh.generate_private_key(alg, key_size=bits) if bits else asyncssh.generate_private_key(alg)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)
        path.with_name(filename + ".pub").write_bytes(key.export_public_key())
        log.info("sftp.host_key_generated", path=str(path), algorithm=alg,
                 fingerprint=key.get_fingerprint("sha256"))
        keys.append(key)
    return keys


class Connection(asyncssh.SSHServer):
    """One SSH connection: its login and its activity clock."""

    def __init__(self, frontend: SftpFrontend) -> None:
        self.frontend = frontend
        self.conn: asyncssh.SSHServerConnection | None = None
        self.remote = "?"
        self.login: Login | None = None
        self.last_activity = time.monotonic()
        self.counted: tuple[str, str] | None = None
        self.username = ""
        self.key_login: Login | None = None
        self.offered_key = False

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else "?"
        self.frontend.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.frontend.connections.discard(self)
        if self.counted is None and self.offered_key and self.login is None:
            self.frontend.auth.record(self.username, "bad_credentials", "publickey", "sftp", self.remote)
        if self.counted is not None:
            self.frontend.per_user[self.counted] -= 1
            self.counted = None

    def begin_auth(self, username: str) -> bool:
        self.username = username
        if self.frontend.config.banner and self.conn is not None:
            self.conn.send_auth_banner(self.frontend.config.banner.rstrip("\n") + "\n")
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        self.touch()
        self.login = await self.frontend.auth.password(username, password, "sftp", self.remote)
        return self.login is not None

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh asks once for the probe and again for the signed request: the login is audited
        # once, when authentication completes (or as a failure when the connection ends without it).
        self.touch()
        self.offered_key = True
        key_data = " ".join(key.export_public_key("openssh").decode().split()[:2])
        self.key_login = await self.frontend.auth.public_key(username, key_data, "sftp", self.remote, final=False)
        if self.key_login is not None:
            self.login = self.key_login
        return self.key_login is not None

    def auth_completed(self) -> None:
        assert self.login is not None and self.conn is not None
        if self.key_login is not None and self.login is self.key_login:
            self.frontend.auth.record(self.username, "ok", "publickey", "sftp", self.remote)
        user = self.login.user
        key = (user.tenant.name, user.name)
        if self.frontend.per_user[key] >= self.frontend.config.max_sessions_per_user:
            log.warning("sftp.too_many_sessions", tenant=key[0], user=key[1], remote=self.remote)
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, "Too many sessions for this user")
            return
        self.frontend.per_user[key] += 1
        self.counted = key

    def session_requested(self) -> SftpSession | bool:
        if self.login is None:
            return False
        return SftpSession(self)


class SftpSession(SSHServerStreamSession[bytes]):
    """An SSH session channel that runs xferd's SFTP handler and nothing else."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(None)
        self.connection = connection

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return is_checksum_command(command)

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def session_started(self) -> None:
        chan = self._chan
        assert chan is not None
        chan.set_encoding(None)
        self._encoding = None
        stdin: SSHReader[bytes] = SSHReader(self, chan)
        stdout: SSHWriter[bytes] = SSHWriter(self, chan)
        assert self._conn is not None
        command = chan.get_command()
        if command:
            stderr: SSHWriter[bytes] = SSHWriter(self, chan, asyncssh.EXTENDED_DATA_STDERR)
            self._conn.create_task(self._exec(chan, command, stdin, stdout, stderr), stdin.logger)
            return
        self._conn.create_task(self._serve(chan, stdin, stdout), stdin.logger)

    async def _exec(self, chan: Any, command: str, stdin: SSHReader[bytes], stdout: SSHWriter[bytes],
                    stderr: SSHWriter[bytes]) -> None:
        c = self.connection
        assert c.login is not None
        status = 1
        try:
            session = await c.frontend.vfs.open_session(c.login, "ssh", c.remote)
            c.touch()
            status = await run_checksum_command(c.frontend.vfs, session, command, stdin, stdout, stderr)
        except OSError as exc:
            stderr.write(f"xferd: {exc.strerror or exc}\n".encode())
        finally:
            chan.exit(status)

    async def _serve(self, chan: Any, stdin: SSHReader[bytes], stdout: SSHWriter[bytes]) -> None:
        c = self.connection
        frontend = c.frontend
        assert c.login is not None
        try:
            session = await frontend.vfs.open_session(c.login, "sftp", c.remote)
        except OSError as exc:
            log.error("sftp.session_failed", user=c.login.user.name, remote=c.remote, error=str(exc))
            chan.exit(1)
            return
        session.log.info("sftp.session_started")
        server = VfsSFTPServer(chan, frontend.vfs, session)
        handler = XferdSFTPHandler(server, stdin, stdout, frontend.config.max_packet_size, c.touch)
        try:
            await handler.run()
        finally:
            session.log.info("sftp.session_ended")


class SftpFrontend:
    def __init__(self, config: SftpConfig, vfs: VirtualFS, auth: Authenticator,
                 host_keys: Sequence[asyncssh.SSHKey]) -> None:
        self.config = config
        self.vfs = vfs
        self.auth = auth
        self.host_keys = list(host_keys)
        self.connections: set[Connection] = set()
        self.per_user: Counter[tuple[str, str]] = Counter()
        self._servers: list[asyncssh.SSHAcceptor] = []
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((str(name[0]), int(name[1])))
        return out

    async def start(self) -> None:
        """Bind every configured address, or none: a failure closes what was bound and raises."""
        hosts = [None if a in ("*", "") else a for a in self.config.addresses]
        try:
            for host in hosts:
                server = await asyncssh.create_server(
                    lambda: Connection(self), host, self.config.port,
                    server_host_keys=self.host_keys,
                    encryption_algs=list(self.config.ciphers),
                    server_version=f"xferd_{__version__}",
                    login_timeout=self.config.login_timeout,
                    encoding=None,
                    max_pktsize=self.config.max_packet_size + 1024,
                    # Clients pipeline many 255 KiB writes: a window of 2 MiB (asyncssh's default)
                    # would stall them.
                    window=self.config.window_size,
                    allow_scp=False,
                    agent_forwarding=False,
                    allow_pty=False,
                    line_editor=False,
                    reuse_address=True,
                )
                self._servers.append(server)
        except BaseException:
            await self.stop_accepting()
            raise
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle(), name="xferd-sftp-idle")

    async def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    async def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for c in list(self.connections):
            if c.conn is not None:
                c.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "Server shutting down")
        waiting = [c.conn.wait_closed() for c in self.connections if c.conn is not None]
        if waiting:
            await asyncio.wait([asyncio.ensure_future(w) for w in waiting], timeout=5)

    async def _sweep_idle(self) -> None:
        period = min(30.0, max(self.config.idle_timeout / 4, 0.5))
        while True:
            await asyncio.sleep(period)
            limit = time.monotonic() - self.config.idle_timeout
            for c in list(self.connections):
                if c.last_activity < limit and c.conn is not None:
                    log.info("sftp.idle_timeout", remote=c.remote, user=c.login.user.name if c.login else "")
                    c.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "Idle timeout")
                    c.last_activity = time.monotonic()
