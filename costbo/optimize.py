"""The tuning loop of ``costbo optimize``: ask the study for a run, run it, tell the outcome.

It runs until the study raises BudgetExhausted, ``--max-runs`` is reached, too many runs fail in
a row, or the user presses Ctrl-C (the current run is killed, told as interrupted with the money
it spent, and the loop exits). Rerunning resumes from the journal. A run that was going when
costbo itself died (SIGKILL, a crash, a closed laptop) is told on resume: from its trial.json
when the runner had finished it, otherwise as interrupted with the seconds it ran, measured from
its trial.json start time to its last log write (or to now, after stopping a trainer that is
still running; with costbo-sim, its last ``sim elapsed``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from costbo.config import Config, ConfigError
from costbo.llmc.command import resolve_binary
from costbo.llmc.log_parser import LogParser, SimElapsedEvent
from costbo.llmc.runner import INTERRUPTED, Runner, RunResult
from costbo.trial import BudgetExhausted, Trial, TrialStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C


# --- runs and their folders ------------------------------------------------------------------
def run_dir_name(trial: Trial) -> str:
    """The run's folder name (also its S3 folder): id, LR, steps, shape; stable across resumes."""
    return f"trial-{trial.id:04d}_lr{trial.lr:.3e}_x{trial.steps}_{trial.model}"


def run_dir_for(config: Config, trial: Trial) -> Path:
    return config.study.runs_dir / run_dir_name(trial)


def make_runner(config: Config, settings=None) -> Runner:
    """A Runner for this config (``settings`` replaces its TrainerSettings)."""
    settings = settings or config.trainer
    # Checked before the study is opened: found at launch, each try would journal a trial.
    llmc_dir = Path(settings.llmc_dir).expanduser()
    if not llmc_dir.is_dir():
        raise ConfigError(
            f"{config.path}: [llmc] dir = {str(llmc_dir)!r} is not a directory: it is every "
            "run's working directory (where the data globs start); point it at your llm.c "
            'checkout, or at "." for costbo-sim'
        )
    runs_dir = config.study.runs_dir
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ConfigError(
            f"{config.path}: [study] runs_dir = {str(runs_dir)!r} is a file, not a folder: "
            "point it at a folder (it is created if missing)"
        )
    try:
        resolve_binary(settings)
    except ValueError as err:
        raise ConfigError(f"{config.path}: [llmc] binary: {err}") from None
    return Runner(
        settings,
        config.study.price_per_hour,
        divergence=config.runner.divergence,
        kill_grace_seconds=config.runner.kill_grace,
    )


def make_sync(config: Config):
    """The S3 sync of this config, or None without an [s3] section."""
    if config.s3 is None:
        return None
    from costbo.s3 import S3Sync

    return S3Sync(config.s3, config.study.runs_dir)


def sync_now(sync, console: Console, *paths: Path) -> None:
    """Queue ``paths`` and upload everything waiting; a failure is reported, never raised."""
    if sync is None:
        return
    sync.queue(*paths)
    report = sync.flush()
    if report.error:
        console.print(
            f"[yellow]S3: {escape(report.error)}. Local results are safe; {report.waiting} "
            "item(s) wait in the outbox and upload on the next sync (or `costbo sync`).[/]"
        )


# --- telling outcomes ------------------------------------------------------------------------
@contextlib.contextmanager
def _defer_sigint() -> Iterator[None]:
    """Hold Ctrl-C while a tell is written, then raise it: the journal gets whole events."""
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def tell_outcome(study, trial: Trial, result: dict, **extra_attrs) -> Trial:
    """Tell ``study`` a runner result (``RunResult.to_dict()``) for ``trial``."""
    status = TrialStatus(result["status"])
    seconds = float(result.get("seconds") or 0.0)
    attrs = {
        name: result.get(name)
        for name in (
            "run_dir",
            "kill_reason",
            "kill_detail",
            "exit_code",
            "hellaswag",
            "first_step_seconds",
            "mean_step_ms",
            "wall_seconds",
            "simulated",
        )
    }
    attrs.update(extra_attrs)
    with _defer_sigint():
        if status is TrialStatus.COMPLETE:
            return study.tell(
                trial.id, val_loss=result["val_loss"], seconds=seconds, user_attrs=attrs
            )
        if status is TrialStatus.DIVERGED:
            return study.tell(
                trial.id,
                diverged=True,
                seconds=seconds,
                error=result.get("kill_detail"),
                user_attrs=attrs,
            )
        if status is TrialStatus.FAILED:
            return study.tell(
                trial.id, failed=True, seconds=seconds, error=result.get("error"), user_attrs=attrs
            )
        return study.tell(
            trial.id,
            interrupted=True,
            seconds=seconds,
            error=result.get("kill_detail") or result.get("error"),
            user_attrs=attrs,
        )


