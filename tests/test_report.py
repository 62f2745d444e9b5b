"""`costbo report`: the course's experiment table, the probe's cost analysis, the total
expenditure and the justified LR, from a recorded study; golden files pin the text.

The recorded study is built deterministically: probe events and run folders written the way
`costbo probe`, `costbo optimize` and `costbo final` write them (llm.c's stdout and main.log
formats, trial.json with the real argv), and fixed trials told with losses from a closed-form
landscape. After a deliberate change to the engine or the report, regenerate the golden files
with ``COSTBO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_report.py`` and read the diff.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from costbo.cli import main
from costbo.config import DEFAULT_CONFIG_TEXT, load_config
from costbo.final import FinalRun, final_run_dir
from costbo.gpt2 import TOKENS_PER_STEP, ModelShape
from costbo.llmc.command import build_argv
from costbo.optimize import run_dir_for
from costbo.report import (
    EXPERIMENT_HEADER,
    StudyRecord,
    build_report,
    format_lr,
    render_report,
    write_report,
)

pytestmark = pytest.mark.timeout(120)

GOLDEN = Path(__file__).parent / "golden"
WIDTHS = (64, 128, 256, 768)
# (lr, steps, width): three runs around the cheapest rung's optimum and one far above it (it
# diverges), then two rungs further up the ladder.
RUNS = [
    (2e-3, 50, 64), (6e-3, 50, 64), (2e-2, 50, 64), (8e-2, 50, 64),
    (3e-3, 100, 128), (8e-3, 100, 128),
    (1.5e-3, 200, 256), (4e-3, 200, 256),
]  # fmt: skip
PROBE_SLOWEST_STEP = 14  # 1-based, as llm.c prints it
FINAL_LR = 1.1e-3
FINAL_PREDICTION = (3.52, 0.05)  # val loss and its sd (nats), as the engine said at launch


def best_lr(steps: int, width: int) -> float:
    """The landscape's optimum: 1.5e-3 at full scale, falling as width^-0.5 and steps^-0.05."""
    return 1.5e-3 * (width / 768) ** -0.5 * (steps / 4725) ** -0.05


def val_loss(lr: float, steps: int, width: int) -> float | None:
    """Final val loss (nats) of a run; None when it diverges (at 7x the optimum)."""
    if lr >= 7 * best_lr(steps, width):
        return None
    floor = 3.5 + 1.2 * ((4725 / steps) ** 0.3 - 1) + 0.5 * ((768 / width) ** 0.3 - 1)
    d = math.log10(lr / best_lr(steps, width))
    return floor + 0.3 * d * d * (1 + 0.8 * max(d, 0.0))


def run_seconds(steps: int, model: ModelShape) -> float:
    """A10G-like seconds: 40 s fixed + steps x (FLOPs at 45 TFLOP/s + 0.25 s)."""
    return 40.0 + steps * (TOKENS_PER_STEP * model.flops_per_token() / 4.5e13 + 0.25)


