"""How fast costbo's llm.c log parser reads a realistic train_gpt2cu stdout.

Writes a large stdout (default 1,000,000 lines: step lines with llm.c's exact format, val loss
every 250 steps, HellaSwag results behind their \\r progress, generated-text blocks, startup
tables) to a temporary file, then times, on the same file:
  - LogParser fed 64 KiB byte chunks (as the runner feeds it from a pipe), events into a RunLog;
  - a plain ``for line in f: line.split()`` loop, the floor any Python line parser starts from.
Prints lines/s for both (wall, and per CPU second, which a busy shared machine distorts less)
and their ratio. Goal: >= 200k lines/s for the parser.

    .venv/bin/python benchmarks/parse_speed.py [--lines N] [--repeat R]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time

from costbo.llmc.log_parser import LogParser, RunLog

STARTUP = """+-----------------------+----------------------------------------------------+
| Parameter             | Value                                              |
+-----------------------+----------------------------------------------------+
| train data pattern    | data/fineweb_train_*.bin                           |
| val data pattern      | data/fineweb_val_*.bin                             |
| output log dir        | runs/trial-0001                                    |
| micro batch size B    | 32                                                 |
| sequence length T     | 1024                                               |
| total batch size      | 524288                                             |
| learning rate (LR)    | 6.000000e-04                                       |
| device                | NVIDIA A10G                                        |
| num_parameters        | 124475904                                          |
+-----------------------+----------------------------------------------------+
num_parameters: 124475904 => bytes: 248951808
allocated 237 MiB for model parameters
=> setting grad_accum_steps=16
"""


def write_stdout(path: str, n_lines: int, seed: int = 0) -> int:
    """Write about ``n_lines`` lines of train_gpt2cu stdout to ``path``; return the exact count."""
    rng = random.Random(seed)
    steps = 4725
    written = 0
    with open(path, "w") as f:
        f.write(STARTUP)
        written += STARTUP.count("\n")
        step = 0
        while written < n_lines:
            if step % 250 == 0:
                f.write(f"val loss {3.3 + 7.5 * math.exp(-step / 400) + rng.random() * 0.01:f}\n")
                written += 1
            if step % 1000 == 0 and step:
                progress = "".join(f"evaluating HellaSwag: {i}/10042\r" for i in range(0, 200, 4))
                f.write(f"{progress}HellaSwag: 2900/10042 = {2900 / 10042:f}\n")
                f.write("generating:\n---\nThe quick brown fox\njumps over the lazy dog.\n---\n")
                written += 6
            loss = 3.3 + 7.5 * math.exp(-step / 400) + rng.gauss(0, 0.02)
            z = "+nan" if step < 128 else f"{rng.gauss(0, 1):+.2f}"
            f.write(
                f"step {step % steps + 1:4d}/{steps} | loss {loss:7.6f} ({z}z)| "
                f"norm {abs(rng.gauss(0.4, 0.1)):6.4f} ({z}z)| lr {6e-4:.2e} | "
                f"{8000 + rng.random() * 50:.2f} ms | -100.0% bf16 MFU | "
                f"{65536 + rng.random() * 100:.0f} tok/s\n"
            )
            written += 1
            step += 1
        f.write(f"total average iteration time: {8025.0:f} ms\n")
        written += 1
    return written


def time_parser(path: str) -> tuple[float, float, RunLog]:
    """(wall seconds, CPU seconds, the RunLog) for parsing the file as the runner does."""
    parser, log = LogParser("stdout"), RunLog()
    wall, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        while chunk := f.read(65536):
            log.extend(parser.feed(chunk))
    log.extend(parser.close())
    return time.perf_counter() - wall, time.process_time() - cpu, log


def time_split(path: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for a plain split loop over the same file."""
    wall, cpu = time.perf_counter(), time.process_time()
    fields = 0
    with open(path) as f:
        for line in f:
            fields += len(line.split())
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines to generate (1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per method; best is kept (3)")
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(suffix="-stdout.log")
    os.close(fd)
    try:
        n = write_stdout(path, args.lines)
        size_mb = os.path.getsize(path) / 1e6
        parsed = [time_parser(path) for _ in range(args.repeat)]
        split = [time_split(path) for _ in range(args.repeat)]
    finally:
        os.unlink(path)
    parse_s, parse_cpu = min(p[0] for p in parsed), min(p[1] for p in parsed)
    split_s, split_cpu = min(s[0] for s in split), min(s[1] for s in split)
    log = parsed[0][2]
    print(f"file: {n:,} lines, {size_mb:.1f} MB; best of {args.repeat}; load average {load()}")
    print(
        f"parser (64 KiB byte chunks -> RunLog): {n / parse_s:10,.0f} lines/s wall, "
        f"{n / parse_cpu:10,.0f} lines per CPU second"
    )
    print(
        f"plain 'for line in f: line.split()':   {n / split_s:10,.0f} lines/s wall, "
        f"{n / split_cpu:10,.0f} lines per CPU second"
    )
    wall_ratio, cpu_ratio = parse_s / split_s, parse_cpu / split_cpu
    print(f"parser / split time ratio: {wall_ratio:.2f}x wall, {cpu_ratio:.2f}x CPU")
    print(
        f"parsed: {len(log.train_losses):,} distinct train steps, {len(log.val_losses)} val "
        f"losses, hellaswag {log.hellaswag}, mean step {log.mean_step_ms} ms"
    )
    verdict = "meets" if n / parse_s >= 200_000 else "MISSES"
    print(f"{verdict} the 200k lines/s goal (wall; on a shared machine compare the CPU figures)")


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
