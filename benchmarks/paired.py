"""Paired comparison of methods on the landscapes all of them have finished.

    .venv/bin/python benchmarks/paired.py results/runs.csv results/costbo_runs.csv \
        results/variants_runs.csv

Reads benchmark CSVs (``run.py``'s rows), keeps the (family, seed, budget) jobs that every method
named (default: all in the files) has finished without error, and prints per budget the number
of landscapes, median and 90th-percentile full-scale regret (nats), the share of answers that
diverge at full scale, and per family the median. A summary over different landscapes would
compare luck; this one compares methods.

``--against costbo`` adds, per budget, each other method's median against that one's: the
difference of medians with a 90% paired bootstrap interval, the share of landscapes where
the named method's regret is lower and how many where it is higher (issue 3's "$5: never worse
than the 6e-4 default" is that count against ``default_6e-4``). Both methods' regrets are
resampled together, so a shared hard landscape counts once for both, and by seed: the families
of one seed share that seed's draws (best LR, basin, roughness: ``costbo.sim.landscape``), so
their landscapes are not independent, and resampling them one by one would make the interval
too narrow. An interval that contains 0 is a difference the landscapes measured cannot tell
from luck.

``--seeds 30 59`` keeps only those seeds (inclusive), e.g. landscapes no engine decision was
judged on; ``--families calibrated`` only that family. The summary also pools the families as
issue 3's goal names them: the calibrated family, and the misspecified ones together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from costbo.sim import FAMILIES

HERE = Path(__file__).resolve().parent


CALIBRATED = FAMILIES[0]  # costbo.sim's family fitted to calibration.md; the rest: misspecified


def paired(
    frames: list[pd.DataFrame],
    methods: list[str] | None,
    seeds: tuple[int, int] | None = None,
    families: list[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``methods`` on the jobs they all finished (a job: family, seed, budget), of the
    seeds ``first .. last`` (inclusive) and of ``families`` if given."""
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["error"].isna() | (rows["error"] == "")]
    rows = rows[rows["quick"] == 0]
    if seeds is not None:
        rows = rows[rows["seed"].between(*seeds)]
    if families is not None:
        rows = rows[rows["family"].isin(families)]
    methods = methods or list(dict.fromkeys(rows["method"]))
    rows = rows[rows["method"].isin(methods)]
    job = ["family", "seed", "budget"]
    counts = rows.groupby(job)["method"].nunique()
    complete = counts[counts == len(methods)].index
    return rows.set_index(job).loc[complete].reset_index()


def summary(rows: pd.DataFrame) -> str:
    """Markdown tables: per budget and method, then per family and method (medians)."""
    order = list(dict.fromkeys(rows["method"]))
    by = rows.groupby(["budget", "method"])
    table = pd.DataFrame(
        {
            "landscapes": by["regret"].size(),
            "median": by["regret"].median(),
            "p90": by["regret"].quantile(0.9),
            "diverged": by["diverged"].mean(),
        }
    ).reset_index()
    lines = []
    for budget, part in table.groupby("budget"):
        lines += [f"\n### ${budget:g}\n", "| method | landscapes | median | p90 | diverged |"]
        lines.append("|---|---|---|---|---|")
        part = part.set_index("method").loc[[m for m in order if m in set(part["method"])]]
        for method, r in part.iterrows():
            lines.append(
                f"| {method} | {int(r.landscapes)} | {r['median']:.4f} | {r.p90:.4f} | "
                f"{r.diverged:.0%} |"
            )
    fam = rows.pivot_table(
        index=["method", "budget"], columns="family", values="regret", aggfunc="median"
    )
    fam = fam.reindex([(m, b) for m in order for b in sorted(rows["budget"].unique())])
    lines += ["\n### Median per family\n", "| method | budget | " + " | ".join(fam.columns) + " |"]
    lines.append("|---|---|" + "---|" * len(fam.columns))
    for (method, budget), r in fam.iterrows():
        cells = " | ".join(f"{v:.4f}" for v in r.to_numpy())
        lines.append(f"| {method} | ${budget:g} | {cells} |")
    return "\n".join(lines + kinds(rows, order))


