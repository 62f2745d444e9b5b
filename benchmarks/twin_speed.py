"""How fast the CPU twin trains: steps/s of ``costbo-twin`` as the runner launches it.

Prepares byte-level and GPT-2 shards of the default corpus in a temporary directory, then runs
the twin as a real process on depth 1, width 64, 1 head, B=16, T=128 (-d 2048, no grad
accumulation), with llm.c's default evals (-v 250, -m 20), -n 0 and -s 0:
  - byte data (-vs 256), 300 steps: the goal is <= 10 s wall for the whole process on 2 cores;
  - GPT-2 data (vocab 50257, padded 50304), fewer steps by default (each step is ~50x the work:
    the 64 x 50257 LM head dominates), reported per step and extrapolated to 300.
For each run it prints wall seconds, CPU seconds (user+sys: a busy shared machine distorts it
less), training steps/s from main.log's step times, the median step and the start-up overhead
(wall minus step and eval time, mostly ``import torch``), plus the load average around it.

    .venv/bin/python benchmarks/twin_speed.py [--steps 300] [--gpt2-steps 30] [--threads auto 2]
        [--repeats 5]

With ``--repeats N`` every (build, thread setting) runs N times, interleaved (so that a load
that comes and goes hits them alike), and the median wall time of each is printed at the end.
``--builds`` compares source trees: each run imports ``costbo`` from that folder (PYTHONPATH),
e.g. an earlier commit's twin against this checkout's:

    git archive af6a3d4 costbo | tar -x -C /tmp/old
    .venv/bin/python benchmarks/twin_speed.py --gpt2-steps 0 --threads auto --repeats 5 \
        --builds . /tmp/old
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costbo.corpus import prepare_data

GOAL_SECONDS = 10.0
MODEL = ["-1d", "1", "-1c", "64", "-1h", "1", "-b", "16", "-t", "128", "-d", "2048"]
FIXED = ["-u", "30", "-l", "3e-3", "-n", "0", "-s", "0"]
STEP_MS = re.compile(r"time \(ms\):([0-9.]+)")


def run(
    data, steps: int, threads: str, vocab: list[str], out_dir: Path, build: str | None = None
) -> dict:
    env = dict(os.environ)
    if build is not None:
        env["PYTHONPATH"] = str(Path(build).resolve())
    env.pop("OMP_NUM_THREADS", None)
    if threads != "auto":
        env["OMP_NUM_THREADS"] = threads
    argv = [sys.executable, "-m", "costbo.twin.train", "-id", data.train_pattern]
    argv += ["-iv", data.val_pattern, *vocab, *MODEL, *FIXED, "-x", str(steps), "-o", str(out_dir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"twin failed ({result.returncode}):\n{result.stderr[-2000:]}")
    step_ms = [float(m) for m in STEP_MS.findall((out_dir / "main.log").read_text())]
    device = re.search(r"\| device +\| (.*?) +\|", result.stdout).group(1)
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "train_s": sum(step_ms) / 1000,
        "median_ms": statistics.median(step_ms),
        "steps": len(step_ms),
        "device": device,
    }


def report(name: str, threads: str, r: dict, target_steps: int, load: float) -> None:
    steps_per_s = r["steps"] / r["train_s"]
    overhead = r["wall"] - r["train_s"]
    projected = r["wall"] + (target_steps - r["steps"]) * r["median_ms"] / 1000
    line = (
        f"{name:<6} threads={threads:<4} {r['steps']:>4} steps  wall {r['wall']:6.2f} s  "
        f"cpu {r['cpu']:6.2f} s  train {steps_per_s:6.1f} steps/s  median step "
        f"{r['median_ms']:7.2f} ms  start-up+evals {overhead:5.2f} s"
    )
    if r["steps"] != target_steps:
        line += f"  (~{projected:.0f} s for {target_steps} steps)"
    elif name.startswith("bytes"):
        verdict = "met" if r["wall"] <= GOAL_SECONDS else "NOT met"
        line += f"  goal <= {GOAL_SECONDS:.0f} s: {verdict}"
    print(line + f"  [{r['device']}, load {load:.2f}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps on byte data")
    parser.add_argument("--gpt2-steps", type=int, default=30, help="steps on GPT-2 data (0: skip)")
    parser.add_argument("--threads", nargs="+", default=["auto", "2"], help="'auto' or counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each thread setting")
    parser.add_argument("--builds", nargs="+", help="source trees to import costbo from")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores available: {cores}; load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        byte_data = prepare_data(Path(tmp) / "data", tokenizer="bytes")
        print(
            f"prepare_data bytes: {byte_data.train_tokens + byte_data.val_tokens} tokens "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        builds = args.builds or [None]
        walls: dict[tuple, list[float]] = {(b, t): [] for b in builds for t in args.threads}
        for _ in range(args.repeats):
            for build, threads in walls:
                load = os.getloadavg()[0]
                out = Path(tmp) / f"b{threads}"
                r = run(byte_data, args.steps, threads, ["-vs", "256"], out, build)
                name = "bytes" if build is None else f"bytes {build}"
                report(name, threads, r, args.steps, load)
                walls[(build, threads)].append(r["wall"])
        if args.repeats > 1:
            for (build, threads), w in walls.items():
                print(
                    f"bytes {build or ''} threads={threads:<4} median wall "
                    f"{statistics.median(w):.2f} s over {len(w)} runs (min {min(w):.2f}, "
                    f"max {max(w):.2f})",
                    flush=True,
                )
        if args.gpt2_steps > 0:
            started = time.perf_counter()
            gpt2_data = prepare_data(Path(tmp) / "data", tokenizer="gpt2")
            print(
                f"prepare_data gpt2: {gpt2_data.train_tokens + gpt2_data.val_tokens} tokens "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            for threads in args.threads:
                load = os.getloadavg()[0]
                r = run(gpt2_data, args.gpt2_steps, threads, [], Path(tmp) / f"g{threads}")
                report("gpt2", threads, r, args.steps, load)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
