"""wsgidav's resources as thin adapters over the VirtualFS.

Each request runs in a cheroot worker thread; every VirtualFS call goes through the bridge with
the request's session (``environ["xferd.session"]``, set by :mod:`.app`). Content moves in hops of
``block_size`` (1 MiB by default): a PUT writes one hop while the next is read from the socket,
and a GET reads one hop ahead of the client.

Errors: the VirtualFS raises OSErrors; :func:`dav_errors` turns them into the WebDAV status at this
one boundary (``Locked`` -> 423, ``QuotaExceeded`` -> 507, ...).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_INSUFFICIENT_STORAGE,
    HTTP_INTERNAL_ERROR,
    HTTP_LOCKED,
    HTTP_NOT_FOUND,
    HTTP_NOT_IMPLEMENTED,
    HTTP_PRECONDITION_FAILED,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from xferd import errors
from xferd.frontends.bridge import Bridge
from xferd.frontends.webdav.propfind import content_type
from xferd.metadata.models import Inode, LockRecord, Perm
from xferd.vfs.filesystem import EMPTY_SUMS, REPLACE_MODE, OpenMode, SetAttrs, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download, Upload

HTTP_SERVICE_UNAVAILABLE = 503
# A request may look up the objects it acts on when the user holds the verb's permission there,
# even without the right to list their directory (as SFTP and FTP open files without a listing).
ACTING: dict[str, Perm] = {
    "GET": Perm.DOWNLOAD, "HEAD": Perm.DOWNLOAD, "PUT": Perm.UPLOAD | Perm.OVERWRITE, "DELETE": Perm.DELETE,
    "MKCOL": Perm.MKDIR, "MOVE": Perm.RENAME, "COPY": Perm.COPY | Perm.DOWNLOAD, "PROPPATCH": Perm.CHTIMES,
    "LOCK": Perm.UPLOAD | Perm.OVERWRITE, "UNLOCK": Perm.UPLOAD | Perm.OVERWRITE,
}

_STATUS: list[tuple[type[OSError], int]] = [
    (errors.Locked, HTTP_LOCKED),
    (errors.Busy, HTTP_LOCKED),
    (errors.NotFound, HTTP_NOT_FOUND),
    (errors.PermissionDenied, HTTP_FORBIDDEN),
    (errors.AlreadyExists, HTTP_PRECONDITION_FAILED),
    (errors.QuotaExceeded, HTTP_INSUFFICIENT_STORAGE),
    (errors.NoSpace, HTTP_INSUFFICIENT_STORAGE),
    (errors.IsADirectory, HTTP_CONFLICT),
    (errors.NotADirectory, HTTP_CONFLICT),
    (errors.DirectoryNotEmpty, HTTP_CONFLICT),
    (errors.InvalidPath, HTTP_BAD_REQUEST),
    (errors.InvalidArgument, HTTP_BAD_REQUEST),
    (errors.LinkLoop, HTTP_CONFLICT),
    (errors.Unsupported, HTTP_NOT_IMPLEMENTED),
    (errors.StorageError, HTTP_SERVICE_UNAVAILABLE),
]


def status_of(exc: OSError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return int(HTTP_INTERNAL_ERROR)


@contextlib.contextmanager
def dav_errors() -> Iterator[None]:
    """Turn a VirtualFS error into the matching DAVError (the one translation point)."""
    try:
        yield
    except DAVError:
        raise
    except OSError as exc:
        raise DAVError(status_of(exc), context_info=str(exc.strerror or exc)) from exc


class Request:
    """What a resource needs of its request: the session, the bridge, the VirtualFS, a cache."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.session: Session = environ["xferd.session"]
        self.frontend: Any = environ["xferd.frontend"]
        self.vfs: VirtualFS = self.frontend.vfs
        self.bridge: Bridge = self.frontend.bridge

    def call(self, fn: Any, *args: Any) -> Any:
        with dav_errors():
            return self.bridge.call(fn, self.session, *args)

    def etags(self, inodes: Iterable[Inode]) -> dict[str, str]:
        """SHA-256 of each blob, for ETags; one query however many inodes."""
        cache: dict[str, str] = self.environ.setdefault("xferd.etags", {})
        wanted = [i.blob_id for i in inodes if i.blob_id and i.blob_id not in cache]
        if wanted:
            cache.update(self.call(self.vfs.blob_etags, wanted))
        return cache

    def space(self) -> Any:
        if "xferd.space" not in self.environ:
            self.environ["xferd.space"] = self.call(self.vfs.space)
        return self.environ["xferd.space"]


