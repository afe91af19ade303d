"""``trainctl plot LOG -o out.png``: a decision log drawn as a picture of the run.

:func:`plot_log` writes a PNG; :func:`draw_log` draws into a matplotlib ``Axes`` of your own.
matplotlib is the optional ``plot`` extra (``pip install trainctl[plot]``): it is imported only
when something is drawn, never by ``import trainctl``.

What is drawn (x: the epoch, counted from 1 as file names and messages count it):

==================  ==============================================================================
element             drawn as
==================  ==============================================================================
metrics             one line per monitored metric (the ``monitor`` of each policy in the log's
                    header; for a CSV log, which has no header, every metric whose name holds
                    ``loss``, else every metric), or the ``metrics`` asked for
improved            a green triangle on the metric the improving policy monitors
rate cut            an orange downward triangle (``reduced_lr``) on that policy's metric
stop                a red cross on the first metric and a dashed red vertical line
save                a blue tick along the bottom edge for each round that wrote a checkpoint
restored best       a large gold star at the epoch whose weights came back at the end
learning rate       one step line per param group on a second, logarithmic axis (the rate in
                    force after each round's decision), dotted
==================  ==============================================================================

The legend sits beside the axes (each kind once, with its count); the title names the run's
policies and schedule (from the log's header).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._decisions import epoch_number
from ._inspect import InspectError, _describe_header, find_logs, load_log

__all__ = ["draw_log", "plot_log"]

_COLOURS = {
    "improved": "#2ca02c",
    "rate cut": "#ff7f0e",
    "stop": "#d62728",
    "save": "#1f77b4",
    "restored best": "#e3b505",
}
_LABEL_MONITOR = re.compile(r"[^()]*\((.+)\)")


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "trainctl plot needs matplotlib, the optional 'plot' extra: "
            "pip install trainctl[plot]"
        ) from exc
    return Figure, FigureCanvasAgg


def _resolve(log: str | os.PathLike[str]) -> Path:
    """A log file, or the one decision log inside a directory."""
    p = Path(log)
    if p.is_dir():
        found = find_logs(p)
        if not found:
            raise InspectError(
                p, f"{str(p)!r} holds no decision log (a .jsonl file with a decision-log header, "
                "or a decision-log .csv)"
            )
        return found[0]
    if not p.exists():
        raise InspectError(p, f"{str(p)!r} does not exist; expected a decision log (.jsonl/.csv)")
    if p.suffix.lower() not in (".jsonl", ".csv"):
        raise InspectError(
            p, f"{str(p)!r} is not a decision log; expected a .jsonl or .csv decision log"
        )
    return p


def _float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)  # "nan", "inf", "-inf" and CSV text
    except (TypeError, ValueError):
        return math.nan


def _monitor_of(source: Any) -> str | None:
    match = _LABEL_MONITOR.fullmatch(str(source))
    return None if match is None else match.group(1)


def _epoch_of(record: Mapping[str, Any]) -> int | None:
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    return epoch_number(epoch)


def draw_log(
    log: str | os.PathLike[str],
    ax: Any,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> dict[str, int]:
    """Draw the decision log ``log`` (a file, or a directory holding one) into the matplotlib
    ``Axes`` ``ax`` (see the module docstring), with the rates on a twin axis. Returns how many
    marks of each kind were drawn (``"improved"``, ``"rate cut"``, ``"stop"``, ``"save"``,
    ``"restored best"``; kinds absent from the run are left out)."""
    path = _resolve(log)
    header, records, _ = load_log(path)
    rounds = [r for r in records if r.get("clock") == "round" and _epoch_of(r) is not None]
    if not rounds:
        raise InspectError(path, f"{str(path)!r} has no evaluation rounds to draw")
    controller = header.get("controller") if header is not None else None
    described = _describe_header(controller) if isinstance(controller, Mapping) else None
    names = list(metrics) if metrics is not None else _default_metrics(controller, rounds)
    xs = [_epoch_of(r) for r in rounds]
    series = {
        name: [_float((r.get("metrics") or {}).get(name)) for r in rounds] for name in names
    }
    lines = {}
    for name, ys in series.items():
        (line,) = ax.plot(xs, ys, marker=".", markersize=3, linewidth=1.4, label=name)
        lines[name] = line
    first = names[0] if names else None

    def y_at(metric: str | None, index: int) -> float:
        name = metric if metric in series else first
        return math.nan if name is None else series[name][index]

    counts: dict[str, int] = {}
    marks: dict[str, tuple[list[float], list[float]]] = {}

    def mark(kind: str, x: float, y: float) -> None:
        if math.isnan(y):
            return
        xs_, ys_ = marks.setdefault(kind, ([], []))
        xs_.append(x)
        ys_.append(y)
        counts[kind] = counts.get(kind, 0) + 1

    for i, record in enumerate(rounds):
        x = float(xs[i] or 0)
        seen: set[tuple[str, str | None]] = set()
        for reason in record.get("reasons") or ():
            event = reason.get("event")
            kind = {"improved": "improved", "reduced_lr": "rate cut"}.get(str(event))
            if kind is None:
                continue
            monitor = _monitor_of(reason.get("source"))
            key = (kind, monitor if monitor in series else first)
            if key in seen:  # two policies on one metric: one mark
                continue
            seen.add(key)
            mark(kind, x, y_at(monitor, i))
        if record.get("save") or record.get("last"):
            counts["save"] = counts.get("save", 0) + 1
            marks.setdefault("save", ([], []))[0].append(x)
    stop = next((r for r in records if r.get("stop") and r.get("clock") != "end"), None)
    if stop is not None:
        at = _epoch_of(stop)
        if stop.get("clock") == "optimizer_step":
            at = (at or 0) + 1 if at is not None else 1  # the epoch in progress
        if at is not None:
            index = min(range(len(xs)), key=lambda j: abs((xs[j] or 0) - at))
            ax.axvline(at, color=_COLOURS["stop"], linestyle="--", linewidth=1, alpha=0.7)
            mark("stop", float(at), y_at(first, index))
    restored = _restored_best(records)
    if restored is not None:
        epoch, monitor = restored
        if epoch in xs:
            mark("restored best", float(epoch), y_at(monitor, xs.index(epoch)))
    _draw_marks(ax, marks, counts)
    _draw_rates(ax, rounds, xs)
    ax.set_xlabel("epoch")
    ax.set_ylabel(", ".join(names) if len(names) <= 3 else "metrics")
    ax.grid(True, alpha=0.3)
    if title is None:
        title = _title(path, described)
    ax.set_title(title, fontsize=8, wrap=True)
    return counts


def _default_metrics(controller: Any, rounds: Sequence[Mapping[str, Any]]) -> list[str]:
    present: list[str] = []
    for r in rounds:
        for key in r.get("metrics") or {}:
            if key not in present:
                present.append(key)
    wanted: list[str] = []
    if isinstance(controller, Mapping):
        for config in controller.get("policies") or ():
            monitor = config.get("monitor") if isinstance(config, Mapping) else None
            if isinstance(monitor, str) and monitor in present and monitor not in wanted:
                wanted.append(monitor)
    if not wanted:
        wanted = [k for k in present if "loss" in k] or present
    return wanted


def _restored_best(records: Sequence[Mapping[str, Any]]) -> tuple[int, str | None] | None:
    """The 1-based epoch whose weights came back at the end, and the metric that chose it."""
    end = next((r for r in reversed(records) if r.get("clock") == "end"), None)
    if end is None or not end.get("restore_best"):
        return None
    for source in (end, *reversed(records)):
        policies = source.get("policies")
        if not isinstance(policies, Mapping):
            continue
        for label, fields in policies.items():
            if isinstance(fields, Mapping) and isinstance(fields.get("best_epoch"), int):
                return epoch_number(fields["best_epoch"]), _monitor_of(label)
    return None


def _draw_marks(
    ax: Any, marks: Mapping[str, tuple[list[float], list[float]]], counts: Mapping[str, int]
) -> None:
    style = {
        "improved": {"marker": "^", "s": 36},
        "rate cut": {"marker": "v", "s": 56},
        "stop": {"marker": "X", "s": 90},
        "restored best": {"marker": "*", "s": 220, "edgecolors": "black", "linewidths": 0.6},
    }
    for kind in ("improved", "rate cut", "stop", "restored best"):
        if kind not in marks:
            continue
        xs, ys = marks[kind]
        ax.scatter(xs, ys, color=_COLOURS[kind], zorder=5, label=f"{kind} ({counts[kind]})",
                   **style[kind])
    if "save" in marks:
        xs = marks["save"][0]
        ax.scatter(xs, [0.02] * len(xs), marker="|", s=60, color=_COLOURS["save"],
                   transform=ax.get_xaxis_transform(), zorder=5, clip_on=False,
                   label=f"save ({counts['save']})")


def _draw_rates(ax: Any, rounds: Sequence[Mapping[str, Any]], xs: Sequence[int | None]) -> None:
    rates = [r.get("lr") or [] for r in rounds]
    groups = max((len(r) for r in rates), default=0)
    handles, labels = ax.get_legend_handles_labels()
    if groups:
        twin = ax.twinx()
        positive = False
        for g in range(groups):
            ys = [_float(r[g]) if g < len(r) else math.nan for r in rates]
            ys = [y if y > 0 else math.nan for y in ys]  # a log axis shows no zero
            positive = positive or any(not math.isnan(y) for y in ys)
            label = "lr" if groups == 1 else f"lr (group {g})"
            twin.plot(xs, ys, drawstyle="steps-post", linestyle=":", linewidth=1.3,
                      color=f"C{(g + 5) % 10}", label=label)
        if positive:
            twin.set_yscale("log")
        twin.set_ylabel("learning rate (log scale)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8,
              framealpha=0.9, borderaxespad=0.0)


def _title(path: Path, described: Mapping[str, Any] | None) -> str:
    if described is None:
        return f"{path.name} (a CSV decision log: the policies are not recorded)"
    text = ", ".join(described.get("policies") or []) or "no policies"
    if described.get("schedule"):
        text += f"; schedule {described['schedule']}"
    return f"{path.name}: {text}"


def plot_log(
    log: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of the decision log ``log`` (a file, or a directory holding one) to ``path``
    (see the module docstring) and return ``path``. Raises :class:`ImportError` naming the
    ``plot`` extra without matplotlib, :class:`~trainctl._inspect.InspectError` for a path that
    is not a decision log."""
    figure_type, canvas_type = _matplotlib()
    figure = figure_type(figsize=(11, 5), dpi=100)
    canvas_type(figure)
    ax = figure.add_subplot()
    draw_log(log, ax, metrics=metrics, title=title)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, format="png")
    return out
