"""PUT of a small body in one bridge call.

wsgidav's PUT looks the path and its parent up, evaluates the conditions and the lock tokens,
opens the upload, writes and commits: four hops and most of a millisecond of its own Python for
a 4 KiB file. For the plain case (a body of at most one hop with a Content-Length, no ``If``,
``If-*``, ``Content-Range`` or ``Content-Encoding`` header) this reads the body first and makes
one call, :meth:`VirtualFS.write_whole`, which opens, writes and commits under the same rules as
every other upload.

When that call declines (a lock on or above the path, whoever holds it, because only wsgidav
matches lock tokens; or any refusal: a missing parent, a collection, no permission), nothing has
changed and nothing was logged: the body read so far is handed to wsgidav, which answers and
audits as it always does. A body that ends early goes the same way, to the same ``400``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from wsgidav import util
from wsgidav.dav_error import HTTP_CREATED, HTTP_NO_CONTENT, DAVError

from xferd.frontends.webdav.fastget import CONDITIONS
from xferd.frontends.webdav.provider import status_of

REFUSED = ("HTTP_CONTENT_RANGE", "HTTP_CONTENT_ENCODING")


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The response, or None to let wsgidav answer (with ``wsgi.input`` still holding the body)."""
    path = environ.get("PATH_INFO") or "/"
    if path.endswith("/") or any(key in environ for key in CONDITIONS) or any(key in environ for key in REFUSED):
        return None
    frontend, session = environ["xferd.frontend"], environ["xferd.session"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    expected = environ.get("HTTP_X_EXPECTED_ENTITY_LENGTH")
    if not 0 <= length <= frontend.config.block_size or (expected not in (None, "") and expected != str(length)):
        return None
    body = _read(environ, length)
    if len(body) == length:
        try:
            done = frontend.bridge.call(frontend.vfs.write_whole, session, path, body)
        except OSError as exc:  # the upload was opened and failed (quota, storage); it is audited
            return util.send_status_response(environ, start_response, DAVError(status_of(exc)))  # type: ignore[no-any-return]
        if done is not None:
            _, created, sha256 = done
            return util.send_status_response(  # type: ignore[no-any-return]
                environ, start_response, HTTP_CREATED if created else HTTP_NO_CONTENT,
                add_headers=[("ETag", f'"{sha256}"')])
    environ["wsgi.input"] = io.BytesIO(body)
    return None


def _read(environ: dict[str, Any], length: int) -> bytes:
    """Up to ``length`` bytes of the body: fewer if the client stopped sending or went away."""
    stream, chunks, got = environ["wsgi.input"], [], 0
    while got < length:
        try:
            chunk = stream.read(length - got)
        except (OSError, ValueError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