def _resource(path: str, environ: dict[str, Any], inode: Inode) -> FileResource | FolderResource:
    if inode.kind == "dir":
        return FolderResource(path, environ, inode)
    return FileResource(path, environ, inode)


class _Common:
    """Live properties shared by files and folders."""

    path: str
    environ: dict[str, Any]
    inode: Inode
    req: Request

    def get_creation_date(self) -> float:
        return self.inode.ctime

    def get_last_modified(self) -> float:
        return self.inode.mtime

    def get_display_name(self) -> str:
        return str(util.get_uri_name(self.path))

    def get_used_bytes(self) -> int:
        return int(self.req.space().used)

    def get_available_bytes(self) -> int:
        return int(self.req.space().free)

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        secs = time_stamp if isinstance(time_stamp, int | float) else util.parse_time_string(time_stamp)
        if secs is None:
            raise DAVError(HTTP_BAD_REQUEST, context_info="not an HTTP date")
        if not dry_run:
            self.req.call(self.req.vfs.setstat, dest_path, SetAttrs(mtime=float(secs)))
        return True


class FileResource(_Common, DAVNonCollection):  # type: ignore[misc]  # wsgidav is untyped
    def __init__(self, path: str, environ: dict[str, Any], inode: Inode | None) -> None:
        """``inode`` None: a PUT's new file, which exists only once its upload commits."""
        super().__init__(path, environ)
        self.req = Request(environ)
        self.inode = inode or Inode(0, "file", 0, 0o644, 0.0, 0.0, 0.0, 1, None, None, None)
        self.writer: UploadStream | None = None

    def get_content_length(self) -> int:
        return self.inode.size

    def get_content_type(self) -> str:
        return content_type(self.path)

    def get_etag(self) -> str:
        if self.inode.blob_id is None:
            return EMPTY_SUMS.sha256
        return self.req.etags([self.inode]).get(self.inode.blob_id, EMPTY_SUMS.sha256)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> DownloadStream:
        download: Download = self.req.call(self.req.vfs.open_read, self.path)
        return DownloadStream(self.req, download, self.environ["xferd.frontend"].config.block_size)

    def begin_write(self, *, content_type: str | None = None) -> UploadStream:
        self.writer = UploadStream(self.req, self.path, expected_length(self.environ))
        return self.writer

    def end_write(self, *, with_errors: bool) -> None:
        writer, self.writer = self.writer, None
        if writer is not None and with_errors:
            writer.abort()
        if not with_errors:
            if writer is not None and writer.inode is not None:
                self.inode = writer.inode
            else:
                self.inode = self.req.call(self.req.vfs.stat, self.path)

    def delete(self) -> None:
        if _replaced_by_move(self.environ, self.path):
            # MOVE over this file: wsgidav deletes it first; the rename replaces it in the same
            # transaction instead, so the name never stands empty (move_recursive).
            self.environ["xferd.replace"] = self.path
            return
        self.req.call(self.req.vfs.remove, self.path)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if is_move:
            self.req.call(self.req.vfs.rename, self.path, dest_path, True)
            return
        self.req.call(self.req.vfs.copy, self.path, dest_path, True)
        self.req.call(self.req.vfs.copy_props, self.path, dest_path)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        replace = self.environ.pop("xferd.replace", None) == dest_path
        self.req.call(self.req.vfs.rename, self.path, dest_path, replace)


