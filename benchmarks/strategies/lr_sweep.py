"""Finding the best LR at one fidelity by hand: the LR sweep the projection baselines repeat.

The sweep a student runs: start somewhere, step by a factor 2 towards lower loss until the loss
rises on both sides of the best LR (a diverged run counts as a rise), then halve the factor
around the best while the allowance lasts (sqrt 2, then 2^(1/4), ...), and read the optimum off
a parabola through the best run and its two nearest neighbours in log LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchmarks.strategies.oracle import LR_BOUNDS, Oracle, OverBudget, RunResult
from costbo.gpt2 import ModelShape

MIN_FACTOR = 2.0**0.125  # below this, the ~0.003-nat roughness decides, not the basin


@dataclass
class Sweep:
    """The runs of one sweep and its estimate of the best max LR (None if nothing finished)."""

    steps: int
    model: ModelShape
    runs: list[RunResult] = field(default_factory=list)
    best_lr: float | None = None

    def finished(self) -> list[RunResult]:
        return sorted((r for r in self.runs if not r.diverged), key=lambda r: r.lr)


def _loss(runs: dict[float, RunResult], lr: float) -> float:
    r = runs.get(lr)
    return math.inf if r is None or r.diverged else r.val_loss


def sweep_best_lr(
    oracle: Oracle,
    steps: int,
    model: ModelShape,
    start_lr: float,
    allowance: float,
    *,
    factor: float = 2.0,
    stop_at: int | None = None,
    max_runs: int = 40,
) -> Sweep:
    """Bracket and refine the best LR at (steps, model), spending at most ``allowance`` dollars
    of the oracle's budget (runs that do not fit are not started)."""
    sweep = Sweep(steps, model)
    runs: dict[float, RunResult] = {}
    cost = oracle.quote(steps, model, stop_at)
    lo_bound, hi_bound = LR_BOUNDS
    start_spent = oracle.spent

    def try_run(lr: float) -> bool:
        lr = min(max(lr, lo_bound), hi_bound)
        if any(abs(math.log(lr / old)) < 1e-9 for old in runs):
            return True
        if oracle.spent - start_spent + cost > allowance + 1e-12 or len(runs) >= max_runs:
            return False
        try:
            result = oracle.run(lr, steps, model, stop_at)
        except OverBudget:
            return False
        runs[lr] = result
        sweep.runs.append(result)
        return True

    def best() -> float | None:
        finite = [lr for lr in runs if not runs[lr].diverged]
        return min(finite, key=lambda lr: runs[lr].val_loss) if finite else None

    # 1. bracket with factor-2 steps
    if not try_run(start_lr):
        return sweep
    while best() is None:  # everything diverged so far: step down
        if not try_run(min(runs) / factor):
            return sweep
    centre = best()
    while True:
        up, down = centre * factor, centre / factor
        if up not in runs and up <= hi_bound and not try_run(up):
            break
        if down not in runs and down >= lo_bound and not try_run(down):
            break
        new = best()
        if new == centre:
            break  # both neighbours are worse (or at a bound): bracketed
        centre = new
    # 2. refine around the best while the allowance lasts
    f = factor
    while f > MIN_FACTOR:
        f = math.sqrt(f)
        centre = best()
        if centre is None or not (try_run(centre * f) and try_run(centre / f)):
            break
    sweep.best_lr = _vertex(runs, best())
    return sweep


def _vertex(runs: dict[float, RunResult], centre: float | None) -> float | None:
    """The minimum of a parabola in ln LR through the best finished run and its nearest finished
    neighbours on each side; the best run itself if there is no such bracket."""
    if centre is None:
        return None
    finite = sorted(lr for lr in runs if not runs[lr].diverged)
    i = finite.index(centre)
    if i == 0 or i == len(finite) - 1:
        return centre
    xs = [math.log(finite[j]) for j in (i - 1, i, i + 1)]
    ys = [runs[finite[j]].val_loss for j in (i - 1, i, i + 1)]
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    if a <= 0:
        return centre
    x = min(max(-b / (2 * a), x0), x2)
    return math.exp(x)


__all__ = ["Sweep", "sweep_best_lr"]
