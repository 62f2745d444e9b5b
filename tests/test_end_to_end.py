"""The whole ask/tell loop on a simulated LLM-like landscape whose best LR moves with steps and
width (costbo.sim's calibrated family): what a user of the Study relies on, end to end."""

import math

import pytest

from costbo import BudgetExhausted, SearchSpace, Study
from costbo.sim import sample_landscape

STEPS = [50, 100, 200, 500, 1000, 2000, 4725]
WIDTHS = [64, 128, 192, 256, 384, 512, 768]


def run_loop(landscape, budget: float, seed: int = 0) -> Study:
    space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    study = Study(space, budget=budget, price_per_hour=1.5, seed=seed)
    while True:
        try:
            trial = study.ask()
        except BudgetExhausted:
            return study
        loss = landscape.val_loss(trial.lr, trial.steps, trial.model)
        seconds = landscape.run_seconds(trial.steps, trial.model)
        if math.isfinite(loss):
            study.tell(trial.id, val_loss=loss, seconds=seconds)
        else:  # the runner kills a diverged run early: a fraction of its time is spent
            study.tell(trial.id, diverged=True, seconds=0.3 * seconds)


@pytest.fixture(scope="module")
def landscape():
    return sample_landscape("calibrated", seed=0)


@pytest.fixture(scope="module")
def full_run_cost(landscape):
    target = landscape.target
    return landscape.run_seconds(target.steps, target.model) / 3600 * 1.5


def test_about_one_more_full_run_finds_the_full_scale_optimum(landscape, full_run_cost):
    study = run_loop(landscape, budget=1.2 * full_run_cost)
    rec = study.recommend()
    assert study.spent <= study.budget
    assert landscape.regret(rec.lr) <= 0.005
    # reusing the best LR of the cheapest rung (what a naive sweep does) is far worse
    cheapest = landscape.best_lr(STEPS[0], study.space.fidelities[0].model)
    assert landscape.regret(cheapest) > 5 * max(landscape.regret(rec.lr), 0.002)
    assert not landscape.diverges(rec.lr, landscape.target.steps, landscape.target.model)
    assert rec.lr_low <= rec.lr <= rec.lr_high


def test_a_quarter_run_is_no_worse_than_the_llmc_default(landscape, full_run_cost):
    study = run_loop(landscape, budget=0.25 * full_run_cost)
    rec = study.recommend()
    assert study.spent <= study.budget
    assert landscape.regret(rec.lr) <= landscape.regret(6e-4)
    assert not landscape.diverges(rec.lr, landscape.target.steps, landscape.target.model)
