"""The one way from a synchronous frontend thread to the event loop, where the VirtualFS lives.

FTP (pyftpdlib, a thread per connection) and later WebDAV (wsgidav in cheroot's worker threads)
are synchronous libraries. Their threads reach the VirtualFS only through :meth:`Bridge.call`,
which runs a coroutine on the loop and waits for its result. Measured on a 2-core machine, one
call costs about 50 us and a process tops out near 20k calls/s, so callers move data in hops of
at least 1 MiB (:data:`HOP_BYTES`) and fetch a directory listing with its attributes in one call.

The rules, each learnt the hard way:

- every wait has a timeout; a hop that outlives it is cancelled and surfaces as
  :class:`~xferd.errors.StorageError` (EIO), never as a thread stuck forever;
- a call from the loop's own thread is refused (it would wait for itself);
- work that must block (closing a server, joining its threads) runs in the bridge's own
  executor, never the loop's default one, which auth and storage use (sharing it deadlocked);
- the log context of the session a call acts for is bound in the context it runs in on the loop,
  so every log line of that call carries tenant, user and session id (and so does the thread's
  line when the call times out). Binding it in the calling thread too would cost a tenth of a
  small call, for lines the frontends already bind themselves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog

from xferd import eager
from xferd.errors import StorageError, errno_name
from xferd.vfs.session import Session

if TYPE_CHECKING:
    from xferd.vfs.transfers import Upload

P = ParamSpec("P")
T = TypeVar("T")

HOP_BYTES = 1024 * 1024
# An upload's first buffer: it doubles up to a hop as bytes arrive, so a small file never pays
# for a whole hop (allocating and zeroing 1 MiB costs about 90 us, as much as its commit).
FIRST_BUFFER_BYTES = 64 * 1024
log = structlog.get_logger("xferd.bridge")


class Bridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, workers: int = 4) -> None:
        self.loop = loop
        self.timeout = timeout
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="xferd-bridge")

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None,
             session: Session | None = None) -> T:
        """Run ``fn(*args)`` on the loop and return its result (or raise its exception).

        The log fields of ``session`` (by default the first argument that is a :class:`Session`)
        are bound for the call's duration.
        """
        return self.result(self.submit(fn, *args, session=session), timeout)

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any,
               session: Session | None = None) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` on the loop and return at once (readahead); :meth:`result` waits."""
        self._refuse_loop_thread()
        session = session or _find_session(args)
        fields = session.fields if session is not None else None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.xferd_fields = fields  # type: ignore[attr-defined]
        coro = _awaited(fn, args, fields)
        try:
            self.loop.call_soon_threadsafe(_start, self.loop, future, coro)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise
        return future

    def result(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        """Wait for a submitted call, for at most the bridge's timeout."""
        try:
            return future.result(self.timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.error("bridge.timeout", **(getattr(future, "xferd_fields", None) or {}))
            raise StorageError("Storage did not answer in time") from None

    def call_soon(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a plain function on the loop without waiting (audit events that need no answer)."""
        session = _find_session(args)
        fields = session.fields if session is not None else None

        def run() -> None:
            if fields:
                structlog.contextvars.bind_contextvars(**fields)
            fn(*args, **kwargs)
        # The loop runs it in a copy of this thread's context, so what run() binds stays there.
        self.loop.call_soon_threadsafe(run)

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """From the loop: run blocking frontend work (closing servers, joining threads) in a thread."""
        return await self.loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _refuse_loop_thread(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.loop:
            raise RuntimeError("Bridge.call from the event loop's thread would wait for itself; await instead")


class HopUpload:
    """An upload fed from a frontend thread in hops: the bytes gather in a hop-sized buffer, which a
    socket can receive into directly (:meth:`space`, :meth:`filled`) or :meth:`write` copies into.
    A full hop goes to the loop without waiting for it; the next one fills meanwhile, so at most
    one hop is in flight. An earlier hop's error is raised by the next :meth:`filled`. The first
    buffer starts small and doubles until it is a hop (:data:`FIRST_BUFFER_BYTES`)."""

    def __init__(self, bridge: Bridge, upload: Upload, offset: int, hop: int = HOP_BYTES) -> None:
        self.bridge = bridge
        self.upload = upload
        self.hop = hop
        self._offset = offset  # where the buffered bytes start
        self._buf = bytearray(min(hop, FIRST_BUFFER_BYTES))
        self._fill = 0
        self._pending: concurrent.futures.Future[int] | None = None

    def space(self) -> memoryview:
        """Where the next received bytes go (never empty before commit or discard)."""
        return memoryview(self._buf)[self._fill:]

    def filled(self, nbytes: int) -> None:
        """``nbytes`` were received into :meth:`space`."""
        self._fill += nbytes
        if self._fill == len(self._buf) < self.hop:
            # A new buffer, not a resized one: a receiver may still hold a view of this one.
            grown = bytearray(min(2 * len(self._buf), self.hop))
            grown[:self._fill] = self._buf
            self._buf = grown
        elif self._fill == self.hop:
            self._wait()
            hop, self._buf, self._fill = self._buf, bytearray(self.hop), 0
            self._pending = self.bridge.submit(self.upload.write, self._offset, hop, session=self.upload.session)
            self._offset += len(hop)

    def write(self, data: bytes) -> int:
        view, size = memoryview(data), len(data)
        while view:
            n = min(len(view), len(self._buf) - self._fill)
            self._buf[self._fill:self._fill + n] = view[:n]
            view = view[n:]
            self.filled(n)
        return size

    def commit(self) -> None:
        """The hop in flight, then the last bytes and the commit in one call (Upload.finish). A
        failed hop aborts the upload first; the error is raised either way."""
        tail = self._take_tail()
        try:
            self._wait()
        except BaseException as exc:
            self.bridge.call(self.upload.abort, errno_name(exc) if isinstance(exc, OSError) else "failed",
                             session=self.upload.session)
            raise
        self.bridge.call(self.upload.finish, self._offset, tail, session=self.upload.session)

    def discard(self, reason: str) -> None:
        """Abort the upload (its audit event says ``reason``); the file keeps its old content."""
        self._take_tail()
        with contextlib.suppress(Exception):  # the upload is discarded: its write errors no longer matter
            self._wait()
        self.bridge.call(self.upload.abort, reason, session=self.upload.session)

    def _take_tail(self) -> bytes:
        tail, self._buf, self._fill = bytes(self._buf[:self._fill]), bytearray(), 0
        return tail

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.bridge.result(pending)


def _start(loop: asyncio.AbstractEventLoop, future: concurrent.futures.Future[T],
           coro: Coroutine[Any, Any, T]) -> None:
    """On the loop: run a call at once (:mod:`xferd.eager`), and settle ``future`` as soon as it ends.
    A call the caller gave up on (cancelled ``future``) before it began never runs; one that has
    begun is cancelled with it."""
    if future.cancelled():
        coro.close()
        return
    outcome = eager.start(loop, coro, contextvars.copy_context())
    if outcome.done():
        _settle(future, outcome)
        return
    outcome.add_done_callback(lambda done: _settle(future, done))
    future.add_done_callback(lambda f: f.cancelled() and loop.call_soon_threadsafe(outcome.cancel))


def _settle(future: concurrent.futures.Future[T], outcome: asyncio.Future[T]) -> None:
    if outcome.cancelled():
        future.cancel()
    elif future.set_running_or_notify_cancel():  # False: the caller gave up (and was told so)
        exc = outcome.exception()
        if exc is None:
            future.set_result(outcome.result())
        else:
            future.set_exception(exc)


async def _awaited(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], fields: dict[str, str] | None) -> T:
    if fields:  # each call runs in its own copy of the context: nothing to unbind afterwards
        structlog.contextvars.bind_contextvars(**fields)
    return await fn(*args)


def _find_session(args: tuple[Any, ...]) -> Session | None:
    return next((a for a in args if isinstance(a, Session)), None)

