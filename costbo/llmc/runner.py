"""Run one trial of train_gpt2cu: launch, stream its logs, kill it when it should stop, account it.

The trainer runs as an argv list (never a shell string) in its own process group with the llm.c
dir as cwd. Its stdout and stderr are read concurrently (one selector loop, no threads) into
``<run dir>/stdout.log`` and ``stderr.log`` and parsed as they arrive; stdout is made
line-buffered with ``stdbuf -oL`` when it is installed, otherwise ``<run dir>/main.log`` (flushed
per line by llm.c) is followed for live progress. ``trial.json`` is written at start and at end.

The whole process group is killed (SIGTERM, then SIGKILL after a grace period) when:
  - a loss is nan or inf, or the loss blows up after warmup (``DivergenceRule``): llm.c never
    stops by itself and would spend its full time on a dead run;
  - the run's cost passes ``predicted_seconds x cost_margin`` or ``max_dollars``;
  - nothing was printed for ``silence_timeout`` seconds (a hang);
  - KeyboardInterrupt: ``run`` then returns a result with status "interrupted" and the time
    spent, and does not re-raise; the caller records it and decides whether to stop. A second
    KeyboardInterrupt while the group is being killed propagates (after a SIGKILL).
Leftover members of the group (children the trainer started) are killed when the trainer exits.

With ``TrainerSettings.simulated`` (costbo-sim), seconds are the simulated ones it prints
(``sim elapsed``), and the cost checks use them; the silence check stays on wall time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from costbo.llmc.command import TrainerSettings, TrialLike, build_argv
from costbo.llmc.log_parser import (
    ErrorEvent,
    Event,
    LogParser,
    RunLog,
    SimElapsedEvent,
    StepEvent,
    ValEvent,
)
from costbo.trial import TrialStatus

STDERR_TAIL_CHARS = 4000
_READ_BYTES = 1 << 16

# kill_reason codes
NAN = "nan"
DIVERGED = "diverged"
OVER_BUDGET = "over_budget"
HANG = "hang"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Progress:
    """Where a running trial stands: ``step`` of ``total_steps`` done, last train ``loss``
    (nats), ``seconds`` and ``dollars`` spent so far (simulated seconds with costbo-sim),
    ``eta_seconds`` until the last step (None before two steps have run)."""

    step: int
    total_steps: int
    loss: float | None
    seconds: float
    dollars: float
    eta_seconds: float | None


@dataclass(frozen=True)
class DivergenceRule:
    """When a finite loss counts as diverged (nan and inf always do, at any step).

    A train loss more than ``rise_above_best`` nats above the best loss so far, or (after
    warmup) more than ``rise_above_first`` nats above the first step's loss (about ln(50257) =
    10.8 from scratch; during warmup a high LR may briefly lift the loss above it and recover),
    for ``patience`` consecutive steps. Short spikes that recover are not divergence: llm.c's
    data order is fixed, so one hard batch lifts every run's loss at the same step, and killing
    on it (as a single-step rule did, for 9 of 272 runs of the twin sweep, one of them the best
    LR of its rung) throws away good runs. A loss that stays up, back toward its starting value,
    is divergence (it lands at 5-11 nats).
    """

    rise_above_first: float = 1.0
    rise_above_best: float = 2.5
    patience: int = 10


class DivergenceMonitor:
    """Applies a DivergenceRule to a stream of (step, loss), each step counted once."""

    def __init__(self, rule: DivergenceRule, warmup_steps: int) -> None:
        self.rule = rule
        self.warmup_steps = warmup_steps
        self.first: float | None = None
        self.best = math.inf
        self.last_step = 0
        self.streak = 0  # consecutive steps far above the best loss
        self.first_streak = 0  # consecutive steps (after warmup) above the first loss

    def observe(self, step: int, loss: float) -> tuple[str, str] | None:
        """(kill_reason, detail) if this loss means the run diverged, else None."""
        if step <= self.last_step:
            return None  # already seen (stdout and main.log report the same steps)
        self.last_step = step
        if not math.isfinite(loss):
            return NAN, f"train loss {loss} at step {step}"
        if self.first is None:
            self.first = loss
        self.best = min(self.best, loss)
        rule = self.rule
        if step > self.warmup_steps and loss > self.first + rule.rise_above_first:
            self.first_streak += 1
            if self.first_streak >= rule.patience:
                return DIVERGED, (
                    f"train loss {loss:.4f} at step {step} stayed more than "
                    f"{rule.rise_above_first} nats above the first step's {self.first:.4f} "
                    f"for {self.first_streak} steps"
                )
        else:
            self.first_streak = 0
        if loss > self.best + rule.rise_above_best:
            self.streak += 1
            if self.streak >= rule.patience:
                return DIVERGED, (
                    f"train loss {loss:.4f} at step {step} stayed more than "
                    f"{rule.rise_above_best} nats above the best {self.best:.4f} for "
                    f"{self.streak} steps"
                )
        else:
            self.streak = 0
        return None


@dataclass
class RunResult:
    """The outcome of one trainer run.

    ``status``: COMPLETE (exit 0 with a finite final val loss), DIVERGED (nan/inf or blown-up
    loss; ``diverged`` is True), FAILED (a non-zero exit that is not a divergence, a hang, or
    exit 0 without a val loss: ``error`` says why; its time was still spent), INTERRUPTED
    (KeyboardInterrupt, or killed for cost overrun). ``seconds``: wall seconds from launch to
    exit (simulated seconds with costbo-sim: up to the kill, for a killed run), ``dollars`` =
    seconds / 3600 x price; both count for every status.
    ``kill_reason``: why costbo killed it ("nan", "diverged", "over_budget", "hang",
    "interrupted") or None, ``kill_detail`` the sentence behind it. ``val_loss`` (nats): the
    final val loss of a COMPLETE run, else None (``val_losses`` keeps every eval);
    ``hellaswag`` (fraction): the last reported. ``train_losses`` / ``step_ms`` by 1-based
    step, ``val_losses`` by updates done. ``first_step_seconds``: from launch to the first step
    line (simulated: the ``sim elapsed`` after it), the startup overhead a cost model wants.
    """

    status: TrialStatus
    seconds: float
    dollars: float
    val_loss: float | None = None
    hellaswag: float | None = None
    diverged: bool = False
    kill_reason: str | None = None
    kill_detail: str | None = None
    exit_code: int | None = None
    stderr_tail: str = ""
    error: str | None = None
    train_losses: dict[int, float] = field(default_factory=dict)
    val_losses: dict[int, float] = field(default_factory=dict)
    step_ms: dict[int, float] = field(default_factory=dict)
    first_step_seconds: float | None = None
    mean_step_ms: float | None = None
    wall_seconds: float = 0.0
    simulated: bool = False
    run_dir: str = ""

    def to_dict(self) -> dict:
        """JSON-safe: nan/inf become None; per-step dicts become [[step, value], ...]."""

        def clean(value: object) -> object:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        data: dict = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, TrialStatus):
                value = value.value
            elif isinstance(value, dict):
                value = [
                    [step, v if math.isfinite(v) else None] for step, v in sorted(value.items())
                ]
            data[name] = clean(value)
        return data


class _Stream:
    """One pipe of the child: raw bytes to a file, parsed into events, last bytes kept."""

    def __init__(self, name: str, pipe, path: Path, tail_bytes: int = 0) -> None:
        self.name = name
        self.pipe = pipe
        self.fd = pipe.fileno()
        self.eof = False
        self.file = open(path, "wb")  # noqa: SIM115 - closed by Runner.run
        self.parser = LogParser("stdout")
        self.tail: deque[bytes] = deque()
        self.tail_bytes = tail_bytes
        self.tail_size = 0

    def read(self) -> list[Event]:
        """Events from one read of what the pipe holds; sets ``eof`` at its end."""
        chunk = os.read(self.fd, _READ_BYTES)
        if not chunk:
            self.eof = True
            return self.parser.close()
        self.file.write(chunk)
        if self.tail_bytes:
            self.tail.append(chunk)
            self.tail_size += len(chunk)
            while self.tail_size - len(self.tail[0]) >= self.tail_bytes:
                self.tail_size -= len(self.tail.popleft())
        return self.parser.feed(chunk)

    def tail_text(self, chars: int) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")[-chars:]

    def close(self) -> None:
        self.file.close()
        self.pipe.close()


class _MainLogFollower:
    """Reads what llm.c appends to ``<run dir>/main.log`` (it flushes per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parser = LogParser("main.log")
        # Skip a main.log left by an earlier run: llm.c truncates it unless resuming (-y 1),
        # which appends, so new lines start at the old size, or at 0 after a truncation.
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> list[Event] | None:
        """Events from what was appended since the last read; None if nothing was."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                if size == self.offset:
                    return None
                f.seek(self.offset)
                chunk = f.read(size - self.offset)
        except FileNotFoundError:
            return None
        self.offset += len(chunk)
        return self.parser.feed(chunk)


class Runner:
    """Runs trials with one TrainerSettings at ``price_per_hour`` dollars per hour.

    ``divergence``: when a finite loss counts as diverged. ``kill_grace_seconds``: time between
    SIGTERM and SIGKILL (and the most time spent draining pipes after the trainer exits).
    ``poll_seconds``: how often the checks run while the trainer is quiet.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        price_per_hour: float,
        *,
        divergence: DivergenceRule | None = None,
        kill_grace_seconds: float = 5.0,
        poll_seconds: float = 0.05,
    ) -> None:
        if isinstance(price_per_hour, bool) or not isinstance(price_per_hour, int | float):
            raise ValueError(f"price_per_hour {price_per_hour!r} is not a number of dollars")
        if not (price_per_hour > 0 and math.isfinite(price_per_hour)):
            raise ValueError(
                f"price_per_hour {price_per_hour} must be a finite number > 0 dollars per hour "
                "(e.g. 1.5 for an A10G g5.xlarge)"
            )
        self.settings = settings
        self.price_per_hour = float(price_per_hour)
        self.divergence = divergence or DivergenceRule()
        self.kill_grace_seconds = kill_grace_seconds
        self.poll_seconds = poll_seconds

    def dollars(self, seconds: float) -> float:
        """The price of ``seconds`` of machine time."""
        return seconds / 3600.0 * self.price_per_hour

    def run(
        self,
        trial: TrialLike,
        run_dir: str | os.PathLike,
        *,
        predicted_seconds: float | None = None,
        cost_margin: float = 2.0,
        max_dollars: float | None = None,
        silence_timeout: float | None = 600.0,
        on_progress: Callable[[Progress], None] | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> RunResult:
        """Run ``trial`` in ``run_dir`` (created if needed) and return its result.

        ``predicted_seconds`` x ``cost_margin``: the most seconds the run may take (None: no
        limit; pass ``trial.predicted_seconds`` to enforce the cost model's prediction);
        ``max_dollars``: the most it may cost, e.g. the remaining budget (None: no limit);
        ``silence_timeout``: wall seconds without any output before it counts as hung (None:
        never); ``on_progress``: called after every new train step; ``overrides``: flag values
        for ``build_argv``. Raises ValueError, before launching anything, for bad settings or
        flags. Returns (never raises) for every way the trainer can end, KeyboardInterrupt
        included; see the module doc.
        """
        if isinstance(cost_margin, bool) or not (
            isinstance(cost_margin, int | float) and cost_margin > 0
        ):
            raise ValueError(f"cost_margin {cost_margin!r} must be a number > 0, e.g. 2.0")
        if silence_timeout is not None and not silence_timeout > 0:
            raise ValueError(f"silence_timeout {silence_timeout!r} must be > 0 seconds or None")
        if max_dollars is not None and not max_dollars >= 0:
            raise ValueError(f"max_dollars {max_dollars!r} must be >= 0 dollars or None")
        run_dir = Path(run_dir)
        argv = build_argv(trial, self.settings, run_dir, overrides)
        flags = dict(zip(argv[1::2], argv[2::2], strict=False))
        limit_seconds = math.inf
        if predicted_seconds is not None:
            limit_seconds = float(predicted_seconds) * cost_margin
        if max_dollars is not None:
            limit_seconds = min(limit_seconds, max_dollars / self.price_per_hour * 3600.0)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"run dir {run_dir} cannot be created ({err.strerror}): the "
                "runs directory must be a folder you can write to"
            ) from None

        cwd = os.path.abspath(os.path.expanduser(self.settings.llmc_dir))
        stdbuf = shutil.which("stdbuf") if self.settings.use_stdbuf else None
        launch = [stdbuf, "-oL", *argv] if stdbuf else argv
        record = {
            "argv": launch,
            "cwd": cwd,
            "trial": _trial_fields(trial),
            "simulated": self.settings.simulated,
            "price_per_hour": self.price_per_hour,
            "predicted_seconds": predicted_seconds,
            "limit_seconds": None if math.isinf(limit_seconds) else limit_seconds,
            "started_at": time.time(),
            "result": None,
        }
        _write_json(run_dir / "trial.json", record)

        state = _RunState(
            name=Path(argv[0]).name,
            monitor=DivergenceMonitor(self.divergence, int(flags.get("-u", "0"))),
            total_steps=int(flags["-x"]),
            limit_seconds=limit_seconds,
            silence_timeout=silence_timeout,
            on_progress=on_progress,
        )
        follower = None if stdbuf else _MainLogFollower(run_dir / "main.log")
        stdout_path, stderr_path = run_dir / "stdout.log", run_dir / "stderr.log"
        state.start = state.last_output = time.monotonic()
        try:
            proc = subprocess.Popen(
                launch,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, which is what gets killed
            )
        except OSError as err:
            result = RunResult(
                status=TrialStatus.FAILED,
                seconds=0.0,
                dollars=0.0,
                error=(
                    f"could not start {launch[0]}: {err.strerror or err}; check that it is a "
                    "program for this machine (build it with `make train_gpt2cu`)"
                ),
                simulated=self.settings.simulated,
                run_dir=str(run_dir),
            )
            record["result"] = result.to_dict()
            _write_json(run_dir / "trial.json", record)
            return result
        streams = [
            _Stream("stdout", proc.stdout, stdout_path),
            _Stream("stderr", proc.stderr, stderr_path, tail_bytes=STDERR_TAIL_CHARS),
        ]
        try:
            try:
                self._pump(proc, streams, follower, state)
            except KeyboardInterrupt:
                # Kill it (SIGTERM, grace, SIGKILL) and report the time spent; the caller
                # decides whether to stop. A second Ctrl-C lands in the finally below.
                state.request_kill(INTERRUPTED, "stopped by KeyboardInterrupt", time.monotonic())
                state.term_sent = False
                self._pump(proc, streams, follower, state)
        finally:
            _signal_group(proc, signal.SIGKILL)  # no-op unless an exception cut the loop short
            proc.wait()
            for stream in streams:
                stream.close()
        wall = time.monotonic() - state.start
        result = self._result(proc.returncode, state, streams, follower, wall, run_dir)
        record["result"] = result.to_dict()
        record["finished_at"] = time.time()
        _write_json(run_dir / "trial.json", record)
        return result

    def _pump(self, proc, streams, follower, state: _RunState) -> None:
        """Read output and run the checks until the trainer has exited and its pipes closed."""
        selector = selectors.DefaultSelector()
        try:
            for stream in streams:
                if not stream.eof:
                    selector.register(stream.fd, selectors.EVENT_READ, stream)
            exited_at: float | None = None
            while True:
                if selector.get_map():
                    ready = selector.select(self.poll_seconds)
                else:
                    ready = []
                    time.sleep(self.poll_seconds)
                now = time.monotonic()
                for key, _ in ready:
                    stream = key.data
                    events = stream.read()
                    state.last_output = now
                    if stream.eof:
                        selector.unregister(stream.fd)
                    if stream.name == "stdout":
                        self._handle(events, state, state.stdout_log, now)
                    else:
                        state.stderr_errors += [e.message for e in events if type(e) is ErrorEvent]
                if follower is not None:
                    events = follower.read()
                    if events is not None:
                        state.last_output = now
                        self._handle(events, state, state.mainlog_log, now)
                if ready:
                    for stream in streams:
                        stream.file.flush()

                if exited_at is None and _has_exited(proc):
                    exited_at = now
                    # Children the trainer left behind would hold its pipes open: end them.
                    _signal_group(proc, signal.SIGKILL)
                if exited_at is not None:
                    # Done once drained, or when something outside the group holds the pipes.
                    if not selector.get_map() or now - exited_at > self.kill_grace_seconds:
                        return
                    continue
                if state.kill_reason is None:
                    self._check_budget(state, now)
                    self._check_silence(state, now)
                if state.kill_reason is not None:
                    if not state.term_sent:
                        _signal_group(proc, signal.SIGTERM)
                        state.term_sent = True
                    elif now - state.kill_requested_at > self.kill_grace_seconds:
                        _signal_group(proc, signal.SIGKILL)
        finally:
            selector.close()

    def _handle(self, events: list[Event], state: _RunState, log: RunLog, now: float) -> None:
        for event in events:
            log.add(event)
            kind = type(event)
            if kind is StepEvent:
                if state.first_step_at is None:
                    state.first_step_at = now
                if state.kill_reason is None:
                    verdict = state.monitor.observe(event.step, event.loss)
                    if verdict is not None:
                        state.request_kill(*verdict, now)
                        # The step's own sim elapsed follows its line (if it comes before the
                        # kill): the clock before this step plus the step's simulated time.
                        state.sim_clock_at_kill += (event.ms or 0.0) / 1000.0
                if event.step > state.progress_step:
                    state.progress_step = event.step
                    self._report(state, event, now)
            elif kind is SimElapsedEvent:
                if state.first_step_at is not None and state.first_step_sim is None:
                    state.first_step_sim = event.seconds
                if self.settings.simulated and state.kill_reason is None:
                    self._check_budget(state, now)
            elif kind is ValEvent and not math.isfinite(event.loss) and state.kill_reason is None:
                state.request_kill(NAN, f"val loss {event.loss} after {event.step} steps", now)

    def _clock(self, state: _RunState, now: float) -> float:
        """Seconds the run has cost so far: simulated with costbo-sim, else wall."""
        if self.settings.simulated:
            return state.stdout_log.sim_seconds or 0.0
        return now - state.start

    def _report(self, state: _RunState, event: StepEvent, now: float) -> None:
        if state.on_progress is None:
            return
        seconds = self._clock(state, now)
        total = event.total_steps or state.total_steps
        eta = None
        if state.first_step_clock is None:
            state.first_step_clock = (seconds, event.step)
        else:
            clock0, step0 = state.first_step_clock
            if event.step > step0:
                eta = (seconds - clock0) / (event.step - step0) * max(total - event.step, 0)
        state.on_progress(
            Progress(event.step, total, event.loss, seconds, self.dollars(seconds), eta)
        )

    def _check_budget(self, state: _RunState, now: float) -> None:
        seconds = self._clock(state, now)
        if seconds > state.limit_seconds:
            state.request_kill(
                OVER_BUDGET,
                f"it ran {seconds:.1f} s (${self.dollars(seconds):.4f}), past its limit of "
                f"{state.limit_seconds:.1f} s (${self.dollars(state.limit_seconds):.4f})",
                now,
            )

    def _check_silence(self, state: _RunState, now: float) -> None:
        quiet = now - state.last_output
        if state.silence_timeout is not None and quiet > state.silence_timeout:
            state.request_kill(HANG, f"no output for {quiet:.1f} s (silence_timeout)", now)

    def _result(self, code, state, streams, follower, wall, run_dir) -> RunResult:
        log = _merged(state.stdout_log, state.mainlog_log if follower else None)
        errors = log.errors + state.stderr_errors
        stderr_tail = streams[1].tail_text(STDERR_TAIL_CHARS)
        reason, detail = state.kill_reason, state.kill_detail
        if self.settings.simulated:
            seconds = log.sim_seconds or 0.0
            if reason is not None:
                seconds = state.sim_clock_at_kill  # where the real run would have been killed
        else:
            seconds = wall
        first_step = None
        if state.first_step_at is not None:
            first_step = (
                state.first_step_sim
                if self.settings.simulated
                else state.first_step_at - state.start
            )
        error = None
        if reason in (NAN, DIVERGED):
            status = TrialStatus.DIVERGED
        elif reason in (OVER_BUDGET, INTERRUPTED):
            status = TrialStatus.INTERRUPTED
        elif reason == HANG:
            status = TrialStatus.FAILED
            error = f"{state.name} hung after {log.last_step} steps: {detail}; it was killed"
            if errors:
                error += f"; it printed: {_join_errors(errors)}"
        elif code != 0:
            status = TrialStatus.FAILED
            error = _exit_error(state.name, code, errors, stderr_tail, log.last_step)
        elif log.has_nonfinite_loss:
            status, reason = TrialStatus.DIVERGED, NAN
            detail = "a train or val loss was nan or inf"
        elif log.last_val_loss is None or max(log.val_losses) < log.last_step:
            status = TrialStatus.FAILED
            error = (
                f"{state.name} exited 0 after {log.last_step} steps without printing a final "
                "val loss: check -v and the val data glob (-iv); see stdout.log in the run dir"
            )
        else:
            status = TrialStatus.COMPLETE
        return RunResult(
            status=status,
            seconds=seconds,
            dollars=self.dollars(seconds),
            val_loss=log.last_val_loss if status is TrialStatus.COMPLETE else None,
            hellaswag=log.hellaswag,
            diverged=status is TrialStatus.DIVERGED,
            kill_reason=reason,
            kill_detail=detail,
            exit_code=code,
            stderr_tail=stderr_tail,
            error=error,
            train_losses=dict(log.train_losses),
            val_losses=dict(log.val_losses),
            step_ms=dict(log.step_ms),
            first_step_seconds=first_step,
            mean_step_ms=log.mean_step_ms,
            wall_seconds=wall,
            simulated=self.settings.simulated,
            run_dir=str(run_dir),
        )


