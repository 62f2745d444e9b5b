"""The optimum-drift model: where the best LR sits at each fidelity, and how sure it is there."""

from __future__ import annotations

import math

import pytest

from costbo import ModelShape
from costbo.drift import DRIFT_SHIFT_SD, OptimumDrift, RungOptimum
from costbo.priors import LearningRatePrior

PRIOR = LearningRatePrior.from_scaling_laws(ModelShape(12, 768, 12), 4725)


def coords(steps: int, width: int) -> tuple[float, float]:
    return math.log(steps / 4725), math.log(width / 768)


def rungs_of(optimum, ladder, sd=0.05) -> list[RungOptimum]:
    """Rung optima read off a drift law ``optimum(s, w)`` (log10 LR) at (steps, width) rungs."""
    out = []
    for steps, width in ladder:
        s, w = coords(steps, width)
        out.append(RungOptimum(s, w, optimum(s, w), sd))
    return out


def test_without_rungs_the_drift_is_the_prior_and_its_sd_the_prior_sd():
    drift = OptimumDrift(PRIOR)
    assert float(drift.optimum(0.0, 0.0)) == pytest.approx(PRIOR.target_log10_lr)
    expected = math.hypot(PRIOR.target_sd, DRIFT_SHIFT_SD)
    assert drift.sd(0.0, 0.0) == pytest.approx(expected, rel=1e-6)


def test_a_truth_away_from_the_prior_moves_the_target_towards_it():
    # The truth: 0.3 decades above the prior everywhere, with the prior's own slopes.
    def truth(s, w):
        return float(PRIOR.optimum(s, w)) + 0.3

    ladder = [(500, 768), (1000, 768), (200, 512)]
    drift = OptimumDrift(PRIOR).fit(rungs_of(truth, ladder))
    assert float(drift.optimum(0.0, 0.0)) == pytest.approx(truth(0.0, 0.0), abs=0.06)


def test_rungs_near_the_target_pin_it_better_than_rungs_far_from_it():
    def truth(s, w):
        return float(PRIOR.optimum(s, w))

    near = OptimumDrift(PRIOR).fit(rungs_of(truth, [(500, 768), (1000, 768)]))
    far = OptimumDrift(PRIOR).fit(rungs_of(truth, [(500, 64), (1000, 64)]))
    assert near.sd(0.0, 0.0) < 0.7 * far.sd(0.0, 0.0)
    # ... and no rung pins the target more tightly than the bend allows in steps alone
    assert near.sd(0.0, 0.0) > 0.02


def test_a_poorly_bracketed_rung_counts_less_than_a_well_bracketed_one():
    s, w = coords(500, 768)
    high = float(PRIOR.optimum(s, w)) + 0.4
    sure = OptimumDrift(PRIOR).fit([RungOptimum(s, w, high, 0.05)])
    unsure = OptimumDrift(PRIOR).fit([RungOptimum(s, w, high, 0.5)])
    prior = PRIOR.target_log10_lr
    assert float(sure.optimum(0.0, 0.0)) - prior > 2 * (float(unsure.optimum(0.0, 0.0)) - prior)


def test_correction_takes_tensors_and_arrays_alike():
    import numpy as np
    import torch

    drift = OptimumDrift(PRIOR).fit(
        rungs_of(lambda s, w: float(PRIOR.optimum(s, w)) - 0.2, [(200, 256), (500, 384)])
    )
    s = np.array([0.0, -1.0, -2.0])
    w = np.array([0.0, -0.5, -1.0])
    from_numpy = drift.correction(s, w)
    from_torch = drift.correction(torch.tensor(s), torch.tensor(w)).numpy()
    assert np.allclose(from_numpy, from_torch)
    assert from_numpy.shape == (3,)


def test_a_flat_rungs_runs_pin_its_optimum_less():
    from costbo.drift import MAX_FLATNESS, rung_optimum_sd

    sharp = rung_optimum_sd(4, True)
    assert rung_optimum_sd(4, True, flatness=3.0) == pytest.approx(3.0 * sharp)
    assert rung_optimum_sd(8, True, 3.0) < rung_optimum_sd(4, True, 3.0)  # more runs still help
    assert rung_optimum_sd(0, False, MAX_FLATNESS) > rung_optimum_sd(0, False)
