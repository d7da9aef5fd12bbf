"""davfs2 (WebDAV through FUSE) against a real daemon: files written through the mount arrive intact,
files uploaded over HTTP read through it, and renames and deletes through it reach the server.

davfs2 keeps what is written in its cache and uploads a file when it is closed (``delay_upload 0``)
or, at the latest, when the file system is unmounted; ``umount`` waits for mount.davfs to finish.
So every check of the server side happens after the unmount, over plain HTTP.

Setup notes (each learnt the hard way):

- mount.davfs run by root drops to the ``davfs2`` user, which must create its cache directory:
  the cache lives in a directory of its own under /tmp with mode 0777, outside pytest's 0700 tree.
- Linux 6.16 changed FUSE: with davfs2's default 16 KiB buffer every readdir fails with EINVAL
  ("ls: reading directory: Invalid argument"); ``buf_size 64`` avoids it.
- ``ask_auth 0``: wrong or missing credentials fail the mount instead of waiting for a prompt.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from tests.support import IN_CI, PASSWORD, Daemon, require_tool, running_daemon

MIB = 1024 * 1024


def require_davfs() -> None:
    """Skip where a davfs2 mount is impossible, except under CI=true (CI must run every test)."""
    problem = None
    if not Path("/dev/fuse").exists():
        problem = "no /dev/fuse here: FUSE mounts are impossible in this environment"
    elif os.geteuid() != 0:
        problem = "mount -t davfs needs root (an ordinary user needs an fstab entry per mount point)"
    if problem is not None:
        if IN_CI:
            pytest.fail(problem + " (CI must run every test)")
        pytest.skip(problem)
    require_tool("mount.davfs", "umount")


def davfs_quote(value: str) -> str:
    """A value for davfs2's config and secrets files: quoted, with " and \\ escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unmount(point: Path) -> None:
    """umount, which waits until mount.davfs has uploaded what is left; retried while busy."""
    result = None
    for _ in range(50):
        result = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=60)
    raise AssertionError(f"could not unmount {point}: {result.stderr if result else ''}")


@contextlib.contextmanager
def davfs(url: str, point: Path, work: Path, use_locks: bool = True) -> Iterator[Path]:
    """``mount -t davfs URL point`` as alice, with config and secrets files in ``work``; unmounted
    (which uploads what is left) on exit."""
    point.mkdir(exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="xferd-davfs-cache-"))
    cache.chmod(0o777)  # mount.davfs creates its cache below it as the davfs2 user
    secrets = work / "davfs2.secrets"
    secrets.write_text(f"{url} alice {davfs_quote(PASSWORD)}\n")
    secrets.chmod(0o600)
    conf = work / "davfs2.conf"
    conf.write_text("\n".join([f"secrets {secrets}", f"cache_dir {cache}", f"use_locks {int(use_locks)}",
                               "delay_upload 0", "buf_size 64", "ask_auth 0"]) + "\n")
    try:
        result = subprocess.run(["mount", "-t", "davfs", "-o", f"conf={conf}", url, str(point)],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert 0 == result.returncode, f"mount -t davfs failed:\n{result.stdout}\n{result.stderr}"
        try:
            assert os.path.ismount(point)
            yield point
        finally:
            unmount(point)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with user alice for the module; each test mounts a collection of its own."""
    with running_daemon(tmp_path_factory.mktemp("webdav-davfs2")) as daemon:
        yield daemon


@pytest.fixture
def folder(shared: Daemon, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty collection of alice's named after the test (ending in /)."""
    require_davfs()
    url = shared.dav_url("/" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name) + "/")
    with httpx.Client(auth=("alice", PASSWORD), timeout=60) as client:
        assert 201 == client.request("MKCOL", url).status_code
    return url


@pytest.fixture
def http(folder: str) -> Iterator[httpx.Client]:
    """A plain HTTP client logged in as alice, below the test's collection, to check the server side."""
    with httpx.Client(base_url=folder, auth=("alice", PASSWORD), timeout=60) as client:
        yield client


Mount = Callable[[], contextlib.AbstractContextManager[Path]]


@pytest.fixture
def mount(folder: str, tmp_path: Path) -> Mount:
    """Mount the test's collection (with locks) on a directory of the test's."""
    return lambda: davfs(folder, tmp_path / "mnt", tmp_path)


def get(http: httpx.Client, path: str) -> bytes:
    response = http.get(quote(path))
    assert 200 == response.status_code, f"GET {path}: {response.status_code}"
    return response.content


def put(http: httpx.Client, path: str, data: bytes) -> None:
    response = http.put(quote(path), content=data)
    assert response.status_code in (201, 204), f"PUT {path}: {response.status_code}"


