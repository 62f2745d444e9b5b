"""Fault-injecting stand-ins for train_gpt2cu, written by tests into their tmp dirs.

Each fake is a small Python script (run by this interpreter through its shebang) that takes
llm.c's flags in flag/value pairs, rejects unknown ones with a usage message on stderr and exit 1
as llm.c does, prints llm.c's stdout format, and writes ``main.log`` into its ``-o`` dir. Knobs in
``write_fake_trainer(**faults)`` inject one failure each. Every fake starts a ``sleep`` child in
its process group (pid in ``<run dir>/child.pid``) and records its own pid (the group id) in
``<run dir>/trainer.pid``, so tests can check that nothing of the group outlives the run.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

_SCRIPT = r'''#!{python}
"""A fake train_gpt2cu written by tests/fake_trainers.py."""
import json, math, os, signal, subprocess, sys, time

CONFIG = json.loads({config!r})
KNOWN = {{"-i", "-j", "-e", "-o", "-lg", "-n", "-y", "-b", "-t", "-d", "-r", "-z", "-l", "-u",
          "-q", "-c", "-k", "-x", "-es", "-v", "-m", "-s", "-g", "-h", "-ih", "-it", "-1d",
          "-1c", "-1h", "-id", "-iv", "-a", "-w", "-f", "-ge", "-pn", "-pr", "-pg", "-pm",
          "-sl", "-sg"}}


def usage():
    sys.stderr.write("Usage:   ./train_gpt2cu [options]\nOptions:\n"
                     "  -i <string> train data filename pattern\n"
                     "  -l <float>  learning rate (default = 3e-4f)\n")
    sys.exit(1)


args = sys.argv[1:]
if len(args) % 2:
    usage()
flags = dict(zip(args[::2], args[1::2]))
if any(flag not in KNOWN for flag in flags):
    usage()
lr = float(flags.get("-l", "6e-4"))
steps = int(flags.get("-x", "4725"))
val_every = int(flags.get("-v", "250"))
out_dir = flags.get("-o", "log")
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "trainer.pid"), "w") as f:
    f.write(str(os.getpid()))
child = subprocess.Popen(["sleep", "300"])  # inherits the pipes, as a leaked helper would
with open(os.path.join(out_dir, "child.pid"), "w") as f:
    f.write(str(child.pid))
if CONFIG["ignore_sigterm"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

main_log = open(os.path.join(out_dir, "main.log"), "w")
if not CONFIG["flush"]:
    # Block-buffered like C stdio on a pipe, whatever PYTHONUNBUFFERED says.
    sys.stdout = open(1, "w", buffering=4096, closefd=False)


def say(line, end="\n"):
    sys.stdout.write(line + end)
    if CONFIG["flush"]:
        sys.stdout.flush()


def log(line):
    if CONFIG["write_main_log"]:
        main_log.write(line + "\n")
        main_log.flush()


def loss_at(step):
    """Train loss after `step` updates (0-based step index)."""
    if CONFIG["nan_lr"] is not None and lr >= CONFIG["nan_lr"] and step >= 3:
        return float("nan")
    if CONFIG["diverge_lr"] is not None and lr >= CONFIG["diverge_lr"]:
        # down to ~5.5, then climbs to 9 and stays there: diverged without a nan
        return 10.9 - 0.27 * step if step < 20 else min(9.0, 5.5 + 0.35 * (step - 20))
    return 3.5 + 7.4 * math.exp(-5.0 * step / steps)


def val(step_done):
    loss = CONFIG["final_val_loss"] if step_done == steps else loss_at(step_done) + 0.05
    partial = CONFIG["partial_last_line"] and step_done == steps
    say(f"val loss {{loss:f}}", end="" if partial else "\n")
    log(f"s:{{step_done}} tel:{{loss:.4f}}")


if CONFIG["abort_at_start"]:
    sys.stderr.write("train_gpt2cu: train_gpt2.cu:1688: int main(int, char**): "
                     "Assertion `total_batch_size % tokens_per_fwdbwd == 0' failed.\n")
    sys.stderr.flush()
    os.abort()
say("+-----------------------+----------------------------------------------------+")
say("| Parameter             | Value                                              |")
say(f"| max_steps             | {{steps:<50d}} |")
say("| device                | NVIDIA A10G                                        |")
say("num_parameters: 3335104 => bytes: 6670208")
say("=> setting grad_accum_steps=1")
for i in range(CONFIG["stderr_lines"]):
    sys.stderr.write(f"warning {{i}}: something on stderr\n")
sim_seconds = 0.0
step_seconds = CONFIG["step_seconds"]
val(0)
for step in range(steps):
    if CONFIG["hang_at_step"] == step:
        sys.stdout.flush()
        time.sleep(3600)
    if CONFIG["cuda_error_at_step"] == step:
        say("[CUDA ERROR] at file train_gpt2.cu:1234:")
        say("out of memory")
        sys.stdout.flush()
        sys.exit(1)
    if step_seconds:
        time.sleep(step_seconds)
    loss = loss_at(step)
    ms = 1000.0 * (CONFIG["sim_step_seconds"] or step_seconds or 0.001)
    z = "+nan" if step < 128 else "+0.12"
    say(f"step {{step + 1:4d}}/{{steps}} | loss {{loss:7.6f}} ({{z}}z)| "
        f"norm {{0.5:6.4f}} ({{z}}z)| lr {{lr:.2e}} | {{ms:.2f}} ms | -100.0% bf16 MFU | "
        f"{{65536 / ms * 1000:.0f}} tok/s")
    log(f"s:{{step}} trl:{{loss:.4f}} lr:{{lr:.6f}} norm:{{0.5:.2f}} time (ms):{{ms:.2f}}")
    if CONFIG["sim_step_seconds"]:
        sim_seconds += CONFIG["sim_step_seconds"]
        say(f"sim elapsed: {{sim_seconds:.3f}} s")
    done = step + 1
    if CONFIG["final_val"] and (done % val_every == 0 or done == steps):
        if done == steps and flags.get("-h") == "1":
            progress = "".join(f"evaluating HellaSwag: {{i}}/10042\r" for i in range(0, 50, 10))
            say(f"{{progress}}HellaSwag: 2900/10042 = {{2900 / 10042:f}}")
            log(f"s:{{done}} eval:{{2900 / 10042:.4f}}")
        if done == steps:
            say("generating:\n---\nval loss 0.000001\n---")
        val(done)
if not CONFIG["partial_last_line"]:
    say(f"total average iteration time: {{1000.0 * (step_seconds or 0.001):f}} ms")
sys.stdout.flush()
sys.exit(0)
'''

DEFAULTS = {
    "flush": True,  # line-buffered stdout (as with stdbuf -oL); False: block-buffered
    "step_seconds": 0.0,  # wall seconds per step
    "sim_step_seconds": 0.0,  # > 0: print costbo-sim's "sim elapsed: %.3f s" after each step
    "nan_lr": None,  # lr at or above which the loss is nan from step 4 on
    "diverge_lr": None,  # lr at or above which the loss climbs back to 9 (no nan)
    "hang_at_step": None,  # 0-based step at which it stops printing and sleeps
    "cuda_error_at_step": None,  # 0-based step at which it prints a CUDA error and exits 1
    "ignore_sigterm": False,  # only SIGKILL ends it
    "partial_last_line": False,  # the final val loss line has no newline and nothing follows
    "final_val": True,  # False: exits 0 without a final val loss
    "final_val_loss": 3.6789,
    "stderr_lines": 0,  # lines printed to stderr at startup (floods both pipes)
    "write_main_log": True,  # False: main.log stays empty (faster floods)
    "abort_at_start": False,  # a failed assert: message on stderr, then SIGABRT
}


def write_fake_trainer(directory: Path, name: str = "fake_train_gpt2cu", **faults) -> Path:
    """Write an executable fake trainer into ``directory``; ``faults`` override DEFAULTS."""
    unknown = set(faults) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown fake trainer knobs {sorted(unknown)}: use {sorted(DEFAULTS)}")
    config = json.dumps({**DEFAULTS, **faults})
    path = Path(directory) / name
    path.write_text(_SCRIPT.format(python=sys.executable, config=config))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # fields after the name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def live_leftovers(run_dir: Path, wait_seconds: float = 2.0) -> list[int]:
    """Pids of the fake's child and process group still alive after the run (should be none).

    Waits up to ``wait_seconds`` for SIGKILLed processes to be gone."""
    run_dir = Path(run_dir)
    pids = []
    child_file, trainer_file = run_dir / "child.pid", run_dir / "trainer.pid"
    deadline = time.monotonic() + wait_seconds
    while True:
        pids = []
        if child_file.exists() and _alive(int(child_file.read_text())):
            pids.append(int(child_file.read_text()))
        if trainer_file.exists():
            pids += _group_members(int(trainer_file.read_text()))
        if not pids or time.monotonic() > deadline:
            return sorted(set(pids))
        time.sleep(0.05)