@dataclass
class _RunState:
    """What one run's loop knows; ``now`` values are time.monotonic() seconds."""

    name: str
    monitor: DivergenceMonitor
    total_steps: int
    limit_seconds: float
    silence_timeout: float | None
    on_progress: Callable[[Progress], None] | None
    start: float = 0.0
    last_output: float = 0.0
    stdout_log: RunLog = field(default_factory=RunLog)
    mainlog_log: RunLog = field(default_factory=RunLog)
    stderr_errors: list[str] = field(default_factory=list)
    kill_reason: str | None = None
    kill_detail: str | None = None
    kill_requested_at: float = 0.0
    term_sent: bool = False
    sim_clock_at_kill: float = 0.0
    first_step_at: float | None = None
    first_step_sim: float | None = None
    first_step_clock: tuple[float, int] | None = None
    progress_step: int = 0

    def request_kill(self, reason: str, detail: str, now: float) -> None:
        """Mark the run for killing. With costbo-sim the clock stops here: what it prints
        after this (instantly, unlike a real run) was never spent."""
        self.kill_reason, self.kill_detail, self.kill_requested_at = reason, detail, now
        self.sim_clock_at_kill = self.stdout_log.sim_seconds or 0.0


def _has_exited(proc: subprocess.Popen) -> bool:
    """Whether the trainer exited, without reaping it: while it is an unreaped zombie its
    process group id cannot be reused, so signalling the group stays safe."""
    if proc.returncode is not None:
        return True
    if not hasattr(os, "waitid"):
        return proc.poll() is not None
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll() is not None
    return info is not None


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    if proc.returncode is not None:
        return  # reaped: its group id may belong to someone else now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _merged(stdout: RunLog, main_log: RunLog | None) -> RunLog:
    """stdout's log, with what only main.log had (when stdout was block-buffered and cut)."""
    if main_log is None:
        return stdout
    merged = RunLog(
        train_losses={**main_log.train_losses, **stdout.train_losses},
        val_losses={**main_log.val_losses, **stdout.val_losses},
        step_ms={**main_log.step_ms, **stdout.step_ms},
        hellaswag=stdout.hellaswag if stdout.hellaswag is not None else main_log.hellaswag,
        mean_step_ms=stdout.mean_step_ms,
        sim_seconds=stdout.sim_seconds,
        total_steps=stdout.total_steps,
        last_step=max(stdout.last_step, main_log.last_step),
        errors=stdout.errors,
    )
    return merged


