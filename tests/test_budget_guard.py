"""The budget guard: a run is proposed only if its upper-quantile predicted cost fits what is left
after spend, pending reservations and the reserve; spend is exactly the told seconds x price; the
cost model learns from overruns; and ask() says BudgetExhausted once nothing fits.

Actual costs can overshoot a prediction, so the guard cannot promise spend <= budget. What it can
promise: spend exceeds budget - reserve by at most the overshoot (actual - reserved) of the last
batch of runs asked together.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from costbo import BudgetExhausted, SearchSpace, Study, TrialStatus

PRICE = 1.5  # dollars per hour
MAX_ASKS = 6  # per example: model-based asks cost ~0.1-0.5 s each
# At $3/h: cheapest run ~$0.24 (upper quantile ~$0.94 before any run is seen, ~$0.3 once its
# step time is measured); the target ~$38.
GUARD_PRICE = 3.0
GUARD_SPACE = SearchSpace(lr=(1e-5, 1e-1), steps=[500, 1000, 4725], widths=[64, 128, 768])


def nothing_fits(study: Study, remaining: float) -> bool:
    return all(
        study.predict_cost(f.steps, f.model).upper_dollars > remaining
        for f in study.space.fidelities
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    budget=st.floats(0.5, 5.0),
    reserve_share=st.sampled_from([0.0, 0.0, 0.2]),
    multipliers=st.lists(st.floats(0.5, 3.0), min_size=MAX_ASKS, max_size=MAX_ASKS),
    failures=st.lists(st.booleans(), min_size=MAX_ASKS, max_size=MAX_ASKS),
    in_flight=st.integers(1, 2),
    measured=st.booleans(),
    acquisition=st.sampled_from(["ei_per_dollar", "kg_per_dollar"]),
)
def test_ask_never_proposes_a_run_whose_upper_cost_exceeds_what_is_left(
    landscape, budget, reserve_share, multipliers, failures, in_flight, measured, acquisition
):
    reserve = reserve_share * budget
    study = Study(
        GUARD_SPACE,
        budget=budget,
        price_per_hour=GUARD_PRICE,
        reserve=reserve,
        seed=0,
        acquisition=acquisition,
    )
    if measured:  # as `costbo probe` would: the small shapes' true step times
        for width in (64, 128):
            model = GUARD_SPACE.find(500, width).model
            step = landscape.seconds(1, model) - landscape.seconds(0, model)
            study.seed_cost(model, step_seconds=step, overhead_seconds=landscape.seconds(0, model))
    told_seconds = 0.0
    asked = 0
    exhausted = False
    while asked < MAX_ASKS and not exhausted:
        batch, overshoot = [], 0.0
        for _ in range(in_flight):
            if asked == MAX_ASKS:
                break
            left = budget - study.spent - study.pending_cost - reserve
            assert study.remaining == pytest.approx(left, abs=1e-12)
            expect_exhausted = nothing_fits(study, left)
            try:
                trial = study.ask()
            except BudgetExhausted:
                assert expect_exhausted, "ask gave up although a run fits"
                exhausted = True
                break
            assert not expect_exhausted, "ask proposed a run although none fits"
            assert trial.predicted_cost_upper <= left + 1e-12
            assert trial.predicted_cost <= trial.predicted_cost_upper
            batch.append(trial)
            asked += 1
        if not batch:
            break
        exhausted = False  # told runs may have cost less than reserved: try again
        for trial in batch:
            k = trial.id
            seconds = landscape.seconds(trial.steps, trial.model) * multipliers[k]
            if failures[k]:
                study.tell(trial.id, failed=True, seconds=0.5 * seconds)
                told_seconds += 0.5 * seconds
            else:
                landscape.tell(study, trial, cost_multiplier=multipliers[k])
                killed = landscape.diverges(trial.lr, trial.steps, trial.width)
                told_seconds += 0.2 * seconds if killed else seconds
            overshoot += max(0.0, study.trials[k].cost - trial.predicted_cost_upper)
            assert study.spent == pytest.approx(told_seconds / 3600 * GUARD_PRICE, rel=1e-12)
        assert study.pending_cost == 0.0
        assert study.spent <= budget - reserve + overshoot + 1e-9
    event(f"{asked} runs, " + ("budget exhausted" if exhausted else "stopped at MAX_ASKS"))
    if not exhausted:  # cut the budget to just below the cheapest run's reservation
        cheapest = min(
            study.predict_cost(f.steps, f.model).upper_dollars for f in GUARD_SPACE.fidelities
        )
        study.set_budget(study.spent + reserve + 0.9 * cheapest)
    # nothing fits any more, and ask() says so (again and again)
    assert nothing_fits(study, study.remaining)
    for _ in range(2):
        with pytest.raises(BudgetExhausted, match="no run fits the remaining"):
            study.ask()


def test_ask_raises_budget_exhausted_when_even_the_cheapest_run_does_not_fit(cheap_space):
    study = Study(cheap_space, budget=0.01, price_per_hour=PRICE)
    with pytest.raises(BudgetExhausted, match=r"no run fits the remaining \$0\.01") as err:
        study.ask()
    assert "the cheapest run may cost up to $" in str(err.value)
    assert study.trials == []


def test_fixed_ask_that_does_not_fit_raises_budget_exhausted(cheap_space):
    study = Study(cheap_space, budget=1.0, price_per_hour=PRICE)
    with pytest.raises(BudgetExhausted, match=r"may cost up to \$.* but only \$1\.00 remains"):
        study.ask(lr=1e-3, steps=4725, model=768)


def test_reserve_is_never_offered_to_a_run(cheap_space):
    probe = Study(cheap_space, budget=5.0, price_per_hour=PRICE)
    upper = probe.predict_cost(200, cheap_space.find(200, 256).model).upper_dollars
    # Enough for that run out of the budget, but not once the reserve is held back.
    study = Study(cheap_space, budget=upper * 1.5, price_per_hour=PRICE, reserve=upper * 0.75)
    assert study.remaining == pytest.approx(upper * 0.75)
    with pytest.raises(BudgetExhausted):
        study.ask(lr=1e-3, steps=200, model=256)
    plain = Study(cheap_space, budget=upper * 1.5, price_per_hour=PRICE)
    assert plain.ask(lr=1e-3, steps=200, model=256).predicted_cost_upper == pytest.approx(upper)


def test_spend_counts_every_told_run_at_seconds_times_price(cheap_space):
    study = Study(cheap_space, budget=5.0, price_per_hour=2.4)
    outcomes = [
        {"val_loss": 7.6, "seconds": 100.0},
        {"diverged": True, "seconds": 40.0},
        {"failed": True, "seconds": 25.0},
        {"interrupted": True, "seconds": 10.0},
    ]
    for outcome in outcomes:
        trial = study.ask(lr=1e-3, steps=50, model=64)
        study.tell(trial.id, **outcome)
    assert study.spent == pytest.approx(175.0 / 3600 * 2.4)
    assert [t.cost for t in study.trials] == pytest.approx(
        [s / 3600 * 2.4 for s in (100, 40, 25, 10)]
    )


def test_runs_that_overshoot_three_fold_raise_later_predicted_costs(cheap_space, landscape):
    runs = [(50, 64), (100, 128), (200, 64), (50, 256), (100, 64)]

    def told_at(multiplier: float) -> Study:
        study = Study(cheap_space, budget=50.0, price_per_hour=PRICE)
        for steps, width in runs:
            trial = study.ask(lr=1e-3, steps=steps, model=width)
            landscape.tell(study, trial, cost_multiplier=multiplier)
            assert study.trials[-1].status is TrialStatus.COMPLETE
        return study

    honest, overshot = told_at(1.0), told_at(3.0)
    for f in cheap_space.fidelities:
        if f.width == 768:
            continue  # no run of the target's shape was seen: its FLOPs slope is extrapolated
        fair = honest.predict_cost(f.steps, f.model)
        high = overshot.predict_cost(f.steps, f.model)
        assert high.dollars / fair.dollars == pytest.approx(3.0, rel=0.25), str(f)
        assert high.upper_dollars > 2.0 * fair.upper_dollars, str(f)
    # and within the overshooting study, the same run is predicted dearer as it learns, close to
    # what it really costs now
    first, last = overshot.trials[0], overshot.ask(lr=1e-3, steps=50, model=64)
    assert last.predicted_cost > 1.5 * first.predicted_cost
    assert last.predicted_seconds == pytest.approx(3.0 * landscape.seconds(50, last.model), rel=0.2)


def test_a_rung_whose_whole_lr_grid_was_run_does_not_end_the_study(landscape, cheap_space):
    # The cheapest rung can stay the most informative per dollar after every LR of the grid
    # has been run there (a repeat teaches nothing: llm.c is deterministic). The study must
    # then buy elsewhere, not report the budget exhausted with most of it unspent.
    study = Study(cheap_space, budget=1.0, price_per_hour=PRICE, seed=0, lr_grid_size=5)
    for _ in range(200):
        try:
            trial = study.ask()
        except BudgetExhausted:
            break
        landscape.tell(study, trial)
    remaining = study.budget - study.spent
    # grid points run, as the study counts them: each run at its nearest grid LR
    run = {
        (t.steps, t.width, int(np.abs(study.lr_grid - math.log10(t.lr)).argmin()))
        for t in study.trials
    }
    left = [
        f
        for f in study.space.fidelities
        if study.predict_cost(f.steps, f.model).upper_dollars <= remaining
        and sum((f.steps, f.width, i) in run for i in range(len(study.lr_grid))) < 5
    ]
    assert not left, f"stopped with ${remaining:.2f} left and LRs to run at {left}"
    assert len({(t.steps, t.width) for t in study.trials}) > 1
