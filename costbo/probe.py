"""``costbo probe``: measure each rung's step time the course's way and price every run.

Each model shape of the search space runs ``[probe] steps`` (20) steps. Its step time is the
worst of steps 10-19 as printed (the course's method: ``hours = ms x steps / 3.6e6``, dollars =
hours x price); its fixed overhead is everything else the run cost (start-up, the slow first
step, the two val evals): run seconds - steps x median step time; the time to the first step is
reported beside it. The measurements seed the study's cost model (``Study.seed_cost``), and a
cost table (CSV, and a printed table) gives the predicted dollars of every rung and of the full
target run. Probe runs are not tuning runs: their cost is reported and journaled as ``probe``
events, outside the tuning budget.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from costbo.config import Config, ConfigError
from costbo.gpt2 import ModelShape
from costbo.llmc.runner import INTERRUPTED, RunResult
from costbo.optimize import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    RunDisplay,
    make_runner,
    make_sync,
    sync_now,
)
from costbo.trial import TrialStatus

WORST_OF_STEPS = range(10, 20)  # the course's method: the worst step time among steps 10-19


@dataclass(frozen=True)
class ProbeRun:
    """A probe trial as the command builder sees it (steps, shape and a harmless LR)."""

    lr: float
    steps: int
    depth: int
    width: int
    heads: int


@dataclass
class ShapeProbe:
    """What probing one model shape measured. Seconds are wall seconds (simulated with
    costbo-sim); ``step_ms`` is the worst of steps 10-19 in milliseconds."""

    model: ModelShape
    run_dir: Path
    status: str
    seconds: float
    dollars: float
    step_ms: float | None = None
    median_step_ms: float | None = None
    first_step_seconds: float | None = None
    overhead_seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.step_ms is not None


def measure(model: ModelShape, result: RunResult, steps: int) -> ShapeProbe:
    """The course's step time and the overhead from one probe run's result."""
    probe = ShapeProbe(
        model=model,
        run_dir=Path(result.run_dir),
        status=result.status.value,
        seconds=result.seconds,
        dollars=result.dollars,
        first_step_seconds=result.first_step_seconds,
    )
    window = [result.step_ms[s] for s in WORST_OF_STEPS if s in result.step_ms]
    if result.status is not TrialStatus.COMPLETE or len(window) < len(WORST_OF_STEPS):
        probe.error = (
            result.error
            or result.kill_detail
            or (
                f"the run printed step times for {sorted(result.step_ms)[:3]}... but not all of "
                "steps 10-19"
            )
        )
        return probe
    probe.step_ms = max(window)
    probe.median_step_ms = statistics.median(ms for step, ms in result.step_ms.items() if step > 1)
    probe.overhead_seconds = max(result.seconds - steps * probe.median_step_ms / 1000.0, 0.0)
    return probe


def course_dollars(step_ms: float, steps: int, price_per_hour: float) -> float:
    """The course's cost estimate: hours = ms x steps / 3.6e6, times the price."""
    return step_ms * steps / 3.6e6 * price_per_hour


def probe(config: Config, *, console: Console | None = None) -> int:
    """Probe every model shape, seed the cost model, write and print the cost table."""
    console = console or Console()
    settings = config.trainer
    if isinstance(settings.warmup, int) and settings.warmup >= config.probe.steps:
        settings = replace(settings, warmup=0.1)  # a fixed warmup longer than the probe
    runner = make_runner(config, replace(settings, val_every=None))
    sync = make_sync(config)
    study = config.open_study()
    try:
        shapes = sorted(
            {f.model for f in study.space.fidelities}, key=lambda m: (m.channels, m.depth)
        )
        probes: list[ShapeProbe] = []
        interrupted = False
        with RunDisplay(console, settings.simulated) as display:
            for shape in shapes:
                run = ProbeRun(config.probe.lr, config.probe.steps, *shape.as_tuple())
                run_dir = config.study.runs_dir / f"probe_{shape}"
                task, on_progress = display.start(f"probe {shape}", config.probe.steps)
                try:
                    result = runner.run(
                        run,
                        run_dir,
                        silence_timeout=config.runner.silence_timeout,
                        on_progress=on_progress,
                    )
                except ValueError as err:
                    raise ConfigError(f"{config.path}: probe of {shape}: {err}") from None
                measured = measure(shape, result, config.probe.steps)
                probes.append(measured)
                study.log_event(_probe_event(measured))
                if measured.ok:
                    study.seed_cost(shape, measured.step_ms / 1000.0, measured.overhead_seconds)
                    line = (
                        f"probe {shape}: worst step {measured.step_ms:.2f} ms (steps 10-19), "
                        f"first step after {measured.first_step_seconds or 0:.1f} s, "
                        f"{measured.seconds:.1f} s, ${measured.dollars:.4f}"
                    )
                else:
                    error = escape(str(measured.error))
                    line = f"[red]probe {shape} failed ({measured.status}): {error}[/]"
                display.finish(task, line)
                if result.kill_reason == INTERRUPTED:
                    interrupted = True
                    break
        rows = cost_rows(study, probes, config.study.price_per_hour)
        write_cost_table(config.probe.cost_table, rows)
        print_cost_table(console, study, probes, rows, config)
        sync_now(
            sync,
            console,
            *[p.run_dir for p in probes],
            config.probe.cost_table,
            config.study.journal,
        )
    finally:
        study.close()
    if interrupted:
        console.print("stopped by Ctrl-C; rerun `costbo probe` to measure the rest")
        return EXIT_INTERRUPTED
    return EXIT_OK if all(p.ok for p in probes) else EXIT_FAILED


