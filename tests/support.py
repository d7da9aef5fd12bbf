"""Test support: a real xferd daemon in a subprocess, on a free loopback port, and its CLI."""

from __future__ import annotations

import contextlib
import ftplib
import functools
import itertools
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

PASSWORD = "correct horse battery staple"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(*names: str) -> None:
    """Skip when a client binary is missing, except under CI=true, where that is a failure."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} on PATH"
    if IN_CI:
        pytest.fail(message + " (CI must run every test)")
    pytest.skip(message)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(taken: set[int] | None = None) -> int:
    """A free TCP port below 32768 (the kernel hands out client ports from 32768 up)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if (taken is None or port not in taken) and _bindable(port):
            return port
    raise RuntimeError("no free port found")


def free_port_range(count: int, taken: set[int]) -> tuple[int, int]:
    """``count`` consecutive free ports (an FTP passive range), avoiding ``taken``."""
    for _ in range(200):
        low = random.randrange(20000, 32000 - count)
        ports = range(low, low + count)
        if not taken.intersection(ports) and all(_bindable(p) for p in ports):
            return low, low + count - 1
    raise RuntimeError("no free port range found")


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, sections: dict[str, Any]) -> None:
    lines = []
    for key, value in sections.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {toml_value(value)}")
    for key, value in sections.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")


@functools.cache
def _password_hash(password: str) -> str:
    from xferd.auth import hash_password

    return hash_password(password)


