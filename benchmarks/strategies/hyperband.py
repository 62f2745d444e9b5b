"""Homework strategy 5: Hyperband (Li et al. 2018) over the max LR, with steps as the resource.

Each bracket of the table is a successive-halving run: n random LRs get r steps each, the best
1/eta go on to eta x r steps, and so on up to the maximum resource R. Judgment calls:
- the resource is the training length of the full model (width 768), from ``MIN_STEPS`` = 50
  steps up by factors eta = 3 (50, 150, 450, 1350); llm.c cannot resume a run on a longer
  schedule (the cosine depends on the total), so every rung is a fresh run of that many steps;
- R is the largest of 150, 450, 1350, 4050 steps at which the whole bracket table fits the
  budget once ($5 and $10: R = 150; $20 and $40: R = 450 on a typical landscape); the table
  repeats with fresh LRs while the budget lasts (Hyperband's outer loop) and stops at the first
  run that would not fit;
- LRs are drawn log-uniformly from a student's range, 1e-4 .. 1e-2; a diverged run ranks last;
- the answer is the LR with the lowest loss at the longest training length run so far.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.strategies.oracle import (
    STUDENT_LR_RANGE,
    TARGET_MODEL,
    Oracle,
    OverBudget,
    RunResult,
)

ETA = 3
MIN_STEPS = 50
MAX_STEPS_CHOICES = (150, 450, 1350, 4050)


def bracket_table(max_steps: int, eta: int = ETA, min_steps: int = MIN_STEPS) -> list[list]:
    """Hyperband's brackets for resource R = ``max_steps``: for s = s_max .. 0 a list of rounds
    (configurations n_i, steps r_i), with s_max = log_eta(R / r_min)."""
    s_max = round(math.log(max_steps / min_steps) / math.log(eta))
    table = []
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) / (s + 1) * eta**s)
        r = max_steps / eta**s
        table.append([(math.floor(n / eta**i), round(r * eta**i)) for i in range(s + 1)])
    return table


def table_cost(oracle: Oracle, table: list[list]) -> float:
    """Dollars of one pass over the bracket table if every run completes."""
    return sum(n * oracle.quote(r, TARGET_MODEL) for bracket in table for n, r in bracket)


def choose_max_steps(oracle: Oracle) -> int:
    """The largest R whose whole bracket table fits the budget (at least the smallest)."""
    fitting = [
        r for r in MAX_STEPS_CHOICES if table_cost(oracle, bracket_table(r)) <= oracle.budget
    ]
    return max(fitting) if fitting else MAX_STEPS_CHOICES[0]


def hyperband(oracle: Oracle, seed: int) -> float:
    """Hyperband's outer loop over the bracket table until the budget runs out."""
    rng = np.random.default_rng([seed, 0x4B])
    table = bracket_table(choose_max_steps(oracle))
    results: list[RunResult] = []

    def answer() -> float | None:
        done = [r for r in results if not r.diverged]
        if not done:
            return None
        longest = max(r.steps for r in done)
        return min((r for r in done if r.steps == longest), key=lambda r: r.val_loss).lr

    exhausted = False
    while not exhausted:
        for bracket in table:
            n0 = bracket[0][0]
            lrs = list(np.exp(rng.uniform(*np.log(STUDENT_LR_RANGE), n0)))
            for i, (_, steps) in enumerate(bracket):
                losses = []
                for lr in lrs:
                    try:
                        result = oracle.run(float(lr), steps, TARGET_MODEL)
                    except OverBudget:
                        exhausted = True
                        break
                    results.append(result)
                    losses.append(math.inf if result.diverged else result.val_loss)
                    if (current := answer()) is not None:
                        oracle.answer(current)
                if exhausted:
                    break
                if i + 1 < len(bracket):
                    keep = bracket[i + 1][0]
                    order = np.argsort(losses, kind="stable")
                    lrs = [lrs[j] for j in order[:keep]]
            if exhausted:
                break
    final = answer()
    return oracle.answer(final if final is not None else math.sqrt(np.prod(STUDENT_LR_RANGE)))