class FolderResource(_Common, DAVCollection):  # type: ignore[misc]  # wsgidav is untyped
    def __init__(self, path: str, environ: dict[str, Any], inode: Inode) -> None:
        super().__init__(path, environ)
        self.req = Request(environ)
        self.inode = inode

    def get_etag(self) -> None:
        return None

    def get_member_names(self) -> list[str]:
        return [name for name, _ in self._listing()]

    def get_member(self, name: str) -> FileResource | FolderResource | None:
        for member_name, inode in self._listing():
            if member_name == name:
                return _resource(util.join_uri(self.path, name), self.environ, inode)
        return None

    def get_member_list(self) -> list[FileResource | FolderResource]:
        members = self._listing()
        self.req.etags(inode for _, inode in members)
        return [_resource(util.join_uri(self.path, name), self.environ, inode) for name, inode in members]

    def _listing(self) -> list[tuple[str, Inode]]:
        cache: dict[str, list[tuple[str, Inode]]] = self.environ.setdefault("xferd.listings", {})
        if self.path not in cache:
            listing = self.req.call(self.req.vfs.list, self.path)
            cache[self.path] = [(name, inode) for name, inode in listing.entries if inode.kind != "symlink"]
        return cache[self.path]

    def create_empty_resource(self, name: str) -> FileResource:
        path = util.join_uri(self.path, name)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return FileResource(path, self.environ, None)
        # LOCK on an unmapped URL creates an empty file (RFC 4918, 7.3), but only when the lock
        # will be granted: wsgidav creates the file before it takes the lock.
        depth, scope = lock_request(self.environ)
        try:
            self.req.bridge.call(self.req.vfs.check_lockable, self.req.session, path, depth, scope)
        except errors.Locked as exc:
            raise DAVError(HTTP_LOCKED, context_info=str(exc.strerror)) from exc
        upload: Upload = self.req.call(self.req.vfs.open_write, path, OpenMode(write=True, create=True,
                                                                                  exclusive=True))
        with dav_errors():
            inode = self.req.bridge.call(upload.close)
        return FileResource(path, self.environ, inode)

    def create_collection(self, name: str) -> None:
        self.req.call(self.req.vfs.mkdir, util.join_uri(self.path, name))

    def support_recursive_delete(self) -> bool:
        return True

    def delete(self) -> None:
        """Delete the collection and everything in it (DELETE, and MOVE or COPY over it)."""
        self._delete_tree(self.path)
        self.environ.get("xferd.listings", {}).clear()

    def _delete_tree(self, path: str) -> None:
        listing = self.req.call(self.req.vfs.list, path)
        for name, inode in listing.entries:
            child = util.join_uri(path, name)
            if inode.kind == "dir":
                self._delete_tree(child)
            else:
                self.req.call(self.req.vfs.remove, child)
        self.req.call(self.req.vfs.rmdir, path)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if is_move:
            self.req.call(self.req.vfs.rename, self.path, dest_path, True)
            return
        # COPY of a collection: wsgidav creates the destination, then copies each member.
        try:
            self.req.call(self.req.vfs.mkdir, dest_path)
        except DAVError as exc:
            if exc.value != HTTP_PRECONDITION_FAILED:
                raise
        self.req.call(self.req.vfs.copy_props, self.path, dest_path)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        if self.environ.pop("xferd.replace", None) == dest_path:
            self.req.call(self.req.vfs.remove, dest_path)  # a folder cannot replace a file in one step
        self.req.call(self.req.vfs.rename, self.path, dest_path, False)


def destination_path(environ: dict[str, Any]) -> str | None:
    """The path of a COPY or MOVE's Destination URL, decoded; None without one."""
    destination = environ.get("HTTP_DESTINATION")
    return unquote(urlsplit(destination).path) if destination else None


