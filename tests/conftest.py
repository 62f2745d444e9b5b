"""Shared fixtures: a small synthetic LLM-like loss landscape and search spaces over it.

The landscape is deliberately not the surrogate's own formula: its optimum drifts as a power law
in steps and width with exponents the prior does not assume, its basin is asymmetric and
saturates towards ln(vocab) far from the optimum, and runs diverge at 7x the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from costbo.gpt2 import TOKENS_PER_STEP, VOCAB_SIZE, ModelShape
from costbo.space import SearchSpace

INITIAL_LOSS = math.log(VOCAB_SIZE)  # nats: an untrained GPT-2


@dataclass(frozen=True)
class BowlLandscape:
    """Final val loss (nats) and A10G-like seconds of a run, as a function of (LR, steps, model).

    ``target_lr`` is the best max LR at ``target_steps`` x ``target_width``; it moves as
    ``width^width_exponent * steps^steps_exponent``. Runs at or above ``divergence_ratio`` x the
    best LR at their fidelity diverge.
    """

    target_lr: float = 1.5e-3
    target_steps: int = 4725
    target_width: int = 768
    width_exponent: float = -0.5
    steps_exponent: float = -0.05
    divergence_ratio: float = 7.0
    target_loss: float = 3.5

    def best_lr(self, steps: int, width: int) -> float:
        return (
            self.target_lr
            * (width / self.target_width) ** self.width_exponent
            * (steps / self.target_steps) ** self.steps_exponent
        )

    def diverges(self, lr: float, steps: int, width: int) -> bool:
        return lr >= self.divergence_ratio * self.best_lr(steps, width)

    def val_loss(self, lr: float, steps: int, width: int) -> float:
        """Loss of a run that does not diverge: a floor that falls with steps and width plus a
        bowl in log10 LR (steeper above the optimum, sharper for short runs) that saturates
        towards the initial loss far from the basin."""
        floor = (
            self.target_loss
            + 1.2 * ((self.target_steps / steps) ** 0.3 - 1.0)
            + 0.5 * ((self.target_width / width) ** 0.3 - 1.0)
        )
        d = math.log10(lr / self.best_lr(steps, width))
        curvature = 0.3 * (self.target_steps / steps) ** 0.1
        bowl = curvature * d * d * (1.0 + 0.8 * max(d, 0.0))
        headroom = max(INITIAL_LOSS - floor, 0.1)
        return floor + headroom * (1.0 - math.exp(-bowl / headroom))

    def seconds(self, steps: int, model: ModelShape) -> float:
        """A10G-like wall seconds: 40 s fixed + steps x (FLOPs at 45 TFLOP/s + 0.25 s)."""
        return 40.0 + steps * (TOKENS_PER_STEP * model.flops_per_token() / 4.5e13 + 0.25)

    def tell(self, study, trial, cost_multiplier: float = 1.0):
        """Run ``trial`` on this landscape and tell ``study``: diverged runs are killed after a
        fifth of their time, as the runner does on a loss blow-up."""
        seconds = self.seconds(trial.steps, trial.model) * cost_multiplier
        if self.diverges(trial.lr, trial.steps, trial.width):
            return study.tell(trial.id, diverged=True, seconds=0.2 * seconds)
        return study.tell(
            trial.id, val_loss=self.val_loss(trial.lr, trial.steps, trial.width), seconds=seconds
        )


@pytest.fixture(scope="session")
def landscape() -> BowlLandscape:
    return BowlLandscape()


@pytest.fixture(scope="session")
def cheap_space() -> SearchSpace:
    """Cheap rungs ($0.03-$0.14 each at $1.50/h) plus the 124M full-scale target ($19)."""
    return SearchSpace(lr=(1e-5, 1e-1), steps=[50, 100, 200, 4725], widths=[64, 128, 256, 768])
