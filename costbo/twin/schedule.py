"""llm.c's four learning-rate schedules (``-k``), in float32 arithmetic as schedulers.h does it.

``max_lr`` is ``-l``, ``warmup`` is ``-u``, ``total_steps`` is ``-x`` (the schedule always spans
it, whatever ``-es`` stops at) and ``min_lr = max_lr * -q``:

- cosine: ``max_lr*(step+1)/W`` while step < W, then
  ``min_lr + 0.5*(1+cos(pi*(step-W)/(N-W)))*(max_lr-min_lr)``;
- linear: the same warmup, then a straight line from max_lr to min_lr at step N;
- constant: max_lr at every step (no warmup);
- wsd: warmup, constant until int(0.8 N), then ``min_lr + (1-sqrt(ratio))*(max_lr-min_lr)``.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("cosine", "linear", "constant", "wsd")


class UnknownSchedule(ValueError):
    """``-k`` names no schedule: llm.c prints this and exits 1 at the first training step."""


class ScheduleAssertion(AssertionError):
    """A decay ratio outside [0, 1] (e.g. W >= N): one of schedulers.h's asserts fails."""


def learning_rate(
    kind: str, step: int, max_lr: float, warmup: int, total_steps: int, final_fraction: float
) -> float:
    """The learning rate at 0-based ``step`` (a float32 value, returned as a Python float)."""
    f32 = np.float32
    with np.errstate(all="ignore"):  # C float division by zero is inf/nan, then an assert
        lr = f32(max_lr)
        min_lr = lr * f32(final_fraction)
        if kind == "constant":
            return float(lr)
        if kind not in SCHEDULES:
            raise UnknownSchedule(f"Unknown learning rate scheduler type: {kind}")
        if kind == "wsd":
            decay_point = int(f32(0.8) * f32(total_steps))
            if step < warmup:
                return float(lr * (f32(step + 1) / f32(warmup)))
            if step < decay_point:
                return float(lr)
            ratio = f32(step - decay_point) / f32(total_steps - decay_point)
            _check_ratio(ratio)
            return float(min_lr + (f32(1.0) - np.sqrt(ratio)) * (lr - min_lr))
        if step < warmup:
            return float(lr * f32(step + 1) / f32(warmup))
        ratio = f32(step - warmup) / f32(total_steps - warmup)
        _check_ratio(ratio)
        if kind == "linear":
            return float(lr - ratio * (lr - min_lr))
        coeff = f32(0.5) * (f32(1.0) + np.cos(f32(math.pi * float(ratio))))
        return float(min_lr + coeff * (lr - min_lr))


def _check_ratio(ratio: np.float32) -> None:
    if not 0.0 <= ratio <= 1.0:  # false for nan too, as in C
        raise ScheduleAssertion("Assertion `0.0f <= decay_ratio && decay_ratio <= 1.0f' failed.")
