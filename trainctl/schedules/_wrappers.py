"""Schedules around user functions: torch ``LambdaLR`` and Keras ``LearningRateScheduler``.

These are the only schedules whose array path loops in Python (one call of the user's function per
element, or per step folded), because an arbitrary Python function cannot be vectorised. They
pickle only if the function does (a module-level function does; a lambda or a closure does not).
"""

from __future__ import annotations

import numbers
import threading
from array import array
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import numpy as np

from . import _checks
from ._base import FloatArray, IntArray, LrSchedule, Schedule, as_float_array

__all__ = ["keras_recurrence", "lambda_lr"]


def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"'fn' must return a real number {what}, got {type(value).__name__} {value!r}"
        )
    return float(value)


# --------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class _LambdaLR(LrSchedule):
    _factory: ClassVar[str] = "lambda_lr"
    lr: float
    fn: Callable[[Any], Any]
    vectorized: bool

    def _scalar(self, t: int) -> float:
        return self.lr * _real(self.fn(t), f"at step {t}")

    def _array(self, t: IntArray) -> FloatArray:
        if self.vectorized:
            factors = as_float_array(self.fn(t))
            if factors.shape != t.shape:
                raise ValueError(
                    f"'fn' must return an array of shape {t.shape} for a vectorized lambda_lr, "
                    f"got {factors.shape}"
                )
        else:  # one Python call per element: a user function cannot be vectorised for them
            factors = np.fromiter(
                (_real(self.fn(int(step)), f"at step {step}") for step in t),
                dtype=np.float64,
                count=t.size,
            )
        return as_float_array(self.lr * factors)


def lambda_lr(lr: float, fn: Callable[[Any], Any], *, vectorized: bool = False) -> Schedule:
    """``lr`` times a user factor (torch ``LambdaLR``): ``lr * fn(t)``.

    ``fn`` is called with an int step and must return a real number. For an array of steps it is
    called once per element in a Python loop, unless ``vectorized=True`` promises that ``fn``
    accepts an int64 array and returns an array of the same shape (then it is called once).
    Picklable only if ``fn`` is (a lambda is not).

    >>> s = lambda_lr(0.1, lambda t: 0.5 ** (t // 2))
    >>> [s(t) for t in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    return _LambdaLR(
        lr=_checks.rate("lr", lr),
        fn=_checks.callable_("fn", fn),
        vectorized=_checks.flag("vectorized", vectorized),
    )


# --------------------------------------------------------------------------------------------


class _Fold:
    """The memo of a recurrence: ``values[e]`` is the rate at step ``e``, computed in order.

    Mutable on purpose (a cache inside an immutable schedule); it is excluded from equality, and
    pickles as an empty memo so that a schedule and its copy never share or ship the cache.
    """

    __slots__ = ("lock", "one_arg", "values")

    def __init__(self) -> None:
        self.values = array("d")
        self.lock = threading.Lock()
        # Set once fn(epoch, lr) has raised TypeError and fn(epoch) worked, as Keras falls back.
        self.one_arg = False

    def __reduce__(self) -> tuple[type[_Fold], tuple[()]]:
        return (_Fold, ())


@attrs.frozen(repr=False)
class _KerasRecurrence(LrSchedule):
    _factory: ClassVar[str] = "keras_recurrence"
    lr: float
    fn: Callable[..., Any]
    _fold: _Fold = attrs.field(factory=_Fold, eq=False, repr=False, init=False)

    def _next(self, epoch: int, previous: float) -> float:
        fold = self._fold
        if fold.one_arg:
            return _real(self.fn(epoch), f"at epoch {epoch}")
        try:  # Keras: new API first, then the one-argument form on TypeError
            value = self.fn(epoch, previous)
        except TypeError:
            value = self.fn(epoch)
            fold.one_arg = True
        return _real(value, f"at epoch {epoch}")

    def _extend(self, n: int) -> None:
        """Fold the recurrence until ``values`` holds ``n`` rates."""
        fold = self._fold
        with fold.lock:
            values = fold.values
            previous = values[-1] if values else self.lr
            for epoch in range(len(values), n):
                previous = self._next(epoch, previous)
                values.append(previous)

    def _scalar(self, t: int) -> float:
        values = self._fold.values
        if t >= len(values):
            self._extend(t + 1)
        return values[t]

    def _array(self, t: IntArray) -> FloatArray:
        if t.size == 0:
            return np.empty(0, dtype=np.float64)
        highest = int(t.max())
        if highest >= len(self._fold.values):
            self._extend(highest + 1)
        # A temporary view (the memo cannot grow while it exists, hence the lock); taking items
        # copies them.
        with self._fold.lock:
            view = np.frombuffer(self._fold.values, dtype=np.float64)
            out = view[t]
            del view
        return out


def keras_recurrence(lr: float, fn: Callable[..., Any]) -> Schedule:
    """The recurrence of Keras' ``LearningRateScheduler(schedule)`` callback.

    Formula: ``lr_t = fn(t, lr_{t-1})`` with ``lr_{-1} = lr``: Keras calls ``schedule(epoch, lr)``
    at the start of each epoch with the optimizer's current rate. As in Keras, if that call raises
    ``TypeError`` the one-argument form ``fn(t)`` is used instead (and remembered).

    Rates are folded from step 0 and memoised, so evaluating steps in order is O(1) amortised
    and step ``t`` costs ``t`` calls of ``fn`` the first time (a Python loop; the memo holds 8
    bytes per step). Differences from Keras: the rate passed to ``fn`` is a float64 here, where
    Keras rounds it to the optimizer's float32 variable between epochs; ``fn`` may return any
    real number (Keras insists on a float). Picklable only if ``fn`` is; the memo is not pickled.

    >>> import math
    >>> s = keras_recurrence(0.01, lambda epoch, lr: lr if epoch < 2 else lr * math.exp(-0.1))
    >>> [round(s(t), 8) for t in range(4)]
    [0.01, 0.01, 0.00904837, 0.00818731]
    """
    return _KerasRecurrence(lr=_checks.rate("lr", lr), fn=_checks.callable_("fn", fn))
