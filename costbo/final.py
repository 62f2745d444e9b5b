"""``costbo final``: the full-scale run at the recommended LR, checked against its prediction.

It runs the study's target (steps and model) at ``Study.recommend().lr`` with the course's final
settings from ``[final]``: micro batch 32, HellaSwag on, val loss every 250 steps, a checkpoint
every ``checkpoint_every`` steps. Rerunning after an interruption resumes from the last
checkpoint with llm.c's ``-y 1`` instead of starting over (the run dir is named after the LR, so
a different recommendation starts a fresh run). It is outside the tuning budget: no cost limit.
The journal records a ``final_start`` event and, per attempt, a ``final`` event with the
predicted and the actual val loss and the HellaSwag accuracy, so every study ends by checking
its own prediction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from costbo.config import Config, ConfigError
from costbo.journal import read_events
from costbo.optimize import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    RunDisplay,
    make_runner,
    make_sync,
    read_run_record,
    seconds_spent,
    stop_trainers,
    sync_now,
)
from costbo.trial import TrialStatus


@dataclass(frozen=True)
class FinalRun:
    """The full-scale run as the command builder sees it."""

    lr: float
    steps: int
    depth: int
    width: int
    heads: int
    id: str = "final"


def final_run_dir(config: Config, run: FinalRun) -> Path:
    return config.study.runs_dir / (
        f"final_lr{run.lr:.3e}_x{run.steps}_d{run.depth}c{run.width}h{run.heads}"
    )


def has_checkpoint(run_dir: Path) -> bool:
    """Whether llm.c finished writing a checkpoint there (it writes DONE_<step> last)."""
    return run_dir.is_dir() and any(run_dir.glob("DONE_*"))


def previous_attempts(journal: Path, run_dir: Path) -> list[dict]:
    events, _ = read_events(journal)
    return [e for e in events if e.get("event") == "final" and e.get("run_dir") == str(run_dir)]


def final_event(start: dict, outcome: dict, earlier: list[dict], price_per_hour: float) -> dict:
    """The journal's ``final`` event: the prediction ``start`` (a ``final_start`` event) made,
    against ``outcome`` (status, val_loss, hellaswag, seconds, kill_reason, error), with the
    seconds and dollars of every attempt on this run dir so far (``earlier``: their events)."""
    complete = outcome["status"] == TrialStatus.COMPLETE.value
    val_loss = outcome.get("val_loss") if complete else None
    if val_loss is not None and not math.isfinite(val_loss):
        val_loss = None
    predicted = start.get("predicted_val_loss")
    seconds = float(outcome["seconds"])
    total_seconds = seconds + sum(e.get("seconds") or 0.0 for e in earlier)
    return {
        "event": "final",
        "lr": start.get("lr"),
        "status": outcome["status"],
        "predicted_val_loss": predicted,
        "predicted_val_loss_std": start.get("predicted_val_loss_std"),
        "val_loss": val_loss,
        "prediction_error": (
            val_loss - predicted if val_loss is not None and predicted is not None else None
        ),
        "hellaswag": outcome.get("hellaswag"),
        "seconds": seconds,
        "dollars": seconds / 3600.0 * price_per_hour,
        "total_seconds": total_seconds,
        "total_dollars": total_seconds / 3600.0 * price_per_hour,
        "resumed": bool(start.get("resume")),
        "kill_reason": outcome.get("kill_reason"),
        "error": outcome.get("error"),
        "run_dir": start.get("run_dir"),
    }


def settle_lost_attempts(config: Config, study, console: Console) -> list[dict]:
    """Journal a ``final`` event for each attempt that costbo lost (SIGKILL, a crash, a closed
    SSH session): a ``final_start`` with no ``final`` after it on its run dir.

    As for a lost tuning run (``optimize.recover_trial``): a result in its trial.json is taken
    as it is; otherwise a trainer still running there is stopped first (a second one launched
    into the same run dir would fight it for the GPU and the checkpoints), and the attempt is
    recorded as interrupted with the seconds it ran, so that its money is counted.
    """
    events, _ = read_events(config.study.journal)
    open_starts: dict[str, dict] = {}
    for event in events:
        if event.get("event") == "final_start":
            open_starts[event.get("run_dir")] = event
        elif event.get("event") == "final":
            open_starts.pop(event.get("run_dir"), None)
    settled = []
    for run_dir_text, start in open_starts.items():
        run_dir = Path(run_dir_text)
        record = read_run_record(run_dir)
        # trial.json is rewritten per attempt: one started before this final_start belongs to
        # an earlier attempt, and this one died before launching anything.
        if record is not None and float(record.get("started_at") or 0.0) < start.get("time", 0):
            record = None
        result = (record or {}).get("result") or {}
        if result:
            seconds = float(result.get("seconds") or 0.0)
            status = result.get("status")
            error = result.get("error") or result.get("kill_detail")
        else:
            running = stop_trainers(run_dir, config.runner.kill_grace) if record else False
            until = time.time() if running else None
            seconds = seconds_spent(run_dir, record, still_running_until=until) if record else 0.0
            status = TrialStatus.INTERRUPTED.value
            how = "was still running and was stopped" if running else "had stopped"
            error = (
                f"costbo stopped while the final run was going; on resume its trainer {how}; "
                f"{seconds:.1f} s counted"
            )
        outcome = {
            "status": status,
            "val_loss": result.get("val_loss"),
            "hellaswag": result.get("hellaswag"),
            "seconds": seconds,
            "kill_reason": result.get("kill_reason") if result else "lost",
            "error": error,
        }
        earlier = previous_attempts(config.study.journal, run_dir)
        event = final_event(start, outcome, earlier, config.study.price_per_hour)
        event["recovered"] = True
        study.log_event(event)
        console.print(
            f"recovered the final run in {run_dir} (left going when costbo stopped): {status}, "
            f"{seconds:.1f} s, ${event['dollars']:.2f} counted",
            highlight=False,
            markup=False,
        )
        settled.append(event)
    return settled


def final(config: Config, *, console: Console | None = None) -> int:
    """Launch (or resume) the final run and journal prediction against outcome."""
    console = console or Console()
    settings = replace(
        config.trainer,
        micro_batch=config.final.micro_batch,
        hellaswag=config.final.hellaswag,
        val_every=config.final.val_every,
        checkpoint_every=config.final.checkpoint_every,
    )
    runner = make_runner(config, settings)
    sync = make_sync(config)
    study = config.open_study(create=False)
    try:
        try:
            rec = study.recommend()
        except ValueError as err:
            raise ConfigError(
                f"{config.path}: no recommendation yet ({err}): run `costbo "
                f"optimize --config {config.path}` first"
            ) from None
        settle_lost_attempts(config, study, console)
        target = study.space.target
        run = FinalRun(rec.lr, target.steps, *target.model.as_tuple())
        run_dir = final_run_dir(config, run)
        earlier = previous_attempts(config.study.journal, run_dir)
        done = [e for e in earlier if e.get("status") == TrialStatus.COMPLETE.value]
        if done and run_dir.exists():
            console.print(
                f"the final run at lr {rec.lr:.4g} already finished ({run_dir}); delete that "
                "folder to run it again",
                highlight=False,
                markup=False,
            )
            return _report(console, done[-1], config)
        resume = has_checkpoint(run_dir)
        overrides = {"-y": 1} if resume else None
        predicted = study.predict_cost(target.steps, target.model)
        start = {
            "event": "final_start",
            "lr": rec.lr,
            "lr_low": rec.lr_low,
            "lr_high": rec.lr_high,
            "predicted_val_loss": rec.val_loss,
            "predicted_val_loss_std": rec.val_loss_std,
            "predicted_seconds": predicted.seconds,
            "predicted_dollars": predicted.dollars,
            "run_dir": str(run_dir),
            "resume": resume,
        }
        study.log_event(start)
        console.print(
            f"final run: {target} at lr {rec.lr:.4g} (90% interval {rec.lr_low:.3g} .. "
            f"{rec.lr_high:.3g}); predicted val loss {rec.val_loss:.4f} +- "
            f"{rec.val_loss_std:.4f}, about ${predicted.dollars:.2f} (outside the tuning budget)"
            + ("; resuming from its last checkpoint (-y 1)" if resume else ""),
            highlight=False,
        )
        with RunDisplay(console, settings.simulated) as display:
            task, on_progress = display.start(f"final {target.model} lr {rec.lr:.3g}", run.steps)
            try:
                result = runner.run(
                    run,
                    run_dir,
                    silence_timeout=config.runner.silence_timeout,
                    on_progress=on_progress,
                    overrides=overrides,
                )
            except ValueError as err:
                raise ConfigError(
                    f"{config.path}: the final run could not be launched: {err}"
                ) from None
            display.finish(
                task,
                f"final run {result.status.value}: {result.seconds:.1f} s, ${result.dollars:.2f}",
            )
        outcome = {
            "status": result.status.value,
            "val_loss": result.val_loss,
            "hellaswag": result.hellaswag,
            "seconds": result.seconds,
            "kill_reason": result.kill_reason,
            "error": result.error or result.kill_detail,
        }
        event = final_event(start, outcome, earlier, config.study.price_per_hour)
        study.log_event(event)
        sync_now(sync, console, run_dir, config.study.journal)
    finally:
        study.close()
    return _report(console, event, config)


def _report(console: Console, event: dict, config: Config) -> int:
    status = event["status"]
    if status == TrialStatus.COMPLETE.value:
        sd = event["predicted_val_loss_std"] or 0.0
        z = event["prediction_error"] / sd if sd > 0 else math.inf
        hella = event["hellaswag"]
        console.print(
            f"[bold]final val loss {event['val_loss']:.4f}[/] (predicted "
            f"{event['predicted_val_loss']:.4f} +- {sd:.4f}: off by "
            f"{event['prediction_error']:+.4f}, {z:+.1f} sd)"
            + (f"; HellaSwag {hella:.4f}" if hella is not None else "; no HellaSwag result")
            + f"; ${event['total_dollars']:.2f} in total",
            highlight=False,
        )
        return EXIT_OK
    if event["kill_reason"] == "interrupted" or status == TrialStatus.INTERRUPTED.value:
        console.print(
            f"final run interrupted after ${event['dollars']:.2f}; rerun `costbo final --config "
            f"{config.path}` to resume it"
            + (
                " from its last checkpoint"
                if config.final.checkpoint_every
                else " (no checkpoints: [final] checkpoint_every = 0, so it starts over)"
            ),
            highlight=False,
            markup=False,
        )
        return EXIT_INTERRUPTED
    console.print(f"[red]final run {status}: {escape(str(event['error']))}[/]", highlight=False)
    return EXIT_FAILED
