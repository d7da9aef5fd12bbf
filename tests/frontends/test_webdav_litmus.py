"""WebDAV conformance: the litmus suites against a real daemon, and locks and dead properties that
survive a restart of the daemon."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import PASSWORD, Daemon, require_tool, running_daemon

SUITES = ["basic", "copymove", "props", "locks", "http"]
SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed\.")
TEST_NS = "urn:xferd-test"
LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?>\n'
            b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b'<D:locktype><D:write/></D:locktype><D:owner>persistence test</D:owner></D:lockinfo>')
PROPPATCH = (f'<?xml version="1.0" encoding="utf-8"?>\n'
             f'<D:propertyupdate xmlns:D="DAV:" xmlns:x="{TEST_NS}">'
             f'<D:set><D:prop><x:colour>deep blue</x:colour></D:prop></D:set></D:propertyupdate>').encode()
PROPFIND = (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<D:propfind xmlns:D="DAV:" xmlns:x="{TEST_NS}">'
            f'<D:prop><x:colour/><D:lockdiscovery/></D:prop></D:propfind>').encode()


@pytest.fixture(scope="module")
def litmus_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with user alice for all the suites (each suite starts from a fresh /litmus/)."""
    with running_daemon(tmp_path_factory.mktemp("litmus-daemon")) as daemon:
        yield daemon


def dav_client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=daemon.dav_url(""), auth=("alice", PASSWORD), timeout=30)


class TestLitmus:
    @pytest.mark.parametrize("suite", SUITES)
    def test_suite_passes(self, litmus_daemon: Daemon, tmp_path: Path, suite: str) -> None:
        """Every test of the litmus suite passes over plain HTTP, with no warning."""
        require_tool("litmus")
        result = subprocess.run(["litmus", litmus_daemon.dav_url("/"), "alice", PASSWORD], cwd=tmp_path,
                                env={**os.environ, "TESTS": suite}, capture_output=True, text=True,
                                timeout=120)
        output = result.stdout + result.stderr
        summaries = [m.groups() for m in SUMMARY.finditer(output)]
        assert 1 == len(summaries), output[-3000:]
        name, run, passed, failed = summaries[0]
        assert (suite, "0") == (name, failed), output[-3000:]
        assert run == passed
        assert 0 == result.returncode, output[-3000:]
        assert not re.search(r"-> \d+ warnings? (was|were) issued", output), output[-3000:]


def _lock_and_property(response: httpx.Response) -> tuple[str | None, list[str]]:
    """The dead property's value and the lock tokens in a PROPFIND Depth 0 answer."""
    root = ET.fromstring(response.content)  # noqa: S314 - the daemon's own answer, XML it wrote
    colour = root.find(f".//{{{TEST_NS}}}colour")
    tokens = [(href.text or "").strip()
              for href in root.iterfind(".//{DAV:}lockdiscovery/{DAV:}activelock/{DAV:}locktoken/{DAV:}href")]
    return (colour.text if colour is not None else None), tokens


class TestPersistence:
    def test_lock_and_dead_property_survive_a_restart(self, alice: Daemon) -> None:
        """After a restart, the dead property is there, the lock too, and it still guards the file."""
        with dav_client(alice) as client:
            assert 201 == client.put("/doc.txt", content=b"version 1").status_code
            lock = client.request("LOCK", "/doc.txt", content=LOCKINFO,
                                  headers={"Timeout": "Second-3600", "Depth": "0",
                                           "Content-Type": "application/xml"})
            assert 200 == lock.status_code, lock.text
            token = lock.headers["Lock-Token"].strip("<>")
            assert token.startswith("opaquelocktoken:")
            patched = client.request("PROPPATCH", "/doc.txt", content=PROPPATCH,
                                     headers={"If": f"(<{token}>)", "Content-Type": "application/xml"})
            assert 207 == patched.status_code, patched.text
            assert ("deep blue", [token]) == _lock_and_property(
                client.request("PROPFIND", "/doc.txt", content=PROPFIND, headers={"Depth": "0"}))

        alice.stop()
        alice.start()

        with dav_client(alice) as client:
            found = client.request("PROPFIND", "/doc.txt", content=PROPFIND, headers={"Depth": "0"})
            assert 207 == found.status_code, found.text
            assert ("deep blue", [token]) == _lock_and_property(found)
            assert 423 == client.put("/doc.txt", content=b"version 2 without the token").status_code
            assert b"version 1" == client.get("/doc.txt").content
            with_token = client.put("/doc.txt", content=b"version 2", headers={"If": f"(<{token}>)"})
            assert with_token.status_code in (200, 204), with_token.text
            assert b"version 2" == client.get("/doc.txt").content
