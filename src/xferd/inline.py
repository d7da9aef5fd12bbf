"""When short blocking work may run on the event loop's own thread instead of another thread.

Handing work to a thread and back costs two thread wake-ups (about 45 and 90 us on a 2-core
virtual machine) on top of the work. For an upload's last steps on fast storage (a blob's fsync
on tmpfs or an NVMe drive with power-loss protection, a SQLite transaction of a few statements)
that is as much as the work itself, and a small upload waits for both. The same steps on a disk
whose fsync takes milliseconds would stall every session on the loop for that long.

So the stores time each run of such a step, wherever it ran, and keep an exponential average.
The step runs on the loop only while that average stays under a limit of a few hundred
microseconds: one slow run (a disk that got busy) lifts the average over the limit at once, and
the following runs go to the thread again, where they are timed too, until the average falls.
An average starts above the limit, so storage proves itself in the thread before the loop uses it.
"""

from __future__ import annotations

import time


class InlineBudget:
    """The running average of a step's duration, and whether it is short enough for the loop."""

    def __init__(self, limit: float, weight: float = 0.1) -> None:
        self.limit = limit  # seconds
        self.weight = weight
        self.average = 2 * limit  # unproven until runs in the thread have been timed

    def allows(self) -> bool:
        return self.average < self.limit

    def record(self, seconds: float) -> None:
        # Updated from the loop and from worker threads; a lost update only delays the average.
        self.average += self.weight * (seconds - self.average)

    def timed(self) -> _Timing:
        """``with budget.timed():`` records how long the block took (a class, not a generator:
        this wraps every small commit, and a generator-based context manager costs several
        times as much)."""
        return _Timing(self)


class _Timing:
    __slots__ = ("budget", "started")

    def __init__(self, budget: InlineBudget) -> None:
        self.budget = budget
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.budget.record(time.perf_counter() - self.started)
