"""Where costbo's low answers come from: the hedge of an expected-loss answer, or the optimum's
location itself.

costbo answers with the LR that minimizes the posterior *expected* full-scale loss. The
simulator's basins (like real ones) are steeper above the optimum than below it, so when the
optimum's location is uncertain by ``sd`` decades the expected-loss minimizer sits below the
optimum's most likely place: a deliberate hedge. The first table measures that offset on the
target basins of a family's landscapes (the optimum's location ~ Normal(best, sd)).

With ``--budget`` it also runs costbo (the benchmark's Study loop) on those landscapes and prints,
per landscape, the sd (decades) of the full-scale optimum's location the Study ends with, where
its drift model puts that optimum and where its answer is, each against the true best LR, and
the hedge the first table would predict at that sd. An answer that sits at the drift model's
optimum, both below the best LR, says the location is off, not the hedge.

    .venv/bin/python benchmarks/answer_bias.py --family calibrated --seeds 30
    .venv/bin/python benchmarks/answer_bias.py --seeds 6 --budget 5 --sds 0.1
    .venv/bin/python benchmarks/answer_bias.py --drift      # the landscapes' drift vs the prior's
    .venv/bin/python benchmarks/answer_bias.py --seeds 6 --budget 5 --sds 0.1 \
        --prior-steps-slope -0.00869 --prior-boost 0.012     # a weaker steps drift in the prior
    .venv/bin/python benchmarks/answer_bias.py --sweep benchmarks/results/costbo_runs.csv
    .venv/bin/python benchmarks/answer_bias.py --rungs --seeds 60   # extrapolation from true optima
    .venv/bin/python benchmarks/answer_bias.py --rungs --seeds 60 --prior-slope-sds 0.3 0.04

``--drift`` prints, per (steps, width) rung, how far the landscapes' best LR sits above the
target's (median over the seeds) minus how far costbo's prior drift says it does (decades): where
that is negative at the rungs a Study buys, a target located from those rungs by the prior's
drift comes out low, as far as the runs cannot tell a weaker drift from a lower target.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from costbo.gpt2 import VOCAB_SIZE  # noqa: E402
from costbo.sim import FAMILIES, sample_landscape  # noqa: E402


def target_best(landscape) -> float:
    """log10 of the landscape's best LR at its target."""
    target = landscape.target
    return math.log10(landscape.best_lr(target.steps, target.model))


def hedge(landscape, sd: float) -> float:
    """Expected-loss argmin minus the best LR at the target (decades) for a Normal(0, sd)
    uncertainty in the optimum's location."""
    target = landscape.target
    best = target_best(landscape)
    x = np.linspace(best - 1.5, best + 1.0, 1001)
    loss = landscape.val_losses(10.0**x, target.steps, target.model)
    loss = np.where(np.isfinite(loss), loss, math.log(VOCAB_SIZE))  # a diverged final run
    shifts = np.linspace(-3.0 * sd, 3.0 * sd, 61)
    weights = np.exp(-0.5 * (shifts / sd) ** 2)
    weights /= weights.sum()
    expected = sum(w * np.interp(x - d, x, loss) for d, w in zip(shifts, weights, strict=True))
    near = np.abs(x - best) < 0.5
    return float(x[near][expected[near].argmin()] - best)


def costbo_end(landscape, budget: float, seed: int, prior_changes: dict | None = None) -> dict:
    """Run the benchmark's costbo loop; the final optimum sd, drift optimum and answer (decades,
    the last two minus the true best LR), the drift optimum it would have had from the true
    optima of the rungs it bought (``true_rungs``) and how far it misread those (``misread``:
    estimate - true, weighted by the rungs' 1 / sd^2). ``prior_changes`` replace fields of the
    Study's published-laws prior (a diagnostic: does another drift prior move the located
    optimum?)."""
    from benchmarks.strategies.costbo_study import laws_prior, tune
    from benchmarks.strategies.oracle import Oracle

    best = target_best(landscape)
    prior = laws_prior(landscape.target, prior_changes) if prior_changes else None
    study = tune(Oracle(landscape, budget), seed, prior=prior)
    answer = study.recommend()
    post = study._fit()["posterior"]  # the Study's cached fit; no public accessor yet
    drift = post.drift
    return {
        "sd": float(drift.sd(0.0, 0.0)),
        "drift": float(drift.optimum(0.0, 0.0)) - best,
        **rung_reading(post.rungs, drift.prior, landscape),
        "answer": math.log10(answer.lr) - best,
        "regret": landscape.regret(answer.lr),
    }


