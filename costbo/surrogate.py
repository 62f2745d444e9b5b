"""The surrogate: a GP over (log10 LR, ln steps, ln width) for the final val loss, in nats.

Its prior is a Bayesian polynomial surface plus fixed and fitted GP terms. The polynomial is an
asymmetric basin in the LR coordinate, taken about a centre that follows the optimum's drift
(gentle quadratic below it, steeper quadratic plus a quartic above it, a small quartic below it
too for the low side's rise far from the optimum, sharpened for short runs
as (steps / target)^-0.2: published 2x penalties are largest for short runs; never a spurious
second minimum as a cubic term gives when extrapolated), with linear interactions between LR
and the fidelities; its coefficients are integrated out (a feature kernel Phi Sigma Phi^T with
prior means), so the uncertainty of the extrapolated full-scale optimum is exact. A stationary
GP alone would revert to its mean at the full-scale corner, which no cheap run is near; the
polynomial carries the structure (where the LR optimum sits and how it moves with steps and
width) out there. On top: a level term (constant in LR, fixed), a bend of the drift (an
LR-linear term whose slope varies smoothly with the fidelity, fixed: ``DriftKernel``), and a
Matern-5/2 residual (fitted) that fades towards the target.

The fit runs in passes: after the first, the basin is re-centred on ``OptimumDrift``'s
estimate of where the optimum sits at every fidelity (``costbo.drift``) and refitted. About
the prior's guess instead, an asymmetric basin drags its argmin towards its gentle side.

Losses far above the best seen at the same fidelity (LRs far from the basin, where the loss
saturates towards its starting value) get extra noise in proportion to how far they are, so they
cannot dominate the quadratic fit. Diverged runs never enter the GP: ``divergence.py`` models them.
Hyperparameters (residual lengthscales and scale, noise) are fitted by marginal likelihood with
priors (L-BFGS-B on the marginal likelihood written out in torch), from a fixed start so that
fits are reproducible.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from botorch.models.gpytorch import GPyTorchModel
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.priors import GammaPrior

from costbo.drift import (
    DRIFT_LENGTHSCALE,
    DRIFT_SHIFT_SD,
    MAX_FLATNESS,
    OptimumDrift,
    RungOptimum,
    rung_optimum_sd,
)
from costbo.priors import LearningRatePrior, short_run_feature

log = logging.getLogger(__name__)

DTYPE = torch.float64
# Inputs are scaled by these before the residual kernel, so that one Gamma prior with mean 1
# means "half a decade of LR, a factor e^1.5 of steps or width" for the residual's lengthscales.
INPUT_SCALE = torch.tensor([0.5, 1.5, 1.5], dtype=DTYPE)
FAR_MARGIN = 0.25  # nats above the best loss at a fidelity before a point counts as far out
FAR_NOISE_PER_NAT = 0.5  # extra noise sd per nat of excess loss beyond the margin
BASE_NOISE_VAR = 1e-5  # (0.003 nats)^2: the published run-to-run roughness near the optimum
RECENTRE_PASSES = 2  # refits about the previous fit's optimum; the second rarely moves it
RECENTRE_TOLERANCE = 0.03  # decades: a smaller move of the centre is not worth a refit
BRACKET_DECADES = 0.6  # runs this close to a rung's optimum count towards pinning it
FAR_NOISE_FLOOR = 1e-4  # nats^2: runs discounted beyond this are far from their basin
LEVEL_SD = 0.15  # nats: how far the level may bend away from the polynomial between rungs
ROUGHNESS_GROWTH = 0.3  # residual variance grows as exp(-0.3 (s + w)) away from the target

FEATURE_NAMES = (
    "1",
    "s",
    "w",
    "s^2",
    "w^2",
    "s*w",
    "e^-0.3s - 1",
    "e^-0.6w - 1",
    "u",
    "u*s",
    "u*w",
    "u*h",
    "min(u,0)^2 q",
    "max(u,0)^2 q",
    "max(u,0)^4 q",
    "u^2*s",
    "u^2*w",
    "min(u,0)^4 q",
)  # fmt: skip  (u: log10 LR minus the centre; h = sqrt(target steps / steps) - 1, the short-run
#  boost; q = (steps / target steps)^-SHARPENING, the basin's sharpening in short runs)
SHARPENING = 0.2  # published: the LR basin flattens as training gets longer (2x penalties of
# 0.003-0.06 nats, largest for short runs); ~(steps ratio)^-0.2 spans that range over the rungs
CURVATURE = 0.25  # nats per decade^2: scale of the basin's curvature terms' prior means
LOW_QUARTIC = 0.2  # x CURVATURE: prior mean and sd of the low side's quartic (PolynomialPrior)
TARGET_CURVATURE = 0.12  # nats per decade^2: a full-length run's basin (see PolynomialPrior)


@dataclass(frozen=True)
class PolynomialPrior:
    """Prior means and standard deviations of the polynomial's coefficients (nats, decades)."""

    means: tuple[float, ...]
    sds: tuple[float, ...]
    curvature: float = CURVATURE

    @classmethod
    def from_lr_prior(
        cls, prior: LearningRatePrior, curvature: float = CURVATURE
    ) -> PolynomialPrior:
        # Curvature (nats per decade^2): published penalties at 2x the best LR are 0.003-0.06
        # nats, largest for short runs (q sharpens them). The LR-linear terms b move the
        # optimum by -b / (2 c); their sds are the prior's uncertainty about the optimum and
        # its drift converted through that relation at the target, whose full-length basin sits
        # at the flat end (~0.01 nats at 2x: c ~ TARGET_CURVATURE). Converting at the larger
        # mean curvature would make the prior ~2x vaguer about the optimum than intended.
        two_c = 2.0 * TARGET_CURVATURE
        means = [0.0] * len(FEATURE_NAMES)
        means[12] = 0.5 * curvature  # gentle on the low-LR side (0.5x costs ~1/3 of 2x) ...
        means[13] = 1.0 * curvature  # ... steeper on the high side,
        means[14] = 1.5 * curvature  # and steeper still further up (4x costs 5.5-9x what 2x does)
        # ... and, far below it, steeper than a quadratic too: a run at 1/100 of the best LR is
        # badly undertrained, more than a quadratic fitted near the optimum says. Runs 0.5 decade
        # below the optimum, where the acquisition puts many (its high side risks divergence),
        # then bend a quadratic-only low side and drag its argmin down (~0.03 decades at every
        # rung in the simulator's families; docs/modelling.md).
        means[17] = LOW_QUARTIC * curvature
        sds = [
            # level surface over (s, w): a quadratic plus power-law terms in tokens and size
            # (Chinchilla's shape), flexible enough that level differences between fidelities
            # are not explained away by the LR terms
            2.0, 1.0, 1.0, 0.3, 0.3, 0.3, 0.5, 0.5,
            two_c * prior.target_sd, two_c * prior.steps_slope_sd, two_c * prior.width_slope_sd,
            two_c * prior.short_run_boost_sd,
            # curvature below and above the optimum; kept away from zero, where a flat basin
            # would let the residual's wiggles put the argmin anywhere
            0.35 * curvature, 0.4 * curvature, 0.8 * curvature,
            0.015, 0.02,  # how curvature changes with steps and width beyond the sharpening
            LOW_QUARTIC * curvature,  # the low side's quartic: mostly positive, the data decide
        ]  # fmt: skip
        return cls(tuple(means), tuple(sds), curvature)


