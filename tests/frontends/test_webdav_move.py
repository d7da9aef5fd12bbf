"""WebDAV MOVE with Overwrite: T replaces a file in the same metadata transaction as the rename."""

from __future__ import annotations

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
