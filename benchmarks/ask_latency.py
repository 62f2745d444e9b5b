"""How long one ``Study.ask()`` takes at 10, 50, 100 and 200 observations, against BoTorch's
qMultiFidelityKnowledgeGradient on the same data.

The history comes from a simulated landscape (``costbo.sim``, calibrated family, seed 0): runs at
random rungs below the target (steps 50 .. 2000, widths 64 .. 512, cheap ones more often) with
LRs within a factor ~10 of each rung's optimum, some of which diverge. They are entered with
``study.ask(lr=..., steps=..., model=...)`` and ``tell``, so building the history costs no
acquisition. The budget is huge, so every one of the 49 rungs stays a candidate (the slowest
case). Then:

- costbo: ``repeats`` consecutive asks, each told before the next (as in a real loop, so each
  ask refits the surrogate on one more observation): n, n+1, ...; the median is reported.
- qMFKG, as BoTorch's multi-fidelity tutorial sets it up on the same observations (log10 LR and
  two data fidelities in [0, 1], ``SingleTaskMultiFidelityGP(data_fidelities=[1, 2])``, 64
  fantasies, ``InverseCostWeightedUtility`` over costbo's cost model, project to target):
  fit + the best posterior mean at the target + optimizing the acquisition, either over the
  continuous relaxation of the fidelities (``optimize_acqf``, then snapped to a rung: what
  benchmarks/run.py uses) or exactly over the 49 rungs with ``optimize_acqf_mixed`` (the
  tutorial's discrete-fidelity recipe, ~50x slower).

Both run single-threaded (costbo's Study does so itself; torch is set to 1 thread for BoTorch too)
and the 1-minute load average is printed, since the machine is shared.

    .venv/bin/python benchmarks/ask_latency.py                         # continuous qMFKG
    .venv/bin/python benchmarks/ask_latency.py --kg-optimizer both --mixed-sizes 10 50
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.strategies.costbo_study import default_space  # noqa: E402
from benchmarks.strategies.oracle import STEP_RUNGS, WIDTH_RUNGS, Oracle  # noqa: E402
from benchmarks.strategies.qmfkg import (  # noqa: E402
    STEP_LEVELS,
    WIDTH_LEVELS,
    KGSettings,
    QMFKGTuner,
    encode,
)
from costbo.gpt2 import ModelShape  # noqa: E402
from costbo.sim import sample_landscape  # noqa: E402
from costbo.study import Study  # noqa: E402

SIZES = (10, 50, 100, 200)
HISTORY_STEPS = (50, 100, 200, 500, 1000, 2000)
HISTORY_WIDTHS = (64, 128, 192, 256, 384, 512)


def synthetic_history(n: int, seed: int = 0) -> list[tuple[float, int, int, float, float]]:
    """``n`` runs (lr, steps, width, val_loss or NaN, seconds) on a calibrated landscape."""
    ls = sample_landscape("calibrated", seed)
    rng = np.random.default_rng([seed, n])
    step_p = np.array([1 / s for s in HISTORY_STEPS]) ** 0.5
    width_p = np.array([1 / w for w in HISTORY_WIDTHS]) ** 0.5
    runs = []
    for _ in range(n):
        steps = int(rng.choice(HISTORY_STEPS, p=step_p / step_p.sum()))
        width = int(rng.choice(HISTORY_WIDTHS, p=width_p / width_p.sum()))
        model = ModelShape.from_width(width)
        lr = ls.best_lr(steps, model) * math.exp(rng.uniform(-2.3, 2.3))
        lr = min(max(lr, 1e-5), 1e-1)
        loss = ls.val_loss(lr, steps, model)
        seconds = ls.run_seconds(steps, model)
        if not math.isfinite(loss):
            seconds *= 0.2  # killed early, as the runner does
        runs.append((lr, steps, width, loss, seconds))
    return runs


def time_costbo(n: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` consecutive asks after n, n+1, ... told observations."""
    ls = sample_landscape("calibrated", 0)
    study = Study(default_space(), budget=1e6, price_per_hour=1.5, seed=0)
    for lr, steps, width, loss, seconds in synthetic_history(n):
        trial = study.ask(lr=lr, steps=steps, model=width)
        if math.isfinite(loss):
            study.tell(trial.id, val_loss=loss, seconds=seconds)
        else:
            study.tell(trial.id, diverged=True, seconds=seconds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        trial = study.ask()
        times.append(time.perf_counter() - started)
        loss = ls.val_loss(trial.lr, trial.steps, trial.model)
        seconds = ls.run_seconds(trial.steps, trial.model)
        if math.isfinite(loss):
            study.tell(trial.id, val_loss=loss, seconds=seconds)
        else:
            study.tell(trial.id, diverged=True, seconds=0.2 * seconds)
    return times


def time_qmfkg(n: int, optimizer: str, settings: KGSettings) -> float:
    """Seconds of one qMFKG decision on the same n observations: fit, current value, optimize."""
    from botorch.acquisition.cost_aware import InverseCostWeightedUtility
    from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
    from botorch.acquisition.utils import project_to_target_fidelity
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.optim.optimize import optimize_acqf_mixed

    tuner = QMFKGTuner(Oracle(sample_landscape("calibrated", 0), 1e6), 0, settings)
    for lr, steps, width, loss, seconds in synthetic_history(n):
        tuner.X.append(encode(lr, steps, width))
        tuner.loss.append(loss)
        if math.isfinite(loss):
            tuner.cost_model.observe(steps, ModelShape.from_width(width), seconds)
    rungs = [(s, w) for s in STEP_RUNGS for w in WIDTH_RUNGS]
    started = time.perf_counter()
    tuner.fit()
    if optimizer == "continuous":
        tuner.propose(rungs)
        return time.perf_counter() - started
    with torch.no_grad():
        current = tuner.model.posterior(tuner.target_grid()).mean.max()
    tuner.costs.refresh()
    acq = qMultiFidelityKnowledgeGradient(
        model=tuner.model,
        num_fantasies=settings.num_fantasies,
        current_value=current,
        cost_aware_utility=InverseCostWeightedUtility(GenericDeterministicModel(tuner.costs)),
        project=lambda X: project_to_target_fidelity(X, d=3, target_fidelities={1: 1.0, 2: 1.0}),
    )
    bounds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.double)
    fixed = [{1: s, 2: w} for s in STEP_LEVELS for w in WIDTH_LEVELS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize_acqf_mixed(
            acq,
            bounds=bounds,
            q=1,
            num_restarts=settings.num_restarts,
            raw_samples=settings.raw_samples,
            fixed_features_list=fixed,
            options={"batch_limit": settings.num_restarts, "maxiter": settings.maxiter},
        )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="costbo asks per size")
    parser.add_argument(
        "--kg-optimizer", choices=["continuous", "mixed", "both"], default="continuous"
    )
    parser.add_argument(
        "--mixed-sizes",
        type=int,
        nargs="+",
        default=None,
        help="sizes for optimize_acqf_mixed (default: --sizes)",
    )
    parser.add_argument("--no-kg", action="store_true", help="time costbo only")
    parser.add_argument("--fantasies", type=int, default=64)
    parser.add_argument("--restarts", type=int, default=KGSettings().num_restarts)
    parser.add_argument("--raw-samples", type=int, default=KGSettings().raw_samples)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    settings = KGSettings(
        num_fantasies=args.fantasies, num_restarts=args.restarts, raw_samples=args.raw_samples
    )
    print(
        f"torch threads 1; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"qMFKG: {settings.num_fantasies} fantasies, {settings.num_restarts} restarts, "
        f"{settings.raw_samples} raw samples, maxiter {settings.maxiter}"
    )
    header = f"{'obs':>5} {'costbo ask (median s)':>22} {'min..max':>14}"
    optimizers = ["continuous", "mixed"] if args.kg_optimizer == "both" else [args.kg_optimizer]
    if not args.no_kg:
        for opt in optimizers:
            header += f" {'qMFKG ' + opt + ' (s)':>22} {'ratio':>7}"
    print(header + "   load")
    for n in args.sizes:
        times = time_costbo(n, args.repeats)
        median = statistics.median(times)
        line = f"{n:>5} {median:>22.3f} {min(times):>6.3f}..{max(times):<6.3f}"
        if not args.no_kg:
            for opt in optimizers:
                if opt == "mixed" and args.mixed_sizes is not None and n not in args.mixed_sizes:
                    line += f" {'-':>22} {'-':>7}"
                    continue
                kg = time_qmfkg(n, opt, settings)
                line += f" {kg:>22.2f} {kg / median:>6.0f}x"
        print(line + f"   {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
