"""Pending trials and runs that did not finish: asking again before telling looks elsewhere and
reserves money; diverged runs teach the divergence model, never the loss GP, and cap the answer;
failed and interrupted runs cost money but teach nothing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from costbo import BudgetExhausted, Study

PRICE = 1.5


def run_key(trial) -> tuple[float, int, int]:
    return (trial.lr, trial.steps, trial.width)


def all_finite(*values) -> bool:
    return all(np.isfinite(np.asarray(v, dtype=float)).all() for v in values)


# --- pending -----------------------------------------------------------------------------------
def test_asking_several_times_before_telling_never_repeats_a_run(cheap_space, landscape):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    initial = [study.ask() for _ in range(3)]  # the initial design, all pending at once
    assert len({run_key(t) for t in initial}) == 3
    for trial in initial:
        landscape.tell(study, trial)
    chosen = [study.ask() for _ in range(3)]  # the acquisition, with the first ones pending
    keys = [run_key(t) for t in initial + chosen]
    assert len(set(keys)) == len(keys), keys


def test_pending_reservations_reduce_what_the_next_ask_may_spend(cheap_space, landscape):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    before = study.remaining
    first = study.ask()
    assert study.pending_cost == pytest.approx(first.predicted_cost_upper)
    assert study.remaining == pytest.approx(before - first.predicted_cost_upper)
    second = study.ask()
    assert second.predicted_cost_upper <= before - first.predicted_cost_upper
    assert study.remaining == pytest.approx(
        before - first.predicted_cost_upper - second.predicted_cost_upper
    )
    # telling a run replaces its reservation by what it really cost
    landscape.tell(study, first)
    assert study.remaining == pytest.approx(
        before - study.trials[0].cost - second.predicted_cost_upper
    )


def test_pending_reservations_alone_can_exhaust_the_budget_until_a_run_is_told(cheap_space):
    probe = Study(cheap_space, budget=1.0, price_per_hour=PRICE)
    upper = probe.predict_cost(50, cheap_space.find(50, 64).model).upper_dollars  # cheapest run
    study = Study(cheap_space, budget=2.5 * upper, price_per_hour=PRICE)
    first = study.ask(lr=1e-3, steps=50, model=64)
    study.ask(lr=2e-3, steps=50, model=64)
    with pytest.raises(BudgetExhausted, match=r"pending \$"):
        study.ask()
    with pytest.raises(BudgetExhausted):
        study.ask(lr=3e-3, steps=50, model=64)
    # the first run cost a fifth of what was reserved for it: the difference is free again
    seconds = 0.2 * upper / PRICE * 3600
    study.tell(first.id, val_loss=7.6, seconds=seconds)
    assert study.ask(lr=3e-3, steps=50, model=64).steps == 50


# --- diverged runs -----------------------------------------------------------------------------
def test_diverged_runs_never_put_nan_into_the_loss_model(cheap_space, landscape):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    for lr in (1e-3, 3e-3, 1e-2):
        landscape.tell(study, study.ask(lr=lr, steps=50, model=64))
    blown = study.ask(lr=8e-2, steps=50, model=64)
    study.tell(blown.id, val_loss=math.nan, diverged=True, seconds=15.0)
    blown = study.ask(lr=5e-2, steps=100, model=128)
    study.tell(blown.id, diverged=True, seconds=15.0)

    rec = study.recommend()
    assert rec.n_observations == 5
    assert all_finite(rec.lr, rec.lr_low, rec.lr_high, rec.val_loss, rec.val_loss_std)
    for fidelity in (None, cheap_space.find(50, 64)):
        view = study.posterior_slice(fidelity)
        assert all_finite(view["mean"], view["sd"], view["p_diverge"])
    # the next proposal is computed from the same model
    assert math.isfinite(study.ask().lr)


def test_recommendation_stays_strictly_below_every_lr_that_diverged(cheap_space, landscape):
    study = Study(cheap_space, budget=5.0, price_per_hour=PRICE, seed=0)
    for steps, width in ((50, 64), (100, 128), (200, 256)):
        best = landscape.best_lr(steps, width)
        for factor in (0.3, 1.0, 3.0):
            landscape.tell(study, study.ask(lr=best * factor, steps=steps, model=width))
    free = study.recommend().lr

    # An early-diverging landscape: runs blow up at LRs below what the loss model prefers.
    for lr, steps, width in ((0.8 * free, 100, 128), (0.9 * free, 50, 64)):
        trial = study.ask(lr=lr, steps=steps, model=width)
        study.tell(trial.id, diverged=True, seconds=20.0)
    rec = study.recommend()
    assert rec.lr_cap == pytest.approx(0.8 * free)
    assert rec.lr < 0.8 * free
    assert rec.lr_low <= rec.lr <= rec.lr_high
    # the best full-scale LR cannot lie above an LR that diverged at a smaller fidelity
    assert rec.lr_high <= rec.lr_cap


def test_recommendation_from_runs_around_each_rungs_optimum_brackets_the_true_lr(
    cheap_space, landscape
):
    study = Study(cheap_space, budget=5.0, price_per_hour=PRICE, seed=0)
    for steps, width in ((50, 64), (100, 128), (200, 256)):
        best = landscape.best_lr(steps, width)
        for factor in (0.3, 1.0, 3.0):
            landscape.tell(study, study.ask(lr=best * factor, steps=steps, model=width))
    rec = study.recommend()
    assert rec.lr_low < landscape.target_lr < rec.lr_high
    assert landscape.target_lr / 2 < rec.lr < landscape.target_lr * 2


def test_all_diverged_study_still_recommends_below_the_lowest_diverged_lr(cheap_space):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    for lr, steps, width in ((3e-2, 50, 64), (5e-2, 50, 64), (4e-2, 100, 128)):
        trial = study.ask(lr=lr, steps=steps, model=width)
        study.tell(trial.id, diverged=True, seconds=20.0)
    rec = study.recommend()
    assert rec.n_observations == 3
    assert rec.lr < 3e-2
    assert rec.lr_cap == 3e-2
    assert all_finite(rec.lr, rec.lr_low, rec.lr_high, rec.divergence_probability)


def test_no_run_is_asked_at_or_above_an_lr_that_diverged_at_its_fidelity(cheap_space, landscape):
    # A world that diverges ~10x below where the prior puts the optimum: the initial design's
    # runs diverge, and the study must look lower rather than spend its budget on certain
    # divergences above them (it used to climb, one diverging run after another).
    world = dataclasses.replace(landscape, target_lr=1.5e-4, divergence_ratio=2.0)
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    lowest_diverged: dict[tuple[int, int], float] = {}
    for _ in range(25):
        try:
            trial = study.ask()
        except BudgetExhausted:
            break
        key = (trial.steps, trial.width)
        assert trial.lr < lowest_diverged.get(key, math.inf), (trial, lowest_diverged)
        world.tell(study, trial)
        if study.trials[trial.id].diverged:
            lowest_diverged[key] = min(lowest_diverged.get(key, math.inf), trial.lr)
    assert lowest_diverged, "the world should have made some runs diverge"
    completed = [t for t in study.trials if t.val_loss is not None]
    assert completed, "the study never found an LR that trains"
    assert study.recommend().lr < min(lowest_diverged.values())


def test_one_observation_gives_a_wide_interval_around_the_prior_centre(cheap_space, landscape):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    landscape.tell(study, study.ask(lr=landscape.best_lr(50, 64), steps=50, model=64))
    rec = study.recommend()
    assert rec.n_observations == 1
    assert all_finite(rec.lr, rec.lr_low, rec.lr_high, rec.val_loss)
    assert rec.lr_high / rec.lr_low > 10.0  # one cheap run cannot pin the full-scale LR
    assert rec.val_loss_std > 0.1
    assert rec.lr_low < 10.0**study.prior.target_log10_lr < rec.lr_high


def test_one_observation_recommendation_stays_in_the_prior_band(cheap_space, landscape):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    landscape.tell(study, study.ask(lr=landscape.best_lr(50, 64), steps=50, model=64))
    rec = study.recommend()
    centre = 10.0**study.prior.target_log10_lr
    band = 10.0 ** (1.645 * study.prior.target_sd)  # the prior's 90% band: centre x/ band
    assert centre / band <= rec.lr <= centre * band


# --- failed and interrupted runs ---------------------------------------------------------------
def test_failed_and_interrupted_runs_count_their_cost_but_not_as_observations(cheap_space):
    study = Study(cheap_space, budget=2.0, price_per_hour=PRICE, seed=0)
    fidelity = cheap_space.find(100, 128)
    predicted = study.predict_cost(fidelity.steps, fidelity.model)
    crashed = study.ask(lr=1e-3, steps=100, model=128)
    study.tell(crashed.id, failed=True, seconds=900.0, error="CUDA error")
    stopped = study.ask(lr=2e-3, steps=100, model=128)
    study.tell(stopped.id, interrupted=True, seconds=300.0)

    assert study.spent == pytest.approx(1200.0 / 3600 * PRICE)
    with pytest.raises(ValueError, match="no finished runs yet"):
        study.recommend()
    # their seconds (10x the prediction) say nothing about what a finished run costs
    assert study.predict_cost(fidelity.steps, fidelity.model) == predicted

    done = study.ask(lr=1e-3, steps=50, model=64)
    study.tell(done.id, val_loss=7.6, seconds=64.0)
    assert study.recommend().n_observations == 1
