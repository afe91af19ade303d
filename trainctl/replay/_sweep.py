"""``sweep(policy, grid, runs)``: what every configuration of a grid would have done on every run.

Theory of operation
-------------------
1. **Grid.** ``grid`` maps parameter names to lists of values; their cross product, in order
   (the last name varies fastest), gives the configurations, each built with
   ``attrs.evolve(policy, **combination)`` so that the policy's own constructor validates it (a
   bad combination is an error naming it).
2. **Groups.** The configurations are grouped by the policy's *group key*: its monitor (the whole
   comparison rule) and the options that change the control flow. Each group is one kernel call
   per chunk (:mod:`trainctl.replay._kernels`), which evaluates the group's own
   ``policy.monitoring.improves`` / ``beyond`` on arrays: the comparison is never written again.
3. **Chunks.** Runs are read ``chunk`` at a time (a list, a :class:`RunArrays`, or an iterator of
   either, consumed lazily), so memory is bounded by the chunk: ``O(chunk x rounds)`` for the
   run arrays and the shared history, ``O(configurations x chunk)`` for the lanes. Per-run
   results are kept (``(C, R)`` arrays, and ``(C, R, T)`` for the rate trajectories and kept
   sets) unless ``per_run=False``, which keeps only the sums the summary needs: then a million
   runs cost what one chunk costs.
4. **Per-run fields** (:mod:`trainctl.replay._result`): the restored round and value, and the
   regret against the run's own best, from each kernel's stop round, best and restore flag.

The sweep is exact: each configuration on each run gives what :func:`trainctl.simulate` gives
(same stop round, same best, same kept set, same rates); the tests replay every configuration of
whole grids with ``simulate`` to prove it.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from ._kernels import Kernel, Outcome, _gather, kernel_for
from ._result import PER_RUN, SweepResult, add_totals, new_totals
from ._run import Batch, Run, RunArrays, batches, peek_runs

__all__ = ["expand_grid", "sweep"]

#: lanes (configurations of a group x runs of a chunk) a chunk aims at: small enough for the
#: lane arrays to stay in a CPU's cache, large enough that numpy's per-call cost is amortised
TARGET_LANES = 1 << 17


def expand_grid(
    policy: Any, grid: Mapping[str, Iterable[Any]] | None
) -> tuple[tuple[Any, ...], tuple[dict[str, Any], ...]]:
    """The configurations of ``grid`` (crossed, in order) and each one's grid values."""
    if grid is None or not grid:
        return (policy,), ({},)
    if not isinstance(grid, Mapping):
        raise TypeError(
            f"'grid' must be a dict of parameter name -> list of values, got "
            f"{type(grid).__name__}"
        )
    if not attrs.has(type(policy)):
        raise TypeError(f"a grid needs an attrs policy configuration, got {type(policy).__name__}")
    fields = {f.alias or f.name for f in attrs.fields(type(policy)) if f.init}
    names, values = [], []
    for name, options in grid.items():
        if name not in fields:
            raise ValueError(
                f"grid parameter {name!r} is not an argument of {type(policy).__name__} "
                f"(arguments: {', '.join(sorted(fields))})"
            )
        if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
            raise TypeError(
                f"grid[{name!r}] must be a list of values, got {type(options).__name__} "
                f"{options!r}"
            )
        items = [v.item() if isinstance(v, np.generic) else v for v in options]
        if not items:
            raise ValueError(f"grid[{name!r}] must hold at least one value, got none")
        names.append(name)
        values.append(items)
    configs, params = [], []
    for combo in itertools.product(*values):
        combination = dict(zip(names, combo, strict=True))
        try:
            configs.append(attrs.evolve(policy, **combination))
        except (TypeError, ValueError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in combination.items())
            raise type(exc)(f"grid combination ({shown}): {exc}") from None
        params.append(combination)
    return tuple(configs), tuple(params)


