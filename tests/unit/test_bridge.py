"""xferd.frontends.bridge: a synchronous thread's one way onto the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest
import structlog

from xferd.errors import StorageError
from xferd.frontends.bridge import FIRST_BUFFER_BYTES, Bridge, HopUpload
from xferd.metadata.models import Quota, Tenant, User
from xferd.vfs.policy import Policy
from xferd.vfs.session import Session


def _session() -> Session:
    user = User(7, Tenant(1, "acme", 1), "alice", None, False, "/alice", Quota().bytes, Quota().files)
    return Session(user, Policy(()), "ftp", "192.0.2.1", 1)


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.fixture
async def bridge() -> Any:
    b = Bridge(asyncio.get_running_loop(), timeout=5.0)
    yield b
    b.close()


class TestCall:
    async def test_runs_on_the_loop_and_returns(self, bridge: Bridge) -> None:
        """A coroutine called from a thread runs on the loop's thread and its result comes back."""
        loop_thread = threading.get_ident()

        async def where(x: int) -> tuple[int, int]:
            return threading.get_ident(), x * 2

        ran_on, doubled = await _in_thread(bridge.call, where, 21)
        assert (loop_thread, 42) == (ran_on, doubled)

    async def test_exceptions_cross_unchanged(self, bridge: Bridge) -> None:
        """The coroutine's exception is raised in the calling thread, as it was."""
        async def fail() -> None:
            raise FileNotFoundError(2, "No such file or directory")

        with pytest.raises(FileNotFoundError):
            await _in_thread(bridge.call, fail)

    async def test_refused_on_the_loop_thread(self, bridge: Bridge) -> None:
        """Calling from the loop's own thread would wait for itself: it is refused at once."""
        async def nothing() -> None:
            return None

        with pytest.raises(RuntimeError, match="event loop"):
            bridge.call(nothing)

    async def test_timeout_is_a_storage_error_and_cancels(self, bridge: Bridge) -> None:
        """A hop that outlives its timeout raises StorageError (EIO) and the coroutine is cancelled."""
        cancelled = asyncio.Event()

        async def stall() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(StorageError) as info:
            await _in_thread(lambda: bridge.call(stall, timeout=0.1))
        assert 5 == info.value.errno
        await asyncio.wait_for(cancelled.wait(), 5)

    async def test_a_call_that_never_suspends_runs_without_a_task(self, bridge: Bridge) -> None:
        """A call that finishes without waiting runs at once in the loop's callback (no Task, no
        extra loop iteration); one that waits is continued by a Task."""
        async def quick() -> bool:
            return asyncio.current_task() is None

        async def waits() -> bool:
            await asyncio.sleep(0)
            return asyncio.current_task() is None

        assert (True, False) == (await _in_thread(bridge.call, quick), await _in_thread(bridge.call, waits))

    async def test_a_call_given_up_before_it_began_never_runs(self, bridge: Bridge) -> None:
        """A call that timed out while the loop was busy elsewhere does not run afterwards."""
        ran: list[str] = []
        busy = threading.Event()

        async def record() -> None:
            ran.append("ran")

        def hold_the_loop() -> None:
            busy.set()
            time.sleep(0.5)

        def from_thread() -> None:
            busy.wait(5)
            with pytest.raises(StorageError):
                bridge.call(record, timeout=0.05)

        asyncio.get_running_loop().call_soon(hold_the_loop)
        await _in_thread(from_thread)
        await asyncio.sleep(0.05)
        assert [] == ran

    async def test_session_log_context_is_bound(self, bridge: Bridge) -> None:
        """Log lines made during a call carry the session's fields, on the loop side too."""
        session = _session()

        async def log_something(s: Session) -> None:
            structlog.get_logger("t").info("inside")

        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
            await _in_thread(bridge.call, log_something, session)
        assert {"tenant": "acme", "user": "alice", "protocol": "ftp", "session": session.id} == {
            k: entries[0][k] for k in ("tenant", "user", "protocol", "session")}

    async def test_timeout_line_names_the_session(self, bridge: Bridge) -> None:
        """The calling thread's own log line, when a call times out, carries the session's fields
        (they are bound only on the loop side, so they go with the call)."""
        session = _session()

        async def stall(s: Session) -> None:
            await asyncio.sleep(30)

        with structlog.testing.capture_logs() as entries, pytest.raises(StorageError):
            await _in_thread(lambda: bridge.call(stall, session, timeout=0.1))
        timeouts = [e for e in entries if e["event"] == "bridge.timeout"]
        assert [("alice", session.id)] == [(e["user"], e["session"]) for e in timeouts]

    async def test_call_soon_binds_the_session_on_the_loop_only(self, bridge: Bridge) -> None:
        """call_soon runs with the session's fields bound; nothing stays bound on the loop or in
        the calling thread afterwards."""
        session = _session()
        seen: list[dict[str, Any]] = []
        done = threading.Event()

        def record(s: Session) -> None:
            seen.append(structlog.contextvars.get_contextvars())
            done.set()

        def from_thread() -> dict[str, Any]:
            bridge.call_soon(record, session)
            done.wait(5)
            return structlog.contextvars.get_contextvars()

        in_thread = await _in_thread(from_thread)
        assert ("alice", session.id, {}, {}) == (seen[0]["user"], seen[0]["session"], in_thread,
                                                  structlog.contextvars.get_contextvars())

    async def test_no_session_no_context(self, bridge: Bridge) -> None:
        """Without a session nothing is bound."""
        async def log_something() -> None:
            structlog.get_logger("t").info("inside")

        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
            await _in_thread(bridge.call, log_something)
        assert "user" not in entries[0]


