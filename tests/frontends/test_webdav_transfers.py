"""WebDAV MOVE over a file in one transaction, and whole-file downloads (sendfile) with their audit events."""

from __future__ import annotations

import time

import httpx

from tests.support import PASSWORD, Daemon

AUTH = ("alice", PASSWORD)


class TestMoveOverAFile:
    def test_replaced_in_one_rename(self, alice: Daemon) -> None:
        """The destination is never deleted on its own: one fs.rename event, no fs.remove."""
        with httpx.Client(auth=AUTH) as http:
            http.put(alice.dav_url("/src.txt"), content=b"new")
            http.put(alice.dav_url("/dst.txt"), content=b"old")
            moved = http.request("MOVE", alice.dav_url("/src.txt"),
                                 headers={"Destination": alice.dav_url("/dst.txt"), "Overwrite": "T"})
            content = http.get(alice.dav_url("/dst.txt")).content
            gone = http.get(alice.dav_url("/src.txt")).status_code
        assert (204, b"new", 404) == (moved.status_code, content, gone)
        changes = [(e["event"], e["path"]) for e in alice.events() if e.get("event") in ("fs.rename", "fs.remove")]
        assert [("fs.rename", "/src.txt")] == changes

    def test_folder_over_a_file(self, alice: Daemon) -> None:
        """A folder may still replace a file (in two steps: the file goes, then the folder moves)."""
        with httpx.Client(auth=AUTH) as http:
            http.request("MKCOL", alice.dav_url("/folder"))
            http.put(alice.dav_url("/folder/x"), content=b"x")
            http.put(alice.dav_url("/plain"), content=b"p")
            moved = http.request("MOVE", alice.dav_url("/folder/"),
                                 headers={"Destination": alice.dav_url("/plain"), "Overwrite": "T"})
            inner = http.get(alice.dav_url("/plain/x")).content
        assert (204, b"x") == (moved.status_code, inner)

    def test_no_overwrite_keeps_both(self, alice: Daemon) -> None:
        """With Overwrite: F an existing destination is refused with 412 and both files stay."""
        with httpx.Client(auth=AUTH) as http:
            http.put(alice.dav_url("/a"), content=b"a")
            http.put(alice.dav_url("/b"), content=b"b")
            moved = http.request("MOVE", alice.dav_url("/a"),
                                 headers={"Destination": alice.dav_url("/b"), "Overwrite": "F"})
            both = (http.get(alice.dav_url("/a")).content, http.get(alice.dav_url("/b")).content)
        assert (412, (b"a", b"b")) == (moved.status_code, both)


class TestDownloads:
    def test_whole_file_download_is_audited(self, alice: Daemon) -> None:
        """A plain GET (sent with sendfile) and one over HTTPS deliver the file and record an
        fs.download event with every byte counted."""
        data = bytes(range(256)) * 8192  # 2 MiB, more than one hop
        with httpx.Client(auth=AUTH) as http:
            http.put(alice.dav_url("/big.bin"), content=data)
            plain = http.get(alice.dav_url("/big.bin"))
        with httpx.Client(auth=AUTH, verify=False) as https:  # noqa: S501 - the daemon's self-signed certificate
            secure = https.get(alice.dav_url("/big.bin", tls=True))
        assert (data, data) == (plain.content, secure.content)
        assert plain.headers["etag"] == secure.headers["etag"]
        deadline = time.monotonic() + 10  # each event is written as its response ends
        while len([e for e in alice.events("fs.download") if e.get("path") == "/big.bin"]) < 2:
            assert time.monotonic() < deadline, "fs.download events missing"
            time.sleep(0.05)
        done = [(e["outcome"], e["bytes"]) for e in alice.events("fs.download") if e.get("path") == "/big.bin"]
        assert [("ok", len(data)), ("ok", len(data))] == done

    def test_range_still_served(self, alice: Daemon) -> None:
        """A GET with Range is answered 206 with just those bytes."""
        with httpx.Client(auth=AUTH) as http:
            http.put(alice.dav_url("/r.bin"), content=b"0123456789")
            part = http.get(alice.dav_url("/r.bin"), headers={"Range": "bytes=2-4"})
        assert (206, b"234") == (part.status_code, part.content)
