"""Replaying the twin sweep: full-scale regret of costbo and the baselines on real training.

The world is the table ``benchmarks/twin_sweep.py`` measured (``benchmarks/data/twin_sweep.csv``:
the demo's ladder, every (LR, steps, model) cell trained by a real ``costbo-twin`` process). A
strategy "runs" a cell by looking it up; the target is the table's largest model at its longest
steps (the demo's full-scale run: (2, 128, 2) for 400 steps).

- What a strategy sees: the run as costbo's runner would report it. A run the demo's divergence
  rule would kill (``rule_kill_step`` in the table; NaN losses included) is a diverged run,
  charged up to the kill; any other run completes with its final val loss, charged its measured
  seconds. Prices are the demo's nominal $360/hour. The quote a strategy may ask for before
  running (and the oracle's refusal of runs past the budget) is the most any LR cost on that
  rung, so no run charges more than its quote and no strategy spends past its budget.
- Regret: the target's true final val loss at the recommended LR minus the best final val loss
  measured at the target (a run the rule would kill still has its real loss here), over every
  LR measured at the target (the grid, plus any finer target-only points the sweep added where
  the loss changes fast; strategies cannot run those). Between two measured LRs that both ended
  finite, the loss is interpolated linearly in log10 LR; when one
  of the two ended in NaN, the nearer one counts (a NaN nearer one is a diverged answer);
  outside the table's LR range, the edge. A diverged answer counts ln(256) - best (byte-level
  data: the loss of a uniform guess).
- LRs: strategies run only the table's LRs (an LR off the grid is snapped to the nearest, and
  the largest snap is reported); answers may lie between them (costbo's recommendation does).

Methods (each ``method(oracle, seed) -> lr``):
- ``default_6e-4``: llm.c's default, nothing run (``benchmarks.strategies.default_lr``);
- ``cheapest_rung``: every table LR at the cheapest rung (in a seeded order while the budget
  lasts), answering the best;
- ``random_target``: table LRs drawn at random without replacement, run at the target while the
  budget lasts, answering the best (6e-4 if not even one target run fits);
- ``hyperband``: ``benchmarks.strategies.hyperband``'s bracket table with the step rungs as
  the resource on the target model (eta = their factor, 2: 50, 100, 200, 400 steps; R the
  largest rung whose whole table fits the budget once, the table repeated while money lasts),
  LRs drawn from the table's LRs inside hyperband.py's student range 1e-4 .. 1e-2, a diverged
  run ranking last, the best at the longest steps run answering;
- ``costbo``: ``costbo.Study`` on the table's space (explicit models, the table's steps, LR
  bounds = the table's LR range, ``lr_grid_size`` = its number of LRs so that the grid points
  are the table's LRs), the demo's settings (``n_initial=3``, ``-d 2048 -t 128``), its cost model
  seeded per shape from the table as the demo's probe would seed it (the probe's cost is outside
  the budget, as in the demo); ask / tell until ``BudgetExhausted``, answer ``recommend().lr``.

    .venv/bin/python benchmarks/twin_replay.py --seeds 10          # all methods and budgets
    .venv/bin/python benchmarks/twin_replay.py --seeds 10 --lr-range 1e-4 0.1   # demo's space
    .venv/bin/python benchmarks/twin_replay.py --seeds 10 --report # the tables from the CSV

Results are appended to ``benchmarks/data/twin_replay.csv`` with the table's digest (content
and LR range) and the engine's (``costbo/*.py``, see ``engine_digest``), so a rerun skips what
is done and a changed table or engine starts afresh (``--report`` shows the current table and
engine only).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import hashlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from benchmarks.strategies.default_lr import default_lr  # noqa: E402
from benchmarks.strategies.hyperband import bracket_table  # noqa: E402
from benchmarks.strategies.oracle import (  # noqa: E402
    DEFAULT_LR,
    STUDENT_LR_RANGE,
    Oracle,
    OverBudget,
    RunResult,
)
from benchmarks.twin_sweep import TABLE, append_row, format_lr, read_table  # noqa: E402
from costbo.demo import DEMO_PRICE_PER_HOUR, DEMO_SEQ_LEN, DEMO_TOTAL_BATCH  # noqa: E402
from costbo.gpt2 import ModelShape  # noqa: E402

RESULTS = ROOT / "benchmarks" / "data" / "twin_replay.csv"
BYTE_VOCAB = 256
DIVERGED_LOSS = math.log(BYTE_VOCAB)  # nats: a uniform guess over bytes
# Budgets (dollars at $360/hour) scaled to the target run (~$5.3, at most $5.62 in the committed
# table) as design.md's $5/$10/$20/$40 are to a $15-20 full run: about a quarter, half, one and
# two target runs, plus the demo's own $20 (~3.6 target runs).
BUDGETS = (1.5, 3.0, 6.0, 12.0, 20.0)
FIELDS = [
    "table",
    "engine",
    "method",
    "budget",
    "seed",
    "lr",
    "regret",
    "diverged",
    "spent",
    "runs",
    "snap",
]


def engine_digest(package: Path = ROOT / "costbo") -> str:
    """What identifies the engine a result came from: a digest of ``package``'s top-level
    modules (names and contents, uncommitted edits included): the Study and all it fits. Its
    subpackages (the simulator, the twin, the llm.c runner) do not count: a replay runs none
    of them."""
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Measured:
    """One run of the table as a strategy meets it.

    ``val_loss``: its final val loss in nats, the ground truth (NaN: killed on a NaN loss);
    ``killed``: the demo's divergence rule would have killed it, so costbo's runner reports it
    as diverged; ``seconds``: what it cost as costbo runs it (up to the kill when killed);
    ``step_seconds``: its median step time.
    """

    val_loss: float
    killed: bool
    seconds: float
    step_seconds: float | None


def measured(row: dict) -> Measured:
    """A CSV row of twin_sweep.py as a strategy meets it (see ``Measured``)."""
    nan_killed = row["status"] == "diverged"
    killed = nan_killed or row["rule_kill_step"] != ""
    seconds = float(row["seconds"])
    if row["rule_kill_step"] != "" and not (
        nan_killed and int(row["rule_kill_step"]) == int(row["steps_run"])
    ):
        seconds = float(row["rule_kill_seconds"])  # the rule fires before the run really ended
    step_ms = row["median_step_ms"]
    return Measured(
        math.nan if nan_killed else float(row["val_loss"]),
        killed,
        seconds,
        float(step_ms) / 1000.0 if step_ms else None,
    )


class SweepTable:
    """The measured table: runs by (model, steps, LR), the rungs, LRs and the target.

    Only LRs measured on every rung are kept (a sweep still running leaves some out);
    ``dropped_lrs`` lists the others.
    """

    def __init__(
        self, rows: list[dict], digest: str = "", lr_range: tuple[float, float] | None = None
    ) -> None:
        self.digest = digest  # identifies the table (and LR range) in the results CSV
        cells: dict[tuple[ModelShape, int, str], Measured] = {}
        lo, hi = lr_range or (0.0, math.inf)
        for r in rows:
            if not lo * (1 - 1e-6) <= float(r["lr"]) <= hi * (1 + 1e-6):
                continue
            model = ModelShape(int(r["depth"]), int(r["width"]), int(r["heads"]))
            cells[(model, int(r["steps"]), r["lr"])] = measured(r)
        if not cells:
            raise ValueError("the sweep table is empty: run benchmarks/twin_sweep.py first")
        self.models = sorted({k[0] for k in cells}, key=lambda m: (m.channels, m.depth))
        self.steps = sorted({k[1] for k in cells})
        rungs = [(s, m) for m in self.models for s in self.steps]
        lrs = sorted({k[2] for k in cells}, key=float)
        self.lr_texts = [t for t in lrs if all((m, s, t) in cells for s, m in rungs)]
        self.dropped_lrs = [float(t) for t in lrs if t not in self.lr_texts]
        if len(self.lr_texts) < 2:
            raise ValueError(
                f"only {len(self.lr_texts)} LR(s) are measured on every rung: finish the sweep"
            )
        self.lrs = [float(t) for t in self.lr_texts]
        self.cells = cells
        self.target = (self.steps[-1], self.models[-1])
        # regret is scored on every LR measured at the target, extra target-only points too
        steps, model = self.target
        scored = sorted((t for m, s, t in cells if (m, s) == (model, steps)), key=float)
        self.scored_lrs = [float(t) for t in scored]
        self._scored = [cells[(model, steps, t)].val_loss for t in scored]
        self._log_scored = [math.log10(lr) for lr in self.scored_lrs]

    @classmethod
    def load(cls, path: Path = TABLE, lr_range: tuple[float, float] | None = None) -> SweepTable:
        """The table at ``path``, only its LRs inside ``lr_range`` if given (the search space
        every method then works in)."""
        rows = read_table(Path(path))
        content = Path(path).read_bytes() + repr(lr_range).encode()
        return cls(rows, hashlib.sha256(content).hexdigest()[:12], lr_range)

    # --- lookups -----------------------------------------------------------------------------
    def nearest_lr(self, lr: float) -> tuple[float, float]:
        """The table LR nearest to ``lr`` in log10, and the distance (decades)."""
        x = math.log10(lr)
        nearest = min(self.lrs, key=lambda t: abs(math.log10(t) - x))
        return nearest, abs(math.log10(nearest) - x)

    def cell(self, lr: float, steps: int, model: ModelShape) -> Measured:
        text = self.lr_texts[self.lrs.index(lr)]
        return self.cells[(model, steps, text)]

    def quote_seconds(self, steps: int, model: ModelShape) -> float:
        """The most any table LR cost on this rung (a diverged run costs at most this)."""
        return max(self.cell(lr, steps, model).seconds for lr in self.lrs)

    def target_losses(self) -> list[float]:
        """Final val losses (nats, NaN: ended in NaN) at ``scored_lrs``, the target's LRs."""
        return list(self._scored)

    def best_target_loss(self) -> float:
        return float(np.nanmin(self._scored))

    def target_loss_at(self, lr: float) -> float:
        """The target's val loss at ``lr`` (NaN: diverged), interpolated as the module says."""
        losses, xs = self._scored, self._log_scored
        x = min(max(math.log10(lr), xs[0]), xs[-1])
        j = bisect.bisect_left(xs, x)
        if j < len(xs) and math.isclose(xs[j], x, abs_tol=1e-6):
            return losses[j]
        lo, hi = j - 1, j
        if math.isfinite(losses[lo]) and math.isfinite(losses[hi]):
            w = (x - xs[lo]) / (xs[hi] - xs[lo])
            return (1 - w) * losses[lo] + w * losses[hi]
        return losses[lo] if x - xs[lo] <= xs[hi] - x else losses[hi]

    def regret(self, lr: float) -> tuple[float, bool]:
        """(regret in nats, diverged) of answering ``lr`` for the target run."""
        loss = self.target_loss_at(lr)
        best = self.best_target_loss()
        if not math.isfinite(loss):
            return DIVERGED_LOSS - best, True
        return loss - best, False

    def probe_seeds(self) -> dict[ModelShape, tuple[float, float]]:
        """Per model: (seconds per step, fixed overhead seconds), medians over its runs: what
        the demo's probe would have measured for that shape (overheads from complete runs)."""
        seeds = {}
        for model in self.models:
            mine = [(s, c) for (m, s, _), c in self.cells.items() if m == model and c.step_seconds]
            if not mine:
                continue
            per_step = statistics.median(c.step_seconds for _, c in mine)
            overhead = [c.seconds - s * c.step_seconds for s, c in mine if not c.killed]
            seeds[model] = (per_step, max(statistics.median(overhead), 0.0) if overhead else 0.0)
        return seeds


