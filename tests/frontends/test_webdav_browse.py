"""WebDAV for browsers and Finder: an HTML listing for a collection URL, and the policy for macOS
metadata files.

The tests share one daemon and log in as a user of their own, in an empty home; the test of another
policy starts a daemon of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support import PASSWORD, Daemon

AUTH = ("alice", PASSWORD)


class TestHtmlListing:
    def test_collection_lists_its_members(self, server: Daemon, user: str) -> None:
        """GET of a collection URL answers an HTML page linking each member, names escaped and quoted."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            assert 201 == http.request("MKCOL", server.dav_url("/docs")).status_code
            assert 201 == http.put(server.dav_url("/docs/a%20%3Cb%3E.txt"), content=b"x").status_code
            assert 201 == http.request("MKCOL", server.dav_url("/docs/sub")).status_code
            page = http.get(server.dav_url("/docs/"))
        assert (200, "text/html; charset=utf-8") == (page.status_code, page.headers["content-type"])
        assert '<a href="a%20%3Cb%3E.txt">a &lt;b&gt;.txt</a>' in page.text
        assert '<a href="sub/">sub/</a>' in page.text
        assert '<a href="../">../</a>' in page.text

    def test_head_has_no_body(self, server: Daemon, user: str) -> None:
        """HEAD of a collection URL gives the headers of the listing and no body."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            head = http.head(server.dav_url("/"))
        assert (200, b"") == (head.status_code, head.content)
        assert int(head.headers["content-length"]) > 0

    def test_listing_needs_login(self, server: Daemon) -> None:
        """Without credentials the listing is refused with 401."""
        assert 401 == httpx.get(server.dav_url("/")).status_code


class TestAppleFiles:
    def test_stored_by_default(self, server: Daemon, user: str) -> None:
        """With the default policy Finder's ._ files are stored like any file."""
        with httpx.Client(auth=(user, PASSWORD)) as http:
            assert 201 == http.put(server.dav_url("/._photo.jpg"), content=b"fork").status_code
            assert b"fork" == http.get(server.dav_url("/._photo.jpg")).content

    def test_refused_cheaply(self, make_daemon: Callable[..., Daemon]) -> None:
        """With apple_files = "refuse", ._* and .DS_Store are answered 404 without touching the tree."""
        daemon = make_daemon(webdav={"apple_files": "refuse"})
        daemon.add_user("alice")
        with httpx.Client(auth=AUTH) as http:
            answers = [http.put(daemon.dav_url("/._photo.jpg"), content=b"fork").status_code,
                       http.request("PROPFIND", daemon.dav_url("/.DS_Store"), headers={"Depth": "0"}).status_code,
                       http.put(daemon.dav_url("/photo.jpg"), content=b"jpg").status_code]
            listing = http.get(daemon.dav_url("/")).text
        assert [404, 404, 201] == answers
        assert "._photo.jpg" not in listing
        assert not [e for e in daemon.events() if "DS_Store" in str(e.get("path", ""))]
