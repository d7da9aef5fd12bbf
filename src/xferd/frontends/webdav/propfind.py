"""PROPFIND of depth 0 and 1, answered without wsgidav.

wsgidav builds a resource object per member and asks for each property separately (about 195 us
per entry: 2 s for 10,000 entries). Here a listing costs a few queries, whatever its size, all in
one call on the event loop (:meth:`Listing.load`): the target's stat, the directory listing with
attributes and ETags (the stored SHA-256 sums), the dead properties of all members, the locks at
and below the target, the quota when asked for. The response is streamed in pieces of about
64 KiB as it is built. The loop's plain-HTTP listener answers depth 0 with the same two parts
(:mod:`.loopfront`).

Handled here: ``allprop`` (also an empty body) and ``prop`` with any names, live or dead. Anything
else (``propname``, ``include``) and every error (a missing target, no permission) goes to wsgidav,
which answers them as RFC 4918 says.
"""

from __future__ import annotations

import functools
import mimetypes
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from xferd.metadata.models import Inode, LockRecord
from xferd.vfs import paths
from xferd.vfs.filesystem import EMPTY_SUMS, Space, VirtualFS
from xferd.vfs.session import Session

DAV = "{DAV:}"
REFUSE_INFINITY = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                   b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')
CHUNK = 64 * 1024
_PLAIN = re.compile(r"[A-Za-z0-9._~-]+")  # names that need no quoting in a URL
# Live properties returned for allprop (RFC 4918 15; the RFC 4331 quota properties are not).
ALLPROP = ("resourcetype", "creationdate", "getcontentlength", "getcontenttype", "getlastmodified",
           "displayname", "getetag", "lockdiscovery", "supportedlock")
