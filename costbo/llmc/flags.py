"""train_gpt2cu's command line: its flag table, its real defaults and C's atoi/atof.

llm.c reads flag/value pairs with an if-chain (train_gpt2.cu's main): a flag is ``-`` plus one or
two bytes, and the first branch that matches takes it. Some branches test only the letter after
the dash ("loose" rows here: ``-bx`` is ``-b``), others the whole flag, so the order matters:
``-es`` before ``-e``, ``-ge`` before ``-g``, ``-lg`` after the exact ``-l``. Values are never
validated: ``atoi("1e3")`` is 1, ``atof("abc")`` is 0.0.

``costbo-twin`` and ``costbo-sim`` parse their command lines with :data:`LLMC_FLAGS`; each adds
its own exact three-character rows with :func:`with_flags`, before the llm.c row that would
otherwise take them (the twin's ``-vs`` before ``-v``, the sim's ``-zf``/``-zs``/``-zt`` before
``-z``), and its own fields with a subclass of :class:`Config`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

# --- C's number parsing (glibc, "C" locale) ----------------------------------------------------
_SPACE = b" \t\n\v\f\r"  # isspace in the C locale
_INT = re.compile(rb"[+-]?\d+")
_INF_NAN = re.compile(rb"[+-]?(?:inf(?:inity)?|nan(?:\([0-9a-z_]*\))?)", re.IGNORECASE)
_HEX = re.compile(rb"[+-]?0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?", re.IGNORECASE)
_DECIMAL = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?", re.IGNORECASE)


def atoi(text: str) -> int:
    """C's atoi: blanks, a sign, decimal digits; anything else ends the number (none: 0).

    glibc's atoi is ``(int) strtol(text, NULL, 10)``: strtol saturates at long's 64-bit range,
    then the cast keeps the low 32 bits (``4294967297`` is 1).
    """
    m = _INT.match(os.fsencode(text).lstrip(_SPACE))
    if not m:
        return 0
    digits = m.group(0).lstrip(b"+-").lstrip(b"0")
    if len(digits) > 19:  # beyond any long (and beyond Python's int() digit limit)
        value = -(2**63) if m.group(0).startswith(b"-") else 2**63 - 1
    else:
        value = max(-(2**63), min(2**63 - 1, int(m.group(0))))
    return (value + 2**31) % 2**32 - 2**31


def atof(text: str) -> float:
    """C's atof (strtod): the longest numeric prefix, incl. ``inf``, ``nan(...)`` and hex floats
    (``0x1.8p3``); no number gives 0.0. Out of range: +-inf or 0.0, as strtod returns."""
    s = os.fsencode(text).lstrip(_SPACE)
    m = _INF_NAN.match(s)
    if m:
        return float(m.group(0).split(b"(")[0])
    m = _HEX.match(s)
    if m:
        try:
            return float.fromhex(m.group(0).decode("ascii"))
        except OverflowError:
            return -math.inf if m.group(0).startswith(b"-") else math.inf
    m = _DECIMAL.match(s)
    return float(m.group(0)) if m else 0.0


# --- the settings and the table -----------------------------------------------------------------
@dataclass
class Config:
    """train_gpt2cu's settings under its variable names, with its real defaults (train_gpt2.cu's
    main; its help text is wrong about several). Floats are Python floats: llm.c keeps -l, -q,
    -c, -sl, -sg in C floats, which a consumer rounds where it needs to."""

    train_data_pattern: str = "data/fineweb_train_*.bin"
    val_data_pattern: str = "data/fineweb_val_*.bin"
    tokenizer_path: str = "data/gpt2_tokenizer.bin"
    hellaswag_path: str = "data/hellaswag_val.bin"
    load_filename: str | None = None
    lr_scheduler_type: str = "cosine"
    output_log_dir: str = "log"
    checkpoint_every: int = 1000
    checkpoints_keep: int = 0
    major_checkpoint_every: int = 0
    resume: int = 0
    B: int = 64
    T: int = 1024
    total_batch_size: int = 524288
    learning_rate: float = 6e-4
    log_gpu_every: int = -1
    warmup_iterations: int = 470
    final_learning_rate_frac: float = 0.0
    weight_decay: float = 0.1
    skip_update_lossz: float = 0.0
    skip_update_gradz: float = 0.0
    val_loss_every: int = 250
    val_max_steps: int = 20
    sample_every: int = 20000
    genT: int = 64
    overfit_single_batch: int = 0
    max_steps: int = 4725
    early_stopping_steps: int = -1
    start_step: int = 0
    override_enable_tf32: int = 1
    use_master_weights: int = 1
    gelu_fusion: int = -1
    recompute: int = 1
    zero_stage: int = 1
    hellaswag_eval: int = 1
    num_processes: int = 1
    process_rank: int = 0
    gpus_per_node: int = 8
    nccl_init_method: str = "mpi"
    server_ip: str = ""
    fs_path: str = ""
    depth: int = 12  # -1d, -1c, -1h: the course fork's from-scratch model
    channels: int = 768
    heads: int = 12


@dataclass(frozen=True)
class Flag:
    """One branch of llm.c's if-chain: ``spelling`` sets ``field`` to ``parse(value)``."""

    spelling: str  # "-b", "-1d"
    field: str  # a Config attribute
    parse: Callable[[str], object]  # atoi, atof or str
    loose: bool  # matches on its first letter alone (-bx is -b)
    help: str  # what it means to llm.c

    def matches(self, flag: bytes) -> bool:
        if self.loose:
            return flag[:2] == self.spelling.encode()
        return flag == self.spelling.encode()