def run_cli_inprocess(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``xferd ARGV`` run by this process. The CLI's argon2id hash of a password is computed once per
    test run (each costs 0.15-0.35 s here) and reused for every user given that password:
    a real hash, with the daemon's own parameters, that the daemon verifies as usual."""
    import io
    from unittest import mock

    from xferd.cli import main

    out, err = io.StringIO(), io.StringIO()
    codes: list[int] = []
    saved = sys.stdin
    sys.stdin = io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch("xferd.cli.hash_password", _password_hash):
            # In a thread of its own: the CLI runs its own event loop, and an async test has one running.
            worker = threading.Thread(target=lambda: codes.append(main(argv)))
            worker.start()
            worker.join()
    finally:
        sys.stdin = saved
    code = codes[0] if codes else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


_HOST_KEYS: list[Path] = []


def cached_host_keys() -> Path:
    """Host keys generated once per test run (a 3072-bit RSA key takes a while), copied to each daemon."""
    if not _HOST_KEYS:
        import tempfile

        import asyncssh

        folder = Path(tempfile.mkdtemp(prefix="xferd-hostkeys-"))
        for name, alg in (("ssh_host_ed25519_key", "ssh-ed25519"), ("ssh_host_rsa_key", "ssh-rsa")):
            key = asyncssh.generate_private_key(alg)
            (folder / name).write_bytes(key.export_private_key())
            (folder / name).chmod(0o600)
        _HOST_KEYS.append(folder)
    return _HOST_KEYS[0]


class Daemon:
    """``xferd serve`` in a subprocess; ``cli()`` runs other xferd commands on the same data."""

    def __init__(self, root: Path, **sections: Any) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.ftp_port = free_port({self.port})
        self.ftps_port = free_port({self.port, self.ftp_port})
        self.passive_ports = free_port_range(20, {self.port, self.ftp_port, self.ftps_port})
        taken = {self.port, self.ftp_port, self.ftps_port, *range(self.passive_ports[0], self.passive_ports[1] + 1)}
        self.dav_port = free_port(taken)
        self.davs_port = free_port({*taken, self.dav_port})
        self.config_path = root / "xferd.toml"
        base: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "log": {"format": "json", "level": "info"},
            "sftp": {"addresses": ["127.0.0.1"], "port": self.port},
            # Loopback listeners: TLS is offered, not required (require_tls "auto").
            "ftp": {"addresses": ["127.0.0.1"], "port": self.ftp_port, "implicit_tls_port": self.ftps_port,
                    "passive_ports": "{}-{}".format(*self.passive_ports)},
            # Loopback clients may use Basic over plain HTTP (require_tls "auto").
            "webdav": {"addresses": ["127.0.0.1"], "port": self.dav_port, "tls_port": self.davs_port},
            "gc": {"interval": 3600.0},
            "daemon": {"shutdown_grace": 10.0},
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                base.setdefault(key, {}).update(value)
            else:
                base[key] = value
        self.sections = base
        if not (self.data_dir / "host_keys").exists():
            shutil.copytree(cached_host_keys(), self.data_dir / "host_keys")
        write_config(self.config_path, base)
        self.log_path = root / "daemon.log"
        self.log_offset = 0  # events() and wait_event() read the log from here (see mark())
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None, wait: bool = True) -> Daemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the daemon keeps it open
        self.proc = subprocess.Popen([sys.executable, "-m", "xferd", "serve", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        log.close()
        if wait:
            wait_for_port(self.port, proc=self.proc)
            if self.sections["ftp"].get("enabled", True):
                wait_for_port(self.ftp_port, proc=self.proc)
            if self.sections["webdav"].get("enabled", True):
                wait_for_port(self.sections["webdav"].get("port") or self.davs_port, proc=self.proc)
        return self

    def dav_url(self, path: str = "/", tls: bool = False) -> str:
        """The WebDAV URL of ``path`` (already URL-quoted) below the user's home."""
        if tls:
            return f"https://127.0.0.1:{self.davs_port}{path}"
        return f"http://127.0.0.1:{self.dav_port}{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cli(self, *args: str, input: str | None = None, check: bool = True,
            subprocess_: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``xferd ARGS --config ...``: in this process by default (the same code, much faster; see
        run_cli_inprocess), or as a real subprocess with ``subprocess_``."""
        argv = [*args, "--config", str(self.config_path)]
        if subprocess_:
            result = subprocess.run([sys.executable, "-m", "xferd", *argv], input=input, capture_output=True,
                                    text=True, timeout=60)
        else:
            result = run_cli_inprocess(argv, input)
        if check and result.returncode != 0:
            raise AssertionError(f"xferd {' '.join(args)} failed: {result.stderr}")
        return result

    def add_user(self, name: str, password: str | None = PASSWORD, key: Path | None = None,
                 *extra: str) -> None:
        args = ["user", "add", name, *extra]
        if password is not None:
            args.append("--password-stdin")
        if key is not None:
            args += ["--key", str(key)]
        self.cli(*args, input=password + "\n" if password is not None else None)

    def mark(self) -> None:
        """From now on events() and wait_event() see only what the daemon logs after this call: on a
        daemon shared between tests, a test waits for its own events, not an earlier test's."""
        self.log_offset = self.log_path.stat().st_size

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines since mark() (optionally only events called ``name``)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if name is None or record.get("event") == name:
                out.append(record)
        return out

    def wait_event(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.events(name):
                if all(record.get(k) == v for k, v in fields.items()):
                    return record
            time.sleep(0.05)
        # The log's end, to tell a missing line from a different one when this fails.
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        raise AssertionError(f"no {name} event with {fields} in the daemon log; its last lines:\n{tail}")

    def wait_text(self, text: str, timeout: float = 10.0) -> str:
        """The daemon's output once it contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.log_path.read_text(errors="replace")
            if text in output:
                return output
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the daemon's output")

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


_USER_NUMBERS = itertools.count(1)


def exit_with_port_taken(daemon: Daemon, port: int, env: dict[str, str] | None = None) -> int:
    """Start ``daemon`` (with ``env`` added) while something else listens on ``port``, and return its
    exit code."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        daemon.start(env=env, wait=False)
        assert daemon.proc is not None
        code = daemon.proc.wait(30)
    daemon.proc = None
    return code


def new_user(daemon: Daemon, prefix: str = "user", password: str | None = PASSWORD, key: Path | None = None,
             *extra: str) -> str:
    """Add a user with a name nobody has yet (``prefix`` and a number), home /NAME, and return the name:
    a test on a shared daemon starts in an empty home of its own."""
    name = f"{prefix}{next(_USER_NUMBERS)}"
    daemon.add_user(name, password, key, *extra)
    return name


@contextlib.contextmanager
def running_daemon(root: Path, users: tuple[str, ...] = ("alice",), **sections: Any) -> Iterator[Daemon]:
    """A started daemon with ``users`` (password PASSWORD), stopped at the end: for module-scoped
    fixtures that share one daemon between tests."""
    daemon = Daemon(root, **sections)
    daemon.start()
    try:
        for user in users:
            daemon.add_user(user)
        yield daemon
    finally:
        if daemon.proc is not None:
            daemon.stop()


def ssh_options(port: int) -> list[str]:
    return ["-P", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


def sftp_batch(daemon: Daemon, key: Path, commands: str, user: str = "alice",
               check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH ``sftp -b`` with ``commands``; with ``check``, a failing command fails the test."""
    require_tool("sftp")
    batch = daemon.root / f"batch-{random.randrange(1 << 30)}"
    batch.write_text(commands.strip() + "\n")
    result = subprocess.run(["sftp", "-i", str(key), *ssh_options(daemon.port), "-b", str(batch),
                             f"{user}@127.0.0.1"], capture_output=True, text=True, timeout=120, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"sftp batch failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def paramiko_sftp(daemon: Daemon, user: str = "alice", password: str | None = PASSWORD,
                  key: Path | None = None) -> Any:
    """A paramiko SFTPClient logged in to ``daemon``; its transport closes with ``client.close()``."""
    import paramiko

    transport = paramiko.Transport(("127.0.0.1", daemon.port))
    transport.banner_timeout = 30
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key)) if key is not None else None
    transport.connect(username=user, password=None if pkey else password, pkey=pkey)
    client = paramiko.SFTPClient.from_transport(transport)
    assert client is not None
    close_channel = client.close

    def close() -> None:
        # The client does not own its transport: close the SSH connection too, or the daemon
        # keeps counting it against max_sessions_per_user.
        close_channel()
        transport.close()

    client.close = close
    return client


# -- FTP ------------------------------------------------------------------------------------------

FtpMode = Literal["plain", "explicit", "implicit"]


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib's FTP_TLS resumes the control connection's TLS session on data connections (as lftp,
    curl and rclone do). Stock ftplib does not, so servers that require reuse refuse its transfers."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


class ImplicitFTP_TLS(ReusingFTP_TLS):
    """Implicit FTPS: TLS from the first byte, on its own port."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: tuple[str, int] | None = None) -> str:
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), timeout if timeout != -999 else None)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def tls_context() -> ssl.SSLContext:
    """A client context that accepts the daemon's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def ftp_connect(daemon: Daemon, mode: FtpMode = "plain", reuse: bool = True) -> ftplib.FTP:
    """An ftplib client connected (not logged in): plain, explicit TLS (AUTH TLS) or implicit TLS."""
    port = daemon.ftps_port if mode == "implicit" else daemon.ftp_port
    if mode == "implicit":
        client: ftplib.FTP = ImplicitFTP_TLS(context=tls_context())
    elif mode == "explicit":
        client = (ReusingFTP_TLS if reuse else ftplib.FTP_TLS)(context=tls_context())
    else:
        client = ftplib.FTP()
    try:
        client.connect("127.0.0.1", port, timeout=30)
    except BaseException:
        client.close()  # ftplib keeps the socket of a refused greeting (421) open
        raise
    return client


def ftp_login(daemon: Daemon, user: str = "alice", password: str = PASSWORD, mode: FtpMode = "plain",
              reuse: bool = True) -> ftplib.FTP:
    """An ftplib client logged in to ``daemon``, with protected data connections over TLS."""
    client = ftp_connect(daemon, mode, reuse)
    client.login(user, password)
    if isinstance(client, ftplib.FTP_TLS):
        client.prot_p()
    return client
