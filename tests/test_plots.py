"""`costbo plot` and costbo.plots: every figure renders (Agg) from a recorded study, with its
axis labels, log LR axes and the marks it promises; `save_all` writes PNG and PDF; the CLI runs
on a study that costbo-sim really ran."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from test_report import RUNS, build_recorded_study  # noqa: E402  (the same recorded study)

from costbo.cli import PLOT_NAMES, main  # noqa: E402
from costbo.config import DEFAULT_CONFIG_TEXT, load_config  # noqa: E402
from costbo.plots import (  # noqa: E402
    FIGURES,
    LOSS_LABEL,
    LR_LABEL,
    PALETTE,
    cost_model_fit,
    learning_curves,
    optimum_drift,
    posterior_at_target,
    recommendation_history,
    rung_slices,
    save_all,
    spend_history,
)
from costbo.report import StudyRecord  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> StudyRecord:
    return StudyRecord.load(build_recorded_study(tmp_path_factory.mktemp("recorded")))


@pytest.fixture(scope="module")
def history(record):
    return recommendation_history(record, max_points=2)


@pytest.fixture(scope="module")
def slices(record):
    return rung_slices(record)


def lines_at(ax, x: float) -> list:
    """Vertical lines of ``ax`` drawn at ``x``."""
    return [
        line
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and np.allclose(line.get_xdata(), [x, x])
    ]


def test_posterior_at_target_marks_the_recommendation_the_default_and_the_final_run(record):
    fig = posterior_at_target(record)
    loss_ax, risk_ax = fig.axes
    rec = record.study.recommend()
    assert loss_ax.get_xscale() == "log" and loss_ax.get_ylabel() == LOSS_LABEL
    assert risk_ax.get_xlabel() == LR_LABEL and risk_ax.get_ylabel() == "P(diverge)"
    assert "4725 steps x d12c768h12" in loss_ax.get_title()
    labels = loss_ax.get_legend_handles_labels()[1]
    assert f"recommended {rec_text(rec.lr)}" in labels
    assert "90% interval of the best LR" in labels and "llm.c default 6e-4" in labels
    assert "smallest diverged LR 8e-2" in labels
    assert lines_at(loss_ax, rec.lr) and lines_at(loss_ax, 6e-4) and lines_at(loss_ax, 8e-2)
    final = record.final
    star = [line for line in loss_ax.get_lines() if line.get_marker() == "*"]
    assert star and star[0].get_xydata().tolist() == [[final["lr"], final["val_loss"]]]
    # the band is drawn and the view keeps the final run in sight
    low, high = loss_ax.get_ylim()
    assert low <= final["val_loss"] <= high


def rec_text(lr: float) -> str:
    from costbo.report import format_lr

    return format_lr(lr)


def test_rung_slices_show_each_rung_with_its_runs_and_diverged_runs_marked(slices):
    fig = slices
    panels = [ax for ax in fig.axes if ax.get_visible()]
    # three rungs with runs, and the target
    titles = [ax.get_title() for ax in panels]
    assert titles == [
        "50 steps × d1c64h1 (4 runs)",
        "100 steps × d2c128h2 (2 runs)",
        "200 steps × d4c256h4 (2 runs)",
        "4725 steps × d12c768h12 (target)",
    ]
    assert all(ax.get_xscale() == "log" for ax in panels)
    assert fig.get_supylabel() == LOSS_LABEL
    assert panels[-1].get_xlabel() == LR_LABEL
    cheapest = panels[0]
    crosses = [line for line in cheapest.get_lines() if line.get_label() == "diverged run"]
    assert crosses and crosses[0].get_xdata().tolist() == [8e-2]
    dots = [line for line in cheapest.get_lines() if line.get_label() == "completed run"]
    assert sorted(dots[0].get_xdata()) == [2e-3, 6e-3, 2e-2]
    legend = fig.legends[0]
    assert {t.get_text() for t in legend.get_texts()} >= {"completed run", "diverged run"}


def test_optimum_drift_plots_the_models_best_lr_and_the_extrapolated_corner(record):
    fig = optimum_drift(record)
    by_width, by_steps = fig.axes
    study = record.study
    rec = study.recommend()
    assert by_width.get_xlabel().startswith("width") and by_steps.get_xlabel().startswith(
        "training steps"
    )
    assert by_width.get_ylabel() == "best max LR (log scale)"
    assert all(ax.get_xscale() == ax.get_yscale() == "log" for ax in (by_width, by_steps))
    line = next(ln for ln in by_width.get_lines() if ln.get_label() == "4725 steps")
    assert line.get_xdata().tolist() == [64, 128, 256, 768]
    target = study.space.target
    assert line.get_ydata()[-1] == pytest.approx(study.best_lr(target))
    corner = [ln for ln in by_width.get_lines() if ln.get_marker() == "*"]
    assert corner[0].get_xydata().tolist() == [[768, rec.lr]]
    assert "recommended (90% interval)" in by_width.get_legend_handles_labels()[1]


def test_spend_history_replays_the_journal_and_draws_the_budget(record, history):
    study = record.study
    assert [p.runs_told for p in history] == [1, len(RUNS)]
    assert history[0].spent < history[-1].spent == pytest.approx(study.spent)
    assert history[-1].recommendation == study.recommend()
    fig = spend_history(record, history=history)
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and top.get_ylabel() == "max LR (log scale)"
    assert bottom.get_xlabel() == "runs told" and bottom.get_ylabel() == "dollars"
    budget = [ln for ln in bottom.get_lines() if ln.get_label() == r"budget \$20.00"]
    assert budget and list(budget[0].get_ydata()) == [20.0, 20.0]
    labels = bottom.get_legend_handles_labels()[1]
    assert "diverged run" in labels and "complete run" in labels
    steps = next(ln for ln in bottom.get_lines() if ln.get_label() == "cumulative dollars")
    assert steps.get_ydata()[-1] == pytest.approx(study.spent)


def test_learning_curves_mark_and_label_each_runs_minimum(record):
    fig = learning_curves(record, max_runs=3)
    train_ax, val_ax = fig.axes
    assert train_ax.get_ylabel() == "loss (nats)"
    assert train_ax.get_xlabel().startswith("step") and val_ax.get_xlabel().startswith("step")
    assert (train_ax.get_title(), val_ax.get_title()) == ("Training loss", "Validation loss")
    curves = record.curves(3)
    assert curves[0].is_final  # the final run leads
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for curve, label in zip(curves, labels, strict=True):
        train_min = min(v for v in curve.train.values() if math.isfinite(v))
        assert label.startswith(curve.label) and f"min train {train_min:.3f}" in label
        marker = [
            ln
            for ln in train_ax.get_lines()
            if ln.get_marker() == "v" and np.isclose(ln.get_ydata()[0], train_min)
        ]
        assert marker
    # three runs or fewer: the minima are also written beside their markers
    assert len(train_ax.texts) == 3
    # the final run's val curve has its evals every 250 steps
    val_line = val_ax.get_lines()[0]
    assert 250 in val_line.get_xdata() and 4725 in val_line.get_xdata()


def test_cost_model_figure_compares_predicted_and_measured_seconds(record):
    fig = cost_model_fit(record)
    scatter, ratio = fig.axes
    assert scatter.get_xscale() == scatter.get_yscale() == "log"
    assert scatter.get_xlabel().startswith("measured seconds (simulated)")
    assert scatter.get_ylabel().startswith("predicted seconds")
    labels = scatter.get_legend_handles_labels()[1]
    assert {"predicted when asked", "cost model now", "final run"} <= set(labels)
    assert "stopped early (diverged, failed, interrupted)" in labels
    whole = [t for t in record.study.trials if t.val_loss is not None]
    asked = next(ln for ln in scatter.get_lines() if ln.get_label() == "predicted when asked")
    assert asked.get_xdata().tolist() == [t.seconds for t in whole]
    assert ratio.get_ylabel() == "predicted / measured seconds"


def test_save_all_draws_every_figure_and_writes_png_and_pdf(record, tmp_path):
    # every figure drawn once (a low dpi keeps it quick: drawing is where text errors show)
    saved = save_all(record, tmp_path / "png", formats=("png",), dpi=40, max_history_points=1)
    assert saved.skipped == {}
    assert list(saved.paths) == list(FIGURES)
    for name, paths in saved.paths.items():
        assert [p.name for p in paths] == [f"{name}.png"]
        assert paths[0].read_bytes().startswith(b"\x89PNG")
    # the default: PNG and PDF side by side
    saved = save_all(record, tmp_path / "both", names=["cost_model_fit"])
    png, pdf = saved.paths["cost_model_fit"]
    assert (png.name, pdf.name) == ("cost_model_fit.png", "cost_model_fit.pdf")
    assert png.read_bytes().startswith(b"\x89PNG") and len(png.read_bytes()) > 20_000
    assert pdf.read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="figure 'posterior' is unknown"):
        save_all(record, tmp_path, names=["posterior"])
    assert tuple(FIGURES) == PLOT_NAMES  # the CLI's choices, listed without importing plots


def test_figures_use_the_colour_blind_safe_palette(slices):
    fig = slices
    colours = {line.get_color() for ax in fig.axes for line in ax.get_lines()}
    colours = {matplotlib.colors.to_hex(c).upper() for c in colours}
    assert colours <= set(PALETTE)


def test_figures_that_need_runs_are_skipped_with_the_reason(tmp_path):
    (tmp_path / "costbo.toml").write_text(DEFAULT_CONFIG_TEXT.replace('dir = "llm.c"', 'dir = "."'))
    config = load_config(tmp_path / "costbo.toml")
    config.open_study().close()
    saved = save_all(config, tmp_path / "figs")
    assert saved.paths == {}
    assert set(saved.skipped) == set(FIGURES)
    assert "no finished runs yet" in saved.skipped["posterior_at_target"]
    assert "no run logs found" in saved.skipped["learning_curves"]
    assert main(["plot", "--config", str(tmp_path / "costbo.toml")]) == 1


def test_plot_command_on_a_study_that_costbo_sim_ran(tmp_path, capsys):
    text = (
        DEFAULT_CONFIG_TEXT.replace(
            "steps = [50, 100, 200, 500, 1000, 2000, 4725]", "steps = [50, 100, 4725]"
        )
        .replace("widths = [64, 128, 192, 256, 384, 512, 768]", "widths = [64, 128, 768]")
        .replace('dir = "llm.c"', 'dir = "."')
        .replace('binary = "train_gpt2cu"', 'binary = "costbo-sim"')
        .replace("simulated = false", "simulated = true")
    )
    config_path = tmp_path / "costbo.toml"
    config_path.write_text(text)
    assert main(["optimize", "--config", str(config_path), "--max-runs", "2"]) == 0
    capsys.readouterr()
    out = tmp_path / "figures"
    args = ["plot", "--config", str(config_path), "--out", str(out)]
    assert main([*args, "--only", "learning_curves"]) == 0
    assert "learning_curves.png" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["learning_curves.pdf", "learning_curves.png"]
    # the learning curves come from the runs' own main.log files
    curves = StudyRecord.load(config_path).curves()
    assert len(curves) == 2 and all(len(c.train) == c.steps for c in curves)


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: costbo {command}") and "--config FILE" in out
