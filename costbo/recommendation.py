"""The answer: the max LR that minimizes the expected full-scale val loss, divergence included.

The objective on the target's LR grid is ``(1 - p(u)) mu(u) + p(u) L_div``, averaged over joint
posterior samples of the target slice, where ``p`` is the chance that the divergence boundary
(the learned ratio above the full-scale optimum) lies below ``u``. How uncertain that optimum's
location is comes from the optimum-drift model (``costbo.drift``): the argmins of posterior
samples of a flat basin are heavy-tailed and, measured on the simulator's families, 2-3x wider
than the actual error, so a margin taken from them hedged far below the optimum for nothing.
The 90% interval is the posterior-mean argmin +-1.645 sd of that location (widened to include
the recommendation). Candidates at or above any LR that diverged at a smaller fidelity are
excluded outright: with the best LR falling as steps and width grow, such an LR diverges at full
scale too, and a diverged final run wastes the whole final budget.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from costbo.divergence import SHARPNESS, DivergenceModel
from costbo.surrogate import LossPosterior, to_inputs
from costbo.trial import Recommendation


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
    optimum_sd: float,
) -> Recommendation:
    """Minimize the posterior expected risk-adjusted loss over ``log10_lr`` (the target's
    plausible LR window); ``optimum_sd`` (decades) is the uncertainty of the full-scale
    optimum's location, on which the divergence boundary's position depends."""
    grid = np.asarray(log10_lr, dtype=float)
    if lr_cap is not None:
        allowed = grid < math.log10(lr_cap) - 1e-9
        if not allowed.any():
            allowed = grid <= grid.min()  # every LR in range diverged somewhere: the lowest
        grid = grid[allowed]
    zeros = np.zeros(len(grid))
    z = to_inputs(grid, zeros, zeros)
    mean, var = post.mean(z).numpy(), post.var(z).numpy()
    offset, offset_sd = divergence.boundary(0.0, 0.0, 0.0)
    scale = math.sqrt(SHARPNESS**2 + float(offset_sd) ** 2 + optimum_sd**2)
    opt_mean = float(grid[mean.argmin()])
    p = ndtr((grid - (opt_mean + float(offset))) / scale)
    risk = (1.0 - p) * mean + p * divergence_loss  # the expectation is linear in the loss
    best = int(risk.argmin())
    # The interval is the credible interval of the loss-optimal LR itself; the recommendation
    # may sit below its middle where the divergence risk says so.
    low, high = opt_mean - 1.645 * optimum_sd, opt_mean + 1.645 * optimum_sd
    rec = float(grid[best])
    low, high = min(low, rec), max(high, rec)
    return Recommendation(
        lr=10.0**rec,
        lr_low=10.0 ** float(low),
        lr_high=10.0 ** float(high),
        val_loss=float(mean[best]),
        val_loss_std=float(math.sqrt(max(float(var[best]), 0.0))),
        divergence_probability=float(p[best]),
        target_steps=target_steps,
        target_width=target_width,
        n_observations=n_observations,
        lr_cap=lr_cap,
    )
