"""Peer: BoTorch's qMultiFidelityKnowledgeGradient, set up as BoTorch's multi-fidelity tutorial
does it, on costbo's search space and with costbo's cost model.

- Inputs in [0, 1]^3: log10 LR over costbo's bounds (1e-5 .. 1e-1), and two data fidelities,
  ln(steps / 50) / ln(4725 / 50) and ln(width / 64) / ln(768 / 64); the target is (1, 1).
- Model: ``SingleTaskMultiFidelityGP(data_fidelities=[1, 2])`` (linear-truncated fidelity
  kernel) on the negated val loss, ``Standardize``d, fitted by marginal likelihood. BoTorch has
  no notion of divergence, so a diverged run enters as the worst finite loss seen so far plus
  1 nat (at most ln(50257)), a judgment call: NaN cannot enter a GP, and ln(50257) itself would
  dominate the standardized targets.
- Cost: ``InverseCostWeightedUtility`` over a deterministic cost model that interpolates (in log
  dollars, bilinearly over the rung grid) costbo's own ``CostModel``, updated with every run's
  seconds exactly as costbo's Study updates it: the same knowledge of cost as costbo.
- Acquisition: ``qMultiFidelityKnowledgeGradient`` with 64 fantasies, ``current_value`` = the
  best posterior mean at the target and ``project_to_target_fidelity``. It is optimized over the
  continuous relaxation of the fidelities with ``optimize_acqf`` and the fidelities are then
  snapped to the nearest affordable rung: ``optimize_acqf_mixed`` over all 49 (steps, width)
  rungs takes ~4 minutes per ask on this machine (benchmarks/ask_latency.py), too slow for a
  benchmark of thousands of asks.
- Budget guard: a rung is affordable if costbo's cost model's 0.9 quantile fits the remaining
  budget (costbo's rule); the loop ends when none does.
- Initial design: 4 runs at the cheapest rung (50 steps, width 64), LRs spread over the log
  range by a scrambled Sobol sequence (BoTorch's tutorials start from a random design).
- Answer: the argmax of the posterior mean at the target over a 201-point log-LR grid
  (project to the target fidelity, as the tutorial's final recommendation).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch

from benchmarks.strategies.oracle import (
    LR_BOUNDS,
    STEP_RUNGS,
    TARGET_MODEL,
    WIDTH_RUNGS,
    Oracle,
    OverBudget,
)
from costbo.cost_model import CostModel
from costbo.gpt2 import VOCAB_SIZE, ModelShape

DTYPE = torch.double
N_INITIAL = 4
RECOMMENDATION_GRID = 201


@dataclass(frozen=True)
class KGSettings:
    """How hard the acquisition is optimized. BoTorch's tutorial uses 128 fantasies, 10
    restarts and 512 raw samples; with 64 fantasies, 4 restarts and 64 raw samples one ask took
    19 s at 30 observations and 42 s at 80 on this (shared, 2-core) machine, so the benchmark
    uses 2 restarts and 32 raw samples (~5-20 s per ask)."""

    num_fantasies: int = 64
    num_restarts: int = 2
    raw_samples: int = 32
    maxiter: int = 50
    fit_maxiter: int | None = None  # None: BoTorch's default fit
    max_runs: int | None = None  # None: until no rung fits the budget


QUICK_SETTINGS = KGSettings(
    num_fantasies=2, num_restarts=1, raw_samples=4, maxiter=5, fit_maxiter=5, max_runs=6
)


# --- coordinates ---------------------------------------------------------------------------
_LOG_LR = (math.log10(LR_BOUNDS[0]), math.log10(LR_BOUNDS[1]))
_LOG_STEPS = (math.log(STEP_RUNGS[0]), math.log(STEP_RUNGS[-1]))
_LOG_WIDTH = (math.log(WIDTH_RUNGS[0]), math.log(WIDTH_RUNGS[-1]))
STEP_LEVELS = [(math.log(s) - _LOG_STEPS[0]) / (_LOG_STEPS[1] - _LOG_STEPS[0]) for s in STEP_RUNGS]
WIDTH_LEVELS = [
    (math.log(w) - _LOG_WIDTH[0]) / (_LOG_WIDTH[1] - _LOG_WIDTH[0]) for w in WIDTH_RUNGS
]


def encode(lr: float, steps: int, width: int) -> list[float]:
    """(LR, steps, width) -> the unit-cube inputs of the GP."""
    return [
        (math.log10(lr) - _LOG_LR[0]) / (_LOG_LR[1] - _LOG_LR[0]),
        (math.log(steps) - _LOG_STEPS[0]) / (_LOG_STEPS[1] - _LOG_STEPS[0]),
        (math.log(width) - _LOG_WIDTH[0]) / (_LOG_WIDTH[1] - _LOG_WIDTH[0]),
    ]


def decode_lr(x0: float) -> float:
    return 10.0 ** (_LOG_LR[0] + float(x0) * (_LOG_LR[1] - _LOG_LR[0]))


# --- cost ----------------------------------------------------------------------------------
def _bracket(x: torch.Tensor, knots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the right knot and the interpolation weight of ``x`` between knots."""
    idx = torch.searchsorted(knots, x.detach().clamp(0.0, 1.0).contiguous()).clamp(
        1, len(knots) - 1
    )
    left, right = knots[idx - 1], knots[idx]
    return idx, ((x - left) / (right - left)).clamp(0.0, 1.0)


