"""The :class:`Schedule` base class: one cheap dispatch between a scalar step and an array of steps.

Theory of operation
-------------------
A schedule is a pure function of the step. Each concrete schedule is a frozen attrs class that
implements two private methods with the same arithmetic, operation for operation:

* ``_scalar(t: int) -> float`` with :mod:`math` (the per-step path, about a microsecond), and
* ``_array(t: 1-D int64 array) -> float64 array`` with numpy (whole curves at once, no Python loop
  per element, except in the wrappers of user functions, which say so).

``Schedule.__call__`` routes a plain non-negative ``int`` straight to ``_scalar`` with a single
class-identity test; everything else (numpy integers, arrays, negative or wrongly typed steps) goes
through :func:`_evaluate`, which validates, flattens arrays to 1-D int64 and restores the shape.
Combinators call the private methods of their children directly, so a step is validated once.
"""

from __future__ import annotations

import abc
import re
from typing import Any, ClassVar, overload

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "IntArray", "Schedule"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_INT64_MAX = int(np.iinfo(np.int64).max)


@attrs.frozen(repr=False)
class Schedule(abc.ABC):
    """A learning-rate schedule: an immutable, picklable function of the (0-based) step.

    ``s(step)`` returns a float for an ``int`` and a float64 array for an integer numpy array
    (any shape; the result has the same shape). Negative steps raise ``ValueError``; anything but
    an int or an integer array raises ``TypeError``.

    ``s.base_lr`` is the reference rate that per-group rates are scaled from, the way torch's
    ``LambdaLR`` treats param groups: a group whose own base rate is ``group_base_lr`` gets
    ``group_base_lr * s(t) / s.base_lr`` at step ``t``.

    Build schedules with the factory functions (``cosine``, ``warmup``, ...); the repr of a
    schedule is the factory call that rebuilds it.
    """

    _factory: ClassVar[str] = "Schedule"

    @property
    @abc.abstractmethod
    def base_lr(self) -> float:
        """The reference rate ``s(t)`` is scaled against when applied to param groups."""

    @abc.abstractmethod
    def _scalar(self, t: int) -> float:
        """The rate at a non-negative int step."""

    @abc.abstractmethod
    def _array(self, t: IntArray) -> FloatArray:
        """The rates at a 1-D int64 array of non-negative steps."""

    @overload
    def __call__(self, step: int | np.integer[Any]) -> float: ...

    @overload
    def __call__(self, step: npt.NDArray[np.integer[Any]]) -> FloatArray: ...

    def __call__(
        self, step: int | np.integer[Any] | npt.NDArray[np.integer[Any]]
    ) -> float | FloatArray:
        # The hot path: one identity test and one comparison before the arithmetic.
        if step.__class__ is int and step >= 0:
            return self._scalar(step)
        return _evaluate(self, step)

    def __repr__(self) -> str:
        return self._render(strict=False)

    def identity(self) -> str:
        """The factory call that rebuilds this schedule, as a saved state identifies it.

        Like ``repr``, with every user function named by module and qualified name
        (``lambda_lr(lr=0.1, fn=mypackage.factors.halve, vectorized=False)``), so that a run
        resumed in another process can check that it has the same schedule. A lambda or a
        closure has no such name: ``ValueError``, saying to define it at module level.
        """
        return self._render(strict=True)

    def _render(self, *, strict: bool) -> str:
        args = ", ".join(
            f"{a.name}={render_value(getattr(self, a.name), strict=strict)}"
            for a in attrs.fields(type(self))
            if a.repr
        )
        return f"{self._factory}({args})"


class LrSchedule(Schedule):
    """A schedule whose reference rate (:attr:`base_lr`) is its own ``lr`` field (declared,
    with its place among the fields, by the attrs subclass)."""

    __slots__ = ()

    lr: float

    @property
    def base_lr(self) -> float:
        return self.lr


def function_name(fn: object, *, strict: bool) -> str:
    """``module.qualname`` of a function; a lambda or closure raises (``strict``) or is shown
    as ``<lambda in module>`` (never with a memory address, which differs between processes)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        if "<lambda>" not in qualname and "<locals>" not in qualname:
            return f"{module}.{qualname}"
        shown = f"<{qualname} in {module}>"
    else:
        shown = _ADDRESS.sub("", repr(fn))
        if shown == repr(fn):
            return shown
    if strict:
        raise ValueError(
            f"the schedule's function {shown} is a lambda or a closure (or an object whose repr "
            "holds a memory address), which another process cannot identify, so a saved state "
            "could never be checked on resume; define it at module level (def my_factor(t): "
            "...) and pass that function"
        )
    return shown


def render_value(value: object, *, strict: bool) -> str:
    """How a schedule's field appears in its repr / identity."""
    if isinstance(value, Schedule):
        return value._render(strict=strict)
    if isinstance(value, tuple) and any(isinstance(v, Schedule) for v in value):
        inner = ", ".join(render_value(v, strict=strict) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if callable(value) and not isinstance(value, type):
        return function_name(value, strict=strict)
    return repr(value)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _evaluate(schedule: Schedule, step: object) -> float | FloatArray:
    """Validate a step that missed the fast path, then evaluate it."""
    if isinstance(step, np.ndarray):
        if step.dtype.kind not in "iu":
            raise TypeError(
                "'step' must be an int or an integer numpy array, "
                f"got an array of dtype {step.dtype}"
            )
        flat = step.reshape(-1)
        if flat.size:
            lowest = int(flat.min())
            if lowest < 0:
                raise ValueError(f"'step' must be >= 0, got {lowest}")
            if step.dtype.kind == "u" and int(flat.max()) > _INT64_MAX:
                raise ValueError(f"'step' must be <= {_INT64_MAX}, got {int(flat.max())}")
        out = schedule._array(flat.astype(np.int64, copy=False))
        return out.reshape(step.shape)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(
            f"'step' must be an int or an integer numpy array, got {type(step).__name__} {step!r}"
        )
    t = int(step)
    if t < 0:
        raise ValueError(f"'step' must be >= 0, got {t}")
    return schedule._scalar(t)


def as_float_array(values: object) -> FloatArray:
    """``values`` as a float64 array (numpy's stubs often widen results to ``Any``)."""
    return np.asarray(values, dtype=np.float64)
