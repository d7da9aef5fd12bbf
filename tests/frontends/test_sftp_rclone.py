"""rclone's sftp backend against a real daemon: trees up and down, checks, listings and moves.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.support import PASSWORD, Daemon, require_tool

REMOTE = "xferd"


def make_tree(root: Path) -> Path:
    """Nested directories, empty files, small files and a few MB of random data."""
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir-sibling").mkdir()
    (root / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024 + 321))
    (root / "docs" / "readme.txt").write_text("hello from rclone\n")
    (root / "docs" / "deep" / "empty").write_bytes(b"")
    (root / "docs" / "deep" / "deeper" / "mid.bin").write_bytes(os.urandom(700_001))
    (root / "empty-dir-sibling" / "also-empty").write_bytes(b"")
    old = 1_600_000_000
    os.utime(root / "docs" / "readme.txt", (old, old))
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Rclone:
    """rclone with a config file of its own that names the daemon, logged in as ``user``, as remote ``xferd:``."""

    def __init__(self, daemon: Daemon, tmp_path: Path, user: str, key: Path | None = None,
                 password: str | None = None) -> None:
        require_tool("rclone")
        self.config = tmp_path / "rclone.conf"
        lines = [f"[{REMOTE}]", "type = sftp", "host = 127.0.0.1", f"port = {daemon.port}", f"user = {user}",
                 "set_modtime = true", "known_hosts_file = ", "idle_timeout = 5s"]
        if key is not None:
            lines.append(f"key_file = {key}")
        if password is not None:
            obscured = subprocess.run(["rclone", "obscure", password], capture_output=True, text=True,
                                      check=True, timeout=60).stdout.strip()
            lines.append(f"pass = {obscured}")
        self.config.write_text("\n".join(lines) + "\n")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["rclone", "--config", str(self.config), "--contimeout", "30s", "--timeout", "120s",
                                 "--low-level-retries", "2", "--retries", "1", *args],
                                capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def lsjson(self, path: str, *flags: str) -> dict[str, dict[str, object]]:
        entries = json.loads(self.run("lsjson", "-R", *flags, f"{REMOTE}:{path}").stdout)
        return {str(e["Path"]): e for e in entries}


@pytest.fixture
def rclone(server: Daemon, user: str, client_key: Path, tmp_path: Path) -> Rclone:
    """rclone logged in as this test's user with the client key."""
    return Rclone(server, tmp_path, user, key=client_key)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


class TestRcloneCopy:
    def test_copy_up_into_a_new_directory(self, rclone: Rclone, tree: Path) -> None:
        """copy creates the missing target directories and uploads every file."""
        rclone.run("copy", str(tree), f"{REMOTE}:new/dir")
        listed = rclone.lsjson("new/dir")
        expected = {name: len(data) for name, data in files_of(tree).items()}
        assert expected == {p: e["Size"] for p, e in listed.items() if not e["IsDir"]}

    def test_check_after_copy(self, rclone: Rclone, tree: Path) -> None:
        """rclone check finds the remote tree equal to the local one, by size and by downloading."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        rclone.run("check", str(tree), f"{REMOTE}:up")
        rclone.run("check", "--download", str(tree), f"{REMOTE}:up")

    def test_check_notices_a_difference(self, rclone: Rclone, tree: Path) -> None:
        """check --download fails when one remote file has other bytes of the same size."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        (tree / "docs" / "readme.txt").write_text("HELLO FROM RCLONE\n")
        result = rclone.run("check", "--download", "--differ", "-", str(tree), f"{REMOTE}:up", check=False)
        assert (1, ["docs/readme.txt"]) == (result.returncode, result.stdout.split())

    def test_round_trip_byte_for_byte(self, rclone: Rclone, tree: Path, tmp_path: Path) -> None:
        """A tree copied up and back down has the same files with the same bytes."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        back = tmp_path / "back"
        rclone.run("copy", f"{REMOTE}:up", str(back))
        assert files_of(tree) == files_of(back)

    def test_modification_times_are_kept(self, rclone: Rclone, tree: Path) -> None:
        """With set_modtime the remote files get the local modification times (to the second)."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        listed = rclone.lsjson("up")
        for name in files_of(tree):
            remote = datetime.fromisoformat(str(listed[name]["ModTime"]).replace("Z", "+00:00")).timestamp()
            assert int((tree / name).stat().st_mtime) == int(remote), name

    def test_second_copy_transfers_nothing(self, rclone: Rclone, tree: Path) -> None:
        """A repeated copy finds every file up to date (same size and time) and uploads nothing."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        again = rclone.run("copy", "-v", str(tree), f"{REMOTE}:up")
        assert "Copied" not in again.stderr

    def test_changed_file_is_replaced(self, rclone: Rclone, tree: Path, tmp_path: Path) -> None:
        """A file changed locally is uploaded again over the remote one."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        (tree / "docs" / "readme.txt").write_text("a new, longer text than before\n")
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        rclone.run("copyto", f"{REMOTE}:up/docs/readme.txt", str(tmp_path / "readme.txt"))
        assert "a new, longer text than before\n" == (tmp_path / "readme.txt").read_text()

    def test_sync_deletes_what_is_gone_locally(self, rclone: Rclone, tree: Path) -> None:
        """sync removes remote files that no longer exist locally."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        (tree / "big.bin").unlink()
        rclone.run("sync", str(tree), f"{REMOTE}:up")
        assert "big.bin" not in rclone.lsjson("up")
        rclone.run("check", str(tree), f"{REMOTE}:up")


class TestRcloneListing:
    def test_lsjson_lists_files_and_directories(self, rclone: Rclone, tree: Path) -> None:
        """lsjson -R names every file with its size and every directory as a directory."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        listed = rclone.lsjson("up")
        directories = {p for p, e in listed.items() if e["IsDir"]}
        assert {"docs", "docs/deep", "docs/deep/deeper", "empty-dir-sibling"} == directories
        assert (0, 700_001) == (listed["docs/deep/empty"]["Size"], listed["docs/deep/deeper/mid.bin"]["Size"])

    def test_password_login(self, server: Daemon, user: str, tmp_path: Path, tree: Path) -> None:
        """An obscured password in the config logs in as well as a key."""
        rclone = Rclone(server, tmp_path, user, password=PASSWORD)
        rclone.run("copy", str(tree / "docs"), f"{REMOTE}:docs")
        assert "readme.txt" in rclone.lsjson("docs")

    def test_wrong_password_fails(self, server: Daemon, user: str, tmp_path: Path) -> None:
        """A wrong password makes rclone fail instead of listing."""
        rclone = Rclone(server, tmp_path, user, password="not the password")
        assert 0 != rclone.run("lsjson", f"{REMOTE}:", check=False).returncode


