"""The daemon: builds the parts from a Config and runs them in three phases.

- **startup** opens the stores, then binds every listener or none (a failure closes what was bound
  and raises :class:`StartupError`);
- **serve** waits for the stop event (SIGTERM or SIGINT);
- **shutdown** stops accepting, lets open transfers finish for ``daemon.shutdown_grace`` seconds,
  then closes every connection (uploads still open are aborted, never committed) and the stores.

Under systemd it reports READY=1 after startup and STOPPING=1 at shutdown. This is the only module
that names concrete store and frontend classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import secrets
import signal
import socket
from dataclasses import dataclass

import structlog

from xferd import __version__
from xferd.auth import DEFAULT_TENANT, Authenticator
from xferd.config import Config
from xferd.frontends import certs
from xferd.frontends.bridge import Bridge
from xferd.frontends.ftp import tls
from xferd.frontends.ftp.server import FtpFrontend
from xferd.frontends.sftp.server import SftpFrontend, load_host_keys
from xferd.frontends.webdav.server import WebdavFrontend
from xferd.metadata.database import SqliteDatabase
from xferd.metadata.sql import SqlMetadataStore
from xferd.storage.local import LocalBlobStore
from xferd.vfs.audit import AuditSink
from xferd.vfs.filesystem import VirtualFS
from xferd.vfs.gc import Collector

log = structlog.get_logger("xferd.daemon")


class StartupError(Exception):
    """The daemon could not start; the message says what to fix."""


def sd_notify(state: str) -> None:
    """Tell systemd about a state change (no-op when not started by systemd with Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


def open_metadata(config: Config) -> SqlMetadataStore:
    return SqlMetadataStore(SqliteDatabase(config.metadata_path, config.metadata.sqlite_synchronous))


def open_storage(config: Config) -> LocalBlobStore:
    return LocalBlobStore(config.storage_path, fsync=config.storage.fsync,
                          max_buffered=config.transfer.max_buffered_bytes)


@dataclass
class Listening:
    protocol: str
    host: str
    port: int


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.boot_id = secrets.token_hex(4)
        self.owner = f"{config.node_id}:{self.boot_id}"
        self.stop_event = asyncio.Event()
        self.md: SqlMetadataStore | None = None
        self.storage: LocalBlobStore | None = None
        self.audit: AuditSink | None = None
        self.vfs: VirtualFS | None = None
        self.sftp: SftpFrontend | None = None
        self.ftp: FtpFrontend | None = None
        self.webdav: WebdavFrontend | None = None
        self.bridge: Bridge | None = None
        self.collector: Collector | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self.host_key_fingerprints: list[str] = []
        self.tls_fingerprint = ""

    async def startup(self) -> list[Listening]:
        config = self.config
        config.data_path.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        self.md = open_metadata(config)
        try:
            await self.md.open()
        except Exception as exc:
            raise StartupError(f"cannot open the metadata database {config.metadata_path}: {exc}") from exc
        await self.md.ensure_tenant(DEFAULT_TENANT)
        self.storage = open_storage(config)
        moved, swept = self.storage.recover_temporary(await self.md.live_blobs(self.storage.temporary_ids()))
        if moved:
            log.info("storage.published_committed_uploads", files=moved)
        if swept:
            log.info("storage.swept_unfinished_uploads", files=swept)
        self.audit = AuditSink(self.md)
        self.audit.start()
        self.vfs = VirtualFS(self.md, self.storage, self.audit, self.owner, config.transfer)
        auth = Authenticator(self.md, self.audit)
        self.collector = Collector(self.md, self.storage, self.vfs, config.gc, config.node_id, self.owner)
        listening: list[Listening] = []
        if config.sftp.enabled:
            try:
                keys = load_host_keys(config.sftp, config.host_key_dir)
            except (OSError, ValueError) as exc:
                await self._close_stores()
                raise StartupError(f"cannot load the SSH host keys: {exc}") from exc
            self.host_key_fingerprints = [f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in keys]
            self.sftp = SftpFrontend(config.sftp, self.vfs, auth, keys)
            try:
                await self.sftp.start()
            except OSError as exc:
                await self._close_stores()
                raise StartupError(f"cannot listen for SFTP on port {config.sftp.port}: {exc.strerror or exc}") \
                    from exc
            listening += [Listening("sftp", host, port) for host, port in self.sftp.addresses]
        for enabled, start in ((config.ftp.enabled, self._start_ftp), (config.webdav.enabled, self._start_webdav)):
            if not enabled:
                continue
            try:
                listening += [Listening(kind, host, port) for kind, host, port in await start(auth)]
            except StartupError:
                await self._stop_frontends()
                await self._close_stores()
                raise
        await self.collector.reclaim_crashed_uploads()
        self._gc_task = asyncio.get_running_loop().create_task(self.collector.run_forever(), name="xferd-gc")
        # What exists now (modules, classes, the frontends) lives as long as the daemon: out of the
        # collector's sight, a full collection no longer walks it. A directory listing of 10,000
        # entries makes enough objects to set one off every few listings, and each took 30-60 ms
        # (collecting nothing) on top of the listing's own 60-120 ms.
        gc.freeze()
        log.info("daemon.started", version=__version__, node=self.owner,
                 listening=[f"{x.protocol}://{x.host}:{x.port}" for x in listening], frozen=gc.get_freeze_count())
        return listening

    async def _start_ftp(self, auth: Authenticator) -> list[tuple[str, str, int]]:
        ftp = self.config.ftp
        try:
            files = certs.load_or_create(ftp.tls_cert, ftp.tls_key, self.config.tls_dir)
            context = tls.make_context(files, ftp.tls_max_version)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot load the FTPS certificate: {exc}") from exc
        self.tls_fingerprint = files.fingerprint
        assert self.vfs is not None
        self.ftp = FtpFrontend(ftp, self.vfs, auth, self._bridge(), context)
        try:
            await self.ftp.start()
        except OSError as exc:
            port = getattr(exc, "port", ftp.port)
            raise StartupError(f"cannot listen for FTP on port {port}: {exc.strerror or exc}") from exc
        return self.ftp.addresses

    def _bridge(self) -> Bridge:
        if self.bridge is None:
            self.bridge = Bridge(asyncio.get_running_loop(), timeout=self.config.ftp.data_timeout)
        return self.bridge

    async def _start_webdav(self, auth: Authenticator) -> list[tuple[str, str, int]]:
        dav = self.config.webdav
        files = None
        if dav.tls_port:
            try:
                files = certs.load_or_create(dav.tls_cert, dav.tls_key, self.config.tls_dir)
            except (OSError, ValueError) as exc:
                raise StartupError(f"cannot load the HTTPS certificate: {exc}") from exc
            self.tls_fingerprint = self.tls_fingerprint or files.fingerprint
        assert self.vfs is not None
        self.webdav = WebdavFrontend(dav, self.vfs, auth, self._bridge(), files, self.config.daemon.shutdown_grace)
        try:
            await self.webdav.start()
        except OSError as exc:
            listener = getattr(exc, "listener", f"port {dav.port}")
            raise StartupError(f"cannot listen for WebDAV on {listener}: {exc.strerror or exc}") from exc
        return self.webdav.addresses

    async def _stop_frontends(self) -> None:
        if self.sftp is not None:
            await self.sftp.stop_accepting()
            await self.sftp.close_all()
        if self.ftp is not None:
            await self.ftp.stop_accepting()
            await self.ftp.close_all()
        if self.webdav is not None:
            await self.webdav.close_all()

    async def serve(self) -> None:
        await self.stop_event.wait()

    async def shutdown(self) -> None:
        sd_notify("STOPPING=1")
        log.info("daemon.stopping", open_transfers=len(self.vfs.open_transfers) if self.vfs else 0)
        if self.sftp is not None:
            await self.sftp.stop_accepting()
        if self.ftp is not None:
            await self.ftp.stop_accepting()
        if self.webdav is not None:
            await self.webdav.stop_accepting()
        if self.vfs is not None and self.vfs.open_transfers:
            try:
                await asyncio.wait_for(self.vfs.transfers_idle.wait(), self.config.daemon.shutdown_grace)
            except TimeoutError:
                log.warning("daemon.grace_expired", open_transfers=len(self.vfs.open_transfers))
        if self.sftp is not None:
            await self.sftp.close_all()
        if self.ftp is not None:
            await self.ftp.close_all()
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        await self._close_stores()
        log.info("daemon.stopped")

    async def _close_stores(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
        if self.audit is not None:
            await self.audit.close()
        if self.storage is not None:
            await self.storage.close()
        if self.md is not None:
            await self.md.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock_data_dir(self) -> None:
        """One daemon per data directory: it owns the store's unfinished uploads."""
        path = self.config.data_path / "daemon.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(f"another xferd daemon is using the data directory {self.config.data_path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def request_stop(self) -> None:
        self.stop_event.set()

    async def run(self, announce: bool = True) -> None:
        listening = await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        # The config is read once at start; a reload signal must not kill a daemon mid-transfer.
        loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(
            "daemon.sighup_ignored", reason="configuration is read at start: restart to apply changes"))
        if announce:
            await self._announce(listening)
        sd_notify("READY=1")
        try:
            await self.serve()
        finally:
            await self.shutdown()

    async def _announce(self, listening: list[Listening]) -> None:
        print(f"xferd {__version__}: data in {self.config.data_path.resolve()}", flush=True)
        for x in listening:
            print(f"  {x.protocol} listening on {x.host}:{x.port}", flush=True)
        for fp in self.host_key_fingerprints:
            print(f"  host key {fp}", flush=True)
        if self.tls_fingerprint:
            print(f"  TLS certificate (FTPS, HTTPS) SHA256 {self.tls_fingerprint}", flush=True)
        assert self.md is not None
        if not await self.md.list_users():
            print("No users yet. Create one (the daemon may keep running):\n"
                  f"  xferd user add NAME --password-stdin --data-dir {self.config.data_dir}", flush=True)
