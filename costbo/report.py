"""The write-up of a study, ready to paste: the course's experiment table, the probe's cost
analysis, the total expenditure and the selected LR with a justification generated from the model.

``costbo report --format md|csv|tex`` prints it; ``render_report(source, fmt)`` returns it as
text. ``source`` is a config (path or ``Config``), a journal path, a ``Study`` or a
``StudyRecord``. Markdown and LaTeX hold every section; CSV holds the experiment table only (one
header, one row per run), for spreadsheets. ``StudyRecord`` is also what ``costbo.plots`` reads:
a study together with its journal's notes (``probe``, ``final_start`` and ``final`` events) and
its run folders (main.log, trial.json).

Units: seconds, dollars, val loss in nats, HellaSwag as a fraction (printed in percent).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from costbo.gpt2 import ModelShape
from costbo.journal import read_events
from costbo.space import Fidelity
from costbo.trial import Recommendation, Trial, TrialStatus

if TYPE_CHECKING:
    from costbo.config import Config
    from costbo.study import Study

FORMATS = ("md", "csv", "tex")
DEFAULT_LR = 6e-4  # llm.c's and GPT-3's max LR for 124M: the reference every answer is held to
PROBE_WINDOW = range(10, 20)  # the course's cost method: the slowest of steps 10-19


# --- what a study recorded -------------------------------------------------------------------
@dataclass
class RunCurve:
    """A run's losses from its logs: ``train`` by 1-based step, ``val`` by updates done (0 =
    before training), nats; ``status`` is the trial status ("complete", "diverged", ...)."""

    label: str
    lr: float
    steps: int
    model: ModelShape
    status: str
    train: dict[int, float] = field(default_factory=dict)
    val: dict[int, float] = field(default_factory=dict)
    hellaswag: float | None = None
    is_final: bool = False


@dataclass
class StudyRecord:
    """A study with what its journal noted beside the trials and where its run folders are.

    ``events`` are the journal's events (empty for an in-memory study); ``runs_dir`` is where
    run folders are looked up when the paths recorded in the journal no longer exist (a study
    pulled from S3 to another machine).
    """

    study: Study
    events: list[dict] = field(default_factory=list)
    runs_dir: Path | None = None
    config: Config | None = None

    @classmethod
    def load(cls, source: StudyRecord | Study | Config | str | os.PathLike) -> StudyRecord:
        """From a config (``Config`` or a ``.toml`` path), a journal path or a ``Study``."""
        from costbo.config import Config, load_config
        from costbo.study import Study

        if isinstance(source, StudyRecord):
            return source
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if path.suffix == ".toml":
                source = load_config(path)
            else:
                source = Study.load(path, read_only=True)
        if isinstance(source, Config):
            study = source.load_study()
            return cls(study, _journal_events(study), source.study.runs_dir, source)
        if isinstance(source, Study):
            runs_dir = source.journal_path.parent if source.journal_path is not None else None
            return cls(source, _journal_events(source), runs_dir)
        raise TypeError(
            f"cannot report on a {type(source).__name__}: give a Study, a Config, a config "
            "path (.toml) or a journal path (.jsonl)"
        )

    # --- journal notes ---------------------------------------------------------------------
    @property
    def probes(self) -> list[dict]:
        """The last ``probe`` event of each model shape, in the order they were probed."""
        latest: dict[tuple, dict] = {}
        for event in self.events:
            if event.get("event") == "probe":
                latest.pop(tuple(event["model"]), None)
                latest[tuple(event["model"])] = event
        return list(latest.values())

    @property
    def probe_dollars(self) -> float:
        """Dollars every probe run cost (repeated probes included; outside the budget)."""
        return float(sum(e.get("dollars") or 0.0 for e in self.events if e.get("event") == "probe"))

    @property
    def finals(self) -> list[dict]:
        """The last ``final`` event of each final run folder (one per LR it was run at)."""
        latest: dict[str, dict] = {}
        for event in self.events:
            if event.get("event") == "final":
                latest.pop(event.get("run_dir", ""), None)
                latest[event.get("run_dir", "")] = event
        return list(latest.values())

    @property
    def final(self) -> dict | None:
        """The latest ``final`` event (the full-scale run's outcome), or None."""
        finals = self.finals
        return finals[-1] if finals else None

    def final_start(self, final: dict) -> dict | None:
        """The ``final_start`` event (prediction made at launch) of a final run."""
        starts = [
            e
            for e in self.events
            if e.get("event") == "final_start" and e.get("run_dir") == final.get("run_dir")
        ]
        return starts[0] if starts else None

    @property
    def final_dollars(self) -> float:
        """Dollars every attempt of every final run cost (outside the budget)."""
        return float(sum(e.get("dollars") or 0.0 for e in self.events if e.get("event") == "final"))

    # --- run folders -----------------------------------------------------------------------
    def find_dir(self, recorded: str | None, fallback_name: str | None = None) -> Path | None:
        """A run folder: as recorded, else under ``runs_dir`` by its name."""
        candidates = []
        if recorded:
            candidates.append(Path(recorded))
        if self.runs_dir is not None:
            if recorded:
                candidates.append(self.runs_dir / Path(recorded).name)
            if fallback_name:
                candidates.append(self.runs_dir / fallback_name)
        return next((p for p in candidates if p.is_dir()), None)

    def trial_dir(self, trial: Trial) -> Path | None:
        from costbo.optimize import run_dir_name

        return self.find_dir(trial.user_attrs.get("run_dir"), run_dir_name(trial))

    def trial_curve(self, trial: Trial) -> RunCurve | None:
        run_dir = self.trial_dir(trial)
        if run_dir is None:
            return None
        label = f"#{trial.id + 1}: lr {format_lr(trial.lr)}, {trial.steps} steps, {trial.model}"
        curve = RunCurve(label, trial.lr, trial.steps, trial.model, trial.status.value)
        curve.hellaswag = trial.user_attrs.get("hellaswag")
        return curve if _read_losses(run_dir, curve) else None

    def final_curve(self, final: dict) -> RunCurve | None:
        run_dir = self.find_dir(final.get("run_dir"))
        if run_dir is None:
            return None
        target = self.study.space.target
        label = f"final: lr {format_lr(final['lr'])}, {target.steps} steps, {target.model}"
        curve = RunCurve(
            label, final["lr"], target.steps, target.model, final["status"], is_final=True
        )
        curve.hellaswag = final.get("hellaswag")
        return curve if _read_losses(run_dir, curve) else None

    def curves(self, max_runs: int = 8) -> list[RunCurve]:
        """Learning curves worth showing: the final run, then each rung's best run, then the
        other runs by val loss (diverged last), ``max_runs`` at most."""
        curves: list[RunCurve] = []
        final = self.final
        if final is not None and (curve := self.final_curve(final)) is not None:
            curves.append(curve)
        best = best_observed(self.study.trials)
        rest = sorted(
            (t for t in self.study.trials if t.is_finished),
            key=lambda t: (
                t not in best.values(),
                t.val_loss is None,
                t.val_loss if t.val_loss is not None else 0.0,
                t.id,
            ),
        )
        for trial in rest:
            if len(curves) >= max_runs:
                break
            if (curve := self.trial_curve(trial)) is not None:
                curves.append(curve)
        return curves

    def run_flags(self, run_dir: Path | None) -> dict[str, str]:
        """The llm.c flags a run was launched with (from its trial.json), or {}."""
        record = _read_json(run_dir / "trial.json") if run_dir is not None else None
        argv = (record or {}).get("argv") or []
        if "-l" not in argv:
            return {}
        start = argv.index("-l")
        return dict(zip(argv[start::2], argv[start + 1 :: 2], strict=False))


def _journal_events(study: Study) -> list[dict]:
    if study.journal_path is None or not study.journal_path.exists():
        return []
    return read_events(study.journal_path)[0]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_losses(run_dir: Path, curve: RunCurve) -> bool:
    """Fill ``curve`` from main.log (what llm.c writes), else the runner's trial.json."""
    from costbo.llmc.log_parser import LogParser, RunLog

    main_log = run_dir / "main.log"
    if main_log.is_file():
        parser, log = LogParser("main.log"), RunLog()
        with open(main_log, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                log.extend(parser.feed(chunk))
        log.extend(parser.close())
        curve.train, curve.val = dict(log.train_losses), dict(log.val_losses)
        if log.hellaswag is not None:
            curve.hellaswag = log.hellaswag
    if not curve.train:
        result = (_read_json(run_dir / "trial.json") or {}).get("result") or {}
        nan = float("nan")
        curve.train = {int(s): nan if v is None else v for s, v in result.get("train_losses", [])}
        curve.val = {int(s): nan if v is None else v for s, v in result.get("val_losses", [])}
    return bool(curve.train or curve.val)


def best_observed(trials: Sequence[Trial]) -> dict[Fidelity, Trial]:
    """The completed run with the lowest val loss at each fidelity that has one."""
    best: dict[Fidelity, Trial] = {}
    for t in trials:
        if t.status is not TrialStatus.COMPLETE:
            continue
        fid = Fidelity(t.steps, t.model)
        if fid not in best or t.val_loss < best[fid].val_loss:
            best[fid] = t
    return best


def model_best_lr(study: Study, fidelity: Fidelity) -> float:
    """The model's best LR at a fidelity: the study's own answer on its rungs, the posterior
    mean's argmin over the study's LR grid elsewhere."""
    if fidelity in study.space.fidelities:
        return study.best_lr(fidelity)
    sl = study.posterior_slice(fidelity, np.asarray(study.lr_grid))
    return float(sl["lr"][int(np.argmin(sl["mean"]))])


def informative(trials: Sequence[Trial]) -> list[Trial]:
    """Runs the model learns from: completed and diverged ones."""
    return [t for t in trials if t.status in (TrialStatus.COMPLETE, TrialStatus.DIVERGED)]


# --- formatting ------------------------------------------------------------------------------
def format_lr(lr: float) -> str:
    """An LR the way papers write it: 3 significant digits, short exponent (1.47e-3)."""
    if lr == 0:
        return "0"
    mantissa, exponent = f"{lr:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_dollars(dollars: float | None) -> str:
    if dollars is None:
        return "-"
    return f"${dollars:.2f}" if abs(dollars) >= 1 or dollars == 0 else f"${dollars:.3f}"


# --- the report's content --------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentRow:
    """One row of the course's experiment table. ``number`` is the trial id + 1, or "final";
    ``warmup_steps`` is llm.c's -u (ramp-up when > 0); ``decay_fraction`` its -q (the LR decays
    to ``lr x decay_fraction``); seconds and dollars as accounted by the study."""

    number: str
    lr: float
    steps: int
    model: ModelShape
    status: str
    warmup_steps: int | None
    decay_fraction: float | None
    schedule: str | None
    seconds: float | None
    dollars: float | None
    val_loss: float | None
    hellaswag: float | None

    @property
    def ramp_up(self) -> str:
        return "-" if self.warmup_steps is None else ("Y" if self.warmup_steps > 0 else "N")

    @property
    def decay_target(self) -> str:
        if self.decay_fraction is None:
            return "-"
        if self.decay_fraction == 0:
            return "0"
        return f"{format_lr(self.lr * self.decay_fraction)} ({self.decay_fraction:g} x max)"

    @property
    def val_loss_text(self) -> str:
        if self.status == TrialStatus.COMPLETE.value and self.val_loss is not None:
            return f"{self.val_loss:.4f}"
        return self.status

    @property
    def hellaswag_text(self) -> str:
        return "-" if self.hellaswag is None else f"{100 * self.hellaswag:.1f}%"


@dataclass(frozen=True)
class ProbeRow:
    """The course's cost analysis of one model shape: the slowest of steps 10-19 (``step``
    1-based as llm.c prints it, None when the probe's log is gone) and its milliseconds, and the
    predicted hours and dollars of a ``steps``-step run (``hours = ms x steps / 3.6e6``)."""

    model: ModelShape
    step: int | None
    ms: float
    steps: int
    hours: float
    dollars: float


@dataclass(frozen=True)
class Drift:
    """The model's best LR at two points along one axis (steps or width) with the other fixed;
    ``per_doubling`` is the factor the best LR moves by per doubling of that axis."""

    axis: str
    fixed: str
    low_label: str
    low_lr: float
    high_label: str
    high_lr: float
    per_doubling: float

    def sentence(self) -> str:
        if self.per_doubling < 0.97:
            verb = "falls"
        elif self.per_doubling > 1.03:
            verb = "rises"
        else:
            verb = "barely moves"
        return (
            f"{self.fixed} the best LR {verb} from {format_lr(self.low_lr)} at "
            f"{self.low_label} to {format_lr(self.high_lr)} at {self.high_label} "
            f"(x{self.per_doubling:.2f} per doubling of {self.axis})"
        )


@dataclass(frozen=True)
class Selection:
    """The selected LR and the facts its justification is written from."""

    recommendation: Recommendation
    target: Fidelity
    n_informative: int
    n_diverged: int
    n_rungs: int
    drifts: tuple[Drift, ...]
    best_run: Trial | None
    smallest_diverged: Trial | None
    default_loss: float
    default_loss_sd: float
    default_p_diverge: float
    final: dict | None

    def paragraphs(self) -> list[str]:
        rec = self.recommendation
        out = [
            f"Selected max LR: {format_lr(rec.lr)} for the full-scale run ({self.target}), 90% "
            f"interval {format_lr(rec.lr_low)} .. {format_lr(rec.lr_high)}; predicted val loss "
            f"{rec.val_loss:.3f} +- {rec.val_loss_std:.3f} nats, divergence risk "
            f"{100 * rec.divergence_probability:.1f}%."
        ]
        why = (
            f"Why: {_count(self.n_informative, 'informative tuning run')} "
            f"({self.n_diverged} diverged) on {_count(self.n_rungs, 'rung')} taught the model "
            "how the best LR moves."
        )
        if self.best_run is not None:
            b = self.best_run
            why += (
                f" The best observed run was #{b.id + 1} (lr {format_lr(b.lr)}, {b.steps} steps, "
                f"{b.model}: val loss {b.val_loss:.4f})."
            )
        if self.drifts:
            text = "; ".join(d.sentence() for d in self.drifts)
            why += f" In the model, {text}."
            if self.n_rungs < 2:
                why += (
                    " With runs on one rung only, that movement comes from the prior (published "
                    "scaling laws), not from the data."
                )
        why += (
            " Extrapolated to the full-scale corner, the expected val loss with the divergence "
            f"risk counted is lowest at {format_lr(rec.lr)}"
        )
        mean_best = self.drifts[0].high_lr if self.drifts else None
        if mean_best is not None and abs(math.log(mean_best / rec.lr)) > math.log(1.1):
            why += (
                f" (the posterior mean alone is lowest at {format_lr(mean_best)}; averaging "
                "over the uncertain optimum and the risk of divergence moves the choice)"
            )
        why += "."
        if self.smallest_diverged is not None:
            d = self.smallest_diverged
            why += (
                f" It stays below {format_lr(d.lr)}, the smallest LR that diverged (run "
                f"#{d.id + 1}, {d.steps} steps, {d.model})."
            )
        gap = self.default_loss - rec.val_loss
        why += (
            f" The llm.c default {format_lr(DEFAULT_LR)} is predicted at "
            f"{self.default_loss:.3f} +- {self.default_loss_sd:.3f} nats ("
            + (f"{gap:.3f} nats worse" if gap >= 0 else f"{-gap:.3f} nats better")
            + f"; divergence risk {100 * self.default_p_diverge:.1f}%)."
        )
        out.append(why)
        if self.final is not None:
            out.append(_final_sentence(self.final))
        return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _final_sentence(final: dict) -> str:
    status = final.get("status")
    lr = format_lr(final["lr"])
    if status != TrialStatus.COMPLETE.value or final.get("val_loss") is None:
        return (
            f"Final run at {lr}: {status} after {format_dollars(final.get('total_dollars'))}"
            + (f" ({final['error']})" if final.get("error") else "")
            + "."
        )
    sd = final.get("predicted_val_loss_std") or 0.0
    error = final["val_loss"] - final["predicted_val_loss"]
    z = f", {error / sd:+.1f} sd" if sd > 0 else ""
    hella = final.get("hellaswag")
    return (
        f"Final run at {lr}: val loss {final['val_loss']:.4f} (predicted "
        f"{final['predicted_val_loss']:.3f} +- {sd:.3f}: off by {error:+.3f}{z})"
        + (f", HellaSwag {100 * hella:.1f}%" if hella is not None else "")
        + f", {format_dollars(final.get('total_dollars'))}."
    )


@dataclass(frozen=True)
class Spend:
    """Dollars by kind of run; the tuning budget is the study's."""

    probe_runs: int
    probe_dollars: float
    tuning_runs: int
    tuning_dollars: float
    budget: float
    final_runs: int
    final_dollars: float

    @property
    def total(self) -> float:
        return self.probe_dollars + self.tuning_dollars + self.final_dollars


@dataclass(frozen=True)
class Report:
    """Everything the rendered report says; render it with ``render``."""

    title: str
    experiments: list[ExperimentRow]
    probes: list[ProbeRow]
    target_prediction: tuple[float, float, float] | None  # dollars: course, model, upper
    cost_quantile: float
    price_per_hour: float
    spend: Spend
    selection: Selection | None
    no_selection_reason: str | None
    simulated: bool


def build_report(source) -> Report:
    """Collect the report's content from a study (see the module doc for ``source``)."""
    record = StudyRecord.load(source)
    study = record.study
    experiments = [_trial_row(record, t) for t in study.trials]
    experiments += [_final_row(record, f, i) for i, f in enumerate(record.finals)]
    selection, reason = None, None
    try:
        selection = _selection(record)
    except ValueError as err:
        reason = str(err)
    name = study.journal_path.name if study.journal_path is not None else "in-memory study"
    return Report(
        title=f"costbo report: {name}",
        experiments=experiments,
        probes=_probe_rows(record),
        target_prediction=_target_prediction(record),
        cost_quantile=study.cost_quantile,
        price_per_hour=study.price_per_hour,
        spend=Spend(
            probe_runs=sum(e.get("event") == "probe" for e in record.events),
            probe_dollars=record.probe_dollars,
            tuning_runs=sum(t.is_finished for t in study.trials),
            tuning_dollars=study.spent,
            budget=study.budget,
            final_runs=sum(e.get("event") == "final" for e in record.events),
            final_dollars=record.final_dollars,
        ),
        selection=selection,
        no_selection_reason=reason,
        simulated=any(t.user_attrs.get("simulated") for t in study.trials),
    )


def _schedule(record: StudyRecord, run_dir: Path | None, steps: int) -> tuple:
    """(warmup steps, final LR fraction, schedule) from the run's flags, else the config."""
    flags = record.run_flags(run_dir)
    if flags:
        try:
            return int(flags["-u"]), float(flags["-q"]), flags.get("-k")
        except (KeyError, ValueError):
            pass
    if record.config is not None:
        trainer = record.config.trainer
        return trainer.warmup_steps(steps), trainer.final_lr_fraction, trainer.schedule
    return None, None, None


def _trial_row(record: StudyRecord, t: Trial) -> ExperimentRow:
    warmup, fraction, schedule = _schedule(record, record.trial_dir(t), t.steps)
    return ExperimentRow(
        number=str(t.id + 1),
        lr=t.lr,
        steps=t.steps,
        model=t.model,
        status=t.status.value,
        warmup_steps=warmup,
        decay_fraction=fraction,
        schedule=schedule,
        seconds=t.seconds,
        dollars=t.cost,
        val_loss=t.val_loss,
        hellaswag=t.user_attrs.get("hellaswag"),
    )


def _final_row(record: StudyRecord, final: dict, index: int) -> ExperimentRow:
    target = record.study.space.target
    warmup, fraction, schedule = _schedule(
        record, record.find_dir(final.get("run_dir")), target.steps
    )
    return ExperimentRow(
        number="final" if index == 0 else f"final {index + 1}",
        lr=final["lr"],
        steps=target.steps,
        model=target.model,
        status=final.get("status", "?"),
        warmup_steps=warmup,
        decay_fraction=fraction,
        schedule=schedule,
        seconds=final.get("total_seconds", final.get("seconds")),
        dollars=final.get("total_dollars", final.get("dollars")),
        val_loss=final.get("val_loss"),
        hellaswag=final.get("hellaswag"),
    )


def _slowest_probe_step(run_dir: Path | None) -> tuple[int, float] | None:
    if run_dir is None:
        return None
    from costbo.llmc.log_parser import LogParser, RunLog

    for name, source in (("stdout.log", "stdout"), ("main.log", "main.log")):
        path = run_dir / name
        if not path.is_file():
            continue
        parser, log = LogParser(source), RunLog()
        log.extend(parser.feed(path.read_bytes()))
        log.extend(parser.close())
        window = {s: log.step_ms[s] for s in PROBE_WINDOW if s in log.step_ms}
        if window:
            step = max(window, key=window.get)
            return step, window[step]
    return None


def _probe_rows(record: StudyRecord) -> list[ProbeRow]:
    steps = record.study.space.target.steps
    price = record.study.price_per_hour
    rows = []
    for event in record.probes:
        if event.get("step_ms") is None:
            continue
        found = _slowest_probe_step(record.find_dir(event.get("run_dir")))
        step = found[0] if found else None
        ms = float(event["step_ms"])
        hours = ms * steps / 3.6e6
        rows.append(ProbeRow(ModelShape(*event["model"]), step, ms, steps, hours, hours * price))
    return rows


def _target_prediction(record: StudyRecord) -> tuple[float, float, float] | None:
    study = record.study
    target = study.space.target
    course = next(
        (
            e["step_ms"] * target.steps / 3.6e6 * study.price_per_hour
            for e in record.probes
            if tuple(e["model"]) == target.model.as_tuple() and e.get("step_ms") is not None
        ),
        None,
    )
    if course is None and not record.probes:
        return None
    predicted = study.predict_cost(target.steps, target.model)
    return (course, predicted.dollars, predicted.upper_dollars)


def _selection(record: StudyRecord) -> Selection:
    study = record.study
    runs = informative(study.trials)
    rec = study.recommend()  # raises ValueError (with its reason) before any run finished
    target = study.space.target
    smallest_model = min((f.model for f in study.space.fidelities), key=lambda m: m.channels)
    fewest_steps = min(f.steps for f in study.space.fidelities)
    drifts = []
    if smallest_model.channels < target.width:
        low = Fidelity(target.steps, smallest_model)
        drifts.append(
            _drift(
                study, "width", f"at {target.steps} steps", low, target, f"width {low.width}",
                f"width {target.width}", target.width / low.width,
            )
        )  # fmt: skip
    if fewest_steps < target.steps:
        low = Fidelity(fewest_steps, target.model)
        drifts.append(
            _drift(
                study, "steps", f"for {target.model}", low, target, f"{low.steps} steps",
                f"{target.steps} steps", target.steps / low.steps,
            )
        )  # fmt: skip
    best = best_observed(study.trials)
    best_run = min(best.values(), key=lambda t: t.val_loss, default=None)
    diverged = [t for t in study.trials if t.status is TrialStatus.DIVERGED]
    default = study.posterior_slice(target, np.array([math.log10(DEFAULT_LR)]))
    return Selection(
        recommendation=rec,
        target=target,
        n_informative=len(runs),
        n_diverged=len(diverged),
        n_rungs=len({(t.steps, t.model) for t in runs}),
        drifts=tuple(drifts),
        best_run=best_run,
        smallest_diverged=min(diverged, key=lambda t: t.lr, default=None),
        default_loss=float(default["mean"][0]),
        default_loss_sd=float(default["sd"][0]),
        default_p_diverge=float(default["p_diverge"][0]),
        final=record.final,
    )


def _drift(study, axis, fixed, low, high, low_label, high_label, ratio) -> Drift:
    low_lr, high_lr = model_best_lr(study, low), model_best_lr(study, high)
    per_doubling = (high_lr / low_lr) ** (1.0 / math.log2(ratio))
    return Drift(axis, fixed, low_label, low_lr, high_label, high_lr, per_doubling)


# --- rendering -------------------------------------------------------------------------------
EXPERIMENT_HEADER = [
    "#", "max LR", "steps", "depth", "channels", "heads", "ramp-up", "LR decay target",
    "run time", "approx. cost", "final val loss", "final HellaSwag",
]  # fmt: skip
CSV_HEADER = [
    "experiment", "max_lr", "steps", "depth", "channels", "heads", "ramp_up", "warmup_steps",
    "lr_decay_target", "final_lr_fraction", "schedule", "run_seconds", "approx_cost_dollars",
    "final_val_loss", "final_hellaswag", "status",
]  # fmt: skip


def _experiment_cells(row: ExperimentRow) -> list[str]:
    return [
        row.number,
        format_lr(row.lr),
        str(row.steps),
        str(row.model.depth),
        str(row.model.channels),
        str(row.model.heads),
        row.ramp_up,
        row.decay_target,
        format_seconds(row.seconds),
        format_dollars(row.dollars),
        row.val_loss_text,
        row.hellaswag_text,
    ]


def _probe_header(report: Report) -> list[str]:
    steps = report.probes[0].steps if report.probes else 0
    return [
        "model", "parameters", "slowest of steps 10-19", "its ms",
        f"hours for {steps} steps", f"dollars for {steps} steps",
    ]  # fmt: skip


def _probe_cells(row: ProbeRow) -> list[str]:
    return [
        str(row.model),
        f"{row.model.num_parameters() / 1e6:.1f}M",
        "-" if row.step is None else f"step {row.step}",
        f"{row.ms:.2f}",
        f"{row.hours:.3g}",
        f"${row.dollars:.2f}",
    ]


def _spend_rows(spend: Spend) -> list[list[str]]:
    return [
        ["probe (outside the budget)", str(spend.probe_runs), format_dollars(spend.probe_dollars)],
        [
            f"tuning (budget {format_dollars(spend.budget)})",
            str(spend.tuning_runs),
            format_dollars(spend.tuning_dollars),
        ],
        ["final (outside the budget)", str(spend.final_runs), format_dollars(spend.final_dollars)],
        [
            "total",
            str(spend.probe_runs + spend.tuning_runs + spend.final_runs),
            format_dollars(spend.total),
        ],
    ]


def _notes(report: Report) -> list[str]:
    note = (
        "Experiments are numbered in the order costbo ran them; 'final' is the full-scale run at "
        "the selected LR. Run time and cost are as accounted by the study (cost = run time x "
        f"${report.price_per_hour:.2f}/hour)"
    )
    stopped = {"diverged", "interrupted", "failed"} & {r.status for r in report.experiments}
    if stopped:
        note += f"; {' and '.join(sorted(stopped))} runs were stopped early"
    notes = [note + "."]
    if report.simulated:
        notes.append("Run times are costbo-sim's simulated A10G seconds.")
    return notes


def _probe_notes(report: Report) -> list[str]:
    notes = [
        "The course's method: run 20 steps, take the slowest of steps 10-19; hours = ms x "
        f"steps / 3.6e6; dollars = hours x ${report.price_per_hour:.2f}/hour."
    ]
    if report.target_prediction is not None:
        course, model, upper = report.target_prediction
        text = "The full-scale run: "
        if course is not None:
            text += f"{format_dollars(course)} by the course's method, "
        text += (
            f"{format_dollars(model)} by the cost model with overheads (up to "
            f"{format_dollars(upper)} at its {report.cost_quantile:.0%} quantile)."
        )
        notes.append(text)
    return notes


NO_PROBE = "No probe runs: run `costbo probe` for the course's cost analysis."


def _selection_paragraphs(report: Report) -> list[str]:
    if report.selection is None:
        return [f"No selection yet: {report.no_selection_reason}"]
    return report.selection.paragraphs()


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, rows)]


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", "## Experiments", ""]
    lines += _md_table(EXPERIMENT_HEADER, [_experiment_cells(r) for r in report.experiments])
    for note in _notes(report):
        lines += ["", note]
    lines += ["", "## Cost analysis (probe)", ""]
    if report.probes:
        lines += _md_table(_probe_header(report), [_probe_cells(r) for r in report.probes])
        for note in _probe_notes(report):
            lines += ["", note]
    else:
        lines.append(NO_PROBE)
    lines.append("")
    lines += ["## Total expenditure", ""]
    lines += _md_table(["runs", "count", "dollars"], _spend_rows(report.spend))
    lines += ["", "## Final selection", ""]
    for paragraph in _selection_paragraphs(report):
        lines += [paragraph.replace("+-", "\u00b1"), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in report.experiments:
        writer.writerow(
            [
                r.number,
                repr(r.lr),
                r.steps,
                r.model.depth,
                r.model.channels,
                r.model.heads,
                "" if r.warmup_steps is None else r.ramp_up,
                "" if r.warmup_steps is None else r.warmup_steps,
                "" if r.decay_fraction is None else f"{r.lr * r.decay_fraction:.6g}",
                "" if r.decay_fraction is None else repr(r.decay_fraction),
                r.schedule or "",
                "" if r.seconds is None else f"{r.seconds:.3f}",
                "" if r.dollars is None else f"{r.dollars:.6f}",
                "" if r.val_loss is None else f"{r.val_loss:.6f}",
                "" if r.hellaswag is None else f"{r.hellaswag:.6f}",
                r.status,
            ]
        )
    return out.getvalue()


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text).replace("+-", r"$\pm$")