class TestRcloneMove:
    def test_moveto_renames_a_directory(self, rclone: Rclone, tree: Path) -> None:
        """moveto of a directory moves the whole subtree: the new name has it all, the old one is gone."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        rclone.run("moveto", f"{REMOTE}:up/docs", f"{REMOTE}:moved/docs")
        rclone.run("check", "--download", str(tree / "docs"), f"{REMOTE}:moved/docs")
        listed = rclone.lsjson("")
        assert not any(p.startswith("up/docs") for p in listed)
        assert "up/big.bin" in listed

    def test_moveto_of_a_file_replaces_the_target(self, rclone: Rclone, tree: Path, tmp_path: Path) -> None:
        """moveto of a file onto an existing name replaces it."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        rclone.run("moveto", f"{REMOTE}:up/docs/readme.txt", f"{REMOTE}:up/big.bin")
        rclone.run("copyto", f"{REMOTE}:up/big.bin", str(tmp_path / "got"))
        assert (tree / "docs" / "readme.txt").read_bytes() == (tmp_path / "got").read_bytes()
        assert "up/docs/readme.txt" not in rclone.lsjson("")


class TestRcloneHashes:
    @pytest.mark.parametrize("algorithm", ["md5", "sha1"])
    def test_hashsum(self, rclone: Rclone, tree: Path, algorithm: str) -> None:
        """rclone finds remote hashing (md5sum/sha1sum over exec) and its sums match the local ones."""
        features = json.loads(rclone.run("backend", "features", f"{REMOTE}:").stdout)
        assert algorithm in features.get("Hashes", [])
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        remote = rclone.run("hashsum", algorithm, f"{REMOTE}:up").stdout
        local = rclone.run("hashsum", algorithm, str(tree)).stdout
        assert sorted(local.splitlines()) == sorted(remote.splitlines())

    def test_check_compares_by_hash(self, rclone: Rclone, tree: Path) -> None:
        """rclone check reports a file whose content differs even when its size is the same."""
        rclone.run("copy", str(tree), f"{REMOTE}:up")
        victim = next(p for p in sorted(tree.rglob("*")) if p.is_file() and p.stat().st_size > 0)
        data = bytearray(victim.read_bytes())
        data[0] ^= 0xFF
        victim.write_bytes(bytes(data))
        result = rclone.run("check", str(tree), f"{REMOTE}:up", check=False)
        assert result.returncode != 0
        assert "1 differences found" in result.stderr
