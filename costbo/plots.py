"""Figures of a study: the posterior at full scale and at each rung, the drift of the optimum,
spend over time, learning curves and the cost model.

Every function returns a matplotlib ``Figure`` (built without pyplot, so notebooks and scripts
can call them without touching the global backend state) and takes a study in any form that
``costbo.report.StudyRecord.load`` accepts: a ``Study``, a ``Config``, a config path (.toml), a
journal path (.jsonl) or a ``StudyRecord``. ``save_all`` writes them all as PNG and PDF;
``costbo plot --config FILE --out DIR`` calls it.

Conventions: LRs on log axes; val loss in nats; money in dollars; colours from the Okabe-Ito
palette (colour-blind safe), with line styles and markers that carry the meaning too; sized for
the width of a page (7 inches) at 9-point type.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from costbo.gpt2 import VOCAB_SIZE
from costbo.report import (
    DEFAULT_LR,
    RunCurve,
    StudyRecord,
    best_observed,
    format_lr,
    informative,
    model_best_lr,
)
from costbo.space import Fidelity
from costbo.trial import Recommendation, TrialStatus

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency.
BLACK, ORANGE, SKY_BLUE, GREEN = "#000000", "#E69F00", "#56B4E9", "#009E73"
YELLOW, BLUE, VERMILLION, PURPLE = "#F0E442", "#0072B2", "#D55E00", "#CC79A7"
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY_BLUE, BLACK, YELLOW)
PAGE_WIDTH = 7.0  # inches: a page's text width, so that 9-point type prints at 9 points
INITIAL_LOSS = math.log(VOCAB_SIZE)  # nats: an untrained GPT-2, the top of any useful loss axis

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.framealpha": 0.85,
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text for journals and editors
}

LR_LABEL = "max learning rate (log scale)"
LOSS_LABEL = "val loss (nats)"


def _styled(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the house style (rcParams are read when artists are made)."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs) -> Figure:
        with mpl.rc_context(STYLE):
            return build(*args, **kwargs)

    return wrapper


def _dollars(value: float) -> str:
    """Dollars for figure text: a bare $ pair would start mathtext."""
    return f"\\${value:.2f}"


def _record(source) -> StudyRecord:
    return StudyRecord.load(source)


def _require_runs(record: StudyRecord, what: str) -> None:
    if not informative(record.study.trials):
        raise ValueError(
            f"no finished runs yet, so no model to plot for {what}: tell (or run `costbo "
            "optimize` until) at least one completed or diverged run"
        )


def _lr_grid(study, points: int = 161) -> np.ndarray:
    return np.linspace(*study.space.log10_lr_bounds, points)


def _loss_limits(values: Sequence[float], pad: float = 0.06) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = min(finite), max(finite)
    span = max(hi - lo, 0.02)
    return max(lo - pad * span, 0.0), hi + pad * span


def _band_limits(sl: dict, window: np.ndarray, extra: Sequence[float] = ()) -> tuple:
    mean, sd = sl["mean"][window], sl["sd"][window]
    lo, hi = _loss_limits([*(mean - 2 * sd), *(mean + 2 * sd), *extra])
    return lo, min(hi, INITIAL_LOSS + 0.5)


def _log_ticks(ax, axis: str, values: Sequence[int]) -> None:
    """Ticks at the rungs themselves (e.g. 64, 128, 768), printed as plain numbers."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_formatter(NullFormatter())
    (ax.set_xticks if axis == "x" else ax.set_yticks)(sorted(set(values)))