# --- recovering runs that costbo lost --------------------------------------------------------
def read_run_record(run_dir: Path) -> dict | None:
    """A run dir's trial.json (the runner's argv, start time and result), or None."""
    try:
        return json.loads((run_dir / "trial.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def trainer_pids(run_dir: Path) -> list[int]:
    """Processes still running a trainer with ``-o <run_dir>`` (Linux /proc; [] elsewhere)."""
    target = os.fsencode(os.path.abspath(run_dir))
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        pairs = zip(args, args[1:], strict=False)
        if any(a == b"-o" and b == target for a, b in pairs) and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def stop_trainers(run_dir: Path, grace_seconds: float = 5.0) -> bool:
    """Stop trainers left running for ``run_dir`` (SIGTERM to their group, then SIGKILL).

    Returns whether any was running. The runner starts each trainer as the leader of its own
    process group, so the whole group (its helpers too) is signalled.
    """
    pids = trainer_pids(run_dir)
    if not pids:
        return False

    def signal_all(sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    if any(_alive(p) for p in pids):
        signal_all(signal.SIGKILL)
    return True


def _last_sim_seconds(run_dir: Path) -> float:
    parser = LogParser("stdout")
    seconds = 0.0
    try:
        with open(run_dir / "stdout.log", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                for event in parser.feed(chunk):
                    if type(event) is SimElapsedEvent:
                        seconds = event.seconds
    except OSError:
        return 0.0
    for event in parser.close():
        if type(event) is SimElapsedEvent:
            seconds = event.seconds
    return seconds


def seconds_spent(
    run_dir: Path, record: dict, *, still_running_until: float | None = None
) -> float:
    """Seconds a run cost whose end costbo did not see: simulated seconds with costbo-sim,
    otherwise from its start (trial.json) to its last log write, or to ``still_running_until``
    (unix seconds) if it was still running then."""
    if record.get("simulated"):
        return _last_sim_seconds(run_dir)
    started = float(record.get("started_at") or 0.0)
    if not started:
        return 0.0
    if still_running_until is not None:
        return max(still_running_until - started, 0.0)
    last = started
    for name in ("stdout.log", "stderr.log", "main.log", "trial.json"):
        with contextlib.suppress(OSError):
            last = max(last, (run_dir / name).stat().st_mtime)
    return max(last - started, 0.0)


def recover_trial(study, trial: Trial, run_dir: Path, grace_seconds: float = 5.0) -> Trial:
    """Tell a trial that was pending when costbo stopped, from what its run dir says."""
    record = read_run_record(run_dir)
    if record is None:
        # trial.json is written before launch: without it nothing ran and nothing was spent.
        with _defer_sigint():
            return study.tell(
                trial.id,
                interrupted=True,
                seconds=0.0,
                error="costbo stopped before this run was launched",
                user_attrs={"run_dir": str(run_dir), "recovered": True},
            )
    if record.get("result"):
        return tell_outcome(study, trial, record["result"], recovered=True)
    running = stop_trainers(run_dir, grace_seconds)
    seconds = seconds_spent(run_dir, record, still_running_until=time.time() if running else None)
    how = "was still running and was stopped" if running else "had stopped"
    with _defer_sigint():
        return study.tell(
            trial.id,
            interrupted=True,
            seconds=seconds,
            error=(
                f"costbo stopped while this run was going; on resume its trainer {how}; "
                f"{seconds:.1f} s counted"
            ),
            user_attrs={"run_dir": str(run_dir), "recovered": True, "kill_reason": "lost"},
        )


def recover_pending(study, config: Config, console: Console) -> list[Trial]:
    """Tell every pending trial of a resumed study (see ``recover_trial``)."""
    told = []
    for trial in study.trials:
        if trial.status is TrialStatus.PENDING:
            done = recover_trial(study, trial, run_dir_for(config, trial), config.runner.kill_grace)
            console.print(
                f"recovered trial {trial.id} (left pending when costbo stopped): "
                f"{done.status.value}, {done.seconds:.1f} s, ${done.cost:.4f} counted"
            )
            told.append(done)
    return told


# --- live display ----------------------------------------------------------------------------
class RunDisplay:
    """Rich live progress: a bar per running run (step, loss, ETA, dollars so far) and a line
    per finished run. On a non-terminal only the lines are printed."""

    def __init__(self, console: Console, simulated: bool = False) -> None:
        self.console = console
        self.simulated = simulated
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[dollars]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=True,
        )

    def __enter__(self) -> RunDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, description: str, total_steps: int) -> tuple[TaskID, Callable]:
        task = self.progress.add_task(
            description, total=total_steps, loss="-", dollars="$0.0000", eta="-"
        )

        def on_progress(p) -> None:
            eta = "-" if p.eta_seconds is None else _duration(p.eta_seconds)
            if self.simulated and p.eta_seconds is not None:
                eta += " sim"
            loss = "-" if p.loss is None else f"{p.loss:.4f}"
            self.progress.update(
                task,
                completed=p.step,
                total=p.total_steps,
                loss=loss,
                dollars=f"${p.dollars:.4f}",
                eta=eta,
            )

        return task, on_progress

    def finish(self, task: TaskID, line: str) -> None:
        self.progress.remove_task(task)
        self.console.print(line, highlight=False)

    def print(self, line: str) -> None:
        self.console.print(line, highlight=False)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


_STATUS_STYLE = {
    TrialStatus.COMPLETE: "green",
    TrialStatus.DIVERGED: "magenta",
    TrialStatus.FAILED: "red",
    TrialStatus.INTERRUPTED: "yellow",
}


def describe(trial: Trial) -> str:
    return f"trial {trial.id}: lr {trial.lr:.3g}, {trial.steps} steps, {trial.model}"


def finished_line(trial: Trial, study) -> str:
    """One line for a told trial: outcome, seconds, dollars against prediction, spend so far."""
    style = _STATUS_STYLE.get(trial.status, "white")
    outcome = trial.status.value
    if trial.status is TrialStatus.COMPLETE:
        outcome += f", val loss {trial.val_loss:.4f}"
    elif trial.error:
        outcome += f": {escape(trial.error)}"
    return (
        f"[{style}]{describe(trial)}: {outcome}[/]; {trial.seconds:.1f} s, ${trial.cost:.4f} "
        f"(predicted ${trial.predicted_cost:.4f}); spent ${study.spent:.2f} of "
        f"${study.budget:.2f}"
    )


# --- the loop --------------------------------------------------------------------------------
@dataclass
class LoopSummary:
    """How a loop ended: ``runs`` launched, ``stopped`` ("budget", "max_runs", "interrupted",
    "failures"), and the exit code for the CLI."""

    runs: int
    stopped: str
    exit_code: int


def optimize(
    config: Config, *, max_runs: int | None = None, console: Console | None = None
) -> LoopSummary:
    """Run the tuning loop for ``config``; see the module doc. Raises ConfigError for a bad
    config or binary (before any run is launched)."""
    console = console or Console()
    if max_runs is not None and max_runs < 0:
        raise ConfigError(f"--max-runs {max_runs} must be >= 0")
    runner = make_runner(config)
    sync = make_sync(config)
    study = config.open_study()
    try:
        return _loop(config, study, runner, sync, max_runs, console)
    finally:
        study.close()


def _loop(config, study, runner, sync, max_runs, console) -> LoopSummary:
    told_before = sum(t.is_finished for t in study.trials)
    console.print(
        f"study {config.study.journal}: {told_before} run(s) so far, spent ${study.spent:.2f} of "
        f"${study.budget:.2f}",
        highlight=False,
    )
    recovered = recover_pending(study, config, console)
    if recovered or sync is not None:
        sync_now(sync, console, *[run_dir_for(config, t) for t in recovered], config.study.journal)

    runs, failures, stopped, code = 0, 0, "max_runs", EXIT_OK
    current: Trial | None = None
    with RunDisplay(console, config.trainer.simulated) as display:
        try:
            while max_runs is None or runs < max_runs:
                try:
                    current = study.ask()
                except BudgetExhausted as err:
                    display.print(f"budget exhausted: {escape(str(err))}")
                    stopped = "budget"
                    break
                run_dir = run_dir_for(config, current)
                task, on_progress = display.start(describe(current), current.steps)
                result = _run(runner, study, current, run_dir, config, on_progress)
                told = tell_outcome(study, current, result.to_dict())
                current = None
                runs += 1
                display.finish(task, finished_line(told, study))
                sync_now(sync, console, run_dir, config.study.journal)
                if result.kill_reason == INTERRUPTED:
                    stopped, code = "interrupted", EXIT_INTERRUPTED
                    display.print("stopped by Ctrl-C; rerun the same command to resume")
                    break
                failures = failures + 1 if told.status is TrialStatus.FAILED else 0
                if failures >= config.runner.max_consecutive_failures:
                    display.print(
                        f"[red]{failures} runs failed in a row; stopping so that a broken setup "
                        "does not spend the budget. Fix the error above, then rerun.[/]"
                    )
                    stopped, code = "failures", EXIT_FAILED
                    break
        except KeyboardInterrupt:
            # Ctrl-C outside a run (while the model fits, or a second one while a run was
            # being killed): account a run that was going, then stop cleanly.
            if current is not None and not study.trials[current.id].is_finished:
                done = recover_trial(study, current, run_dir_for(config, current))
                display.print(finished_line(done, study))
                sync_now(sync, console, run_dir_for(config, current), config.study.journal)
            display.print("stopped by Ctrl-C; rerun the same command to resume")
            stopped, code = "interrupted", EXIT_INTERRUPTED
    _print_summary(study, console)
    return LoopSummary(runs, stopped, code)


def _run(
    runner: Runner, study, trial: Trial, run_dir: Path, config: Config, on_progress
) -> RunResult:
    # The most this run may cost: what is left of the budget plus what was reserved for it.
    max_dollars = max(study.remaining + trial.predicted_cost_upper, 0.0)
    try:
        return runner.run(
            trial,
            run_dir,
            predicted_seconds=trial.predicted_seconds,
            cost_margin=config.runner.cost_margin,
            max_dollars=max_dollars,
            silence_timeout=config.runner.silence_timeout,
            on_progress=on_progress,
        )
    except ValueError as err:
        # Rejected before launch (flags, shape, batch): nothing ran, nothing was spent.
        with _defer_sigint():
            study.tell(trial.id, interrupted=True, seconds=0.0, error=f"not launched: {err}")
        raise ConfigError(f"{config.path}: trial {trial.id} could not be launched: {err}") from None


def _print_summary(study, console: Console) -> None:
    trials = study.trials
    counts = {s: sum(t.status is s for t in trials) for s in TrialStatus}
    parts = [f"{n} {s.value}" for s, n in counts.items() if n]
    console.print(
        f"{len(trials)} run(s): {', '.join(parts) or 'none'}; spent ${study.spent:.2f} of "
        f"${study.budget:.2f} (${max(study.budget - study.spent, 0):.2f} left)",
        highlight=False,
    )
    try:
        rec = study.recommend()
    except ValueError:
        console.print("no recommendation yet: no run has finished or diverged")
        return
    console.print(f"[bold]recommendation:[/] {escape(str(rec))}", highlight=False)
