"""``costbo optimize --demo``: the whole loop on a CPU, with the twin and offline text.

It prepares byte-level shards of the default corpus (``costbo.corpus.prepare_data``) in
``<demo dir>/data``, writes ``<demo dir>/costbo.toml`` for the CPU twin (``costbo-twin``) with a
tiny ladder (explicit shapes (1,32,1) .. (2,128,2), 50..400 steps, ``-b 16 -t 128 -d 2048``),
probes the shapes once, runs the same tuning loop as ``costbo optimize``, and ends by writing
the figures and the report (``costbo plot``, ``costbo report``) to ``<demo dir>/report``. The
price is nominal (10 cents per CPU second) so that the budget means something: $20 buys about
200 s of twin runs. Rerunning resumes the study; delete the demo dir to start fresh.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from costbo.config import ConfigError, load_config
from costbo.journal import read_events

DEMO_MODELS = ((1, 32, 1), (1, 64, 1), (2, 96, 2), (2, 128, 2))
DEMO_STEPS = (50, 100, 200, 400)
DEMO_MICRO_BATCH, DEMO_SEQ_LEN, DEMO_TOTAL_BATCH = 16, 128, 2048
# A nominal 10 cents per CPU second, so that the $20 budget buys about 200 s of twin runs (the
# whole demo then stays within minutes on 2 cores) and reads like the homework's dollars.
DEMO_PRICE_PER_HOUR = 360.0
DEMO_BUDGET = 20.0


def demo_config_text(train_glob: str, val_glob: str, vocab_size: int) -> str:
    """The demo's config file (TOML); globs are relative to the demo dir."""
    models = ", ".join(f"[{d}, {c}, {h}]" for d, c, h in DEMO_MODELS)
    steps = ", ".join(str(s) for s in DEMO_STEPS)
    return f"""\
# costbo demo: the CPU twin of train_gpt2cu on byte-level text; written by `costbo optimize --demo`.
# CPU seconds have a nominal price (10 cents each) so that the budget means something; delete
# this folder to start the demo afresh.

[study]
journal = "runs/study.jsonl"
runs_dir = "runs"
budget = {DEMO_BUDGET}
price_per_hour = {DEMO_PRICE_PER_HOUR}
n_initial = 3

[space]
lr = [1e-4, 1e-1]
steps = [{steps}]
models = [{models}]

[llmc]
dir = "."
binary = "costbo-twin"
train_data = {json.dumps(train_glob)}
val_data = {json.dumps(val_glob)}
micro_batch = {DEMO_MICRO_BATCH}
total_batch = {DEMO_TOTAL_BATCH}
seq_len = {DEMO_SEQ_LEN}
warmup = 0.1
val_batches = 20
extra_args = ["-vs", "{vocab_size}"]   # the twin's own flag: byte-level vocabulary

[runner]
silence_timeout = 120.0
kill_grace = 2.0

[probe]
steps = 20

[final]
micro_batch = {DEMO_MICRO_BATCH}
hellaswag = false
val_every = 100
checkpoint_every = 0
"""


def prepare_demo(demo_dir: Path, console: Console) -> Path:
    """Data and config for the demo in ``demo_dir``; returns the config path."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    config_path = demo_dir / "costbo.toml"
    data_dir = demo_dir / "data"
    train = sorted(data_dir.glob("bytes_train_*.bin"))
    val = sorted(data_dir.glob("bytes_val_*.bin"))
    if not train or not val:
        try:
            from costbo.corpus import prepare_data
        except ImportError:
            raise ConfigError(
                "the demo needs costbo.corpus.prepare_data, which this install lacks"
            ) from None
        console.print(f"preparing byte-level shards of the default corpus in {data_dir} ...")
        prepared = prepare_data(data_dir, tokenizer="bytes")
        console.print(
            f"  {prepared.train_tokens:,} train and {prepared.val_tokens:,} val tokens",
            highlight=False,
        )
    if config_path.exists():
        console.print(
            f"resuming the demo study in {demo_dir} (delete that folder to start afresh)",
            highlight=False,
        )
    else:
        config_path.write_text(
            demo_config_text("data/bytes_train_*.bin", "data/bytes_val_*.bin", 256)
        )
        console.print(f"wrote the demo config {config_path}", highlight=False)
    return config_path


def _probed(journal: Path) -> bool:
    if not journal.exists():
        return False
    events, _ = read_events(journal)
    return any(e.get("event") == "cost_seed" for e in events)


def run_demo(
    demo_dir: Path = Path("costbo-demo"),
    *,
    max_runs: int | None = None,
    console: Console | None = None,
) -> int:
    """Prepare, probe (once) and optimize the demo study; returns the CLI exit code."""
    from costbo.optimize import optimize
    from costbo.probe import probe

    console = console or Console()
    config = load_config(prepare_demo(Path(demo_dir), console))
    if not _probed(config.study.journal):
        code = probe(config, console=console)
        if code != 0:
            return code
    summary = optimize(config, max_runs=max_runs, console=console)
    if summary.exit_code == 0:
        write_demo_report(config, console)
        console.print(
            f"demo done: see `costbo status --config {config.path}`; the full-scale run at the "
            f"recommended LR: `costbo final --config {config.path}`",
            highlight=False,
        )
    return summary.exit_code


def write_demo_report(config, console: Console) -> None:
    """The figures (PNG and PDF) and the Markdown report in ``<demo dir>/report``."""
    from costbo.plots import save_all
    from costbo.report import write_report

    out = config.path.parent / "report"
    saved = save_all(config, out / "figures")
    report = write_report(config, out / "report.md", "md")
    skipped = "".join(f"; skipped {name}: {why}" for name, why in saved.skipped.items())
    console.print(
        f"figures in {out / 'figures'} ({len(saved.paths)}), report in {report}{skipped}",
        highlight=False,
        markup=False,
    )
