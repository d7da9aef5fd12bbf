"""The file objects pyftpdlib's data channel reads from (RETR) and writes into (STOR, APPE).

Both run in the connection's thread and reach the VirtualFS through the bridge in hops of
:data:`~xferd.frontends.bridge.HOP_BYTES`: an upload receives straight into a hop-sized buffer
and hands it over full, a download fetches a hop and hands it out in slices without copying.

An upload commits only through :meth:`UploadFile.finish` with ``ok`` true, which the data channel
calls when the client ended the transfer cleanly. Every other end (``close()`` from a dropped
control connection, ABOR, a data timeout, a reset) aborts it, and the file keeps its old content.
"""

from __future__ import annotations

import concurrent.futures
import contextlib

from xferd.errors import InvalidArgument
from xferd.frontends.bridge import HOP_BYTES, Bridge, HopUpload
from xferd.vfs.filesystem import OpenMode, VirtualFS
from xferd.vfs.session import Session
from xferd.vfs.transfers import Download, Upload


class RestOutOfRange(InvalidArgument):
    """A REST offset beyond the end of the file (FTP answers 554)."""


class UploadFile(HopUpload):
    """The file object of a STOR or APPE: hops of :class:`HopUpload`, which the data channel receives
    into directly (binary mode) or writes into (ASCII mode), and pyftpdlib's file protocol."""

    def __init__(self, bridge: Bridge, upload: Upload, offset: int) -> None:
        super().__init__(bridge, upload, offset)
        self.name = upload.path
        self.closed = False

    def finish(self, ok: bool) -> None:
        """Commit (the last buffered bytes and the commit in one hop) or abort."""
        if self.closed:
            return
        self.closed = True
        if ok:
            self.commit()
        else:
            self.discard("incomplete")

    def close(self) -> None:
        self.finish(False)


class DownloadFile:
    """Hands out the first hop, then always has the next one on its way (one hop of readahead):
    the loop reads while this thread sends, instead of each waiting for the other."""

    def __init__(self, bridge: Bridge, download: Download, first: bytes, offset: int) -> None:
        self.bridge = bridge
        self.download = download
        self.name = download.path
        self.closed = False
        self._view = memoryview(first)
        self._offset = offset
        self._next = offset + len(first)  # where the next hop starts
        self._ahead: concurrent.futures.Future[bytes] | None = None
        self._started = False  # the readahead begins with the first read (not at all with sendfile)

    def _read_ahead(self) -> None:
        if self._next < self.download.inode.size:
            self._ahead = self.bridge.submit(self.download.read, self._next, HOP_BYTES,
                                             session=self.download.session)

    def fileno(self) -> int:
        """The blob's file, for the data channel's sendfile; OSError when it is not a local file."""
        fd = self.download.local_file()
        if fd is None:
            raise OSError("the content is not a local file")
        return fd

    def tell(self) -> int:
        """Where the transfer starts (REST), for sendfile."""
        return self._offset

    def count_sent(self, nbytes: int) -> None:
        """Bytes the kernel sent from the file directly (sendfile), for the download's audit event."""
        self.download.sent = nbytes

    def read(self, size: int) -> memoryview:
        if not self._started:
            self._started = True
            self._read_ahead()
        if not self._view and self._ahead is not None:
            data = self.bridge.result(self._ahead)
            self._ahead = None
            self._view = memoryview(data)
            self._next += len(data)
            if data:
                self._read_ahead()
        # Slices of a memoryview share the hop's bytes: asynchat sends them without copying.
        out, self._view = self._view[:size], self._view[size:]
        return out

    def finish(self, ok: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self._ahead is not None:
            # Let the readahead land before the reader closes (its result is no longer wanted).
            with contextlib.suppress(OSError, concurrent.futures.CancelledError):
                self.bridge.result(self._ahead)
            self._ahead = None
        self.bridge.call(self.download.close, "ok" if ok else "aborted", session=self.download.session)

    def close(self) -> None:
        self.finish(False)


# -- opening: one hop each ---------------------------------------------------------------------------


async def open_upload(vfs: VirtualFS, s: Session, path: str, offset: int, append: bool) -> Upload:
    """STOR (offset 0), STOR after REST (write from ``offset``, keep the rest) or APPE."""
    resume = offset > 0 or append
    upload = await vfs.open_write(s, path, OpenMode(write=True, create=True, truncate=not resume, append=append))
    if offset > upload.size or (append and offset and offset != upload.size):
        await upload.abort("refused")
        raise RestOutOfRange(f"REST position {offset} does not fit the file's size {upload.size}", path=path)
    return upload


async def open_unique(vfs: VirtualFS, s: Session, path: str) -> Upload:
    """STOU: create ``path`` only if nothing is there."""
    return await vfs.open_write(s, path, OpenMode(write=True, create=True, truncate=True, exclusive=True))


async def open_download(vfs: VirtualFS, s: Session, path: str, offset: int) -> tuple[Download, bytes]:
    """RETR from ``offset``, with the first hop of data in the same call (small files take one hop)."""
    download = await vfs.open_read(s, path)
    try:
        if offset > download.inode.size:
            raise RestOutOfRange(f"REST position {offset} is beyond the file's size {download.inode.size}",
                                 path=path)
        first = await download.read(offset, HOP_BYTES)
    except BaseException:
        await download.close("refused")
        raise
    return download, first
