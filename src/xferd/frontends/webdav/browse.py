"""GET of a collection URL (ending in "/"): a plain HTML listing, as a browser user expects."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from xferd.errors import NotADirectory, NotFound


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The listing, or None (not a collection, or an error) to let wsgidav answer."""
    path = environ.get("PATH_INFO") or "/"
    if not path.endswith("/"):
        return None
    frontend, session = environ["xferd.frontend"], environ["xferd.session"]
    try:
        listing = frontend.bridge.call(frontend.vfs.list, session, path)
    except (NotFound, NotADirectory, PermissionError):
        return None
    title = html.escape(path)
    rows = []
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for name, inode in listing.entries:
        if inode.kind == "symlink":
            continue
        shown = name + ("/" if inode.kind == "dir" else "")
        size = "" if inode.kind == "dir" else str(inode.size)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(inode.mtime))
        rows.append(f'<tr><td><a href="{quote(shown)}">{html.escape(shown)}</a></td>'
                    f'<td align="right">{size}</td><td>{when}</td></tr>')
    body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><table><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>"
            f"{''.join(rows)}</table></body></html>\n").encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
