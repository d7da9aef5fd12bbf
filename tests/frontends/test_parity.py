"""Parity: one scenario over SFTP (paramiko) and FTP (ftplib) on one daemon. What one protocol
writes the other reads, and both refuse the same operations for the same missing permission."""

from __future__ import annotations

import errno
import ftplib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from tests.support import PASSWORD, Daemon, ftp_login, paramiko_sftp

Outcome = str  # "ok", "denied", "missing", "exists" or "failed"


class Side(Protocol):
    name: str

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


SIDES: dict[str, Callable[[Daemon, str], Side]] = {"sftp": SftpSide, "ftp": FtpSide}


def outcome(call: Callable[..., Any], *args: Any) -> Outcome:
    """What happened, in words both protocols share (FTP replies carry the VirtualFS's strerror)."""
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


@pytest.fixture(params=[("sftp", "ftp"), ("ftp", "sftp")], ids=["sftp-writes", "ftp-writes"])
def pair(request: pytest.FixtureRequest, alice: Daemon) -> Iterator[tuple[Side, Side]]:
    writer, reader = (SIDES[name](alice, "alice") for name in request.param)
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
        """A modification time set with MFMT or SETSTAT reads back the same through MDTM or STAT."""
        writer, reader = pair
        writer.put("f", b"x")
        writer.set_mtime("f", 1_600_000_000)
        assert 1_600_000_000 == reader.mtime("f") == writer.mtime("f")

    def test_errors_match(self, pair: tuple[Side, Side]) -> None:
        """Missing files, existing directories and non-empty directories fail alike."""
        writer, reader = pair
        writer.mkdir("d")
        writer.put("d/f", b"x")
        for side in (writer, reader):
            assert ("missing", "missing", "missing") == (outcome(side.get, "nope"), outcome(side.delete, "nope"),
                                                         outcome(side.rename, "nope", "x")), side.name
            assert "exists" == outcome(side.mkdir, "d"), side.name
            assert "failed" == outcome(side.rmdir, "d"), side.name


# Each row: the permissions bob has on alice's home, then what each operation does.
OPERATIONS = ("list", "download", "upload_new", "overwrite", "rename", "delete", "mkdir", "chmod")
REFUSALS = [
    ("list", ("ok", "denied", "denied", "denied", "denied", "denied", "denied", "denied")),
    ("download", ("denied", "ok", "denied", "denied", "denied", "denied", "denied", "denied")),
    ("list,download,upload", ("ok", "ok", "ok", "denied", "denied", "denied", "denied", "denied")),
    ("list,download,overwrite,rename", ("ok", "ok", "denied", "ok", "ok", "denied", "denied", "denied")),
    ("list,delete,mkdir,chmod", ("ok", "denied", "denied", "denied", "denied", "ok", "ok", "ok")),
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
        outcome(side.chmod, "dir/file.txt", 0o600),
    )


class TestSameRefusals:
    @pytest.mark.parametrize(("perms", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
    def test_permissions(self, daemon: Daemon, perms: str, expected: tuple[Outcome, ...]) -> None:
        """bob, with only some permissions on alice's tree, gets the same answer to each operation
        over SFTP and FTP (each protocol on a fresh copy of the tree)."""
        daemon.add_user("alice")
        daemon.add_user("bob", PASSWORD, None, "--home", "/alice", "--perms", "list")
        daemon.cli("user", "grant", "bob", "/alice", perms)
        results = {}
        for name, make in SIDES.items():
            owner = SftpSide(daemon, "alice")
            owner.mkdir("dir")
            for f in ("file.txt", "other.txt", "victim.txt"):
                owner.put(f"dir/{f}", b"original")
            bob = make(daemon, "bob")
            results[name] = _try_all(bob)
            bob.close()
            for f in list(owner.sizes("dir")):
                if f == "sub":
                    owner.rmdir("dir/sub")
                else:
                    owner.delete(f"dir/{f}")
            owner.rmdir("dir")
            owner.close()
        assert dict(zip(OPERATIONS, expected, strict=True)) == dict(zip(OPERATIONS, results["sftp"], strict=True))
        assert results["sftp"] == results["ftp"]
