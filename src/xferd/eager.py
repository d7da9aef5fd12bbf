"""Start a coroutine at once, in the caller's loop iteration, instead of in a Task's first step.

A Task runs nothing when it is created: its first step is scheduled for the loop's next
iteration, and whoever waits for its result hears of it one iteration after it finished. For a
call from another thread (:class:`~xferd.frontends.bridge.Bridge`) that is two iterations of the
loop and a Task on top of the two thread wake-ups, while most such calls (a lookup, a small
commit on fast storage) never suspend at all. Python 3.12's ``eager_task_factory`` does the same
for every task; this works on 3.11 and only where it is asked for.

:func:`start` runs the coroutine until it first suspends. If it finished, its outcome is a done
future and no Task was made; otherwise a Task continues it from where it stopped, in the same
context, exactly as if it had run there from the start (cancelling that Task cancels it).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T],
          context: contextvars.Context, entered: bool = False) -> asyncio.Future[T]:
    """Run ``coro`` in ``context`` until it finishes or first suspends; on the loop's thread.
    ``entered``: the caller runs in ``context`` already (a context cannot be entered twice)."""
    try:
        yielded = coro.send(None) if entered else context.run(coro.send, None)
    except StopIteration as stop:
        done: asyncio.Future[T] = loop.create_future()
        done.set_result(stop.value)
        return done
    except asyncio.CancelledError:
        done = loop.create_future()
        done.cancel()
        return done
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        done = loop.create_future()
        done.set_exception(exc)
        return done
    return loop.create_task(_Continued(coro, yielded), context=context)  # type: ignore[arg-type]


class _Continued:
    """The rest of a coroutine that already ran up to ``yielded``, as a Task can drive it: the
    Task's first step gets what the coroutine is waiting for; every later step, and any error
    (a cancellation even before that first step), goes into the coroutine itself."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._first: Any = yielded
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            return self._first
        return self._coro.send(value)

    def throw(self, exc: Any, *rest: Any) -> Any:
        if not self._started:  # cancelled before the Task's first step: what the coroutine awaits goes too
            self._started = True
            if isinstance(exc, asyncio.CancelledError) and isinstance(self._first, asyncio.Future):
                self._first.cancel()
        return self._coro.throw(exc, *rest)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> _Continued:
        return self

    def __next__(self) -> Any:
        return self.send(None)
