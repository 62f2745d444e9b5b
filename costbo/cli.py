"""The ``costbo`` command: init, probe, optimize, status, recommend, final, plot, report, pull,
sync, prepare-data. Every subcommand reads one TOML config (``--config``, default ./costbo.toml);
``docs/cli.md`` is the reference.

Exit codes: 0 done; 1 a run or an S3 transfer failed; 2 a bad config, journal or argument;
130 stopped by Ctrl-C (the current run is recorded as interrupted; rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from costbo.config import (
    DEFAULT_CONFIG_NAME,
    Config,
    ConfigError,
    load_config,
    write_text_file,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# costbo.plots.FIGURES's names, listed here so that `--help` need not import matplotlib
PLOT_NAMES = ("posterior_at_target", "rung_slices", "optimum_drift", "spend_history",
              "learning_curves", "cost_model_fit")  # fmt: skip


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG_NAME,
        metavar="FILE",
        help=f"the TOML config (default: ./{DEFAULT_CONFIG_NAME}; write one with `costbo init`)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="costbo",
        description=(
            "Choose the max learning rate of a full-scale llm.c GPT-2 run on a dollar budget, "
            "by cost-aware multi-fidelity Bayesian optimization over cheap runs."
        ),
        epilog="Start with `costbo init`; try it all on a CPU with `costbo optimize --demo`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "init",
        help="write a commented config with the homework's defaults",
        description="Write a commented TOML config with the homework's defaults "
        "(llm.c dir, data globs, $1.50/hour, $20 budget, 4725 steps x width 768).",
    )
    p.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_CONFIG_NAME,
        metavar="PATH",
        help=f"where to write it (default: ./{DEFAULT_CONFIG_NAME})",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = sub.add_parser(
        "probe",
        help="time each model shape for 20 steps; price every rung",
        description="Run each model shape of the search space for 20 steps, take "
        "the worst step time among steps 10-19 (the course's method) and the time "
        "to the first step, print and write the cost table, and seed the study's "
        "cost model. Probe runs are outside the tuning budget.",
    )
    _add_config(p)

    p = sub.add_parser(
        "optimize",
        help="run the tuning loop until the budget is spent",
        description="Ask for a run, run it, tell the outcome; repeat until the "
        "budget is spent or --max-runs. Rerun to resume. Ctrl-C stops the current "
        "run, records it as interrupted with its cost and exits.",
    )
    _add_config(p)
    p.add_argument("--max-runs", type=int, metavar="N", help="stop after N runs (this invocation)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="ignore --config: prepare data and a tiny study in ./costbo-demo and run "
        "it with the CPU twin (costbo-twin)",
    )
    p.add_argument("--demo-dir", default="costbo-demo", metavar="DIR", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "status",
        help="runs table, money spent and left, recommendation",
        description="Show every run, the money spent and remaining, and the "
        "current recommendation. Read-only: works while optimize runs.",
    )
    _add_config(p)

    p = sub.add_parser(
        "recommend",
        help="the LR to use at full scale, with its interval",
        description="Print the recommended max LR for the full-scale run with its "
        "90%% interval and predicted val loss.",
    )
    _add_config(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: lr, lr_low, lr_high, val_loss, val_loss_std, spent, budget",
    )

    p = sub.add_parser(
        "final",
        help="run the full-scale run at the recommended LR",
        description="Launch (or resume from its last checkpoint) the full-scale "
        "run at the recommended LR with the course's final settings, outside the "
        "tuning budget; journal predicted and actual val loss and HellaSwag.",
    )
    _add_config(p)

    p = sub.add_parser(
        "plot",
        help="figures of the study (PNG and PDF)",
        description="Write the study's figures as PNG and PDF: the posterior at full "
        "scale, the slice at each rung, the drift of the optimum, spend and the "
        "recommendation run by run, learning curves, and the cost model. Read-only: "
        "works while optimize runs.",
    )
    _add_config(p)
    p.add_argument(
        "--out", metavar="DIR", help="folder for the figures (default: <runs dir>/figures)"
    )
    p.add_argument(
        "--history-points",
        type=int,
        default=12,
        metavar="N",
        help="recommendations to recompute for the spend figure (one model fit each; default 12)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=PLOT_NAMES,
        metavar="NAME",
        help="write only these figures: " + ", ".join(PLOT_NAMES),
    )

    p = sub.add_parser(
        "report",
        help="experiment table, costs and the justified LR",
        description="Print (or write) the course's experiment table, the probe's cost "
        "analysis, the total expenditure and the selected LR with a justification "
        "from the model. CSV holds the experiment table only.",
    )
    _add_config(p)
    p.add_argument(
        "--format", choices=("md", "csv", "tex"), default="md", help="output format (default: md)"
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of printing")

    p = sub.add_parser(
        "pull",
        help="download a study from S3 (for plots elsewhere)",
        description="Download s3://<bucket>/experiments/<cluster>/ (journal, run "
        "logs, cost table). Local files that differ are kept unless --force.",
    )
    _add_config(p)
    p.add_argument("--dest", metavar="DIR", help="where to put it (default: the runs dir)")
    p.add_argument("--force", action="store_true", help="overwrite local files that differ")

    p = sub.add_parser(
        "sync",
        help="upload runs still waiting for S3",
        description="Upload the runs and files that an earlier S3 failure left "
        "in the outbox (optimize also retries after every run).",
    )
    _add_config(p)

    p = sub.add_parser(
        "prepare-data",
        help="write llm.c token shards from text (offline)",
        description="Tokenize text into llm.c train/val shards "
        "(<out>/<tokenizer>_{train,val}_NNNNNN.bin). Without TEXT files, uses the "
        "default offline corpus (Python's own documentation).",
    )
    p.add_argument("text", nargs="*", metavar="TEXT", help="UTF-8 text files, one document each")
    p.add_argument("--out", default="data", metavar="DIR", help="output folder (default: data)")
    p.add_argument(
        "--tokenizer",
        choices=("bytes", "gpt2"),
        default="bytes",
        help="bytes: ids < 256 (twin's -vs 256); gpt2: GPT-2 BPE (default: bytes)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        metavar="F",
        help="share of tokens for val (default 0.1)",
    )
    p.add_argument(
        "--shard-tokens",
        type=int,
        default=None,
        metavar="N",
        help="tokens per shard at most (default 100000000)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    console = _console()
    err_console = _console(stderr=True)
    try:
        return COMMANDS[args.command](args, console)
    except ConfigError as err:
        err_console.print(f"costbo {args.command}: error: {err}", highlight=False, markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print(f"costbo {args.command}: stopped by Ctrl-C", highlight=False)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - shown as one line, not a traceback
        from costbo.journal import JournalError

        if isinstance(err, JournalError):
            err_console.print(f"costbo {args.command}: error: {err}", highlight=False, markup=False)
            return EXIT_USAGE
        from costbo.s3 import S3Error

        if isinstance(err, S3Error):
            err_console.print(
                f"costbo {args.command}: S3 error: {err}", highlight=False, markup=False
            )
            return EXIT_FAILED
        raise


def _console(stderr: bool = False) -> Console:
    # Long lines stay whole (paths, commands to copy); off a terminal, tables get room.
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=160)
    return console


def _config(args) -> Config:
    return load_config(Path(args.config))


def cmd_init(args, console: Console) -> int:
    from costbo.config import write_default_config

    path = write_default_config(args.path, force=args.force)
    console.print(
        f"wrote {path}: set [llmc] dir to your llm.c checkout (see llm.c/README.md), then run "
        f"`costbo probe --config {path}` and `costbo optimize --config {path}`",
        highlight=False,
        markup=False,
    )
    return EXIT_OK


def cmd_probe(args, console: Console) -> int:
    from costbo.probe import probe

    return probe(_config(args), console=console)


def cmd_optimize(args, console: Console) -> int:
    if args.demo:
        from costbo.demo import run_demo

        return run_demo(Path(args.demo_dir), max_runs=args.max_runs, console=console)
    from costbo.optimize import optimize

    return optimize(_config(args), max_runs=args.max_runs, console=console).exit_code


def cmd_status(args, console: Console) -> int:
    from costbo.journal import read_events

    config = _config(args)
    study = config.load_study()
    table = Table(title=f"study {config.study.journal}")
    for column in (
        "id",
        "lr",
        "steps",
        "model",
        "status",
        "val loss",
        "seconds",
        "$",
        "predicted $",
        "note",
    ):
        table.add_column(
            column, justify="left" if column in ("model", "status", "note") else "right"
        )
    for t in study.trials:
        note = t.error or ""
        table.add_row(
            str(t.id),
            f"{t.lr:.3g}",
            str(t.steps),
            str(t.model),
            t.status.value,
            "-" if t.val_loss is None else f"{t.val_loss:.4f}",
            "-" if t.seconds is None else f"{t.seconds:.1f}",
            "-" if t.cost is None else f"{t.cost:.4f}",
            f"{t.predicted_cost:.4f}",
            note if len(note) <= 60 else note[:57] + "...",
        )
    console.print(table)
    pending = sum(not t.is_finished for t in study.trials)
    left = max(study.budget - study.spent, 0.0)
    console.print(
        f"spent ${study.spent:.2f} of ${study.budget:.2f}; ${left:.2f} left"
        + (f" ({pending} run(s) pending)" if pending else ""),
        highlight=False,
    )
    try:
        console.print(f"recommendation: {study.recommend()}", highlight=False)
    except ValueError:
        console.print("recommendation: none yet (no run has finished or diverged)")
    events, _ = read_events(config.study.journal)
    for event in events:
        if event.get("event") == "final":
            loss = event.get("val_loss")
            console.print(
                f"final run ({event.get('status')}) at lr {event.get('lr'):.4g}: val loss "
                + ("-" if loss is None else f"{loss:.4f}")
                + f", predicted {event.get('predicted_val_loss'):.4f}, HellaSwag "
                + ("-" if event.get("hellaswag") is None else f"{event['hellaswag']:.4f}"),
                highlight=False,
            )
    if config.s3 is not None:
        from costbo.s3 import Outbox

        waiting = Outbox(config.study.runs_dir).waiting()
        console.print(
            f"S3: s3://{config.s3.bucket}/{config.s3.prefix}: "
            + (
                f"{len(waiting)} item(s) waiting for upload (`costbo sync`)"
                if waiting
                else "in sync"
            ),
            highlight=False,
        )
    return EXIT_OK


def cmd_recommend(args, console: Console) -> int:
    config = _config(args)
    study = config.load_study()
    try:
        rec = study.recommend()
    except ValueError as err:
        raise ConfigError(f"{config.path}: no recommendation yet: {err}") from None
    if args.json:
        data = {
            "lr": rec.lr,
            "lr_low": rec.lr_low,
            "lr_high": rec.lr_high,
            "val_loss": rec.val_loss,
            "val_loss_std": rec.val_loss_std,
            "spent": study.spent,
            "budget": study.budget,
            **{k: v for k, v in rec.to_dict().items() if k not in ("lr", "lr_low", "lr_high")},
        }
        print(json.dumps(data, indent=2))
        return EXIT_OK
    console.print(f"{rec}", highlight=False)
    console.print(
        f"divergence risk {rec.divergence_probability:.1%}; {rec.n_observations} informative "
        f"run(s); spent ${study.spent:.2f} of ${study.budget:.2f}",
        highlight=False,
    )
    return EXIT_OK


def cmd_final(args, console: Console) -> int:
    from costbo.final import final

    return final(_config(args), console=console)


def cmd_plot(args, console: Console) -> int:
    from costbo.plots import save_all

    config = _config(args)
    if args.history_points < 1:
        raise ConfigError(f"--history-points {args.history_points} must be at least 1")
    out = Path(args.out) if args.out else config.study.runs_dir / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"figures folder {out} cannot be created ({err.strerror}): give --out a folder "
            "you can write to"
        ) from None
    saved = save_all(config, out, max_history_points=args.history_points, names=args.only)
    for paths in saved.paths.values():
        console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False, markup=False)
    for name, reason in saved.skipped.items():
        console.print(f"skipped {name}: {reason}", highlight=False, markup=False)
    if not saved.paths:
        return EXIT_FAILED
    return EXIT_OK


def cmd_report(args, console: Console) -> int:
    from costbo.report import render_report

    config = _config(args)
    text = render_report(config, args.format)
    if args.out:
        path = Path(args.out)
        write_text_file(path, text, "--out ")
        console.print(f"wrote {path}", highlight=False, markup=False)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _require_s3(config: Config):
    if config.s3 is None:
        raise ConfigError(
            f"{config.path}: no [s3] section: add bucket and cluster (see `costbo init`'s "
            "example) to copy runs to S3"
        )
    return config.s3


def cmd_pull(args, console: Console) -> int:
    from costbo.s3 import pull

    config = _config(args)
    settings = _require_s3(config)
    dest = Path(args.dest) if args.dest else config.study.runs_dir
    journal = config.study.journal if not args.dest else None
    report = pull(settings, dest, journal=journal, force=args.force)
    console.print(
        f"pulled s3://{settings.bucket}/{settings.prefix} into {dest}: "
        f"{len(report.downloaded)} file(s) downloaded, {len(report.unchanged)} unchanged",
        highlight=False,
    )
    for path in report.kept_local:
        console.print(
            f"[yellow]kept local {escape(str(path))}: it differs from S3 (--force replaces it)[/]"
        )
    return EXIT_OK


def cmd_sync(args, console: Console) -> int:
    from costbo.s3 import S3Sync

    config = _config(args)
    sync = S3Sync(_require_s3(config), config.study.runs_dir)
    report = sync.flush()
    console.print(f"uploaded {len(report.uploaded)} file(s)", highlight=False)
    if report.error:
        console.print(
            f"[yellow]S3: {escape(report.error)}; {report.waiting} item(s) still waiting[/]"
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_prepare_data(args, console: Console) -> int:
    try:
        from costbo.corpus import prepare_data
    except ImportError:
        raise ConfigError(
            "prepare-data is not available in this install (costbo.corpus is missing)"
        ) from None
    kwargs = {}
    if args.val_fraction is not None:
        kwargs["val_fraction"] = args.val_fraction
    if args.shard_tokens is not None:
        kwargs["shard_tokens"] = args.shard_tokens
    try:
        data = prepare_data(args.out, args.text or None, tokenizer=args.tokenizer, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(f"prepare-data: {err}") from None
    console.print(
        f"wrote {len(data.train_paths)} train shard(s) ({data.train_tokens:,} tokens) and "
        f"{len(data.val_paths)} val shard(s) ({data.val_tokens:,} tokens) to {data.out_dir}; "
        f"globs: -id {data.train_pattern} -iv {data.val_pattern}"
        + (
            f"; vocab size {data.vocab_size} (twin: -vs {data.vocab_size})"
            if data.tokenizer == "bytes"
            else ""
        ),
        highlight=False,
    )
    return EXIT_OK


COMMANDS = {
    "init": cmd_init,
    "probe": cmd_probe,
    "optimize": cmd_optimize,
    "status": cmd_status,
    "recommend": cmd_recommend,
    "final": cmd_final,
    "plot": cmd_plot,
    "report": cmd_report,
    "pull": cmd_pull,
    "sync": cmd_sync,
    "prepare-data": cmd_prepare_data,
}


if __name__ == "__main__":
    sys.exit(main())