def kinds(rows: pd.DataFrame, order: list[str]) -> list[str]:
    """Markdown lines: per budget, each method's median on the calibrated family and on the
    misspecified families pooled (the lowest of each column in bold)."""
    kind = np.where(rows["family"] == CALIBRATED, "calibrated", "misspecified")
    table = rows.assign(kind=kind).pivot_table(
        index="method", columns=["budget", "kind"], values="regret", aggfunc="median"
    )
    table = table.reindex([m for m in order if m in table.index])
    columns = list(table.columns)
    header = " | ".join(f"${b:g} {k}" for b, k in columns)
    lines = ["\n### Median, calibrated and misspecified families\n", f"| method | {header} |"]
    lines.append("|---|" + "---|" * len(columns))
    lowest = table.min()
    for method, r in table.iterrows():
        cells = [
            "" if np.isnan(v) else f"**{v:.4f}**" if v == lowest[c] else f"{v:.4f}"
            for c, v in zip(columns, r.to_numpy(), strict=True)
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def median_difference(
    rows: pd.DataFrame, method: str, other: str, budget: float, draws: int = 4000, seed: int = 0
) -> dict:
    """``method``'s median regret minus ``other``'s at ``budget`` (nats), its 90% paired
    bootstrap interval (seeds resampled, each with all its families' landscapes), the share
    of landscapes where ``method``'s regret is lower, and the number where it is higher."""
    part = rows[rows["budget"] == budget]
    table = part.pivot_table(index=["seed", "family"], columns="method", values="regret")
    table = table[[method, other]].dropna()
    a, b = table[method].to_numpy(), table[other].to_numpy()
    # landscape positions grouped by seed: a draw picks seeds, then takes their rows
    groups = [np.flatnonzero(table.index.get_level_values("seed") == s) for s in
              dict.fromkeys(table.index.get_level_values("seed"))]  # fmt: skip
    rng = np.random.default_rng(seed)
    diffs = np.empty(draws)
    for i in range(draws):
        idx = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        diffs[i] = np.median(a[idx]) - np.median(b[idx])
    return {
        "landscapes": len(a),
        "difference": float(np.median(a) - np.median(b)),
        "low": float(np.quantile(diffs, 0.05)),
        "high": float(np.quantile(diffs, 0.95)),
        "lower_share": float(np.mean(a < b)),
        "higher": int(np.sum(a > b)),
    }


def against(rows: pd.DataFrame, method: str) -> str:
    """Markdown: per budget, ``method`` against every other method (``median_difference``)."""
    if method not in set(rows["method"]):
        raise SystemExit(f"--against {method!r}: no such method in the rows; pass one of "
                         f"{', '.join(dict.fromkeys(rows['method']))}")  # fmt: skip
    lines = [
        f"\n### {method} against each method (paired, 90% bootstrap interval)\n",
        f"| budget | method | landscapes | {method} median - its median | 90% interval | "
        f"{method} lower on | higher on |",
        "|---|---|---|---|---|---|---|",
    ]
    others = [m for m in dict.fromkeys(rows["method"]) if m != method]
    for budget in sorted(rows["budget"].unique()):
        for other in others:
            d = median_difference(rows, method, other, budget)
            lines.append(
                f"| ${budget:g} | {other} | {d['landscapes']} | {d['difference']:+.4f} | "
                f"{d['low']:+.4f} .. {d['high']:+.4f} | {d['lower_share']:.0%} | "
                f"{d['higher']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csvs", type=Path, nargs="+", help="run.py result CSVs")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument(
        "--against", metavar="METHOD", help="add a paired bootstrap of METHOD against the rest"
    )
    parser.add_argument(
        "--seeds", type=int, nargs=2, metavar=("FIRST", "LAST"), help="only these seeds"
    )
    parser.add_argument("--families", nargs="+", default=None, choices=FAMILIES)
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds[0] > args.seeds[1]:
        parser.error(f"--seeds {args.seeds[0]} {args.seeds[1]}: FIRST must be <= LAST")
    paths = [p if p.is_absolute() or p.exists() else HERE / p for p in args.csvs]
    for path in paths:
        if not path.is_file():
            parser.error(f"{path}: no such CSV; pass run.py results, e.g. results/runs.csv "
                         "results/costbo_runs.csv (relative to benchmarks/ or here)")  # fmt: skip
    frames = [pd.read_csv(path) for path in paths]
    rows = paired(frames, args.methods, args.seeds, args.families)
    if rows.empty:
        within = f" within --seeds {args.seeds[0]} {args.seeds[1]}" if args.seeds else ""
        raise SystemExit(
            f"no job that every method finished{within}: run them on the same seeds first, or "
            "choose seeds and families that the CSVs have"
        )
    print(summary(rows))
    if args.against:
        print(against(rows, args.against))


if __name__ == "__main__":
    main()
