"""The costbo config file (TOML): what to tune, with which trainer, on which budget.

One file drives every subcommand (``costbo probe/optimize/status/recommend/final/pull``). Every
key is checked when it is loaded, and an error names the file, the key, the bad value and what is
expected, so that a typo fails before a run costs money. Relative paths in ``[study]``,
``[probe]`` and ``[llmc] dir`` are relative to the config file's folder; the data globs are
relative to the llm.c dir (the runs' working directory), as llm.c reads them.

``costbo init`` writes ``DEFAULT_CONFIG_TEXT``: the homework's defaults, with a comment per key.
"""

from __future__ import annotations

import difflib
import math
import os
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costbo.gpt2 import MAX_SEQ_LEN, ModelShape
from costbo.llmc.command import SCHEDULES, TrainerSettings
from costbo.llmc.runner import DivergenceRule
from costbo.space import SearchSpace

# costbo.acquisition.ACQUISITIONS' names, the first the Study's default (a test keeps them in
# step); named here so that reading a config does not import torch
ACQUISITION_NAMES = ("regret_per_dollar", "kg_per_dollar", "ei_per_dollar")
DEFAULT_ACQUISITION = ACQUISITION_NAMES[0]

DEFAULT_CONFIG_NAME = "costbo.toml"
# Console scripts of this package that a config may name as its binary; they are found next to
# the running interpreter even when its bin folder is not on PATH (e.g. an unactivated venv).
BUNDLED_TRAINERS = ("costbo-sim", "costbo-twin")