class TableOracle(Oracle):
    """``benchmarks.strategies.oracle.Oracle`` over the measured table instead of a simulated
    landscape: same budget rule, answers and bookkeeping; a run is a table lookup charged its
    measured seconds. ``snap`` is the largest distance (decades) an asked LR was moved to reach
    a table LR."""

    def __init__(
        self, table: SweepTable, budget: float, price_per_hour: float = DEMO_PRICE_PER_HOUR
    ) -> None:
        super().__init__(table, budget, price_per_hour)
        self.table = table
        self.snap = 0.0

    def quote(self, steps: int, model: ModelShape, stop_at: int | None = None) -> float:
        if stop_at is not None:
            raise ValueError("the sweep table holds complete runs only (no -es)")
        return self.dollars(self.table.quote_seconds(steps, model))

    def run(
        self, lr: float, steps: int, model: ModelShape, stop_at: int | None = None
    ) -> RunResult:
        """Look the run up (LR snapped to the table's) and charge its measured seconds; raises
        ``OverBudget`` (charging nothing) if its quote does not fit what remains."""
        self.decision_seconds.append(time.perf_counter() - self._clock)
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr {lr!r} must be a positive number")
        model = model if isinstance(model, ModelShape) else ModelShape(*model)
        quote = self.quote(steps, model, stop_at)
        if quote > self.remaining + 1e-12:
            self.decision_seconds.pop()
            self.refused += 1
            self._clock = time.perf_counter()
            raise OverBudget(
                f"a run of {steps} steps on {model} may cost ${quote:.3f} but only "
                f"${max(self.remaining, 0.0):.3f} of ${self.budget:.2f} remains"
            )
        table_lr, snap = self.table.nearest_lr(lr)
        self.snap = max(self.snap, snap)
        cell = self.table.cell(table_lr, steps, model)
        dollars = self.dollars(cell.seconds)
        self.spent += dollars
        loss = math.nan if cell.killed else cell.val_loss
        result = RunResult(
            table_lr, steps, model, loss, cell.killed, cell.seconds, dollars, self.spent
        )
        self.runs.append(result)
        self._clock = time.perf_counter()
        return result


