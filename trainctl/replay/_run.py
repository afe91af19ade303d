"""Recorded runs, and the arrays a sweep reads them as.

A :class:`Run` is what a training run logged, one evaluation round after another: a metric dict
per round (what ``Controller.step`` would have been given), with the 0-based epoch and the
optimizer steps of each round where the log says. :class:`RunArrays` holds many runs of one
metric layout as ``(runs, rounds)`` numpy arrays, for sweeps too large to hold as dicts (a
million runs): :func:`trainctl.replay.sweep` takes either, or an iterator of them, and reads
them chunk by chunk (:func:`batches`) as :class:`Batch` es: one ``(rounds, runs)`` array per
metric (one row per round, so a round's values for every run are contiguous), a mask of the
values present, and the epoch of every round.

Missing and padding: a run shorter than the chunk's longest is padded; a padded round and a
round whose metric was not logged are both "not present" (``present`` is ``False``, the value
NaN), which every policy treats as an absent metric: nothing changes. A NaN that *was* logged is
present: it is a value like any other, and each policy's own rule decides what it means.

Epochs: a run whose every round has a known epoch uses them (``Observation.epoch``, which
``start_from_epoch``, Keras' ``epoch > 0`` and the strips of PQ/UP read); otherwise the round
index, as ``Controller.step`` does when no epoch is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .._monitor import coerce_metric

__all__ = ["Batch", "Run", "RunArrays", "as_run", "batches"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _rounds(value: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    out = []
    for i, metrics in enumerate(value):
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"'rounds[{i}]' must be a mapping of metric name -> number, got "
                f"{type(metrics).__name__} {metrics!r:.60}"
            )
        out.append(dict(metrics))
    return tuple(out)


def _optional_ints(value: Iterable[int | None] | None) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    return tuple(None if v is None else int(v) for v in value)


@attrs.frozen(eq=True, hash=False)
class Run:
    """One recorded run: its evaluation rounds in order.

    Attributes:
        source: where it came from (a file path, or a description).
        rounds: one metric dict per evaluation round (name -> number), in order.
        epochs: the 0-based epoch of each round (``None`` where unknown), or ``None``.
        steps: optimizer steps completed at each round (``None`` where unknown), or ``None``.

    ``Run.from_rounds([{"val_loss": 0.9}, ...])`` builds one from plain dicts.
    """

    source: str
    rounds: tuple[dict[str, Any], ...] = attrs.field(converter=_rounds)
    epochs: tuple[int | None, ...] | None = attrs.field(default=None,
                                                        converter=_optional_ints)
    steps: tuple[int | None, ...] | None = attrs.field(default=None, converter=_optional_ints)

    def __attrs_post_init__(self) -> None:
        for name in ("epochs", "steps"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.rounds):
                raise ValueError(
                    f"'{name}' must have one entry per round ({len(self.rounds)}), got "
                    f"{len(value)}"
                )
        if self.epochs is not None and any(e is not None and e < 0 for e in self.epochs):
            raise ValueError(f"'epochs' must be >= 0, got {self.epochs!r:.80}")

    @classmethod
    def from_rounds(cls, rounds: Iterable[Mapping[str, Any]], source: str = "<rounds>") -> Run:
        """A run from metric dicts (epochs: the round index; steps unknown)."""
        return cls(source=source, rounds=rounds)

    def __len__(self) -> int:
        return len(self.rounds)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric name that appears in some round, in order of first appearance."""
        seen: dict[str, None] = {}
        for metrics in self.rounds:
            seen.update(dict.fromkeys(metrics))
        return tuple(seen)

    def metric(self, name: str) -> FloatArray:
        """``name`` per round as floats, NaN where absent (see :meth:`present`)."""
        return np.array(
            [_value(self, i, m, name) if name in m else np.nan for i, m in enumerate(self.rounds)],
            dtype=np.float64,
        )

    def present(self, name: str) -> BoolArray:
        """Whether each round logged ``name``."""
        return np.array([name in m for m in self.rounds], dtype=bool)

    def epoch_indices(self) -> IntArray:
        """The epoch of each round as replays use it: the logged epochs if every round has
        one, else the round indices."""
        if self.epochs is not None and all(e is not None for e in self.epochs):
            return np.array(self.epochs, dtype=np.int64)
        return np.arange(len(self.rounds), dtype=np.int64)


