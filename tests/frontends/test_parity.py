"""Parity: one scenario over SFTP (paramiko), FTP (ftplib) and WebDAV (httpx) on one daemon. What one
protocol writes another reads, and all refuse the same operations for the same missing permission.

WebDAV has no verb for some operations (see ``WebdavSide.lacks``): those are left out for it, by
name, rather than imitated on the client.
"""

from __future__ import annotations

import errno
import ftplib
import io
import itertools
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from tests.support import PASSWORD, Daemon, ftp_login, paramiko_sftp

Outcome = str  # "ok", "denied", "missing", "exists" or "failed"


class Side(Protocol):
    name: str
    lacks: frozenset[str]  # operations the protocol has no way to do: "chmod", "rmdir_nonempty"

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...
    def sizes(self, path: str) -> dict[str, int]: ...
    def mtime(self, path: str) -> int: ...
    def set_mtime(self, path: str, when: int) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def delete(self, path: str) -> None: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def close(self) -> None: ...


class SftpSide:
    name = "sftp"
    lacks: frozenset[str] = frozenset()

    def __init__(self, daemon: Daemon, user: str) -> None:
        self.client = paramiko_sftp(daemon, user)

    def put(self, path: str, data: bytes) -> None:
        self.client.putfo(io.BytesIO(data), path)

    def get(self, path: str) -> bytes:
        with self.client.open(path, "rb") as f:
            return bytes(f.read())

    def sizes(self, path: str) -> dict[str, int]:
        return {a.filename: int(a.st_size or 0) for a in self.client.listdir_attr(path)}

    def mtime(self, path: str) -> int:
        return int(self.client.stat(path).st_mtime)

    def set_mtime(self, path: str, when: int) -> None:
        self.client.utime(path, (when, when))

    def rename(self, src: str, dst: str) -> None:
        self.client.posix_rename(src, dst)  # replaces an existing file, as FTP's RNTO does

    def delete(self, path: str) -> None:
        self.client.remove(path)

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.client.rmdir(path)

    def chmod(self, path: str, mode: int) -> None:
        self.client.chmod(path, mode)

    def close(self) -> None:
        self.client.close()


class FtpSide:
    name = "ftp"
    lacks: frozenset[str] = frozenset()

    def __init__(self, daemon: Daemon, user: str) -> None:
        self.client = ftp_login(daemon, user, PASSWORD)

    def put(self, path: str, data: bytes) -> None:
        self.client.storbinary(f"STOR {path}", io.BytesIO(data))

    def get(self, path: str) -> bytes:
        out = io.BytesIO()
        self.client.retrbinary(f"RETR {path}", out.write)
        return out.getvalue()

    def sizes(self, path: str) -> dict[str, int]:
        return {name: int(facts["size"]) for name, facts in self.client.mlsd(path)}

    def mtime(self, path: str) -> int:
        import calendar
        import time

        return calendar.timegm(time.strptime(self.client.sendcmd(f"MDTM {path}")[4:], "%Y%m%d%H%M%S"))

    def set_mtime(self, path: str, when: int) -> None:
        import time

        self.client.sendcmd(f"MFMT {time.strftime('%Y%m%d%H%M%S', time.gmtime(when))} {path}")

    def rename(self, src: str, dst: str) -> None:
        self.client.rename(src, dst)

    def delete(self, path: str) -> None:
        self.client.delete(path)

    def mkdir(self, path: str) -> None:
        self.client.mkd(path)

    def rmdir(self, path: str) -> None:
        self.client.rmd(path)

    def chmod(self, path: str, mode: int) -> None:
        self.client.sendcmd(f"SITE CHMOD {mode:o} {path}")

    def close(self) -> None:
        self.client.close()


DAV = "{DAV:}"


def _propfind_body(*props: str) -> bytes:
    names = "".join(f"<D:{p}/>" for p in props)
    return (f'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>{names}</D:prop>'
            "</D:propfind>").encode()


