"""Incremental parser for what train_gpt2cu prints (stdout) and writes (``<run dir>/main.log``).

Feed it chunks as they arrive, bytes or text, cut anywhere; it buffers the partial last line and
returns the events the completed lines hold. It never raises on odd input: a line it does not
know, or one that is cut or garbled, is ignored. Formats (shared/llmc-interface.md):

stdout (1-based step numbers)::

    step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e | %.2f ms |
        %.1f%% bf16 MFU | %.0f tok/s                  (one line)
    val loss %f                      (after the step line of the updates it follows; 0 at start)
    evaluating HellaSwag: %d/%d\\r...HellaSwag: %d/%d = %f
    total average iteration time: %f ms
    sim elapsed: %.3f s              (costbo-sim only: cumulative simulated seconds)
    generating:\\n---\\n<any text>\\n---\\n  (skipped)
    [CUDA ERROR] ..., [CUDNN ERROR] ..., Error: ..., ERROR: ..., ...Assertion `...' failed.
                                     (collected; llm.c prints the CUDA error string on the line
                                      after "at file x:n:")

main.log (0-based: ``s:249 trl:`` is stdout's ``step 250``; ``tel``/``eval`` steps count the
updates done)::

    s:%d trl:%.4f lr:%.6f norm:%.2f time (ms):%.2f
    s:%d tel:%.4f
    s:%d eval:%.4f

Every event carries steps as *updates done*: a StepEvent's ``step`` is stdout's 1-based number,
a ValEvent's ``step`` is how many steps had run when it was evaluated.
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ErrorEvent",
    "Event",
    "HellaSwagEvent",
    "LogParser",
    "MeanStepTimeEvent",
    "RunLog",
    "SimElapsedEvent",
    "StepEvent",
    "ValEvent",
]


@dataclass(slots=True)
class StepEvent:
    """One optimizer step: ``step`` 1-based, ``loss`` nats (may be nan/inf), ``lr`` the LR used,
    ``ms`` the step's milliseconds (no eval time), ``mfu`` percent, ``tokens_per_second``.
    Fields the line does not carry (main.log has no MFU) are None."""

    step: int
    loss: float
    total_steps: int | None = None
    norm: float | None = None
    lr: float | None = None
    ms: float | None = None
    mfu: float | None = None
    tokens_per_second: float | None = None


@dataclass(slots=True)
class ValEvent:
    """Val loss (nats) after ``step`` updates (0: before training)."""

    step: int
    loss: float


@dataclass(slots=True)
class HellaSwagEvent:
    """HellaSwag accuracy (fraction correct) after ``step`` updates; main.log gives no counts."""

    step: int
    accuracy: float
    correct: int | None = None
    total: int | None = None


@dataclass(slots=True)
class MeanStepTimeEvent:
    """``total average iteration time``: mean ms per step, printed at the end of a run."""

    ms: float


@dataclass(slots=True)
class SimElapsedEvent:
    """costbo-sim's cumulative simulated seconds since launch."""

    seconds: float


@dataclass(slots=True)
class ErrorEvent:
    """An error message the trainer printed (one line, or two joined for CUDA/cuDNN errors)."""

    message: str


Event = StepEvent | ValEvent | HellaSwagEvent | MeanStepTimeEvent | SimElapsedEvent | ErrorEvent

# Events are plain slotted dataclasses, not frozen ones: a frozen dataclass's __init__ costs ~5x
# more, and step events are built a million times in benchmarks/parse_speed.py.

# llm.c's step line exactly, matched first because it is the line a run prints most.
_STEP_EXACT = re.compile(
    r"step +(\d+)/(-?\d+) \| loss +(\S+) \([^)]*\)\| norm +(\S+) \([^)]*\)\| lr (\S+) \| "
    r"(\S+) ms \| (\S+)% bf16 MFU \| (\S+) tok/s"
)
# The step line, field by field, for anything else; every field after the loss is optional so
# that forks that drop MFU or the z-scores still parse. Numbers are matched loosely (\S) and
# converted with float(), which takes nan, -nan, +nan, inf and -inf.
_STEP = re.compile(
    r"step\s+(\d+)/(-?\d+)\s*\|\s*loss\s+(\S+?)\s*(?:\([^)|]*\))?\s*(?:\||$)"
    r"(?:\s*norm\s+(\S+?)\s*(?:\([^)|]*\))?\s*(?:\||$))?"
    r"(?:\s*lr\s+(\S+)\s*(?:\||$))?"
    r"(?:\s*(\S+)\s*ms\s*(?:\||$))?"
    r"(?:\s*(\S+)%\s*bf16\s+MFU\s*(?:\||$))?"
    r"(?:\s*(\S+)\s+tok/s)?"
)
_HELLASWAG = re.compile(r"HellaSwag:\s*(\d+)\s*/\s*(\d+)\s*=\s*(\S+)")
_ERROR_MARKS = ("[CUDA ERROR]", "[CUDNN ERROR]")
_ERROR_STARTS = ("Error", "ERROR")
_PARSE_ERRORS = (ValueError, IndexError, OverflowError)
_MAX_PARTIAL_CHARS = 1 << 20
_KEEP_PARTIAL_CHARS = 1 << 16