# --- strategies --------------------------------------------------------------------------------
def _best_completed(results: list[RunResult]) -> float | None:
    done = [r for r in results if not r.diverged]
    return min(done, key=lambda r: r.val_loss).lr if done else None


def _run_all(oracle: TableOracle, lrs: list[float], steps: int, model: ModelShape) -> list:
    """Run ``lrs`` in order on one rung until one does not fit; record the answer after each."""
    results = []
    for lr in lrs:
        try:
            results.append(oracle.run(lr, steps, model))
        except OverBudget:
            break
        if (best := _best_completed(results)) is not None:
            oracle.answer(best)
    return results


def cheapest_rung(oracle: TableOracle, seed: int) -> float:
    """Every table LR at the cheapest rung (seeded order), answering the best."""
    table = oracle.table
    steps, model = min(
        ((s, m) for m in table.models for s in table.steps),
        key=lambda rung: table.quote_seconds(*rung),
    )
    order = list(np.random.default_rng([seed, 0xC4]).permutation(table.lrs))
    best = _best_completed(_run_all(oracle, [float(x) for x in order], steps, model))
    return oracle.answer(best if best is not None else DEFAULT_LR)


def random_target(oracle: TableOracle, seed: int) -> float:
    """Random table LRs at the target while the budget lasts, answering the best."""
    steps, model = oracle.table.target
    order = list(np.random.default_rng([seed, 0x52]).permutation(oracle.table.lrs))
    best = _best_completed(_run_all(oracle, [float(x) for x in order], steps, model))
    return oracle.answer(best if best is not None else DEFAULT_LR)


