"""llm.c's learning-rate schedules (llmc/schedulers.h), computed in float32 as the C code does.

costbo-sim prints the ``lr`` column from these, and the simulated loss curves integrate them: a
run's progress depends on the area under its schedule, and a too-high LR diverges at the step the
schedule first crosses the divergence threshold.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("cosine", "linear", "constant", "wsd")


class UnknownScheduleError(ValueError):
    """llm.c exits 1 with ``Unknown learning rate scheduler type: %s`` at its first step."""


def learning_rates(
    max_lr: float,
    steps: int,
    *,
    warmup: int,
    schedule: str = "cosine",
    final_lr_frac: float = 0.0,
    count: int | None = None,
) -> np.ndarray:
    """The LR of optimizer steps ``0 .. count-1`` (float32, like llm.c) for a schedule of length
    ``steps`` (llm.c's ``-x``). ``count`` defaults to ``steps``; a smaller one is ``-es``.

    Cosine and linear warm up linearly for ``warmup`` steps, then decay to ``max_lr *
    final_lr_frac`` at ``steps``; constant has no warmup; wsd warms up, stays flat until
    ``int(0.8 * steps)``, then decays as ``1 - sqrt(ratio)``.
    """
    if schedule not in SCHEDULES:
        raise UnknownScheduleError(f"Unknown learning rate scheduler type: {schedule}")
    n = steps if count is None else count
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    f32 = np.float32
    lr = f32(max_lr)
    step = np.arange(n)
    out = np.full(n, lr, dtype=np.float32)
    if schedule == "constant":
        return out
    warm = step < warmup
    if warmup > 0:
        out[warm] = (lr * (step[warm] + 1).astype(np.float32)) / f32(warmup)
    min_lr = f32(lr * f32(final_lr_frac))
    rest = step[~warm]
    if rest.size == 0:
        return out
    if schedule == "wsd":
        decay_point = int(f32(0.8) * f32(steps))
        decaying = rest >= decay_point
        rest = rest[decaying]
        if rest.size:
            ratio = (rest - decay_point).astype(np.float32) / f32(steps - decay_point)
            idx = np.nonzero(~warm)[0][decaying]
            out[idx] = min_lr + (f32(1.0) - np.sqrt(ratio)) * f32(lr - min_lr)
        return out
    ratio = (rest - warmup).astype(np.float32) / f32(steps - warmup)
    if schedule == "cosine":
        angle = (math.pi * ratio.astype(np.float64)).astype(np.float32)
        coeff = f32(0.5) * (f32(1.0) + np.cos(angle))
        out[~warm] = min_lr + coeff * f32(lr - min_lr)
    else:  # linear
        out[~warm] = lr - ratio * f32(lr - min_lr)
    return out
