"""xferd.inline: when short blocking work may run on the event loop's thread."""

from __future__ import annotations

import pytest

from xferd.inline import InlineBudget

LIMIT = 200e-6


class TestInlineBudget:
    def test_unproven_storage_is_refused_until_fast_runs_bring_the_average_down(self) -> None:
        """A new budget refuses; it allows once enough runs well under the limit were recorded."""
        budget = InlineBudget(LIMIT)
        refused_at_first = not budget.allows()
        runs = 0
        while not budget.allows():
            budget.record(LIMIT / 4)
            runs += 1
        assert (True, 9) == (refused_at_first, runs)  # 400 us -> under 200 us at 0.1 weight

    def test_one_run_ten_times_the_limit_refuses_at_once(self) -> None:
        """A proven budget refuses right after one run of ten times the limit (a disk that got busy)."""
        budget = InlineBudget(LIMIT)
        budget.average = LIMIT / 2
        budget.record(10 * LIMIT)
        assert not budget.allows()

    def test_runs_just_over_the_limit_now_and_then_do_not_refuse(self) -> None:
        """A single run somewhat over the limit among fast ones keeps the average under it."""
        budget = InlineBudget(LIMIT)
        budget.average = LIMIT / 4
        budget.record(2 * LIMIT)
        assert budget.allows()

    def test_timed_records_a_run_that_raised(self) -> None:
        """timed() records the duration also when the timed work raises."""
        budget = InlineBudget(LIMIT)
        budget.average = 0.0
        with pytest.raises(OSError), budget.timed():
            raise OSError("fsync failed")
        assert 0.0 < budget.average