def _default_chunk(largest_group: int) -> int:
    return int(min(16_384, max(256, TARGET_LANES // max(1, largest_group))))


def sweep(
    policy: Any,
    grid: Mapping[str, Iterable[Any]] | None = None,
    runs: Sequence[Run | Sequence[Mapping[str, Any]]] | RunArrays | Iterable[Any] = (),
    *,
    chunk: int | None = None,
    lr: float | None = None,
    per_run: bool = True,
) -> SweepResult:
    """Replay every configuration of ``grid`` on every run, vectorised (see the module doc).

    Args:
        policy: a configured policy: :class:`~trainctl.EarlyStopping` (every rule and option),
            :class:`~trainctl.ReduceLROnPlateau` (a float ``min_lr``),
            :class:`~trainctl.CheckpointPolicy` (epoch triggers, names with ``{epoch}``), or
            Prechelt's ``GL``, ``PQ``, ``UP`` (``trainctl._prechelt``).
        grid: parameter name -> values; crossed. ``None`` or ``{}``: the policy alone.
        runs: a list of :class:`Run` (or of lists of metric dicts), a :class:`RunArrays`, or an
            iterator of runs or of :class:`RunArrays` (read lazily, ``chunk`` runs at a time).
        chunk: runs per chunk (default: about ``2**17`` lanes per group, 256 to 16384 runs).
        lr: the starting learning rate (``ReduceLROnPlateau`` only).
        per_run: keep the per-configuration x run arrays; ``False`` keeps only the summary's
            sums (bounded memory for any number of runs).

    Returns:
        a :class:`SweepResult`.

    >>> import trainctl
    >>> from trainctl.replay import sweep
    >>> runs = [[{"val_loss": v} for v in (1.0, 0.8, 0.9, 0.95, 0.7, 0.9, 1.0, 1.1)]]
    >>> result = sweep(trainctl.EarlyStopping(), {"patience": [1, 2, 3]}, runs)
    >>> result.stop_round[:, 0].tolist(), result.best[:, 0].tolist()
    ([2, 3, 7], [0.8, 0.8, 0.7])
    """
    started = time.perf_counter()
    configs, params = expand_grid(policy, grid)
    kernel = kernel_for(policy)
    for config in configs:
        kernel_for(config)
        kernel.check(config)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                              or chunk < 1):
        raise ValueError(f"'chunk' must be an int >= 1, got {chunk!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"'lr' must be a finite number >= 0, got {lr!r}")
    groups: dict[Any, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(kernel.group_key(config), []).append(i)
    names = tuple(dict.fromkeys(n for c in configs for n in kernel.metrics(c)))
    regret_on = [kernel.monitor(c) for c in configs]
    metric, direction = regret_on[0]
    size = chunk or _default_chunk(max(len(g) for g in groups.values()))
    source, total = peek_runs(runs)

    totals = new_totals(len(configs))
    kept: dict[str, list[np.ndarray[Any, Any]]] = {}
    # with the number of runs known, the (C, R) fields are written in place, chunk by chunk
    placed: dict[str, np.ndarray[Any, Any]] = {}
    run_sources: list[str] = []
    run_lengths: list[np.ndarray[Any, Any]] = []
    run_bests: list[np.ndarray[Any, Any]] = []
    seen = dict.fromkeys(names, False)
    n_runs = 0
    transitions = 0
    for batch in batches(source, names, size):
        for name in names:
            seen[name] = seen[name] or bool(batch.present[name].any())
        fields = _replay_chunk(kernel, configs, groups, batch, lr, regret_on)
        add_totals(totals, range(len(configs)), fields, batch.lengths, kernel.kind)
        n_runs += batch.size
        transitions += len(configs) * int(batch.lengths.sum())
        if per_run:
            for key, value in fields.items():
                if total is not None and value.ndim == 2 and key != "run_best":
                    if key not in placed:
                        placed[key] = np.empty((len(configs), total), dtype=value.dtype)
                    placed[key][:, n_runs - batch.size:n_runs] = value
                else:
                    kept.setdefault(key, []).append(value)
            run_sources.extend(batch.sources)
            run_lengths.append(batch.lengths)
            run_bests.append(fields["run_best"][0])
    for name, found in seen.items():
        if not found and n_runs:
            warnings.warn(
                f"metric {name!r} was logged in none of the {n_runs} runs replayed, so the "
                "policy never saw it (Hugging Face logs 'eval_loss', Keras 'val_loss'; see "
                "Run.metric_names)",
                UserWarning,
                stacklevel=2,
            )
    per: dict[str, np.ndarray[Any, Any]] | None = None
    if per_run:
        per = {key: _concat(parts) for key, parts in kept.items() if key != "run_best"}
        per.update(placed)
        for name in PER_RUN:  # no runs at all
            per.setdefault(name, np.zeros((len(configs), 0)))
    return SweepResult(
        policy=policy,
        grid={k: tuple(v) for k, v in (grid or {}).items()},
        configs=configs,
        params=params,
        kind=kernel.kind,
        metric=metric,
        direction=direction,
        runs=n_runs,
        sources=tuple(run_sources) if per_run else None,
        lengths=np.concatenate(run_lengths) if per_run and run_lengths
        else (np.zeros(0, dtype=np.int64) if per_run else None),
        run_best=np.concatenate(run_bests) if per_run and run_bests
        else (np.zeros(0) if per_run else None),
        per_run=per,
        totals=totals,
        transitions=transitions,
        seconds=time.perf_counter() - started,
    )


def _concat(parts: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Chunks joined along the runs axis; ``(C, R, T)`` ones padded to the longest ``T``."""
    if not parts:
        return np.zeros((0, 0))
    if parts[0].ndim == 3:
        t_max = max(p.shape[2] for p in parts)
        fill: Any = False if parts[0].dtype == bool else np.nan
        parts = [
            p if p.shape[2] == t_max else np.concatenate(
                [p, np.full((*p.shape[:2], t_max - p.shape[2]), fill, dtype=p.dtype)], axis=2)
            for p in parts
        ]
    return np.concatenate(parts, axis=1)


def _run_best(batch: Batch, metric: str | None, direction: str | None) -> np.ndarray[Any, Any]:
    """Each run's best logged value of ``metric`` (NaN ignored; NaN if none)."""
    if metric is None or direction is None:
        return np.full(batch.size, np.nan)
    values = np.where(batch.present[metric], batch.values[metric], np.nan)
    if values.shape[0] == 0:
        return np.full(batch.size, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN runs
        best: np.ndarray[Any, Any] = (np.nanmin(values, axis=0) if direction == "min"
                                      else np.nanmax(values, axis=0))
    return best


def _replay_chunk(
    kernel: Kernel, configs: Sequence[Any], groups: Mapping[Any, list[int]], batch: Batch,
    lr: float | None, regret_on: Sequence[tuple[str | None, str | None]],
) -> dict[str, np.ndarray[Any, Any]]:
    """Every group on one chunk, assembled into ``(C, R)`` per-run fields."""
    c_len, r_len = len(configs), batch.size
    out: dict[str, np.ndarray[Any, Any]] = {}
    for key, rows in groups.items():
        result: Outcome = kernel.run([configs[i] for i in rows], rows, batch, lr)
        for name, value in (("stop_round", result.stop_round), ("best", result.best),
                            ("best_round", result.best_round),
                            ("restore_best", result.restore_best), *result.extra.items()):
            if name not in out:  # every configuration belongs to exactly one group
                out[name] = np.empty((c_len, *value.shape[1:]), dtype=value.dtype)
            out[name][rows] = value
        del key
    lengths = batch.lengths
    stop_round = out["stop_round"]
    last = np.where(stop_round >= 0, stop_round, lengths[None, :] - 1)
    out["rounds_used"] = np.where(stop_round >= 0, stop_round + 1, lengths[None, :])
    if "restored" in out:  # a checkpoint policy: the best checkpoint it keeps
        restored = out.pop("restored")
    else:
        restored = np.where(out["restore_best"], out["best_round"], last)
    out["restored_round"] = restored
    value = np.full((c_len, r_len), np.nan)
    regret = np.full((c_len, r_len), np.nan)
    relative = np.full((c_len, r_len), np.nan)
    run_best_rows = np.empty((c_len, r_len))
    by_metric: dict[tuple[str | None, str | None], list[int]] = {}
    for c, on in enumerate(regret_on):
        by_metric.setdefault(on, []).append(c)
    for (metric, direction), rows in by_metric.items():
        run_best = _run_best(batch, metric, direction)
        run_best_rows[rows] = run_best
        if metric is None or batch.rounds == 0:
            continue
        at = restored[rows]
        ok = (at >= 0) & _gather(batch.present[metric], at)
        got = np.where(ok, _gather(batch.values[metric], at), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = got - run_best if direction == "min" else run_best - got
            scale = np.abs(run_best)
            relative[rows] = np.where(np.isfinite(scale) & (scale > 0), diff / scale, np.nan)
        value[rows] = got
        regret[rows] = diff
    out["restored_value"] = value
    out["regret"] = regret
    out["relative_regret"] = relative
    out["run_best"] = run_best_rows
    del out["restore_best"]
    for name in ("stop_round", "rounds_used", "best_round", "restored_round", "first_cut",
                 "reductions", "n_kept", "n_saved"):
        if name in out:  # rounds and counts fit in 32 bits: half the memory to write
            out[name] = out[name].astype(np.int32)
    for name in PER_RUN:
        assert name in out, name
    return out
