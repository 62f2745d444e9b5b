"""Prior beliefs about where the best max LR sits, from published scaling laws.

The surrogate centres its LR coordinate on this prior optimum and the divergence model puts its
boundary a fixed ratio above it. With little data the recommendation therefore falls back to the
band the laws span (for GPT-2 124M at 2.5B tokens: 6e-4 .. ~3e-3) instead of extrapolating a
handful of cheap runs to the edge of the search space.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from costbo.gpt2 import MAX_SEQ_LEN, TOKENS_PER_STEP, ModelShape

LN10 = math.log(10.0)


def gpt3_table_lr(model: ModelShape) -> float:
    """GPT-3 paper's max LR by size (6e-4 at 125M), as a log-log fit over its table.

    The table falls ~10x from 125M to 175B parameters; we use its power law in non-embedding
    parameters so that it can be evaluated at any width (extrapolated below 125M).
    """
    n = 12 * model.depth * model.channels**2
    return 6e-4 * (n / 84_934_656) ** -0.32


def deepseek_lr(model: ModelShape, tokens: float, seq_len: int = MAX_SEQ_LEN) -> float:
    """DeepSeek LLM: eta = 0.3118 C^-0.125, C = non-embedding FLOPs per token x tokens."""
    flops_per_token = (
        72 * model.depth * model.channels**2 + 6 * model.depth * model.channels * seq_len
    )
    return 0.3118 * (flops_per_token * tokens) ** -0.125


def step_law_lr(model: ModelShape, tokens: float) -> float:
    """Step Law (Li et al. 2025): eta = 1.79 N^-0.713 D^0.307 with N non-embedding parameters."""
    n = 12 * model.depth * model.channels**2
    return 1.79 * n**-0.713 * tokens**0.307


def short_run_feature(s):
    """sqrt(target steps / steps) - 1 from s = ln(steps / target steps): 0 at the target, large
    for short runs, fading as 1/sqrt(steps) (works on floats, numpy arrays and tensors)."""
    return (s * -0.5).exp() - 1.0 if hasattr(s, "exp") else math.exp(-0.5 * s) - 1.0


@dataclass(frozen=True)
class LearningRatePrior:
    """A Gaussian belief about the best log10 max LR and how it drifts with the fidelities.

    ``target_log10_lr`` and ``target_sd`` (decades) locate the full-scale optimum.
    ``width_slope`` and ``steps_slope`` are d(log10 LR*)/d(ln width) and d(log10 LR*)/d(ln steps)
    (standard parametrization: the best LR falls with width, roughly as width^-0.33..-1, and
    slowly with training length), with standard deviations ``width_slope_sd``/``steps_slope_sd``.
    ``short_run_boost`` (decades per unit of ``sqrt(target steps / steps) - 1``) is the extra LR
    that short runs prefer because warmup and decay dominate them: it fades as runs get longer, so
    the steep drift seen among short runs is not extrapolated linearly to the full-length run.
    ``divergence_ratio`` is how far above the optimum runs start to diverge (6-8x published).
    """

    target_log10_lr: float
    target_sd: float = 0.25
    width_slope: float = -0.8 / LN10
    width_slope_sd: float = 0.15
    # Bjorck et al.: eta* ~ D^-beta with beta ~0.03..0.06 at fixed batch (nearly flat).
    steps_slope: float = -0.045 / LN10
    steps_slope_sd: float = 0.02
    short_run_boost: float = 0.015
    short_run_boost_sd: float = 0.03
    divergence_ratio: float = 7.0

    def __post_init__(self) -> None:
        # a NaN or infinite slope or sd would turn every prediction into NaN without a word
        for name, value in asdict(self).items():
            if not (isinstance(value, numbers.Real) and math.isfinite(value)):
                raise ValueError(f"prior {name} {value!r} must be a finite number")
        if not self.target_sd > 0:
            raise ValueError(f"prior target_sd {self.target_sd!r} must be > 0 (decades)")
        if not self.divergence_ratio > 1:
            raise ValueError(f"prior divergence_ratio {self.divergence_ratio!r} must be > 1")

    @classmethod
    def from_lr(cls, lr: float, sd: float = 0.25, **kwargs) -> LearningRatePrior:
        if not (isinstance(lr, numbers.Real) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"prior lr {lr!r} must be a positive number, e.g. 1.5e-3")
        return cls(target_log10_lr=math.log10(lr), target_sd=sd, **kwargs)

    @classmethod
    def from_scaling_laws(
        cls,
        model: ModelShape,
        steps: int,
        tokens_per_step: int = TOKENS_PER_STEP,
        seq_len: int = MAX_SEQ_LEN,
    ) -> LearningRatePrior:
        """Centre on the published laws evaluated at the target; their spread sets the width.

        For GPT-2 124M at 4725 x 524288 tokens the laws give 6e-4, 1.7e-3 and 3.0e-3: the prior
        is centred at ~1.45e-3 with a 90% band of about 5.6e-4 .. 3.7e-3.
        """
        tokens = float(steps) * tokens_per_step
        laws = [
            gpt3_table_lr(model),
            deepseek_lr(model, tokens, seq_len),
            step_law_lr(model, tokens),
        ]
        logs = [math.log10(v) for v in laws]
        centre = sum(logs) / len(logs)
        half_range = (max(logs) - min(logs)) / 2
        return cls(target_log10_lr=centre, target_sd=max(0.25, half_range / 1.2))

    def optimum(self, s, w):
        """Prior mean of the best log10 LR at fidelity coordinates (s, w) (0 at the target)."""
        return (
            self.target_log10_lr
            + self.steps_slope * s
            + self.width_slope * w
            + self.short_run_boost * short_run_feature(s)
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LearningRatePrior:
        return cls(**data)