# --- a. the posterior at full scale ----------------------------------------------------------
@_styled
def posterior_at_target(source, *, references: dict[str, float] | None = None) -> Figure:
    """The posterior of the full-scale val loss over max LR (mean, 2-sigma band), the
    recommended LR with its 90% interval, reference LRs (default: llm.c's 6e-4), the smallest
    LR that diverged, the final run if there is one; below, the modelled divergence risk."""
    record = _record(source)
    _require_runs(record, "the posterior at full scale")
    study = record.study
    references = {"llm.c default": DEFAULT_LR} if references is None else references
    rec = study.recommend()
    target = study.space.target
    sl = study.posterior_slice(target, _lr_grid(study))
    lr, mean, sd = sl["lr"], sl["mean"], sl["sd"]

    fig = Figure(figsize=(PAGE_WIDTH, 4.4), layout="constrained")
    ax, risk = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.fill_between(lr, mean - 2 * sd, mean + 2 * sd, color=SKY_BLUE, alpha=0.35, lw=0,
                    label="posterior mean ± 2 sd")  # fmt: skip
    ax.plot(lr, mean, color=BLUE, lw=1.6, label="_mean")
    _mark_recommendation(ax, rec)
    _mark_recommendation(risk, rec, labels=False)
    for i, (name, value) in enumerate(references.items()):
        style = ("--", "-.", (0, (1, 1)))[i % 3]
        for a in (ax, risk):
            a.axvline(value, color=BLACK, ls=style, lw=1,
                      label=f"{name} {format_lr(value)}" if a is ax else None)  # fmt: skip
    if rec.lr_cap is not None:
        for a in (ax, risk):
            label = f"smallest diverged LR {format_lr(rec.lr_cap)}" if a is ax else None
            a.axvline(rec.lr_cap, color=PURPLE, ls=":", lw=1.5, label=label)
    extra = []
    final = record.final
    if final is not None and final.get("val_loss") is not None:
        ax.plot([final["lr"]], [final["val_loss"]], ls="none", marker="*", ms=11, color=ORANGE,
                mec=BLACK, mew=0.6, label=f"final run: {final['val_loss']:.3f}")  # fmt: skip
        extra.append(final["val_loss"])
    window = (lr >= rec.lr_low / 10) & (lr <= rec.lr_high * 10)
    ax.set_ylim(*_band_limits(sl, window, extra))
    ax.set_xscale("log")
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title(f"Posterior at full scale ({target}) after {len(informative(study.trials))} runs")
    ax.legend(loc="best")
    risk.plot(lr, sl["p_diverge"], color=VERMILLION, lw=1.4)
    risk.set_ylim(-0.03, 1.03)
    risk.set_ylabel("P(diverge)")
    risk.set_xlabel(LR_LABEL)
    return fig


def _mark_recommendation(ax, rec: Recommendation, labels: bool = True) -> None:
    ax.axvspan(rec.lr_low, rec.lr_high, color=VERMILLION, alpha=0.12, lw=0,
               label="90% interval of the best LR" if labels else None)  # fmt: skip
    ax.axvline(rec.lr, color=VERMILLION, lw=1.6,
               label=f"recommended {format_lr(rec.lr)}" if labels else None)  # fmt: skip


