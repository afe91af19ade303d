"""Learning-rate arithmetic, each rule written once.

=========================================  ===================================================
rule                                       used by
=========================================  ===================================================
:func:`schedule_rate`                      the Controller and ``ScheduleLR``: ``s(t)``, refused
                                           if negative or not finite
:func:`group_rate`                         the Controller's schedule and ``ScheduleLR`` (torch
``value if base == ref``                   ``LambdaLR``'s expression for a group with its own
``else base * (value / ref)``              base rate; a group at the schedule's base rate runs
                                           at exactly ``s(t)``)
:func:`reduced_rate`                       a plateau reduction (Keras and torch:
``max(old * factor, floor)``               ``max(lr * factor, min_lr)``)
:func:`scheduled_rate`                     a plateau scale on a schedule: never below the floor,
``max(plain * scale, min(plain, floor))``  never above the schedule
=========================================  ===================================================
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["group_rate", "reduced_rate", "schedule_rate", "scheduled_rate"]


def schedule_rate(schedule: Any, t: int) -> float:
    """``schedule(t)``, refused before it becomes a rate if it is negative or not finite (a user
    function such as ``lambda_lr(0.1, lambda t: 1 - t)`` can give either)."""
    value = float(schedule(t))
    if not (value >= 0.0 and math.isfinite(value)):  # NaN fails both
        raise ValueError(
            f"the schedule {schedule!r} gives the rate {value!r} at step {t}; a learning rate "
            "must be finite and >= 0"
        )
    return value


def group_rate(base: float, value: float, reference: float) -> float:
    """The rate of a param group whose base rate is ``base`` when the schedule gives ``value``
    against its own base rate ``reference`` (torch ``LambdaLR``: ``base * (value / reference)``,
    exactly ``value`` for a group at the schedule's own rate)."""
    if base == reference:
        return value
    return base * (value / reference) if reference else 0.0


def reduced_rate(old: float, factor: float, floor: float) -> float:
    """``old`` lowered by ``factor`` but not below ``floor``: ``max(old * factor, floor)``."""
    return max(old * factor, floor)


def scheduled_rate(plain: float, scale: float, floor: float) -> float:
    """A group's scheduled rate ``plain`` under a plateau ``scale``: reduced by the scale, never
    below ``floor`` and never above the schedule itself."""
    if scale == 1.0:
        return plain
    return max(plain * scale, min(plain, floor))
