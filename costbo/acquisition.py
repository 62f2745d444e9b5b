"""Acquisition: what a candidate run is worth for the full-scale answer, per predicted dollar.

- ``regret_per_dollar`` (the default): first the fidelity, then the LR. A fidelity is worth
  the expected reduction of the full-scale regret that runs there would bring, per dollar:
  with the target's basin locally quadratic, the expected regret of answering at the posterior
  optimum is ``c sigma^2``, ``sigma`` the sd of the full-scale optimum's location under the
  optimum-drift model (``costbo.drift``), so the value of a fidelity is the drop in ``sigma^2``
  that one more run there, or a sweep of SWEEP_RUNS across its basin, would bring, divided by
  their dollars (the better of the two). Runs near the target in (steps, width) pin its
  optimum; runs far from it cannot pin it below the drift's bend, however cheap, and runs at
  a well-known rung stop helping once its roughness dominates. Within the chosen fidelity the
  LR is the knowledge gradient's choice (below).

Both functions score every candidate (a log10 LR on a grid x every allowed fidelity) exactly, in
one pass of tensor algebra: no inner optimizer. A candidate's value is measured at the target
fidelity, never at its own: plain EI at the candidate's fidelity divided by cost is the known
failure mode (it stays at the cheapest rung, whose optimum is not the target's).

The objective at the target is the risk-adjusted loss ``r(u) = (1 - p(u)) mu(u) + p(u) L_div``:
the posterior mean loss where the run survives, the divergence loss where it does not.

- ``kg_per_dollar``: one-step lookahead (knowledge gradient) on the minimum of ``r`` over the
  target's LR grid. Observing ``y`` at candidate ``x`` moves the target posterior mean by
  ``sigma_tilde(u, x) Z`` with ``Z ~ N(0, 1)``; the expectation over ``Z`` is taken by
  Gauss-Hermite quadrature. Value = E[reduction of min r] x P(x does not diverge) / dollars.
- ``ei_per_dollar``: augmented expected improvement (Huang et al. 2006, multi-fidelity
  sequential kriging): EI of the target at the candidate's LR against the current best ``r``,
  times the correlation between the candidate's loss and that target loss, times the share of
  the candidate's variance that is not noise, x P(no divergence) / dollars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from costbo.drift import OptimumDrift, RungOptimum, rung_optimum_sd
from costbo.surrogate import DTYPE, LossPosterior

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


@dataclass
class Candidates:
    """``n`` candidate runs: surrogate inputs ``z`` (n x 3), the LR grid value ``log10_lr``,
    their divergence probability, predicted mean dollars, and the observation noise variance
    their loss will get (nats^2): far from their rung's basin the surrogate discounts a loss
    (see ``surrogate.far_noise``), so the lookahead must expect that discount too, or it keeps
    buying runs at the LR extremes."""

    z: torch.Tensor
    log10_lr: np.ndarray
    p_diverge: np.ndarray
    dollars: np.ndarray
    noise: np.ndarray


@dataclass
class TargetSlice:
    """The target fidelity's LR grid: inputs ``z`` (m x 3), divergence probability per point,
    and the loss charged to a diverged full-scale run (nats)."""

    z: torch.Tensor
    log10_lr: np.ndarray
    p_diverge: np.ndarray
    divergence_loss: float


def risk_adjusted(mean: np.ndarray, target: TargetSlice) -> np.ndarray:
    p = target.p_diverge
    return (1.0 - p) * mean + p * target.divergence_loss


def kg_per_dollar(post: LossPosterior, cand: Candidates, target: TargetSlice) -> np.ndarray:
    mu_t = post.mean(target.z).numpy()
    r = risk_adjusted(mu_t, target)
    cross = post.cov(target.z, cand.z).numpy()  # m x n
    var_x = post.var(cand.z).numpy() + cand.noise
    sigma_tilde = (1.0 - target.p_diverge)[:, None] * cross / np.sqrt(var_x)[None, :]  # m x n
    # E_Z[min_j (r_j + sigma_tilde_jx Z)] for every candidate x, by quadrature over Z.
    shifted = r[None, :, None] + sigma_tilde.T[:, :, None] * _GH_NODES[None, None, :]
    expected_min = (shifted.min(axis=1) * _GH_WEIGHTS[None, :]).sum(axis=1)
    kg = np.clip(r.min() - expected_min, 0.0, None)
    return kg * (1.0 - cand.p_diverge) / cand.dollars


def ei_per_dollar(post: LossPosterior, cand: Candidates, target: TargetSlice) -> np.ndarray:
    mu_t = post.mean(target.z).numpy()
    best = risk_adjusted(mu_t, target).min()
    # The target point that shares the candidate's LR (grids are shared, so match by value).
    idx = np.abs(target.log10_lr[None, :] - cand.log10_lr[:, None]).argmin(axis=1)
    z_t = target.z[torch.as_tensor(idx)]
    p_t = target.p_diverge[idx]
    mu = (1.0 - p_t) * post.mean(z_t).numpy() + p_t * target.divergence_loss
    var_t = post.var(z_t).numpy()
    sd = (1.0 - p_t) * np.sqrt(var_t)
    gap = best - mu
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, gap / sd, 0.0)
    ei = np.where(sd > 0, gap * norm.cdf(t) + sd * norm.pdf(t), np.maximum(gap, 0.0))
    var_x = post.var(cand.z).numpy()
    cross = _paired_cov(post, cand.z, z_t)
    corr = np.clip(cross / np.sqrt(var_x * var_t), 0.0, 1.0)
    not_noise = 1.0 - np.sqrt(cand.noise / (var_x + cand.noise))
    return ei * corr * not_noise * (1.0 - cand.p_diverge) / cand.dollars


def _paired_cov(post: LossPosterior, za: torch.Tensor, zb: torch.Tensor) -> np.ndarray:
    """cov(f(za_i), f(zb_i)) for each i, without forming the n x n matrix."""
    k = _rowwise_kernel(post, za, zb)
    if post.n:
        k = k - (post._whitened(za) * post._whitened(zb)).sum(0)
    return k.numpy()


def _rowwise_kernel(post: LossPosterior, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    # Evaluate in blocks: the full n x n kernel would be wasteful for thousands of candidates.
    out = torch.empty(za.shape[0], dtype=DTYPE)
    block = 256
    for i in range(0, za.shape[0], block):
        out[i : i + block] = torch.diagonal(post._kernel_fn(za[i : i + block], zb[i : i + block]))
    return out


SWEEP_RUNS = 3  # a sweep across a new rung's basin: below, at and above its optimum


def fidelity_values(
    drift: OptimumDrift,
    rungs: list[RungOptimum],
    candidates: list[tuple[object, float, float, float]],
    pending: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected drop of the full-scale optimum's variance (decades^2) per dollar for each
    candidate fidelity ``(key, s, w, dollars per run)``, and how many runs that assumes (1 or
    SWEEP_RUNS). ``pending`` counts asked, untold runs per key: they count as if they had landed
    near their rung's optimum, so asking again before telling looks elsewhere."""
    by_key = {r.key: r for r in rungs}
    for key, n in pending.items():  # pending runs: assume they pin their rung as runs do
        r = by_key.get(key)
        if r is not None:
            runs = r.runs + n
            by_key[key] = _with_runs(r, runs, r.bracketed or runs >= 2)
    base = list(by_key.values())
    var_now = drift.target_sd_with(base) ** 2
    values = np.zeros(len(candidates))
    runs_used = np.ones(len(candidates), dtype=int)
    for i, (key, s, w, dollars) in enumerate(candidates):
        old = by_key.get(key)
        if old is None:
            old = RungOptimum(s, w, 0.0, rung_optimum_sd(0, False), 0, False, key)
            old = _with_runs(old, pending.get(key, 0), pending.get(key, 0) >= 2)
        others = [r for r in base if r.key != key]
        for k in (1, SWEEP_RUNS):
            runs = old.runs + k
            new = _with_runs(old, runs, old.bracketed or runs >= 2)
            drop = var_now - drift.target_sd_with([*others, new]) ** 2
            value = max(drop, 0.0) / (k * dollars)
            if value > values[i]:
                values[i], runs_used[i] = value, k
    return values, runs_used


def _with_runs(rung: RungOptimum, runs: int, bracketed: bool) -> RungOptimum:
    sd = rung_optimum_sd(runs, bracketed, rung.flatness)
    return RungOptimum(rung.s, rung.w, rung.log10_lr, sd, runs, bracketed, rung.key, rung.flatness)


ACQUISITIONS = {
    "regret_per_dollar": kg_per_dollar,  # the LR within the chosen fidelity: see above
    "kg_per_dollar": kg_per_dollar,
    "ei_per_dollar": ei_per_dollar,
}
