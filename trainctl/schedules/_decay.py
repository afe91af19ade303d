"""Closed-form decay schedules from torch's schedulers, Keras' schedule objects and Hugging Face.

Each class mirrors one framework's closed form *operation for operation* (same operand order), so
that parity is a matter of float64 rounding of the same expression, not of algebra. The notation in
the docstrings: ``t`` is the 0-based step, ``lr`` the rate at step 0 unless said otherwise.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import ClassVar

import attrs
import numpy as np

from trainctl._validation import check_finite, check_gt, check_le, check_one_of

from . import _checks
from ._base import FloatArray, IntArray, LrSchedule, Schedule, as_float_array

__all__ = [
    "constant",
    "constant_factor",
    "cosine",
    "exponential",
    "exponential_decay",
    "inverse_sqrt",
    "inverse_time_decay",
    "linear",
    "multistep",
    "piecewise_constant",
    "polynomial",
    "step_decay",
    "warmup_stable_decay",
]


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Constant(LrSchedule):
    _factory: ClassVar[str] = "constant"
    lr: float

    def _scalar(self, t: int) -> float:
        return self.lr

    def _array(self, t: IntArray) -> FloatArray:
        return np.full(t.shape, self.lr, dtype=np.float64)


def constant(lr: float) -> Schedule:
    """The same rate at every step: ``lr``.

    >>> s = constant(0.1)
    >>> s(0), s(10_000)
    (0.1, 0.1)
    """
    return _Constant(lr=_checks.rate("lr", lr))


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _StepDecay(LrSchedule):
    _factory: ClassVar[str] = "step_decay"
    lr: float
    step_size: int
    gamma: float

    def _scalar(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)

    def _array(self, t: IntArray) -> FloatArray:
        k = (t // self.step_size).astype(np.float64)
        return as_float_array(self.lr * np.power(self.gamma, k))


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` every ``step_size`` steps (torch ``StepLR``).

    Formula: ``lr * gamma ** (t // step_size)``.

    >>> s = step_decay(0.05, step_size=3)
    >>> [round(s(t), 6) for t in range(7)]
    [0.05, 0.05, 0.05, 0.005, 0.005, 0.005, 0.0005]
    """
    return _StepDecay(
        lr=_checks.rate("lr", lr),
        step_size=_checks.count("step_size", step_size, 1),
        gamma=_checks.positive("gamma", gamma),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _MultiStep(LrSchedule):
    _factory: ClassVar[str] = "multistep"
    lr: float
    milestones: tuple[int, ...]
    gamma: float

    def _scalar(self, t: int) -> float:
        return self.lr * self.gamma ** bisect_right(self.milestones, t)

    def _array(self, t: IntArray) -> FloatArray:
        passed = np.searchsorted(np.asarray(self.milestones, dtype=np.int64), t, side="right")
        return as_float_array(self.lr * np.power(self.gamma, passed.astype(np.float64)))


def multistep(lr: float, milestones: object, gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` at each milestone (torch ``MultiStepLR``).

    Formula: ``lr * gamma ** (number of milestones <= t)``. A milestone listed twice decays twice,
    as in torch (which counts them with a ``Counter``). ``milestones`` must be non-decreasing.

    >>> s = multistep(0.05, [2, 5, 9])
    >>> [round(s(t), 6) for t in (0, 1, 2, 4, 5, 8, 9)]
    [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005, 5e-05]
    """
    return _MultiStep(
        lr=_checks.rate("lr", lr),
        milestones=_checks.int_sequence("milestones", milestones, 0, strict=False),
        gamma=_checks.positive("gamma", gamma),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Exponential(LrSchedule):
    _factory: ClassVar[str] = "exponential"
    lr: float
    gamma: float

    def _scalar(self, t: int) -> float:
        return self.lr * self.gamma**t

    def _array(self, t: IntArray) -> FloatArray:
        return as_float_array(self.lr * np.power(self.gamma, t.astype(np.float64)))


def exponential(lr: float, gamma: float) -> Schedule:
    """Multiply by ``gamma`` every step (torch ``ExponentialLR``).

    Formula: ``lr * gamma ** t``. (With ``gamma > 1`` the scalar path raises ``OverflowError``
    where the float range ends, as Python's ``**`` does; arrays give ``inf``.)

    >>> s = exponential(0.1, gamma=0.5)
    >>> [s(t) for t in range(4)]
    [0.1, 0.05, 0.025, 0.0125]
    """
    return _Exponential(lr=_checks.rate("lr", lr), gamma=_checks.positive("gamma", gamma))


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _ExponentialDecay(LrSchedule):
    _factory: ClassVar[str] = "exponential_decay"
    lr: float
    decay_steps: int
    decay_rate: float
    staircase: bool

    def _scalar(self, t: int) -> float:
        p = t / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        rate: float = self.lr * self.decay_rate**p
        return rate

    def _array(self, t: IntArray) -> FloatArray:
        p = t / self.decay_steps
        if self.staircase:
            p = np.floor(p)
        return as_float_array(self.lr * np.power(self.decay_rate, p))


def exponential_decay(
    lr: float, decay_steps: int, decay_rate: float, staircase: bool = False
) -> Schedule:
    """Exponential decay by ``decay_rate`` per ``decay_steps`` steps (Keras ``ExponentialDecay``).

    Formula: ``lr * decay_rate ** p`` with ``p = t / decay_steps``, or ``p = floor(t /
    decay_steps)`` when ``staircase`` (the textbook ``initial_lr * decay_rate ** (step //
    decay_steps)``).

    >>> s = exponential_decay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    >>> [s(t) for t in (0, 9, 10, 25)]
    [0.1, 0.1, 0.05, 0.025]
    >>> round(exponential_decay(0.1, 10, 0.5)(5), 6)
    0.070711
    """
    return _ExponentialDecay(
        lr=_checks.rate("lr", lr),
        decay_steps=_checks.count("decay_steps", decay_steps, 1),
        decay_rate=_checks.positive("decay_rate", decay_rate),
        staircase=_checks.flag("staircase", staircase),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _InverseTimeDecay(LrSchedule):
    _factory: ClassVar[str] = "inverse_time_decay"
    lr: float
    decay_steps: int
    decay_rate: float
    staircase: bool

    def _scalar(self, t: int) -> float:
        p = t / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.lr / (1 + self.decay_rate * p)

    def _array(self, t: IntArray) -> FloatArray:
        p = t / self.decay_steps
        if self.staircase:
            p = np.floor(p)
        return as_float_array(self.lr / (1 + self.decay_rate * p))


def inverse_time_decay(
    lr: float, decay_steps: int, decay_rate: float, staircase: bool = False
) -> Schedule:
    """Inverse-time decay (Keras ``InverseTimeDecay``).

    Formula: ``lr / (1 + decay_rate * p)`` with ``p = t / decay_steps`` (floored when
    ``staircase``).

    >>> s = inverse_time_decay(0.1, decay_steps=10, decay_rate=1.0)
    >>> [s(t) for t in (0, 10, 30)]
    [0.1, 0.05, 0.025]
    """
    return _InverseTimeDecay(
        lr=_checks.rate("lr", lr),
        decay_steps=_checks.count("decay_steps", decay_steps, 1),
        decay_rate=_checks.nonneg("decay_rate", decay_rate),
        staircase=_checks.flag("staircase", staircase),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _PiecewiseConstant(Schedule):
    _factory: ClassVar[str] = "piecewise_constant"
    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def base_lr(self) -> float:
        return self.values[0]

    def _scalar(self, t: int) -> float:
        return self.values[bisect_left(self.boundaries, t)]

    def _array(self, t: IntArray) -> FloatArray:
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="left")
        return np.asarray(self.values, dtype=np.float64)[index]


def piecewise_constant(boundaries: object, values: object) -> Schedule:
    """Constant pieces with right-inclusive boundaries (Keras ``PiecewiseConstantDecay``).

    Formula: ``values[0]`` for ``t <= boundaries[0]``, ``values[i]`` for ``boundaries[i-1] < t <=
    boundaries[i]``, ``values[-1]`` for ``t > boundaries[-1]``. ``boundaries`` are strictly
    increasing ints and ``len(values) == len(boundaries) + 1``; ``base_lr`` is ``values[0]``.

    >>> s = piecewise_constant([10, 20], [0.1, 0.01, 0.001])
    >>> [s(t) for t in (0, 10, 11, 20, 21)]
    [0.1, 0.1, 0.01, 0.01, 0.001]
    """
    bounds = _checks.int_sequence("boundaries", boundaries, 0, strict=True)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"'values' must be a sequence of numbers, got {type(values).__name__}")
    rates = tuple(_checks.nonneg("values", v) for v in values)
    if len(rates) != len(bounds) + 1:
        raise ValueError(
            f"'values' must have len(boundaries) + 1 = {len(bounds) + 1} elements, got {len(rates)}"
        )
    _checks.rate("values[0]", rates[0])
    return _PiecewiseConstant(boundaries=bounds, values=rates)


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Polynomial(LrSchedule):
    _factory: ClassVar[str] = "polynomial"
    lr: float
    total_steps: int
    final_lr: float
    power: float
    cycle: bool

    def _scalar(self, t: int) -> float:
        total = self.total_steps
        if self.cycle:
            # Keras: the first multiple of total_steps that is >= t (1 at t == 0).
            multiplier = 1.0 if t == 0 else float(math.ceil(t / total))
            p = t / (total * multiplier)
        else:
            p = min(t, total) / total
        rate: float = (self.lr - self.final_lr) * (1 - p) ** self.power + self.final_lr
        return rate

    def _array(self, t: IntArray) -> FloatArray:
        total = self.total_steps
        if self.cycle:
            multiplier = np.where(t == 0, 1.0, np.ceil(t / total))
            p = t / (total * multiplier)
        else:
            p = np.minimum(t, total) / total
        return as_float_array(
            (self.lr - self.final_lr) * np.power(1 - p, self.power) + self.final_lr
        )


def polynomial(
    lr: float,
    total_steps: int,
    final_lr: float = 0.0,
    power: float = 1.0,
    cycle: bool = False,
) -> Schedule:
    """Polynomial decay to ``final_lr`` (Keras ``PolynomialDecay``, torch ``PolynomialLR``).

    Formula: ``(lr - final_lr) * (1 - p) ** power + final_lr`` where ``p = min(t, total_steps) /
    total_steps``; with ``cycle``, ``p = t / (total_steps * max(1, ceil(t / total_steps)))`` so the
    decay restarts after each multiple of ``total_steps`` (Keras' rule). torch's ``PolynomialLR``
    is the case ``final_lr=0``. Note Keras' default ``end_learning_rate`` is 1e-4; here it is 0.

    >>> s = polynomial(1.0, total_steps=4)
    >>> [s(t) for t in range(6)]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return _Polynomial(
        lr=_checks.rate("lr", lr),
        total_steps=_checks.count("total_steps", total_steps, 1),
        final_lr=_checks.nonneg("final_lr", final_lr),
        power=_checks.nonneg("power", power),
        cycle=_checks.flag("cycle", cycle),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Linear(LrSchedule):
    _factory: ClassVar[str] = "linear"
    lr: float
    start_factor: float
    end_factor: float
    total_steps: int

    def _scalar(self, t: int) -> float:
        span = self.end_factor - self.start_factor
        return self.lr * (self.start_factor + span * min(self.total_steps, t) / self.total_steps)

    def _array(self, t: IntArray) -> FloatArray:
        span = self.end_factor - self.start_factor
        done = np.minimum(t, self.total_steps).astype(np.float64)
        return as_float_array(self.lr * (self.start_factor + span * done / self.total_steps))


def linear(
    lr: float,
    start_factor: float = 1.0 / 3,
    end_factor: float = 1.0,
    total_steps: int = 5,
) -> Schedule:
    """Linear change of a multiplicative factor (torch ``LinearLR``, closed form).

    Formula: ``lr * (start_factor + (end_factor - start_factor) * min(t, total_steps) /
    total_steps)``. Unlike torch, factors above 1 are allowed (any finite factor ``>= 0``).

    >>> s = linear(0.05, start_factor=0.5, total_steps=4)
    >>> [round(s(t), 6) for t in range(6)]
    [0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05]
    """
    return _Linear(
        lr=_checks.rate("lr", lr),
        start_factor=_checks.nonneg("start_factor", start_factor),
        end_factor=_checks.nonneg("end_factor", end_factor),
        total_steps=_checks.count("total_steps", total_steps, 1),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _ConstantFactor(LrSchedule):
    _factory: ClassVar[str] = "constant_factor"
    lr: float
    factor: float
    total_steps: int

    def _scalar(self, t: int) -> float:
        if t >= self.total_steps:
            return self.lr * (self.factor + (1 - self.factor))
        return self.lr * self.factor

    def _array(self, t: IntArray) -> FloatArray:
        after = (t >= self.total_steps).astype(np.float64)
        return as_float_array(self.lr * (self.factor + after * (1 - self.factor)))


def constant_factor(lr: float, factor: float = 1.0 / 3, total_steps: int = 5) -> Schedule:
    """A constant factor for the first ``total_steps`` steps (torch ``ConstantLR``, closed form).

    Formula: ``lr * factor`` for ``t < total_steps``, then ``lr * (factor + (1 - factor))``
    (which is ``lr`` up to rounding, written as torch writes it).

    >>> s = constant_factor(0.05, factor=0.5, total_steps=2)
    >>> [s(t) for t in range(4)]
    [0.025, 0.025, 0.05, 0.05]
    """
    f = _checks.nonneg("factor", factor)
    check_le("factor", f, 1.0)  # torch's ConstantLR: between 0 and 1
    return _ConstantFactor(
        lr=_checks.rate("lr", lr),
        factor=f,
        total_steps=_checks.count("total_steps", total_steps, 1),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _Cosine(LrSchedule):
    _factory: ClassVar[str] = "cosine"
    lr: float
    total_steps: int
    final_lr: float

    def _scalar(self, t: int) -> float:
        total = self.total_steps
        done = t if t < total else total
        return (
            self.final_lr + (self.lr - self.final_lr) * (1 + math.cos(math.pi * done / total)) / 2
        )

    def _array(self, t: IntArray) -> FloatArray:
        total = self.total_steps
        done = np.minimum(t, total).astype(np.float64)
        return as_float_array(
            self.final_lr + (self.lr - self.final_lr) * (1 + np.cos(math.pi * done / total)) / 2
        )


def cosine(lr: float, total_steps: int, final_lr: float = 0.0) -> Schedule:
    """Half-cosine annealing from ``lr`` to ``final_lr``, then held at ``final_lr``.

    Formula: ``final_lr + (lr - final_lr) * (1 + cos(pi * min(t, total_steps) / total_steps)) / 2``.

    This is torch ``CosineAnnealingLR``'s closed form (``T_max=total_steps``, ``eta_min=final_lr``)
    on ``[0, total_steps]`` (torch keeps going periodically after ``T_max``; this holds) and Keras
    ``CosineDecay`` with ``alpha = final_lr / lr``. Param groups: ``final_lr`` scales with each
    group's base rate (as Keras' ``alpha`` does); torch's ``eta_min`` is the same absolute floor
    for every group. To mirror torch exactly for a group, build ``cosine(group_lr, T, eta_min)``.

    >>> s = cosine(1.0, total_steps=4)
    >>> [round(s(t), 6) for t in range(6)]
    [1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
    """
    return _Cosine(
        lr=_checks.rate("lr", lr),
        total_steps=_checks.count("total_steps", total_steps, 1),
        final_lr=_checks.nonneg("final_lr", final_lr),
    )


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _InverseSqrt(LrSchedule):
    _factory: ClassVar[str] = "inverse_sqrt"
    lr: float
    warmup_steps: int
    timescale: int

    def _scalar(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.lr * (float(t) / float(max(1, self.warmup_steps)))
        shift = self.timescale - self.warmup_steps
        return self.lr * (1.0 / math.sqrt((t + shift) / self.timescale))

    def _array(self, t: IntArray) -> FloatArray:
        warm = self.warmup_steps
        shift = self.timescale - warm
        ramp = t / float(max(1, warm))
        # Clamped so the unused branch never takes the square root of a negative number.
        decay = 1.0 / np.sqrt(np.maximum(t + shift, 1) / self.timescale)
        return as_float_array(self.lr * np.where(t < warm, ramp, decay))


def inverse_sqrt(lr: float, warmup_steps: int, timescale: int | None = None) -> Schedule:
    """Linear warmup, then inverse-square-root decay (Hugging Face ``get_inverse_sqrt_schedule``).

    Formula (``W = warmup_steps``, ``tau = timescale``, default ``W`` or 10000 when ``W == 0``)::

        lr * t / max(1, W)                          for t < W
        lr / sqrt((t + tau - W) / tau)              for t >= W   (= lr at t == W)

    >>> s = inverse_sqrt(1.0, warmup_steps=4)
    >>> [s(t) for t in (0, 2, 4, 16)]
    [0.0, 0.5, 1.0, 0.5]
    """
    warm = _checks.count("warmup_steps", warmup_steps, 0)
    scale = (warm or 10_000) if timescale is None else _checks.count("timescale", timescale, 1)
    return _InverseSqrt(lr=_checks.rate("lr", lr), warmup_steps=warm, timescale=scale)


# --------------------------------------------------------------------------------------------

_WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@attrs.frozen(repr=False)
class _WarmupStableDecay(LrSchedule):
    _factory: ClassVar[str] = "warmup_stable_decay"
    lr: float
    warmup_steps: int
    stable_steps: int
    decay_steps: int
    warmup_type: str
    decay_type: str
    min_lr_ratio: float
    num_cycles: float

    def _scalar(self, t: int) -> float:
        # Hugging Face's _get_wsd_scheduler_lambda, branch for branch.
        warm, stable, decay = self.warmup_steps, self.stable_steps, self.decay_steps
        floor = self.min_lr_ratio
        if t < warm:
            progress = float(t) / float(max(1, warm))
            if self.warmup_type == "linear":
                factor = progress
            elif self.warmup_type == "cosine":
                factor = 0.5 * (1.0 - math.cos(math.pi * progress))
            else:
                factor = 1.0 - math.sqrt(1.0 - progress)
            return self.lr * max(0.0, factor * (1.0 - floor) + floor)
        if t < warm + stable:
            return self.lr * 1.0
        if t < warm + stable + decay:
            progress = float(t - warm - stable) / float(max(1, decay))
            if self.decay_type == "linear":
                factor = 1.0 - progress
            elif self.decay_type == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
            else:
                factor = 1.0 - math.sqrt(progress)
            return self.lr * max(0.0, factor * (1.0 - floor) + floor)
        return self.lr * floor

    def _array(self, t: IntArray) -> FloatArray:
        warm, stable, decay = self.warmup_steps, self.stable_steps, self.decay_steps
        floor = self.min_lr_ratio
        factor = np.full(t.shape, floor, dtype=np.float64)

        up = t < warm
        progress = t[up] / float(max(1, warm))
        if self.warmup_type == "linear":
            rising = progress
        elif self.warmup_type == "cosine":
            rising = 0.5 * (1.0 - np.cos(math.pi * progress))
        else:
            rising = 1.0 - np.sqrt(1.0 - progress)
        factor[up] = np.maximum(0.0, rising * (1.0 - floor) + floor)

        factor[(t >= warm) & (t < warm + stable)] = 1.0

        down = (t >= warm + stable) & (t < warm + stable + decay)
        progress = (t[down] - warm - stable) / float(max(1, decay))
        if self.decay_type == "linear":
            falling = 1.0 - progress
        elif self.decay_type == "cosine":
            falling = 0.5 * (1.0 + np.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
        else:
            falling = 1.0 - np.sqrt(progress)
        factor[down] = np.maximum(0.0, falling * (1.0 - floor) + floor)
        return as_float_array(self.lr * factor)


def warmup_stable_decay(
    lr: float,
    warmup_steps: int,
    decay_steps: int,
    total_steps: int | None = None,
    stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0.0,
    num_cycles: float = 0.5,
) -> Schedule:
    """Warmup, a stable plateau, then decay (Hugging Face ``get_wsd_schedule``).

    Parameters map to Hugging Face's ``num_warmup_steps``, ``num_decay_steps``,
    ``num_training_steps``, ``num_stable_steps``; the rest keep their names. Give ``total_steps``
    or ``stable_steps`` (``stable_steps = total_steps - warmup_steps - decay_steps``); giving both
    is allowed only when they agree (Hugging Face warns and uses ``stable_steps``).

    Formula, with ``W, S, D`` the three lengths, ``m = min_lr_ratio``, ``lr * f(t)`` where::

        t < W:          p = t / max(1, W);  f = max(0, g(p) * (1 - m) + m)
                        g = p | (1 - cos(pi p)) / 2 | 1 - sqrt(1 - p)     (warmup_type)
        t < W + S:      f = 1
        t < W + S + D:  p = (t - W - S) / max(1, D);  f = max(0, h(p) * (1 - m) + m)
                        h = 1 - p | (1 + cos(2 pi num_cycles p)) / 2 | 1 - sqrt(p)  (decay_type)
        otherwise:      f = m

    >>> s = warmup_stable_decay(1.0, warmup_steps=2, decay_steps=2, stable_steps=2,
    ...                         decay_type="linear")
    >>> [s(t) for t in range(7)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    warm = _checks.count("warmup_steps", warmup_steps, 0)
    decay = _checks.count("decay_steps", decay_steps, 0)
    if stable_steps is None and total_steps is None:
        raise TypeError("warmup_stable_decay() needs 'total_steps' or 'stable_steps'")
    if stable_steps is not None:
        stable = _checks.count("stable_steps", stable_steps, 0)
        if total_steps is not None:
            total = _checks.count("total_steps", total_steps, 0)
            if total != warm + stable + decay:
                raise ValueError(
                    "'total_steps' must be warmup_steps + stable_steps + decay_steps = "
                    f"{warm + stable + decay}, got {total}"
                )
    else:
        total = _checks.count("total_steps", total_steps, warm + decay)
        stable = total - warm - decay
    check_one_of("warmup_type", warmup_type, _WSD_SHAPES)
    check_one_of("decay_type", decay_type, _WSD_SHAPES)
    ratio = _checks.nonneg("min_lr_ratio", min_lr_ratio)
    check_le("min_lr_ratio", ratio, 1.0)  # a floor above the peak is no decay
    cycles = check_finite("num_cycles", num_cycles)
    check_gt("num_cycles", cycles, 0.0)
    return _WarmupStableDecay(
        lr=_checks.rate("lr", lr),
        warmup_steps=warm,
        stable_steps=stable,
        decay_steps=decay,
        warmup_type=warmup_type,
        decay_type=decay_type,
        min_lr_ratio=ratio,
        num_cycles=cycles,
    )
