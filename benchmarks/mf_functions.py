"""The standard multi-fidelity test functions: costbo's acquisition against BoTorch's qMFKG.

costbo's ``Study`` cannot run these functions: its search space is one max LR x (steps, width)
rungs, and its surrogate is built for that (a prior band for the LR optimum from scaling laws,
a bowl in log LR whose optimum drifts with log steps and log width, a divergence model).
AugmentedHartmann has 6 design dimensions; AugmentedBranin has 2, and a 1-D slice of it with x1
posing as log LR would be a bimodal curve (the cos term) that no LR prior describes, so a
"costbo on Branin" number would measure a misuse of its prior, not its machinery.

What can be compared honestly is costbo's acquisition machinery, which is generic: exhaustive,
exact scoring of a discrete candidate set (design points x fidelity levels) by a one-step
lookahead on the minimum of the target-fidelity posterior mean (``costbo.acquisition.
kg_per_dollar``, Gauss-Hermite over the observation), per unit cost. Both methods share
everything else: the same GP (BoTorch's ``SingleTaskMultiFidelityGP`` with the fidelity as a
data fidelity, ``Standardize``, refitted every iteration), the same initial design, the same
discrete fidelity levels, the same cost function, the same budget rule and the same
recommendation (the maximizer of the posterior mean at the target fidelity, via
``optimize_acqf``, BoTorch's ``project to target``). They differ only in the acquisition:

- ``qmfkg``: ``qMultiFidelityKnowledgeGradient`` with ``InverseCostWeightedUtility`` (one-shot KG,
  ``NUM_FANTASIES`` fantasies, ``project_to_target_fidelity``) optimized with ``optimize_acqf``
  over the continuous fidelity and then snapped to the nearest affordable level;
- ``costbo_kg``: ``kg_per_dollar`` over ``N_CANDIDATES`` scrambled-Sobol design points (plus the
  current recommendation) x every affordable level; the target slice is the same design points
  at fidelity 1.

Problems (published settings; regret is measured at fidelity 1):
- AugmentedBranin (minimize, optimum 0.397887; the minimizer moves with s: the s = 0 minimizer
  has regret ~0.97 at s = 1), fidelity levels s in {0, 0.25, 0.5, 0.75, 1}, Dragonfly's
  multi-fidelity Branin cost 0.05 + 0.95 s^1.5, budget 4 (four target evaluations), 4 initial
  points at random levels. Both acquisitions buy mostly s = 0 (20x cheaper than s = 1), so the
  budget is kept small: ~30 evaluations, and qMFKG takes ~5 s for each on this machine.
- AugmentedHartmann (the tutorial maximizes its negation; here its minimization form, optimum
  -3.32237), levels {0.5, 0.75, 1} and cost 5 + s as in BoTorch's discrete multi-fidelity KG
  tutorial, budget 120, 8 initial points at random levels.

    .venv/bin/python benchmarks/mf_functions.py --seeds 20           # resumable CSV + figure
    .venv/bin/python benchmarks/mf_functions.py --report
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DTYPE = torch.double
NUM_FANTASIES = 32
N_CANDIDATES = 256
METHODS = ("qmfkg", "costbo_kg")
FIELDS = [
    "problem",
    "method",
    "seed",
    "final_regret",
    "spent",
    "evaluations",
    "decide_s_mean",
    "wall_s",
    "load_avg",
    "trajectory",
]


@dataclass(frozen=True)
class Problem:
    """A multi-fidelity test problem posed as minimization of ``loss(x, s)`` on [0, 1]^d x
    levels; ``cost(s)`` per evaluation; regret = loss(x, 1) - ``best_loss``."""

    name: str
    dim: int  # design dimensions (the fidelity comes last)
    levels: tuple[float, ...]
    budget: float
    n_initial: int
    best_loss: float

    def function(self):
        from botorch.test_functions.multi_fidelity import AugmentedBranin, AugmentedHartmann

        return AugmentedBranin() if self.name == "branin" else AugmentedHartmann()

    def loss(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Loss at unit-cube design points ``x`` (n x dim) and fidelities ``s`` (n)."""
        f = self.function()
        lo, hi = f.bounds[0, : self.dim].to(DTYPE), f.bounds[1, : self.dim].to(DTYPE)
        X = torch.cat([lo + x * (hi - lo), s.unsqueeze(-1)], dim=-1)
        return f.evaluate_true(X)  # both in minimization form (Hartmann's optimum is -3.32237)

    def cost(self, s):
        """Cost of one evaluation at fidelity ``s`` (a float, or a tensor elementwise)."""
        if self.name == "branin":
            return 0.05 + 0.95 * s**1.5  # Dragonfly's multi-fidelity Branin
        return 5.0 + s  # BoTorch's tutorial


