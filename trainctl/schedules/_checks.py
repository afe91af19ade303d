"""Argument checks the schedule factories need beyond :mod:`trainctl._validation`.

Every message keeps the shared shape: the parameter, the bound, the value::

    'boundaries' must be strictly increasing, got (10, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

from trainctl._validation import check_finite, check_ge, check_gt, check_int


def count(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int that is ``>= minimum`` (a number of steps)."""
    n = check_int(name, value)
    check_ge(name, n, minimum)
    return n


def rate(name: str, value: object) -> float:
    """Return ``value`` as a finite float ``> 0`` (a learning rate that others are scaled by)."""
    return positive(name, value)


def nonneg(name: str, value: object) -> float:
    """Return ``value`` as a finite float ``>= 0``."""
    f = check_finite(name, value)
    check_ge(name, value, 0)
    return f


def positive(name: str, value: object) -> float:
    """Return ``value`` as a finite float ``> 0``."""
    f = check_finite(name, value)
    check_gt(name, value, 0)
    return f


def flag(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool; a truthy string or int is a mistake worth reporting."""
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be a bool, got {type(value).__name__} {value!r}")
    return value


def int_sequence(name: str, values: object, minimum: int, *, strict: bool) -> tuple[int, ...]:
    """Return ``values`` as a tuple of ints ``>= minimum``, increasing (strictly if ``strict``)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"'{name}' must be a sequence of ints, got {type(values).__name__}")
    items = tuple(check_int(name, v) for v in values)
    for v in items:
        check_ge(name, v, minimum)
    for a, b in pairwise(items):
        if b < a or (strict and b == a):
            order = "strictly increasing" if strict else "non-decreasing"
            raise ValueError(f"'{name}' must be {order}, got {items!r}")
    return items


def callable_(name: str, value: object) -> Callable[..., Any]:
    """Return ``value`` if it can be called."""
    if not callable(value):
        raise TypeError(f"'{name}' must be callable, got {type(value).__name__} {value!r}")
    return value
