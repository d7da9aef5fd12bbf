"""WebDAV benchmark: xferd against nginx (dav + dav_ext), side by side, in one run.

Both servers run on loopback with their files on a fresh tmpfs directory, both ask for HTTP Basic
authentication (xferd its users, nginx ``auth_basic`` with a generated htpasswd file), and both are
driven by the same clients, so only the server differs:

- a 1 GiB PUT and GET (``curl -T`` / ``curl -o /dev/null``; the first GET from each server is
  compared with the source). The time is curl's ``time_total - time_pretransfer``: the request and
  its response, without the TCP connect;
- N x 4 KiB PUTs over one keep-alive connection (``http.client``, one request after the other);
- N x 4 KiB GETs of those files, the same way (no goal; the first round compares each body);
- a ``PROPFIND`` with ``Depth: 1`` and an empty body (allprop) of a collection of M entries, timed
  from sending the request to the last byte of the 207 response, on a connection that has already
  authenticated (with a Depth 0 PROPFIND). The entries are made beforehand, untimed: for nginx
  straight into its root, for xferd over SFTP (its tree lives in its metadata store, so files made
  behind its back would not exist).

A bare wsgidav server (``webdav_reference.py``: the library xferd's WebDAV frontend is built on,
under cheroot, over a plain directory) runs beside them as a reference unless ``--servers`` leaves
it out; its column shows how far wsgidav itself gets. The goals compare xferd with nginx only.

Runs are interleaved (xferd, nginx, wsgidav, then the reverse, ...) so that noise from other work
on a shared machine hits all alike. Run as root from the repository root (nginx's workers run as root so
that they may write into the tmpfs directory)::

    .venv/bin/python bench/webdav_bench.py
    .venv/bin/python bench/webdav_bench.py --size-mib 256 --files 300 --entries 3000      # quick
    .venv/bin/python bench/webdav_bench.py --only upload,download --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncssh

from sftp_bench import (
    BenchError,
    check_running,
    free_port,
    make_big_file,
    render_config,
    spawn_reference,
    stop_tree,
    summarize_log,
    tail,
    wait_freed,
)

MIB = 1024 * 1024
MB = 1_000_000  # throughput is in decimal MB/s, as in the other benches
SMALL_FILE_BYTES = 4096
USER = "bench"
PASSWORD = "bench password"  # noqa: S105 - a throwaway user on a loopback-only test server
GROUPS = ("upload", "download", "small", "small_get", "propfind")
XFERD, NGINX, WSGIDAV = "xferd", "nginx", "wsgidav"
SERVER_NAMES = (XFERD, NGINX, WSGIDAV)
# group: (goal kind, goal), xferd/nginx in the same run; "max" is on time (lower is better).
GOALS = {"upload": ("min", 1.5), "download": ("min", 0.9), "small": ("min", 0.5), "propfind": ("max", 4.0)}
PROPFIND_TRIES = 3  # PROPFINDs per server and round; their median is the round's sample
POPULATE_CONCURRENCY = 64  # SFTP requests in flight when making xferd's listed entries
DAV_EXT_MODULE = "ngx_http_dav_ext_module.so"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")
# One <D:response> per member (and one for the collection itself), whatever the namespace prefix.
RESPONSE_END = re.compile(rb"</(?:[\w.-]+:)?response\s*>")


# -------------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra_ports: tuple[int, ...] = ()  # xferd: the SFTP port used to make the listed entries

    def check_alive(self) -> None:
        check_running(self.name, self.proc, self.log_path)

    def stop(self) -> None:
        """SIGTERM the server (nginx: its master) and then SIGKILL whatever it started that is left."""
        stop_tree(self.proc)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def connection(self, timeout: float = 300.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


def basic_auth(password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={**basic_auth(), **(headers or {})})
    response = conn.getresponse()
    return response.status, response.read()


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Until the HTTP port answers (any status: the request carries no credentials) and the other
    ports accept connections; then check that the server asks for, and accepts, the credentials."""
    deadline = time.monotonic() + timeout
    waiting = [server.port, *server.extra_ports]
    while waiting:
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name} did not answer on port {waiting[0]} within {timeout:.0f} s; "
                             f"log tail:\n{tail(server.log_path)}")
        server.check_alive()
        port = waiting[0]
        with contextlib.suppress(OSError, http.client.HTTPException):
            if port == server.port:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    conn.request("OPTIONS", "/")
                    conn.getresponse().read()
                finally:
                    conn.close()
            else:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            waiting.pop(0)
            continue
        time.sleep(0.1)
    check_auth(server)


