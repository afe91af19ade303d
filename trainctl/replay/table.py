"""Prechelt's table on the bundled corpus: training time used against quality lost, per criterion.

``python -m trainctl.replay.table [CORPUS.npz]`` replays, on the 192 learning curves of
``data/curves.npz``, Keras-style early stopping with patience 2, 5, 10, 20 and Prechelt's
criteria ``GL``, ``PQ`` (strips of 5 epochs) and ``UP`` (strips of 5), every one keeping the
weights of the lowest validation loss seen up to its stop (``restore_best_weights=True``, as
Prechelt evaluates a criterion: the network at the epoch of the lowest validation error seen), and
prints, per criterion:

- ``stopped``: the fraction of runs it stopped before their 150 epochs;
- ``time``: the mean fraction of the 150 epochs trained (``rounds_used / 150``);
- ``rel. regret``: the mean over runs of ``(val_loss kept - min val_loss of the run) / min
  val_loss of the run``: how much higher, relatively, the validation loss of the weights kept is
  than the best the full 150 epochs reached (0 when the criterion keeps the run's best);
- ``max``: the worst run's relative regret;
- ``hit best``: the fraction of runs where the weights kept are the run's best.

Each row is one :func:`trainctl.replay.sweep` (exact: what ``simulate`` gives on every run).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._early_stopping import EarlyStopping
from .._prechelt import GL, PQ, UP
from ._corpus import corpus_arrays
from ._run import RunArrays
from ._sweep import sweep

__all__ = ["CRITERIA", "main", "prechelt_table"]

#: (name, policy, grid): each grid value is one row
CRITERIA: tuple[tuple[str, Any, str, tuple[Any, ...]], ...] = (
    ("EarlyStopping patience", EarlyStopping("val_loss", restore_best_weights=True), "patience",
     (2, 5, 10, 20)),
    ("GL alpha", GL(restore_best_weights=True), "alpha", (1, 2, 3, 5)),
    ("PQ alpha (strip 5)", PQ(strip=5, restore_best_weights=True), "alpha",
     (0.5, 0.75, 1, 2, 3)),
    ("UP s (strip 5)", UP(strip=5, restore_best_weights=True), "s", (2, 3, 4)),
)


def prechelt_table(runs: RunArrays | Sequence[Any] | None = None) -> str:
    """The table as text (``runs``: default the bundled corpus)."""
    runs = corpus_arrays() if runs is None else runs
    lines = [("criterion", "stopped", "time", "rel. regret", "max", "hit best")]
    for name, policy, parameter, values in CRITERIA:
        result = sweep(policy, {parameter: list(values)}, runs)
        lengths = result.lengths
        assert lengths is not None
        for c, value in enumerate(values):
            rel = result.relative_regret[c]
            lines.append((
                f"{name} {value}",
                f"{(result.stop_round[c] >= 0).mean():.0%}",
                f"{(result.rounds_used[c] / lengths).mean():.1%}",
                f"{np.nanmean(rel):.2%}",
                f"{np.nanmax(rel):.1%}",
                f"{(rel == 0).mean():.0%}",
            ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                            strict=True)])
        for row in lines
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    runs = corpus_arrays(args[0]) if args else corpus_arrays()
    print(f"{len(runs)} runs of {runs.shape[1]} epochs; weights kept: the lowest val_loss seen "
          "up to the stop")
    print(prechelt_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