class TestOtherPaths:
    async def test_call_soon_runs_on_the_loop(self, bridge: Bridge) -> None:
        """call_soon runs a plain function on the loop without waiting for it."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await _in_thread(bridge.call_soon, lambda value: done.set_result(threading.get_ident() + value), 0)
        assert threading.get_ident() == await asyncio.wait_for(done, 5)

    async def test_run_blocking_uses_its_own_executor(self, bridge: Bridge) -> None:
        """Blocking work runs in the bridge's threads, never the loop's default executor."""
        name = await bridge.run_blocking(lambda: threading.current_thread().name)
        assert name.startswith("xferd-bridge")


class _Recorder:
    """The part of an Upload that HopUpload uses, recording what reaches the loop."""

    def __init__(self) -> None:
        self.session = _session()
        self.hops: list[tuple[int, bytes]] = []
        self.finished: tuple[int, bytes] | None = None

    async def write(self, offset: int, data: bytes) -> int:
        self.hops.append((offset, bytes(data)))
        return len(data)

    async def finish(self, offset: int, tail: bytes) -> None:
        self.finished = (offset, tail)

    async def abort(self, reason: str) -> None:
        raise AssertionError(f"aborted: {reason}")


class TestHopUpload:
    @pytest.mark.parametrize("size", [0, 4096, FIRST_BUFFER_BYTES, FIRST_BUFFER_BYTES + 1, 3 * 256 * 1024 + 5])
    @pytest.mark.parametrize("how", ["receive", "write"])
    async def test_hops_are_whole_and_in_order_however_the_bytes_arrive(self, bridge: Bridge, size: int,
                                                                         how: str) -> None:
        """Bytes received into space() in odd pieces, or written, reach the loop as full hops in
        order, then the tail with the commit; a small upload's buffer never grows past what it needs."""
        hop = 256 * 1024
        data = os.urandom(size)
        upload = _Recorder()

        def feed() -> int:
            hops = HopUpload(bridge, upload, 10, hop=hop)  # type: ignore[arg-type]
            largest, pos = 0, 0
            while pos < size:
                piece = data[pos:pos + 7001]
                if how == "write":
                    hops.write(piece)
                    pos += len(piece)
                else:
                    space = hops.space()
                    n = min(len(space), len(piece))
                    space[:n] = piece[:n]
                    hops.filled(n)
                    pos += n
                largest = max(largest, len(hops._buf))
            hops.commit()
            return largest
        largest = await _in_thread(feed)
        assert upload.finished is not None
        offsets = [offset for offset, _ in upload.hops]
        whole = b"".join(chunk for _, chunk in upload.hops) + upload.finished[1]
        assert ([10 + i * hop for i in range(size // hop)], {hop} if size >= hop else set(), data,
                10 + size // hop * hop) == (offsets, {len(c) for _, c in upload.hops}, whole, upload.finished[0])
        if size < hop:  # never more than twice what arrived, nor a whole hop for a small file
            assert largest <= max(FIRST_BUFFER_BYTES, 2 * size)