class WebdavSide:
    """WebDAV over httpx with Basic auth; HTTP statuses become the OSErrors the other sides raise:
    403 -> PermissionError, 404 (and 409 when the parent collection is missing) -> FileNotFoundError,
    405 from MKCOL and 412 -> FileExistsError, anything else an OSError without errno ("failed")."""

    name = "webdav"
    # - chmod: no WebDAV verb or live property for permission bits.
    # - rmdir_nonempty: DELETE of a collection removes everything in it (RFC 4918 9.6.1); WebDAV
    #   has no "remove only if empty", so a non-empty directory cannot be refused like rmdir does.
    lacks = frozenset({"chmod", "rmdir_nonempty"})

    def __init__(self, daemon: Daemon, user: str) -> None:
        self.base = daemon.dav_url("/")
        self.client = httpx.Client(base_url=self.base, auth=(user, PASSWORD), timeout=60)

    @staticmethod
    def _url(path: str, collection: bool = False) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        url = "/" + "/".join(quote(p, safe="") for p in parts)
        return url + "/" if collection and parts else url

    @staticmethod
    def _parent(path: str) -> str:
        return path.rstrip("/").rpartition("/")[0]

    def _check(self, response: httpx.Response, method: str, path: str, parent: str | None = None) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        message = f"{method} {path}: HTTP {status}"
        if status == 403:
            raise PermissionError(errno.EACCES, message)
        if status == 404:
            raise FileNotFoundError(errno.ENOENT, message)
        # 409 for PUT, MKCOL and MOVE means "no such parent collection" (RFC 4918 9.7.1, 9.3.1,
        # 9.9.4), but the daemon also answers 409 for other conflicts: ask whether the parent is there.
        if status == 409 and parent is not None and self._missing(parent):
            raise FileNotFoundError(errno.ENOENT, message)
        if status == 412 or (status == 405 and method == "MKCOL"):
            raise FileExistsError(errno.EEXIST, message)
        raise OSError(message)

    def _missing(self, path: str) -> bool:
        response = self.client.request("PROPFIND", self._url(path, collection=True), content=_propfind_body(),
                                       headers={"Depth": "0"})
        return response.status_code == 404

    def _propfind(self, path: str, depth: str, *props: str) -> list[tuple[str, ET.Element]]:
        response = self._check(self.client.request("PROPFIND", self._url(path, collection=depth == "1"),
                                                   content=_propfind_body(*props), headers={"Depth": depth}),
                               "PROPFIND", path)
        root = ET.fromstring(response.content)  # noqa: S314 - the daemon's own answer, XML it wrote
        return [(unquote(urlsplit(r.findtext(f"{DAV}href") or "").path), r) for r in root.iter(f"{DAV}response")]

    def put(self, path: str, data: bytes) -> None:
        self._check(self.client.put(self._url(path), content=data), "PUT", path, self._parent(path))

    def get(self, path: str) -> bytes:
        return self._check(self.client.get(self._url(path)), "GET", path).content

    def sizes(self, path: str) -> dict[str, int]:
        own = self._url(path).rstrip("/")
        out = {}
        for href, response in self._propfind(path, "1", "resourcetype", "getcontentlength"):
            if href.rstrip("/") == unquote(own):
                continue
            out[href.rstrip("/").rsplit("/", 1)[-1]] = int(response.findtext(f".//{DAV}getcontentlength") or 0)
        return out

    def mtime(self, path: str) -> int:
        [(_, response)] = self._propfind(path, "0", "getlastmodified")
        return int(parsedate_to_datetime(response.findtext(f".//{DAV}getlastmodified") or "").timestamp())

    def set_mtime(self, path: str, when: int) -> None:
        """PROPPATCH of getlastmodified (the daemon lets it set the mtime, as Explorer and rclone expect)."""
        stamp = formatdate(when, usegmt=True)
        body = ('<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
                f"<D:getlastmodified>{stamp}</D:getlastmodified></D:prop></D:set></D:propertyupdate>").encode()
        response = self._check(self.client.request("PROPPATCH", self._url(path), content=body), "PROPPATCH", path)
        root = ET.fromstring(response.content)  # noqa: S314 - the daemon's own answer, XML it wrote
        statuses = [s.split()[1] for s in (e.text or "" for e in root.iter(f"{DAV}status")) if s]
        if statuses != ["200"]:
            raise PermissionError(errno.EACCES, f"PROPPATCH {path}: {statuses}")

    def rename(self, src: str, dst: str) -> None:
        headers = {"Destination": self.base.rstrip("/") + self._url(dst), "Overwrite": "T"}
        self._check(self.client.request("MOVE", self._url(src), headers=headers), "MOVE", src, self._parent(dst))

    def delete(self, path: str) -> None:
        self._check(self.client.delete(self._url(path)), "DELETE", path)

    def mkdir(self, path: str) -> None:
        self._check(self.client.request("MKCOL", self._url(path)), "MKCOL", path, self._parent(path))

    def rmdir(self, path: str) -> None:
        self._check(self.client.delete(self._url(path, collection=True)), "DELETE", path)

    def chmod(self, path: str, mode: int) -> None:
        raise NotImplementedError("WebDAV has no verb for permission bits (see lacks)")

    def close(self) -> None:
        self.client.close()


