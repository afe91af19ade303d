"""Draw a schedule to a PNG file (needs the optional ``plot`` extra: matplotlib)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainctl._validation import check_int

from ._base import Schedule

__all__ = ["plot"]


def plot(
    schedule: Schedule,
    steps: int | npt.NDArray[np.integer[Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw ``schedule`` over ``steps`` (a count, meaning ``0..steps-1``, or an integer array).

    Writes a PNG to ``path`` with matplotlib's Agg canvas (no pyplot, no global backend change) and
    returns the path. matplotlib is imported here, not when ``trainctl.schedules`` is imported.

    Example: ``plot(warmup(cosine(0.1, 900), 100), 1000, "lr.png")``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "trainctl.schedules.plot needs matplotlib: pip install trainctl[plot]"
        ) from exc
    if not isinstance(schedule, Schedule):
        raise TypeError(f"'schedule' must be a Schedule, got {type(schedule).__name__}")
    if isinstance(steps, np.ndarray):
        xs = steps
    else:
        xs = np.arange(check_int("steps", steps), dtype=np.int64)
    ys = schedule(xs)
    figure = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(xs, ys)
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title(title if title is not None else repr(schedule), fontsize=8, wrap=True)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, format="png")
    return out
