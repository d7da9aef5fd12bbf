"""FTP benchmark: xferd against vsftpd, plain FTP and explicit FTPS, side by side, in one run.

Both servers run on loopback with their files on a fresh tmpfs directory and the same certificate,
and both are driven by the same client, curl, so only the server differs. A bare pyftpdlib server
(``ftp_reference.py``: the library xferd's FTP frontend is built on, serving a plain directory)
runs beside them as a reference unless ``--no-reference``; its column shows how much of xferd's
distance to vsftpd is the library's own. The goals compare xferd with vsftpd only.

- a 1 GiB upload and download (``curl -T`` / ``curl -o /dev/null``; the first download is
  compared with the source);
- N x 4 KiB uploads over one control connection (lftp ``mput``: one EPSV + STOR per file);
- a LIST of a directory of M entries (filled beforehand, untimed; lftp ``ls``); MLSD too for
  xferd (lftp ``cls``; vsftpd has no MLSD).

curl measures the 1 GiB transfers by its own clock, after the login. lftp drives the small files
and the listing, because curl 7.88 stalls for one second on some transfers when a server answers
EPSV or PASV very quickly (its data connect waits for the next poll timeout); its figure is the
wall time minus that of an lftp session that only logs in.

Runs are interleaved (xferd, vsftpd, then vsftpd, xferd, ...) so that noise from other work on a
shared machine hits both alike. Run as root from the repository root (vsftpd needs root, and its
anonymous upload directory is chowned to the ``ftp`` user)::

    .venv/bin/python bench/ftp_bench.py
    .venv/bin/python bench/ftp_bench.py --size-mib 256 --files 300 --entries 3000     # quick
    .venv/bin/python bench/ftp_bench.py --only upload,download --modes ftps --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ftplib
import json
import os
import pwd
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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sftp_bench import BenchError, check_running, render_config, spawn_reference, stop_tree, wait_freed

MIB = 1024 * 1024
MB = 1_000_000
PORT_RANGE = (20000, 32000)  # ports above 32767 are the kernel's ephemeral range here
PASSWORD = "bench password"  # noqa: S105 - a throwaway user on a loopback-only test server
GROUPS = ("upload", "download", "small", "list")
MODES = ("plain", "ftps")
XFERD, VSFTPD, PYFTPDLIB = "xferd", "vsftpd", "pyftpdlib"
# (group, goal kind, goal) per mode: the goals, xferd/vsftpd in the same run.
GOALS = {("upload", "plain"): ("min", 0.9), ("download", "plain"): ("min", 0.9),
         ("upload", "ftps"): ("min", 1.5), ("download", "ftps"): ("min", 1.5),
         ("small", "plain"): ("min", 0.8), ("list", "plain"): ("max", 1.5)}


# -------------------------------------------------------------------------------------------- servers


class Ports:
    def __init__(self) -> None:
        self.next = PORT_RANGE[0] + os.getpid() % 5000

    def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive ports nobody listens on."""
        while self.next + count < PORT_RANGE[1]:
            start, self.next = self.next, self.next + count
            if all(_free(p) for p in range(start, start + count)):
                return start
        raise BenchError(f"no {count} free ports in {PORT_RANGE}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Server:
    name: str
    port: int
    user: str
    password: str
    prefix: str  # where the user may write ("" for xferd's home, "pub/" for vsftpd's anonymous upload dir)
    proc: subprocess.Popen[bytes]
    log_path: Path

    def check_alive(self) -> None:
        check_running(self.name, self.proc, self.log_path)

    def stop(self) -> None:
        """SIGTERM the server and what it forked (vsftpd forks per connection), then SIGKILL the rest."""
        stop_tree(self.proc)

    def url(self, path: str) -> str:
        return f"ftp://127.0.0.1:{self.port}/{self.prefix}{path}"


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            if sock.recv(64).startswith(b"220"):
                return
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not greet on port {server.port} within {timeout:.0f} s")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """One self-signed ECDSA P-256 certificate for both servers (the kind xferd generates)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def start_xferd(work: Path, ports: Ports, cert: Path, key: Path, overrides: Sequence[str]) -> Server:
    base = work / "xferd"
    base.mkdir()
    port, passive = ports.take(), ports.take(100)
    config = base / "xferd.toml"
    config.write_text(render_config(base / "data", {
        "log": {"level": "warning", "format": "json"},
        # Only the frontend under test: the others would take their fixed default ports.
        "sftp": {"enabled": False},
        "webdav": {"enabled": False},
        "ftp": {"addresses": ["127.0.0.1"], "port": port, "implicit_tls_port": 0,
                "passive_ports": f"{passive}-{passive + 99}", "tls_cert": str(cert), "tls_key": str(key)},
        # Each 1 GiB upload replaces the last; collect replaced blobs soon so the tmpfs does not fill.
        "gc": {"interval": 1.0, "grace": 0.0},
        "daemon": {"shutdown_grace": 2.0},
    }, overrides))
    subprocess.run([sys.executable, "-m", "xferd", "user", "add", "bench", "--password-stdin", "--config",
                    str(config)], input=PASSWORD + "\n", text=True, capture_output=True, check=True, cwd=base)
    log_path = base / "xferd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "xferd", "serve", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base)
    server = Server(XFERD, port, "bench", PASSWORD, "", proc, log_path)
    wait_ready(server)
    return server


def start_pyftpdlib(work: Path, ports: Ports, cert: Path, key: Path) -> Server:
    """The bare pyftpdlib reference (ftp_reference.py) over a plain directory."""
    base = work / "pyftpdlib"
    root = base / "root"
    root.mkdir(parents=True)
    port, passive = ports.take(), ports.take(100)
    proc, log_path = spawn_reference("ftp_reference.py", [
        "--port", str(port), "--passive", f"{passive}-{passive + 99}", "--root", str(root), "--cert", str(cert),
        "--key", str(key), "--user", "bench", "--password-stdin"], PASSWORD, base)
    server = Server(PYFTPDLIB, port, "bench", PASSWORD, "", proc, log_path)
    wait_ready(server)
    return server


def start_vsftpd(work: Path, ports: Ports, cert: Path, key: Path, binary: str) -> Server:
    """vsftpd standalone, anonymous logins writing to root/pub (vsftpd refuses a writable chroot root)."""
    try:
        ftp_user = pwd.getpwnam("ftp")
    except KeyError:
        raise BenchError("vsftpd's anonymous user 'ftp' does not exist (apt-get install vsftpd creates it)") \
            from None
    base = work / "vsftpd"
    root = base / "root"
    (root / "pub").mkdir(parents=True)
    root.chmod(0o555)
    os.chown(root / "pub", ftp_user.pw_uid, ftp_user.pw_gid)
    port, passive = ports.take(), ports.take(100)
    settings = {
        "listen": "YES", "listen_ipv6": "NO", "listen_address": "127.0.0.1", "listen_port": port,
        "background": "NO", "anonymous_enable": "YES", "local_enable": "NO", "write_enable": "YES",
        "anon_root": root, "anon_upload_enable": "YES", "anon_mkdir_write_enable": "YES",
        "anon_other_write_enable": "YES", "anon_umask": "022", "no_anon_password": "YES",
        "pasv_min_port": passive, "pasv_max_port": passive + 99, "xferlog_enable": "NO",
        # Containers often refuse the namespaces and seccomp filter vsftpd sets up by default.
        "seccomp_sandbox": "NO", "isolate": "NO", "isolate_network": "NO",
        "max_clients": 500, "max_per_ip": 500,
        "ssl_enable": "YES", "allow_anon_ssl": "YES", "force_anon_logins_ssl": "NO", "force_anon_data_ssl": "NO",
        "rsa_cert_file": cert, "rsa_private_key_file": key,
        "ssl_ciphers": "HIGH",  # the built-in default is DES-CBC3-SHA, which current OpenSSL refuses
        "vsftpd_log_file": base / "vsftpd.log",
    }
    config = base / "vsftpd.conf"
    config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)  # its secure_chroot_dir
    log_path = base / "stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = Server(VSFTPD, port, "anonymous", "", "pub/", proc, log_path)
    wait_ready(server)
    return server


