"""The train_gpt2cu command line for one trial: settings, flag values, checks before launch.

llm.c parses every value with atoi/atof and validates almost nothing (see
shared/llmc-interface.md): a bad shape, a batch that does not divide, or an odd flag crashes the
run after it has cost money, or silently trains something else. So every value is checked here,
before launch, and each error names the bad value and the fix.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from costbo.gpt2 import MAX_SEQ_LEN, TOKENS_PER_STEP, shape_problem

SCHEDULES = ("cosine", "linear", "constant", "wsd")
MAX_OUTPUT_DIR_CHARS = 399  # llm.c asserts strlen(output_log_dir) < 400
_FLAG = re.compile(r"-[A-Za-z0-9]{1,2}")

# Flags that costbo sets itself, and where their value comes from: extra_args may not repeat
# them (llm.c takes the last occurrence, so a repeat would silently change the run).
_OWNED_FLAGS = {
    "-l": "the trial's lr",
    "-x": "the trial's steps",
    "-u": "TrainerSettings.warmup",
    "-1d": "the trial's depth",
    "-1c": "the trial's width",
    "-1h": "the trial's heads",
    "-o": "the run dir",
    "-n": "TrainerSettings.checkpoint_every",
    "-s": "TrainerSettings.sample_every",
    "-v": "TrainerSettings.val_every",
    "-h": "TrainerSettings.hellaswag",
    "-b": "TrainerSettings.micro_batch",
    "-d": "TrainerSettings.total_batch",
    "-t": "TrainerSettings.seq_len",
    "-k": "TrainerSettings.schedule",
    "-q": "TrainerSettings.final_lr_fraction",
    "-c": "TrainerSettings.weight_decay",
    "-m": "TrainerSettings.val_batches",
    "-id": "TrainerSettings.train_data",
    "-iv": "TrainerSettings.val_data",
}


class TrialLike(Protocol):
    """What a command needs from a trial (costbo.trial.Trial has it)."""

    lr: float
    steps: int
    depth: int
    width: int
    heads: int


@dataclass(frozen=True)
class TrainerSettings:
    """How to run train_gpt2cu (or a stand-in speaking its interface) for tuning trials.

    ``binary``: the trainer; a relative path is taken relative to ``llmc_dir``, a bare name is
    looked up in ``llmc_dir`` and then on PATH (e.g. ``costbo-sim``). ``llmc_dir``: the working
    directory of every run; the data globs are relative to it. ``warmup``: a float in [0, 1) is a
    fraction of the trial's steps (rounded down), an int is a fixed number of steps.
    ``val_every``: steps between val evals; None means the run's step count, so val loss comes
    only at step 0 and at the end. ``simulated``: the binary is costbo-sim, which reports
    simulated seconds (``sim elapsed: %.3f s``) that the runner accounts instead of wall time.
    ``use_stdbuf``: prefix ``stdbuf -oL`` (when installed) so that piped stdout arrives per line.
    """

    binary: str | os.PathLike = "train_gpt2cu"
    llmc_dir: str | os.PathLike = "."
    train_data: str = "data/fineweb_train_*.bin"
    val_data: str = "data/fineweb_val_*.bin"
    micro_batch: int = 32
    total_batch: int = TOKENS_PER_STEP
    seq_len: int = MAX_SEQ_LEN
    warmup: float | int = 0.1
    schedule: str = "cosine"
    final_lr_fraction: float = 0.0
    weight_decay: float = 0.1
    val_every: int | None = None
    val_batches: int = 20
    hellaswag: bool = False
    checkpoint_every: int = 0
    sample_every: int = 0
    extra_args: Sequence[str] = field(default_factory=tuple)
    simulated: bool = False
    use_stdbuf: bool = True

    def warmup_steps(self, steps: int) -> int:
        """Warmup iterations (``-u``) for a run of ``steps`` steps."""
        warmup = self.warmup
        if isinstance(warmup, bool):
            raise ValueError(f"warmup {warmup!r} is not a number: give a fraction or a step count")
        if isinstance(warmup, int):
            return warmup
        if not isinstance(warmup, float) or not 0.0 <= warmup < 1.0:
            raise ValueError(
                f"warmup {warmup!r}: a float is a fraction of the steps and must be in [0, 1); "
                "give an int for a fixed number of warmup steps"
            )
        return int(warmup * steps)


def resolve_binary(settings: TrainerSettings) -> str:
    """The trainer's path as the child will exec it (absolute), or a ValueError saying how to fix.

    A bare name is looked up in ``llmc_dir`` first (where ``make train_gpt2cu`` puts it), then on
    PATH; a relative path with a directory part is relative to ``llmc_dir``.
    """
    llmc_dir = Path(settings.llmc_dir).expanduser()
    binary = Path(settings.binary).expanduser()
    name = os.fspath(settings.binary)
    if binary.is_absolute() or os.sep in name:
        candidate = binary if binary.is_absolute() else llmc_dir / binary
    else:
        local = llmc_dir / binary
        candidate = local if local.is_file() else Path(shutil.which(name) or local)
    if not candidate.is_file():
        raise ValueError(
            f"trainer binary {name!r} not found (looked for {candidate}): build it in the llm.c "
            f"dir with `make train_gpt2cu GPU_COMPUTE_CAPABILITY=86`, or set binary to its path"
        )
    if not os.access(candidate, os.X_OK):
        raise ValueError(f"trainer binary {candidate} is not executable: chmod +x it")
    return os.path.abspath(candidate)


def format_float(value: float, name: str) -> str:
    """A float as atof reads it back exactly: Python's shortest round-trip repr ('0.0006')."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not finite: llm.c needs a finite number")
    # repr never uses hex, underscores or a locale's comma, so C's atof parses it to the same
    # double; "-0.0" is the only oddity and atof reads it fine.
    return repr(value)