def hyperband(oracle: TableOracle, seed: int) -> float:
    """Hyperband's brackets over the step rungs of the target model (see the module doc)."""
    table = oracle.table
    _, model = table.target
    eta = hyperband_eta(table.steps)
    pool = [lr for lr in table.lrs if STUDENT_LR_RANGE[0] <= lr <= STUDENT_LR_RANGE[1] * 1.000001]

    def cost(brackets: list[list]) -> float:
        return sum(n * oracle.quote(r, model) for bracket in brackets for n, r in bracket)

    choices = table.steps[1:]  # R: each rung above the first, the largest whose table fits
    fitting = [r for r in choices if cost(bracket_table(r, eta, table.steps[0])) <= oracle.budget]
    brackets = bracket_table(max(fitting) if fitting else choices[0], eta, table.steps[0])
    rng = np.random.default_rng([seed, 0x4B])
    results: list[RunResult] = []

    def answer() -> float | None:
        done = [r for r in results if not r.diverged]
        if not done:
            return None
        longest = max(r.steps for r in done)
        return min((r for r in done if r.steps == longest), key=lambda r: r.val_loss).lr

    exhausted = False
    while not exhausted:
        for bracket in brackets:
            n0 = bracket[0][0]
            lrs = [float(x) for x in rng.choice(pool, size=n0, replace=n0 > len(pool))]
            for i, (_, steps) in enumerate(bracket):
                losses = []
                for lr in lrs:
                    try:
                        result = oracle.run(lr, steps, model)
                    except OverBudget:
                        exhausted = True
                        break
                    results.append(result)
                    losses.append(math.inf if result.diverged else result.val_loss)
                    if (current := answer()) is not None:
                        oracle.answer(current)
                if exhausted:
                    break
                if i + 1 < len(bracket):
                    order = np.argsort(losses, kind="stable")
                    lrs = [lrs[j] for j in order[: bracket[i + 1][0]]]
            if exhausted:
                break
    final = answer()
    return oracle.answer(final if final is not None else DEFAULT_LR)