def _opt_float(text: str | None) -> float | None:
    return None if text is None else float(text)


class LogParser:
    """Turns chunks of trainer output into events.

    ``source="stdout"`` reads what train_gpt2cu prints (stdout or stderr: errors are recognized
    in both); ``source="main.log"`` reads its ``-o`` dir's main.log. Call ``feed(chunk)`` as data
    arrives and ``close()`` at the end to parse a last line that has no newline. ``lines``
    counts the lines read so far.
    """

    def __init__(self, source: Literal["stdout", "main.log"] = "stdout") -> None:
        if source not in ("stdout", "main.log"):
            raise ValueError(f"log source {source!r} is unknown: use 'stdout' or 'main.log'")
        self.source = source
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._steps_done = 0  # stdout's val and HellaSwag lines carry no step: the last step line
        self._generation = 0  # 0: normal; 1: saw "generating:"; 2: inside the generated text
        self._pending_error: str | None = None
        self.lines = 0

    def feed(self, chunk: bytes | str) -> list[Event]:
        """Events from the lines that ``chunk`` completes (bytes are decoded as UTF-8)."""
        if isinstance(chunk, bytes | bytearray | memoryview):
            chunk = self._decoder.decode(bytes(chunk))
        if not chunk:
            return []
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_PARTIAL_CHARS:
            # A line without end (HellaSwag's \r progress runs to ~300 KB): keep its tail, where
            # the part after the last \r is.
            self._partial = self._partial[-_KEEP_PARTIAL_CHARS:]
        return self._parse_lines(lines)

    def close(self) -> list[Event]:
        """Events from a final unterminated line, and any error still waiting for its detail."""
        tail = self._decoder.decode(b"", final=True)
        rest = self._partial + tail
        self._partial = ""
        events = self._parse_lines([rest]) if rest else []
        if self._pending_error is not None:
            events.append(ErrorEvent(self._pending_error))
            self._pending_error = None
        return events

    def _parse_lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        parse = self._parse_main_log if self.source == "main.log" else self._parse_stdout
        self.lines += len(lines)
        for line in lines:
            pending = self._pending_error
            try:
                event = parse(line)
            except _PARSE_ERRORS:
                event = None  # a garbled or cut line: ignore it like any unknown line
            if pending is not None:
                events.append(self._take_pending_error(pending, line, event))
            if event is not None:
                events.append(event)
        return events

    def _take_pending_error(self, message: str, line: str, event: Event | None) -> ErrorEvent:
        # "[CUDA ERROR] at file x.cu:12:" is followed by the error string on its own line.
        if self._pending_error is message:
            self._pending_error = None
        detail = line.rsplit("\r", 1)[-1].strip()
        if event is None and detail:
            message = f"{message} {detail}"
        return ErrorEvent(message)

    def _parse_stdout(self, line: str) -> Event | None:
        if self._generation:
            return self._skip_generation(line)
        if line.startswith("step"):
            match = _STEP_EXACT.match(line)
            if match is not None:
                step, total, loss, norm, lr, ms, mfu, tps = match.groups()
                event = StepEvent(
                    int(step),
                    float(loss),
                    int(total),
                    float(norm),
                    float(lr),
                    float(ms),
                    float(mfu),
                    float(tps),
                )
            else:
                match = _STEP.match(line)
                if match is None:
                    return None
                step, total, loss, norm, lr, ms, mfu, tps = match.groups()
                event = StepEvent(
                    int(step),
                    float(loss),
                    int(total),
                    _opt_float(norm),
                    _opt_float(lr),
                    _opt_float(ms),
                    _opt_float(mfu),
                    _opt_float(tps),
                )
            self._steps_done = event.step
            return event
        if "\r" in line:
            # HellaSwag progress ends in \r, not \n: the result line arrives behind it.
            line = line.rstrip("\r").rsplit("\r", 1)[-1]
        if line.startswith("val loss"):
            return ValEvent(self._steps_done, float(line[8:]))
        if line.startswith("HellaSwag:"):
            match = _HELLASWAG.match(line)
            if match is None:
                return None
            correct, total, accuracy = match.groups()
            return HellaSwagEvent(self._steps_done, float(accuracy), int(correct), int(total))
        if line.startswith("sim elapsed:"):
            return SimElapsedEvent(float(line[12:].split()[0]))
        if line.startswith("total average iteration time:"):
            return MeanStepTimeEvent(float(line[29:].split()[0]))
        if line.startswith("generating:"):
            self._generation = 1
            return None
        return self._error(line)

    def _skip_generation(self, line: str) -> Event | None:
        if self._generation == 1:  # the line after "generating:" should open the block
            if line.strip() == "---":
                self._generation = 2
                return None
            self._generation = 0
            return self._parse_stdout(line)
        if line.strip() == "---":
            self._generation = 0
        return None

    def _error(self, line: str) -> Event | None:
        text = line.strip()
        if (
            text.startswith(_ERROR_STARTS)
            or any(mark in text for mark in _ERROR_MARKS)
            or ("Assertion `" in text and text.endswith("failed."))  # glibc assert, then SIGABRT
        ):
            if text.endswith(":") and any(mark in text for mark in _ERROR_MARKS):
                self._pending_error = text
                return None
            return ErrorEvent(text)
        return None

    def _parse_main_log(self, line: str) -> Event | None:
        if not line.startswith("s:"):
            return self._error(line)
        fields = line.split()
        step = int(fields[0][2:])
        kind, _, value = fields[1].partition(":")
        if kind == "trl":
            extras = dict(f.partition(":")[::2] for f in fields[2:])
            ms = extras.get("(ms)")
            return StepEvent(
                step + 1,
                float(value),
                None,
                _opt_float(extras.get("norm")),
                _opt_float(extras.get("lr")),
                _opt_float(ms),
            )
        if kind == "tel":
            return ValEvent(step, float(value))
        if kind == "eval":
            return HellaSwagEvent(step, float(value))
        return None


