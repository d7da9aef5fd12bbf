"""WebDAV MOVE over a file in one transaction, and whole-file downloads (sendfile) with their audit events.

The tests share one daemon; each logs in as a user of its own, in an empty home.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support import PASSWORD, Daemon


class TestMoveOverAFile:
    def test_replaced_in_one_rename(self, server: Daemon, user: str) -> None:
        """The destination is never deleted on its own: one fs.rename event, no fs.remove."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            http.put(server.dav_url("/src.txt"), content=b"new")
            http.put(server.dav_url("/dst.txt"), content=b"old")
            moved = http.request("MOVE", server.dav_url("/src.txt"),
                                 headers={"Destination": server.dav_url("/dst.txt"), "Overwrite": "T"})
            content = http.get(server.dav_url("/dst.txt")).content
            gone = http.get(server.dav_url("/src.txt")).status_code
        assert (204, b"new", 404) == (moved.status_code, content, gone)
        changes = [(e["event"], e["path"]) for e in server.events()
                   if e.get("event") in ("fs.rename", "fs.remove") and e.get("user") == user]
        assert [("fs.rename", "/src.txt")] == changes

    def test_folder_over_a_file(self, server: Daemon, user: str) -> None:
        """A folder may still replace a file (in two steps: the file goes, then the folder moves)."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            http.request("MKCOL", server.dav_url("/folder"))
            http.put(server.dav_url("/folder/x"), content=b"x")
            http.put(server.dav_url("/plain"), content=b"p")
            moved = http.request("MOVE", server.dav_url("/folder/"),
                                 headers={"Destination": server.dav_url("/plain"), "Overwrite": "T"})
            inner = http.get(server.dav_url("/plain/x")).content
        assert (204, b"x") == (moved.status_code, inner)

    def test_no_overwrite_keeps_both(self, server: Daemon, user: str) -> None:
        """With Overwrite: F an existing destination is refused with 412 and both files stay."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            http.put(server.dav_url("/a"), content=b"a")
            http.put(server.dav_url("/b"), content=b"b")
            moved = http.request("MOVE", server.dav_url("/a"),
                                 headers={"Destination": server.dav_url("/b"), "Overwrite": "F"})
            both = (http.get(server.dav_url("/a")).content, http.get(server.dav_url("/b")).content)
        assert (412, (b"a", b"b")) == (moved.status_code, both)


class TestDownloads:
    def test_whole_file_download_is_audited(self, server: Daemon, user: str) -> None:
        """A plain GET (sent with sendfile) and one over HTTPS deliver the file and record an
        fs.download event with every byte counted."""
        data = bytes(range(256)) * 8192  # 2 MiB, more than one hop
        with httpx.Client(auth=(user, PASSWORD)) as http:
            http.put(server.dav_url("/big.bin"), content=data)
            plain = http.get(server.dav_url("/big.bin"))
        with httpx.Client(auth=(user, PASSWORD), verify=False) as https:  # noqa: S501 - the daemon's self-signed certificate
            secure = https.get(server.dav_url("/big.bin", tls=True))
        assert (data, data) == (plain.content, secure.content)
        assert plain.headers["etag"] == secure.headers["etag"]
        def downloads() -> list[dict[str, Any]]:
            return [e for e in server.events("fs.download") if (e.get("user"), e.get("path")) == (user, "/big.bin")]

        deadline = time.monotonic() + 10  # each event is written as its response ends
        while len(downloads()) < 2:
            assert time.monotonic() < deadline, "fs.download events missing"
            time.sleep(0.05)
        done = [(e["outcome"], e["bytes"]) for e in downloads()]
        assert [("ok", len(data)), ("ok", len(data))] == done

    def test_range_still_served(self, server: Daemon, user: str) -> None:
        """A GET with Range is answered 206 with just those bytes."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            http.put(server.dav_url("/r.bin"), content=b"0123456789")
            part = http.get(server.dav_url("/r.bin"), headers={"Range": "bytes=2-4"})
        assert (206, b"234") == (part.status_code, part.content)