DEFAULT_CONFIG_TEXT = """\
# costbo configuration: tune the max learning rate of llm.c's GPT-2 run on a dollar budget.
# Reference: docs/cli.md. Relative paths in [study], [probe] and [llmc] dir are relative to this
# file's folder; the data globs are relative to the llm.c dir (where every run starts).

[study]
journal = "runs/study.jsonl"   # append-only record of every run: resume, status, plots
runs_dir = "runs"              # one folder per run: stdout.log, stderr.log, main.log, trial.json
budget = 20.0                  # dollars the tuning runs may cost in total (the final run is extra)
price_per_hour = 1.50          # dollars per hour: g5.xlarge (A10G) list $1.1066, rounded up
seed = 0                       # makes the proposals and the recommendation reproducible
acquisition = "regret_per_dollar"  # or "kg_per_dollar", "ei_per_dollar" (benchmarks/README.md)
cost_quantile = 0.9            # the budget guard reserves this quantile of each run's cost
reserve = 0.0                  # dollars of the budget never spent on tuning runs
n_initial = 3                  # cheap runs spread over LR before the model takes over

[space]
lr = [1e-5, 1e-1]                              # max LR bounds (-l), searched in log space
steps = [50, 100, 200, 500, 1000, 2000, 4725]  # step rungs (-x); the last is the full run
widths = [64, 128, 192, 256, 384, 512, 768]    # width rungs (-1c); the last is the full model,
                                               # depth = heads = width // 64 (GPT-2 124M at 768)
# models = [[1, 64, 1], [2, 128, 2], [12, 768, 12]]  # explicit (depth, channels, heads) rungs
#                                                     # instead of widths

[llmc]
dir = "llm.c"                          # the course fork's HW5_Code checkout (see llm.c/README.md)
binary = "train_gpt2cu"                # built there with `make train_gpt2cu ...`; or a path
train_data = "data/fineweb_train_*.bin"  # -id, relative to dir
val_data = "data/fineweb_val_*.bin"      # -iv, relative to dir
micro_batch = 32                       # -b (the homework's value; A10G memory)
total_batch = 524288                   # -d tokens per step, fixed for every run
seq_len = 1024                         # -t
warmup = 0.1                           # -u: a fraction of each run's steps, or an int of steps
schedule = "cosine"                    # -k: cosine, linear, constant or wsd
final_lr_fraction = 0.0                # -q
weight_decay = 0.1                     # -c
# val_every = 250                      # -v; default: val loss only at the start and the end
val_batches = 20                       # -m
hellaswag = false                      # -h for tuning runs (the final run turns it on)
extra_args = []                        # more flag/value pairs, e.g. ["-ih", "data/h.bin"]
simulated = false                      # true when binary is costbo-sim (simulated seconds)
use_stdbuf = true                      # run under `stdbuf -oL` so that lines arrive as printed

[runner]
cost_margin = 2.0             # kill a run that costs more than its prediction x this margin
silence_timeout = 600.0       # seconds without output before a run counts as hung
kill_grace = 5.0              # seconds between SIGTERM and SIGKILL
max_consecutive_failures = 3  # stop the loop after this many failed runs in a row
diverge_above_first = 1.0     # nats above the first step's loss (after warmup): diverged
diverge_above_best = 2.5      # nats above the best loss so far ...
diverge_patience = 10         # ... for this many steps in a row: diverged

[probe]
steps = 20                       # the course's method: run 20 steps, worst of steps 10-19
lr = 6e-4                        # LR of the probe runs (the step time does not depend on it)
cost_table = "runs/cost_table.csv"  # measured step times and predicted dollars per rung

[final]
micro_batch = 32          # -b of the full-scale run
hellaswag = true          # -h 1
val_every = 250           # -v
checkpoint_every = 1000   # -n: an interrupted final run resumes from here (-y 1)

# Optional: copy every run to S3 in the course's layout,
# s3://<bucket>/experiments/<cluster>/<run dir>/. Credentials come from boto3's standard
# chain (environment, ~/.aws, instance role); never put them in this file.
# [s3]
# bucket = "my-costbo-bucket"
# cluster = "g5-a10g"
# region = "us-east-1"
# profile = "default"
# endpoint_url = "https://s3.us-east-1.amazonaws.com"
"""


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, key, value and the fix."""


@dataclass(frozen=True)
class StudySettings:
    """``[study]``: the journal, the run folders and the money (dollars, dollars per hour)."""

    journal: Path
    runs_dir: Path
    budget: float
    price_per_hour: float
    seed: int = 0
    acquisition: str = DEFAULT_ACQUISITION
    cost_quantile: float = 0.9
    reserve: float = 0.0
    n_initial: int = 3


@dataclass(frozen=True)
class RunnerSettings:
    """``[runner]``: when a run is killed. ``cost_margin`` multiplies its predicted seconds;
    ``silence_timeout`` and ``kill_grace`` are seconds."""

    cost_margin: float = 2.0
    silence_timeout: float | None = 600.0
    kill_grace: float = 5.0
    max_consecutive_failures: int = 3
    divergence: DivergenceRule = DivergenceRule()


@dataclass(frozen=True)
class ProbeSettings:
    """``[probe]``: steps per probe run, its LR, and where the cost table CSV goes."""

    steps: int = 20
    lr: float = 6e-4
    cost_table: Path = Path("runs/cost_table.csv")


@dataclass(frozen=True)
class FinalSettings:
    """``[final]``: the course's settings for the full-scale run."""

    micro_batch: int = 32
    hellaswag: bool = True
    val_every: int = 250
    checkpoint_every: int = 1000


@dataclass(frozen=True)
class S3Settings:
    """``[s3]``: where runs are copied. Keys: ``experiments/<cluster>/<run dir>/<file>``."""

    bucket: str
    cluster: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    @property
    def prefix(self) -> str:
        return f"experiments/{self.cluster}/"