# --- b. the slice at each rung ---------------------------------------------------------------
@_styled
def rung_slices(source, *, max_panels: int = 12) -> Figure:
    """The posterior over max LR at every rung that has runs (and at the target), each with
    its observations: completed runs as dots, diverged ones as crosses along the top edge."""
    record = _record(source)
    _require_runs(record, "the rung slices")
    study = record.study
    runs = informative(study.trials)
    counts: dict[Fidelity, int] = {}
    for t in runs:
        fid = Fidelity(t.steps, t.model)
        counts[fid] = counts.get(fid, 0) + 1
    target = study.space.target
    chosen = sorted(counts, key=lambda f: -counts[f])[: max(max_panels - 1, 1)]
    fids = sorted(set(chosen) | {target}, key=lambda f: (f.steps, f.width, f.model))
    ncols = min(3, len(fids))
    nrows = math.ceil(len(fids) / ncols)
    fig = Figure(figsize=(PAGE_WIDTH, 1.0 + 2.1 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    u = _lr_grid(study, 121)
    for ax, fid in zip(axes, fids, strict=False):
        sl = study.posterior_slice(fid, u)
        lr, mean, sd = sl["lr"], sl["mean"], sl["sd"]
        here = [t for t in runs if Fidelity(t.steps, t.model) == fid]
        done = [t for t in here if t.status is TrialStatus.COMPLETE]
        diverged = [t for t in here if t.status is TrialStatus.DIVERGED]
        ax.fill_between(lr, mean - 2 * sd, mean + 2 * sd, color=SKY_BLUE, alpha=0.35, lw=0,
                        label="posterior mean ± 2 sd")  # fmt: skip
        ax.plot(lr, mean, color=BLUE, lw=1.3, label="_mean")
        best = model_best_lr(study, fid)
        ax.axvline(best, color=GREEN, ls="--", lw=1, label="model's best LR at the rung")
        centre = [t.lr for t in here] or [best]
        window = (lr >= min(centre) / 10) & (lr <= max(centre) * 10)
        lo, hi = _band_limits(sl, window, [t.val_loss for t in done])
        ax.set_ylim(lo, hi)
        if done:
            ax.plot([t.lr for t in done], [t.val_loss for t in done], ls="none", marker="o",
                    ms=4, color=BLACK, label="completed run")  # fmt: skip
        if diverged:
            ax.plot([t.lr for t in diverged], [hi] * len(diverged), ls="none", marker="X", ms=7,
                    color=VERMILLION, clip_on=False, label="diverged run")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlim(lr[0], lr[-1])
        suffix = " (target)" if fid == target else f" ({len(here)} run{'s' * (len(here) != 1)})"
        ax.set_title(f"{fid.steps} steps × {fid.model}{suffix}", fontsize=8.5)
    for i, ax in enumerate(axes[: len(fids)]):
        if i + ncols >= len(fids):  # the lowest panel of its column
            ax.set_xlabel(LR_LABEL)
    for ax in axes[len(fids) :]:
        ax.set_visible(False)
    handles: dict[str, object] = {}
    for ax in axes[: len(fids)]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=4)
    fig.supylabel(LOSS_LABEL, fontsize=9)
    shown = len(fids) - (target not in counts)
    title = "Posterior over max LR at each rung, with its runs"
    if shown < len(counts):
        title += f" ({shown} of {len(counts)} rungs with runs: those with the most)"
    fig.suptitle(title, fontsize=10)
    return fig


# --- c. the drift of the optimum -------------------------------------------------------------
@_styled
def optimum_drift(source) -> Figure:
    """The model's best LR at each width (one line per steps rung) and at each step count (one
    line per model), the best observed run of rungs with two or more runs, and the extrapolation
    to the full-scale corner: the recommendation with its 90% interval."""
    record = _record(source)
    _require_runs(record, "the drift of the optimum")
    study = record.study
    rec = study.recommend()
    target = study.space.target
    fids = list(study.space.fidelities)
    best = {f: model_best_lr(study, f) for f in fids}
    observed = best_observed(study.trials)
    n_done: dict[Fidelity, int] = {}
    for t in study.trials:
        if t.status is TrialStatus.COMPLETE:
            fid = Fidelity(t.steps, t.model)
            n_done[fid] = n_done.get(fid, 0) + 1

    n_groups = max(len({f.steps for f in fids}), len({f.model for f in fids}))
    fig = Figure(figsize=(PAGE_WIDTH, 3.6 + 0.13 * n_groups), layout="constrained")
    by_width, by_steps = fig.subplots(1, 2, sharey=True)
    panels = (
        (by_width, lambda f: f.width, lambda f: f.steps, "{} steps".format, "width in channels"),
        (by_steps, lambda f: f.steps, lambda f: f.model, str, "training steps"),
    )
    for ax, x_of, group_of, name, xlabel in panels:
        groups = sorted({group_of(f) for f in fids}, key=lambda g: getattr(g, "channels", g))
        for i, group in enumerate(groups):
            members = sorted((f for f in fids if group_of(f) == group), key=x_of)
            colour = PALETTE[i % len(PALETTE)]
            ax.plot([x_of(f) for f in members], [best[f] for f in members], color=colour,
                    marker=".", ms=5, lw=1.2, label=name(group))  # fmt: skip
            seen = [f for f in members if n_done.get(f, 0) >= 2]
            if seen:
                ax.plot([x_of(f) for f in seen], [observed[f].lr for f in seen], ls="none",
                        marker="o", ms=7, mfc="none", mec=colour, mew=1.3)  # fmt: skip
        ax.errorbar([x_of(target)], [rec.lr], yerr=[[rec.lr - rec.lr_low], [rec.lr_high - rec.lr]],
                    fmt="*", ms=12, color=BLACK, mfc=VERMILLION, capsize=4, lw=1.3,
                    label="recommended (90% interval)", zorder=5)  # fmt: skip
        default = f"llm.c default {format_lr(DEFAULT_LR)}"
        ax.axhline(DEFAULT_LR, color=BLACK, ls="--", lw=0.9, label=default)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, "x", [x_of(f) for f in fids])
        ax.set_xlabel(xlabel + " (log scale)")
    by_width.plot([], [], ls="none", marker="o", mfc="none", mec=BLACK, label="best observed run")
    by_width.set_ylabel("best max LR (log scale)")
    by_width.set_title("Best LR against width")
    by_steps.set_title("Best LR against steps")
    for ax in (by_width, by_steps):  # below the axes: the lines fill the whole panel
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize=7)
    fig.suptitle(f"Drift of the optimum, extrapolated to {target}", fontsize=10)
    return fig


