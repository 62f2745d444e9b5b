"""costbo-sim: a stand-in for llm.c's ``train_gpt2cu`` that prints a simulated run instantly.

It parses the same flags (flag/value pairs, atoi/atof), fails the same way (usage + exit 1 for an
unknown flag, assert messages + exit 134 where llm.c aborts), prints the same lines and writes the
same ``main.log`` and ``run_parameters.txt`` as the course's llm.c (10605/llm.c, HW5_Code), with
losses from a simulated landscape (``-zf`` family, ``-zs`` seed) and step times from a simulated
A10G. After every step line it prints ``sim elapsed: %.3f s``, the simulated wall seconds so far
(startup, slow step 0 and evals included), and once more after the final evals, so a runner can
account simulated time instead of wall time. ``-zt F`` sleeps F x the simulated time.

What it does not simulate: data files (the simulated world has them all), checkpoints (``-n``
prints llm.c's lines and costs time but writes no files, so ``-y 1`` never resumes), ``-e``
(always from scratch), multi-GPU flags (accepted, single GPU). The final loss assumes the standard
recipe (cosine to 0, warmup ~10%); other ``-k``/``-u``/``-q`` change the lr column and the curve.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from costbo.gpt2 import MAX_SEQ_LEN, VOCAB_SIZE, ModelShape, num_parameters, shape_problem
from costbo.llmc.flags import Config, Flag, UsageError, atof, atoi, parse_argv, with_flags
from costbo.sim.curve import SimulatedRun, simulate_run, stable_seed
from costbo.sim.gpu import CONTEXT_MIB, DEVICE_NAME, MEMORY_MIB, events_at
from costbo.sim.landscape import FAMILIES, INIT_LOSS, Landscape, sample_landscape
from costbo.sim.schedule import SCHEDULES, learning_rates

PROGRAM = "costbo-sim"
TRAIN_TOKENS = 2_477_500_000  # the course's FineWeb train shards: -x -1 gives 4725 steps
VAL_TOKENS = 100_000_000
HELLASWAG_EXAMPLES = 10042
EXIT_USAGE = 1
EXIT_ABORT = 134  # what a shell reports for SIGABRT (llm.c's failed asserts)
EXIT_FPE = 136  # SIGFPE: llm.c divides by zero on -v 0 or B*T == 0
MANAGED_WARNING = (
    "WARNING: Fell back to cudaMallocManaged when initializing m,v,master_weights on 1 GPUs\n"
    "         Prevents an OOM, but code may run much slower due to device <-> host memory "
    "movement"
)
STEP_FORMAT = "step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e | %.2f ms"
_DECAY_ASSERT_LINE = {"cosine": 34, "linear": 50, "wsd": 75}  # llmc/schedulers.h
_RULE = "+-----------------------+----------------------------------------------------+"

USAGE = """Usage:   ./train_gpt2cu [options]
Options:
  -id <string> train data filename pattern (default = data/fineweb_train_*.bin)
  -iv <string> val data filename pattern (default = data/fineweb_val_*.bin)
  -it <string> tokenizer file path (default = data/gpt2_tokenizer.bin)
  -ih <string> hellaswag file path (default = data/hellaswag_val.bin)
  -e <string> input .bin filename or descriptor, see code comments as docs. (default = gpt2_124M_bf16.bin)
  -o <string> output log dir (default = NULL, no logging)
  -lg <int>   log gpu info every x steps (default = -1; disabled)
  -n <int>    write optimization checkpoints every how many steps? (default 0, don't)
  -nk <int>   max number of checkpoints to keep in the directory, removing old ones (0 = disable, default)
  -nm <int>   every how many step checkpoints are considered major? major checkpoints never get deleted.
  -y <int>    resume optimization found inside output log dir? (0=restart/overwrite, 1=resume/append)
  -1d <int>   model depth (default = 12)
  -1c <int>   model channels (default = 768)
  -1h <int>   model number of heads (default = 12)
  -b <int>    (per-GPU, micro) batch size B (default = 64)
  -t <int>    sequence length T (default = 1024)
  -d <int>    total desired batch size (default = B * T * num_processes, i.e. no grad accumulation
  -x <int>    max_steps of optimization to run (4725 (default), -1 = disable and run 1 epoch)
  -es <int>   early stopping after how many steps (-1 (default) = disable)
  -ss <int>   learning rate scheduler starting step (default = 0)
  -k <string> learning rate scheduler (default = cosine)
  -l <float>  learning rate (default = 3e-4f)
  -u <int>    learning rate warmup iterations (default = 470, no warmup)
  -q <float>  learning rate decay: final fraction, at end of training (default = 1.0 (no decay))
  -c <float>  weight decay (default = 0.0f)
  -sl <float> outlier stability: skip update if loss goes above this in zscore (0.0f=off)
  -sg <float> outlier stability: skip update if grad_norm goes above this in zscore (0.0f=off)
  -v <int>    val_loss_every, how often we evaluate val loss (default = 20)
  -m <int>    val_max_steps, up to how many val batches to estimate val loss? (default = 20)
  -s <int>    sample_every, how often we inference the model (default = 20)
  -g <int>    genT, how many steps of inference we do (default = 64)
  -h <int>    hellaswag eval run? (default = 0)
  -a <int>    overfit a single batch? 0/1. useful for debugging
  -f <int>    enable_tf32 override (default: 1, set to 0 to disable tf32)
  -w <int>    keep f32 copy of weights for the optimizer? (default: 1)
  -ge <int>   gelu fusion: 0=none, 1=forward, 2=forward+backward (default: 2 for >=SM90, 0 for older GPUs)
  -z <int>    zero_stage, Zero Optimization Stage, 0,1,2,3 (default = 0)
  -r <int>    recompute: less memory but less speed. (default = 1), 0|1|2 = none,gelu,gelu+ln
  -pn <int>    num_processes (default = 1)
  -pr <int>    process_rank (default = 0)
  -pg <int>    gpus_per_node (default = 8)
  -pm <string> nccl_init_method: tcp,fs,mpi (default = mpi)
  -ps <string> server_ip - used only when nccl_init_method is tcp (default = -1)
  -pp <string> fs_path - used only when nccl_init_method is fs (default = /tmp)
costbo-sim (simulated llm.c; the real defaults are those of llm.c's source, not the text above):
  -zf <string> landscape family: {families} (default = calibrated)
  -zs <int>    landscape seed (default = 0)
  -zt <float>  sleep this factor x the simulated seconds (default = 0: print instantly)
"""  # noqa: E501 (llm.c's usage text, verbatim)


class _Exit(Exception):
    """Leave ``main`` with an exit status (messages already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def f32(value: float) -> float:
    """Round to C float, as llm.c stores -l, -q, -c, -sl, -sg."""
    return float(np.float32(value))


# --- flags: llm.c's table (costbo/llmc/flags.py) plus the sim's own -zf, -zs, -zt -------------
@dataclass
class SimConfig(Config):
    """train_gpt2cu's settings plus the simulated world's."""

    family: str = "calibrated"  # -zf
    seed: int = 0  # -zs
    sleep_factor: float = 0.0  # -zt


FLAGS = with_flags(
    [
        Flag("-zf", "family", str, False, "landscape family"),
        Flag("-zs", "seed", atoi, False, "landscape seed"),
        Flag("-zt", "sleep_factor", atof, False, "sleep this factor x the simulated seconds"),
    ],
    before="-z",  # else llm.c's loose -z (zero stage) takes them
)
_C_FLOATS = (
    "learning_rate",
    "final_learning_rate_frac",
    "weight_decay",
    "skip_update_lossz",
    "skip_update_gradz",
)


def usage() -> _Exit:
    sys.stderr.write(USAGE.format(families=", ".join(FAMILIES)))
    sys.stderr.flush()
    return _Exit(EXIT_USAGE)


def parse_args(argv: Sequence[str]) -> SimConfig:
    """llm.c's flag loop; its float settings rounded to C floats, as llm.c holds them."""
    try:
        cfg = parse_argv(argv, SimConfig(), FLAGS)
    except UsageError:
        raise usage() from None
    for name in _C_FLOATS:
        setattr(cfg, name, f32(getattr(cfg, name)))
    return cfg


# --- output -----------------------------------------------------------------------------------
class Output:
    """stdout (flushed per line, so a runner can stream it) plus the simulated clock."""

    def __init__(self, sleep_factor: float) -> None:
        self.elapsed = 0.0  # simulated seconds
        self.sleep_factor = sleep_factor if math.isfinite(sleep_factor) else 0.0

    def print(self, text: str = "", end: str = "\n") -> None:
        sys.stdout.write(text + end)
        sys.stdout.flush()

    def spend(self, seconds: float) -> None:
        self.elapsed += seconds
        if self.sleep_factor > 0:
            time.sleep(self.sleep_factor * seconds)

    def print_elapsed(self) -> None:
        self.print(f"sim elapsed: {self.elapsed:.3f} s")


def assert_fail(
    line: int,
    expression: str,
    function: str = "int main(int, char**)",
    source: str = "train_gpt2.cu",
) -> _Exit:
    """glibc's assert message; a shell reports the SIGABRT that follows as exit 134."""
    sys.stdout.flush()
    sys.stderr.write(f"{PROGRAM}: {source}:{line}: {function}: Assertion `{expression}' failed.\n")
    sys.stderr.flush()
    return _Exit(EXIT_ABORT)


def printf(fmt: str, *args: object) -> str:
    """C's printf formatting (Python's % operator implements the same conversions)."""
    return fmt % args


def row(label: str, fmt: str, value: object) -> str:
    """One ``| name | value |`` line of llm.c's startup table."""
    return f"| {label} | {printf(fmt, value)} |"


def c_float(fmt: str, value: float) -> str:
    """printf of a float; 0/0 in C is a negative NaN that glibc prints as -nan."""
    if isinstance(value, float) and math.isnan(value) and math.copysign(1.0, value) < 0:
        return re.sub(r"%[-+ ]*\d*(?:\.\d+)?[fe]", "-nan", fmt, count=1)
    return printf(fmt, value)


def c_divide(num: float, den: float) -> float:
    if den == 0:
        return -math.nan if num == 0 else math.copysign(math.inf, num)
    return num / den


class OutlierDetector:
    """llm.c's rolling z-score over the last 128 values (nan until the window is full)."""

    WINDOW = 128

    def __init__(self) -> None:
        self.buffer = [0.0] * self.WINDOW
        self.count = 0
        self.index = 0
        self.sum = 0.0
        self.sum_sq = 0.0

    def update(self, value: float) -> float:
        if self.count < self.WINDOW:
            self.buffer[self.count] = value
            self.sum += value
            self.sum_sq += value * value
            self.count += 1
            return math.nan
        old = self.buffer[self.index]
        self.sum -= old
        self.sum_sq -= old * old
        self.buffer[self.index] = value
        self.sum += value
        self.sum_sq += value * value
        self.index = (self.index + 1) % self.WINDOW
        mean = self.sum / self.WINDOW
        variance = self.sum_sq / self.WINDOW - mean * mean
        std = math.sqrt(variance) if variance >= 0 else math.nan
        if std == 0.0:
            return 0.0
        return (value - mean) / std


def hellaswag_correct(val_loss: float, step: int, seed: int) -> int:
    """Simulated HellaSwag hits out of 10042: 25% at random, ~30% at val loss 3.28 (llm.c 124M)."""
    if not math.isfinite(val_loss):
        acc = 0.25
    else:
        acc = 0.25 + 0.05 * min(max((5.5 - val_loss) / (5.5 - 3.28), 0.0), 1.5) ** 2
    jitter = np.random.default_rng(stable_seed(seed, step, "hellaswag")).normal(0.0, 0.003)
    return int(round(min(max(acc + jitter, 0.0), 1.0) * HELLASWAG_EXAMPLES))


_TEXT = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more out up into do any your what time about can than only its other new some could these"
)
_WORDS = tuple(_TEXT.split())


def generated_text(tokens: int, step: int, seed: int) -> str:
    rng = np.random.default_rng(stable_seed(seed, step, "sample"))
    words = rng.choice(_WORDS, size=max(0, tokens - 1))
    return " ".join(str(w) for w in words)


# --- the run ----------------------------------------------------------------------------------
def _table_rows(cfg: SimConfig, train_num_batches: int, val_num_batches: int, n_params: int):
    gelu = 0 if cfg.gelu_fusion == -1 else cfg.gelu_fusion
    params = [
        _RULE,
        "| Parameter             | Value                                              |",
        _RULE,
        row("train data pattern   ", "%-50s", cfg.train_data_pattern),
        row("val data pattern     ", "%-50s", cfg.val_data_pattern),
        row("output log dir       ", "%-50s", cfg.output_log_dir),
        row("checkpoint_every     ", "%-50d", cfg.checkpoint_every),
        row("resume               ", "%-50d", cfg.resume),
        row("micro batch size B   ", "%-50d", cfg.B),
        row("sequence length T    ", "%-50d", cfg.T),
        row("total batch size     ", "%-50d", cfg.total_batch_size),
        row("LR scheduler         ", "%-50s", cfg.lr_scheduler_type),
        row("learning rate (LR)   ", "%-50e", cfg.learning_rate),
        row("warmup iterations    ", "%-50d", cfg.warmup_iterations),
        row("final LR fraction    ", "%-50e", cfg.final_learning_rate_frac),
        row("weight decay         ", "%-50e", cfg.weight_decay),
        row("skip update lossz    ", "%-50f", cfg.skip_update_lossz),
        row("skip update gradz    ", "%-50f", cfg.skip_update_gradz),
        row("max_steps            ", "%-50d", cfg.max_steps),
        row("early_stopping_steps ", "%-50d", cfg.early_stopping_steps),
        row("val_loss_every       ", "%-50d", cfg.val_loss_every),
        row("val_max_steps        ", "%-50d", cfg.val_max_steps),
        row("sample_every         ", "%-50d", cfg.sample_every),
        row("genT                 ", "%-50d", cfg.genT),
        row("overfit_single_batch ", "%-50d", cfg.overfit_single_batch),
        row(
            "use_master_weights   ", "%-50s", ("enabled" if cfg.use_master_weights else "disabled")
        ),
        row("gelu_fusion          ", "%-50d", gelu),
        row("recompute            ", "%-50d", cfg.recompute),
        _RULE,
    ]
    device = [
        row("device               ", "%-50s", DEVICE_NAME),
        row("peak TFlops          ", "%-50.1f", -1.0),  # llm.c's GPU table has no A10G
        row("precision            ", "%-50s", "BF16"),
        _RULE,
    ]
    model = [
        row("weight init method   ", "%-50s", (cfg.load_filename or "(null)")),
        row("max_sequence_length T", "%-50d", MAX_SEQ_LEN),
        row("vocab_size V         ", "%-50d", VOCAB_SIZE),
        row("padded_vocab_size Vp ", "%-50d", 50304),
        row("num_layers L         ", "%-50d", cfg.depth),
        row("num_heads NH         ", "%-50d", cfg.heads),
        row("channels C           ", "%-50d", cfg.channels),
        row("num_parameters       ", "%-50d", n_params),
        _RULE,
        row("train_num_batches    ", "%-50d", train_num_batches),
        row("val_num_batches      ", "%-50d", val_num_batches),
        _RULE,
    ]
    return params, device, model


def _write_run_parameters(cfg: SimConfig, lines: list[str]) -> None:
    out_dir = cfg.output_log_dir
    if not os.path.isdir(out_dir):
        with contextlib.suppress(OSError):  # llm.c ignores this mkdir's result
            os.mkdir(out_dir, 0o700)
    try:
        with open(os.path.join(out_dir, "run_parameters.txt"), "a") as f:
            f.write("".join(line + "\n" for line in lines))
    except OSError:
        sys.stderr.write(f"Error opening log file: {out_dir}/stats.txt\n")


class MainLog:
    """``<-o>/main.log``, appended and closed per line like llm.c's logger."""

    def __init__(self, out_dir: str, resume: int) -> None:
        self.path = os.path.join(out_dir, "main.log")
        if resume == 0:
            open(self.path, "w").close()

    def write(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _run(argv: Sequence[str]) -> int:
    cfg = parse_args(argv)
    if cfg.family not in FAMILIES:
        sys.stderr.write(
            f"{PROGRAM}: unknown landscape family {cfg.family!r} (-zf); "
            f"choose one of {', '.join(FAMILIES)}\n"
        )
        return EXIT_USAGE
    if cfg.seed < 0:
        sys.stderr.write(f"{PROGRAM}: landscape seed {cfg.seed} (-zs) must be >= 0\n")
        return EXIT_USAGE
    out = Output(cfg.sleep_factor)

    if not cfg.warmup_iterations >= 0:
        raise assert_fail(1502, "warmup_iterations >= 0")
    if cfg.max_steps != -1 and not cfg.early_stopping_steps <= cfg.max_steps:
        raise assert_fail(1505, "early_stopping_steps <= max_steps")
    if not len(os.fsencode(cfg.output_log_dir)) < 400:
        raise assert_fail(1511, "strlen(output_log_dir) < 400")
    tokens_per_fwdbwd = cfg.B * cfg.T  # one process: -pn/-pr/-pg are accepted and ignored
    if cfg.total_batch_size == -1:
        cfg.total_batch_size = tokens_per_fwdbwd
    if tokens_per_fwdbwd == 0:
        sys.stderr.write("Floating point exception\n")
        return EXIT_FPE
    if cfg.total_batch_size % tokens_per_fwdbwd != 0:
        raise assert_fail(1519, "total_batch_size % tokens_per_fwdbwd == 0")
    grad_accum_steps = int(cfg.total_batch_size / tokens_per_fwdbwd)
    if cfg.B <= 0 or cfg.T <= 0:
        sys.stderr.write(f"{PROGRAM}: B={cfg.B}, T={cfg.T}: use positive -b and -t\n")
        return EXIT_USAGE

    # gpt_build: llm.c checks nothing here; a bad shape crashes or misbehaves later.
    problem = shape_problem(cfg.depth, cfg.channels, cfg.heads)
    if problem:
        sys.stdout.flush()
        sys.stderr.write(f"{PROGRAM}: {problem}\n")
        return EXIT_USAGE
    model = ModelShape(cfg.depth, cfg.channels, cfg.heads)
    n_params = num_parameters(model.depth, model.channels)
    train_num_batches = cfg.max_steps
    if train_num_batches == -1:
        train_num_batches = TRAIN_TOKENS // cfg.total_batch_size
    val_num_batches = cfg.val_max_steps
    if val_num_batches == -1:
        val_num_batches = VAL_TOKENS // tokens_per_fwdbwd
    params_rows, device_rows, model_rows = _table_rows(
        cfg, train_num_batches, val_num_batches, n_params
    )
    landscape = sample_landscape(cfg.family, cfg.seed)
    gpu = landscape.gpu

    for line in params_rows + device_rows + model_rows:
        out.print(line)
    run_hellaswag = cfg.hellaswag_eval != 0  # the simulated world has data/hellaswag_val.bin
    if run_hellaswag and cfg.B // 4 == 0:
        out.print(f"HellaSwag EvalLoader: batch size {cfg.B} is < 4")
        out.print("---> HINT: Disable HellaSwag eval with -h 0, or increase batch size with -b")
        return EXIT_USAGE
    out.print(row("run hellaswag        ", "%-50s", ("yes" if run_hellaswag else "no")))
    out.print(_RULE)
    zero_stage = 1 if cfg.zero_stage == 1 else 0
    if cfg.zero_stage == 0:
        out.print("| Zero Optimization is disabled                                              |")
    elif cfg.zero_stage != 1:
        out.print("| Disabling Zero Optimization, Zero Stage2 and Stage3 are not yet supported  |")
    out.print(row("num_processes        ", "%-50d", 1))
    out.print(row("zero_stage           ", "%-50d", zero_stage))
    out.print(_RULE)
    param_bytes = gpu.parameter_bytes(model)
    out.print(f"num_parameters: {n_params} => bytes: {param_bytes}")
    out.print(f"allocated {param_bytes // 2**20} MiB for model parameters")
    out.print(
        f"batch_size B={cfg.B} * seq_len T={cfg.T} * num_processes=1 and "
        f"total_batch_size={cfg.total_batch_size}"
    )
    out.print(f"=> setting grad_accum_steps={grad_accum_steps}")

    _write_run_parameters(cfg, params_rows + device_rows + model_rows)
    if not os.path.isdir(cfg.output_log_dir):
        try:
            os.mkdir(cfg.output_log_dir, 0o700)
        except OSError:
            out.print(f"ERROR: could not create directory: {cfg.output_log_dir}")
            return EXIT_USAGE
        out.print(f"created directory: {cfg.output_log_dir}")
    log = MainLog(cfg.output_log_dir, cfg.resume)

    # gpt2_allocate_state
    out.print(f"allocating {n_params * 2 // 2**20} MiB for parameter gradients")
    acts = gpu.activation_bytes(model, cfg.B, cfg.T, cfg.recompute)
    out.print(f"allocating {acts // 2**20} MiB for activations")
    if not gpu.activations_fit(model, cfg.B, cfg.T, cfg.recompute):
        out.print("[CUDA ERROR] at file train_gpt2.cu:270:\nout of memory")
        return EXIT_USAGE
    out.print(f"allocating {n_params * 4 >> 20} MiB for AdamW optimizer state m")
    out.print(f"allocating {n_params * 4 >> 20} MiB for AdamW optimizer state v")
    if cfg.use_master_weights == 1:
        out.print(f"allocating {n_params * 4 >> 20} MiB for master copy of params")
    used = CONTEXT_MIB * 2**20 + 2 * param_bytes + acts
    if gpu.uses_managed_memory(model, cfg.B, cfg.T, cfg.recompute):
        out.print(MANAGED_WARNING)
    else:
        used += 12 * n_params
    free = MEMORY_MIB * 2**20 - min(used, MEMORY_MIB * 2**20)
    out.print(f"device memory usage: {used // 2**20} MiB / {MEMORY_MIB} MiB")
    per_sequence = max(acts // cfg.B, 1)
    out.print(f"memory per sequence: {per_sequence // 2**20} MiB")
    out.print(f" -> estimated maximum batch size: {cfg.B + free // per_sequence}")
    if cfg.T < MAX_SEQ_LEN:
        for line in (
            "!!!!!!!!",
            "WARNING:",
            f"- The training sequence length is: T={cfg.T} (set with -t)",
            f"- The model's max sequence length is: max_seq_len={MAX_SEQ_LEN}",
            "You are attempting to train with a sequence length shorter than the model's max.",
            "This will lead to unused parameters in the wpe position embedding weights.",
            "If you know what you're doing you can ignore this warning.",
            "If you're like ???, you are most likely misconfiguring your training run.",
            "---> HINT: If you're training GPT-2 use -t 1024. If GPT-3, use -t 2048.",
            "!!!!!!!!",
        ):
            out.print(line)
    if not cfg.T <= MAX_SEQ_LEN:
        raise assert_fail(1788, "T <= model.config.max_seq_len")
    out.spend(gpu.startup_total_seconds(model))

    return _train(
        cfg, out, log, landscape, model, train_num_batches, grad_accum_steps, val_num_batches
    )


def _simulate(
    cfg: SimConfig,
    landscape: Landscape,
    model: ModelShape,
    train_num_batches: int,
    train_steps: int,
) -> SimulatedRun | None:
    """The run's losses, or None when there is nothing to train (no steps, or an LR <= 0)."""
    lr = cfg.learning_rate
    if train_num_batches < 1 or not (math.isfinite(lr) and lr > 0):
        return None
    return simulate_run(
        landscape,
        lr,
        train_num_batches,
        model,
        warmup=cfg.warmup_iterations,
        schedule=cfg.lr_scheduler_type,
        final_lr_frac=cfg.final_learning_rate_frac,
        stop_at=max(0, min(train_steps, train_num_batches)),
        val_every=abs(cfg.val_loss_every) or None,
    )


def _train(
    cfg: SimConfig,
    out: Output,
    log: MainLog,
    landscape: Landscape,
    model: ModelShape,
    train_num_batches: int,
    grad_accum_steps: int,
    val_num_batches: int,
) -> int:
    gpu = landscape.gpu
    train_steps = train_num_batches if cfg.early_stopping_steps == -1 else cfg.early_stopping_steps
    # llm.c only notices an unknown -k when it first asks for an LR, at step 1
    unknown_schedule = cfg.lr_scheduler_type not in SCHEDULES
    run = (
        None
        if unknown_schedule
        else _simulate(cfg, landscape, model, train_num_batches, train_steps)
    )
    init = INIT_LOSS

    def curve_val(step: int) -> float:
        if run is None:
            return init
        return run.val_losses.get(step, _val_from(run, step, init))

    step_s = gpu.step_seconds(model, cfg.B, cfg.T, cfg.total_batch_size)
    n_iter = max(0, train_steps - cfg.start_step)
    jitter_rng = np.random.default_rng(stable_seed(landscape.seed, "step-times", n_iter))
    jitter = np.exp(0.01 * jitter_rng.normal(0.0, 1.0, max(n_iter, 1)))
    jitter /= jitter.mean()
    hs_batches = gpu.hellaswag_batches(cfg.B)
    det_loss, det_grad = OutlierDetector(), OutlierDetector()
    total_sum_iteration_time_s = 0.0
    ema_tokens_per_second = 0.0
    tokens_processed = cfg.B * cfg.T * grad_accum_steps
    lrs = None
    if run is None and not unknown_schedule and train_num_batches >= 1:
        lrs = learning_rates(
            cfg.learning_rate,
            train_num_batches,
            warmup=cfg.warmup_iterations,
            schedule=cfg.lr_scheduler_type,
            final_lr_frac=cfg.final_learning_rate_frac,
        )
    elif run is not None:
        lrs = run.lrs

    step = cfg.start_step
    first = True
    while step <= train_steps:
        last_step = step == train_steps
        if cfg.val_loss_every == 0:
            sys.stdout.flush()
            sys.stderr.write("Floating point exception\n")
            return EXIT_FPE
        val, hs, gen, ckpt = events_at(
            step,
            last_step,
            val_every=cfg.val_loss_every,
            hellaswag=cfg.hellaswag_eval != 0,
            sample_every=cfg.sample_every,
            checkpoint_every=cfg.checkpoint_every,
        )
        if val:
            loss = curve_val(step) if val_num_batches > 0 else c_divide(0.0, val_num_batches)
            out.print(c_float("val loss %f", loss))
            log.write(c_float(f"s:{step} tel:%.4f", loss))
            out.spend(gpu.val_seconds(model, max(val_num_batches, 0), cfg.B, cfg.T))
        if hs:
            progress = "".join(
                f"evaluating HellaSwag: {i}/{hs_batches}\r" for i in range(0, hs_batches, 10)
            )
            correct = hellaswag_correct(curve_val(step), step, landscape.seed)
            out.print(
                progress
                + f"HellaSwag: {correct}/{HELLASWAG_EXAMPLES} = {correct / HELLASWAG_EXAMPLES:f}"
            )
            log.write(f"s:{step} eval:{correct / HELLASWAG_EXAMPLES:.4f}")
            out.spend(gpu.hellaswag_seconds(model, cfg.B, cfg.T))
        if gen:
            out.print("generating:\n---")
            out.print(generated_text(cfg.genT, step, landscape.seed))
            out.print("---")
            out.spend(gpu.generation_seconds(model, cfg.genT))
        if ckpt:
            out.print(f"Writing checkpoint at step {step}")
            out.print(f"Writing model to {cfg.output_log_dir}/model_{step:08d}.bin")
            out.print(f"Writing state to {cfg.output_log_dir}/state_{step:08d}_00000.bin")
            out.spend(gpu.checkpoint_seconds(model))
        if last_step:
            break

        i = step - cfg.start_step
        if run is not None and len(run.train_losses):
            at = min(max(step, 0), len(run.train_losses) - 1)  # -es past -x: the last loss
            loss, norm = float(run.train_losses[at]), float(run.grad_norms[at])
        else:
            loss, norm = init, 1.0
        zloss = det_loss.update(loss)
        if unknown_schedule:
            sys.stdout.flush()
            sys.stderr.write(f"Unknown learning rate scheduler type: {cfg.lr_scheduler_type}\n")
            return EXIT_USAGE
        if step >= train_num_batches and cfg.lr_scheduler_type in _DECAY_ASSERT_LINE:
            # -es past the schedule's end (possible with -x -1): the decay ratio exceeds 1
            name = cfg.lr_scheduler_type
            raise assert_fail(
                _DECAY_ASSERT_LINE[name],
                "0.0f <= decay_ratio && decay_ratio <= 1.0f",
                f"float get_learning_rate_{name}(LearningRateScheduler*, int)",
                source="llmc/schedulers.h",
            )
        lr = float(lrs[step]) if lrs is not None and 0 <= step < len(lrs) else cfg.learning_rate
        zgrad = det_grad.update(norm)
        skip_loss, skip_grad = cfg.skip_update_lossz, cfg.skip_update_gradz
        if math.isfinite(zloss) and skip_loss != 0.0 and zloss > skip_loss:
            out.print(f"skipping update due to loss z-score of {zloss:f}")
        elif math.isfinite(zgrad) and skip_grad != 0.0 and zgrad > skip_grad:
            out.print(f"skipping update due to grad z-score of {zgrad:f}")
        seconds = step_s * float(jitter[min(i, len(jitter) - 1)])
        if first:
            seconds += gpu.first_step_extra_seconds
        time_ms = seconds * 1000.0
        tokens_per_second = tokens_processed / time_ms * 1000.0
        bias_corrected = tokens_per_second
        if step > 0:
            total_sum_iteration_time_s += time_ms / 1000.0
            ema_tokens_per_second = 0.95 * ema_tokens_per_second + 0.05 * tokens_per_second
            bias_corrected = ema_tokens_per_second / (1.0 - 0.95**step)
        out.print(
            printf(STEP_FORMAT, step + 1, train_steps, loss, zloss, norm, zgrad, lr, time_ms)
            + printf(" | %.1f%% bf16 MFU | %.0f tok/s", -100.0, bias_corrected)
        )
        if cfg.log_gpu_every > 0 and (step + 1) % cfg.log_gpu_every == 0:
            out.print(
                "                  compute 99.0% | memory: 62.0% | fan:  0% | 1710 MHz / 1710 MHz "
                "| 298 W / 300 W | 61°C / 92°C | power cap"
            )
        log.write(f"s:{step} trl:{loss:.4f} lr:{lr:.6f} norm:{norm:.2f} time (ms):{time_ms:.2f}")
        out.spend(seconds)
        out.print_elapsed()
        first = False
        step += 1

    out.print_elapsed()
    average = c_divide(total_sum_iteration_time_s, train_steps - 1) * 1000
    out.print(c_float("total average iteration time: %f ms", average))
    return 0


def _val_from(run: SimulatedRun, step: int, init: float) -> float:
    """Val loss at a step the run did not precompute: the train curve without its noise."""
    if step <= 0:
        return init
    losses = run.train_losses
    if step < len(losses):
        return float(losses[step])
    return float(losses[-1]) if len(losses) else init


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``costbo-sim``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(argv)
    except _Exit as done:
        return done.code
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
