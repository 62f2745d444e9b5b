"""SearchSpace: every invalid LR range, rung list or model shape is refused with a message that
names the bad value; the grid and pairs forms build the fidelities and target they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from costbo import Fidelity, ModelShape, SearchSpace

STEPS = [50, 100, 4725]
WIDTHS = [64, 128, 768]


# --- LR bounds ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lr", "named"),
    [
        ((0.0, 1e-1), "(0, 0.1)"),
        ((-1e-5, 1e-1), "(-1e-05, 0.1)"),
        ((1e-5, -1e-1), "(1e-05, -0.1)"),
    ],
)
def test_lr_bounds_that_are_not_positive_are_rejected_by_value(lr, named):
    with pytest.raises(ValueError, match="positive") as err:
        SearchSpace(lr=lr, steps=STEPS, widths=WIDTHS)
    assert named in str(err.value)


def test_reversed_lr_bounds_are_rejected_by_value():
    with pytest.raises(ValueError, match="reversed") as err:
        SearchSpace(lr=(1e-1, 1e-5), steps=STEPS, widths=WIDTHS)
    assert "(0.1, 1e-05)" in str(err.value)


def test_equal_lr_bounds_are_rejected_as_empty():
    with pytest.raises(ValueError, match="empty") as err:
        SearchSpace(lr=(1e-3, 1e-3), steps=STEPS, widths=WIDTHS)
    assert "(0.001, 0.001)" in str(err.value)


@pytest.mark.parametrize(
    ("lr", "named"),
    [((1e-5, math.inf), "inf"), ((math.nan, 1e-1), "nan"), ((1e-5, -math.inf), "inf")],
)
def test_non_finite_lr_bounds_are_rejected_by_value(lr, named):
    with pytest.raises(ValueError, match="finite") as err:
        SearchSpace(lr=lr, steps=STEPS, widths=WIDTHS)
    assert named in str(err.value)


def test_lr_bounds_that_are_not_two_numbers_are_rejected():
    with pytest.raises(ValueError, match="two numbers") as err:
        SearchSpace(lr=("low", "high"), steps=STEPS, widths=WIDTHS)
    assert "'low'" in str(err.value)


# --- rungs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["steps", "widths"])
def test_empty_rungs_are_rejected(kind):
    rungs = {"steps": STEPS, "widths": WIDTHS, kind: []}
    with pytest.raises(ValueError, match="empty"):
        SearchSpace(lr=(1e-5, 1e-1), **rungs)


def test_unsorted_step_rungs_are_rejected_naming_the_pair():
    with pytest.raises(ValueError, match="not sorted") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=[100, 50, 4725], widths=WIDTHS)
    assert "100 before 50" in str(err.value)


def test_unsorted_width_rungs_are_rejected_naming_the_pair():
    with pytest.raises(ValueError, match="not sorted") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=[128, 64, 768])
    assert "128 before 64" in str(err.value)


@pytest.mark.parametrize("kind", ["steps", "widths"])
def test_duplicated_rungs_are_rejected_naming_the_rung(kind):
    rungs = {"steps": [50, 50, 4725], "widths": WIDTHS} if kind == "steps" else None
    rungs = rungs or {"steps": STEPS, "widths": [64, 128, 128, 768]}
    with pytest.raises(ValueError, match="appears twice") as err:
        SearchSpace(lr=(1e-5, 1e-1), **rungs)
    assert ("rung 50" if kind == "steps" else "rung 128") in str(err.value)


@pytest.mark.parametrize(("bad", "named"), [(0, "rung 0"), (-50, "rung -50")])
def test_step_rungs_that_are_not_positive_are_rejected_by_value(bad, named):
    with pytest.raises(ValueError, match="positive integer") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=[bad, 100, 4725], widths=WIDTHS)
    assert named in str(err.value)


@pytest.mark.parametrize(("bad", "named"), [(50.5, "50.5"), (100.0, "100.0"), ("100", "'100'")])
def test_step_rungs_that_are_not_integers_are_rejected_by_value(bad, named):
    with pytest.raises(ValueError, match="positive integer") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=[bad, 4725], widths=WIDTHS)
    assert named in str(err.value)


def test_width_rungs_that_are_not_positive_are_rejected_by_value():
    with pytest.raises(ValueError, match="positive integer") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=[0, 768])
    assert "rung 0" in str(err.value)


def test_missing_rungs_are_rejected():
    with pytest.raises(ValueError, match="steps rungs are missing"):
        SearchSpace(lr=(1e-5, 1e-1), widths=WIDTHS)
    with pytest.raises(ValueError, match="width rungs are missing"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS)


def test_numpy_integer_rungs_are_accepted():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=np.array([50, 4725]), widths=np.array([64, 768]))
    assert space.target == Fidelity(4725, ModelShape(12, 768, 12))


def test_numpy_integer_shapes_are_accepted_in_models_pairs_and_find():
    d, c, h = np.int64(1), np.int64(64), np.int64(1)
    grid = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, models=[(d, c, h), (12, 768, 12)])
    assert grid.find(np.int64(50), np.int64(64)) == Fidelity(50, ModelShape(1, 64, 1))
    assert grid.find(50, (d, c, h)) == Fidelity(50, ModelShape(1, 64, 1))
    pairs = SearchSpace(
        lr=(1e-5, 1e-1), pairs=[(np.int64(50), np.int64(64))], target=(4725, np.int64(768))
    )
    assert pairs.fidelities[0] == Fidelity(50, ModelShape(1, 64, 1))


# --- model shapes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "phrase", "named"),
    [
        ((1, 100, 3), "not divisible by heads", "channels 100"),
        ((1, 272, 1), "exceeds 128", "272"),
        ((1, 60, 1), "not a multiple of 8", "60"),
        ((1, 96, 8), "not a multiple of 8", "96/8 = 12"),
    ],
)
def test_models_that_break_llmc_shape_rules_are_rejected_by_value(model, phrase, named):
    with pytest.raises(ValueError, match=phrase) as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, models=[model, (12, 768, 12)])
    message = str(err.value)
    assert "models[0]" in message
    assert named in message


def test_head_size_check_explains_the_fix():
    with pytest.raises(ValueError, match="use at least 3 heads"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, models=[(1, 272, 1), (12, 768, 12)])


@pytest.mark.parametrize(("model", "named"), [((0, 64, 1), "depth 0"), ((1, 64, 0), "heads 0")])
def test_models_with_non_positive_depth_or_heads_are_rejected(model, named):
    with pytest.raises(ValueError, match="positive integer") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, models=[model, (12, 768, 12)])
    assert named in str(err.value)


def test_width_below_64_on_the_grid_form_is_rejected_with_the_explicit_shape_fix():
    with pytest.raises(ValueError, match="width 32") as err:
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=[32, 768])
    assert "models=[(1, 32, 1)]" in str(err.value)


def test_grid_width_whose_default_head_size_breaks_the_rules_is_rejected():
    # width 100 -> depth = heads = 1, head size 100: not a multiple of 8.
    with pytest.raises(ValueError, match="channels 100"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=[100, 768])


def test_models_must_be_sorted_by_channels():
    with pytest.raises(ValueError, match="not sorted"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, models=[(2, 128, 2), (1, 64, 1)])


def test_widths_and_models_together_are_rejected():
    with pytest.raises(ValueError, match="not both"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS, models=[(12, 768, 12)])


# --- grid form ---------------------------------------------------------------------------------
def test_grid_form_takes_every_rung_pair_and_targets_the_last_rungs():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    assert len(space.fidelities) == len(STEPS) * len(WIDTHS)
    assert space.target == Fidelity(4725, ModelShape(12, 768, 12))
    assert space.form == "grid"
    assert Fidelity(50, ModelShape(1, 64, 1)) in space.fidelities


def test_default_width_ladder_uses_head_size_64():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=[100], widths=[64, 192, 768])
    assert [f.model.as_tuple() for f in space.fidelities] == [
        (1, 64, 1),
        (3, 192, 3),
        (12, 768, 12),
    ]


def test_target_sits_at_the_origin_of_the_fidelity_coordinates():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    assert space.fidelity_coordinates(space.target) == (0.0, 0.0)
    s, w = space.fidelity_coordinates(Fidelity(50, ModelShape(1, 64, 1)))
    assert s == pytest.approx(math.log(50 / 4725))
    assert w == pytest.approx(math.log(64 / 768))


# --- pairs form --------------------------------------------------------------------------------
def test_pairs_form_accepts_a_target_bigger_than_every_pair():
    space = SearchSpace(
        lr=(1e-5, 1e-1),
        pairs=[(50, (1, 64, 1)), (500, (4, 256, 4))],
        target=(4725, (12, 768, 12)),
    )
    assert space.form == "pairs"
    assert space.target == Fidelity(4725, ModelShape(12, 768, 12))
    assert len(space.fidelities) == 3  # the target is always a fidelity
    assert space.fidelities[0] == Fidelity(50, ModelShape(1, 64, 1))


@pytest.mark.parametrize(
    "pair", [(5000, (4, 256, 4)), (500, (16, 1024, 16))], ids=["more-steps", "wider"]
)
def test_pairs_form_rejects_a_pair_larger_than_the_target(pair):
    with pytest.raises(ValueError, match="larger than the target") as err:
        SearchSpace(lr=(1e-5, 1e-1), pairs=[(50, (1, 64, 1)), pair], target=(4725, (12, 768, 12)))
    assert str(pair[0]) in str(err.value)


def test_pairs_form_needs_a_target():
    with pytest.raises(ValueError, match="needs target="):
        SearchSpace(lr=(1e-5, 1e-1), pairs=[(50, (1, 64, 1))])


def test_pairs_form_rejects_a_duplicated_pair():
    with pytest.raises(ValueError, match="appears twice"):
        SearchSpace(
            lr=(1e-5, 1e-1), pairs=[(50, (1, 64, 1)), (50, 64)], target=(4725, (12, 768, 12))
        )


def test_pairs_form_rejects_two_shapes_with_the_same_steps_and_width():
    # the model sees (steps, width) only: a shallower full-length run would pass for the target
    with pytest.raises(ValueError, match="same steps and width") as err:
        SearchSpace(
            lr=(1e-5, 1e-1), pairs=[(50, 64), (4725, (6, 768, 12))], target=(4725, (12, 768, 12))
        )
    assert "d6c768h12" in str(err.value)


@pytest.mark.parametrize("target", [4725, (4725, 768, 12)], ids=["bare-steps", "three-items"])
def test_pairs_target_that_is_not_a_steps_model_pair_is_rejected_by_value(target):
    with pytest.raises(ValueError, match="must be \\(steps, model\\)") as err:
        SearchSpace(lr=(1e-5, 1e-1), pairs=[(50, 64)], target=target)
    assert repr(target) in str(err.value)


def test_pairs_form_rejects_a_bad_shape_naming_the_pair():
    with pytest.raises(ValueError, match=r"pairs\[1\]") as err:
        SearchSpace(
            lr=(1e-5, 1e-1), pairs=[(50, (1, 64, 1)), (50, (1, 100, 3))], target=(4725, 768)
        )
    assert "channels 100" in str(err.value)


def test_pairs_and_grid_rungs_together_are_rejected():
    with pytest.raises(ValueError, match="either pairs="):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, pairs=[(50, 64)], target=(4725, 768))


def test_target_on_the_grid_form_is_rejected():
    with pytest.raises(ValueError, match="only for the pairs form"):
        SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS, target=(4725, 768))


# --- lookups and persistence -------------------------------------------------------------------
def test_find_rejects_a_fidelity_outside_the_space_listing_the_allowed_ones():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    assert space.find(100, 128) == Fidelity(100, ModelShape(2, 128, 2))
    with pytest.raises(ValueError, match="not in the search space") as err:
        space.find(200, 128)
    assert "200 steps" in str(err.value)


def test_find_by_width_gives_the_spaces_own_shape_of_that_width():
    space = SearchSpace(lr=(1e-5, 1e-1), steps=[50, 100], models=[(1, 32, 1), (2, 96, 3)])
    assert space.find(50, 96) == Fidelity(50, ModelShape(2, 96, 3))
    assert space.find(100, 32) == Fidelity(100, ModelShape(1, 32, 1))
    with pytest.raises(ValueError, match="width 64\\) is not in the search space"):
        space.find(50, 64)


@pytest.mark.parametrize("steps", [50.5, 50.0, "50"])
def test_find_rejects_steps_that_are_not_whole_numbers_instead_of_truncating(steps):
    space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    with pytest.raises(ValueError, match=f"steps {steps!r} is not a positive integer"):
        space.find(steps, 64)


@pytest.mark.parametrize("form", ["grid", "pairs"])
def test_space_survives_a_dict_round_trip(form):
    if form == "grid":
        space = SearchSpace(lr=(1e-5, 1e-1), steps=STEPS, widths=WIDTHS)
    else:
        space = SearchSpace(
            lr=(2e-5, 3e-2), pairs=[(50, (1, 64, 1)), (500, 256)], target=(4725, (12, 768, 12))
        )
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space
    assert again.fidelities == space.fidelities
    assert again.target == space.target
    assert again.form == form
