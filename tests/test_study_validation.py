"""Study arguments and tell() outcomes: every invalid value is refused before anything is
recorded, with a message that names the value and the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from costbo import Fidelity, SearchSpace, Study, TrialStatus
from costbo.priors import LearningRatePrior


@pytest.fixture
def study(cheap_space) -> Study:
    return Study(cheap_space, budget=2.0, price_per_hour=1.5, seed=0)


@pytest.fixture
def asked(study):
    """A study with one asked, untold trial (fixed, so no model is fitted)."""
    trial = study.ask(lr=1e-3, steps=50, model=64)
    return study, trial


# --- constructor -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "phrase"),
    [(0.0, "budget 0.0 must be positive"), (-5.0, "budget -5.0 must be positive"),
     (math.nan, "budget nan is not a number"), (math.inf, "budget inf is not a number"),
     ("20", "budget '20' is not a number")],
)  # fmt: skip
def test_budget_that_is_not_a_positive_number_is_rejected_by_value(cheap_space, budget, phrase):
    with pytest.raises(ValueError, match=phrase):
        Study(cheap_space, budget=budget)


@pytest.mark.parametrize(
    ("price", "phrase"),
    [(0.0, "price_per_hour 0.0 must be positive"), (-1.5, "price_per_hour -1.5 must be positive"),
     (math.nan, "price_per_hour nan is not a number")],
)  # fmt: skip
def test_price_that_is_not_a_positive_number_is_rejected_by_value(cheap_space, price, phrase):
    with pytest.raises(ValueError, match=phrase):
        Study(cheap_space, budget=2.0, price_per_hour=price)


def test_unknown_acquisition_is_rejected_listing_the_known_ones(cheap_space):
    with pytest.raises(ValueError, match="acquisition 'ei' is unknown") as err:
        Study(cheap_space, budget=2.0, acquisition="ei")
    assert "ei_per_dollar" in str(err.value)
    assert "kg_per_dollar" in str(err.value)


@pytest.mark.parametrize(
    ("reserve", "phrase"), [(-0.5, "reserve -0.5 must be"), (2.0, "reserve 2.0 leaves nothing")]
)
def test_reserve_outside_the_budget_is_rejected_by_value(cheap_space, reserve, phrase):
    with pytest.raises(ValueError, match=phrase):
        Study(cheap_space, budget=2.0, reserve=reserve)


def test_nan_reserve_is_rejected(cheap_space):
    with pytest.raises(ValueError, match="reserve nan"):
        Study(cheap_space, budget=2.0, reserve=math.nan)


def test_space_that_is_not_a_search_space_is_rejected():
    with pytest.raises(TypeError, match="SearchSpace"):
        Study({"lr": (1e-5, 1e-1)}, budget=2.0)


def test_cost_quantile_below_the_median_is_rejected(cheap_space):
    with pytest.raises(ValueError, match="cost_quantile 0.3"):
        Study(cheap_space, budget=2.0, cost_quantile=0.3)


def test_numpy_scalars_are_numbers_wherever_a_study_takes_one(cheap_space):
    # values computed with numpy (np.float32 is no float, np.int64 no int) are numbers to a user
    study = Study(
        cheap_space,
        budget=np.float32(2.0),
        price_per_hour=np.float32(1.5),
        seed=np.int64(3),
        n_initial=np.int64(3),
        lr_grid_size=np.int64(49),
    )
    assert (study.budget, study.price_per_hour, study.seed) == (2.0, 1.5, 3)
    trial = study.ask(lr=np.float32(1e-3), steps=np.int64(50), model=np.int64(64))
    assert (trial.steps, trial.width) == (50, 64)
    study.tell(trial.id, val_loss=np.float32(7.5), seconds=np.int64(60))
    assert study.spent == pytest.approx(60.0 / 3600 * 1.5)


def test_negative_seed_is_rejected_when_the_study_is_made_not_at_the_first_ask(cheap_space):
    with pytest.raises(ValueError, match="seed -1 must be an integer >= 0"):
        Study(cheap_space, budget=2.0, seed=-1)


@pytest.mark.parametrize(("name", "value"), [("tokens_per_step", 0), ("seq_len", -1024)])
def test_llmc_batch_and_sequence_length_must_be_positive_integers(cheap_space, name, value):
    with pytest.raises(ValueError, match=f"{name} {value} must be an integer >= 1"):
        Study(cheap_space, budget=2.0, **{name: value})


@pytest.mark.parametrize("field", ["target_sd", "width_slope", "divergence_ratio"])
def test_prior_with_a_non_finite_value_is_rejected_by_name(field):
    with pytest.raises(ValueError, match=f"prior {field} (inf|nan) must be a finite number"):
        LearningRatePrior(target_log10_lr=-3.0, **{field: math.inf if "sd" in field else math.nan})


def test_prior_or_cost_model_of_the_wrong_type_is_rejected_by_type(cheap_space):
    with pytest.raises(TypeError, match="prior must be a LearningRatePrior"):
        Study(cheap_space, budget=2.0, prior=1.5e-3)
    with pytest.raises(TypeError, match="cost_model must be a CostModel, not str"):
        Study(cheap_space, budget=2.0, cost_model="a10g")


# --- tell --------------------------------------------------------------------------------------
def test_tell_on_an_unknown_trial_id_names_the_id(study):
    with pytest.raises(ValueError, match="trial 7 does not exist; asked trials are none yet"):
        study.tell(7, val_loss=3.5, seconds=60.0)
    study.ask(lr=1e-3, steps=50, model=64)
    with pytest.raises(ValueError, match=r"trial 1 does not exist; asked trials are 0\.\.0"):
        study.tell(1, val_loss=3.5, seconds=60.0)
    with pytest.raises(ValueError, match="trial -1 does not exist"):
        study.tell(-1, val_loss=3.5, seconds=60.0)


def test_telling_a_trial_twice_is_rejected_and_keeps_the_first_outcome(asked):
    study, trial = asked
    study.tell(trial.id, val_loss=7.5, seconds=60.0)
    with pytest.raises(ValueError, match="trial 0 was already told") as err:
        study.tell(trial.id, val_loss=7.0, seconds=60.0)
    assert "7.5" in str(err.value)
    assert study.trials[0].val_loss == 7.5
    assert study.spent == pytest.approx(60.0 / 3600 * 1.5)


@pytest.mark.parametrize(
    ("val_loss", "phrase"),
    [(math.nan, "val_loss nan for trial 0 is not finite"),
     (math.inf, "val_loss inf for trial 0 is not finite"),
     (-math.inf, "val_loss -inf for trial 0 is not finite"),
     (-0.5, "val_loss -0.5 for trial 0 is negative")],
)  # fmt: skip
def test_non_finite_or_negative_val_loss_without_diverged_is_rejected(asked, val_loss, phrase):
    study, trial = asked
    with pytest.raises(ValueError, match=phrase):
        study.tell(trial.id, val_loss=val_loss, seconds=60.0)
    # nothing was recorded: the trial is still pending and can be told properly
    assert study.trials[0].status is TrialStatus.PENDING
    assert study.spent == 0.0
    study.tell(trial.id, diverged=True, seconds=60.0)
    assert study.trials[0].status is TrialStatus.DIVERGED


def test_non_finite_val_loss_message_points_at_diverged(asked):
    study, trial = asked
    with pytest.raises(ValueError, match=r"tell\(0, diverged=True, seconds=\.\.\.\)"):
        study.tell(trial.id, val_loss=math.nan, seconds=60.0)


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [(-1.0, "seconds -1.0 for trial 0 must be finite and >= 0"),
     (math.nan, "seconds nan for trial 0 must be finite"),
     (math.inf, "seconds inf for trial 0 must be finite"),
     ("60", "seconds '60' for trial 0 must be a number")],
)  # fmt: skip
def test_negative_or_non_finite_seconds_are_rejected_by_value(asked, seconds, phrase):
    study, trial = asked
    with pytest.raises(ValueError, match=phrase):
        study.tell(trial.id, val_loss=7.5, seconds=seconds)
    assert study.trials[0].status is TrialStatus.PENDING


@pytest.mark.parametrize("outcome", [{"val_loss": 7.5}, {"diverged": True}, {"failed": True}])
def test_tell_without_seconds_is_rejected_because_money_is_always_accounted(asked, outcome):
    study, trial = asked
    with pytest.raises(ValueError, match=r"tell\(0\) needs seconds="):
        study.tell(trial.id, **outcome)


def test_tell_without_any_outcome_is_rejected(asked):
    study, trial = asked
    with pytest.raises(ValueError, match="needs val_loss="):
        study.tell(trial.id, seconds=60.0)


def test_tell_with_several_outcome_flags_is_rejected(asked):
    study, trial = asked
    with pytest.raises(ValueError, match="choose one of diverged, failed, interrupted"):
        study.tell(trial.id, diverged=True, failed=True, seconds=60.0)


def test_zero_seconds_is_a_valid_cost(asked):
    study, trial = asked
    study.tell(trial.id, failed=True, seconds=0.0, error="usage error before launch")
    assert study.spent == 0.0
    assert study.trials[0].status is TrialStatus.FAILED
    assert study.trials[0].error == "usage error before launch"


# --- fixed asks ----------------------------------------------------------------------------------
def test_fixed_ask_outside_the_lr_bounds_is_rejected_by_value(study):
    with pytest.raises(ValueError, match="lr 0.5 is outside"):
        study.ask(lr=0.5, steps=50, model=64)


def test_fixed_ask_outside_the_space_is_rejected(study):
    with pytest.raises(ValueError, match="not in the search space"):
        study.ask(lr=1e-3, steps=75, model=64)


def test_fixed_ask_needs_lr_steps_and_model(study):
    with pytest.raises(ValueError, match="needs all of lr, steps and model"):
        study.ask(lr=1e-3, steps=50)


def test_seed_cost_takes_a_width_as_ask_does(study):
    study.seed_cost(64, step_seconds=0.45)
    assert study.cost_model.step_seconds(study.space.find(50, 64).model) == pytest.approx(
        0.45, rel=0.3
    )


def test_best_lr_at_a_fidelity_outside_the_space_names_it(study, cheap_space):
    outside = Fidelity(75, cheap_space.target.model)
    with pytest.raises(ValueError, match="75 steps x d12c768h12\\) is not in this study's"):
        study.best_lr(outside)


# --- recommend ---------------------------------------------------------------------------------
def test_recommended_interval_stays_within_the_lr_bounds(landscape):
    # a narrow range around the optimum: +-1.645 sd of the optimum reaches far past both ends
    space = SearchSpace(lr=(1e-3, 2e-3), steps=[50, 100, 4725], widths=[64, 128, 768])
    study = Study(space, budget=2.0)
    for lr in (1e-3, 1.4e-3, 2e-3):
        landscape.tell(study, study.ask(lr=lr, steps=50, model=64))
    rec = study.recommend()
    assert 1e-3 <= rec.lr_low <= rec.lr <= rec.lr_high <= 2e-3


def test_recommend_before_any_tell_gives_a_clear_error(study):
    with pytest.raises(ValueError, match=r"no finished runs yet: tell\(\)"):
        study.recommend()
    study.ask(lr=1e-3, steps=50, model=64)  # asked but not told: still nothing to recommend from
    with pytest.raises(ValueError, match="no finished runs yet"):
        study.recommend()