class LossFeatures(torch.nn.Module):
    """Phi(x) for scaled inputs z = (u, s, w) / INPUT_SCALE; u is log10 LR.

    The LR coordinate is taken relative to a centre: the prior's optimum at (s, w), or, once
    the surrogate has re-centred, the posterior mean of ``OptimumDrift`` there. Re-centring puts
    the basin's kink between its gentle and its steep side where the data put the optimum, not
    where the prior guessed it: fitted about the wrong point, an asymmetric parabola drags its
    argmin towards the gentle (low-LR) side.
    """

    def __init__(self, prior: LearningRatePrior, drift: OptimumDrift | None = None) -> None:
        super().__init__()
        self.prior = prior
        self.drift = drift

    def centre(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """log10 LR about which the basin is expanded, at fidelity coordinates (s, w)."""
        if self.drift is None:
            return self.prior.optimum(s, w)
        return self.drift.optimum(s, w)

    def lr_offset(self, z: torch.Tensor) -> torch.Tensor:
        """log10 LR minus the centre, at scaled inputs ``z``."""
        x = z * INPUT_SCALE.to(z)
        return x[..., 0] - self.centre(x[..., 1], x[..., 2])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * INPUT_SCALE.to(z)
        u, s, w = x[..., 0], x[..., 1], x[..., 2]
        du = u - self.centre(s, w)
        one = torch.ones_like(u)
        low, high = du.clamp(max=0.0), du.clamp(min=0.0)
        h = short_run_feature(s)
        q = (-SHARPENING * s).exp()
        cols = [one, s, w, s * s, w * w, s * w, (-0.3 * s).exp() - 1, (-0.6 * w).exp() - 1,
                du, du * s, du * w, du * h, q * low**2, q * high**2, q * high**4,
                du**2 * s, du**2 * w, q * low**4]  # fmt: skip
        return torch.stack(cols, dim=-1)


class FeatureKernel(gpytorch.kernels.Kernel):
    """k(x, x') = Phi(x) diag(v) Phi(x')^T: a polynomial with N(0, v) coefficients."""

    is_stationary = False
    has_lengthscale = False

    def __init__(self, features: LossFeatures, variances: torch.Tensor) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("variances", variances)

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        f1 = self.features(x1)
        if diag:
            return (f1 * f1 * self.variances).sum(-1)
        f2 = self.features(x2)
        return (f1 * self.variances) @ f2.transpose(-1, -2)


class FeatureMean(gpytorch.means.Mean):
    def __init__(self, features: LossFeatures, means: torch.Tensor) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("coefficient_means", means)

    def forward(self, x):
        return self.features(x) @ self.coefficient_means


class DriftKernel(gpytorch.kernels.Kernel):
    """k(x, x') = du du' v Matern-5/2((s, w), (s', w')): an LR-linear term whose coefficient is a
    smooth function of the fidelity, i.e. a bend of the optimum's drift away from log-linear.

    Published laws disagree on the width slope, and log-linear extrapolation of the best LR
    bends at larger scale; with this term a run far from the target in (steps, width) says less
    about the target's optimum than a run close to it, however straight the drift looked among
    cheap rungs. Fixed, not fitted: the cheap rungs cannot tell how much the far corner bends.
    """

    is_stationary = False
    has_lengthscale = False

    def __init__(self, features: LossFeatures, variance: float) -> None:
        super().__init__()
        self.features = features
        self.variance = float(variance)
        self.base = gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=2)
        # the optimum drift model's lengthscales, in the scaled inputs
        self.base.lengthscale = torch.tensor([DRIFT_LENGTHSCALE], dtype=DTYPE) / INPUT_SCALE[1:]
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        du1 = self.features.lr_offset(x1)
        if diag:
            return self.variance * du1 * du1
        base = self.base.forward(x1[..., 1:3], x2[..., 1:3])
        if hasattr(base, "to_dense"):
            base = base.to_dense()
        du2 = self.features.lr_offset(x2)
        return self.variance * base * du1.unsqueeze(-1) * du2.unsqueeze(-2)


