"""Schedules made of schedules: a linear warmup in front, a sequence, a product of factors."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import ClassVar

import attrs
import numpy as np

from . import _checks
from ._base import FloatArray, IntArray, Schedule, as_float_array

__all__ = ["chain", "join", "warmup"]


def _schedule(name: str, value: object) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(f"'{name}' must be a Schedule, got {type(value).__name__} {value!r}")
    return value


def _schedules(name: str, values: Iterable[object]) -> tuple[Schedule, ...]:
    items = tuple(_schedule(name, v) for v in values)
    if not items:
        raise ValueError(f"'{name}' must hold at least 1 schedule, got 0")
    return items


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Warmup(Schedule):
    _factory: ClassVar[str] = "warmup"
    schedule: Schedule
    warmup_steps: int
    start_lr: float
    _target: float = attrs.field(repr=False)  # schedule(0), where the ramp ends

    @property
    def base_lr(self) -> float:
        return self.schedule.base_lr

    def _scalar(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.start_lr + (self._target - self.start_lr) * (t / self.warmup_steps)
        return self.schedule._scalar(t - self.warmup_steps)

    def _array(self, t: IntArray) -> FloatArray:
        warm = self.warmup_steps
        if warm == 0:
            return self.schedule._array(t)
        after = self.schedule._array(np.maximum(t - warm, 0))
        ramp = self.start_lr + (self._target - self.start_lr) * (t / warm)
        return as_float_array(np.where(t < warm, ramp, after))


def warmup(schedule: Schedule, warmup_steps: int, start_lr: float = 0.0) -> Schedule:
    """Prepend a linear warmup from ``start_lr`` to ``schedule(0)``.

    Formula (``W = warmup_steps``)::

        start_lr + (schedule(0) - start_lr) * (t / W)     for t < W
        schedule(t - W)                                   for t >= W

    The inner schedule starts from its own step 0 at step ``W``, so ``warmup(cosine(lr, T - W),
    W)`` is Hugging Face's ``get_cosine_schedule_with_warmup`` and ``warmup(s, W, start_lr=f *
    lr)`` torch's ``SequentialLR([LinearLR(f, 1, W), s], [W])``. ``base_lr`` is the inner
    schedule's.

    >>> from trainctl.schedules import cosine
    >>> s = warmup(cosine(1.0, total_steps=4), warmup_steps=2)
    >>> [round(s(t), 6) for t in range(7)]
    [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0]
    """
    inner = _schedule("schedule", schedule)
    warm = _checks.count("warmup_steps", warmup_steps, 0)
    return _Warmup(
        schedule=inner,
        warmup_steps=warm,
        start_lr=_checks.nonneg("start_lr", start_lr),
        target=inner._scalar(0),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Join(Schedule):
    _factory: ClassVar[str] = "join"
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    @property
    def base_lr(self) -> float:
        return self.schedules[0].base_lr

    def _scalar(self, t: int) -> float:
        i = bisect_right(self.boundaries, t)
        if i == 0:
            return self.schedules[0]._scalar(t)
        return self.schedules[i]._scalar(t - self.boundaries[i - 1])

    def _array(self, t: IntArray) -> FloatArray:
        piece = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="right")
        out = np.empty(t.shape, dtype=np.float64)
        for i, schedule in enumerate(self.schedules):
            mine = piece == i
            if mine.any():
                offset = self.boundaries[i - 1] if i else 0
                out[mine] = schedule._array(t[mine] - offset)
        return out


def join(schedules: Iterable[Schedule], boundaries: Iterable[int]) -> Schedule:
    """Run schedules one after another; each restarts from its own step 0 at its boundary.

    Schedule ``i`` owns steps ``[boundaries[i-1], boundaries[i])`` and is evaluated at ``t -
    boundaries[i-1]`` (torch ``SequentialLR``, optax ``join_schedules``). ``boundaries`` are
    strictly increasing, one fewer than ``schedules``. ``base_lr`` is the first schedule's.

    >>> from trainctl.schedules import exponential, step_decay
    >>> s = join([exponential(0.05, 0.8), step_decay(0.05, 4)], [3])
    >>> [round(s(t), 6) for t in range(9)]
    [0.05, 0.04, 0.032, 0.05, 0.05, 0.05, 0.05, 0.005, 0.005]
    """
    parts = _schedules("schedules", schedules)
    bounds = _checks.int_sequence("boundaries", boundaries, 0, strict=True)
    if len(bounds) != len(parts) - 1:
        raise ValueError(
            f"'boundaries' must have len(schedules) - 1 = {len(parts) - 1} elements, "
            f"got {len(bounds)}"
        )
    return _Join(schedules=parts, boundaries=bounds)


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Chain(Schedule):
    _factory: ClassVar[str] = "chain"
    schedules: tuple[Schedule, ...]

    @property
    def base_lr(self) -> float:
        return self.schedules[0].base_lr

    def _render(self, *, strict: bool) -> str:
        return "chain(" + ", ".join(s._render(strict=strict) for s in self.schedules) + ")"

    def _scalar(self, t: int) -> float:
        first, *rest = self.schedules
        value = first._scalar(t)
        for s in rest:
            value *= s._scalar(t) / s.base_lr
        return value

    def _array(self, t: IntArray) -> FloatArray:
        first, *rest = self.schedules
        value = first._array(t)
        for s in rest:
            value = value * (s._array(t) / s.base_lr)
        return value


def chain(*schedules: Schedule) -> Schedule:
    """Multiply the schedules' factors (torch ``ChainedScheduler``).

    Formula: ``first.base_lr * prod_i(s_i(t) / s_i.base_lr)`` (computed as ``first(t) *
    prod_{i>0}(s_i(t) / s_i.base_lr)``). ``base_lr`` is the first schedule's.

    >>> from trainctl.schedules import constant_factor, exponential
    >>> s = chain(constant_factor(1.0, factor=0.1, total_steps=2), exponential(1.0, 0.5))
    >>> [s(t) for t in range(4)]
    [0.1, 0.05, 0.25, 0.125]
    """
    return _Chain(schedules=_schedules("schedules", schedules))
