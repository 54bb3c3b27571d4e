"""Learning-rate schedule for budget-bound runs: warm-up, then cosine decay to zero.

A CPU run here is stopped by its wall-clock budget (``run.max_minutes``) long before its epoch
cap, so a decay planned in steps alone would never reach its end. The run's progress is the
larger of the two fractions, steps done over the epoch cap's steps and seconds spent over the
budget, and the cosine follows that: the learning rate reaches zero exactly when the run stops,
whichever limit stops it. (A time-driven schedule depends on the machine's speed; the steps it
took are logged with every run, so runs are still compared by steps.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LRSchedule"]


@dataclass(frozen=True)
class LRSchedule:
    """``lr(step, elapsed)``: the learning rate for the next optimiser step.

    base: the configured rate; kind: "constant" or "cosine"; warmup_steps: linear ramp from
    base/warmup_steps; planned_steps: steps the epoch cap allows (> 0); budget_s: the wall-clock
    budget in seconds (0: none).
    """

    base: float
    kind: str
    warmup_steps: int
    planned_steps: int
    budget_s: float

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.kind!r}")
        if self.planned_steps < 1:
            raise ValueError(f"planned_steps must be >= 1, got {self.planned_steps}")

    def progress(self, step: int, elapsed: float) -> float:
        """Fraction of the run done, in [0, 1]: steps or seconds, whichever is further."""
        by_steps = step / self.planned_steps
        by_time = elapsed / self.budget_s if self.budget_s > 0 else 0.0
        return min(max(by_steps, by_time), 1.0)

    def lr(self, step: int, elapsed: float) -> float:
        if self.kind == "constant":
            return self.base
        if step < self.warmup_steps:
            return self.base * (step + 1) / self.warmup_steps
        return self.base * 0.5 * (1.0 + math.cos(math.pi * self.progress(step, elapsed)))
