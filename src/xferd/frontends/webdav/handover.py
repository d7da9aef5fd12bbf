"""cheroot's side of the plain-HTTP hand-over (see :mod:`.loopfront`).

The loop hands cheroot a socket and the bytes it already read from it; :class:`PrimedReader` serves
those bytes before the socket's. When cheroot has answered and nothing more is buffered,
:class:`HandBackServer` gives the connection back to the loop instead of waiting on it itself.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from cheroot import wsgi
from cheroot.makefile import MakeFile, StreamReader


class Front(Protocol):
    """What cheroot needs of the loop's listener."""

    loop: Any
    closing: bool

    def adopt(self, sock: socket.socket) -> None: ...


class PrimedReader(StreamReader):
    """cheroot's socket reader, serving the bytes the loop already read before the socket's."""

    def __init__(self, sock: socket.socket, prefix: bytes, bufsize: int) -> None:
        self.primed = _PrimedIO(sock, prefix)
        super(StreamReader, self).__init__(self.primed, bufsize)  # skip StreamReader's SocketIO
        self.bytes_read = 0

    def has_data(self) -> bool:
        return bool(super().has_data() or self.primed.prefix)  # type: ignore[no-untyped-call]


class _PrimedIO(socket.SocketIO):
    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        super().__init__(sock, "rb")
        self.prefix = memoryview(prefix)

    def readinto(self, b: Any) -> int | None:
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return super().readinto(b)


class HandBackServer(wsgi.Server):
    """cheroot serving the requests the loop hands over; an idle connection goes back to the loop."""

    front: Front

    def put_conn(self, conn: Any) -> None:
        if self.ready and not conn.rfile.has_data() and not self.front.closing:
            self.front.loop.call_soon_threadsafe(self.front.adopt, conn.socket)
        else:
            super().put_conn(conn)


def primed_makefile(prefix: bytes) -> Callable[..., Any]:
    """cheroot's ``makefile`` for a connection of which ``prefix`` was already read."""
    def makefile(sock: socket.socket, mode: str = "r", bufsize: int = -1) -> Any:
        if "r" in mode and prefix:
            return PrimedReader(sock, prefix, bufsize if bufsize > 0 else 8192)
        return MakeFile(sock, mode, bufsize)
    return makefile
