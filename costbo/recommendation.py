"""The answer: the max LR that minimizes the expected full-scale val loss, divergence included.

The objective on the target's LR grid is ``(1 - p(u)) mu(u) + p(u) L_div``. The 90% interval is
the 5%..95% range of the argmin over joint posterior samples of the target slice. Candidates at
or above any LR that diverged at a smaller fidelity are excluded outright: with the best LR
falling as steps and width grow, such an LR diverges at full scale too, and a diverged final run
wastes the whole final budget.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ndtr

from costbo.divergence import SHARPNESS, DivergenceModel
from costbo.surrogate import DTYPE, LossPosterior, to_inputs
from costbo.trial import Recommendation

N_SAMPLES = 512


def optimum_samples(
    post: LossPosterior, log10_lr: np.ndarray, s: float, w: float, seed: int
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray]:
    """Posterior mean, covariance and ``N_SAMPLES`` joint samples of the loss on an LR slice."""
    z = to_inputs(
        torch.as_tensor(log10_lr), torch.full((len(log10_lr),), s), torch.full((len(log10_lr),), w)
    )
    mean = post.mean(z)
    cov = post.cov(z)
    cov = 0.5 * (cov + cov.T)
    gen = torch.Generator().manual_seed(int(seed))
    # Eigen-decomposition instead of Cholesky: a smooth slice's covariance is near singular.
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0.0).sqrt()
    noise = torch.randn(len(log10_lr), N_SAMPLES, generator=gen, dtype=DTYPE)
    samples = (mean[:, None] + root @ noise).T.numpy()  # N_SAMPLES x m
    return mean.numpy(), cov, z, samples


def recommend(
    post: LossPosterior,
    divergence: DivergenceModel,
    log10_lr: np.ndarray,
    *,
    lr_cap: float | None,
    divergence_loss: float,
    target_steps: int,
    target_width: int,
    n_observations: int,
    seed: int,
) -> Recommendation:
    """Minimize the posterior expected risk-adjusted loss over ``log10_lr`` (the target's
    plausible LR window), coherently per posterior sample: each sampled loss curve brings its
    own optimum, and the divergence boundary sits the learned ratio above that optimum."""
    grid = np.asarray(log10_lr, dtype=float)
    if lr_cap is not None:
        allowed = grid < math.log10(lr_cap) - 1e-9
        if not allowed.any():
            allowed = grid <= grid.min()  # every LR in range diverged somewhere: the lowest
        grid = grid[allowed]
    mean, cov, _, samples = optimum_samples(post, grid, 0.0, 0.0, seed)
    sample_opt = grid[samples.argmin(axis=1)]  # S
    # The boundary sits the learned ratio above the optimum, so it is as uncertain as the
    # optimum. The spread of sampled argmins is heavy-tailed (a flat basin lets the residual's
    # wiggles move an argmin far), so its scale is taken robustly, from the interquartile range.
    q25, q75 = np.quantile(sample_opt, [0.25, 0.75])
    opt_sd = (q75 - q25) / 1.349
    offset, offset_sd = divergence.boundary(0.0, 0.0, 0.0)
    scale = math.sqrt(SHARPNESS**2 + float(offset_sd) ** 2 + opt_sd**2)
    opt_mean = float(grid[mean.argmin()])
    p = np.broadcast_to(ndtr((grid - (opt_mean + float(offset))) / scale), samples.shape)
    sample_risk = (1.0 - p) * samples + p * divergence_loss
    risk = sample_risk.mean(axis=0)
    best = int(risk.argmin())
    # The interval is the credible interval of the loss-optimal LR itself (samples' argmins);
    # the recommendation may sit below its middle where the divergence risk says so.
    low, high = np.quantile(sample_opt, [0.05, 0.95])
    rec = float(grid[best])
    low, high = min(low, rec), max(high, rec)
    return Recommendation(
        lr=10.0**rec,
        lr_low=10.0 ** float(low),
        lr_high=10.0 ** float(high),
        val_loss=float(mean[best]),
        val_loss_std=float(math.sqrt(max(float(cov[best, best]), 0.0))),
        divergence_probability=float(p[:, best].mean()),
        target_steps=target_steps,
        target_width=target_width,
        n_observations=n_observations,
        lr_cap=lr_cap,
    )
