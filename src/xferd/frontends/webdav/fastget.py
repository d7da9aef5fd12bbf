"""GET of a whole file from the local blob store, sent with ``sendfile``.

wsgidav's GET reads the file through the resource in hops and cheroot writes each hop from Python:
every byte is copied into Python and out again. For a plain GET (no ``Range``, no conditions) of
a file whose blob is a local file, this answers instead: one bridge call opens the download (the
VirtualFS checks permission and holds the blob against garbage collection), and
:class:`SendfileGateway` hands the file to the kernel with ``socket.sendfile``. Over HTTPS the
same response is read from the file in the worker thread, hop by hop, without the bridge.

Everything else (ranges, ``If-*`` headers, directories, blobs that are not local files, errors)
goes to wsgidav, which answers as RFC 9110 says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cheroot import wsgi

from xferd.frontends.webdav.propfind import content_type, http_date
from xferd.metadata.models import Inode
from xferd.vfs.filesystem import EMPTY_SUMS, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download

CONDITIONS = ("HTTP_RANGE", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
              "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF", "HTTP_IF_RANGE")


class FileSpan:
    """A response body that is a span of an open file: the gateway may send it with sendfile."""

    def __init__(self, environ: dict[str, Any], download: Download, fd: int, size: int, hop: int) -> None:
        self.environ = environ
        self.download = download
        self.fd = fd
        self.size = size
        self.hop = hop
        self.sent = 0
        self.outcome = "failed"

    def __iter__(self) -> Iterator[bytes]:
        """The body read hop by hop, for a gateway that cannot sendfile (TLS)."""
        while self.sent < self.size:
            chunk = os.pread(self.fd, min(self.hop, self.size - self.sent), self.sent)
            if not chunk:
                break
            self.sent += len(chunk)
            yield chunk
        if self.sent == self.size:
            self.outcome = "ok"

    def close(self) -> None:
        self.download.sent = self.sent
        frontend = self.environ["xferd.frontend"]
        with contextlib.suppress(Exception):
            frontend.bridge.call(self.download.close, self.outcome)


async def _open(vfs: VirtualFS, s: Session, path: str) -> tuple[Download, str] | None:
    download = await vfs.open_read(s, path)
    if download.local_file() is None:
        await download.close("ok")
        return None
    inode = download.inode
    etags = await vfs.blob_etags(s, [inode.blob_id]) if inode.blob_id else {}
    return download, etags.get(inode.blob_id or "", EMPTY_SUMS.sha256)


def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The response, or None to let wsgidav answer."""
    path = environ.get("PATH_INFO") or "/"
    if path.endswith("/") or any(key in environ for key in CONDITIONS):
        return None
    frontend, session = environ["xferd.frontend"], environ["xferd.session"]
    try:
        opened = frontend.bridge.call(_open, frontend.vfs, session, path)
    except OSError:
        return None  # wsgidav answers the error
    if opened is None:
        return None
    download, etag = opened
    fd = download.local_file()
    assert fd is not None
    inode = download.inode
    start_response("200 OK", file_headers(path, inode.size, inode, etag))
    return FileSpan(environ, download, fd, inode.size, frontend.config.block_size)


def file_headers(path: str, size: int, inode: Inode, etag: str) -> list[tuple[str, str]]:
    """The headers of a whole file's 200 answer of ``size`` bytes (here, and on the event loop)."""
    return [("Content-Type", content_type(path)), ("Content-Length", str(size)), ("ETag", f'"{etag}"'),
            ("Last-Modified", http_date(inode.mtime)), ("Accept-Ranges", "bytes")]


class SendfileGateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway, sending a :class:`FileSpan` over a plain socket with sendfile."""

    def respond(self) -> None:
        response = self.req.server.wsgi_app(self.env, self.start_response)
        sock = self.req.conn.socket
        if not isinstance(response, FileSpan) or hasattr(sock, "getpeercert") or self.req.chunked_write:
            self._respond_with(response)
            return
        try:
            self.req.ensure_headers_sent()
            self.req.conn.wfile.flush()
            with open(response.fd, "rb", closefd=False) as f:
                while response.sent < response.size:
                    sent = sock.sendfile(f, response.sent, response.size - response.sent)
                    if not sent:
                        break
                    response.sent += sent
            if response.sent == response.size:
                response.outcome = "ok"
        finally:
            response.close()

    def _respond_with(self, response: Iterable[bytes]) -> None:
        try:
            for chunk in response:
                if chunk:
                    self.write(chunk)
        finally:
            self.req.ensure_headers_sent()
            close = getattr(response, "close", None)
            if close is not None:
                close()