# --- d. spend and the recommendation over time -----------------------------------------------
@dataclass(frozen=True)
class HistoryPoint:
    """The study after ``runs_told`` tells: dollars spent and its recommendation (None while
    no run has finished or diverged)."""

    runs_told: int
    spent: float
    recommendation: Recommendation | None


def recommendation_history(source, max_points: int = 12) -> list[HistoryPoint]:
    """The recommendation as it stood after each tell, rebuilt from journal prefixes.

    At most ``max_points`` points (evenly spread over the tells, the last always included):
    each costs one model fit (about a second). A study without a journal gives its present
    state only.
    """
    record = _record(source)
    study = record.study
    tells = [i for i, e in enumerate(record.events) if e.get("event") == "tell"]
    if study.journal_path is None or not tells:
        return [_point(study, sum(t.is_finished for t in study.trials))]
    if max_points < 1:
        raise ValueError(f"max_points {max_points!r} must be at least 1")
    picks = np.unique(np.round(np.linspace(0, len(tells) - 1, min(max_points, len(tells)))))
    points = []
    from costbo.study import Study

    with tempfile.TemporaryDirectory(prefix="costbo-history-") as folder:
        for k in picks.astype(int):
            path = Path(folder) / f"prefix-{k}.jsonl"
            with open(path, "w") as f:
                for event in record.events[: tells[k] + 1]:
                    f.write(json.dumps(event) + "\n")
            points.append(_point(Study.load(path, read_only=True), int(k) + 1))
    return points


def _point(study, told: int) -> HistoryPoint:
    rec = study.recommend() if informative(study.trials) else None
    return HistoryPoint(told, study.spent, rec)


