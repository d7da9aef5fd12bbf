"""SFTP benchmark: xferd against OpenSSH sshd (internal-sftp), side by side, in one run.

Both servers run on loopback with their files on a fresh tmpfs directory, and both are driven by
the same OpenSSH ``sftp`` client in batch mode, so the client's cost is identical and only the server
differs. Timed spans are measured *inside* the sftp session, between two ``!echo MARK $(date)``
shell escapes, so SSH key exchange and login are not part of a transfer figure (the login cost is
reported separately). Runs are interleaved (xferd, OpenSSH, xferd, ...) so that noise from other
work on a shared machine hits both servers alike.

Run from the repository root::

    .venv/bin/python bench/sftp_bench.py                      # defaults: 1 GiB, 1000 files, 10k entries
    .venv/bin/python bench/sftp_bench.py --size-mib 256 --files 300 --entries 3000 --sessions 50
    .venv/bin/python bench/sftp_bench.py --only upload,download --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncssh

MIB = 1024 * 1024
MB = 1_000_000  # throughput is in decimal MB/s, like the peer figures in the design notes
SMALL_FILE_BYTES = 4096
PORT_RANGE = (20000, 32000)  # ports above 32767 are the kernel's ephemeral range here
MARK = "XFERD-BENCH-MARK"
GCM = "aes128-gcm@openssh.com"
GROUPS = ("sessions", "list", "small", "upload", "download")
XFERD = "xferd"
OPENSSH = "OpenSSH"
SERVER_NAMES = (XFERD, OPENSSH)
# Few concurrent logins: OpenSSH's MaxStartups and both servers' CPU would otherwise turn the idle-session
# test into a login-storm test.
LOGIN_CONCURRENCY = 8
# Outstanding requests when populating the listing directory: enough to hide round trips.
POPULATE_CONCURRENCY = 64


class BenchError(Exception):
    """A step failed; the message says which server and what it printed."""


# ---------------------------------------------------------------------------------------------- processes


def read_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields are counted after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def process_tree(root: int) -> list[tuple[int, int]]:
    """``root`` and all its descendants as (pid, start time); the start time guards against pid reuse."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = read_stat(int(entry))
        if info is not None:
            parents.setdefault(info[0], []).append((int(entry), info[1]))
    root_info = read_stat(root)
    if root_info is None:
        return []
    out = [(root, root_info[1])]
    queue = [root]
    while queue:
        for child in parents.get(queue.pop(), []):
            out.append(child)
            queue.append(child[0])
    return out


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` value from /proc/<pid>/status (VmRSS) or smaps_rollup (Pss); 0 when the process is gone."""
    source = "smaps_rollup" if key == "Pss" else "status"
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def signal_if_same(pid: int, started: int, sig: int) -> None:
    """Signal a process we started, unless it is gone or its pid now belongs to another process."""
    info = read_stat(pid)
    if info is not None and info[1] == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def free_port(taken: set[int]) -> int:
    """A loopback port in the allowed range that nobody listens on right now."""
    for port in range(PORT_RANGE[0] + os.getpid() % 5000, PORT_RANGE[1]):
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise BenchError(f"no free port in {PORT_RANGE}")


def run_tool(cmd: Sequence[str], what: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------- servers


def check_running(name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Raise BenchError, with the log's tail, if a server under test has exited."""
    code = proc.poll()
    if code is None:
        return
    # The servers exit 0 only when told to stop, which a bench does only in stop_tree().
    hint = " (a clean stop: something else told it to stop)" if code == 0 else ""
    if code < 0:
        hint = f" (killed by {signal.Signals(-code).name})"
    raise BenchError(f"{name} exited with {code}{hint}; log tail:\n{tail(log_path)}")


def spawn_reference(script: str, args: Sequence[str], password: str,
                    base: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``script`` (a reference server beside this file) with ``args``, the password on its
    stdin and its output in ``base``/stderr.log; returns the process and that log's path."""
    log_path = base / "stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name(script)), *args],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    assert proc.stdin is not None
    proc.stdin.write(password.encode() + b"\n")
    proc.stdin.close()
    return proc, log_path


def stop_tree(proc: subprocess.Popen[bytes], wait: float = 20.0, terminate_children: bool = False) -> None:
    """SIGTERM a server, SIGKILL it if it outlives ``wait``, then end every process it started
    (with SIGTERM and a moment's grace first when ``terminate_children``, else at once with SIGKILL)."""
    if proc.poll() is not None:
        return
    # Taken before the server dies: its children are re-parented to init after that.
    tree = process_tree(proc.pid)
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if terminate_children:
        for pid, started in tree[1:]:
            signal_if_same(pid, started, signal.SIGTERM)
        time.sleep(0.2)
    for pid, started in tree[1:]:
        signal_if_same(pid, started, signal.SIGKILL)


@dataclass
class Server:
    """A server under test: how to reach it and which processes are its own."""

    name: str
    port: int
    user: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_wait: float = 20.0

    def memory_kib(self) -> tuple[int, int]:
        """(RSS, PSS) summed over the server's processes: sshd forks per connection, xferd does not."""
        pids = [pid for pid, _ in process_tree(self.proc.pid)]
        return sum(status_kib(p, "VmRSS") for p in pids), sum(status_kib(p, "Pss") for p in pids)

    def check_alive(self) -> None:
        check_running(self.name, self.proc, self.log_path)

    def stop(self) -> None:
        """SIGTERM the listener and every process it forked, then SIGKILL what is left."""
        stop_tree(self.proc, self.stop_wait, terminate_children=True)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Until the port answers with an SSH banner (xferd generates an RSA host key on first start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer on port {server.port} within {timeout:.0f} s")


def xferd_config(data_dir: Path, port: int, sessions: int, overrides: Sequence[str]) -> str:
    # Storage fsync and SQLite synchronous=full stay at their defaults (what operators run); on tmpfs
    # an fsync costs next to nothing. The per-user session cap must admit the idle-session test.
    return render_config(data_dir, {
        "log": {"level": "warning", "format": "json"},
        "sftp": {"addresses": ["127.0.0.1"], "port": port, "max_sessions_per_user": sessions + 16},
        # Only the frontend under test: the others would take their fixed default ports.
        "ftp": {"enabled": False},
        "webdav": {"enabled": False},
        "daemon": {"shutdown_grace": 2.0},  # cleanup must not wait 30 s for a transfer the bench abandoned
    }, overrides)


def render_config(data_dir: Path, tables: dict[str, dict[str, Any]], overrides: Sequence[str]) -> str:
    """An xferd config file: ``tables`` by section, then each ``--xferd-set`` override on top."""
    for item in overrides:
        section, key, value = parse_override(item)
        tables.setdefault(section, {})[key] = value
    lines = [f"data_dir = {json.dumps(str(data_dir))}"]
    for section, values in tables.items():
        lines.append(f"[{section}]")
        # JSON spells strings, numbers, booleans and lists of strings the way TOML does.
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def parse_override(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` where value is a TOML value; a bare word is taken as a string."""
    name, sep, text = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise BenchError(f"--xferd-set {item!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, key, value


def start_xferd(work: Path, port: int, pubkey: Path, sessions: int, overrides: Sequence[str]) -> Server:
    base = work / "xferd"
    base.mkdir()
    config = base / "xferd.toml"
    config.write_text(xferd_config(base / "data", port, sessions, overrides))
    run_tool([sys.executable, "-m", "xferd", "user", "add", "bench", "--key", str(pubkey), "--config", str(config)],
             "xferd user add", cwd=base)
    log_path = base / "xferd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "xferd", "serve", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base)
    server = Server(XFERD, port, "bench", proc, log_path)
    wait_ready(server)
    return server


def sshd_config(base: Path, port: int, root: Path) -> str:
    # A private test instance: root may log in by key only, and is held to internal-sftp started in the
    # tmpfs directory. ChrootDirectory is not used because /dev/shm is world-writable, which sshd refuses.
    return "\n".join([
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {base / 'ssh_host_ed25519_key'}",
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "MaxStartups 100:30:400",
        "LogLevel INFO",
        "Subsystem sftp internal-sftp",
        f"ForceCommand internal-sftp -d {root}",
        "",
    ])


def start_sshd(work: Path, port: int, pubkey: Path, sshd: str) -> Server:
    base = work / "sshd"
    root = base / "root"
    root.mkdir(parents=True)
    run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "ssh_host_ed25519_key")],
             "ssh-keygen (sshd host key)")
    shutil.copyfile(pubkey, base / "authorized_keys")
    config = base / "sshd_config"
    config.write_text(sshd_config(base, port, root))
    # sshd insists on its privilege separation directory even when run by hand.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run_tool([sshd, "-t", "-f", str(config)], "sshd -t (config check)")
    log_path = base / "sshd.log"
    proc = subprocess.Popen([sshd, "-D", "-f", str(config), "-E", str(log_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(OPENSSH, port, "root", proc, log_path, stop_wait=10.0)
    wait_ready(server)
    return server


# ---------------------------------------------------------------------------------------------- sftp client


@dataclass
class Client:
    """The OpenSSH sftp client, configured identically for both servers."""

    work: Path
    key: Path
    counter: int = 0

    def command(self, server: Server, batch: Path, cipher: str | None, verbose: bool) -> list[str]:
        cmd = ["sftp", "-b", str(batch), "-F", "/dev/null", "-P", str(server.port), "-i", str(self.key),
               "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "PasswordAuthentication=no", "-o", "ControlMaster=no"]
        cmd += ["-c", cipher] if cipher else []
        cmd += ["-v"] if verbose else ["-o", "LogLevel=ERROR"]
        return [*cmd, f"{server.user}@127.0.0.1"]

    def run(self, server: Server, lines: Sequence[str], cipher: str | None = None, timeout: float = 600.0,
            verbose: bool = False) -> BatchResult:
        """Run one sftp session; a failing command aborts the batch (sftp -b) and raises here."""
        self.counter += 1
        batch = self.work / f"batch-{self.counter}.txt"
        batch.write_text("\n".join(lines) + "\n")
        # sftp runs '!' escapes through $SHELL: pin it so that $(date ...) means the same everywhere.
        env = {**os.environ, "SHELL": "/bin/sh", "LC_ALL": "C"}
        started = time.perf_counter()
        try:
            proc = subprocess.run(self.command(server, batch, cipher, verbose), capture_output=True, text=True,
                                  timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{server.name}: sftp session timed out after {timeout:.0f} s") from exc
        finally:
            batch.unlink()
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            server.check_alive()
            raise BenchError(f"{server.name}: sftp exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        marks = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith(MARK + " ")]
        return BatchResult(wall, marks, proc.stdout, proc.stderr)

    def timed(self, server: Server, setup: Sequence[str], body: Sequence[str], cipher: str | None = None,
              timeout: float = 600.0) -> tuple[float, BatchResult]:
        """Seconds spent in ``body`` only, measured inside the session (no handshake, no login)."""
        mark = f"!echo {MARK} $(date +%s.%N)"
        result = self.run(server, [*setup, mark, *body, mark], cipher, timeout)
        if len(result.marks) != 2:
            raise BenchError(f"{server.name}: expected 2 time marks in sftp output, got {len(result.marks)}")
        return result.marks[1] - result.marks[0], result


@dataclass
class BatchResult:
    wall: float
    marks: list[float]
    stdout: str
    stderr: str


def negotiated(stderr: str) -> dict[str, str]:
    """Key exchange, cipher and MAC from ``sftp -v`` output."""
    out: dict[str, str] = {}
    for line in stderr.splitlines():
        if "kex: algorithm:" in line:
            out["kex"] = line.split("kex: algorithm:")[1].strip()
        elif "kex: server->client cipher:" in line:
            parts = line.split("cipher:")[1].split()
            out["cipher"] = parts[0]
            out["mac"] = parts[2] if len(parts) > 2 else "?"
    return out


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    goal_kind: str = ""  # "ratio_min", "ratio_max" (on time) or "abs_max" (on xferd's own figure)
    goal: float = 0.0
    # Memory takes the worst run: later runs reuse heap that earlier sessions freed, so they read low.
    worst_case: bool = False

    def goal_text(self) -> str:
        if self.goal_kind == "ratio_min":
            return f"ratio >= {self.goal:g}"
        if self.goal_kind == "ratio_max":
            return f"time ratio <= {self.goal:g}"
        if self.goal_kind == "abs_max":
            return f"xferd <= {self.goal:g} {self.unit}"
        return ""

    def passes(self, ours: float, theirs: float) -> bool | None:
        if self.goal_kind == "abs_max":
            return ours <= self.goal
        if not self.goal_kind or theirs <= 0:
            return None
        ratio = ours / theirs
        return ratio >= self.goal if self.goal_kind == "ratio_min" else ratio <= self.goal


@dataclass
class Results:
    metrics: list[Metric] = field(default_factory=list)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: Metric, server: str, value: float) -> None:
        if metric.key not in self.samples:
            self.metrics.append(metric)
            self.samples[metric.key] = {name: [] for name in SERVER_NAMES}
        self.samples[metric.key][server].append(value)

    def value(self, key: str, server: str) -> float | None:
        values = self.samples[key][server]
        if not values:
            return None
        metric = next(m for m in self.metrics if m.key == key)
        return max(values) if metric.worst_case else statistics.median(values)

    def as_json(self) -> dict[str, Any]:
        rows = []
        for m in self.metrics:
            ours, theirs = self.value(m.key, XFERD), self.value(m.key, OPENSSH)
            rows.append({
                "metric": m.key, "label": m.label, "unit": m.unit, "higher_is_better": m.higher_is_better,
                "samples": self.samples[m.key], "aggregate": "max" if m.worst_case else "median",
                "value": {XFERD: ours, OPENSSH: theirs},
                "ratio": ours / theirs if ours is not None and theirs else None,
                "goal": m.goal_text() or None,
                "pass": m.passes(ours, theirs) if ours is not None and theirs is not None else None,
            })
        return {"info": self.info, "results": rows}


def cipher_label(cipher: str | None) -> str:
    return "default cipher" if cipher is None else cipher.split("@")[0]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def render_table(results: Results) -> str:
    header = ["metric", "unit", XFERD, OPENSSH, "ratio (xferd/OpenSSH)", "goal", "met"]
    rows = [header]
    for m in results.metrics:
        ours, theirs = results.value(m.key, XFERD), results.value(m.key, OPENSSH)
        ratio = "-"
        if ours is not None and theirs:
            ratio = f"{ours / theirs:.2f}" + ("" if m.higher_is_better else " (time)")
            if m.unit.startswith("KiB"):
                ratio = f"{ours / theirs:.2f} (memory)"
        verdict = m.passes(ours, theirs) if ours is not None and theirs is not None else None
        met = {True: "yes", False: "NO", None: ""}[verdict]
        rows.append([m.label, m.unit, fmt(ours, m.unit), fmt(theirs, m.unit), ratio, m.goal_text(), met])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- measurements


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    client: Client
    servers: list[Server]
    results: Results

    def interleaved(self) -> Iterator[tuple[int, Server]]:
        """Every repeat visits both servers, alternating which goes first."""
        for r in range(self.args.repeat):
            order = self.servers if r % 2 == 0 else list(reversed(self.servers))
            for server in order:
                yield r, server

    def transfer_timeout(self) -> float:
        return 120.0 + self.args.size_mib * MIB / (2 * MB)  # generous: assumes >= 2 MB/s

    # --- login probe: negotiated algorithms, and what a session costs before any transfer

    def probe(self) -> None:
        for cipher in self.ciphers():
            for server in self.servers:
                result = self.client.run(server, ["pwd"], cipher, verbose=True)
                algs = negotiated(result.stderr)
                self.results.info.setdefault("negotiated", {}).setdefault(server.name, {})[
                    cipher_label(cipher)] = algs
        for _, server in self.interleaved():
            result = self.client.run(server, ["pwd"])
            self.results.add(Metric("login", "login session (connect, auth, pwd, quit)", "s", False),
                             server.name, result.wall)

    def ciphers(self) -> list[str | None]:
        return [None, GCM]

    # --- (e) idle sessions

    def idle_sessions(self) -> None:
        rss = Metric("idle_rss", f"idle session memory, RSS ({self.args.sessions} sessions)", "KiB/session",
                     False, "abs_max", 64, worst_case=True)
        pss = Metric("idle_pss", f"idle session memory, PSS ({self.args.sessions} sessions)", "KiB/session",
                     False, worst_case=True)
        for _, server in self.interleaved():
            grown_rss, grown_pss = asyncio.run(hold_sessions(server, self.client.key, self.args.sessions))
            self.results.add(rss, server.name, grown_rss / self.args.sessions)
            self.results.add(pss, server.name, grown_pss / self.args.sessions)
            time.sleep(1.0)  # let sshd reap the closed sessions before the next measurement

    # --- (d) listing

    def listing(self) -> None:
        metric = Metric("list", f"ls -l of {self.args.entries} entries", "s", False, "ratio_max", 1.5)
        for server in self.servers:
            started = time.perf_counter()
            asyncio.run(populate(server, self.client.key, "listing", self.args.entries))
            self.results.info.setdefault("populate_seconds", {})[server.name] = time.perf_counter() - started
        for _, server in self.interleaved():
            seconds, result = self.client.timed(server, [], ["ls -l listing"])
            listed = sum(1 for line in result.stdout.splitlines()
                         if line and not line.startswith(("sftp>", MARK)))
            if listed < self.args.entries:
                raise BenchError(f"{server.name}: ls -l showed {listed} of {self.args.entries} entries")
            self.results.add(metric, server.name, seconds)

    # --- (c) small files

    def small_files(self) -> None:
        metric = Metric("small", f"{self.args.files} x 4 KiB uploads, one put each", "files/s", True,
                        "ratio_min", 0.6)
        local = make_small_files(self.work / "client" / "small", self.args.files)
        names = sorted(p.name for p in local.iterdir())
        for r, server in self.interleaved():
            remote = f"small{r}"
            body = [f"put {local / n} {remote}/{n}" for n in names]
            seconds, _ = self.client.timed(server, [f"mkdir {remote}"], body)
            self.results.add(metric, server.name, len(names) / seconds)

    # --- (a) and (b) throughput

    def throughput(self, upload: bool, download: bool) -> None:
        source = make_big_file(self.work / "client" / "big.bin", self.args.size_mib * MIB)
        for cipher in self.ciphers():
            label = cipher_label(cipher)
            up = Metric(f"upload[{label}]", f"upload {self.args.size_mib} MiB, {label}", "MB/s", True,
                        "ratio_min", 1.0)
            down = Metric(f"download[{label}]", f"download {self.args.size_mib} MiB, {label}", "MB/s", True,
                          "ratio_min", 0.8)
            # An upload always happens (untimed figures are dropped) because the download needs the file.
            for r, server in self.interleaved():
                if r > 0 and not upload:
                    continue
                seconds, _ = self.client.timed(server, [], [f"put {source} big.bin"], cipher,
                                               self.transfer_timeout())
                if upload:
                    self.results.add(up, server.name, source.stat().st_size / MB / seconds)
            if download:
                self.downloads(source, cipher, down)
        source.unlink()
        for server in self.servers:
            self.client.run(server, ["rm big.bin"])

    def downloads(self, source: Path, cipher: str | None, metric: Metric) -> None:
        target = self.work / "client" / "down.bin"
        for r, server in self.interleaved():
            seconds, _ = self.client.timed(server, [], [f"get big.bin {target}"], cipher,
                                           self.transfer_timeout())
            # Check the bytes once per server and cipher: a fast wrong download is not a result.
            if r == 0:
                verify_copy(source, target, server.name)
            self.results.add(metric, server.name, source.stat().st_size / MB / seconds)
            target.unlink()


def verify_copy(source: Path, copy: Path, server: str) -> None:
    if copy.stat().st_size != source.stat().st_size:
        raise BenchError(f"{server}: downloaded {copy.stat().st_size} bytes, expected {source.stat().st_size}")
    if subprocess.run(["cmp", "-s", str(source), str(copy)], check=False).returncode != 0:
        raise BenchError(f"{server}: downloaded bytes differ from the uploaded file")


def make_big_file(path: Path, size: int) -> Path:
    # Random bytes so nothing on the path can compress them; a 16 MiB pattern repeated is random enough
    # for that and much faster to make than `size` fresh random bytes.
    chunk = os.urandom(16 * MIB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[:left])
            left -= len(chunk)
    return path


def make_small_files(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"f{i:05d}").write_bytes(os.urandom(SMALL_FILE_BYTES))
    return directory


async def connect(server: Server, key: Path) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", server.port, username=server.user, client_keys=[str(key)],
                                  known_hosts=None, agent_path=None, config=None)


async def populate(server: Server, key: Path, directory: str, count: int) -> None:
    """Create ``count`` empty files over SFTP (untimed): xferd's tree lives in its metadata store, so
    files made behind its back would not exist; the same path is used for OpenSSH to keep it even."""
    async with await connect(server, key) as conn, conn.start_sftp_client() as sftp:
        await sftp.mkdir(directory)
        limit = asyncio.Semaphore(POPULATE_CONCURRENCY)

        async def create(i: int) -> None:
            async with limit, await sftp.open(f"{directory}/e{i:05d}", "w"):
                pass

        await asyncio.gather(*(create(i) for i in range(count)))


async def hold_sessions(server: Server, key: Path, count: int) -> tuple[int, int]:
    """Server memory growth (RSS, PSS in KiB) with ``count`` logged-in connections, each with an open SFTP
    channel, sitting idle."""
    before = server.memory_kib()
    limit = asyncio.Semaphore(LOGIN_CONCURRENCY)
    conns: list[asyncssh.SSHClientConnection] = []
    clients: list[asyncssh.SFTPClient] = []  # held so that nothing closes a channel early

    async def open_one() -> None:
        async with limit:
            conn = await connect(server, key)
            conns.append(conn)
            clients.append(await conn.start_sftp_client())

    try:
        outcomes = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise BenchError(f"{server.name}: {len(failures)} of {count} sessions failed, first: {failures[0]!r}")
        await asyncio.sleep(1.0)  # let the server finish whatever it does after the SFTP init exchange
        after = server.memory_kib()
    finally:
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
    return after[0] - before[0], after[1] - before[1]


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark xferd's SFTP against OpenSSH sshd (internal-sftp).")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the throughput file (default 1024)")
    parser.add_argument("--files", type=int, default=1000, help="number of 4 KiB files (default 1000)")
    parser.add_argument("--entries", type=int, default=10000, help="entries in the listed directory (default 10000)")
    parser.add_argument("--sessions", type=int, default=200, help="idle sessions held open (default 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is reported")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma list of measurements to run, from {','.join(GROUPS)} (default all)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--tmpfs", default="/dev/shm", help="tmpfs directory for all files (default /dev/shm)")
    parser.add_argument("--sshd", default="/usr/sbin/sshd", help="the sshd binary (default /usr/sbin/sshd)")
    parser.add_argument("--xferd-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra xferd config key, e.g. storage.fsync=false (repeatable; for experiments)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) for inspection")
    args = parser.parse_args(argv)
    args.groups = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = args.groups - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    for name in ("size_mib", "files", "entries", "sessions", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def environment_info(args: argparse.Namespace) -> dict[str, Any]:
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    return {
        "options": {k: v for k, v in vars(args).items() if k != "groups"},
        "python": platform.python_version(), "asyncssh": asyncssh.__version__, "openssh": ssh_version,
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
    }


def check_space(args: argparse.Namespace) -> None:
    """Throughput needs the source, a downloaded copy and each server's copy (xferd's replaced blobs
    wait for its garbage collector, one per upload)."""
    if not args.groups & {"upload", "download"}:
        return
    need = args.size_mib * MIB * (4 + 2 * args.repeat)
    free = shutil.disk_usage(args.tmpfs).free
    if free < need:
        raise BenchError(f"{args.tmpfs} has {free // MIB} MiB free, the throughput runs need about {need // MIB}")


def wait_freed(folder: Path, free_before: int, nbytes: int, settle: float = 0.0, timeout: float = 30.0) -> None:
    """Until the tmpfs under ``folder`` has about ``nbytes`` more free than ``free_before``: a deleted
    copy's pages are back (xferd's collector frees a replaced blob a few seconds after the DELETE).

    Before each timed upload both servers' earlier copies are deleted this way and the upload starts
    at once. In a virtual machine that hands free memory back to the host (virtio-balloon free page
    reporting, about 2 s after a page is freed), writing into pages the guest freed a moment ago
    costs 0.55 s per GiB here, and into pages handed back 1.5-2 s: measured with dd on this tmpfs.
    A server that truncates its target at the start of an upload (vsftpd) would otherwise get warm
    pages, and one that writes a new file and frees the old one later (xferd, nginx) cold ones.
    ``settle`` seconds more after that make both write into pages the host has taken back instead.
    """
    deadline = time.monotonic() + timeout
    while shutil.disk_usage(folder).free < free_before + nbytes * 0.9:
        if time.monotonic() > deadline:
            raise BenchError(f"the deleted copy's {nbytes // MIB} MiB were not freed within {timeout:.0f} s")
        time.sleep(0.02)
    time.sleep(settle)


def summarize_log(path: Path) -> list[str]:
    """xferd's log lines grouped by event and outcome, with a count and one example each: a warning
    repeated per request would otherwise bury everything else."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ["(no log)"]
    groups: dict[tuple[str, str, str], tuple[int, str]] = {}
    other: list[str] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            # The startup announcement goes to stdout, which shares the file; anything else is news.
            if line.strip() and not line.startswith(("xferd ", "  sftp listening", "  host key")):
                other.append(line)
            continue
        key = (str(record.get("level")), str(record.get("event")), str(record.get("outcome", "")))
        count, example = groups.get(key, (0, line))
        groups[key] = (count + 1, example)
    out = [f"{count:6d} x {level} {event} {outcome}".rstrip() + f"\n         e.g. {example[:300]}"
           for (level, event, outcome), (count, example) in sorted(groups.items(), key=lambda kv: -kv[1][0])]
    return out + [f"  other: {line[:300]}" for line in other[:20]]