@dataclass(frozen=True)
class Config:
    """A loaded, validated config file."""

    path: Path
    study: StudySettings
    space: SearchSpace
    trainer: TrainerSettings
    runner: RunnerSettings
    probe: ProbeSettings
    final: FinalSettings
    s3: S3Settings | None = None

    def open_study(self, *, create: bool = True):
        """The Study this config describes: resumed from its journal, or created.

        A journal that exists is resumed as it was written (``Study.load``), so that a newer
        costbo with other engine defaults still resumes it; the config's own settings must
        match the journal's (a different budget is applied: it may be raised or lowered). With
        ``create=False`` a missing journal is an error (for status/recommend/final).
        """
        from costbo.study import Study

        journal = self.study.journal
        if journal.exists() and journal.stat().st_size > 0:
            study = Study.load(journal)
            try:
                self._check_resumable(study)
                if study.budget != self.study.budget:
                    study.set_budget(self.study.budget)
            except BaseException:
                study.close()
                raise
            return study
        if not create:
            raise ConfigError(
                f"{self.path}: no study yet at [study] journal = {str(journal)!r}: run "
                f"`costbo probe --config {self.path}` or `costbo optimize --config {self.path}` "
                "first (or `costbo pull` it from S3)"
            )
        return Study(
            self.space,
            budget=self.study.budget,
            price_per_hour=self.study.price_per_hour,
            journal=journal,
            seed=self.study.seed,
            acquisition=self.study.acquisition,
            reserve=self.study.reserve,
            cost_quantile=self.study.cost_quantile,
            tokens_per_step=self.trainer.total_batch,
            seq_len=self.trainer.seq_len,
            n_initial=self.study.n_initial,
        )

    def _check_resumable(self, study) -> None:
        """The journal's settings against this file's, each named by its config key."""
        s = self.study
        pairs = [
            ("[space]", study.space.to_dict(), self.space.to_dict()),
            ("[study] price_per_hour", study.price_per_hour, s.price_per_hour),
            ("[study] seed", study.seed, s.seed),
            ("[study] acquisition", study.acquisition, s.acquisition),
            ("[study] reserve", study.reserve, s.reserve),
            ("[study] cost_quantile", study.cost_quantile, s.cost_quantile),
            ("[study] n_initial", study.n_initial, s.n_initial),
            ("[llmc] total_batch", study.tokens_per_step, self.trainer.total_batch),
            ("[llmc] seq_len", study.seq_len, self.trainer.seq_len),
        ]
        for key, stored, mine in pairs:
            if key == "[space]":
                stored = {k: v for k, v in stored.items() if k != "form"}
                mine = {k: v for k, v in mine.items() if k != "form"}
            if stored != mine:
                shown = (
                    "the rungs or LR bounds differ"
                    if key == "[space]"
                    else (f"{stored!r} in the journal, {mine!r} here")
                )
                raise ConfigError(
                    f"{self.path}: {key} differs from the study in {s.journal} ({shown}): restore "
                    "the old value to resume it, or set [study] journal to a new file to start a "
                    "new study"
                )

    def load_study(self):
        """The study, read-only (works while `costbo optimize` holds the journal)."""
        from costbo.study import Study

        journal = self.study.journal
        if not journal.exists():
            raise ConfigError(
                f"{self.path}: no study yet at [study] journal = {str(journal)!r}: run "
                f"`costbo optimize --config {self.path}` first (or `costbo pull` it from S3)"
            )
        return Study.load(journal, read_only=True)


# --- validation ------------------------------------------------------------------------------
class _Section:
    """Reads one table of the file, checking each key; remembers which keys were used."""

    def __init__(self, path: Path, name: str, data: object) -> None:
        self.path, self.name = path, name
        if not isinstance(data, dict):
            self.fail(None, data, "a table, e.g. [" + name + "]")
        self.data = data
        self.used: set[str] = set()
        self._check_known(SECTION_KEYS[name])

    def fail(self, key: str | None, value: object, expected: str):
        where = f"[{self.name}] {key}" if key else f"[{self.name}]"
        shown = _show(value)
        raise ConfigError(f"{self.path}: {where} = {shown} is invalid: expected {expected}")

    def get(self, key: str, check: Callable[[object], object], expected: str, default=None):
        self.used.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(
                    f"{self.path}: [{self.name}] {key} is missing: expected {expected}"
                )
            return default
        value = self.data[key]
        try:
            return check(value)
        except (TypeError, ValueError) as err:
            detail = f" ({err})" if str(err) else ""
            self.fail(key, value, expected + detail)

    def finish(self) -> None:
        unused = set(SECTION_KEYS[self.name]) - self.used
        assert not unused, f"SECTION_KEYS[{self.name!r}] lists keys nobody reads: {unused}"

    def _check_known(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(allowed)
                )
                raise ConfigError(f"{self.path}: [{self.name}] {key} is not a known key: {hint}")


