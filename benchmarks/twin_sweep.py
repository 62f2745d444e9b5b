"""Ground truth from real training: the twin's final val loss over LR x steps x model.

Every cell of the demo's ladder (``costbo optimize --demo``: models (1,32,1) .. (2,128,2), steps
50 .. 400, ``-b 16 -t 128 -d 2048``, warmup 10% of the steps, 20 val batches, byte-level text of
the default corpus from ``costbo.corpus.prepare_data``) is trained at each LR of a log-spaced
grid by launching ``costbo-twin`` through costbo's own runner (``costbo.llmc.runner.Runner``,
the demo's kill grace and silence timeout), as ``costbo optimize`` would run that trial, with one
difference: the runner kills a run only on a NaN or infinite loss (the true divergence: the
weights never recover), not on a finite loss blow-up, so that every other run ends with its
real final val loss. Whether and when the demo's divergence rule (``DivergenceRule()``) would
have killed it is computed from the run's train losses with the runner's own
``DivergenceMonitor`` and recorded beside it (``rule_kill_step``; ``rule_kill_seconds``
estimated from the measured time to the first step and the measured step times), so that a
replay can charge what costbo would have spent and still score against the true loss. When the
rule changes, ``--recompute-kills`` redoes those two columns without training: it reads each
row's run dir (``main.log``, ``stdout.log``) with ``costbo.llmc.log_parser`` and applies the
current rule through the same ``rule_kill`` (the time to the first step, which the logs do not
hold, comes from the row, to its millisecond).

Each finished run becomes one CSV row (``benchmarks/data/twin_sweep.csv``): status (complete,
or diverged = killed on NaN/inf), final val loss (empty when NaN), the runner's measured wall
seconds, the rule's verdict, the median step time, and the load average when it started (the
machine is shared: seconds are honest but noisy). The sweep takes a while on 2 cores, so it is
resumable: rows are appended and fsync'd one by one, a rerun skips the cells already in the
CSV, and a torn last line (a crash mid-write) is dropped. One twin runs at a time with
``OMP_NUM_THREADS=1`` (one core's worth), leaving the other core to whatever else runs on the
machine. ``benchmarks/twin_replay.py`` replays the table.

    .venv/bin/python benchmarks/twin_sweep.py                        # the whole table, resumable
    .venv/bin/python benchmarks/twin_sweep.py --lrs 1e-3 --limit 4   # a few runs: time estimate
    .venv/bin/python benchmarks/twin_sweep.py --models 2,128,2 --steps 400 \
        --lrs 3.548e-3 3.981e-3 4.467e-3 4.732e-3 5.012e-3 5.309e-3   # finer target points
    .venv/bin/python benchmarks/twin_sweep.py --recompute-kills   # the rule's columns, again
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from costbo.demo import (  # noqa: E402
    DEMO_MICRO_BATCH,
    DEMO_MODELS,
    DEMO_PRICE_PER_HOUR,
    DEMO_SEQ_LEN,
    DEMO_STEPS,
    DEMO_TOTAL_BATCH,
)
from costbo.gpt2 import ModelShape  # noqa: E402
from costbo.llmc.command import TrainerSettings  # noqa: E402
from costbo.llmc.log_parser import LogParser, RunLog  # noqa: E402
from costbo.llmc.runner import DivergenceMonitor, DivergenceRule, Runner, RunResult  # noqa: E402
from costbo.trial import TrialStatus  # noqa: E402

TABLE = ROOT / "benchmarks" / "data" / "twin_sweep.csv"
WORK_DIR = ROOT / "runs" / "twin_sweep"  # shards and run dirs (git-ignored)
LR_LOW, LR_HIGH, LR_POINTS = 1e-4, 1.0, 17  # 4 a decade: the demo's bounds and a decade above
WARMUP = 0.1  # the demo's warmup fraction
VAL_BATCHES = 20  # the demo's -m
KILL_GRACE_SECONDS = 2.0  # the demo's [runner] kill_grace
SILENCE_TIMEOUT_SECONDS = 120.0  # the demo's [runner] silence_timeout
NAN_ONLY = DivergenceRule(rise_above_first=math.inf, rise_above_best=math.inf)
DEMO_RULE = DivergenceRule()  # the demo's [runner] divergence settings (the defaults)
FIELDS = [
    "depth",
    "width",
    "heads",
    "steps",
    "lr",
    "status",
    "val_loss",
    "diverged",
    "kill_reason",
    "steps_run",
    "seconds",
    "rule_kill_step",
    "rule_kill_seconds",
    "first_step_seconds",
    "median_step_ms",
    "threads",
    "load_1min",
    "started_at",
]


@dataclass(frozen=True)
class Cell:
    """One run of the table: max LR ``lr`` for ``steps`` steps on ``model``."""

    model: ModelShape
    steps: int
    lr: float

    # the TrialLike protocol of costbo.llmc.command
    @property
    def depth(self) -> int:
        return self.model.depth

    @property
    def width(self) -> int:
        return self.model.channels

    @property
    def heads(self) -> int:
        return self.model.heads

    @property
    def key(self) -> tuple[int, int, int, int, str]:
        """What identifies the cell in the CSV (the LR as written there)."""
        return (*self.model.as_tuple(), self.steps, format_lr(self.lr))

    @property
    def run_dir_name(self) -> str:
        return f"{self.model}_x{self.steps}_lr{format_lr(self.lr)}"


def format_lr(lr: float) -> str:
    """An LR as the CSV writes it (enough digits to be read back exactly as the grid's)."""
    return f"{lr:.6e}"


def lr_grid(low: float = LR_LOW, high: float = LR_HIGH, points: int = LR_POINTS) -> list[float]:
    """``points`` LRs log-uniform from ``low`` to ``high``, both included (costbo's Study builds
    its LR grid the same way: ``np.linspace(log10 low, log10 high, lr_grid_size)``)."""
    step = (math.log10(high) - math.log10(low)) / (points - 1)
    return [float(f"{10 ** (math.log10(low) + i * step):.6e}") for i in range(points)]


def cells(
    models: Iterable[ModelShape], steps: Iterable[int], lrs: Iterable[float]
) -> Iterator[Cell]:
    """The table's cells, model by model, then steps, then LR (a partial table is whole rungs)."""
    steps, lrs = list(steps), list(lrs)
    for model in models:
        for s in steps:
            for lr in lrs:
                yield Cell(model, s, lr)


# --- the CSV: append-only, resumable ---------------------------------------------------------
def read_table(path: Path) -> list[dict]:
    """The rows written so far (a torn last line, left by a crash mid-write, is cut off)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def done_keys(rows: Iterable[dict]) -> set[tuple[int, int, int, int, str]]:
    return {
        (int(r["depth"]), int(r["width"]), int(r["heads"]), int(r["steps"]), r["lr"]) for r in rows
    }


def append_row(path: Path, row: dict, fields: list[str] = FIELDS) -> None:
    """Append one row (with the header if the file is new) and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def rule_kill(
    train_losses: Mapping[int, float], rule: DivergenceRule, warmup_steps: int
) -> int | None:
    """The 1-based step at which the runner's ``DivergenceMonitor`` with ``rule`` would have
    killed a run with these train losses (nats, by 1-based step); None: never."""
    monitor = DivergenceMonitor(rule, warmup_steps)
    for step in sorted(train_losses):
        if monitor.observe(step, train_losses[step]) is not None:
            return step
    return None


def seconds_at_step(
    first_step_seconds: float | None, step_ms: Mapping[int, float], step: int
) -> float:
    """Measured wall seconds from launch to the end of ``step``: the time to the first step line
    plus the measured times (``step_ms``, by 1-based step) of steps 2 .. ``step`` (no eval runs
    in between: -v is -x)."""
    later = sum(ms for s, ms in step_ms.items() if 1 < s <= step)
    return (first_step_seconds or 0.0) + later / 1000.0


def row_for(
    cell: Cell, result: RunResult, warmup_steps: int, threads: str, load: float, started: float
) -> dict:
    """The CSV row of a finished run (val loss empty unless the run completed)."""
    kill = rule_kill(result.train_losses, DEMO_RULE, warmup_steps)
    step_ms = sorted(result.step_ms.values())
    return {
        "depth": cell.depth,
        "width": cell.width,
        "heads": cell.heads,
        "steps": cell.steps,
        "lr": format_lr(cell.lr),
        "status": result.status.value,
        "val_loss": "" if result.val_loss is None else f"{result.val_loss:.6f}",
        "diverged": int(result.diverged),
        "kill_reason": result.kill_reason or "",
        "steps_run": max(result.train_losses, default=0),
        "seconds": f"{result.seconds:.3f}",
        "rule_kill_step": "" if kill is None else kill,
        "rule_kill_seconds": ""
        if kill is None
        else f"{seconds_at_step(result.first_step_seconds, result.step_ms, kill):.3f}",
        "first_step_seconds": ""
        if result.first_step_seconds is None
        else f"{result.first_step_seconds:.3f}",
        "median_step_ms": f"{step_ms[len(step_ms) // 2]:.3f}" if step_ms else "",
        "threads": threads,
        "load_1min": f"{load:.2f}",
        "started_at": f"{started:.0f}",
    }


# --- running ---------------------------------------------------------------------------------
def twin_binary() -> str:
    """``costbo-twin`` beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "costbo-twin"
    if beside.is_file():
        return str(beside)
    found = shutil.which("costbo-twin")
    if found is None:
        raise SystemExit("costbo-twin is not installed: pip install -e . in this venv")
    return found


def prepare(work_dir: Path) -> TrainerSettings:
    """Byte-level shards of the default corpus in ``work_dir/data`` (made once) and the demo's
    trainer settings for runs in ``work_dir``."""
    data_dir = work_dir / "data"
    if not sorted(data_dir.glob("bytes_train_*.bin")) or not sorted(
        data_dir.glob("bytes_val_*.bin")
    ):
        from costbo.corpus import prepare_data

        prepared = prepare_data(data_dir, tokenizer="bytes")
        print(
            f"prepared {prepared.train_tokens:,} train and {prepared.val_tokens:,} val byte "
            f"tokens in {data_dir}",
            flush=True,
        )
    return trainer_settings(work_dir, twin_binary())


def trainer_settings(work_dir: Path, binary: str = "costbo-twin") -> TrainerSettings:
    """The demo's trainer settings for twin runs in ``work_dir`` (its data in ``data/``)."""
    return TrainerSettings(
        binary=binary,
        llmc_dir=work_dir,
        train_data="data/bytes_train_*.bin",
        val_data="data/bytes_val_*.bin",
        micro_batch=DEMO_MICRO_BATCH,
        total_batch=DEMO_TOTAL_BATCH,
        seq_len=DEMO_SEQ_LEN,
        warmup=WARMUP,
        val_batches=VAL_BATCHES,
        extra_args=("-vs", "256"),
    )


def sweep(
    todo: list[Cell], table: Path, work_dir: Path, threads: str = "1", limit: int | None = None
) -> int:
    """Run the cells of ``todo`` not yet in ``table``, one twin at a time; returns runs made."""
    os.environ["OMP_NUM_THREADS"] = threads  # inherited by every twin this process launches
    settings = prepare(work_dir)
    runner = Runner(
        settings, DEMO_PRICE_PER_HOUR, divergence=NAN_ONLY, kill_grace_seconds=KILL_GRACE_SECONDS
    )
    done = done_keys(read_table(table))
    pending = [c for c in todo if c.key not in done]
    print(f"{len(todo) - len(pending)} of {len(todo)} cells already in {table}", flush=True)
    if limit is not None:
        pending = pending[:limit]
    made, clock = 0, time.monotonic()
    for i, cell in enumerate(pending):
        load, started = os.getloadavg()[0], time.time()
        result = runner.run(
            cell, work_dir / "runs" / cell.run_dir_name, silence_timeout=SILENCE_TIMEOUT_SECONDS
        )
        if result.status not in (TrialStatus.COMPLETE, TrialStatus.DIVERGED):
            # a crash or an interrupt says nothing about the LR: not a table entry
            print(f"{cell.run_dir_name}: {result.status.value}: {result.error}", flush=True)
            if result.status == TrialStatus.INTERRUPTED:
                break
            continue
        row = row_for(cell, result, settings.warmup_steps(cell.steps), threads, load, started)
        append_row(table, row)
        made += 1
        elapsed = time.monotonic() - clock
        loss = "NaN" if result.val_loss is None else f"val {result.val_loss:.4f}"
        if row["rule_kill_step"] != "":
            loss += f" (the demo's rule kills it at step {row['rule_kill_step']})"
        print(
            f"[{i + 1}/{len(pending)}] {cell.run_dir_name}: {loss}, {result.seconds:.1f} s "
            f"(load {load:.1f}); elapsed {elapsed / 60:.1f} min",
            flush=True,
        )
    return made


# --- the rule's verdict, again from the logs ----------------------------------------------------
def cell_of(row: dict) -> Cell:
    """The cell a CSV row measured."""
    model = ModelShape(int(row["depth"]), int(row["width"]), int(row["heads"]))
    return Cell(model, int(row["steps"]), float(row["lr"]))


def logged_run(run_dir: Path) -> RunLog:
    """What a run dir's logs say, read with costbo's log parser: main.log, then stdout.log,
    whose losses (6 decimals to main.log's 4) are the ones the runner saw, so they win where
    both report a step (main.log fills in steps a cut stdout lacks, as in the runner)."""
    log = RunLog()
    for name, source in (("main.log", "main.log"), ("stdout.log", "stdout")):
        path = run_dir / name
        if path.is_file():
            parser = LogParser(source)
            log.extend(parser.feed(path.read_bytes()))
            log.extend(parser.close())
    return log


@dataclass(frozen=True)
class KillChange:
    """A row whose rule verdict changed: the kill step before and now (None: not killed)."""

    cell: Cell
    before: int | None
    after: int | None
    val_loss: str


def recompute_kills(
    table: Path, work_dir: Path, rule: DivergenceRule = DEMO_RULE
) -> tuple[list[dict], list[KillChange]]:
    """Recompute every row's ``rule_kill_step`` / ``rule_kill_seconds`` with ``rule`` from the
    train losses and step times in its run dir's logs (``work_dir/runs/<cell>``), the time to
    the first step taken from the row (the runner measured it; the logs do not hold it), and
    rewrite ``table`` in place (atomically). Returns the new rows and the rows that changed."""
    rows = read_table(table)
    settings = trainer_settings(work_dir)
    changes = []
    for row in rows:
        cell = cell_of(row)
        run_dir = work_dir / "runs" / cell.run_dir_name
        log = logged_run(run_dir)
        if log.last_step < int(row["steps_run"]):
            raise SystemExit(
                f"{run_dir}: its logs hold {log.last_step} steps but the table says the run "
                f"ran {row['steps_run']}: point --work-dir at the sweep's run dirs"
            )
        kill = rule_kill(log.train_losses, rule, settings.warmup_steps(cell.steps))
        first = float(row["first_step_seconds"]) if row["first_step_seconds"] else None
        before = int(row["rule_kill_step"]) if row["rule_kill_step"] else None
        row["rule_kill_step"] = "" if kill is None else kill
        row["rule_kill_seconds"] = (
            "" if kill is None else f"{seconds_at_step(first, log.step_ms, kill):.3f}"
        )
        if kill != before:
            changes.append(KillChange(cell, before, kill, row["val_loss"]))
    fields = list(rows[0]) if rows else FIELDS
    tmp = table.with_suffix(table.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, table)
    return rows, changes


def print_recomputed(rows: list[dict], changes: list[KillChange]) -> None:
    """How many runs the rule kills now and before, and each row whose verdict changed."""
    killed = sum(r["rule_kill_step"] != "" for r in rows)
    was = killed + sum((c.before is not None) - (c.after is not None) for c in changes)
    print(f"the rule kills {killed} of {len(rows)} runs (before: {was}); changed:")
    for c in changes:
        before = "-" if c.before is None else f"step {c.before}"
        after = "-" if c.after is None else f"step {c.after}"
        print(f"  {c.cell.run_dir_name}: {before} -> {after} (final val loss {c.val_loss})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE, help="the CSV (appended, resumable)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="shards and run dirs")
    parser.add_argument("--lr-points", type=int, default=LR_POINTS, help="LRs, log-spaced")
    parser.add_argument("--lr-low", type=float, default=LR_LOW)
    parser.add_argument("--lr-high", type=float, default=LR_HIGH)
    parser.add_argument("--lrs", type=float, nargs="+", help="only these LRs (e.g. an estimate)")
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEMO_STEPS))
    parser.add_argument(
        "--models",
        nargs="+",
        default=[",".join(map(str, m)) for m in DEMO_MODELS],
        help="depth,channels,heads of each model, e.g. 2,128,2",
    )
    parser.add_argument("--limit", type=int, help="stop after this many new runs")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of every twin run")
    parser.add_argument(
        "--recompute-kills",
        action="store_true",
        help="run nothing: recompute rule_kill_step/_seconds of --out from the run dirs' logs",
    )
    args = parser.parse_args()
    if args.recompute_kills:
        print_recomputed(*recompute_kills(args.out, args.work_dir.resolve()))
        return
    lrs = args.lrs or lr_grid(args.lr_low, args.lr_high, args.lr_points)
    models = [ModelShape(*(int(v) for v in m.split(","))) for m in args.models]
    todo = list(cells(models, args.steps, lrs))
    sweep(todo, args.out, args.work_dir.resolve(), args.threads, args.limit)


if __name__ == "__main__":
    main()
