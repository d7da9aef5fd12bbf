"""lftp and curl against a real daemon: trees, resumes, plain FTP, explicit and implicit FTPS.

Every TLS case runs twice in a row: TLS shutdown bugs on data connections are intermittent.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.frontends.test_sftp_rclone import files_of, make_tree
from tests.support import PASSWORD, Daemon, require_tool

LFTP_TLS = "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ssl:verify-certificate no; "
LFTP_PLAIN = "set ftp:ssl-allow no; "
TWICE = ["first", "second"]


def lftp(daemon: Daemon, user: str, script: str, implicit: bool = False, cwd: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    require_tool("lftp")
    url = f"ftps://127.0.0.1:{daemon.ftps_port}" if implicit else f"ftp://127.0.0.1:{daemon.ftp_port}"
    settings = "set net:max-retries 1; set net:timeout 30; set cmd:fail-exit yes; set ssl:verify-certificate no; "
    result = subprocess.run(["lftp", "-d", "-u", f"{user},{PASSWORD}", "-e", settings + script + "; quit", url],
                            capture_output=True, text=True, timeout=300, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"lftp failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}")
    return result


def curl(user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    require_tool("curl")
    result = subprocess.run(["curl", "--silent", "--show-error", "--insecure", "--user", f"{user}:{PASSWORD}",
                             "--connect-timeout", "30", *args], capture_output=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
    return result


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


@pytest.fixture
def active(make_daemon: Callable[..., Daemon]) -> Iterator[Daemon]:
    """A daemon of its own that allows active mode (PORT/EPRT), with user alice."""
    daemon = make_daemon(ftp={"allow_active": True})
    daemon.add_user("alice")
    yield daemon
    daemon.stop()


class TestLftpMirror:
    def test_passive_mirror_up_and_down(self, server: Daemon, user: str, tree: Path, tmp_path: Path) -> None:
        """mirror -R uploads a tree with empty files and directories; mirror brings it back equal."""
        lftp(server, user, LFTP_PLAIN + f"mirror -R {tree} up; mirror up {tmp_path / 'back'}")
        assert files_of(tree) == files_of(tmp_path / "back")
        assert (tmp_path / "back" / "empty-dir-sibling").is_dir()

    def test_active_mirror_up_and_down(self, active: Daemon, tree: Path, tmp_path: Path) -> None:
        """The same over active mode (PORT), where the server connects to lftp."""
        result = lftp(active, "alice", LFTP_PLAIN + "set ftp:passive-mode no; "
                      f"mirror -R {tree} up; mirror up {tmp_path / 'back'}")
        assert "PORT 127,0,0,1" in result.stderr or "EPRT |1|127.0.0.1|" in result.stderr
        assert files_of(tree) == files_of(tmp_path / "back")

    @pytest.mark.parametrize("run", TWICE)
    def test_explicit_tls_mirror(self, server: Daemon, user: str, tree: Path, tmp_path: Path, run: str) -> None:
        """AUTH TLS with protected data connections, resuming the control session on each."""
        result = lftp(server, user, LFTP_TLS + f"mirror -R {tree} up; mirror up {tmp_path / 'back'}")
        assert "AUTH TLS" in result.stderr and "PROT P" in result.stderr
        assert files_of(tree) == files_of(tmp_path / "back")

    @pytest.mark.parametrize("run", TWICE)
    def test_implicit_tls_mirror(self, server: Daemon, user: str, tree: Path, tmp_path: Path, run: str) -> None:
        """ftps:// on the implicit port: TLS from the first byte."""
        lftp(server, user, f"mirror -R {tree} up; mirror up {tmp_path / 'back'}", implicit=True)
        assert files_of(tree) == files_of(tmp_path / "back")
        server.wait_event("auth.login", user=user, outcome="ok", protocol="ftps")


class TestLftpResume:
    def test_put_continue_uses_rest(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """put -c sends only the missing tail (REST + STOR) and the result is the whole file."""
        data = os.urandom(3 * 1024 * 1024 + 99)
        (tmp_path / "part").write_bytes(data[:1_000_000])
        (tmp_path / "whole").write_bytes(data)
        lftp(server, user, LFTP_PLAIN + "put part -o f", cwd=tmp_path)
        result = lftp(server, user, LFTP_PLAIN + "put -c whole -o f", cwd=tmp_path)
        assert "REST 1000000" in result.stderr
        lftp(server, user, LFTP_PLAIN + "get f -o back", cwd=tmp_path)
        assert data == (tmp_path / "back").read_bytes()

    def test_get_continue_uses_rest(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """get -c fetches only the missing tail of a partial download."""
        data = os.urandom(2 * 1024 * 1024)
        (tmp_path / "src").write_bytes(data)
        lftp(server, user, LFTP_PLAIN + "put src -o f", cwd=tmp_path)
        (tmp_path / "partial").write_bytes(data[:500_000])
        result = lftp(server, user, LFTP_PLAIN + "get -c f -o partial", cwd=tmp_path)
        assert "REST 500000" in result.stderr
        assert data == (tmp_path / "partial").read_bytes()


class TestCurl:
    def test_plain_upload_download_and_listing(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """curl -T uploads (creating directories), downloads and lists over plain FTP."""
        data = os.urandom(3 * 1024 * 1024)
        (tmp_path / "f").write_bytes(data)
        base = f"ftp://127.0.0.1:{server.ftp_port}"
        curl(user, "--ftp-create-dirs", "-T", str(tmp_path / "f"), f"{base}/a/b/f.bin")
        assert data == curl(user, f"{base}/a/b/f.bin").stdout
        assert b"f.bin" in curl(user, "--list-only", f"{base}/a/b/").stdout

    @pytest.mark.parametrize("run", TWICE)
    def test_explicit_tls_with_ssl_reqd(self, server: Daemon, user: str, tmp_path: Path, run: str) -> None:
        """--ssl-reqd: AUTH TLS, PROT P, then upload and download."""
        data = os.urandom(2 * 1024 * 1024 + 1)
        (tmp_path / "f").write_bytes(data)
        base = f"ftp://127.0.0.1:{server.ftp_port}"
        curl(user, "--ssl-reqd", "-T", str(tmp_path / "f"), f"{base}/f.bin")
        assert data == curl(user, "--ssl-reqd", f"{base}/f.bin").stdout

    @pytest.mark.parametrize("run", TWICE)
    def test_implicit_tls(self, server: Daemon, user: str, tmp_path: Path, run: str) -> None:
        """ftps:// is implicit FTPS on its own port."""
        data = os.urandom(2 * 1024 * 1024 + 3)
        (tmp_path / "f").write_bytes(data)
        base = f"ftps://127.0.0.1:{server.ftps_port}"
        curl(user, "-T", str(tmp_path / "f"), f"{base}/f.bin")
        assert data == curl(user, f"{base}/f.bin").stdout

    def test_resume_both_ways(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """-C - continues an upload (SIZE, then APPE) and a download (REST)."""
        data = os.urandom(3 * 1024 * 1024)
        base = f"ftp://127.0.0.1:{server.ftp_port}"
        (tmp_path / "part").write_bytes(data[:1_234_567])
        (tmp_path / "whole").write_bytes(data)
        curl(user, "-T", str(tmp_path / "part"), f"{base}/f")
        curl(user, "-C", "-", "-T", str(tmp_path / "whole"), f"{base}/f")
        (tmp_path / "down").write_bytes(data[:777_777])
        curl(user, "-C", "-", "-o", str(tmp_path / "down"), f"{base}/f")
        assert data == (tmp_path / "down").read_bytes()