def listing(http: httpx.Client, path: str) -> dict[str, int | None]:
    """Each member of a collection (PROPFIND depth 1): its size, or None for a collection."""
    body = b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop><resourcetype/>' \
           b"<getcontentlength/></prop></propfind>"
    response = http.request("PROPFIND", quote(path.strip("/") + "/" if path.strip("/") else ""), content=body,
                            headers={"Depth": "1", "Content-Type": "application/xml"})
    assert 207 == response.status_code, f"PROPFIND {path}: {response.status_code}"
    out: dict[str, int | None] = {}
    base = unquote(response.request.url.path).rstrip("/")
    root = ET.fromstring(response.content)  # noqa: S314 - the daemon's own answer, XML it wrote
    for entry in root.iter("{DAV:}response"):
        href = unquote(urlsplit(entry.findtext("{DAV:}href") or "").path).rstrip("/") or "/"
        if href == base:
            continue
        size = entry.findtext(".//{DAV:}getcontentlength")
        is_dir = entry.find(".//{DAV:}resourcetype/{DAV:}collection") is not None
        out[href.rsplit("/", 1)[-1]] = None if is_dir else int(size or 0)
    return out


class TestWritesThroughTheMount:
    def test_files_written_arrive_intact(self, mount: Mount, http: httpx.Client) -> None:
        """A small file, a few MB, a file in new nested directories and an existing file rewritten,
        all through the mount (with locks), are on the server byte for byte after sync and unmount,
        and no lock is left."""
        put(http, "over.txt", b"a much longer old content")
        big = os.urandom(4 * MIB + 3)
        with mount() as mnt:
            (mnt / "small.txt").write_bytes(b"hello through davfs2\n")
            with open(mnt / "big.bin", "wb") as f:
                for i in range(0, len(big), 256 * 1024):
                    f.write(big[i:i + 256 * 1024])
            os.makedirs(mnt / "nested" / "deeper")
            (mnt / "nested" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
            (mnt / "over.txt").write_bytes(b"new")
            subprocess.run(["sync"], check=True, timeout=60)
        assert b"hello through davfs2\n" == get(http, "small.txt")
        assert big == get(http, "big.bin")
        assert b"leaf\n" == get(http, "nested/deeper/leaf.txt")
        assert b"new" == get(http, "over.txt")
        assert {"small.txt": 21, "big.bin": len(big), "nested": None, "over.txt": 3} == listing(http, "/")
        assert {"deeper": None} == listing(http, "nested")
        # Every lock davfs2 took was released: another client may overwrite the files.
        assert 204 == http.put("small.txt", content=b"replaced").status_code

    def test_names_with_spaces_and_utf8(self, mount: Mount, http: httpx.Client) -> None:
        """Files and directories whose names have spaces and UTF-8 (davfs2 locks each new file
        before writing it, by its percent-encoded URL) arrive under those names."""
        with mount() as mnt:
            (mnt / "with space.txt").write_bytes(b"space\n")
            os.makedirs(mnt / "déjà vu" / "naïve dir")
            (mnt / "déjà vu" / "naïve dir" / "日本語 ファイル.txt").write_bytes("こんにちは\n".encode())
        assert b"space\n" == get(http, "with space.txt")
        assert "こんにちは\n".encode() == get(http, "déjà vu/naïve dir/日本語 ファイル.txt")
        assert {"with space.txt": 6, "déjà vu": None} == listing(http, "/")
        assert 204 == http.put(quote("with space.txt"), content=b"replaced").status_code


class TestReadsAndTreeOperationsThroughTheMount:
    def test_read_files_uploaded_over_http(self, mount: Mount, http: httpx.Client) -> None:
        """Files uploaded over HTTP list and read through the mount with their sizes and bytes."""
        data = os.urandom(2 * MIB + 1)
        assert 201 == http.request("MKCOL", "dir").status_code
        put(http, "dir/up.bin", data)
        put(http, "dir/ünï.txt", b"unicode name\n")
        with mount() as mnt:
            assert ["up.bin", "ünï.txt"] == sorted(os.listdir(mnt / "dir"))
            sizes = ((mnt / "dir" / "up.bin").stat().st_size, (mnt / "dir" / "ünï.txt").stat().st_size)
            assert (len(data), 13) == sizes
            assert data == (mnt / "dir" / "up.bin").read_bytes()
            assert b"unicode name\n" == (mnt / "dir" / "ünï.txt").read_bytes()

    def test_rename_delete_and_rmdir(self, mount: Mount, http: httpx.Client) -> None:
        """A rename, an unlink and an rmdir through the mount reach the server."""
        assert 201 == http.request("MKCOL", "d").status_code
        put(http, "a.txt", b"content of a")
        put(http, "d/b.txt", b"b")
        with mount() as mnt:
            os.rename(mnt / "a.txt", mnt / "renamed ä.txt")
            os.unlink(mnt / "d" / "b.txt")
            os.rmdir(mnt / "d")
        assert {"renamed ä.txt": 12} == listing(http, "/")
        assert b"content of a" == get(http, "renamed ä.txt")
