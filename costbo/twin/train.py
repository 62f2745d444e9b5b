"""costbo-twin: llm.c's train_gpt2cu as a CPU PyTorch program with the same flags and output.

The twin trains the same GPT-2 (costbo/twin/model.py) with llm.c's recipe (init seeded 42,
AdamW 0.9/0.95/1e-8 with decay on 2-D weights, grad-norm clip 1.0, the -k schedules, grad
accumulation over -d/(B*T) micro-batches, the same shuffled batches) and prints what the real
trainer prints: the start-up table, one ``step`` line per update, ``val loss`` lines, main.log and
run_parameters.txt in -o. Its asserts abort (SIGABRT, 134 in a shell) and its errors exit 1 where
llm.c's do. One flag of its own, ``-vs``, sets the vocabulary (e.g. 256 for byte-level shards).
Not mirrored: bf16 (the twin trains in fp32), checkpoints (-n is accepted and ignored), resuming
from llm.c checkpoints (-y), -e model files and HellaSwag (skipped with a warning).
See docs/twin.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, fields

from costbo.gpt2 import MAX_SEQ_LEN, VOCAB_SIZE, shape_problem
from costbo.llmc.flags import Config, Flag, UsageError, atof, atoi, parse_argv, with_flags
from costbo.tokenizers import BYTES_EOT, GPT2_EOT


# ---------------------------------------------------------------------------------------------
# the command line: llm.c's flag table (costbo/llmc/flags.py) plus the twin's own -vs
@dataclass
class TwinConfig(Config):
    vocab_size: int = VOCAB_SIZE  # -vs


FLAGS = with_flags(
    [
        Flag(
            "-vs", "vocab_size", atoi, False, "TWIN ONLY: vocabulary size, e.g. 256 for byte shards"
        )
    ],
    before="-v",  # else llm.c's loose -v takes it
)
# what the twin does with the flags it does not honour as llm.c does, for its usage text
NOTES = {
    "-ih": "HellaSwag file (the twin never evaluates it)",
    "-o": "output dir: main.log, run_parameters.txt",
    "-n": "checkpoint every N steps: ignored by the twin",
    "-y": "resume: only from an empty -o (the twin writes no checkpoints)",
    "-lg": "GPU info every N steps: ignored",
    "-ge": "gelu fusion: ignored",
    "-f": "TF32 matmuls on CUDA (1)",
    "-w": "fp32 master weights: ignored (always fp32)",
    "-z": "ZeRO stage: ignored (one process)",
    "-r": "recompute in backward: ignored",
    "-h": "HellaSwag eval (1): skipped with a warning",
    "-e": "init from a .bin model: not supported by the twin",
    **dict.fromkeys(("-pi", "-pf", "-ps", "-pn", "-pr", "-pg"), "multi-GPU: ignored"),
    "-nk": "checkpoints kept: ignored",
    "-nm": "major checkpoints: ignored",
}


def parse_flags(argv: list[str]) -> TwinConfig:
    """llm.c's flag/value pairs; a value that is not a number reads as 0 (atoi/atof)."""
    return parse_argv(argv, TwinConfig(), FLAGS)


