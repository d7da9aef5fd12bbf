"""rclone's webdav backend (vendor "other") against a real daemon: trees with spaces and UTF-8 names up
into a new directory and back, checks, listings with modification times, moves and deletes.

With vendor "other" rclone has no hashes and cannot set modification times: check compares sizes
(and bytes with --download), and a file's time is the one the server gives it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import PASSWORD, Daemon, paramiko_sftp, require_tool, running_daemon

REMOTE = ":webdav:"
MIB = 1024 * 1024


def make_tree(root: Path) -> Path:
    """Nested directories, names with spaces and UTF-8, an empty file and a few MB of random data."""
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "with space" / "ünïcødé dir").mkdir(parents=True)
    (root / "big file.bin").write_bytes(os.urandom(5 * MIB + 321))
    (root / "docs" / "readme.txt").write_text("hello from rclone over WebDAV\n")
    (root / "docs" / "deep" / "empty").write_bytes(b"")
    (root / "docs" / "deep" / "deeper" / "mid.bin").write_bytes(os.urandom(700_001))
    (root / "with space" / "a file, with + and %.txt").write_text("spaces and URL-ish characters\n")
    (root / "with space" / "ünïcødé dir" / "日本語 ファイル.txt").write_text("こんにちは\n")
    (root / "with space" / "ünïcødé dir" / "émoji 🎉.bin").write_bytes(os.urandom(4096))
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def folder_of(request: pytest.FixtureRequest) -> str:
    """The directory of alice's that a test works in: its name, with only safe characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)


def timestamp(value: Any) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class DavRclone:
    """rclone's on-the-fly webdav remote (``:webdav:``) pointed at ``base`` (a URL path ending in /)
    by flags, with an empty config file of its own."""

    def __init__(self, daemon: Daemon, tmp_path: Path, base: str = "/", password: str = PASSWORD) -> None:
        require_tool("rclone")
        self.config = tmp_path / "rclone-webdav.conf"
        self.config.write_text("")
        obscured = subprocess.run(["rclone", "obscure", password], capture_output=True, text=True, check=True,
                                  timeout=60).stdout.strip()
        self.flags = ["--webdav-url", daemon.dav_url(base), "--webdav-vendor", "other", "--webdav-user", "alice",
                      "--webdav-pass", obscured]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["rclone", "--config", str(self.config), *self.flags, "--contimeout", "30s",
                                 "--timeout", "120s", "--low-level-retries", "1", "--retries", "1", *args],
                                capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def lsjson(self, path: str) -> dict[str, dict[str, Any]]:
        entries = json.loads(self.run("lsjson", "-R", f"{REMOTE}{path}").stdout)
        return {str(e["Path"]): e for e in entries}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with user alice for the module; each test works below a directory of its own."""
    with running_daemon(tmp_path_factory.mktemp("webdav-rclone")) as daemon:
        yield daemon


@pytest.fixture
def rclone(shared: Daemon, tmp_path: Path, request: pytest.FixtureRequest) -> DavRclone:
    """rclone rooted at a new, empty directory of alice's named after the test."""
    DavRclone(shared, tmp_path).run("mkdir", f"{REMOTE}{folder_of(request)}")
    return DavRclone(shared, tmp_path, f"/{folder_of(request)}/")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


class TestRcloneWebdavCopy:
    @pytest.mark.parametrize("run", ["first", "second"])
    def test_copy_into_a_new_directory_and_back(self, rclone: DavRclone, tree: Path, tmp_path: Path,
                                                run: str) -> None:
        """copy creates the missing directories, check finds the trees equal (by size and by
        downloading), and the copy brought back has the same names and bytes."""
        rclone.run("copy", str(tree), f"{REMOTE}new/dir")
        rclone.run("check", "--size-only", str(tree), f"{REMOTE}new/dir")
        rclone.run("check", "--download", str(tree), f"{REMOTE}new/dir")
        rclone.run("copy", f"{REMOTE}new/dir", str(tmp_path / "back"))
        assert files_of(tree) == files_of(tmp_path / "back")

    def test_check_notices_a_difference(self, rclone: DavRclone, tree: Path) -> None:
        """check --download reports the one file whose bytes differ at the same size."""
        rclone.run("copy", str(tree), f"{REMOTE}up")
        (tree / "docs" / "readme.txt").write_text("HELLO FROM RCLONE OVER WEBDAV\n")
        result = rclone.run("check", "--download", "--differ", "-", str(tree), f"{REMOTE}up", check=False)
        assert (1, ["docs/readme.txt"]) == (result.returncode, result.stdout.split())

    def test_wrong_password_fails(self, shared: Daemon, tmp_path: Path) -> None:
        """A wrong password makes rclone fail instead of listing."""
        rclone = DavRclone(shared, tmp_path, password="not the password")
        assert 0 != rclone.run("lsjson", REMOTE, check=False).returncode