def check_auth(server: Server) -> None:
    """A wrong password must be refused (401) and the right one let in (PROPFIND Depth 0: 207), so that
    both servers really do authentication on every figure."""
    for password, expected in (("wrong " + PASSWORD, 401), (PASSWORD, 207)):
        conn = server.connection(60)
        try:
            conn.request("PROPFIND", "/", body=b"", headers={**basic_auth(password), "Depth": "0"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            server.check_alive()
            raise BenchError(f"{server.name}: PROPFIND / failed: {exc!r}") from exc
        finally:
            conn.close()
        if response.status != expected:
            raise BenchError(f"{server.name}: PROPFIND / with {'a wrong' if expected == 401 else 'the'} password "
                             f"answered {response.status}, expected {expected}: {body[:300]!r}")


def start_xferd(work: Path, ports: set[int], overrides: Sequence[str]) -> Server:
    base = work / "xferd"
    base.mkdir()
    port, sftp_port = free_port(ports), free_port(ports)
    config = base / "xferd.toml"
    config.write_text(render_config(base / "data", {
        "log": {"level": "warning", "format": "json"},
        "webdav": {"enabled": True, "addresses": ["127.0.0.1"], "port": port, "tls_port": 0},
        # SFTP only to make the listed collection's entries (untimed); FTP is not needed.
        "sftp": {"addresses": ["127.0.0.1"], "port": sftp_port},
        "ftp": {"enabled": False},
        # Each 1 GiB PUT replaces the last; collect replaced blobs soon so the tmpfs does not fill.
        "gc": {"interval": 1.0, "grace": 0.0},
        "daemon": {"shutdown_grace": 2.0},  # cleanup must not wait 30 s for a transfer the bench abandoned
    }, overrides))
    added = subprocess.run([sys.executable, "-m", "xferd", "user", "add", USER, "--password-stdin", "--config",
                            str(config)], input=PASSWORD + "\n", text=True, capture_output=True, check=False,
                           cwd=base, timeout=120)
    if added.returncode != 0:
        hint = ""
        if "webdav" in (added.stderr + added.stdout).lower():
            hint = ("\n(this checkout of xferd does not know the [webdav] section: the WebDAV frontend, "
                    "src/xferd/frontends/webdav, is missing or not wired into the config)")
        raise BenchError(f"xferd user add failed ({added.returncode}): "
                         f"{(added.stderr or added.stdout).strip()[-1500:]}{hint}")
    log_path = base / "xferd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "xferd", "serve", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base)
    server = Server(XFERD, port, proc, log_path, extra_ports=(sftp_port,))
    try:
        wait_ready(server)
    except BenchError as exc:
        server.stop()
        if "webdav" not in tail(log_path, 1000).lower():
            raise BenchError(f"{exc}\n(xferd's startup lines name no WebDAV listener: is the WebDAV frontend, "
                             "src/xferd/frontends/webdav, wired into the daemon in this checkout?)") from None
        raise
    return server


def find_dav_ext(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else [Path(d) / DAV_EXT_MODULE for d in MODULE_DIRS]
    for path in candidates:
        if path.exists():
            return path
    raise BenchError(f"nginx's dav_ext module not found at {', '.join(map(str, candidates))} "
                     "(apt-get install libnginx-mod-http-dav-ext)")


def nginx_features(binary: str) -> str:
    """``nginx -V`` (it prints to stderr): the version and the configure arguments."""
    proc = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode != 0:
        raise BenchError(f"{binary} -V failed: {proc.stderr.strip()}")
    if "--with-http_dav_module" not in proc.stderr:
        raise BenchError(f"{binary} is built without http_dav_module (apt-get install nginx-full or nginx-extras)")
    return proc.stderr


def htpasswd_line(scheme: str) -> str:
    """``bench:<hash>`` for nginx's auth_basic_user_file, hashed by ``openssl passwd`` (there is no
    htpasswd binary without apache2-utils). apr1 is what ``htpasswd`` writes by default."""
    proc = subprocess.run(["openssl", "passwd", f"-{scheme}", "-stdin"], input=PASSWORD + "\n", text=True,
                          capture_output=True, check=False, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchError(f"openssl passwd -{scheme} failed: {proc.stderr.strip()}")
    return f"{USER}:{proc.stdout.strip()}\n"


def nginx_config(base: Path, root: Path, port: int, module: Path, features: str, workers: str) -> str:
    temp_paths = [f"client_body_temp_path {base / 'body'};"]  # on the tmpfs: a PUT ends with a rename
    temp_paths += [f"{m}_temp_path {base / m};" for m in ("proxy", "fastcgi", "uwsgi", "scgi")
                   if f"--without-http_{m}_module" not in features]  # else nginx makes them under /var/lib
    http_block = "\n".join(f"        {line}" for line in [
        "access_log off;",
        "sendfile on;",  # as in Debian's default nginx.conf
        "tcp_nopush on;",
        "keepalive_requests 1000000;",  # the default (1000) would close the small PUTs' connection
        "keepalive_timeout 300s;",
        "client_max_body_size 0;",
        *temp_paths,
        "default_type application/octet-stream;",
    ])
    return f"""load_module {module};
user root;
worker_processes {workers};
daemon off;
master_process on;
pid {base / 'nginx.pid'};
error_log {base / 'error.log'} warn;
events {{
    worker_connections 1024;
}}
http {{
{http_block}
        server {{
            listen 127.0.0.1:{port};
            server_name localhost;
            root {root};
            auth_basic "xferd bench";
            auth_basic_user_file {base / 'htpasswd'};
            location / {{
                dav_methods PUT DELETE MKCOL COPY MOVE;
                dav_ext_methods PROPFIND OPTIONS;
                dav_access user:rw group:r all:r;
                create_full_put_path on;
            }}
        }}
}}
"""


def start_wsgidav(work: Path, ports: set[int]) -> tuple[Server, Path]:
    """The bare wsgidav reference (webdav_reference.py) over a plain directory; returns it and its root."""
    base = work / "wsgidav"
    root = base / "root"
    root.mkdir(parents=True)
    port = free_port(ports)
    proc, log_path = spawn_reference("webdav_reference.py", [
        "--port", str(port), "--root", str(root), "--user", USER, "--password-stdin"], PASSWORD, base)
    server = Server(WSGIDAV, port, proc, log_path)
    wait_ready(server)
    return server, root


def start_nginx(work: Path, ports: set[int], args: argparse.Namespace) -> tuple[Server, Path]:
    features = nginx_features(args.nginx)
    module = find_dav_ext(args.dav_ext)
    base = work / "nginx"
    root = base / "root"
    root.mkdir(parents=True)
    (base / "htpasswd").write_text(htpasswd_line(args.nginx_hash))
    port = free_port(ports)
    config = base / "nginx.conf"
    config.write_text(nginx_config(base, root, port, module, features, args.nginx_workers))
    command = [args.nginx, "-p", str(base), "-c", str(config), "-e", str(base / "error.log")]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, check=False, timeout=60)
    if checked.returncode != 0:
        raise BenchError(f"nginx -t rejected {config}: {(checked.stderr or checked.stdout).strip()[-1500:]}")
    log_path = base / "stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(NGINX, port, proc, base / "error.log")
    try:
        wait_ready(server)
    except BenchError:
        server.stop()
        raise
    return server, root


# -------------------------------------------------------------------------------------------- clients


def curl(server: Server, args: Sequence[str], expect: Sequence[int], timeout: float,
         response: Path | None = None) -> float:
    """Seconds of one curl request, without the TCP connect: ``time_total - time_pretransfer``. The
    request carries the credentials, so each server's check of them is in the figure (once).
    ``response``: where ``args`` has curl write the response body, quoted when the request fails."""
    cmd = ["curl", "--silent", "--show-error", "--disable", "--user", f"{USER}:{PASSWORD}",
           "--header", "Expect:",  # no 100-continue round trip (curl would wait up to 1 s for it)
           "--write-out", r"%{http_code} %{time_pretransfer} %{time_total}\n", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{server.name}: curl {' '.join(args)[:200]} timed out after {timeout:.0f} s") from exc
    fields = proc.stdout.decode(errors="replace").split()
    if proc.returncode != 0 or len(fields) != 3 or int(fields[0]) not in expect:
        server.check_alive()
        body = ""
        if response is not None and response.exists():
            body = response.read_bytes()[:500].decode(errors="replace").strip()
        raise BenchError(f"{server.name}: curl {' '.join(args)[:200]} failed (exit {proc.returncode}, "
                         f"HTTP {fields[0] if fields else '?'}): {proc.stderr.decode(errors='replace').strip()[-500:]}"
                         f"{' response: ' + body if body else ''}")
    return max(float(fields[2]) - float(fields[1]), 1e-6)


async def populate_sftp(server: Server, directory: str, count: int) -> None:
    """``count`` empty files in ``directory`` over xferd's SFTP (untimed; 64 requests in flight)."""
    async with asyncssh.connect("127.0.0.1", server.extra_ports[0], username=USER, password=PASSWORD,
                                client_keys=None, known_hosts=None, agent_path=None, config=None) as conn, \
            conn.start_sftp_client() as sftp:
        await sftp.mkdir(directory)
        limit = asyncio.Semaphore(POPULATE_CONCURRENCY)

        async def create(i: int) -> None:
            async with limit, await sftp.open(f"{directory}/e{i:06d}", "w"):
                pass

        await asyncio.gather(*(create(i) for i in range(count)))


# -------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str

    @property
    def goal(self) -> tuple[str, float]:
        return GOALS.get(self.key, ("", 0.0))

    def goal_text(self) -> str:
        kind, goal = self.goal
        return "" if not kind else (f"ratio >= {goal:g}" if kind == "min" else f"time ratio <= {goal:g}")

    def passes(self, ratio: float) -> bool | None:
        kind, goal = self.goal
        return None if not kind else (ratio >= goal if kind == "min" else ratio <= goal)


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    servers: list[Server]
    roots: dict[str, Path]  # the directories nginx and wsgidav serve, by server name
    metrics: dict[str, Metric] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, label: str, unit: str, server: str, value: float) -> None:
        self.metrics.setdefault(key, Metric(key, label, unit))
        self.samples.setdefault(key, {name: [] for name in SERVER_NAMES})[server].append(value)

    def note(self, key: str, server: str, value: Any) -> None:
        self.info.setdefault(key, {})[server] = value

    def transfer_timeout(self) -> float:
        return 120.0 + self.args.size_mib * MIB / (2 * MB)  # generous: assumes >= 2 MB/s

    # --- 1 GiB PUT and GET

    def upload(self, server: Server, source: Path, timed: bool = True) -> None:
        self.delete_copy(server, source.stat().st_size)
        answer = self.work / "put-response.txt"
        seconds = curl(server, ["--upload-file", str(source), "--output", str(answer), server.url("big.bin")],
                       (201, 204), self.transfer_timeout(), answer)
        answer.unlink(missing_ok=True)
        if timed:
            self.add("upload", f"PUT {self.args.size_mib} MiB (curl -T)", "MB/s", server.name,
                     source.stat().st_size / MB / seconds)

    def delete_copy(self, server: Server, nbytes: int) -> None:
        """Delete the last PUT's copy (untimed) and wait until its memory is free (wait_freed)."""
        free_before = shutil.disk_usage(self.work).free
        conn = server.connection()
        try:
            status, _ = request(conn, "DELETE", "/big.bin")
        finally:
            conn.close()
        if status == 404:
            return  # no copy yet
        if status not in (200, 204):
            raise BenchError(f"{server.name}: DELETE /big.bin answered {status}")
        wait_freed(self.work, free_before, nbytes, self.args.settle)

    def download(self, server: Server, source: Path, verify: bool) -> None:
        if verify:  # a fast wrong download is not a result
            copy = self.work / "check.bin"
            curl(server, ["--output", str(copy), server.url("big.bin")], (200,), self.transfer_timeout())
            if subprocess.run(["cmp", "-s", str(source), str(copy)], check=False).returncode != 0:
                raise BenchError(f"{server.name}: the downloaded file differs from the source")
            copy.unlink()
        seconds = curl(server, ["--output", "/dev/null", server.url("big.bin")], (200,), self.transfer_timeout())
        self.add("download", f"GET {self.args.size_mib} MiB (curl -o /dev/null)", "MB/s", server.name,
                 source.stat().st_size / MB / seconds)

    # --- N x 4 KiB PUTs over one connection

    @contextlib.contextmanager
    def _connection(self, server: Server, what: str) -> Iterator[http.client.HTTPConnection]:
        """A keep-alive connection to ``server``; a failure on it is a BenchError naming ``what``."""
        conn = server.connection(120)
        try:
            yield conn
        except (OSError, http.client.HTTPException) as exc:
            server.check_alive()
            raise BenchError(f"{server.name}: {what} failed: {exc!r}") from exc
        finally:
            conn.close()

    def small(self, server: Server, round_no: int, bodies: Sequence[bytes]) -> None:
        folder = f"/small-{round_no}/"
        with self._connection(server, "small PUTs") as conn:
            status, text = request(conn, "MKCOL", folder)  # untimed; also opens and authenticates the connection
            if status != 201:
                raise BenchError(f"{server.name}: MKCOL {folder} answered {status}: {text[:300]!r}")
            reconnects = 0
            started = time.perf_counter()
            for i, body in enumerate(bodies):
                # After a "Connection: close" http.client has dropped the socket, and opens a new one itself.
                reconnects += conn.sock is None
                status, text = request(conn, "PUT", f"{folder}f{i:05d}", body)
                if status not in (201, 204):
                    raise BenchError(f"{server.name}: PUT {folder}f{i:05d} answered {status}: {text[:300]!r}")
            seconds = time.perf_counter() - started
        self.info.setdefault("small_reconnects", {}).setdefault(server.name, []).append(reconnects)
        self.add("small", f"{len(bodies)} x 4 KiB PUTs, one connection", "files/s", server.name,
                 len(bodies) / seconds)

    # --- N x 4 KiB GETs over one connection (the small PUTs' files; no goal)

    def small_get(self, server: Server, round_no: int, bodies: Sequence[bytes], verify: bool) -> None:
        folder = f"/small-{round_no}/"
        with self._connection(server, "small GETs") as conn:
            request(conn, "OPTIONS", folder)  # untimed: opens and authenticates the connection
            started = time.perf_counter()
            for i, body in enumerate(bodies):
                status, got = request(conn, "GET", f"{folder}f{i:05d}")
                if status != 200 or (verify and got != body):
                    raise BenchError(f"{server.name}: GET {folder}f{i:05d} answered {status} with "
                                     f"{len(got)} bytes{'' if got == body else ' that differ from the PUT'}")
            seconds = time.perf_counter() - started
        self.add("small_get", f"{len(bodies)} x 4 KiB GETs, one connection", "files/s", server.name,
                 len(bodies) / seconds)

    # --- PROPFIND Depth 1 of M entries

    def populate(self, server: Server) -> None:
        started = time.perf_counter()
        if server.name in self.roots:
            folder = self.roots[server.name] / "many"
            folder.mkdir()
            for i in range(self.args.entries):
                (folder / f"e{i:06d}").touch()
        else:
            try:
                asyncio.run(populate_sftp(server, "many", self.args.entries))
            except (OSError, asyncssh.Error) as exc:
                server.check_alive()
                raise BenchError(f"{server.name}: making {self.args.entries} entries over SFTP failed: "
                                 f"{exc!r}") from exc
        self.note("populate_seconds", server.name, round(time.perf_counter() - started, 2))

    def propfind(self, server: Server, check: bool) -> None:
        conn = server.connection(300)
        times = []
        try:
            # Untimed: connect and authenticate (not OPTIONS: xferd answers it without looking at credentials).
            status, text = request(conn, "PROPFIND", "/many/", b"", {"Depth": "0"})
            if status != 207:
                raise BenchError(f"{server.name}: PROPFIND /many/ (Depth 0) answered {status}: {text[:300]!r}")
            for _ in range(PROPFIND_TRIES):
                started = time.perf_counter()
                status, text = request(conn, "PROPFIND", "/many/", b"", {"Depth": "1"})
                times.append(time.perf_counter() - started)
                if status != 207:
                    raise BenchError(f"{server.name}: PROPFIND /many/ answered {status}: {text[:300]!r}")
        except (OSError, http.client.HTTPException) as exc:
            server.check_alive()
            raise BenchError(f"{server.name}: PROPFIND failed: {exc!r}") from exc
        finally:
            conn.close()
        if check:  # the collection itself and each member
            found = len(RESPONSE_END.findall(text))
            if found != self.args.entries + 1:
                raise BenchError(f"{server.name}: PROPFIND listed {found} responses, expected "
                                 f"{self.args.entries + 1} (the collection and its {self.args.entries} members)")
            self.note("propfind_bytes", server.name, len(text))
            (self.work / f"propfind-{server.name}.xml").write_bytes(text[:20000])  # a sample, for --keep
        self.add("propfind", f"PROPFIND Depth 1, {self.args.entries} entries", "s", server.name,
                 statistics.median(times))


def interleaved(servers: Sequence[Server], round_no: int) -> Iterator[Server]:
    """xferd first in even rounds, last in odd ones."""
    yield from (servers if round_no % 2 == 0 else list(reversed(servers)))


# -------------------------------------------------------------------------------------------- report


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def results(bench: Bench) -> list[dict[str, Any]]:
    rows = []
    for key in GROUPS:
        if key not in bench.metrics:
            continue
        metric, samples = bench.metrics[key], bench.samples[key]
        ours, theirs, ref = (statistics.median(samples[n]) if samples[n] else None for n in SERVER_NAMES)
        ratio = ours / theirs if ours is not None and theirs else None
        rows.append({"metric": key, "label": metric.label, "unit": metric.unit, "samples": samples,
                     "value": {XFERD: ours, NGINX: theirs, WSGIDAV: ref}, "ratio": ratio,
                     "goal": metric.goal_text() or None, "pass": metric.passes(ratio) if ratio is not None else None,
                     # the reference against nginx, the same way round (no goal)
                     "reference_ratio": ref / theirs if ref is not None and theirs else None})
    return rows


def has_reference(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether the wsgidav reference was measured (its columns and its line are shown then)."""
    return any(row["value"][WSGIDAV] is not None for row in rows)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    reference = has_reference(rows)
    header = ["metric", "unit", XFERD, NGINX, "ratio (xferd/nginx)", "goal", "met"]
    if reference:
        header += [WSGIDAV, "its ratio"]
    lines = [header]
    for row in rows:
        time_ratio = " (time)" if row["unit"] == "s" else ""
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}{time_ratio}"
        met = {True: "yes", False: "NO", None: ""}[row["pass"]]
        line = [row["label"], row["unit"], fmt(row["value"][XFERD], row["unit"]),
                fmt(row["value"][NGINX], row["unit"]), ratio, row["goal"] or "", met]
        if reference:
            ref_ratio = row["reference_ratio"]
            line += [fmt(row["value"][WSGIDAV], row["unit"]),
                     "-" if ref_ratio is None else f"{ref_ratio:.2f}{time_ratio}"]
        lines.append(line)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def print_results(bench: Bench, rows: Sequence[dict[str, Any]]) -> None:
    args = bench.args
    print(f"\nResults (median of {args.repeat} run(s); loopback, tmpfs, the same clients for both; "
          f"nginx: {bench.info['nginx_version']}, auth_basic with {args.nginx_hash} hashes):\n")
    print(render_table(rows))
    for server, count in bench.info.get("propfind_bytes", {}).items():
        print(f"  {server}: the PROPFIND response is {count} bytes")
    for server, counts in bench.info.get("small_reconnects", {}).items():
        if any(counts):
            print(f"  {server}: the small PUTs' connection was reopened {sum(counts)} time(s) (server closed it)")
    for server, seconds in bench.info.get("populate_seconds", {}).items():
        how = ("files written into its root" if server != XFERD
               else f"SFTP, {POPULATE_CONCURRENCY} requests in flight")
        print(f"  {server}: making the {args.entries} listed entries (untimed, {how}) took {seconds:.1f} s")
    print("\nGoals: PUT ratio >= 1.5, GET ratio >= 0.9, small PUTs ratio >= 0.5, PROPFIND time ratio <= 4 "
          "('time' ratios: lower is better).")
    if has_reference(rows):
        print(f"{WSGIDAV}: bare wsgidav under cheroot over a plain directory (webdav_reference.py), the library "
              "xferd's WebDAV frontend is built on; its ratio is against nginx, no goal.")
    print(f"Load average at start {bench.info['loadavg_start']}, at end {bench.info['loadavg_end']}.")


# -------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="size of the PUT/GET file (default 1024)")
    p.add_argument("--files", type=int, default=1000, help="number of 4 KiB PUTs (default 1000)")
    p.add_argument("--entries", type=int, default=10000, help="entries in the PROPFIND collection (default 10000)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is reported")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)} (default all)")
    p.add_argument("--servers", default=",".join(SERVER_NAMES),
                   help="comma list of the servers to run (default xferd,nginx,wsgidav; wsgidav is a reference; "
                        "without xferd or nginx there are no ratios)")
    p.add_argument("--tmpfs", default="/dev/shm", help="tmpfs directory for all files (default /dev/shm)")
    p.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                   help="pause between deleting the last 1 GiB copy and the next upload (default 0: both servers "
                        "write into just-freed memory; 3: into memory the virtual machine has handed back)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx", help="the nginx binary")
    p.add_argument("--dav-ext", metavar="SO", help=f"path of {DAV_EXT_MODULE} (default: looked up in "
                   f"{' and '.join(MODULE_DIRS)})")
    p.add_argument("--nginx-workers", default="auto", help="nginx worker_processes (default auto)")
    p.add_argument("--nginx-hash", default="apr1", choices=("apr1", "5", "6", "1"),
                   help="openssl passwd scheme of the htpasswd entry: apr1 (htpasswd's default), 5/6 "
                        "(SHA-256/512 crypt, slower to check), 1 (MD5 crypt)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) for inspection")
    p.add_argument("--xferd-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra xferd config key, e.g. storage.fsync=false (repeatable; for experiments)")
    args = p.parse_args(argv)
    only, chosen = {g for g in args.only.split(",") if g}, {s for s in args.servers.split(",") if s}
    args.only = [g for g in GROUPS if g in only]  # always in this order: GET needs the PUT's file
    args.servers = [s for s in SERVER_NAMES if s in chosen]
    if unknown := (only - set(GROUPS)) | (chosen - set(SERVER_NAMES)):
        p.error(f"unknown: {', '.join(sorted(unknown))}")
    if not args.servers:
        p.error("--servers: name at least one of xferd, nginx, wsgidav")
    for name in ("size_mib", "files", "entries", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def check_prerequisites(args: argparse.Namespace) -> None:
    for tool in ("curl", "cmp", "openssl"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is needed on PATH")
    if NGINX in args.servers:
        if not Path(args.nginx).exists():
            raise BenchError(f"{args.nginx} not found (apt-get install nginx)")
        if os.geteuid() != 0:
            raise BenchError("run as root: nginx's workers run as root to write into the tmpfs directory")
    if "upload" in args.only or "download" in args.only:
        # The source, a checked copy, each server's copy, and xferd's replaced blobs until its collector runs.
        need = args.size_mib * MIB * (4 + 2 * args.repeat)
        free = shutil.disk_usage(args.tmpfs).free
        if free < need:
            raise BenchError(f"{args.tmpfs} has {free // MIB} MiB free, the PUT/GET runs need about {need // MIB}")


def run(args: argparse.Namespace, work: Path, servers: list[Server]) -> tuple[Bench, list[dict[str, Any]]]:
    ports: set[int] = set()
    roots: dict[str, Path] = {}
    info: dict[str, Any] = {"options": vars(args), "python": platform.python_version(), "cpus": os.cpu_count(),
                            "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True,
                                                   check=False).stdout.split("\n", 1)[0],
                            "nginx_version": "not run"}
    if XFERD in args.servers:
        servers.append(start_xferd(work, ports, args.xferd_set))
    if NGINX in args.servers:
        server, roots[NGINX] = start_nginx(work, ports, args)
        servers.append(server)
        info["nginx_version"] = nginx_features(args.nginx).splitlines()[0].split(": ", 1)[-1]
    if WSGIDAV in args.servers:
        server, roots[WSGIDAV] = start_wsgidav(work, ports)
        servers.append(server)
    bench = Bench(args, work, servers, roots, info=info)
    bench.info["loadavg_start"] = tuple(round(x, 2) for x in os.getloadavg())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    source = None
    if "upload" in args.only or "download" in args.only:
        source = make_big_file(work / "big.bin", args.size_mib * MIB)
    bodies = ([os.urandom(SMALL_FILE_BYTES) for _ in range(args.files)]
              if {"small", "small_get"} & set(args.only) else [])
    if "propfind" in args.only:
        for server in servers:
            print(f"  making {args.entries} entries on {server.name}", flush=True)
            bench.populate(server)
    for round_no in range(args.repeat):
        for group in args.only:
            for server in interleaved(servers, round_no):
                print(f"  [{time.strftime('%H:%M:%S')}] round {round_no + 1}: {group} on {server.name}", flush=True)
                if group == "upload":
                    assert source is not None
                    bench.upload(server, source)
                elif group == "download":
                    assert source is not None
                    if round_no == 0 and "upload" not in args.only:
                        bench.upload(server, source, timed=False)  # something to download
                    bench.download(server, source, verify=round_no == 0)
                elif group == "small":
                    bench.small(server, round_no, bodies)
                elif group == "small_get":
                    if "small" not in args.only:
                        bench.small(server, round_no, bodies)  # something to read (also timed: see --only)
                    bench.small_get(server, round_no, bodies, verify=round_no == 0)
                else:
                    bench.propfind(server, check=round_no == 0)
                server.check_alive()
    bench.info["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    return bench, results(bench)


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    signal.signal(signal.SIGHUP, raise_on_sigterm)
    try:
        check_prerequisites(args)
    except BenchError as exc:
        print(f"webdav_bench: {exc}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="xferd-webdav-bench-", dir=args.tmpfs))
    servers: list[Server] = []
    print(f"work directory {work}", flush=True)
    try:
        bench, rows = run(args, work, servers)
        print_results(bench, rows)
        if args.json:
            Path(args.json).write_text(json.dumps({"info": bench.info, "results": rows}, indent=2) + "\n")
            print(f"JSON written to {args.json}")
        return 0
    except BenchError as exc:
        print(f"\nwebdav_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nwebdav_bench: interrupted; servers stopped and work directory removed", file=sys.stderr)
        return 130
    finally:
        for server in servers:
            if server.name == XFERD:
                print(f"\nxferd log ({server.log_path}, level warning), by event:")
                # The startup announcement shares the file; summarize_log knows only the SFTP lines of it.
                lines = [line for line in summarize_log(server.log_path)
                         if not re.match(r"  other: +https? listening on ", line)]
                for line in lines or ["  (empty)"]:
                    print(line)
        for server in servers:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
