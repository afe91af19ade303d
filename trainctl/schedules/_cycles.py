"""Schedules that go up as well as down: warm restarts, cyclical rates, the one-cycle policy."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numpy as np

from trainctl._validation import check_finite, check_ge, check_le, check_one_of

from . import _checks
from ._base import FloatArray, IntArray, LrSchedule, Schedule, as_float_array

__all__ = ["cosine_restarts", "cyclic", "one_cycle"]


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _CosineRestarts(LrSchedule):
    _factory: ClassVar[str] = "cosine_restarts"
    lr: float
    period: int
    period_mult: int | float
    final_lr: float
    decay: float

    def _cycle(self, t: int) -> tuple[int, float, float]:
        """(restart index i, steps into cycle i, length of cycle i)."""
        first, mult = self.period, self.period_mult
        if mult == 1:
            i, into = divmod(t, first)
            return i, into, first
        if isinstance(mult, int):
            # Exact integer arithmetic, as torch's stepping produces: the float estimate of i is
            # off by at most one near a restart, so fix it against the exact cycle starts.
            i = int(math.log(t / first * (mult - 1) + 1, mult))
            power = mult**i
            start = first * (power - 1) // (mult - 1)
            if start > t:
                i, power = i - 1, power // mult
                start = first * (power - 1) // (mult - 1)
            elif first * (power * mult - 1) // (mult - 1) <= t:
                i, power = i + 1, power * mult
                start = first * (power - 1) // (mult - 1)
            return i, t - start, first * power
        i = math.floor(math.log(1.0 - t / first * (1.0 - mult)) / math.log(mult))
        for _ in range(2):  # the same repair in floating point
            if first * (mult ** (i + 1) - 1.0) / (mult - 1.0) <= t:
                i += 1
            elif first * (mult**i - 1.0) / (mult - 1.0) > t:
                i -= 1
        return i, t - first * (mult**i - 1.0) / (mult - 1.0), first * mult**i

    def _scalar(self, t: int) -> float:
        i, into, length = self._cycle(t)
        return (
            self.final_lr
            + (self.lr - self.final_lr)
            * self.decay**i
            * (1 + math.cos(math.pi * into / length))
            / 2
        )

    def _array(self, t: IntArray) -> FloatArray:
        first, mult = self.period, self.period_mult
        i: IntArray
        into: IntArray | FloatArray
        if mult == 1:
            i = t // first
            into = t - i * first
            length = np.full(t.shape, first, dtype=np.int64)
        elif isinstance(mult, int):
            i = np.floor(np.log(t / first * (mult - 1) + 1) / math.log(mult)).astype(np.int64)

            def start(k: IntArray) -> IntArray:
                return first * (np.power(mult, k) - 1) // (mult - 1)

            i = np.where(start(i + 1) <= t, i + 1, i)
            i = np.where(start(i) > t, i - 1, i)
            into = t - start(i)
            length = first * np.power(mult, i)
        else:
            i = np.floor(np.log(1.0 - t / first * (1.0 - mult)) / math.log(mult)).astype(np.int64)

            def fstart(k: IntArray) -> FloatArray:
                return as_float_array(first * (np.power(mult, k) - 1.0) / (mult - 1.0))

            for _ in range(2):
                up, down = fstart(i + 1) <= t, fstart(i) > t
                i = np.where(up, i + 1, np.where(down, i - 1, i))
            into = t - fstart(i)
            length = first * np.power(mult, i)
        amplitude = np.power(self.decay, i.astype(np.float64))
        return as_float_array(
            self.final_lr
            + (self.lr - self.final_lr) * amplitude * (1 + np.cos(math.pi * into / length)) / 2
        )


def cosine_restarts(
    lr: float,
    period: int,
    period_mult: float = 1,
    final_lr: float = 0.0,
    decay: float = 1.0,
) -> Schedule:
    """Cosine annealing with warm restarts (SGDR).

    torch ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=final_lr)`` and
    Keras ``CosineDecayRestarts(first_decay_steps=period, t_mul=period_mult, m_mul=decay,
    alpha=final_lr / lr)``. Cycle ``i`` starts at ``S_i = period * (1 + m + ... + m**(i-1))`` and
    lasts ``T_i = period * m**i`` (``m = period_mult``); inside it::

        final_lr + (lr - final_lr) * decay**i * (1 + cos(pi * (t - S_i) / T_i)) / 2

    An integral ``period_mult`` uses exact integer cycle boundaries, as torch's stepping does; a
    fractional one (Keras allows it, torch does not) uses float64 with the cycle index repaired
    at the boundaries (a bare ``floor(log(...) / log(m))``, as Keras writes it, can land one cycle
    early exactly at a restart in float64: ``log(243) / log(3) < 5``). ``final_lr`` scales with
    each param group's base rate (see :func:`cosine`).

    >>> s = cosine_restarts(1.0, period=2, period_mult=2)
    >>> [s(t) for t in range(7)]
    [1.0, 0.5, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 1.0]
    """
    base = _checks.rate("lr", lr)
    first = _checks.count("period", period, 1)
    mult_value = check_finite("period_mult", period_mult)
    check_ge("period_mult", mult_value, 1)
    mult: int | float = int(mult_value) if mult_value.is_integer() else mult_value
    return _CosineRestarts(
        lr=base,
        period=first,
        period_mult=mult,
        final_lr=_checks.nonneg("final_lr", final_lr),
        decay=_checks.positive("decay", decay),
    )


# --------------------------------------------------------------------------------------------

_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@attrs.frozen(repr=False)
class _Cyclic(Schedule):
    _factory: ClassVar[str] = "cyclic"
    base_lr: float  # a field here: cyclic's reference rate is its own lower bound
    max_lr: float
    step_size_up: int
    step_size_down: int
    mode: str
    gamma: float
    _total: float = attrs.field(repr=False)
    _ratio: float = attrs.field(repr=False)

    def _scalar(self, t: int) -> float:
        # torch CyclicLR.get_lr, which is a closed form of last_epoch (no drift).
        cycle = math.floor(1 + t / self._total)
        x = 1.0 + t / self._total - cycle
        scale = x / self._ratio if x <= self._ratio else (x - 1) / (self._ratio - 1)
        height = (self.max_lr - self.base_lr) * scale
        if self.mode == "triangular":
            return self.base_lr + height * 1.0
        if self.mode == "triangular2":
            # 0.5**k equals torch's 1 / 2.0**k exactly, and underflows where torch's overflows
            return self.base_lr + height * 0.5 ** (cycle - 1)
        return self.base_lr + height * self.gamma**t

    def _array(self, t: IntArray) -> FloatArray:
        cycle = np.floor(1 + t / self._total)
        x = 1.0 + t / self._total - cycle
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(x <= self._ratio, x / self._ratio, (x - 1) / (self._ratio - 1))
        height = (self.max_lr - self.base_lr) * scale
        if self.mode == "triangular":
            return as_float_array(self.base_lr + height * 1.0)
        if self.mode == "triangular2":
            return as_float_array(self.base_lr + height * np.power(0.5, cycle - 1))
        return as_float_array(self.base_lr + height * np.power(self.gamma, t.astype(np.float64)))


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    """Cyclical learning rate between ``base_lr`` and ``max_lr`` (torch ``CyclicLR``).

    With ``L = step_size_up + step_size_down`` and ``r = step_size_up / L``::

        cycle = floor(1 + t / L);  x = 1 + t / L - cycle
        scale = x / r if x <= r else (x - 1) / (r - 1)
        lr(t) = base_lr + (max_lr - base_lr) * scale * g
        g = 1 (triangular) | 1 / 2**(cycle - 1) (triangular2) | gamma**t (exp_range)

    ``step_size_down`` defaults to ``step_size_up``; ``triangular2`` is computed as ``0.5**(cycle
    - 1)``: the same numbers, without torch's ``OverflowError`` after 1024 cycles. ``base_lr`` is
    also the reference rate (``s.base_lr``); per-group ``base_lr``/``max_lr`` lists in torch
    correspond to groups whose rates keep the ratio ``max_lr / base_lr``. Momentum cycling is not
    modelled.

    >>> s = cyclic(1.0, 5.0, step_size_up=4, mode="triangular2")
    >>> [s(t) for t in range(10)]
    [1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.5]
    """
    low = _checks.rate("base_lr", base_lr)
    high = check_finite("max_lr", max_lr)
    check_ge("max_lr", high, low)
    up = _checks.count("step_size_up", step_size_up, 1)
    down = up if step_size_down is None else _checks.count("step_size_down", step_size_down, 0)
    check_one_of("mode", mode, _CYCLIC_MODES)
    total = float(up) + float(down)
    return _Cyclic(
        base_lr=low,
        max_lr=high,
        step_size_up=up,
        step_size_down=down,
        mode=mode,
        gamma=_checks.positive("gamma", gamma),
        total=total,
        ratio=float(up) / total,
    )


# --------------------------------------------------------------------------------------------

# A phase: (end step, rate at its start, rate at its end); the first starts at step 0.0.
_Phase = tuple[float, float, float]


@attrs.frozen(repr=False)
class _OneCycle(Schedule):
    _factory: ClassVar[str] = "one_cycle"
    max_lr: float
    total_steps: int
    pct_start: float
    anneal_strategy: str
    div_factor: float
    final_div_factor: float
    three_phase: bool
    _phases: tuple[_Phase, ...] = attrs.field(repr=False)

    @property
    def base_lr(self) -> float:
        return self.max_lr

    def _too_far(self, step: int) -> ValueError:
        return ValueError(
            f"'step' must be <= total_steps ({self.total_steps}) for one_cycle, got {step}"
        )

    def _scalar(self, t: int) -> float:
        if t > self.total_steps:
            raise self._too_far(t)
        # torch OneCycleLR.get_lr: the first phase whose end is >= t, else the last one.
        phases = self._phases
        k, start = 0, 0.0
        while t > phases[k][0] and k < len(phases) - 1:
            start = phases[k][0]
            k += 1
        end, high, low = phases[k]
        pct = (t - start) / (end - start)
        if self.anneal_strategy == "cos":
            return low + (high - low) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (low - high) * pct + high

    def _array(self, t: IntArray) -> FloatArray:
        if t.size and int(t.max()) > self.total_steps:
            raise self._too_far(int(t.max()))
        phases = self._phases
        ends = np.array([p[0] for p in phases])
        starts = np.array([0.0] + [p[0] for p in phases[:-1]])
        index = np.full(t.shape, len(phases) - 1, dtype=np.intp)
        for k in range(len(phases) - 2, -1, -1):  # first match wins, as in torch's loop
            index = np.where(t <= ends[k], k, index)
        start, end = starts[index], ends[index]
        high = np.array([p[1] for p in phases])[index]
        low = np.array([p[2] for p in phases])[index]
        pct = (t - start) / (end - start)
        if self.anneal_strategy == "cos":
            return as_float_array(low + (high - low) / 2.0 * (np.cos(math.pi * pct) + 1))
        return as_float_array((low - high) * pct + high)


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy (torch ``OneCycleLR``), defined for steps ``0..total_steps``.

    ``initial = max_lr / div_factor``, ``min = initial / final_div_factor``, ``T = total_steps``,
    ``p = pct_start``. Phases ``(end step: from -> to)``, the first starting at step 0::

        two phases:   (p*T - 1: initial -> max_lr), (T - 1: max_lr -> min)
        three phases: (p*T - 1: initial -> max_lr), (2*p*T - 2: max_lr -> initial),
                      (T - 1: initial -> min)

    Step ``t`` uses the first phase whose end is ``>= t`` (else the last), ``pct = (t - start) /
    (end - start)``, and anneals ``to + (from - to) / 2 * (cos(pi * pct) + 1)`` (``"cos"``) or
    ``(to - from) * pct + from`` (``"linear"``). Like torch, step ``T`` itself is accepted (it
    extrapolates the last phase) and any later step raises ``ValueError``. A ``pct_start`` that
    gives a phase of zero length (where torch divides by zero) is rejected. ``s.base_lr`` is
    ``max_lr``; momentum cycling is not modelled.

    >>> s = one_cycle(25.0, total_steps=10, anneal_strategy="linear", final_div_factor=2.0)
    >>> [round(s(t), 6) for t in range(10)]
    [1.0, 13.0, 25.0, 21.5, 18.0, 14.5, 11.0, 7.5, 4.0, 0.5]
    """
    peak = _checks.rate("max_lr", max_lr)
    total = _checks.count("total_steps", total_steps, 1)
    pct = check_finite("pct_start", pct_start)
    check_ge("pct_start", pct, 0)
    check_le("pct_start", pct, 1)
    check_one_of("anneal_strategy", anneal_strategy, ("cos", "linear"))
    div = _checks.positive("div_factor", div_factor)
    final_div = _checks.positive("final_div_factor", final_div_factor)
    three = _checks.flag("three_phase", three_phase)
    initial = peak / div
    lowest = initial / final_div
    phases: tuple[_Phase, ...]
    if three:
        phases = (
            (float(pct * total) - 1, initial, peak),
            (float(2 * pct * total) - 2, peak, initial),
            (float(total - 1), initial, lowest),
        )
    else:
        phases = ((float(pct * total) - 1, initial, peak), (float(total - 1), peak, lowest))
    start = 0.0
    for end, _, _ in phases:
        if end == start:
            raise ValueError(
                f"'pct_start' must not give a phase of zero length with total_steps={total} "
                f"(three_phase={three}), got {pct!r}"
            )
        start = end
    return _OneCycle(
        max_lr=peak,
        total_steps=total,
        pct_start=pct,
        anneal_strategy=anneal_strategy,
        div_factor=div,
        final_div_factor=final_div,
        three_phase=three,
        phases=phases,
    )