_REQUIRED = object()
SECTION_KEYS = {
    "study": ("journal", "runs_dir", "budget", "price_per_hour", "seed", "acquisition",
              "cost_quantile", "reserve", "n_initial"),
    "space": ("lr", "steps", "widths", "models"),
    "llmc": ("dir", "binary", "train_data", "val_data", "micro_batch", "total_batch", "seq_len",
             "warmup", "schedule", "final_lr_fraction", "weight_decay", "val_every",
             "val_batches", "hellaswag", "extra_args", "simulated", "use_stdbuf"),
    "runner": ("cost_margin", "silence_timeout", "kill_grace", "max_consecutive_failures",
               "diverge_above_first", "diverge_above_best", "diverge_patience"),
    "probe": ("steps", "lr", "cost_table"),
    "final": ("micro_batch", "hellaswag", "val_every", "checkpoint_every"),
    "s3": ("bucket", "cluster", "endpoint_url", "region", "profile"),
}  # fmt: skip


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    return float(value)


def _positive(value: object) -> float:
    value = _number(value)
    if value <= 0:
        raise ValueError
    return value


def _nonnegative(value: object) -> float:
    value = _number(value)
    if value < 0:
        raise ValueError
    return value


def _int(minimum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError
        return value

    return check


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value


def _choice(options) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in options:
            raise ValueError
        return value

    return check


def _fraction_or_steps(value: object) -> float | int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and 0.0 <= value < 1.0:
        return value
    raise ValueError


def _string_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError
    return tuple(value)


def _int_list(value: object) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError
    return value


def _lr_bounds(value: object) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError
    low, high = (_positive(v) for v in value)
    if low >= high:
        raise ValueError
    return (low, high)


def _shape(value: object) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError
    ModelShape(*value)  # llm.c's shape rules: a ValueError here is reported below
    return tuple(value)


def _shape_list(value: object) -> list[tuple[int, int, int]]:
    if not isinstance(value, list) or not value:
        raise ValueError
    return [_shape(v) for v in value]


def _path(base: Path) -> Callable[[object], Path]:
    def check(value: object) -> Path:
        path = Path(os.path.expanduser(_text(value)))
        return path if path.is_absolute() else base / path

    return check


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file; raises ConfigError naming file, key, value, fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist: write one with `costbo init {path}`"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory: give the .toml file") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a TOML config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{path}: not valid TOML ({err}); see `costbo init` for an example"
        ) from None
    return parse_config(data, path)


SECTIONS = ("study", "space", "llmc", "runner", "probe", "final", "s3")


def parse_config(data: dict, path: str | os.PathLike = DEFAULT_CONFIG_NAME) -> Config:
    """Validate a parsed TOML document (``path`` names it in errors and anchors relative paths)."""
    path = Path(path)
    base = path.resolve().parent
    for name, value in data.items():
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, SECTIONS, n=1)
            hint = f"did you mean [{close[0]}]?" if close else "sections: " + ", ".join(SECTIONS)
            where = f"[{name}]" if isinstance(value, dict) else f"key {name} (outside any table)"
            raise ConfigError(f"{path}: {where} is not a known section: {hint}")
    for name in ("study", "space", "llmc"):
        if name not in data:
            raise ConfigError(
                f"{path}: section [{name}] is missing; `costbo init` writes a complete example"
            )

    study = _parse_study(_Section(path, "study", data["study"]), base)
    trainer = _parse_trainer(_Section(path, "llmc", data["llmc"]), base)
    space = _parse_space(_Section(path, "space", data["space"]), trainer)
    runner = _parse_runner(_Section(path, "runner", data.get("runner", {})))
    probe = _parse_probe(_Section(path, "probe", data.get("probe", {})), base, study)
    final = _parse_final(_Section(path, "final", data.get("final", {})), trainer)
    if isinstance(data.get("s3"), dict):
        _refuse_credentials(path, data["s3"])
    s3 = _parse_s3(_Section(path, "s3", data["s3"])) if "s3" in data else None
    return Config(path, study, space, trainer, runner, probe, final, s3)


