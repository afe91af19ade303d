"""float32 rounding, the one helper for it.

Keras keeps a learning rate in a float32 variable and compares metrics as float32 tensors;
Lightning compares float32 tensors. Wherever trainctl mirrors that, it rounds with
:func:`to_float32`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_float32"]


def to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as a Python float."""
    return float(np.float32(value))