LLMC_FLAGS: tuple[Flag, ...] = (  # in train_gpt2.cu's order
    Flag("-id", "train_data_pattern", str, False, "train shard glob (relative to the working dir)"),
    Flag("-iv", "val_data_pattern", str, False, "val shard glob"),
    Flag("-it", "tokenizer_path", str, False, "tokenizer file, used to print samples"),
    Flag("-ih", "hellaswag_path", str, False, "HellaSwag file"),
    Flag("-o", "output_log_dir", str, True, "output dir: main.log, checkpoints"),
    Flag("-n", "checkpoint_every", atoi, False, "checkpoint every N steps (0: none)"),
    Flag("-y", "resume", atoi, True, "resume from the last checkpoint in -o (1)"),
    Flag("-b", "B", atoi, True, "micro batch size B"),
    Flag("-t", "T", atoi, True, "sequence length T (<= 1024)"),
    Flag("-d", "total_batch_size", atoi, True, "total batch size in tokens (-1: B*T)"),
    Flag("-l", "learning_rate", atof, False, "max learning rate"),
    Flag("-lg", "log_gpu_every", atoi, False, "GPU info every N steps"),
    Flag("-u", "warmup_iterations", atoi, True, "warmup steps"),
    Flag("-q", "final_learning_rate_frac", atof, True, "final LR fraction (min_lr = lr*q)"),
    Flag("-c", "weight_decay", atof, True, "weight decay"),
    Flag("-x", "max_steps", atoi, True, "schedule length in steps (-1: one epoch)"),
    Flag("-v", "val_loss_every", atoi, True, "val loss every N steps"),
    Flag("-m", "val_max_steps", atoi, True, "val batches per eval (-1: whole val split)"),
    Flag("-s", "sample_every", atoi, False, "sample text every N steps (0: never)"),
    Flag("-ge", "gelu_fusion", atoi, False, "gelu fusion: 0 none, 1 forward, 2 forward+backward"),
    Flag("-g", "genT", atoi, True, "tokens per sample"),
    Flag("-a", "overfit_single_batch", atoi, True, "overfit the first val batch (1)"),
    Flag("-f", "override_enable_tf32", atoi, True, "TF32 matmuls (1)"),
    Flag("-w", "use_master_weights", atoi, True, "fp32 master weights (1)"),
    Flag("-z", "zero_stage", atoi, True, "ZeRO stage"),
    Flag("-r", "recompute", atoi, True, "recompute in backward: 0 none, 1 gelu, 2 gelu+ln"),
    Flag("-h", "hellaswag_eval", atoi, True, "HellaSwag eval (1); NOT help"),
    Flag("-k", "lr_scheduler_type", str, True, "schedule: cosine, linear, constant, wsd"),
    Flag("-1d", "depth", atoi, False, "model depth"),
    Flag("-1c", "channels", atoi, False, "model channels"),
    Flag("-1h", "heads", atoi, False, "model heads"),
    Flag("-es", "early_stopping_steps", atoi, False, "stop after N steps (-1: at -x)"),
    Flag("-e", "load_filename", str, True, "init from a .bin model file"),
    Flag("-pi", "nccl_init_method", str, False, "multi-GPU: NCCL init method (tcp, fs, mpi)"),
    Flag("-pf", "fs_path", str, False, "multi-GPU: shared path for the fs init method"),
    Flag("-ps", "server_ip", str, False, "multi-GPU: server IP for the tcp init method"),
    Flag("-pn", "num_processes", atoi, False, "multi-GPU: number of processes"),
    Flag("-pr", "process_rank", atoi, False, "multi-GPU: this process's rank"),
    Flag("-pg", "gpus_per_node", atoi, False, "multi-GPU: GPUs per node"),
    Flag("-sl", "skip_update_lossz", atof, False, "skip updates above this loss z-score (0: off)"),
    Flag("-sg", "skip_update_gradz", atof, False, "skip updates above this grad z-score (0: off)"),
    Flag("-ss", "start_step", atoi, False, "first step (schedule position)"),
    Flag("-nk", "checkpoints_keep", atoi, False, "checkpoints kept in -o (0: all)"),
    Flag("-nm", "major_checkpoint_every", atoi, False, "major checkpoints every N steps (kept)"),
)


