"""Homework strategy 4: data-scaling projection. Find the best LR of the full model on 26M, 52M
and 105M tokens (50, 100 and 200 steps of 524,288 tokens), fit log best LR against log tokens,
and extrapolate to the target's 2.48B tokens (4725 steps).

Judgment calls:
- each token count's best LR comes from a factor-2 bracketing sweep refined while its share of
  the budget lasts (``lr_sweep``): shares are equal in runs (a 200-step run costs ~3.7x a
  50-step one), and what a sweep leaves unspent passes to the next; the first sweep starts at
  llm.c's default 6e-4, later ones at the previous best;
- the fit is a least-squares line in log-log over the token counts that produced an estimate;
  with one, it is answered as is (no drift assumed), with none, 6e-4;
- the answer is clipped to costbo's LR bounds (1e-5 .. 1e-1).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.strategies.lr_sweep import sweep_best_lr
from benchmarks.strategies.oracle import DEFAULT_LR, LR_BOUNDS, TARGET_MODEL, TARGET_STEPS, Oracle

PROXY_STEPS = (50, 100, 200)  # 26M, 52M, 105M tokens


def project(points: list[tuple[int, float]], target_steps: int = TARGET_STEPS) -> float:
    """Extrapolate (steps, best LR) pairs to ``target_steps`` by a line in log-log."""
    if not points:
        return DEFAULT_LR
    if len(points) == 1:
        return points[0][1]
    slope, intercept = np.polyfit(
        np.log([s for s, _ in points]), np.log([lr for _, lr in points]), 1
    )
    lr = math.exp(intercept + slope * math.log(target_steps))
    return min(max(lr, LR_BOUNDS[0]), LR_BOUNDS[1])


def data_scaling(oracle: Oracle, seed: int) -> float:
    """Sweep the full model at 50/100/200 steps, fit LR vs tokens, extrapolate to 4725 steps."""
    costs = [oracle.quote(s, TARGET_MODEL) for s in PROXY_STEPS]
    start = DEFAULT_LR
    points: list[tuple[int, float]] = []
    for k, steps in enumerate(PROXY_STEPS):
        # what is left, shared in proportion to run cost among the sweeps still to come
        allowance = oracle.remaining * costs[k] / sum(costs[k:])
        sweep = sweep_best_lr(oracle, steps, TARGET_MODEL, start, allowance)
        if sweep.best_lr is not None:
            points.append((steps, sweep.best_lr))
            start = sweep.best_lr
            if len(points) >= 2:
                oracle.answer(project(points))
    return oracle.answer(project(points))