def report_logs(servers: Sequence[Server]) -> None:
    for server in servers:
        if server.name == XFERD:
            print(f"\nxferd log ({server.log_path}, level warning), by event:")
            for line in summarize_log(server.log_path) or ["  (empty)"]:
                print(line)


def run(args: argparse.Namespace, work: Path, servers: list[Server]) -> Results:
    client_dir = work / "client"
    client_dir.mkdir()
    key = client_dir / "id_ed25519"
    run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen (client key)")
    pubkey = key.with_suffix(".pub")
    ports: set[int] = set()
    servers.append(start_xferd(work, free_port(ports), pubkey, args.sessions, args.xferd_set))
    servers.append(start_sshd(work, free_port(ports), pubkey, args.sshd))
    results = Results(info=environment_info(args))
    bench = Bench(args, work, Client(client_dir, key), servers, results)
    # Order matters: idle sessions first, on servers that have only served the login probe, because
    # a Python process that already moved a gigabyte keeps that heap and would hide new allocations.
    steps: list[tuple[str, Callable[[], None]]] = [("login probe", bench.probe)]
    if "sessions" in args.groups:
        steps.append(("idle sessions", bench.idle_sessions))
    if "list" in args.groups:
        steps.append(("listing", bench.listing))
    if "small" in args.groups:
        steps.append(("small files", bench.small_files))
    if args.groups & {"upload", "download"}:
        steps.append(("throughput", lambda: bench.throughput("upload" in args.groups, "download" in args.groups)))
    for title, step in steps:
        started = time.monotonic()
        step()
        print(f"[{time.strftime('%H:%M:%S')}] {title}: {time.monotonic() - started:.1f} s", flush=True)
        for server in servers:
            server.check_alive()
    results.info["loadavg_end"] = os.getloadavg()
    return results


