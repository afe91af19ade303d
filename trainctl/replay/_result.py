"""What a sweep found: per configuration and run, and summarised per configuration.

Conventions (every array is ``(configurations, runs)`` unless said otherwise):

===================  ==============================================================================
field                meaning
===================  ==============================================================================
``stop_round``       the 0-based round at which the policy stops (``-1``: it never stops: the run
                     trains to its end; :data:`NEVER`)
``rounds_used``      rounds trained: ``stop_round + 1``, or the run's length
``best``             the policy's best at the end of its run (at the stop), NaN if it has none
``best_round``       the round of that best, ``-1`` if none
``restored_round``   the round whose weights one ends up with: ``best_round`` when the policy
                     restores the best weights (``restore_best_weights`` and a best), else the
                     last round trained; for ``CheckpointPolicy`` the best checkpoint it keeps
``restored_value``   the monitored value at ``restored_round`` (NaN if absent there)
``regret``           how much worse that is than the best value the whole run ever logged
                     (``run_best``: the lowest for ``min``, the highest for ``max``, NaN ignored):
                     ``restored_value - run_best`` for ``min``, ``run_best - restored_value`` for
                     ``max``; ``>= 0``, and 0 when the run's best weights are the ones kept; NaN
                     when the restored value is absent or NaN
``relative_regret``  ``regret / |run_best|`` (NaN when ``run_best`` is 0 or not finite): for a
                     loss, the fraction by which the kept weights' loss exceeds the run's best
===================  ==============================================================================

Rounds and counts are ``int32``, values ``float64``. :meth:`SweepResult.summary` averages over
runs (runs where a value is NaN are left out of that column's mean, and counted). The Pareto
front is taken on (mean fraction of the rounds used, mean relative regret): a configuration is
on it if no other uses less training and loses less quality, one of them strictly.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["NEVER", "Summary", "SweepResult"]

NEVER = -1
"""``stop_round`` of a configuration that never stops a run."""

FloatArray = npt.NDArray[np.float64]

#: the per-run fields every sweep has, in CSV order
PER_RUN = (
    "stop_round", "rounds_used", "best", "best_round", "restored_round", "restored_value",
    "regret", "relative_regret",
)

#: summary columns: (name, header, format)
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("stopped", "stopped", "{:.0%}"),
    ("rounds_used", "rounds", "{:.1f}"),
    ("rounds_saved", "saved", "{:.1f}"),
    ("fraction_used", "time", "{:.1%}"),
    ("regret", "regret", "{:.4g}"),
    ("relative_regret", "rel.regret", "{:.2%}"),
    ("max_regret", "max", "{:.4g}"),
)
_EXTRA_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "plateau": (("reductions", "cuts", "{:.2f}"), ("first_cut", "1st cut", "{:.1f}")),
    "checkpoint": (("n_kept", "kept", "{:.2f}"), ("n_saved", "saves", "{:.2f}")),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def label_of(params: Mapping[str, Any]) -> str:
    """``"patience=5, min_delta=0.001"`` (``"(policy as given)"`` for no parameters)."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "(policy as given)"


@attrs.frozen(eq=False)
class Summary:
    """Per-configuration means of a sweep, as data (:attr:`columns`, :meth:`rows`) and as text
    (``str(summary)``).

    Attributes:
        params: each configuration's grid values.
        columns: name -> one value per configuration: ``runs``, ``stopped`` (fraction of runs
            stopped), ``rounds_used``, ``rounds_saved`` (mean rounds not trained),
            ``fraction_used`` (mean ``rounds_used / length``), ``regret``,
            ``relative_regret``, ``max_regret``, ``regret_runs`` (runs with a finite regret),
            and per kind ``reductions``/``first_cut`` or ``n_kept``/``n_saved``.
        kind: ``"stopping"``, ``"plateau"`` or ``"checkpoint"``.
    """

    params: tuple[dict[str, Any], ...]
    columns: dict[str, FloatArray]
    kind: str

    def __len__(self) -> int:
        return len(self.params)

    def pareto(self) -> npt.NDArray[np.bool_]:
        """Which configurations are on the front of (fraction of rounds used, relative regret)."""
        x = self.columns["fraction_used"]
        y = self.columns["relative_regret"]
        if np.isnan(y).all():
            y = self.columns["regret"]
        n = len(x)
        out = np.zeros(n, dtype=bool)
        for i in range(n):
            if math.isnan(x[i]) or math.isnan(y[i]):
                continue
            dominated = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
            out[i] = not bool(dominated.any())
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per configuration: its parameters, then every column."""
        return [
            {**p, **{k: _py(v[i]) for k, v in self.columns.items()}}
            for i, p in enumerate(self.params)
        ]

    def text(self) -> str:
        """The table: one line per configuration, ``*`` marking the Pareto front."""
        columns = _COLUMNS + _EXTRA_COLUMNS.get(self.kind, ())
        front = self.pareto()
        header = ["", "configuration"] + [h for _, h, _ in columns]
        lines = [header]
        for i, p in enumerate(self.params):
            cells = ["*" if front[i] else "", label_of(p)]
            for name, _, fmt in columns:
                value = float(self.columns[name][i])
                cells.append("-" if math.isnan(value) else fmt.format(value))
            lines.append(cells)
        widths = [max(len(row[j]) for row in lines) for j in range(len(header))]
        out = []
        for row in lines:
            left = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
            right = [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
            out.append("  ".join(left + right).rstrip())
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`rows` as CSV; returns the path."""
        out = Path(path)
        rows = self.rows()
        names = list(dict.fromkeys(k for row in rows for k in row))
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
        return out


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


