"""xferd.eager: a coroutine started at once, continued by a Task only if it suspends."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from xferd import eager

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class TestStart:
    async def test_a_coroutine_that_never_suspends_needs_no_task(self) -> None:
        """It runs to its end inside start(): the outcome is a plain done future, not a Task."""
        ran: list[str] = []

        async def quick() -> int:
            ran.append("ran")
            return 42

        outcome = eager.start(asyncio.get_running_loop(), quick(), contextvars.copy_context())
        assert (["ran"], True, False, 42) == (ran, outcome.done(), isinstance(outcome, asyncio.Task),
                                             outcome.result())

    async def test_it_runs_up_to_its_first_suspension_at_once(self) -> None:
        """Everything before the first await of a pending future has run when start() returns;
        a Task continues it, and its result is the coroutine's."""
        steps: list[str] = []
        gate = asyncio.get_running_loop().create_future()

        async def two_halves() -> str:
            steps.append("before")
            value = await gate
            steps.append("after")
            return f"got {value}"

        outcome = eager.start(asyncio.get_running_loop(), two_halves(), contextvars.copy_context())
        assert (["before"], False, True) == (steps, outcome.done(), isinstance(outcome, asyncio.Task))
        gate.set_result("it")
        assert ("got it", ["before", "after"]) == (await outcome, steps)

    async def test_both_halves_run_in_the_given_context(self) -> None:
        """What the first half sets is seen by the second; the caller's context is untouched."""
        context = contextvars.copy_context()
        seen: list[str] = []

        async def uses_var() -> None:
            VAR.set("bound")
            await asyncio.sleep(0)
            seen.append(VAR.get())

        await eager.start(asyncio.get_running_loop(), uses_var(), context)
        assert (["bound"], "bound", "unset") == (seen, context[VAR], VAR.get())

    async def test_errors_before_and_after_suspending(self) -> None:
        """An exception raised at once, or after suspending, is the outcome's exception."""
        async def fails_at_once() -> None:
            raise FileNotFoundError("at once")

        async def fails_later() -> None:
            await asyncio.sleep(0)
            raise PermissionError("later")

        loop = asyncio.get_running_loop()
        first = eager.start(loop, fails_at_once(), contextvars.copy_context())
        with pytest.raises(FileNotFoundError):
            first.result()
        with pytest.raises(PermissionError):
            await eager.start(loop, fails_later(), contextvars.copy_context())

    async def test_cancelled_at_once_is_a_cancelled_outcome(self) -> None:
        """A coroutine that raises CancelledError before suspending leaves a cancelled outcome."""
        async def gives_up() -> None:
            raise asyncio.CancelledError

        assert eager.start(asyncio.get_running_loop(), gives_up(), contextvars.copy_context()).cancelled()

    async def test_cancelling_the_task_cancels_the_coroutine(self) -> None:
        """Cancelling the continuing Task throws CancelledError into the coroutine where it waits."""
        cleaned: list[str] = []

        async def waits() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                cleaned.append("finally")

        outcome = eager.start(asyncio.get_running_loop(), waits(), contextvars.copy_context())
        outcome.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outcome
        assert ["finally"] == cleaned

    async def test_a_coroutine_may_catch_the_cancellation_and_return(self) -> None:
        """The error goes into the coroutine; what it returns then is the result."""
        async def shrugs() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "stopped cleanly"
            return "slept"

        outcome = eager.start(asyncio.get_running_loop(), shrugs(), contextvars.copy_context())
        await asyncio.sleep(0)
        outcome.cancel()
        assert "stopped cleanly" == await outcome

    async def test_it_suspends_more_than_once(self) -> None:
        """A coroutine that waits several times (and yields bare, as sleep(0) does) gets each value."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(3)]

        async def collect() -> list[int]:
            got = []
            for f in futures:
                got.append(await f)
                await asyncio.sleep(0)
            return got

        outcome = eager.start(loop, collect(), contextvars.copy_context())
        for i, f in enumerate(futures):
            await asyncio.sleep(0)
            f.set_result(i)
        assert [0, 1, 2] == await outcome

    async def test_keyboard_interrupt_is_not_swallowed(self) -> None:
        """KeyboardInterrupt and SystemExit propagate, as from a Task's step."""
        async def interrupted() -> None:
            raise KeyboardInterrupt

        coro = interrupted()
        with pytest.raises(KeyboardInterrupt):
            eager.start(asyncio.get_running_loop(), coro, contextvars.copy_context())

    async def test_from_inside_the_context_it_is_not_entered_again(self) -> None:
        """A caller already running in the context (a context cannot be entered twice) passes
        entered=True: the first half runs right there, the Task continues in that same context."""
        context = contextvars.copy_context()
        seen: list[str] = []

        async def uses_var() -> None:
            seen.append(VAR.get())
            await asyncio.sleep(0)
            seen.append(VAR.get())

        def inside() -> asyncio.Future[None]:
            VAR.set("inside")
            return eager.start(asyncio.get_running_loop(), uses_var(), context, entered=True)

        await context.run(inside)
        assert ["inside", "inside"] == seen