def rung_reading(rungs, prior, landscape, optimum=None) -> dict:
    """The drift model refitted to ``rungs`` (a Study's ``RungOptimum``s) with their sds kept but
    their optima replaced by ``optimum(steps, model)`` (default: the landscape's true realized
    ones): its target optimum minus the true best LR (``true_rungs``, decades), and how far the
    rungs' estimates are off those optima (``misread``: estimate - true, weighted by 1 / sd^2)."""
    from costbo.drift import OptimumDrift

    optimum = optimum or landscape.best_lr
    best = target_best(landscape)
    true = [dataclasses.replace(r, log10_lr=math.log10(optimum(*r.key))) for r in rungs]
    if not true:
        return {"true_rungs": math.nan, "misread": math.nan}
    weights = np.array([r.sd**-2 for r in rungs])
    misread = np.array([r.log10_lr - t.log10_lr for r, t in zip(rungs, true, strict=True)])
    return {
        "true_rungs": float(OptimumDrift(prior).fit(true).optimum(0.0, 0.0)) - best,
        "misread": float((weights * misread).sum() / weights.sum()),
    }


DRIFT_STEPS = (50, 100, 200, 500, 1000, 2000)
DRIFT_WIDTHS = (64, 128, 256, 512, 768)


def drift_table(landscapes) -> str:
    """Markdown: median landscape drift minus the prior's drift at each rung (decades)."""
    from costbo.gpt2 import ModelShape
    from costbo.priors import LearningRatePrior

    prior = LearningRatePrior(target_log10_lr=0.0)  # the drift terms do not depend on it
    target = landscapes[0].target
    bests = [target_best(land) for land in landscapes]
    lines = [
        "| steps \\ width | " + " | ".join(str(w) for w in DRIFT_WIDTHS) + " |",
        "|---|" + "---|" * len(DRIFT_WIDTHS),
    ]
    for steps in DRIFT_STEPS:
        cells = []
        for width in DRIFT_WIDTHS:
            model = ModelShape.from_width(width)
            drift = [
                math.log10(land.best_lr(steps, model)) - best
                for land, best in zip(landscapes, bests, strict=True)
            ]
            s, w = math.log(steps / target.steps), math.log(width / target.model.width)
            cells.append(f"{np.median(drift):+.2f} ({np.median(drift) - prior.optimum(s, w):+.2f})")
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


RUNG_SETS = {"all 48": None, "<= 1000 steps": 1000, "<= 200 steps": 200}  # non-target rungs


