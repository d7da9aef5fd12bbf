"""PUT without wsgidav's request machinery, for the plain case.

wsgidav's PUT looks the path and its parent up, evaluates the conditions and the lock tokens,
opens the upload, and reads the body through cheroot's pure-Python buffered reader: four hops and
most of a millisecond of its own Python for a 4 KiB file, and every byte copied twice more than
needed for a large one. For the plain case (a ``Content-Length``, no ``If``, ``If-*``,
``Content-Range`` or ``Content-Encoding`` header) this answers instead, under the same VirtualFS
rules as every other upload:

- a body of at most one hop is read first, then opened, written and committed in one call
  (:meth:`VirtualFS.write_whole`);
- a larger body is opened first (:meth:`VirtualFS.open_whole`), then received straight into
  hop-sized buffers (one socket read each, no copy in between), each handed to the upload while
  the next is read, and committed with the last piece.

When the VirtualFS declines (a lock on or above the path, whoever holds it, because only wsgidav
matches lock tokens; or any refusal: a missing parent, a collection, no permission), nothing has
changed and nothing was logged: wsgidav gets the request, with the body read so far, and answers
and audits as it always does. A small body that ends early goes the same way, to the same ``400``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, DAVError

from xferd import errors
from xferd.frontends.bridge import HopUpload
from xferd.frontends.webdav.fastget import CONDITIONS
from xferd.frontends.webdav.propfind import http_date
from xferd.frontends.webdav.provider import status_of
from xferd.vfs.transfers import Upload

# The request headers that make a PUT more than "store this body": wsgidav evaluates them.
NOT_PLAIN = (*CONDITIONS, "HTTP_CONTENT_RANGE", "HTTP_CONTENT_ENCODING")


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The response, or None to let wsgidav answer (with ``wsgi.input`` still holding the body)."""
    path = environ.get("PATH_INFO") or "/"
    if path.endswith("/") or any(key in environ for key in NOT_PLAIN):
        return None
    frontend, session = environ["xferd.frontend"], environ["xferd.session"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    expected = environ.get("HTTP_X_EXPECTED_ENTITY_LENGTH")
    if length < 0 or (expected not in (None, "") and expected != str(length)):
        return None
    if length > frontend.config.block_size:
        return _stream(environ, start_response, path, length)
    body = _read(environ, length)
    if len(body) == length:
        try:
            done = frontend.bridge.call(frontend.vfs.write_whole, session, path, body)
        except OSError as exc:  # the upload was opened and failed (quota, storage); it is audited
            return _status(environ, start_response, status_of(exc))
        if done is not None:
            return _done(environ, start_response, *done)
    environ["wsgi.input"] = io.BytesIO(body)
    return None


def _stream(environ: dict[str, Any], start_response: Callable[..., Any], path: str,
            length: int) -> Iterable[bytes] | None:
    stream = environ["wsgi.input"]
    rfile = getattr(stream, "rfile", None)
    if rfile is None or not hasattr(rfile, "readinto1") or getattr(stream, "remaining", None) != length:
        return None  # not cheroot's reader as expected: wsgidav reads the body
    frontend, session = environ["xferd.frontend"], environ["xferd.session"]
    upload: Upload | None = frontend.bridge.call(frontend.vfs.open_whole, session, path)
    if upload is None:
        return None  # declined before a byte was read
    created = upload.ino is None
    hops, got = HopUpload(frontend.bridge, upload, 0, frontend.config.block_size), 0
    try:
        while got < length:
            nbytes = _receive(rfile, hops.space()[:length - got])
            if not nbytes:
                break
            got += nbytes
            stream.remaining = length - got  # cheroot reads whatever is left after the response
            hops.filled(nbytes)
    except OSError as exc:  # the upload refused a hop (quota, storage)
        hops.discard(errors.errno_name(exc))
        return _status(environ, start_response, status_of(exc))
    if got < length:
        hops.discard("client body incomplete")
        return _status(environ, start_response, HTTP_BAD_REQUEST)
    try:
        hops.commit()
    except OSError as exc:  # aborted and audited by the upload
        return _status(environ, start_response, status_of(exc))
    assert upload.checksums is not None
    return _done(environ, start_response, created, upload.checksums.sha256)


def _receive(rfile: Any, view: memoryview) -> int:
    """One read into ``view`` (what cheroot has buffered first, then the socket straight into
    it); 0 when the client stopped sending or went away."""
    try:
        return int(rfile.readinto1(view) or 0)
    except (OSError, ValueError):
        return 0


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


def stored(created: bool, sha256: str) -> tuple[str, list[tuple[str, str]]]:
    """The status and headers answering a PUT that stored its body (here and on the event loop).
    No body, as nginx and Apache answer: wsgidav's would be an HTML page saying "Created"."""
    return ("201 Created" if created else "204 No Content",
            [("Content-Length", "0"), ("Date", http_date(time.time())), ("ETag", f'"{sha256}"')])


def _done(environ: dict[str, Any], start_response: Callable[..., Any], created: bool,
          sha256: str) -> Iterable[bytes]:
    start_response(*stored(created, sha256))
    return [b""]


def _status(environ: dict[str, Any], start_response: Callable[..., Any], status: int) -> Iterable[bytes]:
    return util.send_status_response(environ, start_response, DAVError(status))  # type: ignore[no-any-return]