def roughness_scale(z: torch.Tensor) -> torch.Tensor:
    """Relative sd of the residual at scaled inputs ``z``: losses of short runs and small
    models deviate more from any smooth surface than those of long, wide runs (the basin
    flattens as training gets longer), so misfit measured at cheap rungs must not be projected
    at full strength onto the target."""
    x = z * INPUT_SCALE.to(z)
    return torch.exp(-0.5 * ROUGHNESS_GROWTH * (x[..., 1] + x[..., 2]))


class FidelityScaledKernel(gpytorch.kernels.Kernel):
    """k(x, x') = r(x) r(x') k_base(x, x') with ``r = roughness_scale``."""

    is_stationary = False
    has_lengthscale = False

    def __init__(self, base_kernel: gpytorch.kernels.Kernel) -> None:
        super().__init__()
        self.base_kernel = base_kernel

    @property
    def outputscale(self):
        return self.base_kernel.outputscale

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        base = self.base_kernel.forward(x1, x2, diag=diag, **params)
        if hasattr(base, "to_dense"):
            base = base.to_dense()
        r1 = roughness_scale(x1)
        if diag:
            return base * r1 * r1
        return base * r1.unsqueeze(-1) * roughness_scale(x2).unsqueeze(-2)


class LossGP(gpytorch.models.ExactGP, GPyTorchModel):
    _num_outputs = 1

    def __init__(self, train_z, train_y, likelihood, features, poly: PolynomialPrior):
        gpytorch.models.ExactGP.__init__(self, train_z, train_y, likelihood)
        self.mean_module = FeatureMean(features, torch.tensor(poly.means, dtype=DTYPE))
        self.poly_kernel = FeatureKernel(features, torch.tensor(poly.sds, dtype=DTYPE) ** 2)
        self.residual_kernel = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(
                nu=2.5,
                ard_num_dims=3,
                lengthscale_prior=GammaPrior(3.0, 3.0),
                lengthscale_constraint=Interval(0.05, 20.0),
            ),
            outputscale_prior=GammaPrior(2.0, 2.0 / 2e-3),
            outputscale_constraint=Interval(1e-6, 1.0),
        )
        # How the level (the loss at the basin, whatever the LR) departs from the polynomial
        # between fidelities: constant in LR, so it never moves an argmin, but it keeps the
        # predicted full-scale val loss from being more certain than an extrapolation of a
        # power law over two decades of steps can be (fixed, not fitted: the cheap rungs
        # cannot tell how far the corner bends).
        self.level_kernel = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=2, active_dims=(1, 2))
        )
        self.level_kernel.base_kernel.lengthscale = torch.tensor([[1.0, 0.67]], dtype=DTYPE)
        self.level_kernel.outputscale = LEVEL_SD**2
        for parameter in self.level_kernel.parameters():
            parameter.requires_grad_(False)
        self.drift_kernel = DriftKernel(features, (2.0 * TARGET_CURVATURE * DRIFT_SHIFT_SD) ** 2)
        self.covar_module = (
            self.poly_kernel
            + FidelityScaledKernel(self.residual_kernel)
            + self.level_kernel
            + self.drift_kernel
        )

    def forward(self, z):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))

    def covariance(self, za: torch.Tensor, zb: torch.Tensor | None = None, diag: bool = False):
        """``covar_module`` evaluated directly in torch (same numbers, pinned by a test):
        gpytorch's kernel machinery costs ~10 ms a call at these sizes, and one ask makes
        hundreds of calls. ``diag``: the variances at ``za`` only."""
        with torch.no_grad():
            fa = self.poly_kernel.features(za)
            du_a = fa[..., 8]  # the LR offset from the centre: the feature "u"
            rough_a = roughness_scale(za)
            level = self.level_kernel.outputscale
            drift = self.drift_kernel.variance
            resid = self.residual_kernel.outputscale
            if diag:
                poly = (fa * fa * self.poly_kernel.variances).sum(-1)
                return poly + level + drift * du_a * du_a + resid * rough_a * rough_a
            zb = za if zb is None else zb
            fb = self.poly_kernel.features(zb)
            poly = (fa * self.poly_kernel.variances) @ fb.T
            lev_ls = self.level_kernel.base_kernel.lengthscale.reshape(-1)
            k = poly + level * _matern52(za[:, 1:] / lev_ls, zb[:, 1:] / lev_ls)
            dr_ls = self.drift_kernel.base.lengthscale.reshape(-1)
            base = _matern52(za[:, 1:] / dr_ls, zb[:, 1:] / dr_ls)
            k = k + drift * base * du_a[:, None] * fb[..., 8][None, :]
            res_ls = self.residual_kernel.base_kernel.lengthscale.reshape(-1)
            m = _matern52(za / res_ls, zb / res_ls)
            return k + resid * m * rough_a[:, None] * roughness_scale(zb)[None, :]


