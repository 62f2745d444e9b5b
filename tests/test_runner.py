"""The runner against real processes: fake trainers (tests/fake_trainers.py) that speak llm.c's
format and inject one failure each. Every test also checks that nothing of the trainer's process
group (including the child each fake starts) is left alive."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import pytest
from fake_trainers import live_leftovers, write_fake_trainer

from costbo.llmc.command import TrainerSettings
from costbo.llmc.runner import DivergenceMonitor, DivergenceRule, Progress, Runner
from costbo.trial import Trial, TrialStatus

pytestmark = pytest.mark.timeout(60)

PRICE = 1.5


def make_trial(lr: float = 1e-3, steps: int = 50) -> Trial:
    return Trial(
        id=7,
        lr=lr,
        steps=steps,
        depth=1,
        width=64,
        heads=1,
        predicted_seconds=1.0,
        predicted_cost=0.0,
        predicted_cost_upper=0.0,
    )


def make_runner(tmp_path: Path, *, price: float = PRICE, grace: float = 1.0, **faults) -> Runner:
    settings_kw = {
        key: faults.pop(key) for key in ("use_stdbuf", "simulated", "extra_args") if key in faults
    }
    binary = write_fake_trainer(tmp_path, **faults)
    settings = TrainerSettings(
        binary=binary,
        llmc_dir=tmp_path,
        micro_batch=4,
        total_batch=4 * 64,
        seq_len=64,
        **settings_kw,
    )
    return Runner(settings, price, kill_grace_seconds=grace, poll_seconds=0.02)


def assert_nothing_left(run_dir: Path) -> None:
    assert live_leftovers(run_dir) == []


def test_normal_run_completes_with_final_val_loss_logs_and_progress(tmp_path):
    runner = make_runner(tmp_path)
    run_dir = tmp_path / "runs" / "trial-7"
    seen: list[Progress] = []
    result = runner.run(make_trial(steps=50), run_dir, on_progress=seen.append)

    assert result.status is TrialStatus.COMPLETE
    assert result.val_loss == pytest.approx(3.6789)
    assert result.val_losses[0] == pytest.approx(10.95) and 50 in result.val_losses
    assert sorted(result.train_losses) == list(range(1, 51))
    assert result.exit_code == 0 and result.error is None and not result.diverged
    assert result.kill_reason is None
    assert result.dollars == pytest.approx(result.seconds / 3600 * PRICE)
    assert 0 < result.first_step_seconds <= result.seconds == result.wall_seconds
    assert result.mean_step_ms == pytest.approx(1.0)
    assert [p.step for p in seen] == list(range(1, 51))
    assert all(p.total_steps == 50 for p in seen)
    assert seen[-1].eta_seconds == 0 and seen[0].eta_seconds is None
    # logs and trial.json in the run dir
    stdout = (run_dir / "stdout.log").read_text()
    assert stdout.count("\nstep ") == 50 and "total average iteration time" in stdout
    record = json.loads((run_dir / "trial.json").read_text())
    assert record["trial"]["lr"] == 1e-3 and record["trial"]["id"] == 7
    assert "-l" in record["argv"] and record["result"]["status"] == "complete"
    assert record["result"]["val_loss"] == pytest.approx(3.6789)
    assert_nothing_left(run_dir)


def test_trial_json_is_written_before_the_run_ends(tmp_path):
    runner = make_runner(tmp_path)
    run_dir = tmp_path / "run"
    during: list[dict] = []

    def peek(progress: Progress) -> None:
        if progress.step == 1:
            during.append(json.loads((run_dir / "trial.json").read_text()))

    runner.run(make_trial(steps=5), run_dir, on_progress=peek)
    assert during and during[0]["result"] is None and during[0]["argv"]
    assert_nothing_left(run_dir)


def test_hellaswag_and_generated_text_when_configured(tmp_path):
    runner = make_runner(tmp_path)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=20), run_dir, overrides={"-h": 1})
    assert result.status is TrialStatus.COMPLETE
    assert result.hellaswag == pytest.approx(2900 / 10042)
    # the generated block holds "val loss 0.000001": it must not become the answer
    assert result.val_loss == pytest.approx(3.6789)
    assert_nothing_left(run_dir)


def test_nan_loss_at_high_lr_is_killed_as_diverged(tmp_path):
    runner = make_runner(tmp_path, nan_lr=0.01, step_seconds=0.01)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(lr=0.05, steps=2000), run_dir)  # 20 s if not killed

    assert result.status is TrialStatus.DIVERGED and result.diverged
    assert result.kill_reason == "nan" and "step 4" in result.kill_detail
    assert result.wall_seconds < 10
    assert result.exit_code == -signal.SIGTERM
    assert math.isnan(result.train_losses[4]) and result.error is None
    assert result.dollars == pytest.approx(result.seconds / 3600 * PRICE)
    assert_nothing_left(run_dir)


def test_same_trainer_at_low_lr_completes(tmp_path):
    runner = make_runner(tmp_path, nan_lr=0.01, diverge_lr=0.01)
    result = runner.run(make_trial(lr=1e-3, steps=40), tmp_path / "run")
    assert result.status is TrialStatus.COMPLETE


def test_loss_climbing_back_to_9_without_nan_is_killed_as_diverged(tmp_path):
    runner = make_runner(tmp_path, diverge_lr=0.01, step_seconds=0.01)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(lr=0.05, steps=2000), run_dir)  # warmup 200 steps

    assert result.status is TrialStatus.DIVERGED and result.kill_reason == "diverged"
    assert "above the best 5.5000 for 10 steps" in result.kill_detail
    assert all(math.isfinite(loss) for loss in result.train_losses.values())
    assert max(result.train_losses.values()) > 8.0
    assert len(result.train_losses) < 200  # caught during warmup, not after it
    assert_nothing_left(run_dir)


def test_divergence_rule_patience_is_configurable(tmp_path):
    binary = write_fake_trainer(tmp_path, diverge_lr=0.01)
    settings = TrainerSettings(
        binary=binary, llmc_dir=tmp_path, micro_batch=4, total_batch=256, seq_len=64
    )
    lenient = DivergenceRule(rise_above_first=5.0, rise_above_best=5.0, patience=10)
    runner = Runner(settings, PRICE, divergence=lenient, poll_seconds=0.02)
    result = runner.run(make_trial(lr=0.05, steps=60), tmp_path / "run")
    assert result.status is TrialStatus.COMPLETE  # climbed to 9, but never 5 nats above best


def test_usage_error_at_start_is_failed_with_the_usage_explained(tmp_path):
    runner = make_runner(tmp_path, extra_args=("-zz", "1"))
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(), run_dir)

    assert result.status is TrialStatus.FAILED and not result.diverged
    assert result.exit_code == 1 and result.kill_reason is None
    assert "usage" in result.error and "before its first step" in result.error
    assert "Usage:" in result.stderr_tail
    assert "Usage:" in (run_dir / "stderr.log").read_text()
    assert result.seconds > 0 and result.dollars > 0  # its time is still spent
    assert_nothing_left(run_dir)


def test_cuda_error_mid_run_is_failed_with_its_message(tmp_path):
    runner = make_runner(tmp_path, cuda_error_at_step=5)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=50), run_dir)

    assert result.status is TrialStatus.FAILED and result.exit_code == 1
    assert "[CUDA ERROR] at file train_gpt2.cu:1234: out of memory" in result.error
    assert "after 5 steps" in result.error
    assert sorted(result.train_losses) == [1, 2, 3, 4, 5] and 0 in result.val_losses
    assert result.val_loss is None  # only a complete run has an answer
    assert result.seconds > 0
    assert_nothing_left(run_dir)


def test_failed_assert_abort_names_the_signal_and_the_assert(tmp_path):
    runner = make_runner(tmp_path, abort_at_start=True)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(), run_dir)

    assert result.status is TrialStatus.FAILED
    assert result.exit_code == -signal.SIGABRT
    assert "SIGABRT" in result.error and "Assertion `total_batch_size" in result.error
    assert_nothing_left(run_dir)


def test_hang_without_output_is_killed_after_the_silence_timeout(tmp_path):
    # It also ignores SIGTERM: only the SIGKILL after the grace period ends it.
    runner = make_runner(tmp_path, hang_at_step=3, ignore_sigterm=True, grace=0.3)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=50), run_dir, silence_timeout=1.0)

    assert result.status is TrialStatus.FAILED and result.kill_reason == "hang"
    assert "hung after 3 steps" in result.error
    assert result.exit_code == -signal.SIGKILL
    assert 1.0 < result.wall_seconds < 10
    assert_nothing_left(run_dir)


def test_slow_run_over_its_predicted_cost_is_killed(tmp_path):
    runner = make_runner(tmp_path, step_seconds=0.02)
    run_dir = tmp_path / "run"
    # 1000 steps x 0.02 s = 20 s; predicted 0.4 s x margin 2 = 0.8 s
    result = runner.run(make_trial(steps=1000), run_dir, predicted_seconds=0.4, cost_margin=2.0)

    assert result.status is TrialStatus.INTERRUPTED and result.kill_reason == "over_budget"
    assert "past its limit of 0.8 s" in result.kill_detail
    assert 0.8 < result.seconds < 10
    assert result.dollars == pytest.approx(result.seconds / 3600 * PRICE)
    assert len(result.train_losses) < 1000
    record = json.loads((run_dir / "trial.json").read_text())
    assert record["limit_seconds"] == pytest.approx(0.8)
    assert record["result"]["kill_reason"] == "over_budget"
    assert_nothing_left(run_dir)


def test_run_is_killed_when_it_would_pass_max_dollars(tmp_path):
    runner = make_runner(tmp_path, price=3600.0, step_seconds=0.02)  # one dollar a second
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=1000), run_dir, predicted_seconds=100, max_dollars=0.5)
    assert result.kill_reason == "over_budget" and result.status is TrialStatus.INTERRUPTED
    assert 0.5 < result.dollars < 10
    assert_nothing_left(run_dir)


def test_partial_last_line_at_exit_is_parsed(tmp_path):
    runner = make_runner(tmp_path, partial_last_line=True, final_val_loss=3.25)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=10), run_dir)

    assert (run_dir / "stdout.log").read_text().endswith("val loss 3.250000")
    assert result.status is TrialStatus.COMPLETE and result.val_loss == pytest.approx(3.25)
    assert_nothing_left(run_dir)


def test_exit_zero_without_a_final_val_loss_is_failed(tmp_path):
    runner = make_runner(tmp_path, final_val=False)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=10), run_dir)
    assert result.status is TrialStatus.FAILED and result.exit_code == 0
    assert "without printing a final val loss" in result.error
    assert_nothing_left(run_dir)


def test_flood_of_output_on_both_pipes_is_captured_completely(tmp_path):
    steps, stderr_lines = 100_000, 20_000
    runner = make_runner(tmp_path, flush=False, stderr_lines=stderr_lines, write_main_log=False)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(steps=steps), run_dir)

    assert result.status is TrialStatus.COMPLETE
    assert len(result.train_losses) == steps and result.val_loss == pytest.approx(3.6789)
    with open(run_dir / "stdout.log", "rb") as f:
        assert sum(line.startswith(b"step ") for line in f) == steps
    with open(run_dir / "stderr.log", "rb") as f:
        assert sum(1 for _ in f) == stderr_lines
    assert_nothing_left(run_dir)


def test_without_stdbuf_block_buffered_stdout_is_covered_by_following_main_log(tmp_path):
    # stdout only arrives at exit (or never: SIGTERM loses Python's buffer), so the nan must be
    # seen in main.log, which the fake flushes per line as llm.c does.
    runner = make_runner(tmp_path, use_stdbuf=False, flush=False, nan_lr=0.01, step_seconds=0.01)
    run_dir = tmp_path / "run"
    result = runner.run(make_trial(lr=0.05, steps=2000), run_dir)

    assert result.status is TrialStatus.DIVERGED and result.kill_reason == "nan"
    assert "step 4" in result.kill_detail
    assert "nan" not in (run_dir / "stdout.log").read_text()  # it never came through stdout
    assert math.isnan(result.train_losses[4])  # from main.log
    assert_nothing_left(run_dir)


def test_without_stdbuf_a_normal_run_still_completes(tmp_path):
    runner = make_runner(tmp_path, use_stdbuf=False, flush=False)
    result = runner.run(make_trial(steps=30), tmp_path / "run")
    assert result.status is TrialStatus.COMPLETE and result.val_loss == pytest.approx(3.6789)
    assert sorted(result.train_losses) == list(range(1, 31))


def test_keyboard_interrupt_kills_the_run_and_returns_interrupted(tmp_path):
    runner = make_runner(tmp_path, step_seconds=0.01)
    run_dir = tmp_path / "run"

    def ctrl_c(progress: Progress) -> None:
        if progress.step == 5:
            raise KeyboardInterrupt

    result = runner.run(make_trial(steps=2000), run_dir, on_progress=ctrl_c)

    assert result.status is TrialStatus.INTERRUPTED and result.kill_reason == "interrupted"
    assert result.seconds > 0 and result.dollars > 0
    assert result.wall_seconds < 10
    assert json.loads((run_dir / "trial.json").read_text())["result"]["status"] == "interrupted"
    assert_nothing_left(run_dir)


def test_an_error_in_the_progress_callback_propagates_after_killing_the_group(tmp_path):
    runner = make_runner(tmp_path, step_seconds=0.01)
    run_dir = tmp_path / "run"

    def broken(progress: Progress) -> None:
        raise RuntimeError("progress display broke")

    with pytest.raises(RuntimeError, match="progress display broke"):
        runner.run(make_trial(steps=2000), run_dir, on_progress=broken)
    assert_nothing_left(run_dir)


def test_simulated_seconds_are_accounted_instead_of_wall_time(tmp_path):
    runner = make_runner(tmp_path, simulated=True, sim_step_seconds=7.5)
    run_dir = tmp_path / "run"
    seen: list[Progress] = []
    result = runner.run(make_trial(steps=40), run_dir, on_progress=seen.append)

    assert result.status is TrialStatus.COMPLETE and result.simulated
    assert result.seconds == pytest.approx(40 * 7.5)
    assert result.dollars == pytest.approx(300 / 3600 * PRICE)
    assert result.first_step_seconds == pytest.approx(7.5)
    assert result.wall_seconds < result.seconds
    assert seen[-1].seconds == pytest.approx(39 * 7.5)  # the step line precedes its sim elapsed
    assert_nothing_left(run_dir)


def test_simulated_overrun_is_killed_and_accounted_at_the_limit(tmp_path):
    runner = make_runner(tmp_path, simulated=True, sim_step_seconds=10.0, step_seconds=0.005)
    run_dir = tmp_path / "run"
    # predicted 100 s x 2 = 200 s of simulated time: killed at the 21st step's 210 s
    result = runner.run(make_trial(steps=2000), run_dir, predicted_seconds=100.0)

    assert result.kill_reason == "over_budget" and result.status is TrialStatus.INTERRUPTED
    assert result.seconds == pytest.approx(210.0)
    assert_nothing_left(run_dir)


@pytest.mark.parametrize("use_stdbuf", [True, False])
def test_a_binary_that_cannot_be_executed_is_a_failed_run(tmp_path, use_stdbuf):
    binary = tmp_path / "train_gpt2cu"
    binary.write_text("#!/nonexistent/interpreter\n")
    binary.chmod(0o755)
    settings = TrainerSettings(
        binary=binary,
        llmc_dir=tmp_path,
        micro_batch=4,
        total_batch=256,
        seq_len=64,
        use_stdbuf=use_stdbuf,
    )
    run_dir = tmp_path / "run"
    result = Runner(settings, PRICE, poll_seconds=0.02).run(make_trial(), run_dir)
    assert result.status is TrialStatus.FAILED
    assert "No such file or directory" in result.error
    record = json.loads((run_dir / "trial.json").read_text())
    assert record["result"]["status"] == "failed"


def test_bad_arguments_fail_before_anything_is_launched(tmp_path):
    runner = make_runner(tmp_path)
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="cost_margin"):
        runner.run(make_trial(), run_dir, cost_margin=0)
    with pytest.raises(ValueError, match="silence_timeout"):
        runner.run(make_trial(), run_dir, silence_timeout=0)
    with pytest.raises(ValueError, match="heads"):
        runner.run(Trial(1, 1e-3, 10, 1, 64, 3, 1.0, 0.0, 0.0), run_dir)  # 64 channels / 3 heads
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="price_per_hour"):
        Runner(runner.settings, 0.0)


def test_a_run_dir_that_cannot_be_created_is_a_value_error_not_an_os_error(tmp_path):
    runner = make_runner(tmp_path)
    a_file = tmp_path / "runs"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be created .*Not a directory"):
        runner.run(make_trial(), a_file / "trial-7")


def test_simulated_kills_account_the_sim_clock_at_the_kill_not_what_follows(tmp_path):
    # The fake prints instantly-ish, as costbo-sim does: what it prints after the kill was
    # requested would not have been spent by a real run that was killed there.
    runner = make_runner(tmp_path, simulated=True, sim_step_seconds=10.0, nan_lr=0.01)
    diverged = runner.run(make_trial(lr=0.05, steps=2000), tmp_path / "nan")
    assert diverged.kill_reason == "nan" and diverged.seconds == pytest.approx(40.0)  # step 4

    def ctrl_c(progress: Progress) -> None:
        if progress.step == 5:
            raise KeyboardInterrupt

    interrupted = runner.run(make_trial(steps=2000), tmp_path / "ctrl-c", on_progress=ctrl_c)
    assert interrupted.status is TrialStatus.INTERRUPTED
    assert interrupted.seconds == pytest.approx(40.0)  # the clock when step 5's line came
    assert_nothing_left(tmp_path / "nan")
    assert_nothing_left(tmp_path / "ctrl-c")


COSTBO_SIM = Path(sys.executable).with_name("costbo-sim")


@pytest.mark.skipif(
    not COSTBO_SIM.exists(), reason="costbo-sim (costbo/sim/trainer.py) is not installed"
)
class TestCostboSim:
    """The real simulator through the runner: its simulated seconds are what a run costs."""

    def runner(self, tmp_path: Path) -> Runner:
        settings = TrainerSettings(
            binary=COSTBO_SIM,
            llmc_dir=tmp_path,
            micro_batch=4,
            total_batch=256,
            seq_len=64,
            simulated=True,
        )
        return Runner(settings, PRICE, poll_seconds=0.02)

    def test_a_sim_run_completes_and_is_accounted_in_simulated_seconds(self, tmp_path):
        run_dir = tmp_path / "run"
        result = self.runner(tmp_path).run(make_trial(lr=6e-4, steps=50), run_dir)

        assert result.status is TrialStatus.COMPLETE, result.error
        assert math.isfinite(result.val_loss) and sorted(result.train_losses) == list(range(1, 51))
        last_sim = [
            line
            for line in (run_dir / "stdout.log").read_text().splitlines()
            if line.startswith("sim elapsed:")
        ][-1]
        assert result.seconds == pytest.approx(float(last_sim.split()[2]))
        assert result.dollars == pytest.approx(result.seconds / 3600 * PRICE)
        assert 0 < result.first_step_seconds < result.seconds
        assert_nothing_left(run_dir)

    def test_a_sim_overrun_is_killed_at_its_simulated_limit(self, tmp_path):
        run_dir = tmp_path / "run"
        full = self.runner(tmp_path).run(make_trial(steps=200), tmp_path / "full")
        limit = full.first_step_seconds + 1e-3
        result = self.runner(tmp_path).run(
            make_trial(steps=200), run_dir, predicted_seconds=limit, cost_margin=1.0
        )
        assert result.kill_reason == "over_budget", result
        assert limit < result.seconds < full.seconds
        assert_nothing_left(run_dir)


def test_divergence_monitor_rules():
    rule = DivergenceRule(rise_above_first=1.0, rise_above_best=2.5, patience=3)
    monitor = DivergenceMonitor(rule, warmup_steps=5)
    # during warmup a brief rise above the first loss is tolerated
    assert [monitor.observe(s, loss) for s, loss in [(1, 10.9), (2, 11.95), (3, 10.0)]] == [
        None
    ] * 3
    assert monitor.observe(3, float("nan")) is None  # a step already seen is not counted again
    # after warmup: > first + 1 nat for `patience` steps in a row; a one-step spike (one hard
    # batch, at the same step in every run since llm.c's data order is fixed) is not a kill
    assert monitor.observe(6, 12.0) is None
    assert monitor.observe(7, 9.0) is None
    assert monitor.observe(8, 12.0) is None
    assert monitor.observe(9, 12.1) is None
    reason, detail = monitor.observe(10, 12.2)
    assert reason == "diverged" and "first step" in detail

    monitor = DivergenceMonitor(rule, warmup_steps=100)
    losses = [10.9, 6.0, 8.6, 8.7, 6.5, 8.6, 8.7]  # a two-step spike recovers, so no kill
    assert all(monitor.observe(s, x) is None for s, x in enumerate(losses, 1))
    reason, detail = monitor.observe(8, 8.8)  # third step in a row > best 6.0 + 2.5
    assert reason == "diverged" and "for 3 steps" in detail
    assert DivergenceMonitor(rule, 0).observe(1, float("-inf"))[0] == "nan"
