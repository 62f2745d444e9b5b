"""The loss surrogate: fitting never crashes on degenerate data, its posterior stays finite, and
runs at small widths move the full-scale optimum toward where the landscape really has it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from costbo import ModelShape
from costbo.priors import LearningRatePrior
from costbo.sim import sample_landscape
from costbo.surrogate import LossSurrogate, to_inputs

PRIOR = LearningRatePrior.from_scaling_laws(ModelShape(12, 768, 12), 4725)
GRID = np.linspace(-5.0, -1.0, 161)  # log10 LR
S50, W64 = math.log(50 / 4725), math.log(64 / 768)  # the cheapest rung's coordinates


def slice_at(post, s: float, w: float) -> tuple[torch.Tensor, torch.Tensor]:
    z = to_inputs(GRID, np.full(len(GRID), s), np.full(len(GRID), w))
    return post.mean(z), post.var(z)


def fit_runs(surrogate: LossSurrogate, runs: list[tuple[float, int, int, float]]):
    """Fit (log10 LR, steps, width, val loss) runs on the 4725-step, width-768 target."""
    return surrogate.fit(
        [r[0] for r in runs],
        [math.log(r[1] / 4725) for r in runs],
        [math.log(r[2] / 768) for r in runs],
        [r[3] for r in runs],
        [(r[1], r[2]) for r in runs],
    )


DEGENERATE = {
    "no points": [],
    "one point": [(-2.5, 50, 64, 7.5)],
    "identical points": [(-2.5, 50, 64, 7.5)] * 3,
    "same config, different losses": [(-2.5, 50, 64, 7.5), (-2.5, 50, 64, 7.9)],
    "huge losses": [(-2.5, 50, 64, 7.5), (-2.0, 50, 64, 7.4), (-3.0, 50, 64, 1e6),
                    (-1.5, 50, 64, 1e12)],
    "saturated losses only": [(-5.0, 50, 64, 10.8), (-4.8, 50, 64, 10.8), (-4.6, 50, 64, 10.8)],
    "zero losses": [(-2.5, 50, 64, 0.0), (-2.0, 50, 64, 0.0)],
}  # fmt: skip


@pytest.mark.parametrize("runs", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_fitting_degenerate_data_never_crashes_and_the_posterior_stays_finite(runs):
    post = fit_runs(LossSurrogate(PRIOR), runs)
    assert post.n == len(runs)
    for s, w in ((0.0, 0.0), (S50, W64)):
        mean, var = slice_at(post, s, w)
        assert torch.isfinite(mean).all()
        assert torch.isfinite(var).all()
        assert (var > 0).all()


def test_surrogate_refuses_non_finite_losses():
    with pytest.raises(ValueError, match="only takes finite val losses"):
        fit_runs(LossSurrogate(PRIOR), [(-2.5, 50, 64, 7.5), (-1.5, 50, 64, math.nan)])


def test_without_data_the_target_optimum_is_the_prior_optimum():
    mean, _ = slice_at(fit_runs(LossSurrogate(PRIOR), []), 0.0, 0.0)
    assert GRID[int(mean.argmin())] == pytest.approx(PRIOR.target_log10_lr, abs=0.05)


def test_observed_point_pins_the_posterior_there():
    post = fit_runs(LossSurrogate(PRIOR), [(-2.5, 50, 64, 7.5)])
    z = to_inputs([-2.5], [S50], [W64])
    assert float(post.mean(z)) == pytest.approx(7.5, abs=0.05)
    far = to_inputs([-2.5], [0.0], [0.0])
    assert float(post.var(z)) < 0.01 * float(post.var(far))


def bowl_runs(landscape) -> list[tuple[float, int, int, float]]:
    """Five LRs around the best of each of three small widths, 200 steps each."""
    runs = []
    for width in (64, 128, 256):
        best = math.log10(landscape.best_lr(200, width))
        for offset in (-0.6, -0.3, 0.0, 0.3, 0.6):
            u = best + offset
            if not landscape.diverges(10**u, 200, width):
                runs.append((u, 200, width, landscape.val_loss(10**u, 200, width)))
    return runs


@pytest.mark.parametrize(
    ("shift", "width_exponent"), [(0.35, -0.8), (-0.35, -0.4)], ids=["higher", "lower"]
)
def test_runs_at_small_widths_move_the_target_optimum_toward_the_truth(
    landscape, shift, width_exponent
):
    # The truth sits `shift` decades from the prior's centre and drifts with width at a slope
    # the prior does not assume: the data must carry the answer to the full-scale corner.
    truth = type(landscape)(
        target_lr=10.0 ** (PRIOR.target_log10_lr + shift), width_exponent=width_exponent
    )
    post = fit_runs(LossSurrogate(PRIOR), bowl_runs(truth))
    mean, _ = slice_at(post, 0.0, 0.0)
    found = GRID[int(mean.argmin())]
    true_optimum = math.log10(truth.target_lr)
    assert abs(found - true_optimum) < 0.5 * abs(PRIOR.target_log10_lr - true_optimum)


def test_pending_fantasies_shrink_the_variance_where_a_run_is_pending():
    post = fit_runs(LossSurrogate(PRIOR), [(-2.5, 50, 64, 7.5), (-2.0, 50, 64, 7.4)])
    pending = to_inputs([-1.6], [math.log(100 / 4725)], [math.log(128 / 768)])
    believed = post.with_fantasies(pending)
    assert float(believed.mean(pending)) == pytest.approx(float(post.mean(pending)), abs=1e-6)
    assert float(believed.var(pending)) < 0.1 * float(post.var(pending))
    assert post.n == 2  # the fitted posterior itself is untouched


def test_one_absurd_loss_does_not_move_the_target_optimum(landscape):
    runs = bowl_runs(landscape)
    clean, _ = slice_at(fit_runs(LossSurrogate(PRIOR), runs), 0.0, 0.0)
    spoiled, _ = slice_at(fit_runs(LossSurrogate(PRIOR), runs + [(-2.0, 200, 64, 1e6)]), 0, 0)
    assert GRID[int(spoiled.argmin())] == pytest.approx(GRID[int(clean.argmin())], abs=0.1)
    assert float(spoiled.min()) == pytest.approx(float(clean.min()), abs=0.5)


def test_direct_covariance_equals_gpytorch_kernels(landscape):
    # The posterior evaluates the covariance in plain torch for speed; it must be the very
    # kernel gpytorch defines (polynomial + level + drift bend + fidelity-scaled residual).
    import gpytorch

    post = fit_runs(LossSurrogate(PRIOR), bowl_runs(landscape))
    gen = torch.Generator().manual_seed(0)
    za = torch.randn(17, 3, generator=gen, dtype=torch.float64)
    zb = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
        full = post.model.covar_module(za, zb).to_dense()
        diag = post.model.covar_module(za, diag=True)
    assert torch.allclose(post.model.covariance(za, zb), full, rtol=1e-9, atol=1e-12)
    assert torch.allclose(post.model.covariance(za, diag=True), diag, rtol=1e-9, atol=1e-12)


def test_runs_spread_further_below_the_optimum_than_above_do_not_drag_it_down():
    # A Study puts many runs ~0.5 decade below a rung's optimum and few far above it (the high
    # side risks divergence). The simulator's low side rises faster than a quadratic away from
    # the optimum, as real ones do; a quadratic-only low side fitted to such runs read every
    # rung's optimum ~0.03 decades low, and the drift carried that to the full-scale answer.
    offsets = (-0.6, -0.45, -0.3, 0.0, 0.15, 0.3)  # decades from the rung's true optimum
    rungs = [(50, 128), (200, 384), (500, 768)]
    errors = []
    for seed in range(12):
        landscape = sample_landscape("calibrated", seed)
        runs, truth = [], {}
        for steps, width in rungs:
            model = ModelShape.from_width(width)
            truth[(steps, width)] = math.log10(landscape.best_lr(steps, model))
            for offset in offsets:
                u = truth[(steps, width)] + offset
                runs.append((u, steps, width, landscape.val_loss(10**u, steps, model)))
        post = fit_runs(LossSurrogate(PRIOR), runs)
        errors += [rung.log10_lr - truth[rung.key] for rung in post.rungs]
    assert len(errors) == 12 * len(rungs)
    assert abs(float(np.mean(errors))) < 0.015  # was -0.03 before the low side's quartic term