class RungCostTable:
    """Dollars of a run at continuous fidelities: costbo's CostModel on the rung grid,
    interpolated bilinearly in log dollars (differentiable almost everywhere)."""

    def __init__(self, cost_model: CostModel) -> None:
        self.cost_model = cost_model
        self.models = [ModelShape.from_width(w) for w in WIDTH_RUNGS]
        self.s_knots = torch.tensor(STEP_LEVELS, dtype=DTYPE)
        self.w_knots = torch.tensor(WIDTH_LEVELS, dtype=DTYPE)
        self.refresh()

    def refresh(self) -> None:
        table = [
            [math.log(self.cost_model.predict(s, m).dollars) for m in self.models]
            for s in STEP_RUNGS
        ]
        self.log_dollars = torch.tensor(table, dtype=DTYPE)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        i, ts = _bracket(X[..., 1], self.s_knots)
        j, tw = _bracket(X[..., 2], self.w_knots)
        t = self.log_dollars
        value = (
            (1 - ts) * (1 - tw) * t[i - 1, j - 1]
            + (1 - ts) * tw * t[i - 1, j]
            + ts * (1 - tw) * t[i, j - 1]
            + ts * tw * t[i, j]
        )
        return value.exp().unsqueeze(-1)


# --- the loop ------------------------------------------------------------------------------
class QMFKGTuner:
    """The qMFKG loop's state: observations, cost model, and the BoTorch objects per ask."""

    def __init__(self, oracle: Oracle, seed: int, settings: KGSettings) -> None:
        self.oracle = oracle
        self.seed = seed
        self.settings = settings
        self.cost_model = CostModel(oracle.price_per_hour, reference_model=TARGET_MODEL)
        self.costs = RungCostTable(self.cost_model)
        self.X: list[list[float]] = []
        self.loss: list[float] = []  # nats; NaN where diverged
        self.model = None

    def targets(self) -> torch.Tensor:
        finite = [v for v in self.loss if math.isfinite(v)]
        worst = min(max(finite, default=math.log(VOCAB_SIZE)) + 1.0, math.log(VOCAB_SIZE))
        y = [v if math.isfinite(v) else worst for v in self.loss]
        return -torch.tensor(y, dtype=DTYPE).unsqueeze(-1)

    def fit(self) -> None:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskMultiFidelityGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        X = torch.tensor(self.X, dtype=DTYPE)
        model = SingleTaskMultiFidelityGP(
            X, self.targets(), data_fidelities=[1, 2], outcome_transform=Standardize(m=1)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options = {}
            if self.settings.fit_maxiter is not None:
                options = {"optimizer_kwargs": {"options": {"maxiter": self.settings.fit_maxiter}}}
            # degenerate data can make BoTorch give up: keep the prior hyperparameters then
            with contextlib.suppress(Exception):
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), **options)
        self.model = model

    def target_grid(self) -> torch.Tensor:
        grid = torch.linspace(0.0, 1.0, RECOMMENDATION_GRID, dtype=DTYPE).unsqueeze(-1)
        return torch.cat([grid, torch.ones(RECOMMENDATION_GRID, 2, dtype=DTYPE)], dim=-1)

    def recommend(self) -> float:
        grid = self.target_grid()
        with torch.no_grad():
            mean = self.model.posterior(grid).mean.squeeze(-1)
        return decode_lr(grid[int(mean.argmax()), 0])

    def affordable_rungs(self) -> list[tuple[int, int]]:
        remaining = self.oracle.remaining
        return [
            (s, w)
            for s in STEP_RUNGS
            for w in WIDTH_RUNGS
            if self.cost_model.predict(s, ModelShape.from_width(w)).upper_dollars <= remaining
        ]

    def propose(self, rungs: list[tuple[int, int]]) -> tuple[float, int, int]:
        from botorch.acquisition.cost_aware import InverseCostWeightedUtility
        from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
        from botorch.acquisition.utils import project_to_target_fidelity
        from botorch.models.deterministic import GenericDeterministicModel
        from botorch.optim.optimize import optimize_acqf

        settings = self.settings
        with torch.no_grad():
            current = self.model.posterior(self.target_grid()).mean.max()
        self.costs.refresh()
        # before the acquisition is built: BoTorch seeds its fantasy sampler from torch's global
        # generator then, so seeding later would leave the fantasies to the worker's history
        torch.manual_seed(self.seed * 1000 + len(self.X))
        utility = InverseCostWeightedUtility(cost_model=GenericDeterministicModel(self.costs))
        acq = qMultiFidelityKnowledgeGradient(
            model=self.model,
            num_fantasies=settings.num_fantasies,
            current_value=current,
            cost_aware_utility=utility,
            project=lambda X: project_to_target_fidelity(
                X, d=3, target_fidelities={1: 1.0, 2: 1.0}
            ),
        )
        bounds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=DTYPE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate, _ = optimize_acqf(
                acq,
                bounds=bounds,
                q=1,
                num_restarts=settings.num_restarts,
                raw_samples=settings.raw_samples,
                options={"batch_limit": settings.num_restarts, "maxiter": settings.maxiter},
            )
        x = candidate.squeeze(0).tolist()
        steps, width = min(
            rungs,
            key=lambda r: (encode(1.0, *r)[1] - x[1]) ** 2 + (encode(1.0, *r)[2] - x[2]) ** 2,
        )
        return decode_lr(x[0]), steps, width

    def run(self) -> float:
        oracle = self.oracle
        sobol = torch.quasirandom.SobolEngine(1, scramble=True, seed=self.seed)
        initial = [decode_lr(u) for u in sobol.draw(N_INITIAL).squeeze(-1).tolist()]
        while self.settings.max_runs is None or len(self.X) < self.settings.max_runs:
            rungs = self.affordable_rungs()
            if not rungs:
                break
            if len(self.X) < N_INITIAL:
                lr, steps, width = initial[len(self.X)], STEP_RUNGS[0], WIDTH_RUNGS[0]
                if (steps, width) not in rungs:
                    break
            else:
                torch.manual_seed(self.seed * 1000 + len(self.X))  # a failed fit's retries
                self.fit()
                lr, steps, width = self.propose(rungs)
                oracle.answer(self.recommend)
            try:
                result = oracle.run(lr, steps, ModelShape.from_width(width))
            except OverBudget:
                break
            self.X.append(encode(lr, steps, width))
            self.loss.append(result.val_loss)
            if not result.diverged:
                self.cost_model.observe(steps, result.model, result.seconds)
        if not self.X:
            return oracle.answer(math.sqrt(LR_BOUNDS[0] * LR_BOUNDS[1]))
        self.fit()
        return oracle.answer(self.recommend)


def qmfkg(oracle: Oracle, seed: int, settings: KGSettings | None = None) -> float:
    """BoTorch qMFKG per dollar, 64 fantasies, until no rung fits the budget."""
    with _single_thread():
        return QMFKGTuner(oracle, seed, settings or KGSettings()).run()


def qmfkg_quick(oracle: Oracle, seed: int) -> float:
    """qMFKG with tiny optimizer settings, for ``run.py --quick`` (checks that it runs)."""
    with _single_thread():
        return QMFKGTuner(oracle, seed, QUICK_SETTINGS).run()


class _single_thread:
    """One torch thread, as costbo's Study uses: the benchmark's workers share 2 cores."""

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


__all__ = ["KGSettings", "QMFKGTuner", "encode", "qmfkg", "qmfkg_quick"]
