"""One-call warmup-then-decay schedules whose ``total_steps`` counts the warmup too.

``warmup(cosine(lr, T - W), W)`` and ``warmup_cosine(lr, T, W)`` are the same curve; the one-call
form exists because the two-call form is easy to get wrong: ``warmup`` shifts the schedule it wraps,
so ``warmup(cosine(lr, T), W)`` reaches its end at step ``T + W``, not ``T``. These mirror
Hugging Face's ``get_cosine_schedule_with_warmup`` / ``get_linear_schedule_with_warmup``
(``num_training_steps`` includes the warmup) and optax's ``warmup_cosine_decay_schedule``
(``decay_steps`` includes the warmup), operation for operation where the rates are the same
expression.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numpy as np

from . import _checks
from ._base import FloatArray, IntArray, LrSchedule, Schedule, as_float_array

__all__ = ["warmup_cosine", "warmup_linear"]


@attrs.frozen(repr=False)
class _WarmupDecay(LrSchedule):
    """The shared warmup; subclasses give the decay factor ``f(p)`` for ``p`` in ``[0, 1]``."""

    lr: float
    total_steps: int
    warmup_steps: int
    final_lr: float
    start_lr: float

    def _factor(self, t: int) -> float:
        raise NotImplementedError

    def _factors(self, t: IntArray) -> FloatArray:
        raise NotImplementedError

    def _scalar(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.start_lr + (self.lr - self.start_lr) * (t / self.warmup_steps)
        return self.final_lr + (self.lr - self.final_lr) * self._factor(t)

    def _array(self, t: IntArray) -> FloatArray:
        decay = self.final_lr + (self.lr - self.final_lr) * self._factors(t)
        if self.warmup_steps == 0:
            return as_float_array(decay)
        ramp = self.start_lr + (self.lr - self.start_lr) * (t / self.warmup_steps)
        return as_float_array(np.where(t < self.warmup_steps, ramp, decay))


@attrs.frozen(repr=False)
class _WarmupCosine(_WarmupDecay):
    _factory: ClassVar[str] = "warmup_cosine"

    def _factor(self, t: int) -> float:
        total, warm = self.total_steps, self.warmup_steps
        progress = ((t if t < total else total) - warm) / (total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def _factors(self, t: IntArray) -> FloatArray:
        total, warm = self.total_steps, self.warmup_steps
        progress = (np.clip(t, warm, total) - warm) / (total - warm)
        return as_float_array(0.5 * (1.0 + np.cos(math.pi * progress)))


@attrs.frozen(repr=False)
class _WarmupLinear(_WarmupDecay):
    _factory: ClassVar[str] = "warmup_linear"

    def _factor(self, t: int) -> float:
        total = self.total_steps
        return (total - (t if t < total else total)) / (total - self.warmup_steps)

    def _factors(self, t: IntArray) -> FloatArray:
        total = self.total_steps
        return as_float_array((total - np.minimum(t, total)) / (total - self.warmup_steps))


def _fields(
    lr: float, total_steps: int, warmup_steps: int, final_lr: float, start_lr: float
) -> tuple[float, int, int, float, float]:
    """The checked fields, in the classes' order."""
    warm = _checks.count("warmup_steps", warmup_steps, 0)
    total = _checks.count("total_steps", total_steps, 1)
    if total <= warm:
        raise ValueError(
            f"'total_steps' must be > warmup_steps = {warm} (total_steps counts the warmup "
            f"steps too, so the decay gets total_steps - warmup_steps), got {total}"
        )
    return (
        _checks.rate("lr", lr),
        total,
        warm,
        _checks.nonneg("final_lr", final_lr),
        _checks.nonneg("start_lr", start_lr),
    )


def warmup_cosine(
    lr: float,
    total_steps: int,
    warmup_steps: int,
    final_lr: float = 0.0,
    start_lr: float = 0.0,
) -> Schedule:
    """Linear warmup to ``lr``, then a half cosine that reaches ``final_lr`` at ``total_steps``.

    ``total_steps`` counts the warmup too (``T`` below, ``W = warmup_steps < T``)::

        t < W:       start_lr + (lr - start_lr) * (t / W)
        W <= t:      final_lr + (lr - final_lr) * 0.5 * (1 + cos(pi * p)),
                     p = (min(t, T) - W) / (T - W)

    so the rate is ``lr`` at step ``W``, ``final_lr`` at step ``T`` and after.

    ============================================  =============================================
    framework                                     the same schedule
    ============================================  =============================================
    Hugging Face ``get_cosine_schedule_with_``    ``warmup_cosine(lr, num_training_steps,``
    ``warmup(opt, W, T)``                         ``W)``: bit for bit through ``LambdaLR`` on
                                                  ``[0, T]``; past ``T`` Hugging Face's cosine
                                                  rises again, this one holds ``final_lr``
    Hugging Face ``get_cosine_with_min_lr_``      ``final_lr = min_lr`` (or ``min_lr_rate *
    ``schedule_with_warmup``                      lr``), to rounding
    optax ``warmup_cosine_decay_schedule(init,``  ``warmup_cosine(peak, decay_steps, W,``
    ``peak, W, decay_steps, end)``                ``final_lr=end, start_lr=init)``, to rounding
    trainctl ``warmup(cosine(lr, T - W), W)``     the same curve
    ============================================  =============================================

    Param groups: ``start_lr`` and ``final_lr`` scale with each group's base rate (``LambdaLR``'s
    rule, as in Hugging Face).

    >>> s = warmup_cosine(1.0, total_steps=6, warmup_steps=2)
    >>> [round(s(t), 6) for t in range(8)]
    [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
    """
    return _WarmupCosine(*_fields(lr, total_steps, warmup_steps, final_lr, start_lr))


def warmup_linear(
    lr: float,
    total_steps: int,
    warmup_steps: int,
    final_lr: float = 0.0,
    start_lr: float = 0.0,
) -> Schedule:
    """Linear warmup to ``lr``, then a straight line that reaches ``final_lr`` at ``total_steps``.

    ``total_steps`` counts the warmup too (``T`` below, ``W = warmup_steps < T``)::

        t < W:       start_lr + (lr - start_lr) * (t / W)
        W <= t:      final_lr + (lr - final_lr) * ((T - min(t, T)) / (T - W))

    ============================================  =============================================
    framework                                     the same schedule
    ============================================  =============================================
    Hugging Face ``get_linear_schedule_with_``    ``warmup_linear(lr, num_training_steps, W)``:
    ``warmup(opt, W, T)``                         bit for bit through ``LambdaLR``, at every
                                                  step (both hold 0 after ``T``)
    optax ``join_schedules([linear_schedule(``    ``warmup_linear(peak, W + D, W, final_lr=end,``
    ``init, peak, W), linear_schedule(peak,``     ``start_lr=init)``, to rounding
    ``end, D)], [W])``
    ============================================  =============================================

    >>> s = warmup_linear(1.0, total_steps=6, warmup_steps=2)
    >>> [s(t) for t in range(8)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return _WarmupLinear(*_fields(lr, total_steps, warmup_steps, final_lr, start_lr))