def hyperband_eta(steps: list[int]) -> int:
    """Hyperband's eta: the constant factor between the step rungs (2 for 50, 100, 200, 400)."""
    eta = steps[1] // steps[0]
    if eta < 2 or any(b != a * eta for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"Hyperband needs step rungs that grow by one integer factor: {steps}")
    return eta


def costbo_study(oracle: TableOracle, seed: int) -> float:
    """costbo's Study on the table's space, ask / tell until BudgetExhausted."""
    from costbo import BudgetExhausted, SearchSpace, Study

    table = oracle.table
    space = SearchSpace(
        lr=(table.lrs[0], table.lrs[-1]),
        steps=table.steps,
        models=[m.as_tuple() for m in table.models],
    )
    study = Study(
        space,
        budget=oracle.budget,
        price_per_hour=oracle.price_per_hour,
        seed=seed,
        tokens_per_step=DEMO_TOTAL_BATCH,
        seq_len=DEMO_SEQ_LEN,
        n_initial=3,
        lr_grid_size=len(table.lrs),
    )
    for model, (step_seconds, overhead) in table.probe_seeds().items():
        study.seed_cost(model, step_seconds, overhead)
    while True:
        try:
            trial = study.ask()
        except BudgetExhausted:
            break
        if oracle.runs:
            oracle.answer(lambda: study.recommend().lr)
        try:
            result = oracle.run(trial.lr, trial.steps, trial.model)
        except OverBudget:
            break
        if result.diverged:
            study.tell(trial.id, diverged=True, seconds=result.seconds)
        else:
            study.tell(trial.id, val_loss=result.val_loss, seconds=result.seconds)
    if not oracle.runs:
        return oracle.answer(10.0**study.prior.target_log10_lr)
    return oracle.answer(lambda: study.recommend().lr)


METHODS: dict[str, Callable[[TableOracle, int], float]] = {
    "default_6e-4": default_lr,
    "cheapest_rung": cheapest_rung,
    "random_target": random_target,
    "hyperband": hyperband,
    "costbo": costbo_study,
}


