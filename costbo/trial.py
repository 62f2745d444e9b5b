"""Trials (one proposed llm.c run each), their outcomes, and the final recommendation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from costbo.gpt2 import ModelShape


class TrialStatus(StrEnum):
    """Where a trial stands. Only COMPLETE and DIVERGED runs teach the surrogate anything."""

    PENDING = "pending"  # asked, not yet told
    COMPLETE = "complete"  # finished with a finite val loss
    DIVERGED = "diverged"  # NaN/inf loss or a loss blow-up: this LR is too high at this fidelity
    FAILED = "failed"  # crashed for a reason unrelated to the LR (CUDA error, bad data ...)
    INTERRUPTED = "interrupted"  # stopped by the user or a kill before it finished


class BudgetExhausted(RuntimeError):
    """Raised by ``Study.ask()`` when no run it would propose fits the remaining budget."""


@dataclass
class Trial:
    """One llm.c run: the max LR (``-l``), steps (``-x``) and model shape (``-1d -1c -1h``).

    ``predicted_seconds`` and ``predicted_cost`` (dollars) are the cost model's mean at ask time;
    ``predicted_cost_upper`` is the upper quantile the budget guard reserved for it.
    """

    id: int
    lr: float
    steps: int
    depth: int
    width: int
    heads: int
    predicted_seconds: float
    predicted_cost: float
    predicted_cost_upper: float
    status: TrialStatus = TrialStatus.PENDING
    val_loss: float | None = None
    seconds: float | None = None
    cost: float | None = None
    asked_at: float | None = None  # unix seconds
    told_at: float | None = None
    error: str | None = None
    user_attrs: dict = field(default_factory=dict)

    @property
    def model(self) -> ModelShape:
        return ModelShape(self.depth, self.width, self.heads)

    @property
    def channels(self) -> int:
        return self.width

    @property
    def diverged(self) -> bool:
        return self.status is TrialStatus.DIVERGED

    @property
    def is_finished(self) -> bool:
        return self.status is not TrialStatus.PENDING

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Trial:
        data = dict(data)
        data["status"] = TrialStatus(data.get("status", "pending"))
        return cls(**data)

    def __str__(self) -> str:
        return (
            f"trial {self.id}: lr {self.lr:.3g}, {self.steps} steps, model d{self.depth} "
            f"c{self.width} h{self.heads}, predicted ${self.predicted_cost:.2f}"
        )


@dataclass(frozen=True)
class Recommendation:
    """The LR to use at full scale (target steps and width).

    ``lr_low``/``lr_high`` bound a 90% credible interval of the argmin under the posterior;
    ``val_loss``/``val_loss_std`` are the predicted full-scale val loss at ``lr`` (nats) and its
    posterior standard deviation; ``divergence_probability`` is the modelled risk that a
    full-scale run at ``lr`` diverges.
    """

    lr: float
    lr_low: float
    lr_high: float
    val_loss: float
    val_loss_std: float
    divergence_probability: float
    target_steps: int
    target_width: int
    n_observations: int
    lr_cap: float | None = None  # strictly below every LR that diverged at a smaller fidelity

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }

    def __str__(self) -> str:
        return (
            f"max LR {self.lr:.3g} (90% interval {self.lr_low:.3g} .. {self.lr_high:.3g}); "
            f"predicted val loss {self.val_loss:.4f} +- {self.val_loss_std:.4f} at "
            f"{self.target_steps} steps, width {self.target_width}"
        )
