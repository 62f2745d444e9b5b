"""costbo itself as a strategy: a ``Study`` on design.md's default search space, asked and told
until it raises ``BudgetExhausted``.

The study learns its cost model from the told runs' seconds (no probe, no measured step
times); the baselines, by contrast, may quote exact costs. If a run it proposes would pass the
budget after all (its upper cost quantile was too optimistic), the oracle refuses it and the loop
stops there. The recommendation after every run is computed after the next ``ask`` so that the
surrogate fit counts towards the ask time (``recommend`` would otherwise do it first, cached).
"""

from __future__ import annotations

import dataclasses

from benchmarks.strategies.oracle import LR_BOUNDS, STEP_RUNGS, WIDTH_RUNGS, Oracle, OverBudget
from costbo import BudgetExhausted, SearchSpace
from costbo.priors import LearningRatePrior
from costbo.study import Study


def default_space() -> SearchSpace:
    """design.md's space: LR 1e-5 .. 1e-1, steps 50 .. 4725, widths 64 .. 768."""
    return SearchSpace(lr=LR_BOUNDS, steps=list(STEP_RUNGS), widths=list(WIDTH_RUNGS))


QUICK_MAX_RUNS = 6


def run_study(
    oracle: Oracle,
    seed: int,
    acquisition: str | None = None,
    max_runs: int | None = None,
    prior: LearningRatePrior | None = None,
) -> float:
    """Ask, run and tell until the budget is exhausted (or ``max_runs`` runs, for quick checks);
    answer ``recommend().lr``. ``acquisition`` and ``prior`` None keep the Study's defaults."""
    study = tune(oracle, seed, acquisition, max_runs, prior)
    if not oracle.runs:  # not even the cheapest run fitted: the prior is all there is
        return oracle.answer(10.0**study.prior.target_log10_lr)
    return oracle.answer(lambda: study.recommend().lr)


def tune(
    oracle: Oracle,
    seed: int,
    acquisition: str | None = None,
    max_runs: int | None = None,
    prior: LearningRatePrior | None = None,
) -> Study:
    """The ask / run / tell loop of ``run_study`` (answers recorded after every run but the
    last); returns the Study, whose ``recommend()`` is the final answer. ``prior`` None keeps
    the Study's (the published laws'); diagnostics pass another."""
    options = {} if acquisition is None else {"acquisition": acquisition}
    if prior is not None:
        options["prior"] = prior
    study = Study(
        default_space(),
        budget=oracle.budget,
        price_per_hour=oracle.price_per_hour,
        seed=seed,
        **options,
    )
    while max_runs is None or len(oracle.runs) < max_runs:
        try:
            trial = study.ask()
        except BudgetExhausted:
            break
        if oracle.runs:
            oracle.answer(lambda: study.recommend().lr)
        try:
            result = oracle.run(trial.lr, trial.steps, trial.model)
        except OverBudget:
            break
        if result.diverged:
            study.tell(trial.id, diverged=True, seconds=result.seconds)
        else:
            study.tell(trial.id, val_loss=result.val_loss, seconds=result.seconds)
    return study


def costbo_default(oracle: Oracle, seed: int) -> float:
    """costbo exactly as a user gets it: the Study's default settings."""
    return run_study(oracle, seed)


def costbo_ei(oracle: Oracle, seed: int) -> float:
    """costbo with expected improvement of the full-scale answer per dollar."""
    return run_study(oracle, seed, "ei_per_dollar")


def costbo_kg(oracle: Oracle, seed: int) -> float:
    """costbo with the one-step lookahead (knowledge gradient) per dollar."""
    return run_study(oracle, seed, "kg_per_dollar")


# A candidate default, measured and rejected (benchmarks/README.md, "Candidate rejected: a wider
# drift prior": no change in regret beyond luck): the published laws' slopes, each twice as
# uncertain as the Study's prior says, so that the cheap narrow and short rungs are extrapolated
# more by their own drift and less by the laws'.
WIDE_DRIFT_SDS = {"width_slope_sd": 0.3, "steps_slope_sd": 0.04}


def laws_prior(target, changes: dict | None = None) -> LearningRatePrior:
    """The Study's published-laws prior for ``target`` (a ``Fidelity``) with ``changes``
    replacing its fields."""
    laws = LearningRatePrior.from_scaling_laws(target.model, target.steps)
    return dataclasses.replace(laws, **(changes or {}))


def wide_drift_prior() -> LearningRatePrior:
    """The Study's published-laws prior at design.md's target with ``WIDE_DRIFT_SDS``."""
    return laws_prior(default_space().target, WIDE_DRIFT_SDS)


def costbo_wide_drift(oracle: Oracle, seed: int) -> float:
    """costbo's defaults but the drift prior of ``wide_drift_prior``."""
    return run_study(oracle, seed, prior=wide_drift_prior())


def costbo_quick(oracle: Oracle, seed: int) -> float:
    """The default Study stopped after a few runs, for ``run.py --quick`` (checks that it runs)."""
    return run_study(oracle, seed, max_runs=QUICK_MAX_RUNS)


def costbo_ei_quick(oracle: Oracle, seed: int) -> float:
    return run_study(oracle, seed, "ei_per_dollar", max_runs=QUICK_MAX_RUNS)


def costbo_kg_quick(oracle: Oracle, seed: int) -> float:
    return run_study(oracle, seed, "kg_per_dollar", max_runs=QUICK_MAX_RUNS)