PROBLEMS = {
    "branin": Problem("branin", 2, (0.0, 0.25, 0.5, 0.75, 1.0), 4.0, 4, 0.397887),
    "hartmann": Problem("hartmann", 6, (0.5, 0.75, 1.0), 120.0, 8, -3.32237),
}


# --- the shared model and recommendation ---------------------------------------------------
def fit_model(X: torch.Tensor, loss: torch.Tensor, dim: int):
    """SingleTaskMultiFidelityGP on -loss (BoTorch maximizes), fidelity column ``dim``."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskMultiFidelityGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    model = SingleTaskMultiFidelityGP(
        X, -loss.unsqueeze(-1), data_fidelities=[dim], outcome_transform=Standardize(m=1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # degenerate data can make BoTorch give up: keep the prior hyperparameters then
        with contextlib.suppress(Exception):
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def recommend(model, dim: int) -> torch.Tensor:
    """The design point maximizing the posterior mean at fidelity 1 (BoTorch's tutorial)."""
    from botorch.acquisition import PosteriorMean
    from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
    from botorch.optim.optimize import optimize_acqf

    acq = FixedFeatureAcquisitionFunction(
        PosteriorMean(model), d=dim + 1, columns=[dim], values=[1]
    )
    bounds = torch.stack([torch.zeros(dim, dtype=DTYPE), torch.ones(dim, dtype=DTYPE)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, _ = optimize_acqf(
            acq,
            bounds=bounds,
            q=1,
            num_restarts=4,
            raw_samples=256,
            options={"batch_limit": 4, "maxiter": 100},
        )
    return x.squeeze(0)


# --- the two acquisitions ------------------------------------------------------------------
def propose_qmfkg(model, problem: Problem, levels: list[float], seed: int) -> tuple:
    from botorch.acquisition import PosteriorMean
    from botorch.acquisition.cost_aware import InverseCostWeightedUtility
    from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
    from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
    from botorch.acquisition.utils import project_to_target_fidelity
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.optim.optimize import optimize_acqf

    d = problem.dim
    bounds = torch.stack([torch.zeros(d + 1, dtype=DTYPE), torch.ones(d + 1, dtype=DTYPE)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        current_acq = FixedFeatureAcquisitionFunction(
            PosteriorMean(model), d=d + 1, columns=[d], values=[1]
        )
        _, current = optimize_acqf(
            current_acq,
            bounds=bounds[:, :d],
            q=1,
            num_restarts=2,
            raw_samples=128,
            options={"maxiter": 100},
        )
        cost = GenericDeterministicModel(lambda X: problem.cost(X[..., d:].clamp_min(0.0)))
        acq = qMultiFidelityKnowledgeGradient(
            model=model,
            num_fantasies=NUM_FANTASIES,
            current_value=current,
            cost_aware_utility=InverseCostWeightedUtility(cost_model=cost),
            project=lambda X: project_to_target_fidelity(X, d=d + 1, target_fidelities={d: 1.0}),
        )
        lo = min(levels)
        bounds[0, d] = lo  # the fidelity's range is that of the affordable levels
        bounds[1, d] = max(levels)
        x, _ = optimize_acqf(
            acq,
            bounds=bounds,
            q=1,
            num_restarts=2,
            raw_samples=32,
            options={"batch_limit": 2, "maxiter": 50},
        )
    x = x.squeeze(0)
    s = min(levels, key=lambda v: abs(v - float(x[d])))
    return x[:d], s


class _Adapter:
    """A BoTorch model's posterior of the *loss* in the interface costbo's acquisition uses
    (``mean``, ``var``, ``cov``)."""

    def __init__(self, model) -> None:
        self.model = model

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -self.model.posterior(z).mean.squeeze(-1)

    def var(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.posterior(z).variance.squeeze(-1).clamp_min(1e-12)

    def cov(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            full = self.model.posterior(torch.cat([za, zb])).mvn.covariance_matrix
        return full[: za.shape[0], za.shape[0] :]

    def noise(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            noisy = self.model.posterior(z, observation_noise=True).variance.squeeze(-1)
        return (noisy - self.var(z)).clamp_min(1e-12)


def propose_costbo_kg(model, problem: Problem, levels: list[float], seed: int, incumbent):
    from costbo.acquisition import Candidates, TargetSlice, kg_per_dollar

    d = problem.dim
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
    design = torch.cat([sobol.draw(N_CANDIDATES, dtype=DTYPE), incumbent.unsqueeze(0)])
    post = _Adapter(model)
    m = design.shape[0]
    target_z = torch.cat([design, torch.ones(m, 1, dtype=DTYPE)], dim=-1)
    target = TargetSlice(
        z=target_z, log10_lr=np.zeros(m), p_diverge=np.zeros(m), divergence_loss=0.0
    )
    best_value, best = -math.inf, None
    for s in levels:
        z = torch.cat([design, torch.full((m, 1), s, dtype=DTYPE)], dim=-1)
        cand = Candidates(
            z=z,
            log10_lr=np.zeros(m),
            p_diverge=np.zeros(m),
            dollars=np.full(m, problem.cost(s)),
            noise=post.noise(z).numpy(),
        )
        values = kg_per_dollar(post, cand, target)
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_value, best = float(values[i]), (design[i], s)
    return best


# --- one run -------------------------------------------------------------------------------
def run_one(problem_name: str, method: str, seed: int) -> dict:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]
    d = problem.dim
    rng = np.random.default_rng([seed, 0x3F])
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
    X0 = sobol.draw(problem.n_initial, dtype=DTYPE)
    s0 = torch.tensor(rng.choice(problem.levels, problem.n_initial), dtype=DTYPE)
    X = torch.cat([X0, s0.unsqueeze(-1)], dim=-1)
    y = problem.loss(X0, s0)
    spent = sum(problem.cost(float(s)) for s in s0)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    trajectory, decide = [], []
    while True:
        # Every random draw of a decision (the fit's retries, the optimizers' random starts,
        # qMFKG's fantasy sampler, which BoTorch seeds from torch's global generator when it is
        # built) follows from (seed, evaluations so far), not from what the worker ran before.
        torch.manual_seed(seed * 1000 + len(y))
        model = fit_model(X, y, d)
        incumbent = recommend(model, d)
        regret = float(problem.loss(incumbent.unsqueeze(0), torch.ones(1, dtype=DTYPE))[0])
        trajectory.append((round(spent, 4), regret - problem.best_loss))
        levels = [s for s in problem.levels if problem.cost(s) <= problem.budget - spent + 1e-9]
        if not levels:
            break
        t = time.perf_counter()
        if method == "qmfkg":
            x, s = propose_qmfkg(model, problem, levels, seed * 1000 + len(y))
        else:
            x, s = propose_costbo_kg(model, problem, levels, seed * 1000 + len(y), incumbent)
        decide.append(time.perf_counter() - t)
        value = problem.loss(x.unsqueeze(0), torch.tensor([s], dtype=DTYPE))
        if os.environ.get("MF_VERBOSE"):
            print(
                f"  {method} n={len(y)} s={s} regret={regret - problem.best_loss:.4f} "
                f"decide {decide[-1]:.1f}s spent {spent:.2f}",
                flush=True,
            )
        X = torch.cat([X, torch.cat([x, torch.tensor([s], dtype=DTYPE)]).unsqueeze(0)])
        y = torch.cat([y, value])
        spent += problem.cost(s)
    return {
        "problem": problem_name,
        "method": method,
        "seed": seed,
        "final_regret": trajectory[-1][1],
        "spent": spent,
        "evaluations": len(y),
        "decide_s_mean": float(np.mean(decide)) if decide else 0.0,
        "wall_s": time.perf_counter() - started,
        "load_avg": load,
        "trajectory": json.dumps(trajectory),
    }


# --- report --------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def regret_at(trajectory: list, cost: float) -> float:
    value = trajectory[0][1]
    for spent, regret in trajectory:
        if spent <= cost + 1e-9:
            value = regret
    return value


def summarize(rows: list[dict]) -> str:
    lines = [
        "| problem | method | seeds | median regret at 50% / 75% / 100% of the budget | "
        "p90 at 100% | evaluations (median) | decide s (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, problem in PROBLEMS.items():
        for method in METHODS:
            sel = [r for r in rows if r["problem"] == name and r["method"] == method]
            if not sel:
                continue
            trajs = [json.loads(r["trajectory"]) for r in sel]
            cells = []
            for frac in (0.5, 0.75, 1.0):
                cells.append(
                    f"{np.median([regret_at(t, frac * problem.budget) for t in trajs]):.4f}"
                )
            final = [regret_at(t, problem.budget) for t in trajs]
            lines.append(
                f"| {name} | {method} | {len(sel)} | {' / '.join(cells)} | "
                f"{np.quantile(final, 0.9):.4f} | "
                f"{np.median([int(r['evaluations']) for r in sel]):g} | "
                f"{np.mean([float(r['decide_s_mean']) for r in sel]):.2f} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(11, 4.5))
    for ax, (name, problem) in zip(axes, PROBLEMS.items(), strict=True):
        grid = np.linspace(0, problem.budget, 121)
        for method, color in zip(METHODS, ("tab:orange", "tab:blue"), strict=True):
            trajs = [
                json.loads(r["trajectory"])
                for r in rows
                if r["problem"] == name and r["method"] == method
            ]
            if not trajs:
                continue
            curves = np.array([[regret_at(t, c) for c in grid] for t in trajs])
            ax.plot(
                grid,
                np.maximum(np.median(curves, axis=0), 1e-6),
                color=color,
                label=f"{method} median ({len(trajs)} seeds)",
            )
            ax.fill_between(
                grid,
                np.maximum(np.quantile(curves, 0.25, axis=0), 1e-6),
                np.maximum(np.quantile(curves, 0.75, axis=0), 1e-6),
                color=color,
                alpha=0.2,
            )
        ax.set_yscale("log")
        ax.set_xlabel("cumulative cost")
        ax.set_ylabel("regret at fidelity 1")
        ax.set_title(f"Augmented{name.capitalize()}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "mf_functions.csv")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        done = {(r["problem"], r["method"], int(r["seed"])) for r in read_rows(args.out)}
        jobs = [
            (p, m, s)
            for s in range(args.seeds)
            for p in args.problems
            for m in args.methods
            if (p, m, s) not in done
        ]
        print(f"{len(jobs)} jobs ({len(done)} already in {args.out})", flush=True)
        with ProcessPoolExecutor(max_workers=max(1, min(args.workers, 2))) as pool:
            futures = [pool.submit(run_one, *job) for job in jobs]
            for future in as_completed(futures):
                row = future.result()
                new = not args.out.exists()
                with args.out.open("a", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                print(
                    f"{row['problem']:9s} {row['method']:10s} s{row['seed']:<3d} regret "
                    f"{row['final_regret']:.4f} after {row['evaluations']} evaluations, "
                    f"decide {row['decide_s_mean']:.2f}s, wall {row['wall_s']:.0f}s",
                    flush=True,
                )
    rows = read_rows(args.out)
    print(summarize(rows))
    figure = args.out.with_suffix(".png")
    plot(rows, figure)
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