# --- the replay --------------------------------------------------------------------------------
def replay(table: SweepTable, method: str, budget: float, seed: int, engine: str = "") -> dict:
    """One (method, budget, seed): the answer, its regret and what was spent."""
    oracle = TableOracle(table, budget)
    lr = METHODS[method](oracle, seed)
    regret, diverged = table.regret(lr)
    return {
        "table": table.digest,
        "engine": engine,
        "method": method,
        "budget": budget,
        "seed": seed,
        "lr": f"{lr:.6e}",
        "regret": f"{regret:.6f}",
        "diverged": int(diverged),
        "spent": f"{oracle.spent:.4f}",
        "runs": len(oracle.runs),
        "snap": f"{oracle.snap:.2e}",
    }


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows: list[dict]) -> str:
    """Markdown: per method and budget, median / p90 regret (nats) over seeds and the mean
    dollars spent; the share of answers that diverge at the target."""
    budgets = sorted({float(r["budget"]) for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = "| method | " + " | ".join(f"${b:g}" for b in budgets) + " | diverged |"
    lines = [head, "|---|" + "---|" * (len(budgets) + 1)]
    for m in methods:
        cells, diverged, total = [], 0, 0
        for b in budgets:
            mine = [r for r in rows if r["method"] == m and float(r["budget"]) == b]
            if not mine:
                cells.append("-")
                continue
            regrets = np.array([float(r["regret"]) for r in mine])
            spent = np.mean([float(r["spent"]) for r in mine])
            diverged += sum(int(r["diverged"]) for r in mine)
            total += len(mine)
            cells.append(
                f"{np.median(regrets):.4f} / {np.quantile(regrets, 0.9):.4f} (${spent:.2f})"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {diverged}/{total} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument(
        "--lr-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="search only the table's LRs in [LOW, HIGH] (default: all; the demo's is 1e-4 0.1)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="per-run results (appended)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--report", action="store_true", help="only print the tables")
    args = parser.parse_args()
    table = SweepTable.load(args.table, tuple(args.lr_range) if args.lr_range else None)
    steps, model = table.target
    best = table.best_target_loss()
    best_lr = table.scored_lrs[int(np.nanargmin(table.target_losses()))]
    print(
        f"table: {len(table.lrs)} LRs {format_lr(table.lrs[0])}..{format_lr(table.lrs[-1])} x "
        f"{len(table.steps)} steps x {len(table.models)} models; target {model} x {steps} steps:"
        f" best val loss {best:.4f} at lr {best_lr:.3e}; one target run costs up to "
        f"${TableOracle(table, 1.0).quote(steps, model):.2f}"
        + (
            f"; LRs not on every rung (not searched): {table.dropped_lrs}"
            if table.dropped_lrs
            else ""
        )
    )
    engine = engine_digest()
    print(f"table digest {table.digest}, engine digest {engine}")
    if not args.report:
        done = {
            (r["method"], float(r["budget"]), int(r["seed"]))
            for r in read_results(args.out)
            if r["table"] == table.digest and r.get("engine") == engine
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for method in args.methods:
            for budget in args.budgets:
                for seed in range(args.seeds):
                    if (method, budget, seed) in done:
                        continue
                    started = time.perf_counter()
                    row = replay(table, method, budget, seed, engine)
                    append_row(args.out, row, FIELDS)
                    print(
                        f"{method} ${budget:g} seed {seed}: lr {float(row['lr']):.3e} regret "
                        f"{float(row['regret']):.4f} spent ${float(row['spent']):.2f} in "
                        f"{row['runs']} runs ({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
    rows = [
        r
        for r in read_results(args.out)
        if r["table"] == table.digest
        and r.get("engine") == engine
        and r["method"] in args.methods
        and float(r["budget"]) in args.budgets
        and int(r["seed"]) < args.seeds
    ]
    if not rows:
        raise SystemExit(
            f"no results in {args.out} for this table and engine (digests {table.digest}, "
            f"{engine}): run it without --report"
        )
    print("\nmedian / p90 full-scale regret (nats) over seeds:\n" + summarize(rows))


if __name__ == "__main__":
    main()
