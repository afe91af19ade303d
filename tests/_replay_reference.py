"""The scalar references a sweep is checked against, and the random runs it is checked on.

Every reference drives the live policy: :func:`trainctl.simulate` (a ``Controller`` stepping
each round, ending at the first stop) where the rounds' epochs are the round indices, and the
same loop with ``Controller.step(..., epoch=...)`` where a run logs its own epochs; ``finish()``
says whether the best weights come back. Nothing here re-implements a rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from _streams import metric_stream

import trainctl


class Reference(NamedTuple):
    stop_round: int
    best: float
    best_round: int
    restored_round: int
    lrs: tuple[float, ...] = ()
    cuts: tuple[bool, ...] = ()
    kept: frozenset[int] = frozenset()
    saves: int = 0
    event: str = ""


def _round_of(epoch: int | None, epochs: Sequence[int]) -> int:
    return -1 if epoch is None else list(epochs).index(epoch)


def _steps(policy: Any, rounds: Sequence[Mapping[str, Any]], epochs: Sequence[int] | None,
           lr: float | None) -> tuple[trainctl.Controller, list[trainctl.Decision]]:
    ctl = trainctl.Controller(policy, lr=lr)
    out = []
    for i, metrics in enumerate(rounds):
        d = ctl.step(metrics) if epochs is None else ctl.step(metrics, epoch=epochs[i])
        out.append(d)
        if d.stop:
            break
    return ctl, out


def reference(policy: Any, rounds: Sequence[Mapping[str, Any]],
              epochs: Sequence[int] | None = None, *, lr: float | None = None) -> Reference:
    """What the live policy does on ``rounds``: ``simulate``'s decisions, ``finish()``'s
    restore, the Controller's rates and the checkpoints saved and not deleted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # absent metrics are part of the streams
        if epochs is None:
            decisions = trainctl.simulate(policy, rounds, lr=lr)
            ctl, mine = _steps(policy, rounds, None, lr)
            assert [d.to_dict() for d in mine] == [d.to_dict() for d in decisions]
        else:
            ctl, decisions = _steps(policy, rounds, epochs, lr)
    epoch_list = list(range(len(rounds))) if epochs is None else list(epochs)
    stopped = bool(decisions) and decisions[-1].stop
    stop_round = len(decisions) - 1 if stopped else -1
    event = decisions[-1].details[0].reason.event if stopped else ""
    last = stop_round if stopped else len(rounds) - 1
    finish = ctl.finish()
    restore = finish.restore_best
    if isinstance(policy, trainctl.CheckpointPolicy):
        alive: dict[str, int] = {}
        saves = 0
        for i, d in enumerate(decisions):
            if d.save is not None:
                alive[d.save.name] = i
                saves += 1
            for name in d.delete:
                alive.pop(name)
        state = ctl.states[0]
        best = math.nan if state.best is None else state.best
        best_round = -1
        for i, d in enumerate(decisions):
            if d.save is not None and d.save.is_best:
                best_round = i
        return Reference(stop_round, best, best_round, -2, kept=frozenset(alive.values()),
                         saves=saves)
    detail = decisions[-1].details[0] if decisions else None
    best = getattr(detail, "best", None)
    best_epoch = getattr(detail, "best_epoch", None)
    if isinstance(policy, trainctl.ReduceLROnPlateau):
        state = ctl.states[0]
        best = state.best
        best_epoch = None
    best_round = _round_of(best_epoch, epoch_list)
    restored = best_round if restore else last
    lrs = tuple(float(d.lr) for d in decisions) if lr is not None else ()
    cuts = tuple(bool(getattr(d.details[0], "reduced", False)) for d in decisions)
    return Reference(stop_round, math.nan if best is None else float(best), best_round,
                     restored, lrs, cuts, event=event)


def same(a: float, b: float) -> bool:
    """Equal floats, two NaNs equal."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def random_runs(seed: int, n_runs: int, max_len: int, *, mode: str = "min",
                min_delta: float = 0.0, float32: bool = True, missing: bool = True,
                train: bool = False, name: str = "val_loss") -> list[list[dict[str, float]]]:
    """``n_runs`` streams of ``metric_stream`` values (ties, plateaus, NaN, infinities, and
    absent values), lengths 0..max_len; ``train`` adds a ``loss`` stream."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        n = int(rng.integers(0, max_len + 1))
        values = metric_stream(rng, n, min_delta=min_delta, mode=mode,  # type: ignore[arg-type]
                               float32=float32, missing=missing)
        losses = metric_stream(rng, n, mode="min", float32=float32, missing=missing,
                               signed=False) if train else [None] * n
        rounds = []
        for v, loss in zip(values, losses, strict=True):
            metrics: dict[str, float] = {}
            if v is not None:
                metrics[name] = v
            if loss is not None:
                metrics["loss"] = loss
            rounds.append(metrics)
        runs.append(rounds)
    return runs