def _replaced_by_move(environ: dict[str, Any], path: str) -> bool:
    if environ.get("REQUEST_METHOD") != "MOVE" or environ.get("HTTP_OVERWRITE", "T").upper() != "T":
        return False
    destination = destination_path(environ)
    return destination is not None and destination.rstrip("/") == path.rstrip("/")


def lock_request(environ: dict[str, Any]) -> tuple[str, str]:
    """Depth and scope a LOCK asks for (its body was parsed by the app)."""
    depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
    root = environ.get("xferd.xml")
    shared = root is not None and root.find("{DAV:}lockscope/{DAV:}shared") is not None
    return ("0" if depth == "0" else "infinity"), ("shared" if shared else "exclusive")


def expected_length(environ: dict[str, Any]) -> int | None:
    """The body length the client announced: Content-Length, or Finder's X-Expected-Entity-Length
    on a chunked PUT. None when neither is given (a plain chunked body)."""
    for key in ("CONTENT_LENGTH", "HTTP_X_EXPECTED_ENTITY_LENGTH"):
        value = environ.get(key)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise DAVError(HTTP_BAD_REQUEST, context_info=f"bad {key}") from None
    return None


class UploadStream:
    """The file object wsgidav's PUT writes into: hops of ``block_size`` to the upload, one in
    flight while the next is read; commits on close only if the whole announced body arrived."""

    def __init__(self, req: Request, path: str, expected: int | None) -> None:
        self.req = req
        self.path = path
        # Opened with the first full hop; a body smaller than one hop is opened, written and
        # committed in a single call at close.
        self.upload: Upload | None = None
        self.expected = expected
        self.hop = req.frontend.config.block_size
        self.offset = 0
        self.pending: concurrent.futures.Future[int] | None = None
        self.buffer = bytearray()
        self.done = False
        self.inode: Inode | None = None
        self.refused: OSError | None = None  # the server's own refusal (quota, storage), if any

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write(self, data: bytes) -> None:
        if len(self.buffer) == 0 and len(data) >= self.hop:
            self._send(bytes(data))
            return
        self.buffer += data
        if len(self.buffer) >= self.hop:
            chunk, self.buffer = bytes(self.buffer), bytearray()
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        self._wait()
        if self.upload is None:
            self.upload = self.req.call(self.req.vfs.open_write, self.path, REPLACE_MODE)
        self.pending = self.req.bridge.submit(self.upload.write, self.offset, chunk)
        self.offset += len(chunk)

    def _wait(self) -> None:
        if self.pending is not None:
            future, self.pending = self.pending, None
            try:
                self.req.bridge.result(future)
            except OSError as exc:
                self.refused = exc
                with dav_errors():
                    raise

    def close(self) -> None:
        """Commit, in one hop with the last piece of the body (a small file costs one hop)."""
        self._wait()
        tail, self.buffer = bytes(self.buffer), bytearray()
        total = self.offset + len(tail)
        if self.expected is not None and total != self.expected:
            raise DAVError(HTTP_BAD_REQUEST, context_info=f"body ended after {total} of {self.expected} bytes")
        try:
            with dav_errors():
                self.inode, etags = self.req.bridge.call(_finish, self.req.vfs, self.req.session, self.path,
                                                        self.upload, self.offset, tail)
        except DAVError:
            self.done = True  # _finish aborted the upload (and audited it), or none was opened
            raise
        self.req.environ.setdefault("xferd.etags", {}).update(etags)
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(Exception):
            self._wait()
        reason = errors.errno_name(self.refused) if self.refused is not None else "client body incomplete"
        if self.upload is None:  # nothing was opened: only the event
            s = self.req.session
            self.req.bridge.call_soon(self.req.vfs.audit.emit, s.log, s.fields, "fs.upload", self.path, reason, True,
                                      size=self.offset + len(self.buffer))
            return
        with contextlib.suppress(Exception):
            self.req.bridge.call(self.upload.abort, reason)


