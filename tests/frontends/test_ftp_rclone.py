"""rclone's ftp backend against a real daemon: trees up into new directories and back, checks and
modification times, over plain FTP, explicit FTPS and implicit FTPS (each TLS mode run twice).

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.frontends.test_sftp_rclone import files_of, make_tree
from tests.support import PASSWORD, Daemon, FtpMode, require_tool

REMOTE = "xftp"
MODES: list[FtpMode] = ["plain", "explicit", "explicit", "implicit", "implicit"]


class FtpRclone:
    """rclone with a config of its own naming the daemon's FTP service, logged in as ``user``, as remote
    ``xftp:``."""

    def __init__(self, daemon: Daemon, tmp_path: Path, user: str, mode: FtpMode) -> None:
        require_tool("rclone")
        self.config = tmp_path / "rclone-ftp.conf"
        obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True, check=True,
                                  timeout=60).stdout.strip()
        port = daemon.ftps_port if mode == "implicit" else daemon.ftp_port
        lines = [f"[{REMOTE}]", "type = ftp", "host = 127.0.0.1", f"port = {port}", f"user = {user}",
                 f"pass = {obscured}", "no_check_certificate = true"]
        if mode == "explicit":
            lines.append("explicit_tls = true")
        elif mode == "implicit":
            lines.append("tls = true")
        self.config.write_text("\n".join(lines) + "\n")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["rclone", "--config", str(self.config), "--contimeout", "30s", "--timeout", "120s",
                                 "--low-level-retries", "1", "--retries", "1", *args],
                                capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def lsjson(self, path: str) -> dict[str, dict[str, Any]]:
        entries = json.loads(self.run("lsjson", "-R", f"{REMOTE}:{path}").stdout)
        return {str(e["Path"]): e for e in entries}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


class TestRcloneFtp:
    @pytest.mark.parametrize("mode", MODES)
    def test_copy_into_a_new_directory_and_back(self, server: Daemon, user: str, tree: Path, tmp_path: Path,
                                                mode: FtpMode) -> None:
        """copy creates the missing directories, check finds the trees equal (also by downloading),
        and the copy brought back has the same bytes."""
        rclone = FtpRclone(server, tmp_path, user, mode)
        rclone.run("copy", str(tree), f"{REMOTE}:new/dir")
        rclone.run("check", str(tree), f"{REMOTE}:new/dir")
        rclone.run("check", "--download", str(tree), f"{REMOTE}:new/dir")
        rclone.run("copy", f"{REMOTE}:new/dir", str(tmp_path / "back"))
        assert files_of(tree) == files_of(tmp_path / "back")

    def test_modification_times_are_kept(self, server: Daemon, user: str, tree: Path, tmp_path: Path) -> None:
        """rclone sets each file's time with MFMT and reads it back from MLSD."""
        rclone = FtpRclone(server, tmp_path, user, "plain")
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        listed = rclone.lsjson("up")
        for name in files_of(tree):
            remote = datetime.fromisoformat(str(listed[name]["ModTime"]).replace("Z", "+00:00")).timestamp()
            assert int((tree / name).stat().st_mtime) == int(remote), name

    def test_second_copy_transfers_nothing(self, server: Daemon, user: str, tree: Path, tmp_path: Path) -> None:
        """A repeated copy finds every file up to date by size and time."""
        rclone = FtpRclone(server, tmp_path, user, "explicit")
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        assert "Copied" not in rclone.run("copy", "-v", str(tree), f"{REMOTE}:up").stderr

    def test_sync_and_move(self, server: Daemon, user: str, tree: Path, tmp_path: Path) -> None:
        """sync deletes what is gone locally; moveto renames a directory with everything in it."""
        rclone = FtpRclone(server, tmp_path, user, "plain")
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        (tree / "big.bin").unlink()
        rclone.run("sync", str(tree), f"{REMOTE}:up")
        rclone.run("moveto", f"{REMOTE}:up", f"{REMOTE}:moved")
        rclone.run("check", "--download", str(tree), f"{REMOTE}:moved")
        assert "up" not in rclone.lsjson("")