def _join_errors(errors: list[str]) -> str:
    unique = list(dict.fromkeys(errors))
    return " | ".join(unique[:3]) + (f" (+{len(unique) - 3} more)" if len(unique) > 3 else "")


def _exit_error(name: str, code: int, errors: list[str], stderr_tail: str, steps: int) -> str:
    """A readable sentence for a trainer that exited non-zero by itself."""
    when = f"after {steps} steps" if steps else "before its first step"
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        message = f"{name} was killed by {signame} {when}"
        if -code == signal.SIGABRT:
            message += (
                " (llm.c aborts on a failed assert: warmup, -es, output dir length, or a total "
                "batch not divisible by B*T)"
            )
    else:
        message = f"{name} exited with code {code} {when}"
    if errors:
        return f"{message}: {_join_errors(errors)}"
    if "Usage:" in stderr_tail or "usage:" in stderr_tail:
        return (
            f"{message} and printed its usage: it rejected a flag or value; check extra_args "
            "and the argv in trial.json"
        )
    lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
    if lines:
        return f"{message}: {' | '.join(lines[-3:])}"
    return f"{message}; it printed no error: see stdout.log and stderr.log in the run dir"


def _trial_fields(trial: TrialLike) -> dict:
    names = ("id", "lr", "steps", "depth", "width", "heads", "predicted_seconds", "predicted_cost")
    return {name: getattr(trial, name) for name in names if hasattr(trial, name)}


def _write_json(path: Path, data: dict) -> None:
    # Atomic: a reader (or a crash) never sees half a trial.json. json.dumps without indent
    # uses the C encoder (json.dump never does): the per-step lists of a long run are large.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, default=str) + "\n")
    os.replace(tmp, path)
