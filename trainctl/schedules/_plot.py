"""Draw a schedule to a PNG file, or into a matplotlib Axes (needs the optional ``plot`` extra:
matplotlib)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from trainctl._validation import check_int

from ._base import Schedule

__all__ = ["plot"]


@overload
def plot(
    schedule: Schedule,
    steps: int | npt.NDArray[np.integer[Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    ax: None = None,
) -> Path: ...


@overload
def plot(
    schedule: Schedule,
    steps: int | npt.NDArray[np.integer[Any]],
    path: None = None,
    *,
    title: str | None = None,
    ax: Any,
) -> Any: ...


def plot(
    schedule: Schedule,
    steps: int | npt.NDArray[np.integer[Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw ``schedule`` over ``steps`` (a count, meaning ``0..steps-1``, or an integer array).

    With ``path``: writes a PNG there with matplotlib's Agg canvas (no pyplot, no global backend
    change) and returns the path. With ``ax`` (a matplotlib ``Axes``) instead: draws the curve
    into it, labelled ``repr(schedule)`` (or ``title``) for a legend, creates and saves nothing,
    and returns ``ax``, so that several schedules can share one plot or a plot can sit in a
    figure of your own. Give exactly one of the two. matplotlib is imported here, not when
    ``trainctl.schedules`` is imported.

    Example: ``plot(warmup(cosine(0.1, 900), 100), 1000, "lr.png")``.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"'schedule' must be a Schedule, got {type(schedule).__name__}")
    if (path is None) == (ax is None):
        raise TypeError(
            "plot() needs either 'path' (a PNG file to write) or 'ax' (a matplotlib Axes to "
            f"draw into), not {'both' if ax is not None else 'neither'}"
        )
    if isinstance(steps, np.ndarray):
        xs = steps
    else:
        xs = np.arange(check_int("steps", steps), dtype=np.int64)
    ys = schedule(xs)
    if ax is not None:
        ax.plot(xs, ys, label=title if title is not None else repr(schedule))
        return ax
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "trainctl.schedules.plot needs matplotlib: pip install trainctl[plot]"
        ) from exc
    figure = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(xs, ys)
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title(title if title is not None else repr(schedule), fontsize=8, wrap=True)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    assert path is not None
    out = Path(path)
    figure.savefig(out, format="png")
    return out
