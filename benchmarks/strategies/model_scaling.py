"""Homework strategy 3: model-scaling projection. Find the best LR of tiny models, fit log best
LR against log model size, and extrapolate to GPT-2 124M.

Judgment calls:
- the tiny models are the width rungs 64, 128, 192 and 256 (depth = heads = width / 64, as the
  target's ladder); size is non-embedding parameters, 12 L C^2 (on this ladder the fit is the
  same as one in log width);
- "to convergence" (4725 steps) would cost ~$50 for five LRs per width, more than any budget
  here, so every tiny model trains for the longest step rung at which about ``RUNS_PER_WIDTH``
  runs per width fit the budget ($5: 200 steps, $10: 500, $20: 1000, $40: 2000 on a typical
  landscape); the projection then ignores that the short runs prefer larger LRs;
- each width's best LR comes from a factor-2 bracketing sweep refined while its share of the
  budget lasts (``lr_sweep``; shares are proportional to run cost, and what a sweep leaves
  unspent passes to the next); the first sweep starts at 6e-4 x 768/64 = 7.2e-3 (llm.c's
  default carried to width 64 by the 1/width rule of standard parametrization), later ones at
  the previous width's best;
- with fewer than two widths measured, the one best LR is carried to 768 by the 1/width rule
  (and with none, 6e-4 is answered).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.strategies.lr_sweep import sweep_best_lr
from benchmarks.strategies.oracle import DEFAULT_LR, LR_BOUNDS, STEP_RUNGS, TARGET_MODEL, Oracle
from costbo.gpt2 import ModelShape

TINY_WIDTHS = (64, 128, 192, 256)
RUNS_PER_WIDTH = 5


def _size(model: ModelShape) -> float:
    return 12.0 * model.depth * model.channels**2


def project(points: list[tuple[ModelShape, float]], target: ModelShape = TARGET_MODEL) -> float:
    """Extrapolate (model, best LR) pairs to ``target`` by a least-squares line in log-log."""
    if not points:
        return DEFAULT_LR
    if len(points) == 1:
        model, lr = points[0]
        return lr * model.channels / target.channels
    x = np.log([_size(m) for m, _ in points])
    y = np.log([lr for _, lr in points])
    slope, intercept = np.polyfit(x, y, 1)
    lr = math.exp(intercept + slope * math.log(_size(target)))
    return min(max(lr, LR_BOUNDS[0]), LR_BOUNDS[1])


def model_scaling(oracle: Oracle, seed: int) -> float:
    """Sweep the tiny widths, fit LR vs size, extrapolate to width 768."""
    models = [ModelShape.from_width(w) for w in TINY_WIDTHS]
    fitting = [
        s
        for s in STEP_RUNGS[:-1]
        if RUNS_PER_WIDTH * sum(oracle.quote(s, m) for m in models) <= oracle.budget
    ]
    steps = max(fitting) if fitting else STEP_RUNGS[0]
    costs = [oracle.quote(steps, m) for m in models]
    start = DEFAULT_LR * TARGET_MODEL.channels / models[0].channels
    points: list[tuple[ModelShape, float]] = []
    for k, model in enumerate(models):
        # what is left, shared in proportion to run cost among the widths still to come
        allowance = oracle.remaining * costs[k] / sum(costs[k:])
        sweep = sweep_best_lr(oracle, steps, model, start, allowance)
        if sweep.best_lr is not None:
            points.append((model, sweep.best_lr))
            start = sweep.best_lr
            if len(points) >= 2:
                oracle.answer(project(points))
    return oracle.answer(project(points))