LIVE = frozenset(ALLPROP) | {"quota-available-bytes", "quota-used-bytes"}
SUPPORTED_LOCK = ("<D:supportedlock><D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/>"
                  "</D:locktype></D:lockentry><D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype>"
                  "<D:write/></D:locktype></D:lockentry></D:supportedlock>")


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The response, or None to let wsgidav answer."""
    depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
    if depth == "infinity" and not environ["xferd.frontend"].config.allow_depth_infinity:
        start_response("403 Forbidden", [("Content-Type", 'application/xml; charset="utf-8"'),
                                         ("Content-Length", str(len(REFUSE_INFINITY)))])
        return [REFUSE_INFINITY]
    if depth not in ("0", "1"):
        return None
    names = wanted(environ.get("xferd.xml"))
    if names is None:
        return None
    frontend = environ["xferd.frontend"]
    try:
        listing: Listing = frontend.bridge.call(Listing.load, frontend.vfs, environ["xferd.session"],
                                                environ.get("PATH_INFO") or "/", depth == "1", names)
    except OSError:
        return None  # wsgidav answers the error (404, 403, ...) as RFC 4918 wants
    start_response("207 Multi-Status", [("Content-Type", 'application/xml; charset="utf-8"')])
    return listing.render()


def wanted(root: Any) -> list[str] | None:
    """Clark names asked for; [] for allprop; None for what wsgidav should answer."""
    if root is None:
        return []
    if root.tag != f"{DAV}propfind":
        return None
    children = [c for c in root if isinstance(c.tag, str)]
    if len(children) != 1:
        return None
    child = children[0]
    if child.tag == f"{DAV}allprop":
        return []
    if child.tag == f"{DAV}prop":
        names = [c.tag for c in child if isinstance(c.tag, str)]
        return names or None
    return None


class Listing:
    """What a PROPFIND answers about ``path`` (and with ``members`` its members), gathered by
    :meth:`load` in one call on the event loop, then rendered wherever the answer is sent."""

    def __init__(self, session: Session, path: str, wanted: list[str]) -> None:
        self.session = session
        self.wanted = wanted
        self.base = "/" + "/".join(paths.split(path))
        self.entries: list[tuple[str, Inode]] = []
        self.etags: dict[str, str] = {}
        self.dead: dict[int, dict[str, str]] = {}
        self.locks: list[LockRecord] = []
        self.space: Space | None = None

    @classmethod
    async def load(cls, vfs: VirtualFS, s: Session, path: str, members: bool, wanted: list[str]) -> Listing:
        """The target's stat, its members with their ETags, and the dead properties, locks and
        quota asked for; an OSError (a missing target, no permission) is for wsgidav to answer."""
        self = cls(s, path, wanted)
        inode = await vfs.stat(s, path)
        self.entries.append((self.base, inode))
        named = set(wanted)
        allprop = not wanted
        want_etags = allprop or f"{DAV}getetag" in named
        if members and inode.kind == "dir":
            # With the ETags: the listing and the stored SHA-256 sums in one query.
            if want_etags:
                listing, self.etags = await vfs.list_etags(s, path)
            else:
                listing = await vfs.list(s, path)
            prefix = self.base.rstrip("/") + "/"
            self.entries += [(prefix + name, child) for name, child in listing.entries if child.kind != "symlink"]
        elif want_etags and inode.blob_id:
            self.etags = await vfs.blob_etags(s, [inode.blob_id])
        if allprop or any(not n.startswith(DAV) for n in named):
            self.dead = await vfs.dead_props(s, [i.ino for _, i in self.entries])
        if allprop or f"{DAV}lockdiscovery" in named:
            self.locks = await vfs.locks(s, path, members)
        if f"{DAV}quota-available-bytes" in named or f"{DAV}quota-used-bytes" in named:
            self.space = await vfs.space(s)
        return self

    def render(self) -> Iterator[bytes]:
        parts: list[str] = ['<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">']
        size = 0
        pieces = self._allprop_rows() if not self.wanted and not self.locks else (
            self._response(path, inode) for path, inode in self.entries)
        for piece in pieces:
            parts.append(piece)
            size += len(piece)
            if size >= CHUNK:
                yield "".join(parts).encode("utf-8")
                parts, size = [], 0
        parts.append("</D:multistatus>\n")
        yield "".join(parts).encode("utf-8")

    def _response(self, path: str, inode: Inode) -> str:
        is_dir = inode.kind == "dir"
        href = quote(path + ("/" if is_dir and path != "/" else ""), safe="/")
        dead = self.dead.get(inode.ino, {})
        found: list[str] = []
        missing: list[str] = []
        names = self.wanted or [DAV + n for n in ALLPROP]
        for name in names:
            value = self._live(name[len(DAV):], path, inode) if name.startswith(DAV) else None
            if value is not None:
                found.append(value)
            elif name in dead:
                found.append(_element(dead[name]))
            elif self.wanted:
                missing.append(_empty(name))
        if not self.wanted:
            found += [_element(v) for n, v in dead.items()]
        out = [f"<D:response><D:href>{href}</D:href>"]
        if found:
            out.append(f"<D:propstat><D:prop>{''.join(found)}</D:prop>"
                       "<D:status>HTTP/1.1 200 OK</D:status></D:propstat>")
        if missing:
            out.append(f"<D:propstat><D:prop>{''.join(missing)}</D:prop>"
                       "<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>")
        out.append("</D:response>")
        return "".join(out)

    def _allprop_rows(self) -> Iterator[str]:
        """allprop without locks, one template per entry: the listing Explorer, Finder and rclone ask
        for, kept tight (10,000 entries cost about as much as the query that lists them)."""
        etags, dead_props = self.etags, self.dead
        prefix = self.base.rstrip("/") + "/"
        quoted_prefix = quote(prefix, safe="/")
        start = len(prefix)
        for index, (path, inode) in enumerate(self.entries):
            if index == 0:  # the target itself
                href, name = quote(path.rstrip("/"), safe="/"), path.rstrip("/").rsplit("/", 1)[-1]
            else:
                name = path[start:]
                href = quoted_prefix + (name if _PLAIN.fullmatch(name) else quote(name, safe=""))
            if "&" in name or "<" in name or ">" in name:
                name = escape(name)
            extra = "".join(_element(v) for v in dead_props[inode.ino].values()) if inode.ino in dead_props else ""
            yield _allprop_row(href, name, path, inode, etags, extra)

    def _live(self, local: str, path: str, inode: Inode) -> str | None:
        is_dir = inode.kind == "dir"
        if local == "resourcetype":
            return "<D:resourcetype><D:collection/></D:resourcetype>" if is_dir else "<D:resourcetype/>"
        if local == "creationdate":
            return f"<D:creationdate>{_iso_date(inode.ctime)}</D:creationdate>"
        if local == "getlastmodified":
            return f"<D:getlastmodified>{http_date(inode.mtime)}</D:getlastmodified>"
        if local == "displayname":
            name = path.rstrip("/").rsplit("/", 1)[-1]
            return f"<D:displayname>{escape(name)}</D:displayname>"
        if local == "supportedlock":
            return SUPPORTED_LOCK
        if local == "lockdiscovery":
            return self._lockdiscovery(path)
        if local == "quota-available-bytes" and self.space is not None:
            return f"<D:quota-available-bytes>{self.space.free}</D:quota-available-bytes>"
        if local == "quota-used-bytes" and self.space is not None:
            return f"<D:quota-used-bytes>{self.space.used}</D:quota-used-bytes>"
        if is_dir:
            return None
        if local == "getcontentlength":
            return f"<D:getcontentlength>{inode.size}</D:getcontentlength>"
        if local == "getcontenttype":
            return f"<D:getcontenttype>{content_type(path)}</D:getcontenttype>"
        if local == "getetag":
            etag = self.etags.get(inode.blob_id or "", EMPTY_SUMS.sha256)
            return f'<D:getetag>"{etag}"</D:getetag>'
        return None

    def _lockdiscovery(self, path: str) -> str:
        where = paths.tenant_path(self.session.user.home, paths.split(path))
        active = []
        for lock in self.locks:
            if not lock.covers(where):
                continue
            root = paths.from_tenant(self.session.user.home, lock.path)
            if root is None:
                continue
            timeout = "Infinite" if lock.expire < 0 else f"Second-{max(int(lock.expire - time.time()), 0)}"
            active.append(
                f"<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{lock.scope}/></D:lockscope>"
                f"<D:depth>{lock.depth}</D:depth>{_owner(lock.owner)}<D:timeout>{timeout}</D:timeout>"
                f"<D:locktoken><D:href>{escape(lock.token)}</D:href></D:locktoken>"
                f"<D:lockroot><D:href>{quote(root, safe='/')}</D:href></D:lockroot></D:activelock>")
        return f"<D:lockdiscovery>{''.join(active)}</D:lockdiscovery>"


_ALLPROP_TAIL = f"<D:lockdiscovery/>{SUPPORTED_LOCK}"


def _allprop_row(href: str, name: str, path: str, inode: Inode, etags: dict[str, str], extra: str) -> str:
    """One entry's allprop response; ``href`` without a collection's trailing slash, ``name`` escaped."""
    if inode.kind == "dir":
        return (f"<D:response><D:href>{href}/</D:href><D:propstat><D:prop>"
                f"<D:resourcetype><D:collection/></D:resourcetype>"
                f"<D:creationdate>{_iso_date(inode.ctime)}</D:creationdate>"
                f"<D:getlastmodified>{http_date(inode.mtime)}</D:getlastmodified>"
                f"<D:displayname>{name}</D:displayname>{_ALLPROP_TAIL}{extra}"
                "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")
    etag = etags.get(inode.blob_id, EMPTY_SUMS.sha256) if inode.blob_id else EMPTY_SUMS.sha256
    return (f"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/>"
            f"<D:creationdate>{_iso_date(inode.ctime)}</D:creationdate>"
            f"<D:getcontentlength>{inode.size}</D:getcontentlength>"
            f"<D:getcontenttype>{content_type(path)}</D:getcontenttype>"
            f'<D:getetag>"{etag}"</D:getetag>'
            f"<D:getlastmodified>{http_date(inode.mtime)}</D:getlastmodified>"
            f"<D:displayname>{name}</D:displayname>{_ALLPROP_TAIL}{extra}"
            "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")


def _owner(owner: str) -> str:
    return _element(owner) if owner else ""


def _element(xml: str | bytes) -> str:
    """A stored XML element, without an XML declaration, to embed as is."""
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8")
    if xml.startswith("<?xml"):
        xml = xml[xml.index("?>") + 2:].lstrip()
    return xml


def _empty(name: str) -> str:
    if name.startswith(DAV):
        return f"<D:{name[len(DAV):]}/>"
    if not name.startswith("{"):
        return f'<{name} xmlns=""/>'
    ns, _, local = name[1:].partition("}")
    return f'<X:{local} xmlns:X="{escape(ns, {chr(34): "&quot;"})}"/>'


def _iso_date(when: float) -> str:
    return _iso_second(int(when))


def http_date(when: float) -> str:
    return _http_second(int(when))


# Files written together share their second: cached by whole second.
@functools.lru_cache(maxsize=4096)
def _iso_second(when: int) -> str:
    t = time.gmtime(when)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


@functools.lru_cache(maxsize=4096)
def _http_second(when: int) -> str:
    """RFC 9110's IMF-fixdate, without the locale that strftime's %a and %b would use."""
    t = time.gmtime(when)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def content_type(path: str) -> str:
    dot = path.rfind(".")
    return _type_of(path[dot:].lower() if dot > path.rfind("/") else "")


@functools.lru_cache(maxsize=1024)
def _type_of(suffix: str) -> str:
    kind, _ = mimetypes.guess_type("x" + suffix)
    return escape(kind or "application/octet-stream")
