"""Where the best LR sits at every fidelity: a GP regression of the rungs' optima.

The best log10 LR at fidelity coordinates (s, w) = (ln steps / target steps, ln width / target
width) is modelled as

    o(s, w) = prior optimum(s, w) + delta . (1, s, w, h) + g(s, w),

the published laws' drift (``LearningRatePrior.optimum``) corrected by a linear term with the
prior's own uncertainties (target location, steps slope, width slope, short-run boost ``h``) and
a smooth bend ``g`` ~ GP(0, DRIFT_SHIFT_SD^2 Matern-5/2): published width slopes disagree ~2x and
log-linear extrapolation of the best LR bends at larger scale, so a rung far from the target in
(steps, width) says less about the target's optimum than one close to it. The data are the loss
surrogate's estimates of the optimum at each observed rung, with their own uncertainty.

The posterior mean is where the loss surrogate centres its basin at each fidelity; the posterior
sd at the target is the uncertainty of the full-scale optimum's location, which sets the
recommendation's margin below the divergence boundary. Everything is closed-form (a few rungs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from costbo.priors import LearningRatePrior, short_run_feature

DRIFT_SHIFT_SD = 0.12  # decades: how far the optimum's drift may bend away from log-linear
ROUGHNESS_ARGMIN_SD = 0.05  # decades: how far the published ~0.003-nat roughness moves a rung's
# argmin off its smooth optimum; no number of runs at one rung averages it away
RUN_ARGMIN_SD = 0.15  # decades: one run near the optimum pins it to about this much (roughness
# against a basin ~0.01 nats deep at 2x); n such runs to RUN_ARGMIN_SD / sqrt(n)
UNBRACKETED_SD = 0.5  # decades: a rung whose optimum its runs do not bracket barely counts
MAX_FLATNESS = 10.0  # a rung with no basin at all still counts, as one 10x less sure
DRIFT_LENGTHSCALE = (4.5, 1.0)  # ln steps, ln width: the drift along steps is smooth and nearly
# flat (its short-run boost is modelled), while along width the laws disagree and bend


def _matern52(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matern-5/2 correlation between (s, w) rows of ``a`` and ``b``."""
    scale = np.asarray(DRIFT_LENGTHSCALE)
    d = np.sqrt((((a[:, None, :] - b[None, :, :]) / scale) ** 2).sum(-1))
    r = math.sqrt(5.0) * d
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


def drift_basis(s, w):
    """The linear drift terms (1, s, w, h) as the last axis, for floats, arrays or tensors."""
    if isinstance(s, torch.Tensor):
        return torch.stack([torch.ones_like(s), s, w, short_run_feature(s)], dim=-1)
    s = np.asarray(s, dtype=float)
    w = np.broadcast_to(np.asarray(w, dtype=float), s.shape)
    return np.stack([np.ones_like(s), s, w, np.exp(-0.5 * s) - 1.0], axis=-1)


def rung_optimum_sd(runs: int, bracketed: bool, flatness: float = 1.0) -> float:
    """sd (decades) of a rung's estimated optimum from ``runs`` runs near it (within ~0.6
    decades, not far-noise discounted), ``bracketed`` if they lie on both sides of it, at a rung
    whose runs pin it ``flatness`` times less than these constants say (a shallow, rough basin:
    see ``LossSurrogate._rung_optima``)."""
    if not bracketed or runs < 1:
        return UNBRACKETED_SD * flatness
    return flatness * math.sqrt(ROUGHNESS_ARGMIN_SD**2 + RUN_ARGMIN_SD**2 / runs)


@dataclass(frozen=True)
class RungOptimum:
    """One observed fidelity's estimated best log10 LR and its sd (decades); ``runs`` near the
    optimum and whether they ``bracketed`` it; ``key`` names the fidelity; ``flatness`` (>= 1)
    how many times less its runs pin it than ``rung_optimum_sd``'s constants say."""

    s: float
    w: float
    log10_lr: float
    sd: float
    runs: int = 0
    bracketed: bool = False
    key: object = None
    flatness: float = 1.0


class OptimumDrift:
    """Posterior of the best log10 LR over fidelities given rung optima (``fit``)."""

    def __init__(self, prior: LearningRatePrior) -> None:
        self.prior = prior
        self.prior_sd = np.array(
            [prior.target_sd, prior.steps_slope_sd, prior.width_slope_sd, prior.short_run_boost_sd]
        )
        self._x = np.zeros((0, 2))
        self._weights = np.zeros(0)  # K^-1 (o - prior) over the observed rungs
        self._chol = None

    def fit(self, rungs: list[RungOptimum]) -> OptimumDrift:
        self._x = np.array([[r.s, r.w] for r in rungs], dtype=float).reshape(-1, 2)
        if not rungs:
            self._weights = np.zeros(0)
            self._chol = None
            return self
        y = np.array([r.log10_lr - float(self.prior.optimum(r.s, r.w)) for r in rungs])
        noise = np.array([r.sd for r in rungs]) ** 2
        k = self._kernel(self._x, self._x) + np.diag(noise)
        self._chol = np.linalg.cholesky(k + 1e-10 * np.eye(len(rungs)))
        self._weights = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, y))
        return self

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        pa, pb = drift_basis(a[:, 0], a[:, 1]), drift_basis(b[:, 0], b[:, 1])
        return (pa * self.prior_sd**2) @ pb.T + DRIFT_SHIFT_SD**2 * _matern52(a, b)

    @property
    def n(self) -> int:
        return len(self._weights)

    def correction(self, s, w):
        """Posterior mean of ``o(s, w) - prior optimum(s, w)`` (decades); tensors in, tensors
        out (the loss surrogate evaluates it inside its features)."""
        if isinstance(s, torch.Tensor):
            if not self.n:
                return torch.zeros_like(s)
            x = torch.stack([s, torch.broadcast_to(w, s.shape)], dim=-1).reshape(-1, 2)
            k = self._kernel(x.detach().cpu().numpy(), self._x)
            return torch.as_tensor(k @ self._weights, dtype=s.dtype).reshape(s.shape)
        s = np.asarray(s, dtype=float)
        if not self.n:
            return np.zeros_like(s)
        x = np.stack([s, np.broadcast_to(np.asarray(w, dtype=float), s.shape)], -1).reshape(-1, 2)
        return (self._kernel(x, self._x) @ self._weights).reshape(s.shape)

    def optimum(self, s, w):
        """Posterior mean of the best log10 LR at fidelity coordinates (s, w)."""
        return self.prior.optimum(s, w) + self.correction(s, w)

    def target_sd_with(self, rungs: list[RungOptimum]) -> float:
        """The target's sd (decades) if the rungs' optima were known as well as ``rungs`` say
        (their means do not matter): what more runs somewhere would leave of the uncertainty."""
        return OptimumDrift(self.prior).fit(rungs).sd(0.0, 0.0)

    def sd(self, s: float, w: float) -> float:
        """Posterior sd (decades) of the best log10 LR at (s, w)."""
        x = np.array([[float(s), float(w)]])
        var = float(self._kernel(x, x)[0, 0])
        if self.n:
            v = np.linalg.solve(self._chol, self._kernel(self._x, x))
            var -= float((v**2).sum())
        return math.sqrt(max(var, 0.0))