def _probe_event(p: ShapeProbe) -> dict:
    return {
        "event": "probe",
        "model": list(p.model.as_tuple()),
        "status": p.status,
        "step_ms": p.step_ms,
        "median_step_ms": p.median_step_ms,
        "first_step_seconds": p.first_step_seconds,
        "overhead_seconds": p.overhead_seconds,
        "seconds": p.seconds,
        "dollars": p.dollars,
        "error": p.error,
        "run_dir": str(p.run_dir),
    }


CSV_COLUMNS = [
    "steps",
    "depth",
    "channels",
    "heads",
    "target",
    "step_ms_worst_10_19",
    "first_step_seconds",
    "overhead_seconds",
    "course_dollars",
    "predicted_seconds",
    "predicted_dollars",
    "predicted_upper_dollars",
]


def cost_rows(study, probes: list[ShapeProbe], price_per_hour: float) -> list[dict]:
    """One row per fidelity: the course's estimate (if its shape was probed) and the cost
    model's prediction (mean and upper quantile, dollars), which includes the overhead."""
    by_shape = {p.model: p for p in probes if p.ok}
    rows = []
    for fid in study.space.fidelities:
        measured = by_shape.get(fid.model)
        prediction = study.predict_cost(fid.steps, fid.model)
        rows.append(
            {
                "steps": fid.steps,
                "depth": fid.model.depth,
                "channels": fid.model.channels,
                "heads": fid.model.heads,
                "target": fid == study.space.target,
                "step_ms_worst_10_19": measured.step_ms if measured else None,
                "first_step_seconds": measured.first_step_seconds if measured else None,
                "overhead_seconds": measured.overhead_seconds if measured else None,
                "course_dollars": (
                    course_dollars(measured.step_ms, fid.steps, price_per_hour)
                    if measured
                    else None
                ),
                "predicted_seconds": prediction.seconds,
                "predicted_dollars": prediction.dollars,
                "predicted_upper_dollars": prediction.upper_dollars,
            }
        )
    return rows


def write_cost_table(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    tmp.replace(path)


def print_cost_table(console: Console, study, probes, rows, config: Config) -> None:
    measured = Table(title="probe: step time by the course's method (worst of steps 10-19)")
    for column in (
        "model",
        "parameters",
        "worst step ms",
        "first step s",
        "overhead s",
        "probe $",
        "status",
    ):
        measured.add_column(column, justify="right" if column != "status" else "left")
    for p in probes:
        measured.add_row(
            str(p.model),
            f"{p.model.num_parameters() / 1e6:.1f}M",
            _fmt(p.step_ms, "{:.2f}"),
            _fmt(p.first_step_seconds, "{:.1f}"),
            _fmt(p.overhead_seconds, "{:.1f}"),
            f"{p.dollars:.4f}",
            p.status if p.ok else escape(f"{p.status}: {p.error}"),
        )
    console.print(measured)

    steps = sorted({r["steps"] for r in rows})
    priced = Table(title="predicted dollars per run (cost model, with overheads)")
    priced.add_column("model")
    for s in steps:
        priced.add_column(f"{s} steps", justify="right")
    cells = {(r["steps"], (r["depth"], r["channels"], r["heads"])): r for r in rows}
    shapes = sorted({(r["depth"], r["channels"], r["heads"]) for r in rows}, key=lambda m: m[1])
    for shape in shapes:
        row = [str(ModelShape(*shape))]
        for s in steps:
            r = cells.get((s, shape))
            row.append("-" if r is None else f"{r['predicted_dollars']:.3f}")
        priced.add_row(*row)
    console.print(priced)

    target = next(r for r in rows if r["target"])
    fid = study.space.target
    course = target["course_dollars"]
    course_text = f"${course:.2f} by the course's method, " if course is not None else ""
    console.print(
        f"[bold]full target run ({fid}):[/] {course_text}${target['predicted_dollars']:.2f} "
        f"predicted with overheads (up to ${target['predicted_upper_dollars']:.2f} at "
        f"q{study.cost_quantile:.2f}); tuning budget ${study.budget:.2f}",
        highlight=False,
    )
    spent = sum(p.dollars for p in probes)
    console.print(
        f"probing cost ${spent:.4f} (outside the tuning budget); cost table: "
        f"{config.probe.cost_table}",
        highlight=False,
    )


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