# -------------------------------------------------------------------------------------------- client


@dataclass
class Curl:
    work: Path
    verbose_lines: dict[str, str] = field(default_factory=dict)

    def run(self, server: Server, mode: str, args: Sequence[str], timeout: float = 900.0) -> float:
        """Seconds the transfers took, without connecting and logging in: curl's time_total minus
        the first transfer's time_pretransfer (xferd checks an argon2 password hash at login,
        vsftpd's anonymous login checks nothing; that cost is not the protocol's)."""
        cmd = ["curl", "--silent", "--show-error", "--disable", "--user", f"{server.user}:{server.password}",
               "--write-out", r"%{time_pretransfer} %{time_total}\n",
               *(["--ssl-reqd", "--insecure"] if mode == "ftps" else []), *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            server.check_alive()
            raise BenchError(f"{server.name} ({mode}): curl {' '.join(args)[:200]} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        times = [tuple(map(float, line.split())) for line in proc.stdout.decode().splitlines()
                 if line.count(" ") == 1]
        if not times:
            raise BenchError(f"{server.name} ({mode}): curl printed no timings")
        return sum(total for _, total in times) - times[0][0]

    def lftp(self, server: Server, mode: str, script: str) -> float:
        """Wall seconds of one lftp session (one control connection) running ``script``."""
        tls = ("set ftp:ssl-force yes; set ftp:ssl-protect-data yes; " if mode == "ftps"
               else "set ftp:ssl-allow no; ")
        settings = "set ssl:verify-certificate no; set net:max-retries 1; set cmd:fail-exit yes; "
        cmd = ["lftp", "-u", f"{server.user},{server.password}", "-e", f"{settings}{tls}{script}; quit",
               f"ftp://127.0.0.1:{server.port}"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, timeout=900, check=False, cwd=self.work)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            server.check_alive()
            raise BenchError(f"{server.name} ({mode}): lftp {script[:100]} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        return elapsed

    def lftp_timed(self, server: Server, mode: str, script: str) -> float:
        """``script``'s seconds: the session's minus a login-only session's (run right before)."""
        login = self.lftp(server, mode, f"cd /{server.prefix}")
        return max(self.lftp(server, mode, f"cd /{server.prefix}; {script}") - login, 1e-6)

    def tls_version(self, server: Server) -> str:
        cmd = ["curl", "-sv", "--disable", "--ssl-reqd", "--insecure", "--user", f"{server.user}:{server.password}",
               "--list-only", server.url("")]
        err = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stderr
        return next((line.split("using", 1)[1].strip() for line in err.splitlines() if "SSL connection using" in line),
                    "?")


def ftplib_session(server: Server) -> ftplib.FTP:
    """A plain ftplib session (only for filling the listing directory, untimed)."""
    client = ftplib.FTP()
    client.connect("127.0.0.1", server.port, timeout=60)
    client.login(server.user, server.password or "anonymous@")
    return client


# -------------------------------------------------------------------------------------------- measuring


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    curl: Curl
    samples: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)  # (group, mode, server)
    mlsd: list[float] = field(default_factory=list)

    def add(self, group: str, mode: str, server: str, value: float) -> None:
        self.samples.setdefault((group, mode, server), []).append(value)

    def upload(self, server: Server, mode: str) -> None:
        self.delete_copy(server)
        seconds = self.curl.run(server, mode, ["-T", str(self.work / "big.bin"), server.url("big.bin")])
        self.add("upload", mode, server.name, self.args.size_mib * MIB / MB / seconds)

    def delete_copy(self, server: Server) -> None:
        """Delete the last upload's copy (untimed) and wait until its memory is free (wait_freed)."""
        free_before = shutil.disk_usage(self.work).free
        client = ftplib_session(server)
        try:
            client.delete(f"/{server.prefix}big.bin")
        except ftplib.error_perm:
            return  # no copy yet
        finally:
            client.quit()
        wait_freed(self.work, free_before, self.args.size_mib * MIB, self.args.settle)

    def download(self, server: Server, mode: str, verify: bool) -> None:
        if verify:
            self.curl.run(server, mode, ["-o", str(self.work / "check.bin"), server.url("big.bin")])
            if subprocess.run(["cmp", "-s", str(self.work / "big.bin"), str(self.work / "check.bin")]).returncode:
                raise BenchError(f"{server.name} ({mode}): the downloaded file differs from the source")
            (self.work / "check.bin").unlink()
        seconds = self.curl.run(server, mode, ["-o", "/dev/null", server.url("big.bin")])
        self.add("download", mode, server.name, self.args.size_mib * MIB / MB / seconds)

    def small(self, server: Server, mode: str) -> None:
        folder = f"small-{mode}-{len(self.samples.get(('small', mode, server.name), []))}"
        seconds = self.curl.lftp_timed(server, mode, f"mkdir {folder}; cd {folder}; mput small/*")
        self.add("small", mode, server.name, self.args.files / seconds)

    def listing(self, server: Server, mode: str) -> None:
        # LIST on both (lftp would use MLSD where a server offers it, and vsftpd does not).
        times = [self.curl.lftp_timed(server, mode, "set ftp:use-mlsd no; ls many > /dev/null") for _ in range(3)]
        self.add("list", mode, server.name, statistics.median(times))
        if server.name == XFERD and mode == "plain":
            self.mlsd.append(statistics.median(
                self.curl.lftp_timed(server, mode, "set ftp:use-mlsd yes; cls -1 many > /dev/null") for _ in range(3)))

    def populate(self, server: Server) -> None:
        """M empty files in many/ (untimed), through FTP: xferd's tree lives in its metadata store."""
        client = ftplib_session(server)
        client.mkd(f"{server.prefix}many")
        client.cwd(f"{server.prefix}many")
        for i in range(self.args.entries):
            client.storbinary(f"STOR e{i:06d}", _EMPTY)
        client.quit()
        listed = subprocess.run(["curl", "-s", "--disable", "--user", f"{server.user}:{server.password}",
                                 server.url("many/")], capture_output=True, check=True, timeout=300).stdout
        if len(listed.splitlines()) != self.args.entries:
            raise BenchError(f"{server.name}: LIST shows {len(listed.splitlines())} entries, not {self.args.entries}")


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""


_EMPTY = _Empty()


def interleaved(servers: Sequence[Server], round_no: int) -> Iterator[Server]:
    """xferd first in even rounds, last in odd ones."""
    yield from (servers if round_no % 2 == 0 else list(reversed(servers)))


def report(bench: Bench, tls_versions: dict[str, str]) -> dict[str, Any]:
    labels = {"upload": "upload MB/s", "download": "download MB/s", "small": f"{bench.args.files} x 4 KiB files/s",
              "list": f"LIST {bench.args.entries} entries, s"}
    reference = any(server == PYFTPDLIB for _, _, server in bench.samples)
    print(f"\n{'metric':<34} {XFERD:>10} {VSFTPD:>10} {'ratio':>7}  {'goal':<18}"
          + (f" {PYFTPDLIB:>10} {'its ratio':>9}" if reference else ""))
    rows = []
    for mode in bench.args.modes:
        for group in bench.args.only:
            ours = bench.samples.get((group, mode, XFERD))
            theirs = bench.samples.get((group, mode, VSFTPD))
            if not ours or not theirs:
                continue
            a, b = statistics.median(ours), statistics.median(theirs)
            ratio = a / b
            kind, goal = GOALS.get((group, mode), ("", 0.0))
            verdict = "" if not kind else ("ok" if (ratio >= goal if kind == "min" else ratio <= goal) else "MISSED")
            goal_text = "" if not kind else (f">= {goal:g}" if kind == "min" else f"time <= {goal:g}x")
            name = f"{'FTPS' if mode == 'ftps' else 'FTP'} {labels[group]}"
            row: dict[str, Any] = {"metric": name, XFERD: a, VSFTPD: b, "ratio": ratio, "goal": goal_text,
                                   "verdict": verdict, "samples": {XFERD: ours, VSFTPD: theirs}}
            line = f"{name:<34} {a:>10.3f} {b:>10.3f} {ratio:>7.2f}  {(goal_text + ' ' + verdict).strip():<18}"
            if refs := bench.samples.get((group, mode, PYFTPDLIB)):
                # The reference against vsftpd, the same way round as xferd's ratio (no goal).
                r = statistics.median(refs)
                row.update({PYFTPDLIB: r, "reference_ratio": r / b})
                row["samples"][PYFTPDLIB] = refs
                line += f" {r:>10.3f} {r / b:>9.2f}"
            print(line)
            rows.append(row)
    if bench.mlsd:
        print(f"{'FTP MLSD ' + str(bench.args.entries) + ' entries, s':<34} {statistics.median(bench.mlsd):>10.3f}"
              f" {'n/a':>10}  (vsftpd has no MLSD)")
    if tls_versions:
        print("\nTLS: " + "; ".join(f"{name} {version}" for name, version in tls_versions.items()))
    if reference:
        print(f"{PYFTPDLIB}: bare pyftpdlib over a plain directory (ftp_reference.py), the library xferd's FTP "
              "frontend is built on; its ratio is against vsftpd, no goal")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return {"rows": rows, "mlsd_seconds": bench.mlsd, "tls": tls_versions}


# -------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--entries", type=int, default=10000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of plain, ftps")
    p.add_argument("--tmpfs", default="/dev/shm")
    p.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                   help="pause between deleting the last 1 GiB copy and the next upload (default 0: both servers "
                        "write into just-freed memory; 3: into memory the virtual machine has handed back)")
    p.add_argument("--vsftpd", default=shutil.which("vsftpd") or "/usr/sbin/vsftpd")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--xferd-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="leave out the bare pyftpdlib reference server")
    args = p.parse_args(argv)
    args.only = [g for g in args.only.split(",") if g]
    args.modes = [m for m in args.modes.split(",") if m]
    if unknown := (set(args.only) - set(GROUPS)) | (set(args.modes) - set(MODES)):
        p.error(f"unknown: {', '.join(sorted(unknown))}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("curl", "lftp", "cmp"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is needed on PATH")
    if not Path(args.vsftpd).exists():
        raise BenchError(f"{args.vsftpd} not found (apt-get install vsftpd)")
    if os.geteuid() != 0:
        raise BenchError("run as root: vsftpd needs it, and its upload directory belongs to the ftp user")
    need = (3 * args.size_mib + 512) * MIB
    if shutil.disk_usage(args.tmpfs).free < need:
        raise BenchError(f"{args.tmpfs} needs {need // MIB} MiB free")
    work = Path(tempfile.mkdtemp(prefix="xferd-ftp-bench-", dir=args.tmpfs))
    work.chmod(0o755)  # vsftpd's anonymous user must reach its root under here
    servers: list[Server] = []
    try:
        with open(work / "big.bin", "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MIB))
        (work / "small").mkdir()
        for i in range(args.files):
            (work / "small" / f"f{i:05d}").write_bytes(os.urandom(4096))
        cert, key = make_certificate(work)
        ports = Ports()
        servers = [start_xferd(work, ports, cert, key, args.xferd_set),
                   start_vsftpd(work, ports, cert, key, args.vsftpd)]
        if args.reference:
            servers.append(start_pyftpdlib(work, ports, cert, key))
        bench = Bench(args, work, Curl(work))
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        if "list" in args.only:
            for server in servers:
                bench.populate(server)
        for round_no in range(args.repeat):
            for mode in args.modes:
                for group in args.only:
                    for server in interleaved(servers, round_no):
                        print(f"  round {round_no + 1}: {mode} {group} on {server.name}", flush=True)
                        if group == "upload":
                            bench.upload(server, mode)
                        elif group == "download":
                            if ("upload", mode, server.name) not in bench.samples:
                                bench.upload(server, mode)  # something to download
                            bench.download(server, mode, verify=round_no == 0)
                        elif group == "small":
                            bench.small(server, mode)
                        else:
                            bench.listing(server, mode)
        tls = {s.name: bench.curl.tls_version(s) for s in servers} if "ftps" in args.modes else {}
        return report(bench, tls)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        result = run(args)
    except BenchError as exc:
        print(f"ftp_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ftp_bench: interrupted; servers stopped and work directory removed", file=sys.stderr)
        return 130
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
