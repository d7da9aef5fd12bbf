"""xferd.frontends.ftp.listing: MLSD lines, the one-template way against the fact-by-fact way."""

from __future__ import annotations

import pytest

from xferd.frontends.ftp.listing import FACTS, mlsd_lines, mlsx_facts
from xferd.metadata.models import Grant, Inode, Perm, Tenant, User
from xferd.vfs.policy import Policy
from xferd.vfs.session import Session

REAL = ("docs",)
ENTRIES = [
    ("plain.txt", Inode(10, "file", 4096, 0o644, 1_700_000_000.9, 0.0, 0.0, 1, "b1", None, 1)),
    ("same second", Inode(11, "file", 0, 0o600, 1_700_000_000.2, 0.0, 0.0, 2, None, None, 1)),
    ("sub", Inode(0x2F, "dir", 0, 0o755, 1_600_000_000.0, 0.0, 0.0, 2, None, None, 1)),
    ("link", Inode(13, "symlink", 9, 0o777, 1_500_000_000.0, 0.0, 0.0, 1, None, "plain.txt", 1)),
    ("ünï cödé", Inode(14, "file", 1 << 40, 0o640, -5.0, 0.0, 0.0, 1, "b2", None, 1)),
    ("raw\udcff", Inode(15, "file", 1, 0o644, 0.0, 0.0, 0.0, 1, "b3", None, 1)),
]


def session(*grants: Grant) -> Session:
    tenant = Tenant(0x1A, "default", 1)
    user = User(1, tenant, "alice", None, False, "/alice", 0, 0)
    return Session(user, Policy.of(grants or (Grant("/alice", Perm.all(), "user:alice"),)), "ftp", "127.0.0.1", 1)


def fact_by_fact(s: Session, facts: tuple[str, ...]) -> bytes:
    return b"".join(f"{mlsx_facts(name, (*REAL, name), inode, facts, s)} {name}\r\n".encode("utf-8", "surrogateescape")
                    for name, inode in ENTRIES)


class TestMlsd:
    def test_all_facts_are_those_of_the_fact_by_fact_way(self) -> None:
        """With every fact (the default), each line is byte for byte what mlsx_facts gives: kinds,
        a symbolic link's target, a time before 1970, UTF-8 and a name that is not UTF-8."""
        s = session()
        lines = b"".join(mlsd_lines(REAL, ENTRIES, FACTS, s))
        assert fact_by_fact(s, FACTS) == lines
        assert (b"type=dir;size=0;modify=20200913122640;perm=elcmpdf;unique=1ag2f;unix.mode=0755; sub\r\n"
                in lines)
        assert b"modify=19700101000000;" in lines and b"type=OS.unix=slink:plain.txt;" in lines

    @pytest.mark.parametrize("facts", [("size", "type"), ("modify",), ()])
    def test_chosen_facts(self, facts: tuple[str, ...]) -> None:
        """Facts chosen with OPTS MLST come in their order, and only they."""
        s = session()
        lines = b"".join(mlsd_lines(REAL, ENTRIES, facts, s))
        assert fact_by_fact(s, facts) == lines
        assert len(ENTRIES) == lines.count(b"\r\n")

    def test_a_grant_below_the_directory(self) -> None:
        """A rule on one entry gives it its own permissions; the others keep the directory's."""
        s = session(Grant("/alice", Perm.all(), "user:alice"), Grant("/alice/docs/plain.txt", Perm.DOWNLOAD,
                                                                       "user:alice"))
        lines = b"".join(mlsd_lines(REAL, ENTRIES, FACTS, s)).split(b"\r\n")
        assert fact_by_fact(s, FACTS).split(b"\r\n") == lines
        assert (b";perm=r;", b";perm=adfrw;") == (lines[0][lines[0].index(b";perm"):lines[0].index(b"unique")],
                                                  lines[1][lines[1].index(b";perm"):lines[1].index(b"unique")])
