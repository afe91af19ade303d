"""The ``trainctl`` command line (also ``python -m trainctl``).

Subcommands, each with its own ``--help``:

- ``trainctl demo``: train a small numpy network under a Controller, every decision explained;
- ``trainctl inspect PATH [--json]``: why a run stopped, its best epoch, the kept checkpoints,
  where a resume would start and the rate history, read-only (:mod:`trainctl._inspect`);
- ``trainctl plot LOG -o out.png``: a decision log as a picture (:mod:`trainctl._plotlog`, needs
  the ``plot`` extra);
- ``trainctl replay LOG... --policy EXPR --grid name=v1,v2``: replay logged runs under a grid of
  policy configurations and print the table (:mod:`trainctl.replay`).

Each subcommand's parser sets ``handler`` (a function of the parsed arguments returning the exit
status), so that a subcommand defined elsewhere plugs in with its own ``add_parser(subparsers)``.
Errors about the input are one line on standard error, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

#: The top-level ``--help`` text (plain text: no reST markup).
DESCRIPTION = (
    "trainctl: training control (early stopping, plateau learning-rate reduction, NaN guards, "
    "schedules, checkpoint retention) as pure, resumable state machines. Run a demo, inspect a "
    "run's checkpoints and decision log, plot a decision log, or replay logged runs under a grid "
    "of policies."
)

INSPECT_HELP = (
    "Say why a run stopped (the event and its message), its best value and epoch, the kept "
    "checkpoints with their scores, where a resume would start and, if there is a decision log, "
    "the learning rate of every param group each time it changed. Read-only: nothing is "
    "written, locked or repaired. PATH is a checkpoint store directory (with "
    "trainctl-manifest.json; a decision log in the same directory, *.jsonl with a decision-log "
    "header or a decision-log *.csv, is read too), a .pt/.ckpt checkpoint written by the torch "
    "or Lightning adapter (needs torch), or a decision log (.jsonl/.csv). Epochs count from 1, "
    "as checkpoint file names do."
)

PLOT_HELP = (
    "Draw a decision log as a PNG: the monitored metrics over the epochs, each decision marked "
    "(improvements, rate cuts, the stop, checkpoint saves, the restored best) and the learning "
    "rate of every param group on a second, logarithmic axis. Needs matplotlib (pip install "
    "trainctl[plot])."
)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ._inspect import InspectError, inspect_run, render_report

    try:
        report = inspect_run(args.path)
    except InspectError as exc:
        print(f"trainctl inspect: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        print(render_report(report))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ._inspect import InspectError
    from ._plotlog import plot_log

    try:
        out = plot_log(args.log, args.output, metrics=args.metric or None, title=args.title)
    except ImportError as exc:
        print(f"trainctl plot: error: {exc}", file=sys.stderr)
        return 2
    except (InspectError, OSError) as exc:
        print(f"trainctl plot: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``trainctl`` argument parser, every subcommand added."""
    parser = argparse.ArgumentParser(prog="trainctl", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="train a small numpy model under a Controller",
        description="Train a small numpy network on a noisy two-moons problem under a "
        "Controller and print, for every epoch, the metrics and what each policy decided and "
        "why. Needs no ML framework.",
    )
    demo.add_argument("--epochs", type=int, default=200, help="upper bound on epochs")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(handler=_demo)

    inspect = sub.add_parser(
        "inspect", help="why a run stopped, its best epoch, checkpoints and resume point",
        description=INSPECT_HELP,
    )
    inspect.add_argument("path", metavar="PATH",
                         help="a checkpoint directory, a .pt/.ckpt file or a decision log")
    inspect.add_argument("--json", action="store_true",
                         help="print the same as JSON data instead of text")
    inspect.set_defaults(handler=_inspect)

    plot = sub.add_parser(
        "plot", help="draw a decision log (metrics, decisions, rates) as a PNG",
        description=PLOT_HELP,
    )
    plot.add_argument("log", metavar="LOG",
                      help="a decision log (.jsonl/.csv), or a directory holding one")
    plot.add_argument("-o", "--output", required=True, metavar="OUT.png",
                      help="the PNG file to write")
    plot.add_argument("--metric", action="append", default=[], metavar="NAME",
                      help="a metric to draw (repeat for several; default: the monitored ones)")
    plot.add_argument("--title", default=None, help="the plot's title (default: the policies)")
    plot.set_defaults(handler=_plot)

    from .replay._cli import add_parser as add_replay  # trainctl replay LOG... --policy --grid

    add_replay(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Any = args.handler
    try:
        return int(handler(args))
    except BrokenPipeError:  # the reader went away (`trainctl inspect DIR | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush is quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
