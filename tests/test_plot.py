"""``trainctl plot`` (trainctl._plotlog) and ``trainctl.schedules.plot(ax=...)``.

A real plain run writes its decision log; the PNG is checked by its signature and size, and the
drawing itself (into an Axes of the test's own) by what it holds: one mark per event of each kind
the run had, at the right epochs, the legend, and the rates of both param groups on a log axis.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_inspect import BEST_EPOCH, STOP_EPOCH, epoch_of, plain_run

import trainctl.schedules as S
from trainctl._inspect import InspectError
from trainctl._plotlog import draw_log, plot_log

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def axes() -> Any:
    figure = Figure(figsize=(8, 4))
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_a_png_of_the_run(tmp_path: Path) -> None:
    plain_run(tmp_path)
    out = plot_log(tmp_path / "decisions.jsonl", tmp_path / "run.png")
    assert out == tmp_path / "run.png"
    assert png_size(out) == (1100, 500)
    assert out.stat().st_size > 20_000  # a drawn plot, not an empty canvas
    again = plot_log(tmp_path, tmp_path / "from-dir.png")  # a directory holding the log
    assert png_size(again) == (1100, 500)


def test_every_decision_of_the_run_is_marked(tmp_path: Path) -> None:
    decisions = plain_run(tmp_path)
    rounds = [d for d in decisions if d.clock == "round"]
    ax = axes()
    counts = draw_log(tmp_path / "decisions.jsonl", ax)
    improved = [epoch_of(d) for d in rounds if "improved" in d.events]
    cuts = [epoch_of(d) for d in rounds if "reduced_lr" in d.events]
    saves = [epoch_of(d) for d in rounds if d.save or d.last]
    assert improved and cuts and saves and decisions[-1].restore_best
    assert counts == {
        "improved": len(improved), "rate cut": len(cuts), "stop": 1, "save": len(saves),
        "restored best": 1,
    }
    marks = {
        c.get_label().split(" (")[0]: [float(x) for x, _ in c.get_offsets()]
        for c in ax.collections
    }
    assert marks["improved"] == improved
    assert marks["rate cut"] == cuts
    assert marks["stop"] == [STOP_EPOCH]
    assert marks["restored best"] == [BEST_EPOCH]
    assert marks["save"] == saves
    # the metric, and both groups' rates on a second, logarithmic axis
    (metric,) = ax.get_lines()[:1]
    assert metric.get_label() == "val_loss"
    assert list(metric.get_xdata()) == [epoch_of(d) for d in rounds]
    twin = next(a for a in ax.figure.axes if a is not ax)
    assert twin.get_yscale() == "log"
    lr_lines = twin.get_lines()
    assert [line.get_label() for line in lr_lines] == ["lr (group 0)", "lr (group 1)"]
    assert list(lr_lines[1].get_ydata()) == [d.lr[1] for d in rounds]  # type: ignore[index]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "val_loss", f"improved ({len(improved)})", f"rate cut ({len(cuts)})", "stop (1)",
        "restored best (1)", f"save ({len(saves)})", "lr (group 0)", "lr (group 1)",
    ]
    title = ax.get_title()
    assert "ReduceLROnPlateau(val_loss)" in title and "EarlyStopping(val_loss)" in title


def test_a_csv_log_and_chosen_metrics(tmp_path: Path) -> None:
    plain_run(tmp_path, log_name="decisions.csv")
    ax = axes()
    counts = draw_log(tmp_path / "decisions.csv", ax, metrics=["val_loss", "acc"])
    labels = [line.get_label() for line in ax.get_lines()]
    assert [label for label in labels if not label.startswith("_")] == ["val_loss", "acc"]
    assert counts["stop"] == 1 and "restored best" not in counts  # the table has no end fields
    assert "CSV" in ax.get_title()


def test_what_is_not_a_log_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for bad in (tmp_path / "notes.txt", tmp_path / "missing.jsonl", tmp_path):
        with pytest.raises(InspectError, match="decision log"):
            plot_log(bad, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_without_matplotlib_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_run(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install trainctl\[plot\]"):
        plot_log(tmp_path / "decisions.jsonl", tmp_path / "out.png")


def test_schedules_plot_draws_into_given_axes(tmp_path: Path) -> None:
    ax = axes()
    schedule = S.warmup(S.cosine(0.1, 90), 10)
    assert S.plot(schedule, 100, ax=ax) is ax
    S.plot(S.constant(0.05), 100, ax=ax, title="constant")
    first, second = ax.get_lines()
    assert list(first.get_xdata()) == list(range(100))
    assert list(first.get_ydata()) == [schedule(t) for t in range(100)]
    assert first.get_label() == repr(schedule) and second.get_label() == "constant"
    assert list(tmp_path.iterdir()) == []  # nothing saved
    assert ax.get_title() == ""  # the axes are the caller's: no title, no labels set
    with pytest.raises(TypeError, match="either 'path'"):
        S.plot(schedule, 10)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not both"):
        S.plot(schedule, 10, tmp_path / "x.png", ax=ax)
    out = S.plot(schedule, 100, tmp_path / "lr.png")  # the file form is unchanged
    assert out == tmp_path / "lr.png" and png_size(out) == (700, 350)