def _value(run: Run, index: int, metrics: Mapping[str, Any], name: str) -> float:
    value = metrics[name]
    if value.__class__ is float:
        return float(value)
    try:
        return coerce_metric(name, value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{run.source}: round {index}: {exc}") from None


def as_run(value: Run | Sequence[Mapping[str, Any]], index: int) -> Run:
    """A :class:`Run`, or a list of metric dicts as one (named ``runs[index]``)."""
    if isinstance(value, Run):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"runs[{index}] must be a trainctl.replay.Run or a list of metric dicts, got "
            f"{type(value).__name__}"
        )
    return Run(source=f"runs[{index}]", rounds=value)


def _check_2d(name: str, value: Any, shape: tuple[int, int] | None) -> np.ndarray[Any, Any]:
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"'{name}' must be a 2-D (runs, rounds) array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"'{name}' must have shape {shape} like the others, got {arr.shape}")
    return arr


@attrs.frozen(eq=False)
class RunArrays:
    """Many runs as arrays: each metric a ``(runs, rounds)`` array, one row per run.

    Args:
        metrics: name -> ``(R, T)`` array of floats (NaN is a logged NaN unless ``present``
            says the value is absent).
        present: name -> ``(R, T)`` bool array: which values were logged (default: every value
            of the first ``lengths[r]`` rounds).
        lengths: rounds each run has (default ``T`` for every run); rounds past a run's length
            are padding.
        epochs: ``(R, T)`` 0-based epochs of each round (default: the round index).
        sources: a name per run (default ``"arrays[i]"``).
    """

    metrics: Mapping[str, np.ndarray[Any, Any]]
    present: Mapping[str, np.ndarray[Any, Any]] | None = None
    lengths: np.ndarray[Any, Any] | None = None
    epochs: np.ndarray[Any, Any] | None = None
    sources: Sequence[str] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("'metrics' must hold at least one metric, got none")
        shape: tuple[int, int] | None = None
        for name, arr in self.metrics.items():
            shape = _check_2d(f"metrics[{name!r}]", arr, shape).shape
        assert shape is not None
        for name, arr in (self.present or {}).items():
            if name not in self.metrics:
                raise ValueError(f"'present' names {name!r}, which is not in 'metrics'")
            _check_2d(f"present[{name!r}]", arr, shape)
        if self.lengths is not None:
            lengths = np.asarray(self.lengths)
            if lengths.shape != (shape[0],) or (lengths < 0).any() or (lengths > shape[1]).any():
                raise ValueError(
                    f"'lengths' must be {shape[0]} integers in [0, {shape[1]}], got "
                    f"{lengths!r:.80}"
                )
        if self.epochs is not None:
            _check_2d("epochs", self.epochs, shape)
        if self.sources is not None and len(self.sources) != shape[0]:
            raise ValueError(
                f"'sources' must name each of the {shape[0]} runs, got {len(self.sources)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(runs, rounds)``."""
        first = next(iter(self.metrics.values()))
        return (int(first.shape[0]), int(first.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]


@attrs.frozen(eq=False)
class Batch:
    """A chunk of runs, laid out for a sweep: one row per round.

    Attributes:
        values: name -> ``(T, R)`` float64, NaN where not present.
        present: name -> ``(T, R)`` bool.
        epochs: ``(T, R)`` int64, the epoch of each round (padding: the round index).
        lengths: ``(R,)`` int64, rounds per run.
        sources: a name per run.
        start: the index of the chunk's first run among all runs.
    """

    values: dict[str, FloatArray]
    present: dict[str, BoolArray]
    epochs: IntArray
    lengths: IntArray
    sources: tuple[str, ...]
    start: int

    @property
    def rounds(self) -> int:
        return int(self.epochs.shape[0])

    @property
    def size(self) -> int:
        return int(self.epochs.shape[1])


def _batch_from_runs(runs: Sequence[Run], names: Sequence[str], start: int) -> Batch:
    n = len(runs)
    t_max = max((len(r) for r in runs), default=0)
    lengths = np.array([len(r) for r in runs], dtype=np.int64)
    epochs = np.tile(np.arange(t_max, dtype=np.int64)[:, None], (1, n))
    values = {name: np.full((t_max, n), np.nan) for name in names}
    present = {name: np.zeros((t_max, n), dtype=bool) for name in names}
    for j, run in enumerate(runs):
        length = len(run)
        if length:
            epochs[:length, j] = run.epoch_indices()
        for i, metrics in enumerate(run.rounds):
            for name in names:
                if name in metrics:
                    values[name][i, j] = _value(run, i, metrics, name)
                    present[name][i, j] = True
    return Batch(values=values, present=present, epochs=epochs, lengths=lengths,
                 sources=tuple(r.source for r in runs), start=start)


def _batch_from_arrays(arrays: RunArrays, names: Sequence[str], lo: int, hi: int,
                       start: int) -> Batch:
    t = arrays.shape[1]
    lengths = (np.full(hi - lo, t, dtype=np.int64) if arrays.lengths is None
               else np.asarray(arrays.lengths[lo:hi], dtype=np.int64))
    t_max = int(lengths.max(initial=0))
    valid = np.arange(t_max)[:, None] < lengths[None, :]
    values: dict[str, FloatArray] = {}
    present: dict[str, BoolArray] = {}
    for name in names:
        if name not in arrays.metrics:
            values[name] = np.full((t_max, hi - lo), np.nan)
            present[name] = np.zeros((t_max, hi - lo), dtype=bool)
            continue
        block = np.ascontiguousarray(
            np.asarray(arrays.metrics[name][lo:hi, :t_max], dtype=np.float64).T
        )
        mask = valid.copy()
        if arrays.present is not None and name in arrays.present:
            mask &= np.asarray(arrays.present[name][lo:hi, :t_max], dtype=bool).T
        if not mask.all():
            block[~mask] = np.nan
        values[name] = block
        present[name] = mask
    if arrays.epochs is None:
        epochs = np.tile(np.arange(t_max, dtype=np.int64)[:, None], (1, hi - lo))
    else:
        epochs = np.ascontiguousarray(np.asarray(arrays.epochs[lo:hi, :t_max],
                                                 dtype=np.int64).T)
        if (epochs[valid] < 0).any():
            raise ValueError("'epochs' must be >= 0")
    sources = (tuple(arrays.sources[lo:hi]) if arrays.sources is not None
               else tuple(f"arrays[{start + i}]" for i in range(hi - lo)))
    return Batch(values=values, present=present, epochs=epochs, lengths=lengths,
                 sources=sources, start=start)


def batches(
    runs: Any, names: Sequence[str], chunk: int
) -> Iterator[Batch]:
    """Read ``runs`` (see :func:`trainctl.replay.sweep`) as batches of at most ``chunk`` runs.

    ``runs`` is consumed lazily: an iterator of runs is read ``chunk`` runs at a time, so that
    only one chunk is held at once.
    """
    if isinstance(runs, RunArrays):
        runs = [runs]
    start = 0
    pending: list[Run] = []
    for item in runs:
        if isinstance(item, RunArrays):
            if pending:
                yield _batch_from_runs(pending, names, start)
                start += len(pending)
                pending = []
            for lo in range(0, len(item), chunk):
                hi = min(lo + chunk, len(item))
                yield _batch_from_arrays(item, names, lo, hi, start)
                start += hi - lo
            continue
        pending.append(as_run(item, start + len(pending)))
        if len(pending) == chunk:
            yield _batch_from_runs(pending, names, start)
            start += len(pending)
            pending = []
    if pending:
        yield _batch_from_runs(pending, names, start)


def peek_runs(runs: Any) -> tuple[Any, int | None]:
    """``runs`` ready to iterate again, and how many runs it holds if that is known now."""
    if isinstance(runs, RunArrays):
        return runs, len(runs)
    if isinstance(runs, Sequence) and not isinstance(runs, (str, bytes)):
        total = 0
        for item in runs:
            total += len(item) if isinstance(item, RunArrays) else 1
        return runs, total
    if isinstance(runs, Iterable):
        return iter(runs), None
    raise TypeError(
        "'runs' must be a list of trainctl.replay.Run (or of lists of metric dicts), a "
        f"RunArrays, or an iterator of them; got {type(runs).__name__}"
    )