def _parse_study(sec: _Section, base: Path) -> StudySettings:
    runs_dir = sec.get("runs_dir", _path(base), 'a folder path, e.g. "runs"', base / "runs")
    journal = sec.get(
        "journal", _path(base), 'a file path, e.g. "runs/study.jsonl"', runs_dir / "study.jsonl"
    )
    budget = sec.get("budget", _positive, "dollars > 0, e.g. 20.0", _REQUIRED)
    price = sec.get("price_per_hour", _positive, "dollars per hour > 0, e.g. 1.50", _REQUIRED)
    seed = sec.get("seed", _int(0), "an integer >= 0", 0)
    acquisition = sec.get(
        "acquisition",
        _choice(ACQUISITION_NAMES),
        " or ".join(f'"{name}"' for name in ACQUISITION_NAMES),
        DEFAULT_ACQUISITION,
    )
    quantile = sec.get("cost_quantile", _number, "a number in [0.5, 1), e.g. 0.9", 0.9)
    if not 0.5 <= quantile < 1.0:
        sec.fail("cost_quantile", quantile, "a number in [0.5, 1), e.g. 0.9")
    reserve = sec.get("reserve", _nonnegative, "dollars >= 0", 0.0)
    if reserve >= budget:
        sec.fail("reserve", reserve, f"less than the budget ({budget:g} dollars)")
    n_initial = sec.get("n_initial", _int(0), "an integer >= 0, e.g. 3", 3)
    sec.finish()
    return StudySettings(
        journal, runs_dir, budget, price, seed, acquisition, quantile, reserve, n_initial
    )


def _parse_trainer(sec: _Section, base: Path) -> TrainerSettings:
    llmc_dir = sec.get("dir", _path(base), 'the llm.c folder, e.g. "llm.c"', base / "llm.c")
    binary = sec.get(
        "binary", _text, 'the trainer\'s name or path, e.g. "train_gpt2cu"', "train_gpt2cu"
    )
    binary = _bundled_trainer(binary, llmc_dir)
    glob_hint = 'a shard glob relative to the llm.c dir, e.g. "data/fineweb_train_*.bin"'
    train_data = sec.get("train_data", _text, glob_hint, "data/fineweb_train_*.bin")
    val_data = sec.get("val_data", _text, glob_hint, "data/fineweb_val_*.bin")
    micro_batch = sec.get("micro_batch", _int(1), "an integer >= 1, e.g. 32", 32)
    total_batch = sec.get("total_batch", _int(1), "tokens per step, e.g. 524288", 524288)
    seq_len = sec.get("seq_len", _int(1), f"an integer in 1..{MAX_SEQ_LEN}", MAX_SEQ_LEN)
    if seq_len > MAX_SEQ_LEN:
        sec.fail("seq_len", seq_len, f"an integer in 1..{MAX_SEQ_LEN} (llm.c's position table)")
    if total_batch % (micro_batch * seq_len):
        sec.fail(
            "total_batch",
            total_batch,
            f"a multiple of micro_batch x seq_len = {micro_batch} x {seq_len} = "
            f"{micro_batch * seq_len} (llm.c asserts it)",
        )
    warmup = sec.get(
        "warmup",
        _fraction_or_steps,
        "a fraction of each run's steps in [0, 1), e.g. 0.1, or an integer number of steps >= 0",
        0.1,
    )
    schedule = sec.get("schedule", _choice(SCHEDULES), "one of " + ", ".join(SCHEDULES), "cosine")
    final_frac = sec.get("final_lr_fraction", _number, "a number in [0, 1], e.g. 0.0", 0.0)
    if not 0.0 <= final_frac <= 1.0:
        sec.fail("final_lr_fraction", final_frac, "a number in [0, 1], e.g. 0.0")
    weight_decay = sec.get("weight_decay", _nonnegative, "a number >= 0, e.g. 0.1", 0.1)
    val_every = sec.get(
        "val_every",
        _int(1),
        "an integer >= 1 (leave it out for val loss only at the start and the end of each run)",
        None,
    )
    val_batches = sec.get("val_batches", _int(1), "an integer >= 1, e.g. 20", 20)
    hellaswag = sec.get("hellaswag", _bool, "true or false", False)
    extra_args = sec.get(
        "extra_args",
        _string_list,
        'a list of strings in flag/value pairs, e.g. ["-ih", "data/hellaswag_val.bin"]',
        (),
    )
    if len(extra_args) % 2:
        sec.fail("extra_args", list(extra_args), "flag/value pairs (an even number of strings)")
    simulated = sec.get("simulated", _bool, "true or false", False)
    use_stdbuf = sec.get("use_stdbuf", _bool, "true or false", True)
    sec.finish()
    settings = TrainerSettings(
        binary=binary,
        llmc_dir=llmc_dir,
        train_data=train_data,
        val_data=val_data,
        micro_batch=micro_batch,
        total_batch=total_batch,
        seq_len=seq_len,
        warmup=warmup,
        schedule=schedule,
        final_lr_fraction=float(final_frac),
        weight_decay=weight_decay,
        val_every=val_every,
        val_batches=val_batches,
        hellaswag=hellaswag,
        extra_args=extra_args,
        simulated=simulated,
        use_stdbuf=use_stdbuf,
    )
    try:
        from costbo.llmc.command import _extra_pairs

        _extra_pairs(extra_args)
    except ValueError as err:
        sec.fail("extra_args", list(extra_args), str(err))
    return settings