class TestRcloneWebdavListing:
    def test_lsjson_lists_sizes_directories_and_times(self, rclone: DavRclone, tree: Path) -> None:
        """lsjson -R names every file with its size and a modification time from the upload, and every
        directory as a directory."""
        before = time.time()
        rclone.run("copy", str(tree), f"{REMOTE}up")
        after = time.time()
        listed = rclone.lsjson("up")
        directories = {p for p, e in listed.items() if e["IsDir"]}
        assert {"docs", "docs/deep", "docs/deep/deeper", "with space", "with space/ünïcødé dir"} == directories
        expected = {name: len(data) for name, data in files_of(tree).items()}
        assert expected == {p: e["Size"] for p, e in listed.items() if not e["IsDir"]}
        for name in expected:
            # getlastmodified has whole seconds
            assert int(before) <= timestamp(listed[name]["ModTime"]) <= after + 1, name

    def test_lsjson_shows_a_time_set_over_sftp(self, shared: Daemon, rclone: DavRclone, tree: Path,
                                               request: pytest.FixtureRequest) -> None:
        """A modification time set over SFTP is the one lsjson shows over WebDAV."""
        rclone.run("copy", str(tree / "docs"), f"{REMOTE}docs")
        sftp = paramiko_sftp(shared)
        try:
            sftp.utime(f"{folder_of(request)}/docs/readme.txt", (1_600_000_000, 1_600_000_000))
        finally:
            sftp.close()
        assert 1_600_000_000 == timestamp(rclone.lsjson("docs")["readme.txt"]["ModTime"])


class TestRcloneWebdavMoveAndDelete:
    def test_moveto_renames_a_file(self, rclone: DavRclone, tree: Path, tmp_path: Path) -> None:
        """moveto of a file gives it the new name (UTF-8 and spaces) with its bytes; the old name is gone."""
        rclone.run("copy", str(tree), f"{REMOTE}up")
        rclone.run("moveto", f"{REMOTE}up/big file.bin", f"{REMOTE}up/with space/größer 文件.bin")
        rclone.run("copyto", f"{REMOTE}up/with space/größer 文件.bin", str(tmp_path / "got"))
        listed = rclone.lsjson("up")
        assert ("big file.bin" not in listed, "with space/größer 文件.bin" in listed) == (True, True)
        assert (tree / "big file.bin").read_bytes() == (tmp_path / "got").read_bytes()

    def test_moveto_of_a_file_replaces_the_target(self, rclone: DavRclone, tree: Path, tmp_path: Path) -> None:
        """moveto of a file onto an existing name replaces it."""
        rclone.run("copy", str(tree), f"{REMOTE}up")
        rclone.run("moveto", f"{REMOTE}up/docs/readme.txt", f"{REMOTE}up/big file.bin")
        rclone.run("copyto", f"{REMOTE}up/big file.bin", str(tmp_path / "got"))
        assert (tree / "docs" / "readme.txt").read_bytes() == (tmp_path / "got").read_bytes()
        assert "docs/readme.txt" not in rclone.lsjson("up")

    def test_moveto_renames_a_directory(self, rclone: DavRclone, tree: Path) -> None:
        """moveto of a directory moves the whole subtree: the new name has it all, the old one is gone."""
        rclone.run("copy", str(tree), f"{REMOTE}up")
        rclone.run("moveto", f"{REMOTE}up/with space", f"{REMOTE}moved/wïth späce")
        rclone.run("check", "--download", str(tree / "with space"), f"{REMOTE}moved/wïth späce")
        listed = rclone.lsjson("")
        assert [] == [p for p in listed if p.startswith("up/with space")]
        assert "up/big file.bin" in listed

    def test_deletefile(self, rclone: DavRclone, tree: Path) -> None:
        """deletefile removes one file and nothing else; deleting it again fails."""
        rclone.run("copy", str(tree), f"{REMOTE}up")
        target = f"{REMOTE}up/with space/ünïcødé dir/日本語 ファイル.txt"
        rclone.run("deletefile", target)
        expected = {n: len(d) for n, d in files_of(tree).items() if n != "with space/ünïcødé dir/日本語 ファイル.txt"}
        assert expected == {p: e["Size"] for p, e in rclone.lsjson("up").items() if not e["IsDir"]}
        assert 0 != rclone.run("deletefile", target, check=False).returncode