def rung_extrapolation(
    landscapes, runs_per_rung: int = 3, prior_changes: dict | None = None
) -> str:
    """Markdown: the drift model fed the landscapes' true rung optima (no runs, no loss
    surrogate), its target optimum minus the true best LR (decades; mean, median), per set of
    rungs; fed the realized optima (roughness included) and the smooth trend's. Each rung counts
    as pinned by ``runs_per_rung`` bracketing runs (``costbo.drift.rung_optimum_sd``).

    The smooth column is the prior's drift against the landscapes' (extrapolation alone); the
    gap to the realized column is the roughness: a rung's argmin sits off its trend, and so does
    the target's, by a different amount no rung can show. ``prior_changes`` replace fields of
    the published-laws prior (e.g. wider slope sds)."""
    from benchmarks.strategies.costbo_study import laws_prior
    from benchmarks.strategies.oracle import STEP_RUNGS, WIDTH_RUNGS
    from costbo.drift import OptimumDrift, RungOptimum, rung_optimum_sd
    from costbo.gpt2 import ModelShape

    target = landscapes[0].target
    prior = laws_prior(target, prior_changes)
    sd = rung_optimum_sd(runs_per_rung, True)
    lines = [
        "| rungs | realized optima: mean, median | smooth trend: mean, median | target sd |",
        "|---|---|---|---|",
    ]
    for name, max_steps in RUNG_SETS.items():
        fidelities = [
            (steps, ModelShape.from_width(width))
            for steps in STEP_RUNGS
            for width in WIDTH_RUNGS
            if (steps, width) != (target.steps, target.model.width)
            and (max_steps is None or steps <= max_steps)
        ]
        errors = {"realized": [], "trend": []}
        for land in landscapes:
            best = target_best(land)
            for kind, optimum in (("realized", land.best_lr), ("trend", land.trend_best_lr)):
                rungs = [
                    RungOptimum(
                        math.log(steps / target.steps),
                        math.log(model.width / target.model.width),
                        math.log10(optimum(steps, model)),
                        sd,
                    )
                    for steps, model in fidelities
                ]
                drift = OptimumDrift(prior).fit(rungs)
                errors[kind].append(float(drift.optimum(0.0, 0.0)) - best)
        cells = [f"{np.mean(e):+.3f}, {np.median(e):+.3f}" for e in errors.values()]
        cells.append(f"{drift.sd(0.0, 0.0):.3f}")  # the same for every landscape: sds only
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_offsets(path: Path, centre: float = 1.45e-3) -> str:
    """Markdown: per budget, the answers' offset from the best LR (decades) regressed on how far
    the best LR sits from the prior's centre (``centre``, the published laws' 1.45e-3), and the
    median offset of the landscapes more than 0.1 decades below / above that centre."""
    import pandas as pd

    rows = pd.read_csv(path)
    rows = rows[(rows["quick"] == 0) & rows["lr"].notna()]
    offset = np.log10(rows["lr"] / rows["best_lr"])
    dev = np.log10(rows["best_lr"] / centre)
    lines = [
        "| budget | slope | intercept | below centre: n, median offset | above: n, median offset |",
        "|---|---|---|---|---|",
    ]
    for budget in sorted(rows["budget"].unique()):
        sel = rows["budget"] == budget
        slope, intercept = np.polyfit(dev[sel], offset[sel], 1)
        low, high = sel & (dev < -0.1), sel & (dev > 0.1)
        lines.append(
            f"| ${budget:g} | {slope:+.2f} | {intercept:+.3f} | {int(low.sum())}, "
            f"{np.median(offset[low]):+.3f} | {int(high.sum())}, {np.median(offset[high]):+.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="calibrated", choices=FAMILIES)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--sds", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    parser.add_argument("--budget", type=float, help="also run costbo with this many dollars")
    parser.add_argument("--drift", action="store_true", help="only the drift-vs-prior table")
    parser.add_argument("--sweep", type=Path, help="only the offsets of a run.py CSV's answers")
    parser.add_argument(
        "--rungs", action="store_true", help="only the drift model fed the true rung optima"
    )
    parser.add_argument(
        "--prior-slope-sds",
        type=float,
        nargs=2,
        metavar=("WIDTH", "STEPS"),
        help="with --rungs: the prior's width and steps slope sds (default 0.15 0.02 decades "
        "per ln width / ln steps)",
    )
    parser.add_argument(
        "--prior-steps-slope",
        type=float,
        help="with --budget: the prior's steps slope (decades per ln steps; default -0.0195)",
    )
    parser.add_argument(
        "--prior-boost",
        type=float,
        help="with --budget: the prior's short-run boost (decades per unit; default 0.015)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: give at least 1 landscape, e.g. --seeds 30")
    if args.prior_slope_sds and min(args.prior_slope_sds) <= 0:
        parser.error(f"--prior-slope-sds {' '.join(map(str, args.prior_slope_sds))}: both sds "
                     "must be > 0 (decades per ln width, per ln steps), e.g. 0.3 0.04")  # fmt: skip
    if args.sweep:
        if not args.sweep.is_file():
            parser.error(f"--sweep {args.sweep}: no such CSV; pass a run.py result, e.g. "
                         "benchmarks/results/costbo_runs.csv")  # fmt: skip
        print(sweep_offsets(args.sweep))
        return
    landscapes = [sample_landscape(args.family, s) for s in range(args.seeds)]
    if args.rungs:
        print(f"Drift model fed the true rung optima of {args.seeds} {args.family} landscapes: "
              "its target optimum - best LR (decades)\n")  # fmt: skip
        changes = None
        if args.prior_slope_sds:
            width_sd, steps_sd = args.prior_slope_sds
            changes = {"width_slope_sd": width_sd, "steps_slope_sd": steps_sd}
        print(rung_extrapolation(landscapes, prior_changes=changes))
        return
    if args.drift:
        print(f"Best LR above the target's (decades, median of {args.seeds} {args.family} "
              "landscapes), and in brackets minus costbo's prior drift:\n")  # fmt: skip
        print(drift_table(landscapes))
        return
    print(f"| optimum sd (decades) | expected-loss answer - best LR (decades, median of "
          f"{args.seeds} {args.family} landscapes) |")  # fmt: skip
    print("|---|---|")
    for sd in args.sds:
        offsets = [hedge(landscape, sd) for landscape in landscapes]
        print(f"| {sd:g} | {np.median(offsets):+.3f} |")
    if args.budget:
        print(f"\n| seed | costbo's optimum sd at ${args.budget:g} | drift optimum - best | "
              "answer - best | hedge at that sd | regret (nats) | drift from its rungs' true "
              "optima - best | rungs misread by |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        changes = {
            name: value
            for name, value in (
                ("steps_slope", args.prior_steps_slope),
                ("short_run_boost", args.prior_boost),
            )
            if value is not None
        }
        ends = []
        for seed, landscape in enumerate(landscapes):
            end = costbo_end(landscape, args.budget, seed, changes)
            ends.append(end)
            at_sd = hedge(landscape, end["sd"])
            cells = f"{end['sd']:.3f} | {end['drift']:+.3f} | {end['answer']:+.3f} | {at_sd:+.3f}"
            more = f"{end['true_rungs']:+.3f} | {end['misread']:+.3f}"
            print(f"| {seed} | {cells} | {end['regret']:.4f} | {more} |", flush=True)
        med = {k: np.median([e[k] for e in ends]) for k in ends[0]}
        cells = f"{med['sd']:.3f} | {med['drift']:+.3f} | {med['answer']:+.3f} |"
        more = f"{med['true_rungs']:+.3f} | {med['misread']:+.3f}"
        print(f"| median | {cells} | {med['regret']:.4f} | {more} |")


if __name__ == "__main__":
    main()
