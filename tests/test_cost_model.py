"""CostModel: seconds grow with steps and shape, measured step times and observed runs correct the
FLOPs prior, the budget guard's upper quantile lies above the mean, dollars = seconds x price."""

from __future__ import annotations

import math

import pytest

from costbo import ModelShape
from costbo.cost_model import CostModel

PRICE = 1.5
LADDER = [ModelShape.from_width(w) for w in (64, 128, 256, 512, 768)]


def prior_median_seconds(model: CostModel, steps: int, shape: ModelShape) -> float:
    """What a fresh model believes before any run: overhead + steps x FLOPs-prior step time."""
    return model.overhead_seconds + steps * model.prior_step_seconds(shape)


def test_more_steps_cost_more():
    model = CostModel(PRICE)
    for shape in LADDER:
        seconds = [model.predict(steps, shape).seconds for steps in (10, 50, 500, 4725)]
        assert seconds == sorted(seconds)
        assert len(set(seconds)) == len(seconds)


def test_bigger_shapes_cost_more():
    model = CostModel(PRICE)
    seconds = [model.predict(500, shape).seconds for shape in LADDER]
    assert seconds == sorted(seconds)
    assert len(set(seconds)) == len(seconds)
    deeper = model.predict(500, ModelShape(4, 128, 2)).seconds
    assert deeper > model.predict(500, ModelShape(2, 128, 2)).seconds


def test_full_scale_prior_is_an_a10g_like_run():
    # calibration.md: the 124M run costs $15-20 at $1.50/h (~7.5-10 s per step)
    prediction = CostModel(PRICE).predict(4725, ModelShape(12, 768, 12))
    assert 15.0 <= prediction.dollars <= 25.0


def test_seeded_step_time_makes_that_shapes_prediction_match_it():
    model = CostModel(PRICE)
    shape = ModelShape(2, 128, 2)
    model.seed(shape, step_seconds=0.37, overhead_seconds=25.0)
    assert model.step_seconds(shape) == pytest.approx(0.37)
    for steps in (100, 1000):
        assert model.predict(steps, shape).seconds == pytest.approx(25.0 + 0.37 * steps, rel=0.02)


def test_seeded_step_time_without_overhead_keeps_the_prior_overhead():
    model = CostModel(PRICE)
    shape = ModelShape(1, 64, 1)
    model.seed(shape, step_seconds=0.5)
    median = model.overhead_seconds + 1000 * 0.5
    assert model.predict(1000, shape).seconds == pytest.approx(median, rel=0.02)


def test_seeded_shape_is_predicted_more_tightly_than_an_unmeasured_one():
    model = CostModel(PRICE)
    model.seed(ModelShape(1, 64, 1), step_seconds=0.5)
    measured = model.predict(1000, ModelShape(1, 64, 1))
    guessed = model.predict(1000, ModelShape(2, 128, 2))
    assert measured.log_sd < guessed.log_sd
    assert measured.upper_dollars / measured.dollars < guessed.upper_dollars / guessed.dollars


def test_runs_that_took_twice_the_prior_double_later_predictions():
    model = CostModel(PRICE)
    fresh = CostModel(PRICE)
    for steps, width in ((100, 64), (500, 64), (200, 128), (1000, 128), (300, 256)):
        shape = ModelShape.from_width(width)
        model.observe(steps, shape, 2.0 * prior_median_seconds(fresh, steps, shape))
    for steps, width in ((700, 64), (400, 128), (800, 256), (150, 512)):  # never observed
        shape = ModelShape.from_width(width)
        ratio = model.predict(steps, shape).seconds / prior_median_seconds(fresh, steps, shape)
        assert ratio == pytest.approx(2.0, rel=0.15), (steps, width)


def test_observations_narrow_the_upper_quantile():
    model = CostModel(PRICE)
    shape = ModelShape(2, 128, 2)
    before = model.predict(500, shape)
    for steps in (100, 300, 1000):
        model.observe(steps, shape, prior_median_seconds(model, steps, shape))
    after = model.predict(500, shape)
    assert after.upper_dollars / after.dollars < before.upper_dollars / before.dollars
    assert after.log_sd < before.log_sd


@pytest.mark.parametrize("quantile", [0.6, 0.9, 0.99])
def test_upper_quantile_lies_above_the_mean(quantile):
    model = CostModel(PRICE)
    model.observe(200, ModelShape(1, 64, 1), 150.0)
    for shape in LADDER:
        prediction = model.predict(300, shape, quantile)
        assert prediction.upper_dollars > prediction.dollars
        assert prediction.quantile == quantile


def test_higher_quantiles_reserve_more():
    model = CostModel(PRICE)
    uppers = [model.predict(300, ModelShape(2, 128, 2), q).upper_dollars for q in (0.6, 0.9, 0.99)]
    assert uppers == sorted(uppers)
    assert uppers[0] < uppers[-1]


@pytest.mark.parametrize("price", [0.5, 1.5, 4.1])
def test_predicted_dollars_are_seconds_over_3600_times_price(price):
    model = CostModel(price)
    prediction = model.predict(777, ModelShape(4, 256, 4))
    assert prediction.dollars == pytest.approx(prediction.seconds / 3600 * price)
    assert model.dollars(3600.0) == pytest.approx(price)


def test_zero_second_runs_teach_nothing():
    model = CostModel(PRICE)
    before = model.predict(500, ModelShape(1, 64, 1))
    model.observe(500, ModelShape(1, 64, 1), 0.0)
    assert model.predict(500, ModelShape(1, 64, 1)) == before


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"price_per_hour": 0.0}, "price_per_hour 0.0"),
     ({"price_per_hour": math.nan}, "price_per_hour nan"),
     ({"price_per_hour": 1.5, "flops_per_second": -1.0}, "flops_per_second -1.0")],
)  # fmt: skip
def test_invalid_cost_model_settings_are_rejected_by_value(kwargs, named):
    price = kwargs.pop("price_per_hour")
    with pytest.raises(ValueError, match=named):
        CostModel(price, **kwargs)


@pytest.mark.parametrize("step_seconds", [0.0, -0.3, math.nan])
def test_seeding_a_non_positive_step_time_is_rejected_by_value(step_seconds):
    with pytest.raises(ValueError, match=f"step_seconds {step_seconds!r}"):
        CostModel(PRICE).seed(ModelShape(1, 64, 1), step_seconds)


def test_configuration_survives_a_dict_round_trip():
    model = CostModel(2.0, flops_per_second=3e13, step_fixed_seconds=0.1, overhead_seconds=30.0)
    again = CostModel.from_dict(model.to_dict())
    for shape in LADDER:
        assert again.predict(321, shape) == model.predict(321, shape)


@pytest.mark.parametrize("name", ["step_fixed_seconds", "overhead_seconds"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_fixed_seconds_are_rejected_by_name(name, value):
    # NaN passed `value < 0`: every predicted cost became NaN and the budget guard refused all
    with pytest.raises(ValueError, match=f"{name} {value} must be a number of seconds >= 0"):
        CostModel(PRICE, **{name: value})