def usage() -> str:
    defaults = {f.name: f.default for f in fields(TwinConfig)}
    lines = ["Usage:   costbo-twin [options]", "Options (flag/value pairs, as train_gpt2cu):"]
    for flag in FLAGS:
        kind = {atoi: "<int>", atof: "<float>"}.get(flag.parse, "<string>")
        meaning = NOTES.get(flag.spelling, flag.help)
        lines.append(f"  {flag.spelling:<4}{kind:<9} {meaning} (default = {defaults[flag.field]})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# how llm.c dies: asserts abort, a division by zero raises SIGFPE, errors exit 1
def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def llmc_assert(ok: bool, expression: str) -> None:
    """A failing C assert: message on stderr, then SIGABRT (exit 134 in a shell) like llm.c."""
    if not ok:
        _die(signal.SIGABRT, f"costbo-twin: Assertion `{expression}' failed.")


def _die(sig: signal.Signals, message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an intended crash needs no core file
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os.abort()  # not reached unless the signal was blocked


class TwinError(Exception):
    """An error train_gpt2cu reports with exit 1: ``stdout`` is llm.c's own text, if any."""

    def __init__(self, message: str, stdout: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the twin with train_gpt2cu's command line; returns the exit status (0 or 1).

    With ``argv`` None (the console script and ``python -m costbo.twin.train``) the process ends
    in here, once its output is flushed, with ``os._exit``: the interpreter's teardown of torch
    took 0.3-0.6 s, 3-6% of a 10-second run, and a C program's exit does not pay it either.
    """
    status = _run(sys.argv[1:] if argv is None else list(argv))
    if argv is None:
        with contextlib.suppress(OSError, ValueError):  # a reader that went away: nothing to say
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)
    return status


def _run(argv: list[str]) -> int:
    try:
        config = parse_flags(argv)
    except UsageError:
        sys.stderr.write(usage())
        return 1
    # OpenMP threads that sleep rather than spin while waiting: on a shared machine a spinning
    # thread waiting for a busy core made steps 3x slower (set before torch loads OpenMP)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _keep_freed_memory()
    try:
        return train(config)
    except TwinError as exc:
        sys.stdout.write(exc.stdout)
        sys.stdout.flush()
        sys.stderr.write(f"costbo-twin: {exc}\n")
        return 1
    except BrokenPipeError:
        # the reader went away (e.g. a runner killed its pipe): stop quietly, like a C program
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    Every step frees and reallocates the same few MB of activations and gradients. With glibc's
    defaults, blocks of that size are mmap'ed and unmapped (or the heap top trimmed) each time, so
    every step paid ~1,500 page faults on fresh zeroed pages: 250k faults and 0.8 s of system
    time in a 10-second run of depth 1, width 64. Kept, they are reused: ~1 fault a step, for the
    price of holding the peak memory, which the process needs anyway. Tensors above 32 MiB (the
    largest threshold glibc documents) are still mmap'ed. No effect where libc is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def _check_before_start(c: TwinConfig) -> int:
    """llm.c's start-up asserts, then the twin's own checks; returns grad_accum_steps."""
    llmc_assert(c.warmup_iterations >= 0, "warmup_iterations >= 0")
    if c.max_steps != -1:
        llmc_assert(c.early_stopping_steps <= c.max_steps, "early_stopping_steps <= max_steps")
    llmc_assert(len(c.output_log_dir.encode()) < 400, "strlen(output_log_dir) < 400")
    tokens_per_fwdbwd = c.B * c.T
    if c.total_batch_size == -1:
        c.total_batch_size = tokens_per_fwdbwd
    if tokens_per_fwdbwd == 0:
        _die(signal.SIGFPE, "costbo-twin: division by zero: B*T = 0 (-b or -t is 0 or no number)")
    llmc_assert(
        c.total_batch_size % tokens_per_fwdbwd == 0, "total_batch_size % tokens_per_fwdbwd == 0"
    )
    grad_accum_steps = int(c.total_batch_size / tokens_per_fwdbwd)
    # below: shapes llm.c would silently mishandle or crash on, refused before any output
    if c.B < 1 or c.T < 1 or grad_accum_steps < 1:
        raise TwinError(
            f"micro batch B={c.B}, T={c.T} and total batch -d {c.total_batch_size} must be "
            "positive with -d a multiple of B*T"
        )
    problem = shape_problem(c.depth, c.channels, c.heads)
    if problem:
        raise TwinError(f"{problem} (flags -1d -1c -1h)")
    if c.vocab_size < 1 or c.vocab_size > 2**16:
        raise TwinError(
            f"-vs {c.vocab_size}: the vocabulary size must be in [1, 65536] (shards hold "
            "uint16 ids): 50257 for GPT-2 tokens, 256 for byte-level shards"
        )
    if c.load_filename is not None and c.load_filename.endswith(".bin"):
        raise TwinError(
            f"-e {c.load_filename}: the twin cannot load llm.c model files; it trains from "
            "scratch with -1d -1c -1h (drop -e)"
        )
    if c.resume == 1 and _find_max_step(c.output_log_dir) != -1:
        raise TwinError(
            f"-y 1: {c.output_log_dir} holds llm.c checkpoints (DONE_*), which the twin cannot "
            "resume from; use a fresh -o or -y 0"
        )
    return grad_accum_steps


def _find_max_step(log_dir: str) -> int:
    try:
        names = os.listdir(log_dir)
    except OSError:
        return -1
    steps = [atoi(n[5:]) for n in names if n.startswith("DONE_")]
    return max(steps, default=-1)


def _pick_device(c: TwinConfig):
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.cuda.get_device_name()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(_cpu_threads(c))
    return torch.device("cpu"), f"CPU ({torch.get_num_threads()} threads, costbo twin)"


def _cpu_threads(c: TwinConfig) -> int:
    """One thread for tiny models, up to 8 for big ones (OMP_NUM_THREADS overrides this).

    A micro-step under ~2 GFLOP (e.g. depth 1, width 64, byte vocabulary, B=16, T=128: 1.6
    GFLOP) gains ~15% from a second free core, but on a shared machine a second thread waiting
    for a busy core made the median step 2-7x slower (measured 53 ms -> 95-400 ms).
    """
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    flops = 6 * num_parameters_for(c.depth, c.channels, c.vocab_size) * c.B * c.T
    return 1 if flops < 2e9 else max(1, min(available, 8))


def padded_vocab_size(vocab_size: int) -> int:
    """The embedding rows: the vocabulary rounded up to a multiple of 64 (50257 -> 50304)."""
    return -(-vocab_size // 64) * 64


def num_parameters_for(depth: int, channels: int, vocab_size: int = VOCAB_SIZE) -> int:
    """llm.c's parameter count with the twin's vocabulary: (Vp + 1024) C + L (12 C^2 + 13 C) + 2 C.

    Equals :func:`costbo.gpt2.num_parameters` for GPT-2's vocabulary (Vp = 50304).
    """
    c = channels
    return (padded_vocab_size(vocab_size) + MAX_SEQ_LEN) * c + depth * (12 * c * c + 13 * c) + 2 * c


class OutlierDetector:
    """llm.c's z-score of a value against the previous 128 (nan until the window is full)."""

    WINDOW = 128

    def __init__(self) -> None:
        self.buffer: list[float] = []
        self.index = 0
        self.sum = 0.0
        self.sum_sq = 0.0

    def update(self, value: float) -> float:
        if len(self.buffer) < self.WINDOW:
            self.buffer.append(value)
            self.sum += value
            self.sum_sq += value * value
            return math.nan
        old = self.buffer[self.index]
        self.buffer[self.index] = value
        self.sum += value - old
        self.sum_sq += value * value - old * old
        self.index = (self.index + 1) % self.WINDOW
        mean = self.sum / self.WINDOW
        variance = self.sum_sq / self.WINDOW - mean * mean
        std = math.sqrt(variance) if variance >= 0 else math.nan
        return 0.0 if std == 0.0 else (value - mean) / std


def _row(name: str, fmt: str, value) -> str:
    return f"| {name:<21} | {fmt % value} |"


RULE = "+-----------------------+----------------------------------------------------+"
# llm.c's printf formats, verbatim (C and Python %-formatting agree on these)
STEP_LINE = (
    "step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e | %.2f ms | "
    "%.1f%% bf16 MFU | %.0f tok/s"
)
TRAIN_LOG_LINE = "s:%d trl:%.4f lr:%.6f norm:%.2f time (ms):%.2f\n"
VAL_LOG_LINE = "s:%d tel:%.4f\n"


def _append(path: str, line: str) -> None:
    # llm.c's logger opens, appends and closes main.log for every line: a reader sees each line
    with open(path, "a") as f:
        f.write(line)


def train(c: TwinConfig) -> int:
    """The whole run, top to bottom in llm.c's order; returns 0 (errors raise TwinError)."""
    grad_accum_steps = _check_before_start(c)
    import torch

    from costbo.llmc.shards import ShardError
    from costbo.twin.adamw import AdamW
    from costbo.twin.data import ShardLoader, TooFewTokens
    from costbo.twin.model import GPT
    from costbo.twin.sampling import TokenizerFileError, generate, read_tokenizer_file
    from costbo.twin.schedule import ScheduleAssertion, UnknownSchedule, learning_rate

    device, device_name = _pick_device(c)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(c.override_enable_tf32)
        torch.backends.cudnn.allow_tf32 = bool(c.override_enable_tf32)
    if c.overfit_single_batch == 1:
        c.train_data_pattern = c.val_data_pattern
    gelu_fusion = 0 if c.gelu_fusion == -1 else c.gelu_fusion
    table = [  # also written to run_parameters.txt
        RULE,
        "| Parameter             | Value                                              |",
        RULE,
        _row("train data pattern", "%-50s", c.train_data_pattern),
        _row("val data pattern", "%-50s", c.val_data_pattern),
        _row("output log dir", "%-50s", c.output_log_dir),
        _row("checkpoint_every", "%-50d", c.checkpoint_every),
        _row("resume", "%-50d", c.resume),
        _row("micro batch size B", "%-50d", c.B),
        _row("sequence length T", "%-50d", c.T),
        _row("total batch size", "%-50d", c.total_batch_size),
        _row("LR scheduler", "%-50s", c.lr_scheduler_type),
        _row("learning rate (LR)", "%-50e", _f32(c.learning_rate)),
        _row("warmup iterations", "%-50d", c.warmup_iterations),
        _row("final LR fraction", "%-50e", _f32(c.final_learning_rate_frac)),
        _row("weight decay", "%-50e", _f32(c.weight_decay)),
        _row("skip update lossz", "%-50f", _f32(c.skip_update_lossz)),
        _row("skip update gradz", "%-50f", _f32(c.skip_update_gradz)),
        _row("max_steps", "%-50d", c.max_steps),
        _row("early_stopping_steps", "%-50d", c.early_stopping_steps),
        _row("val_loss_every", "%-50d", c.val_loss_every),
        _row("val_max_steps", "%-50d", c.val_max_steps),
        _row("sample_every", "%-50d", c.sample_every),
        _row("genT", "%-50d", c.genT),
        _row("overfit_single_batch", "%-50d", c.overfit_single_batch),
        _row("use_master_weights", "%-50s", "enabled" if c.use_master_weights else "disabled"),
        _row("gelu_fusion", "%-50d", gelu_fusion),
        _row("recompute", "%-50d", c.recompute),
        RULE,
        _row("device", "%-50s", device_name),
        _row("peak TFlops", "%-50.1f", -1.0),
        _row(
            "precision",
            "%-50s",
            "TF32" if device.type == "cuda" and c.override_enable_tf32 else "FP32",
        ),
        RULE,
    ]
    for line in table:
        say(line)

    vocab_size, padded = c.vocab_size, padded_vocab_size(c.vocab_size)
    torch.manual_seed(42)
    model = GPT(c.depth, c.channels, c.heads, vocab_size, padded).to(device)
    num_parameters = sum(p.numel() for p in model.parameters())
    model_rows = [
        _row(
            "weight init method", "%-50s", "(null)" if c.load_filename is None else c.load_filename
        ),
        _row("max_sequence_length T", "%-50d", MAX_SEQ_LEN),
        _row("vocab_size V", "%-50d", vocab_size),
        _row("padded_vocab_size Vp", "%-50d", padded),
        _row("num_layers L", "%-50d", c.depth),
        _row("num_heads NH", "%-50d", c.heads),
        _row("channels C", "%-50d", c.channels),
        _row("num_parameters", "%-50d", num_parameters),
        RULE,
    ]
    for line in model_rows:
        say(line)

    try:
        train_loader = ShardLoader(
            c.train_data_pattern, c.B, c.T, c.overfit_single_batch != 1, vocab_size, device
        )
        val_loader = ShardLoader(c.val_data_pattern, c.B, c.T, False, vocab_size, device)
    except ShardError as exc:
        raise TwinError(str(exc), stdout=exc.llmc_text) from exc
    except TooFewTokens as exc:
        _die(
            signal.SIGABRT,
            f"costbo-twin: {exc}\ncostbo-twin: Assertion `shard_ntok >= "
            "(int64_t) (num_processes * B * T + 1)' failed.",
        )
    tokens_per_fwdbwd = c.B * c.T
    train_num_batches = c.max_steps
    if train_num_batches == -1:
        train_num_batches = train_loader.num_tokens // c.total_batch_size
    val_num_batches = c.val_max_steps
    if val_num_batches == -1:
        val_num_batches = val_loader.num_tokens // tokens_per_fwdbwd
    batch_rows = [
        _row("train_num_batches", "%-50d", train_num_batches),
        _row("val_num_batches", "%-50d", val_num_batches),
        RULE,
    ]
    for line in batch_rows:
        say(line)
    hellaswag_available = os.access(c.hellaswag_path, os.F_OK)
    say(_row("run hellaswag", "%-50s", "no"))
    say(RULE)
    say(_row("num_processes", "%-50d", 1))
    say(_row("zero_stage", "%-50d", 0))
    say(RULE)
    if not hellaswag_available:
        say(f"HellaSwag eval not found at {c.hellaswag_path}, skipping its evaluation")
    elif c.hellaswag_eval:
        say(f"HellaSwag eval is not implemented by the costbo twin, skipping {c.hellaswag_path}")
    param_bytes = 4 * num_parameters  # the twin keeps fp32 weights (llm.c: 2 bytes, bf16)
    say(f"num_parameters: {num_parameters} => bytes: {param_bytes}")
    say(f"allocated {param_bytes // 2**20} MiB for model parameters")
    say(
        f"batch_size B={c.B} * seq_len T={c.T} * num_processes=1 and "
        f"total_batch_size={c.total_batch_size}"
    )
    say(f"=> setting grad_accum_steps={grad_accum_steps}")

    # run_parameters.txt (appended), then main.log (wiped unless resuming), as llm.c
    log_dir = c.output_log_dir
    if not os.path.exists(log_dir):
        with contextlib.suppress(OSError):  # llm.c ignores this mkdir's failure: see below
            os.mkdir(log_dir, 0o700)
    try:
        with open(os.path.join(log_dir, "run_parameters.txt"), "a") as f:
            f.write("\n".join(table + model_rows + batch_rows) + "\n")
    except OSError:
        sys.stderr.write(f"Error opening log file: {log_dir}/stats.txt\n")
    if not os.path.exists(log_dir):
        try:
            os.mkdir(log_dir, 0o700)
        except OSError as exc:
            raise TwinError(
                f"cannot create the output dir {log_dir} ({exc.strerror}): create its parent "
                "or fix -o",
                stdout=f"ERROR: could not create directory: {log_dir}\n",
            ) from exc
        say(f"created directory: {log_dir}")
    main_log = os.path.join(log_dir, "main.log")
    try:
        if c.resume == 0:
            open(main_log, "w").close()
        open(main_log, "a").close()
    except OSError as exc:
        raise TwinError(f"cannot write {main_log}: {exc.strerror}; fix -o") from exc

    try:
        tokenizer = read_tokenizer_file(c.tokenizer_path)
    except TokenizerFileError as exc:
        if exc.abort:
            _die(signal.SIGABRT, f"costbo-twin: {exc}")
        raise TwinError(str(exc)) from exc
    if tokenizer is None:
        say("---")
        say(f"WARNING: Failed to open the tokenizer file {c.tokenizer_path}")
        say("---")
        # llm.c starts samples with the tokenizer's EOT; without the file, the vocabulary's own
        token_table, eot = (
            None,
            (GPT2_EOT if vocab_size > GPT2_EOT else min(BYTES_EOT, vocab_size - 1)),
        )
    else:
        token_table, eot = tokenizer
    say(f"allocating {param_bytes // 2**20} MiB for parameter gradients")
    say(f"allocating {param_bytes >> 20} MiB for AdamW optimizer state m")
    say(f"allocating {param_bytes >> 20} MiB for AdamW optimizer state v")
    if c.T < MAX_SEQ_LEN:
        for line in (
            "!!!!!!!!",
            "WARNING:",
            f"- The training sequence length is: T={c.T} (set with -t)",
            f"- The model's max sequence length is: max_seq_len={MAX_SEQ_LEN}",
            "You are attempting to train with a sequence length shorter than the model's max.",
            "This will lead to unused parameters in the wpe position embedding weights.",
            "If you know what you're doing you can ignore this warning.",
            "If you're like ???, you are most likely misconfiguring your training run.",
            "---> HINT: If you're training GPT-2 use -t 1024. If GPT-3, use -t 2048.",
            "!!!!!!!!",
        ):
            say(line)
    llmc_assert(c.T <= MAX_SEQ_LEN, "T <= model.config.max_seq_len")

    optimizer = AdamW(*model.parameters_by_decay(), weight_decay=_f32(c.weight_decay))
    loss_detector, norm_detector = OutlierDetector(), OutlierDetector()
    total_sum_iteration_time_s = 0.0
    ema_tokens_per_second = 0.0
    train_steps = c.early_stopping_steps if c.early_stopping_steps != -1 else train_num_batches
    step = c.start_step
    while step <= train_steps:
        last_step = step == train_steps
        if c.val_loss_every == 0:
            _die(signal.SIGFPE, "costbo-twin: division by zero: -v 0 (val_loss_every)")
        if step % c.val_loss_every == 0 or last_step:
            val_loss = _evaluate(model, val_loader, val_num_batches)
            say(f"val loss {val_loss:f}")
            _append(main_log, VAL_LOG_LINE % (step, val_loss))
        if c.sample_every > 0 and ((step > 0 and step % c.sample_every == 0) or last_step):
            generate(model, eot, c.genT, c.T, token_table)
        if last_step:
            break

        # ---- one optimization step on total_batch_size tokens
        if c.overfit_single_batch == 1:
            train_loader.reset()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for _ in range(grad_accum_steps):
            x, y = train_loader.next_batch()
            loss = model(x, y)
            (loss / grad_accum_steps).backward()
            loss_sum += loss.detach()
        # the one host sync of the step: llm.c needs both values on the CPU here as well
        both = torch.stack([loss_sum / grad_accum_steps, optimizer.grad_norm()]).tolist()
        mean_loss, grad_norm = both
        zloss = loss_detector.update(mean_loss)
        try:
            lr = learning_rate(
                c.lr_scheduler_type,
                step,
                c.learning_rate,
                c.warmup_iterations,
                train_num_batches,
                c.final_learning_rate_frac,
            )
        except UnknownSchedule as exc:
            sys.stdout.flush()
            sys.stderr.write(f"{exc}\n")
            return 1
        except ScheduleAssertion as exc:
            _die(signal.SIGABRT, f"costbo-twin: {exc}")
        zgrad = norm_detector.update(grad_norm)
        if math.isfinite(zloss) and c.skip_update_lossz != 0.0 and zloss > c.skip_update_lossz:
            say(f"skipping update due to loss z-score of {zloss:f}")
        elif math.isfinite(zgrad) and c.skip_update_gradz != 0.0 and zgrad > c.skip_update_gradz:
            say(f"skipping update due to grad z-score of {zgrad:f}")
        else:
            # clip the global norm at 1.0 (a nan norm clips nothing, as in C)
            optimizer.step(lr, t=step + 1, grad_scale=1.0 / grad_norm if grad_norm > 1.0 else 1.0)
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed_ms = (time.perf_counter() - started) * 1000.0

        tokens_per_second = tokens_per_fwdbwd * grad_accum_steps / elapsed_ms * 1000.0
        shown_tokens_per_second = tokens_per_second
        if step > 0:  # the first step is warm-up, as in llm.c
            total_sum_iteration_time_s += elapsed_ms / 1000.0
            ema_tokens_per_second = 0.95 * ema_tokens_per_second + 0.05 * tokens_per_second
            shown_tokens_per_second = ema_tokens_per_second / (1.0 - 0.95**step)
        say(
            STEP_LINE
            % (
                step + 1,
                train_steps,
                mean_loss,
                zloss,
                grad_norm,
                zgrad,
                lr,
                elapsed_ms,
                -100.0,
                shown_tokens_per_second,
            )
        )
        _append(main_log, TRAIN_LOG_LINE % (step, mean_loss, lr, grad_norm, elapsed_ms))
        step += 1
    # llm.c divides by (train_steps - 1) whatever happened: 0/0 prints -nan, as C on x86
    denominator = train_steps - 1
    if denominator == 0:
        say("total average iteration time: -nan ms")
    else:
        say(f"total average iteration time: {total_sum_iteration_time_s / denominator * 1000:f} ms")
    return 0


def _f32(value: float) -> float:
    """``value`` rounded to float32, as llm.c stores -l, -q, -c, -sl, -sg."""
    import numpy as np

    return float(np.float32(value))


def _evaluate(model, loader, num_batches: int) -> float:
    """Mean loss over the first ``num_batches`` val batches (float32 sum, as llm.c)."""
    import torch

    loader.reset()
    total = 0.0
    if num_batches <= 0:
        return math.nan if num_batches == 0 else -0.0
    with torch.no_grad():
        losses = [model(*loader.next_batch()) for _ in range(num_batches)]
        total = float(torch.stack(losses).sum())
    return total / num_batches


if __name__ == "__main__":
    sys.exit(main())