SIDES: dict[str, Callable[[Daemon, str], Side]] = {"sftp": SftpSide, "ftp": FtpSide, "webdav": WebdavSide}


def outcome(call: Callable[..., Any], *args: Any) -> Outcome:
    """What happened, in words all protocols share (FTP replies carry the VirtualFS's strerror; the
    WebDAV side raises the OSError its HTTP status stands for)."""
    try:
        call(*args)
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"
    except (ftplib.error_perm, OSError) as exc:
        # SFTP v3 has no code for "exists" (paramiko raises a bare IOError with the server's
        # message); FTP replies carry the message too.
        if getattr(exc, "errno", None) == errno.EEXIST:
            return "exists"
        text = str(exc)
        for words, name in (("Permission denied", "denied"), ("No such file", "missing"), ("exists", "exists")):
            if words in text:
                return name
        return "failed"
    return "ok"


PAIRS = list(itertools.permutations(SIDES, 2))
USERS = itertools.count(1)


@pytest.fixture(scope="module", params=["disk", "tmpfs"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the scenarios; each test works as a user of its own, in an empty home. Once
    with its data on disk, once on tmpfs, where fsyncs cost next to nothing and small commits and
    metadata changes soon run on the event loop instead of in their threads (xferd.inline)."""
    memory = Path("/dev/shm")
    if request.param == "tmpfs" and memory.is_dir():
        root = Path(tempfile.mkdtemp(prefix="xferd-parity-", dir=memory))
    else:
        root = tmp_path_factory.mktemp("parity")
    daemon = Daemon(root)
    daemon.start()
    try:
        yield daemon
    finally:
        if daemon.proc is not None:
            daemon.stop()
        if request.param == "tmpfs":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=PAIRS, ids=[f"{w}-writes-{r}-reads" for w, r in PAIRS])
def pair(request: pytest.FixtureRequest, shared: Daemon) -> Iterator[tuple[Side, Side]]:
    user = f"user{next(USERS)}"
    shared.add_user(user)
    writer, reader = (SIDES[name](shared, user) for name in request.param)
    yield writer, reader
    writer.close()
    reader.close()


class TestOneTreeTwoProtocols:
    def test_upload_list_download_rename_delete(self, pair: tuple[Side, Side]) -> None:
        """Written over one protocol, listed, downloaded, renamed and deleted over the other."""
        writer, reader = pair
        data = os.urandom(1024 * 1024 + 7)
        writer.mkdir("shared")
        writer.put("shared/a.bin", data)
        writer.put("shared/b.txt", b"small")
        expected = {"a.bin": len(data), "b.txt": 5}
        assert expected == reader.sizes("shared") == writer.sizes("shared")
        assert data == reader.get("shared/a.bin")
        reader.rename("shared/a.bin", "shared/c.bin")
        assert {"b.txt": 5, "c.bin": len(data)} == writer.sizes("shared")
        reader.delete("shared/b.txt")
        assert {"c.bin": len(data)} == writer.sizes("shared")
        assert data == writer.get("shared/c.bin")
        writer.delete("shared/c.bin")
        reader.rmdir("shared")
        assert "shared" not in writer.sizes(".")

    def test_times_set_on_one_are_seen_on_the_other(self, pair: tuple[Side, Side]) -> None:
        """A modification time set with MFMT, SETSTAT or PROPPATCH reads back the same through MDTM,
        STAT or PROPFIND."""
        writer, reader = pair
        writer.put("f", b"x")
        writer.set_mtime("f", 1_600_000_000)
        assert 1_600_000_000 == reader.mtime("f") == writer.mtime("f")

    def test_errors_match(self, pair: tuple[Side, Side]) -> None:
        """Missing files, missing parents, existing directories and non-empty directories fail alike."""
        writer, reader = pair
        writer.mkdir("d")
        writer.put("d/f", b"x")
        for side in (writer, reader):
            assert ("missing", "missing", "missing") == (outcome(side.get, "nope"), outcome(side.delete, "nope"),
                                                         outcome(side.rename, "nope", "x")), side.name
            assert ("missing", "missing") == (outcome(side.put, "nope/f", b"x"), outcome(side.mkdir, "nope/d")), \
                side.name
            assert "exists" == outcome(side.mkdir, "d"), side.name
            if "rmdir_nonempty" not in side.lacks:
                assert "failed" == outcome(side.rmdir, "d"), side.name
        assert {"f": 1} == writer.sizes("d") == reader.sizes("d")


# Each row: the permissions bob has on alice's home, then what each operation does.
OPERATIONS = ("list", "download", "upload_new", "overwrite", "rename", "delete", "mkdir", "chmod", "touch")
REFUSALS = [
    ("list", ("ok", "denied", "denied", "denied", "denied", "denied", "denied", "denied", "denied")),
    ("download", ("denied", "ok", "denied", "denied", "denied", "denied", "denied", "denied", "denied")),
    ("list,download,upload", ("ok", "ok", "ok", "denied", "denied", "denied", "denied", "denied", "denied")),
    ("list,download,overwrite,rename", ("ok", "ok", "denied", "ok", "ok", "denied", "denied", "denied", "denied")),
    ("list,delete,mkdir,chmod", ("ok", "denied", "denied", "denied", "denied", "ok", "ok", "ok", "denied")),
    ("list,chtimes", ("ok", "denied", "denied", "denied", "denied", "denied", "denied", "denied", "ok")),
]


def _try_all(side: Side) -> tuple[Outcome, ...]:
    return (
        outcome(side.sizes, "dir"),
        outcome(side.get, "dir/file.txt"),
        outcome(side.put, "dir/new.txt", b"new"),
        outcome(side.put, "dir/file.txt", b"overwritten"),
        outcome(side.rename, "dir/other.txt", "dir/renamed.txt"),
        outcome(side.delete, "dir/victim.txt"),
        outcome(side.mkdir, "dir/sub"),
        "n/a" if "chmod" in side.lacks else outcome(side.chmod, "dir/file.txt", 0o600),
        outcome(side.set_mtime, "dir/file.txt", 1_600_000_000),
    )


class TestSameRefusals:
    @pytest.mark.parametrize(("perms", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
    def test_permissions(self, shared: Daemon, perms: str, expected: tuple[Outcome, ...]) -> None:
        """bob, with only some permissions on alice's tree, gets the same answer to each operation
        over SFTP, FTP and WebDAV (each protocol on a fresh copy of the tree; WebDAV has no chmod).
        Both are users of this test alone."""
        alice = f"alice{next(USERS)}"
        bob = f"bob{next(USERS)}"
        shared.add_user(alice)
        shared.add_user(bob, PASSWORD, None, "--home", f"/{alice}", "--perms", "list")
        shared.cli("user", "grant", bob, f"/{alice}", perms)
        results = {}
        for name, make in SIDES.items():
            owner = SftpSide(shared, alice)
            owner.mkdir("dir")
            for f in ("file.txt", "other.txt", "victim.txt"):
                owner.put(f"dir/{f}", b"original")
            side = make(shared, bob)
            results[name] = {op: result for op, result in zip(OPERATIONS, _try_all(side), strict=True)
                             if op not in side.lacks}
            side.close()
            for f in list(owner.sizes("dir")):
                if f == "sub":
                    owner.rmdir("dir/sub")
                else:
                    owner.delete(f"dir/{f}")
            owner.rmdir("dir")
            owner.close()
        assert dict(zip(OPERATIONS, expected, strict=True)) == results["sftp"]
        assert results["sftp"] == results["ftp"]
        assert {op: r for op, r in results["sftp"].items() if op in results["webdav"]} == results["webdav"]
