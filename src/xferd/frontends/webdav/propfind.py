"""PROPFIND, answered without wsgidav where it is slow or must refuse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

REFUSE_INFINITY = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                   b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The response, or None to let wsgidav answer."""
    depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
    if depth == "infinity" and not environ["xferd.frontend"].config.allow_depth_infinity:
        start_response("403 Forbidden", [("Content-Type", 'application/xml; charset="utf-8"'),
                                         ("Content-Length", str(len(REFUSE_INFINITY)))])
        return [REFUSE_INFINITY]
    return None