@attrs.frozen(eq=False)
class SweepResult:
    """Every configuration of a grid replayed on every run (see the module docstring).

    Attributes:
        policy: the policy the grid was built from.
        grid: parameter name -> the values swept.
        configs: the configurations, in grid order (the last parameter varies fastest).
        params: each configuration's grid values.
        kind: ``"stopping"``, ``"plateau"`` or ``"checkpoint"``.
        metric, direction: what the regret is measured on.
        runs: how many runs were replayed.
        sources, lengths, run_best: per run (``None`` with ``per_run=False``).
        per_run: name -> ``(configurations, runs)`` array (see the module docstring), plus per
            kind: ``lr`` and ``cuts`` (``(C, R, T)``: the rate after each round and whether it
            was cut there), ``reductions``, ``first_cut``; ``kept`` and ``saved`` (``(C, R,
            T)``), ``n_kept``, ``n_saved``. ``None`` with ``per_run=False``.
        totals: the sums :meth:`summary` averages (kept whatever ``per_run``).
        transitions: configuration x run x round transitions replayed (rounds up to each
            run's end, whether or not the configuration stopped earlier).
        seconds: the sweep's wall time.
    """

    policy: Any
    grid: dict[str, tuple[Any, ...]]
    configs: tuple[Any, ...]
    params: tuple[dict[str, Any], ...]
    kind: str
    metric: str | None
    direction: str | None
    runs: int
    sources: tuple[str, ...] | None
    lengths: npt.NDArray[np.int64] | None
    run_best: FloatArray | None
    per_run: dict[str, np.ndarray[Any, Any]] | None
    totals: dict[str, FloatArray]
    transitions: int
    seconds: float

    def _field(self, name: str) -> np.ndarray[Any, Any]:
        if self.per_run is None:
            raise ValueError(
                f"this sweep ran with per_run=False and kept only the summary; "
                f"run it with per_run=True to read {name!r}"
            )
        return self.per_run[name]

    @property
    def stop_round(self) -> npt.NDArray[np.int32]:
        """``(C, R)``: the stop round, ``-1`` (:data:`NEVER`) if it never stops."""
        return self._field("stop_round")

    @property
    def rounds_used(self) -> npt.NDArray[np.int32]:
        return self._field("rounds_used")

    @property
    def best(self) -> FloatArray:
        return self._field("best")

    @property
    def best_round(self) -> npt.NDArray[np.int32]:
        return self._field("best_round")

    @property
    def restored_round(self) -> npt.NDArray[np.int32]:
        return self._field("restored_round")

    @property
    def restored_value(self) -> FloatArray:
        return self._field("restored_value")

    @property
    def regret(self) -> FloatArray:
        return self._field("regret")

    @property
    def relative_regret(self) -> FloatArray:
        return self._field("relative_regret")

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        """A per-run array by name (``result["lr"]``, ``result["kept"]``, ...)."""
        return self._field(name)

    def summary(self) -> Summary:
        """Per-configuration means (see :class:`Summary`)."""
        t = self.totals
        n = t["runs"]
        with np.errstate(divide="ignore", invalid="ignore"):
            columns: dict[str, FloatArray] = {
                "runs": n,
                "stopped": t["stopped"] / n,
                "rounds_used": t["rounds_used"] / n,
                "rounds_saved": t["rounds_saved"] / n,
                "fraction_used": t["fraction_used"] / t["fraction_runs"],
                "regret": t["regret"] / t["regret_runs"],
                "relative_regret": t["relative_regret"] / t["relative_runs"],
                "max_regret": np.where(t["regret_runs"] > 0, t["max_regret"], np.nan),
                "regret_runs": t["regret_runs"],
            }
            if self.kind == "plateau":
                columns["reductions"] = t["reductions"] / n
                columns["first_cut"] = t["first_cut"] / t["cut_runs"]
            if self.kind == "checkpoint":
                columns["n_kept"] = t["n_kept"] / n
                columns["n_saved"] = t["n_saved"] / n
        return Summary(params=self.params, columns=columns, kind=self.kind)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per configuration x run (configuration, its parameters, the run, every
        per-run field; ``kept_rounds`` for checkpoints); with ``per_run=False``, the summary.
        Returns the path."""
        if self.per_run is None:
            return self.summary().to_csv(path)
        assert self.sources is not None and self.lengths is not None
        assert self.run_best is not None
        out = Path(path)
        names = list(dict.fromkeys(k for p in self.params for k in p))
        extras = [k for k in ("reductions", "first_cut", "n_kept", "n_saved")
                  if k in self.per_run]
        header = ["config", *names, "run", "source", "length", "run_best", *PER_RUN, *extras]
        if "kept" in self.per_run:
            header.append("kept_rounds")
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for c, p in enumerate(self.params):
                for r in range(self.runs):
                    row: list[Any] = [c, *(p.get(k, "") for k in names), r, self.sources[r],
                                      int(self.lengths[r]), _py(self.run_best[r])]
                    row += [_py(self.per_run[k][c, r]) for k in (*PER_RUN, *extras)]
                    if "kept" in self.per_run:
                        row.append(";".join(str(i) for i in np.flatnonzero(
                            self.per_run["kept"][c, r])))
                    writer.writerow(row)
        return out

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Draw the Pareto plot (mean fraction of the rounds used against mean relative regret,
        the front joined) to a PNG with matplotlib's Agg canvas (the ``plot`` extra, imported
        here). Returns the path."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError(
                "SweepResult.plot needs matplotlib: pip install trainctl[plot]"
            ) from exc
        summary = self.summary()
        x = summary.columns["fraction_used"] * 100
        y = summary.columns["relative_regret"] * 100
        ylabel = "mean relative regret (% above the run's best)"
        if np.isnan(y).all():
            y = summary.columns["regret"]
            ylabel = "mean regret"
        front = summary.pareto()
        figure = Figure(figsize=(7.5, 5), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.scatter(x[~front], y[~front], s=18, color="0.6", label="configuration")
        order = np.argsort(x[front])
        axes.plot(x[front][order], y[front][order], "o-", color="C0", label="Pareto front")
        for i in np.flatnonzero(front):
            axes.annotate(label_of(self.params[i]), (x[i], y[i]), fontsize=7,
                          textcoords="offset points", xytext=(4, 4))
        axes.set_xlabel("mean training time used (% of the rounds logged)")
        axes.set_ylabel(ylabel)
        axes.set_title(title if title is not None else f"{self.policy!r} on {self.runs} runs",
                       fontsize=8, wrap=True)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        out = Path(path)
        figure.savefig(out, format="png")
        return out


def new_totals(n_configs: int) -> dict[str, FloatArray]:
    """Zeroed sums for :meth:`SweepResult.summary`."""
    names = ("runs", "stopped", "rounds_used", "rounds_saved", "fraction_used", "fraction_runs",
             "regret", "regret_runs", "relative_regret", "relative_runs", "reductions",
             "first_cut", "cut_runs", "n_kept", "n_saved")
    out = {name: np.zeros(n_configs) for name in names}
    out["max_regret"] = np.full(n_configs, -np.inf)
    return out


def add_totals(totals: dict[str, FloatArray], rows: Sequence[int],
               fields: Mapping[str, np.ndarray[Any, Any]], lengths: npt.NDArray[np.int64],
               kind: str) -> None:
    """Add one chunk's ``(len(rows), R)`` per-run fields to the sums of configurations ``rows``."""
    idx = np.asarray(rows)
    runs = fields["stop_round"].shape[1]
    stopped = fields["stop_round"] >= 0
    used = fields["rounds_used"]
    totals["runs"][idx] += runs
    totals["stopped"][idx] += stopped.sum(axis=1)
    totals["rounds_used"][idx] += used.sum(axis=1)
    totals["rounds_saved"][idx] += (lengths[None, :] - used).sum(axis=1)
    has = lengths > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = used[:, has] / lengths[None, has]
    totals["fraction_used"][idx] += fraction.sum(axis=1)
    totals["fraction_runs"][idx] += int(has.sum())
    regret = fields["regret"]
    finite = np.isfinite(regret)
    totals["regret"][idx] += np.where(finite, regret, 0.0).sum(axis=1)
    totals["regret_runs"][idx] += finite.sum(axis=1)
    if finite.any():
        chunk_max = np.where(finite, regret, -np.inf).max(axis=1)
        totals["max_regret"][idx] = np.maximum(totals["max_regret"][idx], chunk_max)
    rel = fields["relative_regret"]
    finite = np.isfinite(rel)
    totals["relative_regret"][idx] += np.where(finite, rel, 0.0).sum(axis=1)
    totals["relative_runs"][idx] += finite.sum(axis=1)
    if kind == "plateau":
        totals["reductions"][idx] += fields["reductions"].sum(axis=1)
        cut = fields["first_cut"] >= 0
        totals["first_cut"][idx] += np.where(cut, fields["first_cut"], 0).sum(axis=1)
        totals["cut_runs"][idx] += cut.sum(axis=1)
    if kind == "checkpoint":
        totals["n_kept"][idx] += fields["n_kept"].sum(axis=1)
        totals["n_saved"][idx] += fields["n_saved"].sum(axis=1)
