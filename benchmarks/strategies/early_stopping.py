"""Homework strategy 2: 10 LRs on 1/10 of the tokens at the target width; answer the best.

Two readings of "1/10 of the tokens", both run by the benchmark:
- ``early_stopping``: llm.c's ``-es``: each run follows the full 4725-step schedule and stops
  at step 473 (literally early stopping). Its warmup is 470 steps, so every run stops at the
  end of warmup, where a higher LR has simply moved further: the short-horizon bias;
- ``early_stopping_short``: each run is a complete 473-step run with its own cosine schedule.
Judgment calls: the 10 LRs are log-spaced over a student's range, 1e-4 .. 1e-2 (factor ~1.67
apart); they run from the centre outwards (1.3e-3, 7.7e-4, 2.2e-3, 4.6e-4, ...) so that a budget
too small for all 10 (~$1.55 each: $5 buys 3, $10 buys 6) still covers the likely optimum;
a budget above ~$16 is left unspent, as the strategy prescribes exactly 10 runs.
"""

from __future__ import annotations

import numpy as np

from benchmarks.strategies.oracle import (
    STUDENT_LR_RANGE,
    TARGET_MODEL,
    TARGET_STEPS,
    Oracle,
    OverBudget,
)

N_LRS = 10
TOKEN_FRACTION = 10  # 1/10 of the target's tokens


def centre_out_lrs(n: int = N_LRS) -> list[float]:
    """``n`` LRs log-spaced over the student's range, ordered from the centre outwards."""
    grid = np.geomspace(*STUDENT_LR_RANGE, n)
    order = sorted(range(n), key=lambda i: (abs(i - (n - 1) / 2), -i if i > (n - 1) / 2 else i))
    return [float(grid[i]) for i in order]


def _sweep(oracle: Oracle, steps: int, stop_at: int | None) -> float:
    best_lr, best_loss = None, float("inf")
    for lr in centre_out_lrs():
        try:
            result = oracle.run(lr, steps, TARGET_MODEL, stop_at=stop_at)
        except OverBudget:
            break
        if not result.diverged and result.val_loss < best_loss:
            best_lr, best_loss = lr, result.val_loss
        if best_lr is not None:
            oracle.answer(best_lr)
    if best_lr is None:  # nothing finished: fall back to the grid's centre
        best_lr = centre_out_lrs()[0]
    return oracle.answer(best_lr)


def early_stopping(oracle: Oracle, seed: int) -> float:
    """10 LRs on the full schedule stopped at 1/10 of the steps (llm.c ``-es``)."""
    return _sweep(oracle, TARGET_STEPS, stop_at=round(TARGET_STEPS / TOKEN_FRACTION))


def early_stopping_short(oracle: Oracle, seed: int) -> float:
    """10 LRs on complete runs of 1/10 of the steps (their own cosine schedule)."""
    return _sweep(oracle, round(TARGET_STEPS / TOKEN_FRACTION), stop_at=None)
