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
        study.log_event(
            {
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
        )
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
        total_seconds = result.seconds + sum(e.get("seconds") or 0.0 for e in earlier)
        error = None
        if result.val_loss is not None and math.isfinite(result.val_loss):
            error = result.val_loss - rec.val_loss
        event = {
            "event": "final",
            "lr": rec.lr,
            "status": result.status.value,
            "predicted_val_loss": rec.val_loss,
            "predicted_val_loss_std": rec.val_loss_std,
            "val_loss": result.val_loss if result.status is TrialStatus.COMPLETE else None,
            "prediction_error": error if result.status is TrialStatus.COMPLETE else None,
            "hellaswag": result.hellaswag,
            "seconds": result.seconds,
            "dollars": result.dollars,
            "total_seconds": total_seconds,
            "total_dollars": runner.dollars(total_seconds),
            "resumed": resume,
            "kill_reason": result.kill_reason,
            "error": result.error or result.kill_detail,
            "run_dir": str(run_dir),
        }
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
