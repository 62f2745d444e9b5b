"""Peer: Optuna's TPE sampler with its HyperbandPruner, steps of the full model as the resource.

Each trial draws a max LR from TPE over costbo's search-space bounds (1e-5 .. 1e-1, log) and
trains the full model (width 768) for 50, 150, 450, ... steps, up to the same maximum resource R
as ``hyperband`` chooses for the budget, reporting each rung's val loss as an intermediate value
so that the pruner can stop it. llm.c cannot resume onto a longer schedule, so each rung is a
fresh run (its cost is charged in full). A diverged run reports ln(50257) and the trial is
pruned. Trials continue until a run would not fit the budget. The answer is the LR with the
lowest loss at the longest training length run so far (as for ``hyperband``).
"""

from __future__ import annotations

import math

from benchmarks.strategies.hyperband import ETA, MIN_STEPS, choose_max_steps
from benchmarks.strategies.oracle import LR_BOUNDS, TARGET_MODEL, Oracle, OverBudget, RunResult
from costbo.gpt2 import VOCAB_SIZE


def optuna_tpe(oracle: Oracle, seed: int) -> float:
    """TPE + HyperbandPruner until the budget runs out."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_steps = choose_max_steps(oracle)
    ladder = [MIN_STEPS * ETA**k for k in range(20) if MIN_STEPS * ETA**k <= max_steps]
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=MIN_STEPS, max_resource=max_steps, reduction_factor=ETA
        ),
    )
    results: list[RunResult] = []

    def answer() -> float | None:
        done = [r for r in results if not r.diverged]
        if not done:
            return None
        longest = max(r.steps for r in done)
        return min((r for r in done if r.steps == longest), key=lambda r: r.val_loss).lr

    exhausted = False
    while not exhausted:
        trial = study.ask()
        lr = trial.suggest_float("lr", *LR_BOUNDS, log=True)
        state, value = optuna.trial.TrialState.COMPLETE, None
        for steps in ladder:
            try:
                result = oracle.run(lr, steps, TARGET_MODEL)
            except OverBudget:
                exhausted = True
                state = optuna.trial.TrialState.FAIL
                break
            results.append(result)
            if (current := answer()) is not None:
                oracle.answer(current)
            value = math.log(VOCAB_SIZE) if result.diverged else result.val_loss
            trial.report(value, steps)
            if result.diverged or (steps < ladder[-1] and trial.should_prune()):
                state = optuna.trial.TrialState.PRUNED
                break
        if state is optuna.trial.TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    final = answer()
    return oracle.answer(final if final is not None else math.sqrt(LR_BOUNDS[0] * LR_BOUNDS[1]))