def format_int(value: int, name: str) -> str:
    """An int as a plain decimal: atoi reads '1e3' as 1 and '2.0' as 2, so never those forms."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} is not an integer: give a whole number")
    return str(value)


def build_argv(
    trial: TrialLike,
    settings: TrainerSettings,
    run_dir: str | os.PathLike,
    overrides: Mapping[str, object] | None = None,
) -> list[str]:
    """The full argv (binary first, no shell) for one trial, checked before launch.

    ``run_dir`` becomes ``-o`` as an absolute path (the run's cwd is ``llmc_dir``). ``overrides``
    maps llm.c flags to values that replace what the trial and settings give (e.g.
    ``{"-h": 1, "-n": 1000, "-y": 1}`` for a final run); flags not otherwise set are appended.
    Raises ValueError naming the bad value and its fix.
    """
    steps = trial.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps {steps!r} must be a positive integer (llm.c's -x)")
    lr = trial.lr
    if (
        isinstance(lr, bool)
        or not isinstance(lr, int | float)
        or not (lr > 0 and math.isfinite(lr))
    ):
        raise ValueError(f"lr {lr!r} must be a finite number > 0 (llm.c's -l)")
    val_every = steps if settings.val_every is None else settings.val_every
    values: dict[str, object] = {
        "-l": float(lr),
        "-x": steps,
        "-u": settings.warmup_steps(steps),
        "-1d": trial.depth,
        "-1c": trial.width,
        "-1h": trial.heads,
        "-o": os.path.abspath(os.fspath(run_dir)),
        "-n": settings.checkpoint_every,
        "-s": settings.sample_every,
        "-v": val_every,
        "-h": int(bool(settings.hellaswag)),
        "-b": settings.micro_batch,
        "-d": settings.total_batch,
        "-t": settings.seq_len,
        "-k": settings.schedule,
        "-q": settings.final_lr_fraction,
        "-c": settings.weight_decay,
        "-m": settings.val_batches,
        "-id": settings.train_data,
        "-iv": settings.val_data,
    }
    extra = extra_arg_pairs(settings.extra_args)
    for flag, value in (overrides or {}).items():
        if not isinstance(flag, str) or not _FLAG.fullmatch(flag):
            raise ValueError(
                f"override flag {flag!r} is not an llm.c flag: flags are '-' and 1-2 characters"
            )
        values[flag] = value
    _check(values)
    llmc_dir = Path(settings.llmc_dir).expanduser()
    if not llmc_dir.is_dir():
        raise ValueError(
            f"llmc_dir {os.fspath(settings.llmc_dir)!r} is not a directory: it is the working "
            "directory of every run (where data/ is); create it or fix the path"
        )
    argv = [resolve_binary(settings)]
    for flag, value in values.items():
        argv += [flag, _format_value(flag, value)]
    for flag, value in extra:
        argv += [flag, value]
    return argv


_FLOAT_FLAGS = {"-l", "-q", "-c"}
_INT_FLAGS = {"-x", "-u", "-1d", "-1c", "-1h", "-n", "-s", "-v", "-h", "-b", "-d", "-t", "-m"}
_INT_FLAGS |= {"-y", "-es"}
_DECIMAL = re.compile(r"-?[0-9]+")


def _format_value(flag: str, value: object) -> str:
    if flag in _FLOAT_FLAGS:
        return format_float(value, flag)  # type: ignore[arg-type]
    if flag in _INT_FLAGS:
        if isinstance(value, str):
            if not _DECIMAL.fullmatch(value):
                raise ValueError(
                    f"{flag} {value!r} is not a plain decimal integer: llm.c's atoi would misread "
                    "it; give a whole number such as 1000"
                )
            return value
        return format_int(value, flag)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return format_float(value, flag)
    return str(value)


def extra_arg_pairs(extra_args: Sequence[str]) -> list[tuple[str, str]]:
    """``extra_args`` as (flag, value) pairs, or a ValueError naming the bad item and the fix:
    an odd count, something that is not an llm.c flag, or a flag costbo sets itself."""
    if isinstance(extra_args, str):
        raise ValueError(
            f"extra_args {extra_args!r} is one string: give a list of flag/value strings, "
            "e.g. ['-ih', 'data/hellaswag_val.bin']"
        )
    args = [str(a) for a in extra_args]
    if len(args) % 2:
        raise ValueError(
            f"extra_args {args} has an odd number of items: llm.c takes flag/value pairs, "
            "e.g. ['-ih', 'data/hellaswag_val.bin']"
        )
    pairs = list(zip(args[::2], args[1::2], strict=True))
    for flag, value in pairs:
        if not _FLAG.fullmatch(flag):
            raise ValueError(
                f"extra_args flag {flag!r} (before value {value!r}) is not an llm.c flag: flags "
                "are '-' and 1-2 characters, each followed by its value"
            )
        if flag in _OWNED_FLAGS:
            raise ValueError(
                f"extra_args sets {flag} {value!r}, which costbo sets from "
                f"{_OWNED_FLAGS[flag]}: change that instead"
            )
    return pairs


def _check(values: Mapping[str, object]) -> None:
    """Everything llm.c would crash on, or silently misread, for these flag values."""
    for flag, value in values.items():
        _format_value(flag, value)  # raises for a value atoi/atof would misread

    problem = shape_problem(values["-1d"], values["-1c"], values["-1h"])  # type: ignore[arg-type]
    if problem:
        raise ValueError(problem)

    steps, warmup = int(values["-x"]), int(values["-u"])  # type: ignore[call-overload]
    if warmup < 0:
        raise ValueError(f"warmup {warmup} (-u) is negative: use 0 or more warmup steps")
    if warmup >= steps:
        raise ValueError(
            f"warmup {warmup} (-u) is not below the run's {steps} steps (-x): lower the warmup "
            "or raise the steps rung"
        )
    micro_batch, seq_len = int(values["-b"]), int(values["-t"])  # type: ignore[call-overload]
    total_batch = int(values["-d"])  # type: ignore[call-overload]
    if micro_batch < 1:
        raise ValueError(f"micro batch {micro_batch} (-b) must be at least 1")
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise ValueError(
            f"sequence length {seq_len} (-t) must be in 1..{MAX_SEQ_LEN} (llm.c's position table)"
        )
    if total_batch < 1 or total_batch % (micro_batch * seq_len):
        raise ValueError(
            f"total batch {total_batch} tokens (-d) is not a positive multiple of micro batch "
            f"{micro_batch} x seq len {seq_len} = {micro_batch * seq_len}: pick -b and -t whose "
            f"product divides it (e.g. -b 32 -t 1024 for -d {TOKENS_PER_STEP})"
        )
    schedule = values["-k"]
    if schedule not in SCHEDULES:
        raise ValueError(
            f"schedule {schedule!r} (-k) is not one llm.c knows: use one of {', '.join(SCHEDULES)}"
        )
    val_every = int(values["-v"])  # type: ignore[call-overload]
    if val_every < 1:
        raise ValueError(
            f"val_every {val_every} (-v) must be at least 1: llm.c divides by it (-v 0 crashes); "
            "use None for val loss only at the start and the end"
        )
    if int(values["-m"]) < 1:  # type: ignore[call-overload]
        raise ValueError(f"val batches {values['-m']} (-m) must be at least 1")
    for flag, name in (("-n", "checkpoint_every"), ("-s", "sample_every")):
        if int(values[flag]) < 0:  # type: ignore[call-overload]
            raise ValueError(f"{name} {values[flag]} ({flag}) is negative: use 0 to turn it off")
    if "-es" in values:
        stop_after = int(values["-es"])  # type: ignore[call-overload]
        if stop_after > steps:
            raise ValueError(
                f"stop after {stop_after} steps (-es) is beyond the run's {steps} steps (-x): "
                "llm.c asserts -es <= -x; lower -es"
            )
    output_dir = str(values["-o"])
    if len(output_dir) > MAX_OUTPUT_DIR_CHARS:
        raise ValueError(
            f"output dir {output_dir[:60]}... is {len(output_dir)} characters; llm.c asserts "
            f"fewer than {MAX_OUTPUT_DIR_CHARS + 1}: use a shorter runs directory"
        )
    for flag in ("-id", "-iv", "-o"):
        if not str(values[flag]):
            raise ValueError(f"{flag} is empty: give a path")


_extra_pairs = extra_arg_pairs  # the name costbo/config.py imports; prefer extra_arg_pairs
