"""costbo-sim as a real process: llm.c's flags, lines, main.log, failures, and simulated time.

The regexes are written from the printf formats in shared/llmc-interface.md (train_gpt2.cu).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from costbo.gpt2 import ModelShape
from costbo.sim import INIT_LOSS, sample_landscape
from costbo.sim.schedule import UnknownScheduleError, learning_rates
from costbo.sim.trainer import atof, atoi

NUM = r"(-?nan|[+-]?nan|-?inf|-?\d+\.\d+)"
STEP = re.compile(
    rf"^step +(\d+)/(\d+) \| loss +{NUM} \(([+-](?:nan|\d+\.\d\d))z\)\| norm +{NUM} "
    rf"\(([+-](?:nan|\d+\.\d\d))z\)\| lr (\d\.\d\de[+-]\d\d) \| (\d+\.\d\d) ms \| "
    r"(-?\d+\.\d)% bf16 MFU \| (\d+) tok/s$"
)
VAL = re.compile(rf"^val loss {NUM}$")
HELLASWAG = re.compile(r"HellaSwag: (\d+)/(\d+) = (\d\.\d{6})$")
TOTAL = re.compile(r"^total average iteration time: (-?\d+\.\d{6}|-?nan) ms$")
PARAMS = re.compile(r"^num_parameters: (\d+) => bytes: (\d+)$")
ACCUM = re.compile(r"^=> setting grad_accum_steps=(\d+)$")
TABLE = re.compile(r"^\| (.{21}) \| (.{50,}) \|$")
ELAPSED = re.compile(r"^sim elapsed: (\d+\.\d{3}) s$")
LOG_TRAIN = re.compile(rf"^s:(\d+) trl:{NUM} lr:(\d+\.\d{{6}}) norm:{NUM} time \(ms\):(\d+\.\d\d)$")
LOG_VAL = re.compile(rf"^s:(\d+) tel:{NUM}$")
LOG_EVAL = re.compile(r"^s:(\d+) eval:(\d\.\d{4})$")

SMALL = ModelShape(2, 128, 2)
SMALL_FLAGS = ["-1d", "2", "-1c", "128", "-1h", "2", "-b", "32", "-n", "0", "-s", "0"]


def _command() -> list[str]:
    script = Path(sys.executable).with_name("costbo-sim")
    if script.exists():
        return [str(script)]
    found = shutil.which("costbo-sim")
    return [found] if found else [sys.executable, "-m", "costbo.sim.trainer"]


def lines_of(text: str) -> list[str]:
    """Split on newlines only: HellaSwag's progress ends in \\r, not a line break."""
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def run_sim(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    # bytes, decoded by hand: text=True would turn HellaSwag's \\r progress into newlines
    done = subprocess.run(_command() + args, cwd=cwd, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    """60 steps of a 2-layer 128-wide model, val every 20, HellaSwag on."""
    cwd = tmp_path_factory.mktemp("sim")
    args = ["-x", "60", "-u", "6", "-l", "1e-3", "-v", "20", "-h", "1", "-o", "run"] + SMALL_FLAGS
    done = run_sim(args, cwd)
    assert done.returncode == 0, done.stderr
    return done, cwd / "run"


def test_stdout_lines_match_llmc_formats(standard_run):
    done, _ = standard_run
    lines = lines_of(done.stdout)
    steps = [STEP.match(line) for line in lines if line.startswith("step ")]
    assert all(steps) and len(steps) == 60
    assert [int(m.group(1)) for m in steps] == list(range(1, 61))
    assert {m.group(2) for m in steps} == {"60"}
    assert all(m.group(9) == "-100.0" for m in steps)  # MFU: llm.c does not know the A10G
    assert all(m.group(4) == "+nan" for m in steps)  # z-scores need a 128-step window
    vals = [VAL.match(line) for line in lines if line.startswith("val loss")]
    assert all(vals) and len(vals) == 4  # steps 0, 20, 40, 60
    assert float(vals[0].group(1)) == pytest.approx(INIT_LOSS, abs=1e-5)
    hellaswag = [HELLASWAG.search(line) for line in lines if "HellaSwag: " in line]
    assert all(
        line.startswith("evaluating HellaSwag: 0/1256\r") for line in lines if "Hella" in line
    )
    assert len(hellaswag) == 3 and all(m and m.group(2) == "10042" for m in hellaswag)
    assert PARAMS.match(next(line for line in lines if line.startswith("num_parameters:")))
    assert ACCUM.match(next(line for line in lines if line.startswith("=> setting")))
    assert "=> setting grad_accum_steps=16" in lines
    assert (
        f"num_parameters: {SMALL.num_parameters()} => bytes: {2 * SMALL.num_parameters()}" in lines
    )
    table = dict((m.group(1).strip(), m.group(2).strip()) for m in map(TABLE.match, lines) if m)
    assert table["num_parameters"] == str(SMALL.num_parameters())
    assert table["learning rate (LR)"] == "1.000000e-03"
    assert table["device"] == "NVIDIA A10G"
    assert TOTAL.match(lines[-1])


def test_step_lines_carry_llmc_cosine_lrs(standard_run):
    done, _ = standard_run
    lrs = [STEP.match(line).group(7) for line in lines_of(done.stdout) if line.startswith("step ")]
    expected = []
    for step in range(60):
        if step < 6:
            lr = 1e-3 * (step + 1) / 6
        else:
            lr = 0.5 * (1 + math.cos(math.pi * (step - 6) / (60 - 6))) * 1e-3
        expected.append(f"{lr:.2e}")
    assert lrs == expected


def test_main_log_matches_llmc_formats_with_zero_based_steps(standard_run):
    done, out_dir = standard_run
    lines = (out_dir / "main.log").read_text().splitlines()
    train = [LOG_TRAIN.match(line) for line in lines if " trl:" in line]
    val = [LOG_VAL.match(line) for line in lines if " tel:" in line]
    evals = [LOG_EVAL.match(line) for line in lines if " eval:" in line]
    assert all(train) and all(val) and all(evals)
    assert len(train) + len(val) + len(evals) == len(lines)
    assert [int(m.group(1)) for m in train] == list(range(60))
    assert [int(m.group(1)) for m in val] == [0, 20, 40, 60]
    assert [int(m.group(1)) for m in evals] == [20, 40, 60]
    assert lines[-2].startswith("s:60 tel:")  # the final val line has no trl partner
    stdout_vals = [
        float(VAL.match(x).group(1)) for x in lines_of(done.stdout) if x[:8] == "val loss"
    ]
    assert [float(m.group(2)) for m in val] == pytest.approx(stdout_vals, abs=6e-5)
    assert train[0].group(3) == "0.000167"
    assert (out_dir / "run_parameters.txt").read_text().count("| max_steps             | 60") == 1


def test_final_val_loss_is_the_landscapes(standard_run):
    done, _ = standard_run
    final = float([x for x in lines_of(done.stdout) if x.startswith("val loss")][-1][9:])
    lr = float(np.float32(1e-3))  # llm.c keeps -l as a C float
    assert final == pytest.approx(
        sample_landscape("calibrated", 0).val_loss(lr, 60, SMALL), abs=1e-6
    )


def test_sim_elapsed_is_monotone_follows_each_step_and_ends_at_run_seconds(standard_run):
    done, _ = standard_run
    lines = lines_of(done.stdout)
    elapsed = [float(m.group(1)) for m in map(ELAPSED.match, lines) if m]
    assert len(elapsed) == 61  # after every step line, and once after the final evals
    assert all(b > a for a, b in zip(elapsed, elapsed[1:], strict=False))
    for i, line in enumerate(lines):
        if line.startswith("step "):
            assert ELAPSED.match(lines[i + 1])
    expected = sample_landscape("calibrated", 0).run_seconds(60, SMALL, 20, True, micro_batch=32)
    assert elapsed[-1] == pytest.approx(expected, abs=2e-3)
    ms = [float(STEP.match(x).group(8)) for x in lines if x.startswith("step ")]
    assert elapsed[1] - elapsed[0] == pytest.approx(ms[1] / 1000, abs=2e-3)


def test_unknown_flag_prints_usage_on_stderr_and_exits_1(tmp_path):
    for args in (["-lr", "1e-3"], ["-x"]):
        done = run_sim(args, tmp_path)
        assert done.returncode == 1
        assert done.stderr.startswith("Usage:   ./train_gpt2cu [options]")
        assert "-zf <string>" in done.stderr and "-zs <int>" in done.stderr
        assert done.stdout == ""


def test_early_stop_beyond_max_steps_aborts_like_an_assert(tmp_path):
    done = run_sim(["-x", "100", "-es", "200", "-o", "run"], tmp_path)
    assert done.returncode == 134
    assert "Assertion `early_stopping_steps <= max_steps' failed." in done.stderr
    assert "step " not in done.stdout


def test_bad_model_shape_exits_1_with_the_reason(tmp_path):
    done = run_sim(["-1d", "2", "-1c", "100", "-1h", "3", "-o", "run"], tmp_path)
    assert done.returncode == 1
    assert "not divisible by heads 3" in done.stderr


def test_unknown_schedule_fails_at_the_first_step_like_llmc(tmp_path):
    done = run_sim(["-x", "10", "-k", "cosin", "-h", "0", "-o", "run"] + SMALL_FLAGS, tmp_path)
    assert done.returncode == 1
    assert "Unknown learning rate scheduler type: cosin" in done.stderr
    assert lines_of(done.stdout)[-1].startswith("val loss")  # step 0's eval ran first


def test_diverging_lr_prints_nan_and_keeps_running(tmp_path):
    ls = sample_landscape("calibrated", 0)
    assert ls.divergence_lr(80, ModelShape(1, 64, 1)) < 0.5  # -l 1 is far above it
    args = ["-x", "80", "-u", "8", "-l", "1", "-1d", "1", "-1c", "64", "-1h", "1", "-h", "0"]
    done = run_sim(args + ["-b", "32", "-n", "0", "-s", "0", "-o", "run"], tmp_path)
    assert done.returncode == 0
    steps = [STEP.match(x) for x in lines_of(done.stdout) if x.startswith("step ")]
    assert len(steps) == 80 and all(steps)
    losses = [float(m.group(3)) for m in steps]
    assert math.isfinite(losses[0]) and math.isnan(losses[-1])
    first_nan = next(i for i, v in enumerate(losses) if math.isnan(v))
    assert all(math.isnan(v) for v in losses[first_nan:])  # llm.c never stops on NaN
    assert lines_of(done.stdout)[-3] == "val loss nan"
    assert (tmp_path / "run" / "main.log").read_text().splitlines()[-1] == "s:80 tel:nan"


def test_early_stopping_keeps_the_schedule_of_max_steps(tmp_path):
    args = ["-x", "100", "-es", "30", "-u", "10", "-l", "2e-3", "-h", "0", "-v", "1000"]
    done = run_sim(args + SMALL_FLAGS + ["-o", "run"], tmp_path)
    assert done.returncode == 0
    steps = [STEP.match(x) for x in lines_of(done.stdout) if x.startswith("step ")]
    assert len(steps) == 30 and steps[-1].group(2) == "30"
    lr_30 = 0.5 * (1 + math.cos(math.pi * 19 / 90)) * 2e-3  # step index 29 of a 100-step cosine
    assert steps[-1].group(7) == f"{lr_30:.2e}"
    log = (tmp_path / "run" / "main.log").read_text().splitlines()
    assert log[-1].startswith("s:30 tel:")
    final = float(log[-1].split("tel:")[1])
    stopped = sample_landscape("calibrated", 0).val_loss_at(float(np.float32(2e-3)), 100, SMALL, 30)
    assert final == pytest.approx(stopped, abs=6e-5)


def test_integer_flags_parse_like_atoi(tmp_path):
    assert atoi("1e3") == 1 and atoi("abc") == 0 and atoi(" -7x") == -7
    assert atof("1e-3x") == 0.001 and atof("x") == 0.0 and math.isnan(atof("nan"))
    done = run_sim(["-x", "3e2", "-h", "0", "-o", "run"] + SMALL_FLAGS, tmp_path)
    assert done.returncode == 0
    assert sum(x.startswith("step ") for x in lines_of(done.stdout)) == 3


def test_landscape_flags_select_family_and_seed(tmp_path):
    args = ["-x", "20", "-u", "2", "-h", "0", "-o", "run", "-zf", "narrow_basin", "-zs", "4"]
    done = run_sim(args + SMALL_FLAGS, tmp_path)
    final = float([x for x in lines_of(done.stdout) if x.startswith("val loss")][-1][9:])
    expected = sample_landscape("narrow_basin", 4).val_loss(float(np.float32(6e-4)), 20, SMALL)
    assert final == pytest.approx(expected, abs=1e-6)
    bad = run_sim(["-zf", "flat", "-o", "run"], tmp_path)
    assert bad.returncode == 1 and "calibrated" in bad.stderr


def test_sleep_factor_sleeps_in_proportion_to_simulated_time(tmp_path):
    args = ["-x", "5", "-u", "1", "-h", "0", "-o", "run", "-zt", "0.01"] + SMALL_FLAGS
    start = time.monotonic()
    done = run_sim(args, tmp_path)
    wall = time.monotonic() - start
    simulated = float(ELAPSED.match(lines_of(done.stdout)[-2]).group(1))
    assert wall >= 0.01 * simulated * 0.95


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "wsd"])
def test_schedules_follow_llmc_formulas(schedule):
    lrs = learning_rates(1e-3, 100, warmup=10, schedule=schedule, final_lr_frac=0.1)
    lo = 1e-4
    for step, got in enumerate(lrs):
        if schedule == "constant":
            want = 1e-3
        elif step < 10:
            want = 1e-3 * (step + 1) / 10
        elif schedule == "cosine":
            want = lo + 0.5 * (1 + math.cos(math.pi * (step - 10) / 90)) * (1e-3 - lo)
        elif schedule == "linear":
            want = 1e-3 - (step - 10) / 90 * (1e-3 - lo)
        else:
            want = 1e-3 if step < 80 else lo + (1 - math.sqrt((step - 80) / 20)) * (1e-3 - lo)
        assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(UnknownScheduleError):
        learning_rates(1e-3, 100, warmup=10, schedule="step")


def test_out_of_memory_micro_batch_fails_like_cuda(tmp_path):
    args = ["-1d", "16", "-1c", "1024", "-1h", "16", "-b", "64", "-x", "5", "-o", "run"]
    done = run_sim(args, tmp_path)
    assert done.returncode == 1
    assert "[CUDA ERROR] at file train_gpt2.cu:270:\nout of memory" in done.stdout
    assert os.path.exists(tmp_path / "run" / "run_parameters.txt")