def _tex_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    return [
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(tex_escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]


def render_tex(report: Report) -> str:
    """A LaTeX fragment to ``\\input``; its tables need ``\\usepackage{booktabs}``."""
    lines = [
        f"% {report.title}; needs \\usepackage{{booktabs}}",
        r"\subsection*{Experiments}",
        r"{\small\setlength{\tabcolsep}{3pt}",
    ]
    lines += _tex_table(
        EXPERIMENT_HEADER,
        [_experiment_cells(r) for r in report.experiments],
        "r" + "r" * 5 + "cl" + "r" * 4,
    )
    lines += ["}", "", *(tex_escape(n) for n in _notes(report)), ""]
    lines.append(r"\subsection*{Cost analysis (probe)}")
    if report.probes:
        lines += _tex_table(
            _probe_header(report), [_probe_cells(r) for r in report.probes], "lrrrrr"
        )
        lines += ["", *(tex_escape(n) for n in _probe_notes(report))]
    else:
        lines.append(tex_escape(NO_PROBE))
    lines += ["", r"\subsection*{Total expenditure}"]
    lines += _tex_table(["runs", "count", "dollars"], _spend_rows(report.spend), "lrr")
    lines += ["", r"\subsection*{Final selection}"]
    for paragraph in _selection_paragraphs(report):
        lines += [tex_escape(paragraph), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


RENDERERS = {"md": render_markdown, "csv": render_csv, "tex": render_tex}


def render_report(source, fmt: str = "md") -> str:
    """The report as text: ``fmt`` is "md", "csv" or "tex"."""
    if fmt not in RENDERERS:
        raise ValueError(f"report format {fmt!r} is unknown: choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](build_report(source))


def write_report(source, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write the report to ``path``; the format defaults to the file's suffix (.md/.csv/.tex)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    text = render_report(source, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
