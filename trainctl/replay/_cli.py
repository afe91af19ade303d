"""``trainctl replay``: sweep a policy's parameters over logged runs, from the command line.

::

    trainctl replay runs/*/metrics.csv --policy "EarlyStopping(monitor='val_loss')" \\
        --grid patience=2,5,10 --grid min_delta=0,1e-3 --plot pareto.png --csv runs.csv

Each ``LOG`` is one run (any format :func:`~trainctl.replay.read_run` reads: a file, or a
directory holding ``metrics.csv``, ``trainer_state.json`` or TensorBoard events); ``--corpus``
adds the repository's 192 learning curves. ``--policy`` is a call expression read by
:func:`trainctl.parse_call` (Python's parser, only known factories and literal arguments:
nothing is evaluated). Each ``--grid NAME=V1,V2,...`` crosses with the others; each value is a
Python literal (``5``, ``1e-3``, ``None``, ``True``, ``'min'``) or else a bare word taken as a
string (``mode=min,max``). The table goes to standard output; errors to standard error with exit
status 2.

The subcommand is wired into ``python -m trainctl`` with::

    sub = parser.add_subparsers(dest="command")
    add_parser(sub)          # adds "replay", with run as its handler (args.handler)
    args = parser.parse_args()
    sys.exit(args.handler(args))
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from typing import Any

__all__ = ["add_parser", "parse_grid", "run"]


def _literal(text: str) -> Any:
    text = text.strip()
    if text in ("inf", "+inf", "-inf", "nan"):
        return float(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string (mode=min)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    raise ValueError(f"a grid value must be a number, a string, True/False or None, got {text!r}")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["patience=2,5", "min_delta=0,1e-3"]`` -> ``{"patience": [2, 5], "min_delta": [0,
    0.001]}``; ``ValueError`` naming the item that is not ``NAME=V1,V2,...``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values.strip():
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,... such as patience=2,5,10")
        if name in grid:
            raise ValueError(f"--grid {item!r}: {name!r} is given twice")
        grid[name] = [_literal(v) for v in values.split(",")]
    return grid


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``); its
    handler is :func:`run` (``args.handler``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay logged runs under a grid of policy configurations",
        description=(
            "Replay every configuration of a grid on logged runs (Keras/Lightning CSV, Hugging "
            "Face trainer_state.json, TensorBoard events, trainctl decision logs) and print, per "
            "configuration, the training it saves against the quality it loses."
        ),
    )
    parser.add_argument("logs", nargs="*", metavar="LOG", help="a logged run (file or directory)")
    parser.add_argument("--policy", required=True,
                        help="the policy, e.g. \"EarlyStopping(monitor='val_loss')\"")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="a parameter and its values (repeat to cross several)")
    parser.add_argument("--corpus", action="store_true",
                        help="also replay the bundled corpus of 192 learning curves")
    parser.add_argument("--format", default=None,
                        choices=("keras", "lightning", "huggingface", "tensorboard", "trainctl"),
                        help="the logs' format (default: detected per file)")
    parser.add_argument("--lr", type=float, default=None,
                        help="starting learning rate (ReduceLROnPlateau)")
    parser.add_argument("--plot", metavar="PATH", help="write the Pareto plot (PNG) here")
    parser.add_argument("--csv", metavar="PATH",
                        help="write one row per configuration x run here")
    parser.add_argument("--summary-csv", metavar="PATH",
                        help="write the summary table as CSV here")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``trainctl replay`` with parsed ``args``; returns the exit status."""
    from .. import ExpressionError, parse_call
    from ._corpus import load_corpus
    from ._formats import RunFormatError, read_run
    from ._sweep import sweep

    try:
        policy = parse_call(args.policy)
        grid = parse_grid(args.grid)
        runs = [read_run(path, format=args.format) for path in args.logs]
        if args.corpus:
            runs.extend(load_corpus())
        if not runs:
            raise ValueError("no runs: give LOG files or --corpus")
        if args.lr is not None and not math.isfinite(args.lr):
            raise ValueError(f"--lr must be a finite number, got {args.lr!r}")
        result = sweep(policy, grid, runs, lr=args.lr)
    except (ExpressionError, RunFormatError, ValueError, TypeError, OSError) as exc:
        print(f"trainctl replay: error: {exc}", file=sys.stderr)
        return 2
    print(f"{policy!r} on {result.runs} runs, {len(result.configs)} configurations "
          f"({result.seconds:.2f} s); * marks the Pareto front")
    print(result.summary())
    try:
        if args.csv:
            print(f"wrote {result.to_csv(args.csv)}")
        if args.summary_csv:
            print(f"wrote {result.summary().to_csv(args.summary_csv)}")
        if args.plot:
            print(f"wrote {result.plot(args.plot)}")
    except (OSError, ImportError) as exc:
        print(f"trainctl replay: error: {exc}", file=sys.stderr)
        return 2
    return 0