def _bundled_trainer(binary: str, llmc_dir: Path) -> str:
    """costbo-sim / costbo-twin next to this interpreter when they are not on PATH."""
    if (
        binary in BUNDLED_TRAINERS
        and not (llmc_dir / binary).is_file()
        and not shutil.which(binary)
    ):
        beside = Path(sys.executable).parent / binary
        if beside.is_file():
            return str(beside)
    return binary


def _parse_space(sec: _Section, trainer: TrainerSettings) -> SearchSpace:
    lr = sec.get(
        "lr", _lr_bounds, "[low, high] with 0 < low < high, e.g. [1e-5, 1e-1]", (1e-5, 1e-1)
    )
    steps = sec.get(
        "steps",
        _int_list,
        "a list of positive step counts, the target last, e.g. [50, 100, 4725]",
        _REQUIRED,
    )
    shape_hint = (
        "a list of [depth, channels, heads] with channels divisible by heads and a head "
        "size that is a multiple of 8 and at most 128, e.g. [[1, 64, 1], [12, 768, 12]]"
    )
    widths = sec.get(
        "widths", _int_list, "a list of widths >= 64, the target last, e.g. [64, 128, 768]", None
    )
    models = sec.get("models", _shape_list, shape_hint, None)
    sec.finish()
    if widths is not None and models is not None:
        raise ConfigError(f"{sec.path}: [space] has both widths and models: keep one of them")
    if widths is None and models is None:
        raise ConfigError(
            f"{sec.path}: [space] needs widths = [...] (depth = heads = width // 64) or "
            "models = [[depth, channels, heads], ...]"
        )
    key = "widths" if widths is not None else "models"
    try:
        space = SearchSpace(lr=lr, steps=steps, widths=widths, models=models)
    except ValueError as err:
        bad = "steps" if "steps" in str(err) else key
        raise ConfigError(
            f"{sec.path}: [space] {bad} = {_show(steps if bad == 'steps' else widths or models)} "
            f"is invalid: {err}"
        ) from None
    if isinstance(trainer.warmup, int):
        smallest = min(steps)
        if trainer.warmup >= smallest:
            raise ConfigError(
                f"{sec.path}: [llmc] warmup = {trainer.warmup} is not below the smallest steps "
                f"rung {smallest}: use a fraction such as 0.1, or raise the rung"
            )
    return space


