"""The `costbo` CLI end to end with real processes: costbo-sim as the trainer for whole studies
(probe, optimize, resume, status, recommend, final), and fake trainers (tests/fake_trainers.py)
for the ways a loop ends: budget, failures, Ctrl-C, and costbo itself SIGKILLed mid-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trainers import live_leftovers, write_fake_trainer

from costbo.cli import main
from costbo.config import DEFAULT_CONFIG_TEXT, load_config
from costbo.journal import read_events
from costbo.optimize import trainer_pids
from costbo.study import Study
from costbo.trial import TrialStatus

pytestmark = pytest.mark.timeout(120)

SUBCOMMANDS = ["init", "probe", "optimize", "status", "recommend", "final", "pull", "sync",
               "prepare-data"]  # fmt: skip


def write_config(
    folder: Path,
    binary: str,
    *,
    simulated: bool,
    budget: float = 20.0,
    failures: int = 3,
) -> Path:
    """The default config on a small ladder (3 steps rungs x 3 widths, 124M target), runs in
    ``folder``; ``binary`` is costbo-sim or a fake trainer."""
    text = (
        DEFAULT_CONFIG_TEXT.replace("budget = 20.0", f"budget = {budget}")
        .replace("steps = [50, 100, 200, 500, 1000, 2000, 4725]", "steps = [50, 100, 4725]")
        .replace("widths = [64, 128, 192, 256, 384, 512, 768]", "widths = [64, 128, 768]")
        .replace('dir = "llm.c"', 'dir = "."')
        .replace('binary = "train_gpt2cu"', f"binary = {json.dumps(binary)}")
        .replace("simulated = false", f"simulated = {str(simulated).lower()}")
        .replace("max_consecutive_failures = 3", f"max_consecutive_failures = {failures}")
        .replace("kill_grace = 5.0", "kill_grace = 1.0")
    )
    path = folder / "costbo.toml"
    path.write_text(text)
    return path


def set_binary(config: Path, binary: Path) -> None:
    lines = [
        f"binary = {json.dumps(str(binary))}" if line.startswith("binary = ") else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def steps_printed(runs_dir: Path, step: int) -> bool:
    return any(f" {step}/".encode() in p.read_bytes() for p in runs_dir.glob("trial-*/stdout.log"))


@pytest.mark.parametrize("command", [[], *[[c] for c in SUBCOMMANDS]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: costbo")
    if command and command[0] not in ("init", "prepare-data"):
        assert "--config FILE" in out


def test_console_script_runs():
    script = Path(sys.executable).parent / "costbo"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in SUBCOMMANDS:
        assert command in done.stdout


def test_simulated_study_from_probe_to_final(tmp_path, capsys):
    config_path = write_config(tmp_path, "costbo-sim", simulated=True)
    config = load_config(config_path)
    journal = config.study.journal

    assert main(["probe", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "worst of steps 10-19" in out and "full target run (4725 steps x d12c768h12)" in out
    with open(config.probe.cost_table) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9  # every (steps, width) rung
    target = [r for r in rows if r["target"] == "True"]
    assert [(r["steps"], r["channels"]) for r in target] == [("4725", "768")]
    # costbo-sim's A10G prices the 124M run like the course: $15-20 at $1.50/hour
    assert 10.0 < float(target[0]["course_dollars"]) < 25.0
    assert all(float(r["predicted_dollars"]) > 0 for r in rows)
    events, _ = read_events(journal)
    assert sum(e["event"] == "cost_seed" for e in events) == 3  # one per model shape

    assert main(["optimize", "--config", str(config_path), "--max-runs", "2"]) == 0
    assert main(["optimize", "--config", str(config_path), "--max-runs", "1"]) == 0  # resumes
    out = capsys.readouterr().out
    assert "2 run(s) so far" in out  # the second invocation picked up the journal
    study = Study.load(journal, read_only=True)
    assert [t.id for t in study.trials] == [0, 1, 2]
    assert all(t.status is TrialStatus.COMPLETE for t in study.trials)
    assert study.spent == pytest.approx(sum(t.cost for t in study.trials))
    for t in study.trials:
        assert f"trial {t.id}: lr" in out  # a line per finished run
        run_dir = Path(t.user_attrs["run_dir"])
        assert (run_dir / "stdout.log").exists() and (run_dir / "trial.json").exists()
        assert t.user_attrs["simulated"] is True
        # simulated seconds are accounted, not the second or so of wall time
        assert t.seconds > 30 and t.user_attrs["wall_seconds"] < t.seconds

    assert main(["status", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "spent $" in out and "recommendation: max LR" in out and "complete" in out

    assert main(["recommend", "--config", str(config_path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    for key in ("lr", "lr_low", "lr_high", "val_loss", "val_loss_std", "spent", "budget"):
        assert key in rec
    assert rec["lr_low"] <= rec["lr"] <= rec["lr_high"]
    assert rec["budget"] == 20.0 and rec["spent"] == pytest.approx(study.spent)

    assert main(["final", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "final val loss" in out and "HellaSwag" in out
    events, _ = read_events(journal)
    final = [e for e in events if e["event"] == "final"]
    assert len(final) == 1
    assert final[0]["lr"] == pytest.approx(rec["lr"])
    assert final[0]["predicted_val_loss"] == pytest.approx(rec["val_loss"])
    assert 2.0 < final[0]["val_loss"] < 11.0 and final[0]["hellaswag"] is not None
    argv = json.loads((Path(final[0]["run_dir"]) / "trial.json").read_text())["argv"]
    flags = dict(zip(argv[argv.index("-l") :: 2], argv[argv.index("-l") + 1 :: 2], strict=False))
    assert (flags["-b"], flags["-h"], flags["-n"], flags["-x"]) == ("32", "1", "1000", "4725")
    # the final run is outside the tuning budget
    assert Study.load(journal, read_only=True).spent == pytest.approx(study.spent)
    # asking again reports the finished run instead of paying for it twice
    assert main(["final", "--config", str(config_path)]) == 0
    assert "already finished" in capsys.readouterr().out
    events, _ = read_events(journal)
    assert sum(e["event"] == "final" for e in events) == 1


def test_optimize_stops_when_the_budget_is_spent(tmp_path, capsys):
    config_path = write_config(tmp_path, "costbo-sim", simulated=True, budget=0.12)
    assert main(["optimize", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "budget exhausted" in out
    study = Study.load(load_config(config_path).study.journal, read_only=True)
    assert len(study.trials) >= 2
    assert 0 < study.spent <= 0.12


def test_repeated_failures_stop_the_loop_with_the_error_shown(tmp_path, capsys):
    aborting = write_fake_trainer(tmp_path, "aborting_trainer", abort_at_start=True)
    config_path = write_config(tmp_path, str(aborting), simulated=False, failures=2)
    assert main(["optimize", "--config", str(config_path)]) == 1
    out = capsys.readouterr().out
    assert "2 runs failed in a row" in out
    assert "SIGABRT" in out and "Assertion" in out  # the trainer's own error, shown
    study = Study.load(load_config(config_path).study.journal, read_only=True)
    assert [t.status for t in study.trials] == [TrialStatus.FAILED, TrialStatus.FAILED]
    assert all(t.error and "SIGABRT" in t.error for t in study.trials)
    assert all(t.seconds > 0 for t in study.trials)  # their time is still spent money
    for t in study.trials:
        assert live_leftovers(Path(t.user_attrs["run_dir"])) == []


def _restore_sigint() -> None:
    # A test run started in the background of a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: give costbo a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _costbo(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "costbo.cli", "optimize", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_restore_sigint,
    )


def test_ctrl_c_stops_the_run_records_its_cost_and_exits_cleanly(tmp_path):
    slow = write_fake_trainer(tmp_path, "slow_trainer", step_seconds=0.2)
    config_path = write_config(tmp_path, str(slow), simulated=False)
    runs_dir = tmp_path / "runs"
    proc = _costbo(config_path)
    try:
        wait_for(lambda: steps_printed(runs_dir, 3), 90, "the trainer's third step")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    out = out.decode()
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "stopped by Ctrl-C" in out
    study = Study.load(runs_dir / "study.jsonl", read_only=True)
    (trial,) = study.trials
    assert trial.status is TrialStatus.INTERRUPTED
    assert trial.seconds >= 0.5 and trial.cost > 0
    assert study.spent == pytest.approx(trial.cost)
    assert live_leftovers(Path(trial.user_attrs["run_dir"])) == []


def test_sigkill_of_costbo_mid_run_then_rerun_counts_the_lost_run(tmp_path, capsys):
    # The first trainer prints 5 steps and then hangs, so it outlives costbo's SIGKILL (as a
    # real trainer would until its next write to the dead pipe).
    hanging = write_fake_trainer(tmp_path, "hanging_trainer", hang_at_step=5)
    config_path = write_config(tmp_path, str(hanging), simulated=False)
    runs_dir = tmp_path / "runs"
    journal = runs_dir / "study.jsonl"
    proc = _costbo(config_path)
    try:
        wait_for(lambda: steps_printed(runs_dir, 5), 90, "the trainer's fifth step")
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    (run_dir,) = runs_dir.glob("trial-0000_*")
    orphans = trainer_pids(run_dir)
    try:
        assert orphans, "the trainer should still be running after costbo was killed"
        events, _ = read_events(journal)  # intact: every line parses
        assert [e["event"] for e in events if e["event"] in ("ask", "tell")] == ["ask"]
        started = json.loads((run_dir / "trial.json").read_text())["started_at"]

        fast = write_fake_trainer(tmp_path, "fast_trainer")
        set_binary(config_path, fast)
        assert main(["optimize", "--config", str(config_path), "--max-runs", "1"]) == 0
    finally:
        for pid in live_leftovers(run_dir, wait_seconds=0):  # only if costbo failed to
            os.kill(pid, signal.SIGKILL)
    out = capsys.readouterr().out
    assert "recovered trial 0" in out
    assert live_leftovers(run_dir) == []  # the orphan and its process group were stopped
    study = Study.load(journal, read_only=True)
    lost, new = study.trials
    assert lost.status is TrialStatus.INTERRUPTED
    assert lost.user_attrs["recovered"] is True
    # counted from the run's start to when the orphan was stopped, at least to the kill
    assert lost.seconds >= killed_at - started
    assert lost.cost == pytest.approx(lost.seconds / 3600 * 1.5)
    assert new.status is TrialStatus.COMPLETE  # the loop continued
    assert study.spent == pytest.approx(lost.cost + new.cost)


def test_sigkill_of_costbo_mid_final_run_then_rerun_stops_the_orphan_and_counts_it(
    tmp_path, capsys
):
    fast = write_fake_trainer(tmp_path, "fast_trainer")
    config_path = write_config(tmp_path, str(fast), simulated=False)
    assert main(["optimize", "--config", str(config_path), "--max-runs", "3"]) == 0
    runs_dir = tmp_path / "runs"
    journal = runs_dir / "study.jsonl"
    # The final trainer hangs after 5 steps, so it outlives costbo's SIGKILL.
    set_binary(config_path, write_fake_trainer(tmp_path, "hanging_trainer", hang_at_step=5))
    proc = subprocess.Popen(
        [sys.executable, "-m", "costbo.cli", "final", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )

    def final_step_5() -> bool:
        return any(b" 5/4725" in p.read_bytes() for p in runs_dir.glob("final_*/stdout.log"))

    try:
        wait_for(final_step_5, 90, "the final trainer's fifth step")
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    (run_dir,) = runs_dir.glob("final_*")
    started = json.loads((run_dir / "trial.json").read_text())["started_at"]
    try:
        assert trainer_pids(run_dir), "the final trainer should outlive costbo's SIGKILL"
        set_binary(config_path, fast)
        capsys.readouterr()
        assert main(["final", "--config", str(config_path)]) == 0
    finally:
        for pid in live_leftovers(run_dir, wait_seconds=0):  # only if costbo failed to
            os.kill(pid, signal.SIGKILL)
    assert "recovered the final run" in capsys.readouterr().out
    assert live_leftovers(run_dir) == []  # stopped before the second attempt was launched
    events, _ = read_events(journal)
    lost, done = [e for e in events if e["event"] == "final"]
    assert lost["status"] == "interrupted" and lost["recovered"] is True
    assert lost["seconds"] >= killed_at - started  # its money is counted
    assert lost["dollars"] == pytest.approx(lost["seconds"] / 3600 * 1.5)
    assert done["status"] == "complete"
    assert done["total_seconds"] == pytest.approx(lost["seconds"] + done["seconds"])


def test_paths_that_cannot_be_used_are_one_line_errors_before_any_run(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert main(["init", str(a_file / "costbo.toml")]) == 2
    assert f"cannot be written (File exists: {a_file})" in capsys.readouterr().err

    config_path = write_config(tmp_path, "costbo-sim", simulated=True)
    text = config_path.read_text()
    journal = tmp_path / "runs" / "study.jsonl"
    config_path.write_text(text.replace('dir = "."', 'dir = "no_such_dir"'))
    assert main(["optimize", "--config", str(config_path)]) == 2
    assert "[llmc] dir = " in capsys.readouterr().err
    assert not journal.exists()  # refused before the study was opened: no trial journaled
    config_path.write_text(
        text.replace('runs_dir = "runs"', f"runs_dir = {json.dumps(str(a_file))}")
    )
    for command in ("optimize", "probe", "final"):
        assert main([command, "--config", str(config_path)]) == 2
        assert "[study] runs_dir = " in capsys.readouterr().err

    config_path.write_text(text)
    assert main(["optimize", "--config", str(config_path), "--max-runs", "1"]) == 0
    capsys.readouterr()
    assert main(["report", "--config", str(config_path), "--out", str(tmp_path)]) == 2
    assert f"cannot be written (Is a directory: {tmp_path})" in capsys.readouterr().err
    assert main(["plot", "--config", str(config_path), "--out", str(a_file)]) == 2
    assert "figures folder" in capsys.readouterr().err


def test_resuming_with_changed_settings_names_the_key_but_a_new_budget_applies(tmp_path, capsys):
    config_path = write_config(tmp_path, "costbo-sim", simulated=True)
    assert main(["optimize", "--config", str(config_path), "--max-runs", "0"]) == 0
    journal = load_config(config_path).study.journal
    assert journal.exists()

    text = config_path.read_text()
    config_path.write_text(text.replace("price_per_hour = 1.50", "price_per_hour = 3.0"))
    capsys.readouterr()
    assert main(["optimize", "--config", str(config_path), "--max-runs", "0"]) == 2
    err = capsys.readouterr().err
    assert "[study] price_per_hour differs" in err and "1.5 in the journal, 3.0 here" in err

    config_path.write_text(text.replace("budget = 20.0", "budget = 30.0"))
    assert main(["optimize", "--config", str(config_path), "--max-runs", "0"]) == 0
    assert Study.load(journal, read_only=True).budget == 30.0


def test_prepare_data_writes_shards_and_explains_bad_input(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 200)
    out = tmp_path / "data"
    assert main(["prepare-data", str(text), "--out", str(out), "--tokenizer", "bytes"]) == 0
    assert "twin: -vs 256" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "bytes_train_000000.bin", "bytes_val_000000.bin"
    ]  # fmt: skip
    assert main(["prepare-data", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "missing.txt does not exist" in capsys.readouterr().err