def write_run(run_dir: Path, argv: list[str], seed: int, steps: int, final: float | None,
              val_every: int | None = None, hellaswag: float | None = None) -> None:  # fmt: skip
    """main.log and trial.json as llm.c and the runner write them. The train loss decays from
    ln(50257) towards ``final``; a diverging run (``final`` None) turns nan a third of the way."""
    rng = np.random.default_rng(seed)
    end = final if final is not None else 6.0
    lines = ["s:0 tel:10.8250"]
    for s in range(steps):
        loss = end + (10.83 - end) * math.exp(-4 * (s + 1) / steps) + 0.02 * rng.standard_normal()
        if final is None and s >= steps // 3:
            loss = float("nan")
        lines.append(f"s:{s} trl:{loss:.4f} lr:0.000100 norm:1.00 time (ms):{900 + s % 7:.2f}")
        done = s + 1
        if val_every and done % val_every == 0 and done < steps:
            lines.append(f"s:{done} tel:{end + (10.83 - end) * math.exp(-4 * done / steps):.4f}")
    if final is not None:
        lines.append(f"s:{steps} tel:{final:.4f}")
    if hellaswag is not None:
        lines.append(f"s:{steps} eval:{hellaswag:.4f}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "main.log").write_text("\n".join(lines) + "\n")
    (run_dir / "trial.json").write_text(json.dumps({"argv": argv, "result": None}))


def write_probe(run_dir: Path, model: ModelShape, ms: float) -> None:
    """stdout.log of a 20-step probe, llm.c's step lines, slowest at PROBE_SLOWEST_STEP."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, 21):
        t = ms if step == PROBE_SLOWEST_STEP else ms * (0.97 - 0.001 * step)
        if step == 1:
            t = ms * 8
        lines.append(
            f"step {step:4d}/20 | loss {10.8 - 0.01 * step:7.6f} (+nanz)| norm 1.0000 (+nanz)| "
            f"lr 6.00e-05 | {t:.2f} ms | -100.0% bf16 MFU | 424242 tok/s"
        )
    (run_dir / "stdout.log").write_text("\n".join(lines) + "\n")


def probe_ms(model: ModelShape) -> float:
    return 1000 * (TOKENS_PER_STEP * model.flops_per_token() / 4.5e13 + 0.25)


def build_recorded_study(folder: Path) -> Path:
    """A finished study in ``folder``: probe, 8 tuning runs (one diverged), a final run.
    Returns its config path."""
    text = (
        DEFAULT_CONFIG_TEXT.replace(
            "steps = [50, 100, 200, 500, 1000, 2000, 4725]", "steps = [50, 100, 200, 4725]"
        )
        .replace("widths = [64, 128, 192, 256, 384, 512, 768]", "widths = [64, 128, 256, 768]")
        .replace('dir = "llm.c"', 'dir = "."')
        .replace('binary = "train_gpt2cu"', 'binary = "costbo-sim"')
        .replace("simulated = false", "simulated = true")
        .replace("final_lr_fraction = 0.0", "final_lr_fraction = 0.1")
    )
    config_path = folder / "costbo.toml"
    config_path.write_text(text)
    config = load_config(config_path)
    runs = config.study.runs_dir
    study = config.open_study()
    try:
        for width in WIDTHS:
            model = ModelShape.from_width(width)
            ms = probe_ms(model)
            probe_dir = runs / f"probe_{model}"
            write_probe(probe_dir, model, ms)
            seconds = 40.0 + 20 * ms / 1000
            study.log_event(
                {
                    "event": "probe", "model": list(model.as_tuple()), "status": "complete",
                    "step_ms": ms, "median_step_ms": 0.96 * ms, "first_step_seconds": 35.0,
                    "overhead_seconds": 40.0, "seconds": seconds,
                    "dollars": seconds / 3600 * 1.5, "error": None, "run_dir": str(probe_dir),
                }
            )  # fmt: skip
            study.seed_cost(model, ms / 1000, 40.0)
        for i, (lr, steps, width) in enumerate(RUNS):
            trial = study.ask(lr=lr, steps=steps, model=width)
            run_dir = run_dir_for(config, trial)
            loss = val_loss(lr, steps, width)
            argv = build_argv(trial, config.trainer, run_dir)
            write_run(run_dir, argv, seed=i, steps=steps, final=loss)
            seconds = run_seconds(steps, trial.model)
            attrs = {"run_dir": str(run_dir), "simulated": True, "hellaswag": None}
            if loss is None:
                study.tell(trial.id, diverged=True, seconds=0.3 * seconds, user_attrs=attrs,
                           error="loss was nan at step 17")  # fmt: skip
            else:
                study.tell(trial.id, val_loss=loss, seconds=seconds, user_attrs=attrs)
        # The final run as `costbo final` recorded it, at the LR the engine recommended then
        # (fixed here, so that only the selection section depends on today's engine).
        target = study.space.target
        final_run = FinalRun(FINAL_LR, target.steps, *target.model.as_tuple())
        final_dir = final_run_dir(config, final_run)
        predicted = study.predict_cost(target.steps, target.model)
        study.log_event(
            {
                "event": "final_start", "lr": FINAL_LR, "lr_low": 6e-4, "lr_high": 2.2e-3,
                "predicted_val_loss": FINAL_PREDICTION[0],
                "predicted_val_loss_std": FINAL_PREDICTION[1],
                "predicted_seconds": predicted.seconds, "predicted_dollars": predicted.dollars,
                "run_dir": str(final_dir), "resume": False,
            }
        )  # fmt: skip
        final_loss = val_loss(FINAL_LR, target.steps, target.width)
        final_seconds = run_seconds(target.steps, target.model) * 1.04
        argv = build_argv(final_run, config.trainer, final_dir)
        write_run(final_dir, argv, seed=99, steps=target.steps, final=final_loss, val_every=250,
                  hellaswag=0.2941)  # fmt: skip
        study.log_event(
            {
                "event": "final", "lr": FINAL_LR, "status": "complete",
                "predicted_val_loss": FINAL_PREDICTION[0],
                "predicted_val_loss_std": FINAL_PREDICTION[1], "val_loss": final_loss,
                "prediction_error": final_loss - FINAL_PREDICTION[0], "hellaswag": 0.2941,
                "seconds": final_seconds, "dollars": final_seconds / 3600 * 1.5,
                "total_seconds": final_seconds, "total_dollars": final_seconds / 3600 * 1.5,
                "resumed": False, "kill_reason": None, "error": None,
                "run_dir": str(final_dir),
            }
        )  # fmt: skip
    finally:
        study.close()
    return config_path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return build_recorded_study(tmp_path_factory.mktemp("recorded"))


@pytest.fixture(scope="module")
def report(recorded):
    return build_report(recorded)


@pytest.mark.parametrize("fmt", ["md", "csv", "tex"])
def test_report_text_matches_the_golden_file(recorded, fmt):
    text = render_report(recorded, fmt)
    golden = GOLDEN / f"report.{fmt}"
    if os.environ.get("COSTBO_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with COSTBO_UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text(), (
        f"{golden} differs: if the engine or the report changed on purpose, regenerate it with "
        "COSTBO_UPDATE_GOLDEN=1 and read the diff"
    )


def test_experiment_table_has_the_course_columns_and_a_row_per_run(recorded, report):
    assert EXPERIMENT_HEADER == [
        "#", "max LR", "steps", "depth", "channels", "heads", "ramp-up", "LR decay target",
        "run time", "approx. cost", "final val loss", "final HellaSwag",
    ]  # fmt: skip
    rows = report.experiments
    assert [r.number for r in rows] == [str(i) for i in range(1, 9)] + ["final"]
    assert [(r.lr, r.steps, r.model.channels) for r in rows[:8]] == RUNS
    # flags come from each run's trial.json: -u 10% of the steps, -q 0.1
    assert all(r.ramp_up == "Y" for r in rows)
    assert rows[0].warmup_steps == 5 and rows[-1].warmup_steps == 472
    assert rows[0].decay_target == "2e-4 (0.1 x max)"
    assert rows[3].status == "diverged" and rows[3].val_loss_text == "diverged"
    assert rows[0].val_loss_text == f"{val_loss(2e-3, 50, 64):.4f}"
    final = rows[-1]
    assert final.model == ModelShape(12, 768, 12) and final.hellaswag_text == "29.4%"
    study = StudyRecord.load(recorded).study
    assert [r.dollars for r in rows[:8]] == [t.cost for t in study.trials]


def test_cost_analysis_is_the_slowest_of_steps_10_to_19_priced_for_the_full_run(report):
    assert [r.model.channels for r in report.probes] == list(WIDTHS)
    for row in report.probes:
        ms = probe_ms(row.model)
        assert row.step == PROBE_SLOWEST_STEP  # read back from the probe's stdout.log
        assert row.ms == pytest.approx(ms)
        assert row.hours == pytest.approx(ms * 4725 / 3.6e6)
        assert row.dollars == pytest.approx(row.hours * 1.5)
    course, model, upper = report.target_prediction
    assert course == pytest.approx(report.probes[-1].dollars)
    assert 0 < model < upper


def test_total_expenditure_adds_probes_tuning_and_final(recorded, report):
    study = StudyRecord.load(recorded).study
    spend = report.spend
    assert (spend.probe_runs, spend.tuning_runs, spend.final_runs) == (4, 8, 1)
    assert spend.tuning_dollars == pytest.approx(study.spent)
    probes = sum((40.0 + 20 * probe_ms(ModelShape.from_width(w)) / 1000) for w in WIDTHS)
    assert spend.probe_dollars == pytest.approx(probes / 3600 * 1.5)
    final = run_seconds(4725, ModelShape(12, 768, 12)) * 1.04 / 3600 * 1.5
    assert spend.final_dollars == pytest.approx(final)
    assert spend.total == pytest.approx(study.spent + probes / 3600 * 1.5 + final)


def test_justification_states_the_drift_the_extrapolation_and_the_cap(recorded, report):
    study = StudyRecord.load(recorded).study
    rec = study.recommend()
    selection = report.selection
    assert selection.recommendation == rec
    text = " ".join(selection.paragraphs())
    assert f"Selected max LR: {format_lr(rec.lr)}" in text
    assert f"90% interval {format_lr(rec.lr_low)} .. {format_lr(rec.lr_high)}" in text
    assert f"predicted val loss {rec.val_loss:.3f} +- {rec.val_loss_std:.3f}" in text
    # the drift along each axis, from the model's own best LR at the two ends
    width, steps = selection.drifts
    assert (width.axis, steps.axis) == ("width", "steps")
    low = next(f for f in study.space.fidelities if f.steps == 4725 and f.width == 64)
    assert width.low_lr == study.best_lr(low)
    assert width.high_lr == study.best_lr(study.space.target)
    assert width.per_doubling == pytest.approx(
        (width.high_lr / width.low_lr) ** (1 / math.log2(768 / 64))
    )
    assert "per doubling of width" in text and "per doubling of steps" in text
    # the diverged run caps the answer, and the sentence names it
    assert selection.smallest_diverged.lr == 8e-2 and rec.lr < 8e-2
    assert f"below {format_lr(8e-2)}, the smallest LR that diverged (run #4" in text
    assert "llm.c default 6e-4 is predicted at" in text
    assert "Final run at" in text and "HellaSwag 29.4%" in text


def test_csv_is_one_header_and_one_row_per_run(recorded):
    rows = list(csv.DictReader(io.StringIO(render_report(recorded, "csv"))))
    assert len(rows) == 9
    assert float(rows[0]["max_lr"]) == RUNS[0][0]
    assert rows[3]["status"] == "diverged" and rows[3]["final_val_loss"] == ""
    assert rows[-1]["experiment"] == "final" and float(rows[-1]["final_hellaswag"]) == 0.2941
    assert float(rows[0]["lr_decay_target"]) == pytest.approx(2e-4)


def test_tex_escapes_what_latex_would_choke_on(recorded):
    text = render_report(recorded, "tex")
    assert r"\$" in text and r"\%" in text and r"\#" in text
    body = text.replace(r"\$", "").replace(r"\%", "").replace(r"\#", "").replace(r"$\pm$", "")
    assert "$" not in body and "%" not in body.split("\n", 1)[1] and "#" not in body
    assert text.count(r"\begin{tabular}") == 3


def test_report_command_prints_or_writes_each_format(recorded, tmp_path, capsys):
    assert main(["report", "--config", str(recorded)]) == 0
    assert capsys.readouterr().out == render_report(recorded, "md")
    out = tmp_path / "out" / "report.tex"
    assert main(["report", "--config", str(recorded), "--format", "tex", "--out", str(out)]) == 0
    assert out.read_text() == render_report(recorded, "tex")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--config", str(recorded), "--format", "docx"])
    assert exit_info.value.code == 2


def test_report_before_any_finished_run_says_why_there_is_no_selection(tmp_path):
    (tmp_path / "costbo.toml").write_text(DEFAULT_CONFIG_TEXT.replace('dir = "llm.c"', 'dir = "."'))
    config = load_config(tmp_path / "costbo.toml")
    config.open_study().close()
    text = render_report(config, "md")
    assert "No selection yet: no finished runs yet" in text
    assert "No probe runs: run `costbo probe`" in text
    with pytest.raises(ValueError, match="report format 'pdf' is unknown"):
        write_report(config, tmp_path / "report.pdf")