def _parse_runner(sec: _Section) -> RunnerSettings:
    margin = sec.get("cost_margin", _positive, "a number > 0, e.g. 2.0", 2.0)
    silence = sec.get("silence_timeout", _positive, "seconds > 0, e.g. 600.0", 600.0)
    grace = sec.get("kill_grace", _positive, "seconds > 0, e.g. 5.0", 5.0)
    failures = sec.get("max_consecutive_failures", _int(1), "an integer >= 1, e.g. 3", 3)
    above_first = sec.get("diverge_above_first", _positive, "nats > 0, e.g. 1.0", 1.0)
    above_best = sec.get("diverge_above_best", _positive, "nats > 0, e.g. 2.5", 2.5)
    patience = sec.get("diverge_patience", _int(1), "an integer >= 1, e.g. 10", 10)
    sec.finish()
    return RunnerSettings(
        margin, silence, grace, failures, DivergenceRule(above_first, above_best, patience)
    )


def _parse_probe(sec: _Section, base: Path, study: StudySettings) -> ProbeSettings:
    steps = sec.get("steps", _int(20), "an integer >= 20 (the worst of steps 10-19 is used)", 20)
    lr = sec.get("lr", _positive, "a learning rate > 0, e.g. 6e-4", 6e-4)
    table = sec.get("cost_table", _path(base), "a CSV file path", study.runs_dir / "cost_table.csv")
    sec.finish()
    return ProbeSettings(steps, lr, table)


def _parse_final(sec: _Section, trainer: TrainerSettings) -> FinalSettings:
    micro_batch = sec.get("micro_batch", _int(1), "an integer >= 1, e.g. 32", 32)
    if trainer.total_batch % (micro_batch * trainer.seq_len):
        sec.fail(
            "micro_batch",
            micro_batch,
            f"a micro batch whose product with seq_len {trainer.seq_len} divides total_batch "
            f"{trainer.total_batch}",
        )
    hellaswag = sec.get("hellaswag", _bool, "true or false", True)
    val_every = sec.get("val_every", _int(1), "an integer >= 1, e.g. 250", 250)
    checkpoint = sec.get(
        "checkpoint_every",
        _int(0),
        "an integer >= 0 (0: no checkpoints, so an interrupted final run starts over)",
        1000,
    )
    sec.finish()
    return FinalSettings(micro_batch, hellaswag, val_every, checkpoint)


def _refuse_credentials(path: Path, table: dict) -> None:
    for key in table:
        if any(word in key.lower() for word in ("secret", "access_key", "password", "token")):
            raise ConfigError(
                f"{path}: [s3] {key}: credentials never go in the config file; use "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials with [s3] profile, "
                "or the instance role"
            )


def _parse_s3(sec: _Section) -> S3Settings:
    bucket = sec.get("bucket", _text, 'an S3 bucket name, e.g. "my-costbo-bucket"', _REQUIRED)
    if bucket.startswith("s3://") or "/" in bucket:
        sec.fail("bucket", bucket, "the bare bucket name, without s3:// or a path")
    cluster = sec.get(
        "cluster", _text, 'a name for this machine\'s runs, e.g. "g5-a10g"', _REQUIRED
    )
    if "/" in cluster:
        sec.fail("cluster", cluster, "a name without '/' (it becomes one key level)")
    endpoint = sec.get("endpoint_url", _text, 'a URL, e.g. "https://s3.amazonaws.com"', None)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        sec.fail("endpoint_url", endpoint, "a URL starting with http:// or https://")
    region = sec.get("region", _text, 'an AWS region, e.g. "us-east-1"', None)
    profile = sec.get("profile", _text, "a profile name from ~/.aws/config", None)
    sec.finish()
    return S3Settings(bucket, cluster, endpoint, region, profile)


def write_text_file(path: Path, text: str, name: str = "") -> None:
    """Write ``text`` to ``path``, creating its folders; a ``ConfigError`` naming the path
    (after ``name``, e.g. "--out ") and the reason if it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        # mkdir names the part of the path in the way, which may not be the file itself
        raise ConfigError(
            f"{name}{path} cannot be written ({err.strerror}: {err.filename}): give a file path "
            "in a folder you can write to"
        ) from None


def write_default_config(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the commented default config; refuses to overwrite unless ``force``."""
    path = Path(path)
    if path.is_dir():
        path = path / DEFAULT_CONFIG_NAME
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists: edit it, or pass --force to overwrite it")
    write_text_file(path, DEFAULT_CONFIG_TEXT)
    return path
