"""Tiny composable checks shared by every configuration object.

Every message names the parameter, the bound and the value, in one shape::

    'patience' must be >= 0, got -1

attrs validators (``ge(0)``, ``one_of(...)``) are for ``@frozen`` configuration classes; the
``check_*`` functions are for plain factory functions (schedules) that validate their arguments
before building an object.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from typing import Any

import attrs
import numpy as np

__all__ = [
    "boolean",
    "check_bool",
    "check_controller",
    "check_finite",
    "check_ge",
    "check_gt",
    "check_int",
    "check_le",
    "check_lt",
    "check_one_of",
    "check_real",
    "finite",
    "ge",
    "gt",
    "integer",
    "le",
    "lt",
    "metric_name",
    "one_of",
    "optional",
    "optional_metric_name",
    "plain",
    "real",
]


def _fmt(value: object) -> str:
    return repr(value)


def check_int(name: str, value: object) -> int:
    """Return ``value`` as a Python int; reject bools, floats and anything not integral.

    numpy integers are accepted and normalised (``np.int64(3)`` -> ``3``), so that what is kept
    is plain data that ``json.dumps`` writes.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be an int, got {type(value).__name__} {_fmt(value)}")
    return int(value)


def check_real(name: str, value: object) -> float:
    """``value`` as a Python float: a real number, not a bool, a string or ``None``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{name}' must be a real number, got {type(value).__name__} {_fmt(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"'{name}' must be a finite number, got {_fmt(value)} (too large for a float)"
        ) from None


def check_finite(name: str, value: object) -> float:
    """Return ``value`` as a float; reject non-numbers, NaN and infinities."""
    f = check_real(name, value)
    if not math.isfinite(f):
        raise ValueError(f"'{name}' must be finite, got {_fmt(f)}")
    return f


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` as a Python bool; only ``True``/``False`` (and numpy's) are booleans.

    A string such as ``"False"`` or ``"no"`` is truthy in Python, which is exactly the mistake
    this refuses.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"'{name}' must be a bool, got {type(value).__name__} {_fmt(value)}")
    return bool(value)


def check_controller(value: object) -> None:
    """``value`` must be a :class:`trainctl.Controller` (what every adapter is built around)."""
    from ._controller import Controller  # here: the controller module imports this one

    if not isinstance(value, Controller):
        raise TypeError(
            f"'controller' must be a trainctl.Controller, got {type(value).__name__}"
        )


def plain(value: Any) -> Any:
    """attrs converter: a numpy scalar as the Python scalar it holds (``np.int64(3)`` -> ``3``,
    ``np.float32(0.5)`` -> ``0.5``, ``np.bool_(True)`` -> ``True``); anything else unchanged.

    A configuration keeps plain Python values, so that ``json.dumps`` writes its state; the
    field's validator then checks the type and the bounds, naming the parameter.
    """
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_ge(name: str, value: object, bound: float) -> None:
    """Raise ``ValueError("'name' must be >= bound, got value")`` unless ``value >= bound``."""
    if not check_real(name, value) >= bound:  # written so that NaN fails too
        raise ValueError(f"'{name}' must be >= {bound}, got {_fmt(value)}")


def check_gt(name: str, value: object, bound: float) -> None:
    """Raise ``ValueError`` unless ``value > bound``."""
    if not check_real(name, value) > bound:
        raise ValueError(f"'{name}' must be > {bound}, got {_fmt(value)}")


def check_le(name: str, value: object, bound: float) -> None:
    """Raise ``ValueError`` unless ``value <= bound``."""
    if not check_real(name, value) <= bound:
        raise ValueError(f"'{name}' must be <= {bound}, got {_fmt(value)}")


def check_lt(name: str, value: object, bound: float) -> None:
    """Raise ``ValueError`` unless ``value < bound``."""
    if not check_real(name, value) < bound:
        raise ValueError(f"'{name}' must be < {bound}, got {_fmt(value)}")


def check_one_of(name: str, value: object, choices: Collection[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"'{name}' must be one of {options}, got {_fmt(value)}")


# attrs validators -----------------------------------------------------------------------------

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def ge(bound: float) -> Validator:
    """attrs validator: ``value >= bound``."""

    def _v(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        check_ge(attr.name, value, bound)

    return _v


def gt(bound: float) -> Validator:
    """attrs validator: ``value > bound``."""

    def _v(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        check_gt(attr.name, value, bound)

    return _v


def le(bound: float) -> Validator:
    """attrs validator: ``value <= bound``."""

    def _v(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        check_le(attr.name, value, bound)

    return _v


def lt(bound: float) -> Validator:
    """attrs validator: ``value < bound``."""

    def _v(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        check_lt(attr.name, value, bound)

    return _v


def metric_name(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a non-empty str (a metric's name)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{attr.name}' must be a non-empty str, got {value!r}")


def optional_metric_name(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: ``None`` or a non-empty str."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"'{attr.name}' must be None or a non-empty str, got {value!r}")


def boolean(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a bool."""
    check_bool(attr.name, value)


def integer(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: an int (not a bool, not a float)."""
    check_int(attr.name, value)


def real(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a real number (not a bool, not a string)."""
    check_real(attr.name, value)


def finite(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite real number."""
    check_finite(attr.name, value)


def one_of(*choices: object) -> Validator:
    """attrs validator: one of ``choices``."""

    def _v(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        check_one_of(attr.name, value, choices)

    return _v


def optional(*validators: Validator) -> Validator:
    """attrs validator: ``None``, or a value that passes every one of ``validators``."""

    def _v(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        for v in validators:
            v(inst, attr, value)

    return _v