@_styled
def spend_history(
    source, *, history: Sequence[HistoryPoint] | None = None, max_points: int = 12
) -> Figure:
    """Run by run: above, the recommended LR with its 90% interval as it stood after each
    tell; below, the cumulative dollars spent on tuning runs (each run's status marked) against
    the budget line."""
    record = _record(source)
    study = record.study
    if not any(t.is_finished for t in study.trials):
        raise ValueError("no run has been told yet: no spend to plot")
    history = list(history) if history is not None else recommendation_history(record, max_points)
    fig = Figure(figsize=(PAGE_WIDTH, 4.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    told = sorted((t for t in study.trials if t.is_finished), key=lambda t: (t.told_at or 0, t.id))
    cumulative = np.cumsum([t.cost or 0.0 for t in told])
    runs = np.arange(1, len(told) + 1)

    known = [p for p in history if p.recommendation is not None]
    if known:
        x = [p.runs_told for p in known]
        recs = [p.recommendation for p in known]
        top.fill_between(x, [r.lr_low for r in recs], [r.lr_high for r in recs],
                         color=VERMILLION, alpha=0.15, lw=0, label="90% interval")  # fmt: skip
        top.plot(x, [r.lr for r in recs], color=VERMILLION, lw=1.4, marker="o", ms=4,
                 label="recommended LR")  # fmt: skip
        for p in known[-1:]:
            top.annotate(f"{format_lr(p.recommendation.lr)} after {_dollars(p.spent)}",
                         (p.runs_told, p.recommendation.lr), xytext=(-6, 8),
                         textcoords="offset points", ha="right", fontsize=7.5)  # fmt: skip
    top.axhline(DEFAULT_LR, color=BLACK, ls="--", lw=0.9,
                label=f"llm.c default {format_lr(DEFAULT_LR)}")  # fmt: skip
    top.set_yscale("log")
    top.set_ylabel("max LR (log scale)")
    top.set_title("Recommendation for the full-scale run, run by run")
    top.legend(loc="best")

    bottom.step(np.r_[0, runs], np.r_[0.0, cumulative], where="post", color=BLUE, lw=1.3,
                label="cumulative dollars")  # fmt: skip
    for status, marker, colour in (
        (TrialStatus.COMPLETE, "o", BLUE),
        (TrialStatus.DIVERGED, "X", VERMILLION),
        (TrialStatus.FAILED, "s", PURPLE),
        (TrialStatus.INTERRUPTED, "D", ORANGE),
    ):
        idx = [i for i, t in enumerate(told) if t.status is status]
        if idx:
            bottom.plot(runs[idx], cumulative[idx], ls="none", marker=marker, ms=5, color=colour,
                        label=f"{status.value} run")  # fmt: skip
    bottom.axhline(study.budget, color=BLACK, lw=1.2, label=f"budget {_dollars(study.budget)}")
    bottom.set_xlim(0.5 if len(told) else 0, max(len(told), 1) + 0.5)
    bottom.set_ylim(0, max(study.budget, study.spent) * 1.08)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("runs told")
    bottom.set_ylabel("dollars")
    bottom.set_title(f"Spend on tuning runs: {_dollars(study.spent)} of {_dollars(study.budget)}")
    bottom.legend(loc="center left", fontsize=7)
    return fig


# --- e. learning curves ----------------------------------------------------------------------
@_styled
def learning_curves(source, *, max_runs: int = 6, annotate: bool | None = None) -> Figure:
    """Training and validation loss against steps for several runs (the final run first, then
    each rung's best), each run's minimum marked with a triangle; the minima are in the legend,
    and written beside the markers when ``annotate`` (default: three runs or fewer, where the
    labels do not collide). ``source`` may also be a list of ``RunCurve``."""
    if isinstance(source, list | tuple):
        curves = list(source)[:max_runs]
    else:
        curves = _record(source).curves(max_runs)
    if not curves:
        raise ValueError(
            "no run logs found (main.log or trial.json in the run folders): plot on the machine "
            "that ran the study, or `costbo pull` its runs first"
        )
    annotate = len(curves) <= 3 if annotate is None else annotate
    log_x = max(c.steps for c in curves) / max(min(c.steps for c in curves), 1) > 10
    fig = Figure(figsize=(PAGE_WIDTH, 3.4 + 0.17 * len(curves)), layout="constrained")
    train_ax, val_ax = fig.subplots(1, 2, sharey=True)
    tops, handles, labels = [], [], []
    for i, curve in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        style = "--" if curve.status == TrialStatus.DIVERGED.value else "-"
        minima, handle = [], None
        for ax, losses, marker in ((train_ax, curve.train, None), (val_ax, curve.val, "o")):
            points = sorted((s, v) for s, v in losses.items() if math.isfinite(v) and v < 20)
            if log_x:
                points = [(s, v) for s, v in points if s > 0]
            if not points:
                minima.append("-")
                continue
            x, y = zip(*points, strict=True)
            line = ax.plot(x, y, color=colour, ls=style, lw=1.8 if curve.is_final else 1.0,
                           marker=marker, ms=3)  # fmt: skip
            k = int(np.argmin(y))
            ax.plot([x[k]], [y[k]], ls="none", marker="v", ms=7, color=colour, mec=BLACK,
                    mew=0.6)  # fmt: skip
            if annotate:
                ax.annotate(f"{y[k]:.3f} @ {x[k]}", (x[k], y[k]), xytext=(0, -12 - 9 * i),
                            textcoords="offset points", ha="right", fontsize=7,
                            color=colour)  # fmt: skip
            minima.append(f"{y[k]:.3f}")
            tops.append(max(y))
            handle = handle or line[0]
        if handle is None:
            continue  # nothing finite to draw (a run that diverged at once)
        if curve.status == TrialStatus.DIVERGED.value:
            minima.append("diverged")
        handles.append(handle)
        labels.append(f"{curve.label}; min train {minima[0]}, val {', '.join(minima[1:])}")
    for ax, title in ((train_ax, "Training loss"), (val_ax, "Validation loss")):
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("step" + (" (log scale)" if log_x else ""))
        ax.set_title(title)
    train_ax.set_ylabel("loss (nats)")
    top = min(max(tops, default=INITIAL_LOSS), INITIAL_LOSS + 0.3)
    low = train_ax.get_ylim()[0]
    pad = 0.04 + (0.07 * len(curves) if annotate else 0.0)  # room for the minima's labels
    train_ax.set_ylim(low - pad * (top - low), top)
    fig.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=7)
    fig.suptitle("Learning curves (▼ each run's minimum)", fontsize=10)
    return fig


# --- f. the cost model -----------------------------------------------------------------------
@_styled
def cost_model_fit(source) -> Figure:
    """Predicted against measured run seconds: the prediction made when each run was asked
    (what the budget guard used) and the cost model's present fit; runs stopped early (diverged,
    failed, interrupted) are shown apart, as their time is not a whole run's. Right: the
    prediction at ask time over measured time, run by run."""
    record = _record(source)
    study = record.study
    told = [t for t in study.trials if t.is_finished and (t.seconds or 0) > 0]
    final = record.final
    start = record.final_start(final) if final is not None else None
    if not told and start is None:
        raise ValueError("no run has been told yet: nothing to compare the cost model with")
    whole = [t for t in told if t.status is TrialStatus.COMPLETE]
    stopped = [t for t in told if t.status is not TrialStatus.COMPLETE]
    fig = Figure(figsize=(PAGE_WIDTH, 3.5), layout="constrained")
    scatter, ratio = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    values = []
    if whole:
        measured = [t.seconds for t in whole]
        asked = [t.predicted_seconds for t in whole]
        now = [study.cost_model.predict(t.steps, t.model).seconds for t in whole]
        scatter.plot(measured, asked, ls="none", marker="o", ms=6, mfc="none", mec=ORANGE,
                     mew=1.3, label="predicted when asked")  # fmt: skip
        scatter.plot(measured, now, ls="none", marker="o", ms=4, color=BLUE,
                     label="cost model now")  # fmt: skip
        values += measured + asked + now
    if stopped:
        scatter.plot([t.seconds for t in stopped], [t.predicted_seconds for t in stopped],
                     ls="none", marker="X", ms=6, color=VERMILLION,
                     label="stopped early (diverged, failed, interrupted)")  # fmt: skip
        values += [t.seconds for t in stopped] + [t.predicted_seconds for t in stopped]
    if start is not None and final.get("total_seconds"):
        scatter.plot([final["total_seconds"]], [start["predicted_seconds"]], ls="none",
                     marker="*", ms=12, color=GREEN, mec=BLACK, mew=0.6,
                     label="final run")  # fmt: skip
        values += [final["total_seconds"], start["predicted_seconds"]]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    line = np.array([lo, hi])
    scatter.plot(line, line, color=BLACK, lw=1, label="exact")
    scatter.plot(line, line * 1.2, color=BLACK, lw=0.8, ls=":", label="±20%")
    scatter.plot(line, line / 1.2, color=BLACK, lw=0.8, ls=":")
    scatter.set_xscale("log")
    scatter.set_yscale("log")
    scatter.set_xlim(lo, hi)
    scatter.set_ylim(lo, hi)
    simulated = any(t.user_attrs.get("simulated") for t in told)
    scatter.set_xlabel("measured seconds" + (" (simulated)" if simulated else "") + ", log")
    scatter.set_ylabel("predicted seconds, log")
    scatter.set_title("Predicted against measured")
    scatter.legend(loc="upper left", fontsize=7)

    order = sorted(told, key=lambda t: (t.told_at or 0, t.id))
    for group, marker, colour, label in (
        ([t for t in order if t.status is TrialStatus.COMPLETE], "o", BLUE, "whole run"),
        ([t for t in order if t.status is not TrialStatus.COMPLETE], "X", VERMILLION,
         "stopped early"),
    ):  # fmt: skip
        if group:
            ratio.plot([order.index(t) + 1 for t in group],
                       [t.predicted_seconds / t.seconds for t in group], ls="none",
                       marker=marker, ms=5, color=colour, label=label)  # fmt: skip
    ratio.axhline(1.0, color=BLACK, lw=1)
    ratio.axhspan(1 / 1.2, 1.2, color=SKY_BLUE, alpha=0.2, lw=0, label="within ±20%")
    ratios = [t.predicted_seconds / t.seconds for t in order]
    ratio.set_ylim(min([0.75, *ratios]) * 0.95, max([1.3, *ratios]) * 1.05)
    ratio.xaxis.set_major_locator(MaxNLocator(integer=True))
    ratio.set_xlabel("runs told")
    ratio.set_ylabel("predicted / measured seconds")
    ratio.set_title("Prediction at ask time, run by run")
    if order:
        ratio.legend(loc="best", fontsize=7)
    fig.suptitle(
        f"Cost model (dollars = seconds / 3600 × {_dollars(study.price_per_hour)}/hour)",
        fontsize=10,
    )
    return fig


# --- all of them -----------------------------------------------------------------------------
FIGURES: dict[str, Callable[..., Figure]] = {
    "posterior_at_target": posterior_at_target,
    "rung_slices": rung_slices,
    "optimum_drift": optimum_drift,
    "spend_history": spend_history,
    "learning_curves": learning_curves,
    "cost_model_fit": cost_model_fit,
}


@dataclass
class SavedFigures:
    """What ``save_all`` wrote (figure name -> files) and what it skipped (name -> why)."""

    paths: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def save_all(
    source,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
    max_history_points: int = 12,
    names: Sequence[str] | None = None,
) -> SavedFigures:
    """Write every figure (or those in ``names``, keys of ``FIGURES``) as
    ``<out_dir>/<name>.<format>``, PNG at ``dpi``. A figure that has nothing to show yet (no
    finished run, no run logs) is skipped with the reason, not an error."""
    for fmt in formats:
        if fmt not in ("png", "pdf", "svg"):
            raise ValueError(f"figure format {fmt!r} is not supported: use png, pdf or svg")
    names = list(FIGURES) if names is None else list(names)
    for name in names:
        if name not in FIGURES:
            raise ValueError(f"figure {name!r} is unknown: choose from {', '.join(FIGURES)}")
    record = _record(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = SavedFigures()
    for name in names:
        build = FIGURES[name]
        kwargs = {"max_points": max_history_points} if name == "spend_history" else {}
        try:
            fig = build(record, **kwargs)
        except ValueError as err:
            saved.skipped[name] = str(err)
            continue
        saved.paths[name] = []
        with mpl.rc_context(STYLE):
            for fmt in formats:
                path = out / f"{name}.{fmt}"
                fig.savefig(path, dpi=dpi, metadata=_metadata(fmt))
                saved.paths[name].append(path)
    return saved


def _metadata(fmt: str) -> dict:
    # No creation date: the same study gives byte-stable PDFs (diffable, cacheable).
    if fmt == "pdf":
        return {"Creator": "costbo", "CreationDate": None}
    if fmt == "png":
        return {"Software": "costbo"}
    return {}


__all__ = [
    "FIGURES",
    "HistoryPoint",
    "RunCurve",
    "SavedFigures",
    "cost_model_fit",
    "learning_curves",
    "optimum_drift",
    "posterior_at_target",
    "recommendation_history",
    "rung_slices",
    "save_all",
    "spend_history",
]