def _matern52(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matern-5/2 correlation between rows of already length-scaled inputs."""
    r = math.sqrt(5.0) * torch.cdist(a, b).clamp_min(0.0)
    return (1.0 + r + r * r / 3.0) * torch.exp(-r)


def to_inputs(log10_lr, s, w) -> torch.Tensor:
    """Stack (log10 LR, s, w) into the surrogate's scaled ``n x 3`` input tensor."""
    x = torch.stack([torch.as_tensor(v, dtype=DTYPE).reshape(-1) for v in (log10_lr, s, w)], dim=-1)
    return x / INPUT_SCALE


ARGMIN_SAMPLES = 128  # joint posterior draws along a rung for the sd of its argmin


@functools.lru_cache(maxsize=4)
def _argmin_draws(n: int) -> torch.Tensor:
    """The fixed standard-normal draws of ``argmin_sd`` (n x ARGMIN_SAMPLES), made once."""
    return torch.randn(n, ARGMIN_SAMPLES, dtype=DTYPE, generator=torch.Generator().manual_seed(0))


def argmin_sd(post, z: torch.Tensor, mean: torch.Tensor, log10_lr: torch.Tensor) -> float:
    """sd (decades) of the argmin over ``log10_lr`` of joint posterior samples at inputs ``z``
    (``mean``: the posterior mean there). Fixed draws, so that fits are reproducible."""
    cov = post.cov(z)
    cov = 0.5 * (cov + cov.T)
    jitter = 1e-10 * float(cov.diagonal().mean().clamp_min(1e-12))
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(cov + jitter * torch.eye(len(z), dtype=DTYPE))
        if int(info) == 0:
            break
        jitter *= 10.0
    else:
        return 0.0
    paths = mean[:, None] + chol @ _argmin_draws(len(z))
    return float(log10_lr[paths.argmin(0)].std())


def far_noise(y: torch.Tensor, fidelity_keys: list, predicted_best: dict | None = None):
    """Extra noise variance for losses far above the best at their fidelity (saturated LRs).

    The best is the lowest loss seen at that fidelity or, if lower, ``predicted_best[key]``
    (the model's own minimum there): a lone run far from its rung's basin is discounted too.
    """
    best: dict = dict(predicted_best or {})
    for key, value in zip(fidelity_keys, y.tolist(), strict=True):
        best[key] = min(best.get(key, math.inf), value)
    excess = torch.tensor(
        [
            max(0.0, v - best[k] - FAR_MARGIN)
            for k, v in zip(fidelity_keys, y.tolist(), strict=True)
        ],
        dtype=DTYPE,
    )
    return (FAR_NOISE_PER_NAT * excess) ** 2


def expected_far_noise(predicted: np.ndarray, rung_best: np.ndarray) -> np.ndarray:
    """The extra noise variance ``far_noise`` will give a loss predicted at ``predicted`` on a
    rung whose best predicted loss is ``rung_best``."""
    excess = np.maximum(0.0, np.asarray(predicted) - np.asarray(rung_best) - FAR_MARGIN)
    return (FAR_NOISE_PER_NAT * excess) ** 2


class LossPosterior:
    """Exact GP posterior of the latent val loss, with cached Cholesky factor (float64)."""

    def __init__(self, model: LossGP | None, mean_fn, kernel_fn, z, y, noise, base_noise, y_ref):
        self.model = model
        self._mean_fn = mean_fn
        self._kernel_fn = kernel_fn
        self.z = z
        self.y = y
        self.noise = noise
        self.base_noise = float(base_noise)
        self.y_ref = float(y_ref)
        self.features: LossFeatures | None = None  # the fit's (re-centred) features
        self.drift: OptimumDrift | None = None  # the fit's model of the optimum's drift
        self.rungs: list[RungOptimum] = []  # the observed rungs' optima the drift was fitted to
        n = z.shape[0]
        if n:
            k = kernel_fn(z, z) + torch.diag(noise)
            jitter = 1e-9
            while True:
                chol, info = torch.linalg.cholesky_ex(k + jitter * torch.eye(n, dtype=DTYPE))
                if int(info) == 0:
                    break
                jitter *= 10
                if jitter > 1e-2:
                    raise RuntimeError("surrogate covariance is not positive definite")
            self._chol = chol
            resid = (y - self.y_ref - mean_fn(z)).unsqueeze(-1)
            self._alpha = torch.cholesky_solve(resid, chol).squeeze(-1)
        else:
            self._chol = None
            self._alpha = None

    @property
    def n(self) -> int:
        return int(self.z.shape[0])

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        m = self._mean_fn(z) + self.y_ref
        if self.n:
            m = m + self._kernel_fn(z, self.z) @ self._alpha
        return m

    def _whitened(self, z: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve_triangular(self._chol, self._kernel_fn(self.z, z), upper=False)

    def cov(self, za: torch.Tensor, zb: torch.Tensor | None = None) -> torch.Tensor:
        c = self._kernel_fn(za, za if zb is None else zb)
        if self.n:
            wa = self._whitened(za)
            c = c - wa.T @ (wa if zb is None else self._whitened(zb))  # one solve for za's own
        return c

    def var(self, z: torch.Tensor) -> torch.Tensor:
        v = self._kernel_fn(z, z, diag=True)
        if self.n:
            v = v - (self._whitened(z) ** 2).sum(0)
        return v.clamp_min(1e-12)

    def with_fantasies(self, z_new: torch.Tensor) -> LossPosterior:
        """The posterior after observing ``z_new`` at its current mean (kriging believer): used
        for pending trials, so that asking again before telling looks elsewhere."""
        if z_new.shape[0] == 0:
            return self
        y_new = self.mean(z_new)
        believed = LossPosterior(
            self.model,
            self._mean_fn,
            self._kernel_fn,
            torch.cat([self.z, z_new]),
            torch.cat([self.y, y_new]),
            torch.cat([self.noise, torch.full((z_new.shape[0],), self.base_noise, dtype=DTYPE)]),
            self.base_noise,
            self.y_ref,
        )
        believed.features = self.features
        believed.drift = self.drift
        believed.rungs = self.rungs
        return believed


class LossSurrogate:
    """Fits the GP to finished runs and hands out ``LossPosterior`` objects."""

    def __init__(self, prior: LearningRatePrior, curvature: float = CURVATURE) -> None:
        self.prior = prior
        self.poly = PolynomialPrior.from_lr_prior(prior, curvature)
        self.features = LossFeatures(prior)

    def _fresh_model(self, z, y, noise, features: LossFeatures):
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
            noise=noise.clone(),
            learn_additional_noise=True,
            noise_prior=GammaPrior(1.5, 1.5 / BASE_NOISE_VAR),
            noise_constraint=GreaterThan(1e-8),
        )
        model = LossGP(z, y, likelihood, features, self.poly).to(DTYPE)
        model.residual_kernel.outputscale = 2e-3
        model.residual_kernel.base_kernel.lengthscale = torch.ones(1, 3, dtype=DTYPE)
        likelihood.second_noise = BASE_NOISE_VAR
        return model, likelihood

    def fit(self, log10_lr, s, w, val_loss, fidelity_keys: list) -> LossPosterior:
        """Posterior given finished, non-diverged runs (arrays of equal length, maybe empty).

        Up to RECENTRE_PASSES refits: each judges "far from the basin" against the previous
        fit's rung minima too (so that a lone far-off run at a fidelity cannot pose as its
        basin), and re-centres the basin on the previous fit's estimate of the drifting
        optimum (``OptimumDrift``).
        """
        z = to_inputs(log10_lr, s, w) if len(val_loss) else torch.zeros(0, 3, dtype=DTYPE)
        y = torch.as_tensor(val_loss, dtype=DTYPE).reshape(-1)
        if not torch.isfinite(y).all():
            raise ValueError(
                "the surrogate only takes finite val losses; diverged runs go elsewhere"
            )
        # gpytorch rounds fixed noise below 1e-6 up; do the same here so both agree.
        noise = (
            far_noise(y, fidelity_keys).clamp_min(1e-6) if len(y) else torch.zeros(0, dtype=DTYPE)
        )
        # the median, not the mean: one absurd loss must not shift every prediction
        y_ref = float(y.median()) if len(y) else 0.0
        features = self.features
        model, likelihood, base_noise, theta = self._fit_once(z, y, y_ref, noise, features)
        post = self._posterior(model, z, y, noise + base_noise, base_noise, y_ref)
        drift = OptimumDrift(self.prior)
        for _ in range(RECENTRE_PASSES if len(y) >= 2 else 0):
            rungs, best_loss = self._rung_optima(post, z, noise, fidelity_keys, features)
            refined = far_noise(y, fidelity_keys, best_loss).clamp_min(1e-6)
            refined = torch.maximum(refined, noise)
            drift = OptimumDrift(self.prior).fit(rungs)
            moved = self._centre_shift(features, drift, z)
            if moved < RECENTRE_TOLERANCE and not torch.any(refined > noise * 1.01):
                break
            noise = refined
            features = LossFeatures(self.prior, drift)
            model, likelihood, base_noise, theta = self._fit_once(
                z, y, y_ref, noise, features, theta
            )
            post = self._posterior(model, z, y, noise + base_noise, base_noise, y_ref)
        post.features = features
        post.drift = drift
        post.rungs = rungs if len(y) >= 2 else []
        return post

    @staticmethod
    def _centre_shift(features: LossFeatures, drift: OptimumDrift, z: torch.Tensor) -> float:
        """Largest move of the centre (decades) over the observed fidelities and the target."""
        x = torch.cat([z, torch.zeros(1, 3, dtype=DTYPE)]) * INPUT_SCALE
        moved = drift.optimum(x[:, 1], x[:, 2])
        return float((moved - features.centre(x[:, 1], x[:, 2])).abs().max())

    @staticmethod
    def _rung_optima(post, z, noise, keys: list, features: LossFeatures):
        """Per observed fidelity: the posterior-mean best log10 LR within +-1 decade of the
        centre, with an sd from how well its runs bracket it (``RungOptimum``); and the
        posterior-mean minimum loss there (nats), keyed like ``keys``.

        Runs within BRACKET_DECADES of the optimum on both sides of it, with no far-noise
        discount, pin it (``costbo.drift.rung_optimum_sd``); a rung whose optimum is not
        bracketed counts only weakly. Where the posterior itself knows the optimum less well
        than that (the sd of the argmins of joint posterior samples along the rung is larger),
        the rung's ``flatness`` widens its sd, now and for the runs the acquisition imagines
        there: real short runs can sit on a plateau (tiny models at 50 steps: val loss within
        0.05 nats over two decades of LR, deterministic wiggles of 0.02), whose "optimum" is
        roughness and must not steer the drift.
        """
        rungs, best_loss = [], {}
        grid = torch.linspace(-1.0, 1.0, 41, dtype=DTYPE)
        lrs = (z[:, 0] * INPUT_SCALE[0]).tolist()
        unique = list(dict.fromkeys(keys))
        first = [keys.index(key) for key in unique]
        s = z[first, 1] * INPUT_SCALE[1]
        w = z[first, 2] * INPUT_SCALE[2]
        u = features.centre(s, w)[:, None] + grid[None, :]  # rungs x grid, one posterior call
        g = grid.numel()
        inputs = to_inputs(u.reshape(-1), s.repeat_interleave(g), w.repeat_interleave(g))
        mean = post.mean(inputs).reshape(len(unique), g)
        inputs = inputs.reshape(len(unique), g, 3)
        for r, key in enumerate(unique):
            j = int(mean[r].argmin())
            best = float(u[r, j])
            near = [
                lrs[i]
                for i, k in enumerate(keys)
                if k == key
                and abs(lrs[i] - best) <= BRACKET_DECADES
                and float(noise[i]) < FAR_NOISE_FLOOR
            ]
            bracketed = any(v < best - 0.02 for v in near) and any(v > best + 0.02 for v in near)
            sampled = argmin_sd(post, inputs[r], mean[r], u[r])
            flatness = min(max(sampled / rung_optimum_sd(len(near), bracketed), 1.0), MAX_FLATNESS)
            sd = rung_optimum_sd(len(near), bracketed, flatness)
            rungs.append(
                RungOptimum(float(s[r]), float(w[r]), best, sd, len(near), bracketed, key, flatness)
            )
            best_loss[key] = float(mean[r, j])
        return rungs, best_loss

    def _fit_once(self, z, y, y_ref, noise, features, start=None):
        """A model fitted to (z, y); ``start`` (log hyperparameters of an earlier pass on the
        same data) warm-starts the marginal-likelihood fit."""
        model, likelihood = self._fresh_model(
            z if len(y) else torch.zeros(1, 3, dtype=DTYPE),
            (y - y_ref) if len(y) else torch.zeros(1, dtype=DTYPE),
            noise if len(y) else torch.ones(1, dtype=DTYPE),
            features,
        )
        theta = None
        if len(y) >= 2:
            theta = self._fit_hyperparameters(model, likelihood, start)
        model.eval()
        return model, likelihood, float(likelihood.second_noise.detach().reshape(-1)[0]), theta

    @staticmethod
    def _posterior(model, z, y, noise, base_noise, y_ref) -> LossPosterior:

        def mean_fn(zz):
            with torch.no_grad():
                return model.mean_module(zz)

        def kernel_fn(za, zb, diag=False):
            return model.covariance(za, zb, diag=diag)

        return LossPosterior(model, mean_fn, kernel_fn, z, y, noise, base_noise, y_ref)

    @staticmethod
    def _fit_hyperparameters(model: LossGP, likelihood, start=None) -> np.ndarray:
        """MAP of the residual's lengthscales and scale and the base noise (log marginal
        likelihood + log priors), by L-BFGS-B over log-parameters from a fixed start.

        The marginal likelihood is written out in torch rather than taken through gpytorch's
        lazily evaluated modules: for the tens of points a study has, that machinery costs
        ~100x the arithmetic, and ask() must stay well under a second.
        """
        from scipy.optimize import minimize

        z = model.train_inputs[0]
        y = model.train_targets
        fixed_noise = likelihood.noise_covar.noise.detach()
        with torch.no_grad():
            k_poly = (
                model.poly_kernel(z, z).to_dense()
                + model.level_kernel(z, z).to_dense()
                + model.drift_kernel(z, z).to_dense()
            )
            resid0 = y - model.mean_module(z)
        sq = (z[:, None, :] - z[None, :, :]).detach() ** 2
        rough = roughness_scale(z).detach()
        rough_outer = rough[:, None] * rough[None, :]
        lengthscale_prior = GammaPrior(3.0, 3.0)
        outputscale_prior = GammaPrior(2.0, 2.0 / 2e-3)
        noise_prior = GammaPrior(1.5, 1.5 / BASE_NOISE_VAR)
        n = len(y)
        eye = torch.eye(n, dtype=DTYPE)

        def objective(theta_np):
            theta = torch.tensor(theta_np, dtype=DTYPE, requires_grad=True)
            ls = theta[:3].exp()
            outputscale = theta[3].exp()
            noise = theta[4].exp()
            r = torch.sqrt((sq / ls**2).sum(-1) + 1e-12)
            matern = (1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2) * torch.exp(-math.sqrt(5) * r)
            k = (
                k_poly
                + outputscale * matern * rough_outer
                + torch.diag(fixed_noise + noise)
                + 1e-9 * eye
            )
            chol, info = torch.linalg.cholesky_ex(k)
            if int(info) != 0:
                return 1e10, np.zeros_like(theta_np)
            alpha = torch.cholesky_solve(resid0[:, None], chol)[:, 0]
            mll = -0.5 * (resid0 * alpha).sum() - torch.log(torch.diagonal(chol)).sum()
            log_prior = (
                lengthscale_prior.log_prob(ls).sum()
                + outputscale_prior.log_prob(outputscale)
                + noise_prior.log_prob(noise)
            )
            loss = -(mll + log_prior) / n
            loss.backward()
            return float(loss.detach()), theta.grad.numpy().copy()

        default = np.log([1.0, 1.0, 1.0, 2e-3, BASE_NOISE_VAR])
        start = default if start is None else start
        bounds = [(math.log(0.05), math.log(20.0))] * 3 + [
            (math.log(1e-6), math.log(1.0)),
            (math.log(1e-8), math.log(1.0)),
        ]
        try:
            result = minimize(
                objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": 200},
            )  # fmt: skip
            theta = result.x if np.all(np.isfinite(result.x)) else default
        except Exception as err:  # a degenerate data set must never crash a study
            log.warning("GP hyperparameter fit failed (%s); keeping the prior's values", err)
            theta = default
        model.residual_kernel.base_kernel.lengthscale = torch.tensor(
            np.exp(theta[:3]), dtype=DTYPE
        ).reshape(1, 3)
        model.residual_kernel.outputscale = float(np.exp(theta[3]))
        likelihood.second_noise = float(np.exp(theta[4]))
        model.eval()
        likelihood.eval()
        return theta