async def _finish(vfs: VirtualFS, s: Session, path: str, upload: Upload | None, offset: int, tail: bytes
                  ) -> tuple[Inode, dict[str, str]]:
    if upload is None:
        upload = await vfs.open_write(s, path, REPLACE_MODE)
    inode = await upload.finish(offset, tail)
    # The ETag is the SHA-256 the commit just computed: no need to read it back from the store.
    sums = upload.checksums
    return inode, {inode.blob_id: sums.sha256} if inode.blob_id and sums is not None else {}


class DownloadStream:
    """The file object wsgidav's GET reads: seekable, one hop read ahead."""

    def __init__(self, req: Request, download: Download, hop: int) -> None:
        self.req = req
        self.download = download
        self.hop = hop
        self.pos = 0
        self.ahead: tuple[int, concurrent.futures.Future[bytes]] | None = None
        self.outcome = "ok"

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.download.inode.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(self.download.inode.size - self.pos, 0)
        size = min(size, self.hop)
        if size == 0 or self.pos >= self.download.inode.size:
            return b""
        future = None
        if self.ahead is not None:
            offset, ahead = self.ahead
            self.ahead = None
            if offset == self.pos:
                future = ahead
            else:
                ahead.cancel()
        if future is None:
            future = self.req.bridge.submit(self.download.read, self.pos, size)
        try:
            with dav_errors():
                data = self.req.bridge.result(future)
        except BaseException:
            self.outcome = "failed"
            raise
        if len(data) > size:
            data = data[:size]
        self.pos += len(data)
        if data and self.pos < self.download.inode.size:
            self.ahead = (self.pos, self.req.bridge.submit(self.download.read, self.pos, self.hop))
        return data

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead[1].cancel()
            self.ahead = None
        with contextlib.suppress(Exception):
            self.req.bridge.call(self.download.close, self.outcome)


async def _stat_pair(vfs: VirtualFS, s: Session, path: str, acting: Perm | None
                     ) -> tuple[Inode | OSError, Inode | OSError, list[LockRecord]]:
    """A path's stat and its parent's (each an Inode or the error it raised), and the locks that
    wsgidav's lock manager reads next (see state.py)."""
    out: list[Inode | OSError] = []
    for p in (path, util.get_uri_parent(path)):
        try:
            out.append(await vfs.stat(s, p, True, acting))
        except OSError as exc:
            out.append(exc)
    return out[0], out[1], await vfs.locks(s, "/", True)


class XferdProvider(DAVProvider):  # type: ignore[misc]  # wsgidav is untyped
    """One provider for the whole URL space: each user sees their home at ``/``."""

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> FileResource | FolderResource | None:
        req = Request(environ)
        ahead: dict[str, Inode | OSError] = environ.setdefault("xferd.parent_stat", {})
        acting = ACTING.get(environ.get("REQUEST_METHOD", ""))
        found = ahead.pop(path, None)
        if found is None:
            if environ.get("REQUEST_METHOD") == "PUT" and path.rstrip("/"):
                # wsgidav looks up the parent next: one hop for both.
                found, parent, locks = req.bridge.call(_stat_pair, req.vfs, req.session, path, acting)
                ahead[util.get_uri_parent(path)] = parent
                environ["xferd.locks"] = locks
            else:
                try:
                    found = req.bridge.call(req.vfs.stat, req.session, path, True, acting)
                except OSError as exc:
                    found = exc
        if isinstance(found, errors.NotFound | errors.NotADirectory):
            return None
        if isinstance(found, OSError):
            raise DAVError(status_of(found), context_info=str(found.strerror or found)) from found
        if found.kind == "symlink":
            return None
        return _resource(path, environ, found)

    def is_readonly(self) -> bool:
        return False