def with_flags(extra: Sequence[Flag], before: str) -> tuple[Flag, ...]:
    """:data:`LLMC_FLAGS` with a program's own rows inserted just before the row ``before``.

    An own flag shares its first letter with an llm.c one (``-vs`` would be read as ``-v``), so it
    must come before that row; raises ValueError when a row of the result can never match.
    """
    at = [flag.spelling for flag in LLMC_FLAGS].index(before)
    table = LLMC_FLAGS[:at] + tuple(extra) + LLMC_FLAGS[at:]
    for flag in table:
        taken_by = next(row for row in table if row.matches(flag.spelling.encode()))
        if taken_by is not flag:
            raise ValueError(
                f"flag {flag.spelling} would be read as {taken_by.spelling}, which comes first: "
                f"insert it before {taken_by.spelling}"
            )
    return table


class UsageError(Exception):
    """A command line llm.c refuses: it prints its usage to stderr and exits 1."""


ConfigT = TypeVar("ConfigT", bound=Config)


def parse_argv(argv: Sequence[str], config: ConfigT, flags: Sequence[Flag] = LLMC_FLAGS) -> ConfigT:
    """Set ``config`` from flag/value pairs as llm.c's loop does, first matching row wins.

    Raises UsageError (naming the flag) for a flag without a value, one that is not ``-`` plus
    one or two bytes (strlen, so ``-bé`` is too long), or one no row matches. Returns ``config``.
    """
    for i in range(0, len(argv), 2):
        flag = os.fsencode(argv[i])
        if i + 1 >= len(argv) or flag[:1] != b"-" or len(flag) not in (2, 3):
            raise UsageError(argv[i])
        row = next((row for row in flags if row.matches(flag)), None)
        if row is None:
            raise UsageError(argv[i])
        setattr(config, row.field, row.parse(argv[i + 1]))
    return config