@dataclass
class RunLog:
    """Everything a run's logs said so far, keyed by updates done (1-based for train steps).

    ``train_losses`` and ``step_ms`` by step; ``val_losses`` by updates done (0 = before
    training); ``hellaswag`` the last accuracy (fraction); ``mean_step_ms`` llm.c's final average
    iteration time; ``sim_seconds`` costbo-sim's last cumulative simulated seconds; ``errors`` the
    error messages in order; ``last_step`` the highest step with a train loss (0 before the
    first). A resumed run's repeated lines overwrite the same keys.
    """

    train_losses: dict[int, float] = field(default_factory=dict)
    val_losses: dict[int, float] = field(default_factory=dict)
    step_ms: dict[int, float] = field(default_factory=dict)
    hellaswag: float | None = None
    mean_step_ms: float | None = None
    sim_seconds: float | None = None
    total_steps: int | None = None
    last_step: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, event: Event) -> None:
        """Record one event."""
        if type(event) is StepEvent:
            self.train_losses[event.step] = event.loss
            if event.step > self.last_step:
                self.last_step = event.step
            if event.ms is not None:
                self.step_ms[event.step] = event.ms
            if event.total_steps is not None:
                self.total_steps = event.total_steps
        elif isinstance(event, ValEvent):
            self.val_losses[event.step] = event.loss
        elif isinstance(event, HellaSwagEvent):
            self.hellaswag = event.accuracy
        elif isinstance(event, SimElapsedEvent):
            self.sim_seconds = event.seconds
        elif isinstance(event, MeanStepTimeEvent):
            self.mean_step_ms = event.ms
        elif isinstance(event, ErrorEvent):
            self.errors.append(event.message)

    def extend(self, events: list[Event]) -> None:
        """Record events in order."""
        for event in events:
            self.add(event)

    @property
    def last_val_loss(self) -> float | None:
        """The val loss at the most updates (the run's answer once it finished), or None."""
        if not self.val_losses:
            return None
        return self.val_losses[max(self.val_losses)]

    @property
    def first_loss(self) -> float | None:
        """The train loss of the first step (for a fresh model about ln(50257) ~ 10.8 nats)."""
        if not self.train_losses:
            return None
        return self.train_losses[min(self.train_losses)]

    @property
    def has_nonfinite_loss(self) -> bool:
        """Whether any train or val loss was nan or inf."""
        return not all(map(math.isfinite, self.train_losses.values())) or not all(
            map(math.isfinite, self.val_losses.values())
        )
