"""The warm-up + cosine schedule ends at zero when the run stops, by steps or by time."""

from __future__ import annotations

import math

import pytest

from training.schedule import LRSchedule


def test_constant_is_the_configured_rate_throughout() -> None:
    s = LRSchedule(1e-3, "constant", warmup_steps=10, planned_steps=100, budget_s=60)
    assert {s.lr(step, elapsed) for step, elapsed in [(0, 0), (5, 30), (99, 59)]} == {1e-3}


def test_cosine_warms_up_linearly_then_decays_to_zero_by_steps() -> None:
    s = LRSchedule(1.0, "cosine", warmup_steps=4, planned_steps=104, budget_s=0)
    assert [s.lr(k, 0) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert s.lr(54, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 54 / 104)))
    assert s.lr(104, 0) == pytest.approx(0.0)
    assert s.lr(500, 0) == pytest.approx(0.0)  # past the plan it stays at zero


def test_cosine_follows_the_time_budget_when_that_comes_first() -> None:
    s = LRSchedule(1.0, "cosine", warmup_steps=0, planned_steps=10_000, budget_s=100.0)
    assert s.lr(10, 50.0) == pytest.approx(0.5)  # half the budget spent, 0.1% of the steps
    assert s.lr(10, 100.0) == pytest.approx(0.0)
    assert s.progress(5_000, 10.0) == pytest.approx(0.5)  # steps further along than time


def test_bad_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="schedule must be"):
        LRSchedule(1.0, "linear", 0, 10, 0)
    with pytest.raises(ValueError, match="planned_steps"):
        LRSchedule(1.0, "cosine", 0, 0, 0)
