"""What a run costs: seconds = overhead + steps x seconds-per-step(shape), in dollars at a price.

The prior for seconds-per-step comes from llm.c's FLOPs formula (524,288 tokens per step) at an
effective throughput plus a per-step fixed cost (kernel launches and the 50304-wide LM head make
small models far less efficient than their FLOPs suggest). Observed runs correct it through three
log-scale factors (overhead, step time, and how step time scales with FLOPs), fitted by MAP with a
Laplace posterior, so the budget guard can use an upper quantile instead of the mean. Measured
step times (``costbo probe``) replace the FLOPs prior for the shapes they cover.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from costbo.gpt2 import MAX_SEQ_LEN, TOKENS_PER_STEP, ModelShape

A10G_FLOPS_PER_SECOND = 5.0e13  # effective bf16 throughput of llm.c's 124M run (~8.5 s/step)
PRIOR_STEP_FIXED_SECONDS = 0.3  # per-step cost that does not scale with FLOPs
PRIOR_RUN_OVERHEAD_SECONDS = 60.0  # process start, data loading, step 0, two val evals
_PRIOR_SD = np.array([0.7, 0.5, 0.3])  # log-scale sd of (overhead, step time, FLOPs slope)
_OBS_SD = 0.08  # log-scale noise of one run's seconds around the model


@dataclass(frozen=True)
class CostPrediction:
    """Predicted run cost: mean seconds and dollars, and the ``quantile`` upper dollars."""

    seconds: float
    dollars: float
    upper_dollars: float
    quantile: float
    log_sd: float


class CostModel:
    """Seconds and dollars of a run of ``steps`` optimizer steps on a ``ModelShape``.

    ``price_per_hour`` in dollars; ``flops_per_second`` is the effective throughput of the
    target shape; ``seq_len`` and ``tokens_per_step`` match llm.c's ``-t`` and ``-d``.
    """

    def __init__(
        self,
        price_per_hour: float,
        *,
        tokens_per_step: int = TOKENS_PER_STEP,
        seq_len: int = MAX_SEQ_LEN,
        flops_per_second: float = A10G_FLOPS_PER_SECOND,
        step_fixed_seconds: float = PRIOR_STEP_FIXED_SECONDS,
        overhead_seconds: float = PRIOR_RUN_OVERHEAD_SECONDS,
        reference_model: ModelShape | None = None,
    ) -> None:
        for name, value in (
            ("price_per_hour", price_per_hour),
            ("tokens_per_step", tokens_per_step),
            ("flops_per_second", flops_per_second),
        ):
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} {value!r} must be a positive number")
        for name, value in (
            ("step_fixed_seconds", step_fixed_seconds),
            ("overhead_seconds", overhead_seconds),
        ):
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value!r} must be a number of seconds >= 0")
        self.price_per_hour = float(price_per_hour)
        self.tokens_per_step = int(tokens_per_step)
        self.seq_len = int(seq_len)
        self.flops_per_second = float(flops_per_second)
        self.step_fixed_seconds = float(step_fixed_seconds)
        self.overhead_seconds = float(overhead_seconds)
        self.reference_model = reference_model or ModelShape(12, 768, 12)
        self._measured_step: dict[ModelShape, float] = {}
        self._measured_overhead: list[float] = []
        self._runs: list[tuple[int, ModelShape, float]] = []
        self._theta = np.zeros(3)
        self._theta_cov = np.diag(_PRIOR_SD**2)

    # --- what is known ---------------------------------------------------------------------
    def seed(
        self, model: ModelShape, step_seconds: float, overhead_seconds: float | None = None
    ) -> None:
        """Use a measured seconds-per-step for ``model`` (e.g. the probe's worst of steps 10-19)
        and, if given, a measured fixed overhead per run (time to the first step plus evals)."""
        if not (math.isfinite(step_seconds) and step_seconds > 0):
            raise ValueError(f"measured step_seconds {step_seconds!r} must be a positive number")
        self._measured_step[model] = float(step_seconds)
        if overhead_seconds is not None:
            if not (math.isfinite(overhead_seconds) and overhead_seconds >= 0):
                raise ValueError(f"measured overhead_seconds {overhead_seconds!r} must be >= 0")
            self._measured_overhead.append(float(overhead_seconds))
        self._refit()

    def observe(self, steps: int, model: ModelShape, seconds: float) -> None:
        """A completed run of ``steps`` steps took ``seconds`` (wall or simulated)."""
        if not (math.isfinite(seconds) and seconds > 0):
            return  # a zero-second run (e.g. a usage error) says nothing about the step time
        self._runs.append((int(steps), model, float(seconds)))
        self._refit()

    # --- the model -------------------------------------------------------------------------
    def prior_step_seconds(self, model: ModelShape) -> float:
        if model in self._measured_step:
            return self._measured_step[model]
        flops = self.tokens_per_step * model.flops_per_token(self.seq_len)
        return flops / self.flops_per_second + self.step_fixed_seconds

    def _prior_overhead(self) -> float:
        if self._measured_overhead:
            return float(np.median(self._measured_overhead))
        return self.overhead_seconds

    def _log_flops_ratio(self, model: ModelShape) -> float:
        return math.log(
            model.flops_per_token(self.seq_len) / self.reference_model.flops_per_token(self.seq_len)
        )

    def _seconds(self, theta: np.ndarray, steps: int, model: ModelShape) -> float:
        step = self.prior_step_seconds(model)
        if model not in self._measured_step:  # measured shapes need no FLOPs-slope correction
            step *= math.exp(theta[1] + theta[2] * self._log_flops_ratio(model))
        else:
            step *= math.exp(theta[1] * 0.25)
        return self._prior_overhead() * math.exp(theta[0]) + steps * step

    def _jacobian(self, theta: np.ndarray, steps: int, model: ModelShape) -> np.ndarray:
        """d ln(seconds) / d theta, by central differences (3 parameters: cheap and robust)."""
        jac = np.zeros(3)
        for k in range(3):
            e = np.zeros(3)
            e[k] = 1e-4
            jac[k] = (
                math.log(self._seconds(theta + e, steps, model))
                - math.log(self._seconds(theta - e, steps, model))
            ) / 2e-4
        return jac

    def _refit(self) -> None:
        # MAP of theta by Gauss-Newton on log seconds; the Laplace covariance feeds the quantile.
        theta = np.zeros(3)
        prior_prec = np.diag(1.0 / _PRIOR_SD**2)
        for _ in range(20):
            grad = prior_prec @ theta
            hess = prior_prec.copy()
            for steps, model, seconds in self._runs:
                jac = self._jacobian(theta, steps, model)
                resid = math.log(self._seconds(theta, steps, model)) - math.log(seconds)
                grad += jac * resid / _OBS_SD**2
                hess += np.outer(jac, jac) / _OBS_SD**2
            delta = np.linalg.solve(hess, grad)
            theta = theta - np.clip(delta, -2.0, 2.0)
            if np.max(np.abs(delta)) < 1e-6:
                break
        self._theta = theta
        hess = prior_prec.copy()
        for steps, model, _ in self._runs:
            jac = self._jacobian(theta, steps, model)
            hess += np.outer(jac, jac) / _OBS_SD**2
        self._theta_cov = np.linalg.inv(hess)

    # --- predictions -----------------------------------------------------------------------
    def predict(self, steps: int, model: ModelShape, quantile: float = 0.9) -> CostPrediction:
        """Mean seconds and dollars of a run, and the ``quantile`` upper bound in dollars."""
        median = self._seconds(self._theta, steps, model)
        jac = self._jacobian(self._theta, steps, model)
        log_sd = math.sqrt(float(jac @ self._theta_cov @ jac) + _OBS_SD**2)
        if model in self._measured_step:
            log_sd = min(log_sd, 0.15)
        mean_seconds = median * math.exp(0.5 * log_sd**2)
        upper_seconds = median * math.exp(norm.ppf(quantile) * log_sd)
        return CostPrediction(
            seconds=mean_seconds,
            dollars=self.dollars(mean_seconds),
            upper_dollars=self.dollars(upper_seconds),
            quantile=quantile,
            log_sd=log_sd,
        )

    def dollars(self, seconds: float) -> float:
        return seconds / 3600.0 * self.price_per_hour

    def step_seconds(self, model: ModelShape) -> float:
        """Current estimate of seconds per optimizer step for ``model``."""
        return self._seconds(self._theta, 1, model) - self._prior_overhead() * math.exp(
            self._theta[0]
        )

    def to_dict(self) -> dict:
        return {
            "price_per_hour": self.price_per_hour,
            "tokens_per_step": self.tokens_per_step,
            "seq_len": self.seq_len,
            "flops_per_second": self.flops_per_second,
            "step_fixed_seconds": self.step_fixed_seconds,
            "overhead_seconds": self.overhead_seconds,
            "reference_model": list(self.reference_model.as_tuple()),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CostModel:
        data = dict(data)
        data["reference_model"] = ModelShape(*data["reference_model"])
        price = data.pop("price_per_hour")
        return cls(price, **data)