def print_results(results: Results, args: argparse.Namespace) -> None:
    print(f"\nResults (median of {args.repeat} run(s), memory rows the largest; loopback, tmpfs, "
          "OpenSSH sftp client for both):\n")
    print(render_table(results))
    for server, by_cipher in results.info.get("negotiated", {}).items():
        text = "; ".join(f"{label}: {a.get('cipher', '?')}/{a.get('mac', '?')}, kex {a.get('kex', '?')}"
                         for label, a in by_cipher.items())
        print(f"  {server} negotiated  {text}")
    for server, seconds in results.info.get("populate_seconds", {}).items():
        print(f"  {server}: creating the listed directory's entries (untimed, asyncssh client, "
              f"{POPULATE_CONCURRENCY} requests in flight) took {seconds:.1f} s")
    print("\nGoals: upload ratio >= 1.0, download ratio >= 0.8, small files ratio >= 0.6, listing time ratio "
          "<= 1.5, idle session <= 64 KiB per session (xferd, absolute).")
    print("Times exclude SSH handshake and login (measured inside the session); 'time' ratios: lower is better.")
    print(f"Load average at start {results.info['loadavg_start']}, at end {results.info['loadavg_end']}.")


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    signal.signal(signal.SIGHUP, raise_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="xferd-bench-", dir=args.tmpfs))
    servers: list[Server] = []
    print(f"work directory {work}", flush=True)
    try:
        check_space(args)
        results = run(args, work, servers)
        print_results(results, args)
        if args.json:
            Path(args.json).write_text(json.dumps(results.as_json(), indent=2) + "\n")
            print(f"JSON written to {args.json}")
        return 0
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        report_logs(servers)
        for server in servers:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
