"""The step-by-step course of one simulated run: train loss, val loss, grad norm, divergence.

The final val loss is the landscape's; the curve only decides how the run gets there. Progress
is measured by the area under the LR schedule in units of the optimum LR (a run at a higher LR
moves faster, so it looks better early and can still end worse: the short-horizon bias that
early stopping suffers from). The loss falls fast to the unigram plateau, then as a power law of
that area, with an extra drop while the schedule decays. A run above the divergence threshold
blows up a few steps after its schedule crosses it and then stays NaN, or for some runs sits on
a plateau of 5-11 nats; llm.c keeps running either way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from costbo.gpt2 import ModelShape
from costbo.sim.schedule import learning_rates

if TYPE_CHECKING:
    from costbo.sim.landscape import Landscape

_FAST_SHARE = 0.45  # share of the initial excess lost in the first few optimum-LR steps
_FAST_AREA = 1.5  # optimum-LR steps of that fast (unigram) phase
_SLOW_AREA = 20.0  # scale (optimum-LR steps) and exponent of the power-law phase
_SLOW_EXPONENT = 0.6
_COOLDOWN_SHARE = 0.5  # share of the remaining slow excess the decay phase removes
_TRAIN_NOISE = 0.025  # nats, batch-to-batch spread of the train loss
_NAN_SHARE = 0.6  # diverged runs that end NaN; the rest stay on a high plateau


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (Python's str hash is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass
class SimulatedRun:
    """What one run prints: per-step arrays of length ``train_steps`` and the val evals."""

    train_losses: np.ndarray  # nats, index i = llm.c's step i + 1
    grad_norms: np.ndarray
    lrs: np.ndarray  # float32, the schedule's LR of each step
    val_losses: dict[int, float]  # updates done -> nats
    diverged_at: int | None  # first step whose loss has blown up, if any
    divergence_mode: str | None  # "nan" or "plateau"

    def as_lists(self) -> tuple[list[float], dict[int, float]]:
        return [float(v) for v in self.train_losses], dict(self.val_losses)


def _progress(area: np.ndarray, decayed: np.ndarray, total_decay: float) -> np.ndarray:
    """Decreasing shape q(area) from 1: fast phase, power law, and the decay-phase bonus."""
    slow = (1.0 + area / _SLOW_AREA) ** -_SLOW_EXPONENT
    q = _FAST_SHARE * np.exp(-area / _FAST_AREA) + (1.0 - _FAST_SHARE) * slow
    if total_decay > 0:
        q = q - (1.0 - _FAST_SHARE) * _COOLDOWN_SHARE * slow[-1] * decayed / total_decay
    return q


def simulate_run(
    landscape: Landscape,
    lr: float,
    steps: int,
    model: ModelShape,
    *,
    warmup: int,
    schedule: str = "cosine",
    final_lr_frac: float = 0.0,
    stop_at: int | None = None,
    val_every: int | None = None,
) -> SimulatedRun:
    """Simulate a run of max LR ``lr`` scheduled for ``steps`` (-x), stopped after ``stop_at``
    (-es) steps, evaluating val every ``val_every`` steps (None: at 0 and at the end)."""
    from costbo.sim.landscape import INIT_LOSS

    if not lr > 0:
        raise ValueError(f"lr {lr!r} must be a positive number")
    n = steps if stop_at is None else stop_at
    if n > steps:
        raise ValueError(f"stop_at {n} exceeds the schedule's {steps} steps: llm.c needs -es <= -x")
    if val_every is not None and val_every <= 0:
        raise ValueError(f"val_every {val_every} must be positive (llm.c crashes on -v 0)")
    sl = landscape._slice(steps, model)
    lrs = learning_rates(
        lr, steps, warmup=warmup, schedule=schedule, final_lr_frac=final_lr_frac
    ).astype(np.float64)
    lr_star = math.exp(sl.log_lr_star)
    lr_div = math.exp(sl.log_lr_div)
    area = np.concatenate(([0.0], np.cumsum(lrs / lr_star)))
    post_warmup = np.arange(steps) >= (0 if schedule == "constant" else warmup)
    gap = np.where(post_warmup, np.maximum(lrs.max() - lrs, 0.0), 0.0) / lr_star
    decayed = np.concatenate(([0.0], np.cumsum(gap)))
    q = _progress(area, decayed, float(decayed[-1]))

    # The final loss belongs to the schedule's peak LR (the max LR unless warmup outlasts -x).
    peak = float(lrs.max())
    lr_final = lr if peak >= float(np.float32(lr)) else peak
    rng = np.random.default_rng(
        stable_seed(
            landscape.seed,
            landscape.family,
            steps,
            model.as_tuple(),
            f"{lr:.6e}",
            warmup,
            schedule,
            final_lr_frac,
        )
    )
    diverged_at = None
    mode = None
    if math.log(lr_final) > sl.log_lr_div:
        end = landscape._loss_at(sl, sl.log_lr_div - sl.log_lr_star)
        above = lrs > lr_div
        crossing = int(np.argmax(above)) if above.any() else steps - 1
        delay = 1 + int(rng.integers(0, int(0.3 * warmup) + 10))
        diverged_at = min(crossing + delay, steps)
        mode = "nan" if (lr_final > 2 * lr_div or rng.random() < _NAN_SHARE) else "plateau"
    else:
        end = landscape._loss_at(sl, math.log(lr_final) - sl.log_lr_star)
    span = q[0] - q[-1]
    curve = end + (INIT_LOSS - end) * (q - q[-1]) / span if span > 0 else np.full_like(q, end)

    noise = rng.normal(0.0, 1.0, steps)
    train = curve[:steps] + _TRAIN_NOISE * noise
    k = np.arange(steps)
    norms = 0.25 + 12.0 * np.exp(-k / 6.0) + 0.8 * np.exp(-k / 60.0)
    norms *= np.exp(0.1 * rng.normal(0.0, 1.0, steps)) * (lrs / max(lr_star, 1e-12) + 0.5) ** 0.1
    if diverged_at is not None:
        start = float(curve[diverged_at])
        if mode == "nan":
            blowup = [start + 3.0, start + 9.0]
            after = np.full(steps + 1, math.nan)
            after[diverged_at : diverged_at + len(blowup)] = blowup[: steps + 1 - diverged_at]
            after[steps] = math.nan  # the run ends NaN, as val_loss() says
        else:
            level = min(max(float(rng.uniform(6.0, 8.5)), start + 0.3), 11.0)
            after = np.minimum(level + 0.05 * rng.normal(0.0, 1.0, steps + 1), 11.0)
            after[diverged_at] = min(start + 4.0, 11.0)
        curve = np.concatenate((curve[:diverged_at], after[diverged_at:]))
        train = np.concatenate((train[:diverged_at], curve[diverged_at:steps]))
        bad = np.arange(steps) >= diverged_at
        if mode == "nan":
            norms = np.where(bad, math.nan, norms)
            finite = ~np.isnan(curve[:steps])
            norms = np.where(bad & finite, 50.0, norms)
        else:
            norms = np.where(bad, np.exp(rng.normal(1.0, 0.5, steps)), norms)

    every = val_every or max(n, 1)
    val_steps = sorted({*range(0, n + 1, every), n}) if n >= 0 else []
    val = {s: float(curve[s]) for s in val_steps}
    return SimulatedRun(
        train_losses=train[:n],
        grad_norms=norms[:n],
        lrs=lrs[:n].astype(np.float32),
        val_losses=val,
        diverged_at=diverged_at if diverged_at is not None and diverged_at <= n else None,
        divergence_mode=mode if diverged_at is not None and diverged_at <= n else None,
    )
