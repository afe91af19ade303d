"""Random metric streams for the side-by-side parity tests (``test_parity_*_core.py``).

A parity test is only as good as its inputs: the frameworks and trainctl agree on "random" data
almost everywhere, and disagree (if they do) on ties, on values exactly ``min_delta`` away from the
best, on float32 rounding, and on NaN / infinities. :func:`metric_stream` produces streams that
spend most of their time in exactly those places:

- plateaus (the previous value repeated) and exact ties with the best value so far;
- values exactly ``min_delta`` (absolute) or ``best * (1 -/+ min_delta)`` (relative) away from the
  best, and their neighbours one ulp either side;
- slow improvements (steps smaller than, equal to or slightly above ``min_delta``, or a few ulps);
- values on a coarse grid (so that differences of exactly ``min_delta`` are representable), random
  walks, fresh random values, negative values and values of mixed magnitudes;
- NaN, ``+inf`` and ``-inf`` (each optional) and absent metrics (``None``, optional).

With ``float32=True`` every value is float32-representable (rounded with ``np.float32`` and
returned as a Python float), which is how Keras hands metrics to its callbacks (``float`` of a
float32 tensor) and what a float32 tensor holds in Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = [
    "DELTAS",
    "FACTORS",
    "Value",
    "f32",
    "metric_stream",
    "pick",
    "same_float",
]

Value = float | None
"""One round's metric: a float (NaN and infinities included) or ``None`` (metric absent)."""

#: ``min_delta`` / ``threshold`` values: 0 often, binary fractions (exact) and decimal ones (not).
DELTAS: tuple[float, ...] = (0.0, 0.0, 0.0, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0)

#: reduction factors: exact binary ones and decimal ones.
FACTORS: tuple[float, ...] = (0.1, 0.5, 0.2, 0.25, 0.3, 0.75, 0.9, 0.05)

_ACTIONS = (
    "repeat",  # plateau: previous value again
    "tie_best",  # exactly the best so far
    "delta_best",  # best -/+ min_delta, best * (1 -/+ min_delta), +-1 ulp
    "delta_prev",  # previous -/+ min_delta
    "slow",  # a small step in the improving direction
    "walk",  # random walk with a drift
    "fresh",  # a new random value
    "nan",
    "pos_inf",
    "neg_inf",
    "missing",
)
_WEIGHTS = np.array([0.17, 0.1, 0.14, 0.07, 0.16, 0.2, 0.05, 0.03, 0.02, 0.01, 0.02])


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a Python float."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _nudge(x: float, steps: int, float32: bool) -> float:
    """``x`` moved by ``steps`` ulps (float32 ulps if ``float32``)."""
    if steps == 0 or not math.isfinite(x):
        return x
    if float32:
        y = np.float32(x)
        target = np.float32(math.inf if steps > 0 else -math.inf)
        for _ in range(abs(steps)):
            y = np.nextafter(y, target)
        return float(y)
    for _ in range(abs(steps)):
        x = math.nextafter(x, math.inf if steps > 0 else -math.inf)
    return x


def pick(rng: np.random.Generator, options: Sequence[float]) -> float:
    """One element of ``options``, uniformly."""
    return float(options[int(rng.integers(len(options)))])


def metric_stream(
    rng: np.random.Generator,
    n: int,
    *,
    min_delta: float = 0.0,
    mode: Literal["min", "max"] = "min",
    float32: bool = True,
    nan: bool = True,
    pos_inf: bool = True,
    neg_inf: bool = True,
    missing: bool = False,
    signed: bool = True,
) -> list[Value]:
    """A stream of ``n`` metric values built to stress the improvement test (see the module doc).

    ``mode`` says which way is better, so that "the best so far", "slow improvement" and "exactly
    ``min_delta`` better" mean something; streams are just as useful to the other mode (every
    such value is then a non-improvement near a tie).
    """
    weights = _WEIGHTS.copy()
    for i, flag in ((7, nan), (8, pos_inf), (9, neg_inf), (10, missing)):
        if not flag:
            weights[i] = 0.0
    weights /= weights.sum()
    better = -1.0 if mode == "min" else 1.0
    scale = float(10.0 ** rng.uniform(-3, 2))
    offset = float(rng.normal() * scale * 3) if signed else scale * float(rng.uniform(1, 10))
    grid: float | None = None
    if rng.random() < 0.5:
        grid = pick(rng, [g for g in (min_delta, scale / 8, scale / 10, 2.0**-6) if g > 0])
    d = abs(min_delta)
    prev = offset
    best: float | None = None
    out: list[Value] = []
    for action in rng.choice(len(_ACTIONS), size=n, p=weights):
        name = _ACTIONS[action]
        v: float
        if name == "nan":
            out.append(math.nan)
            continue
        if name == "pos_inf":
            out.append(math.inf)
            continue
        if name == "neg_inf":
            out.append(-math.inf)
            continue
        if name == "missing":
            out.append(None)
            continue
        ref = best if best is not None else prev
        if name == "repeat":
            v = prev
        elif name == "tie_best":
            v = ref
        elif name == "delta_best":
            sign = better if rng.random() < 0.7 else -better
            # absolute (Keras, Lightning, torch "abs") or relative (torch "rel") distance
            v = ref + sign * d if rng.random() < 0.5 else ref * (1.0 + sign * d)
            v = _nudge(v, int(rng.integers(-1, 2)), float32)
        elif name == "delta_prev":
            v = prev + (better if rng.random() < 0.6 else -better) * d
        elif name == "slow":
            kind = rng.random()
            if kind < 0.3:
                v = _nudge(prev, int(better) * int(rng.integers(1, 4)), float32)
            else:
                step = (d if d > 0 else scale * 1e-3) * float(rng.choice([0.5, 0.99, 1.0, 1.01, 2]))
                v = prev + better * step
        elif name == "walk":
            v = prev + float(rng.normal(0.3 * better, 1.0)) * scale * 0.3
        else:
            v = offset + float(rng.normal()) * scale * 3
        if grid is not None and name in ("walk", "fresh"):
            v = round(v / grid) * grid
        if not signed:
            v = abs(v)
        if float32:
            v = f32(v)
        prev = v
        if best is None or (v < best if mode == "min" else v > best):
            best = v
        out.append(v)
    return out


def same_float(a: float | None, b: float | None) -> bool:
    """Equality that treats two NaNs as equal (and ``None`` only equal to ``None``)."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b
