"""Plain-data state: JSON-safe floats, versioned envelopes, clear rejection of foreign states.

Policy states are small frozen records of numbers, strings and tuples. They travel through
``json.dumps`` / ``json.loads`` (checkpoints, manifests, resumes), which has no NaN or infinity in
strict JSON, so non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, overload

__all__ = [
    "NONFINITE",
    "StateError",
    "decode_float",
    "decode_int",
    "decode_optional_int",
    "encode_float",
    "plain_data",
    "require_keys",
]

#: The strings strict JSON spells non-finite floats with (see :func:`encode_float`).
NONFINITE: Mapping[str, float] = MappingProxyType(
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
)


class StateError(ValueError):
    """A state dict does not fit this object: another configuration, version or a corrupt value."""


@overload
def encode_float(value: float) -> float | str: ...


@overload
def encode_float(value: None) -> None: ...


@overload
def encode_float(value: float | None) -> float | str | None: ...


def encode_float(value: float | None) -> float | str | None:
    """Return ``value`` as strict-JSON data (non-finite floats become strings)."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def plain_data(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, numbers, strings) with every non-finite float encoded by
    :func:`encode_float`, tuples as lists: strict JSON."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def decode_float(value: object, *, where: str) -> float | None:
    """Inverse of :func:`encode_float`; ``where`` names the field in error messages."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return NONFINITE[value]
        except KeyError:
            raise StateError(f"{where}: expected a number, got string {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def decode_int(value: object, *, where: str) -> int:
    """Read a JSON int (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{where}: expected an int, got {type(value).__name__} {value!r}")
    return value


def decode_optional_int(value: object, *, where: str) -> int | None:
    """Read a JSON int or null."""
    return None if value is None else decode_int(value, where=where)


def require_keys(data: object, keys: tuple[str, ...], *, where: str) -> Mapping[str, Any]:
    """Check that ``data`` is a mapping holding exactly ``keys``; name what is missing or extra."""
    if not isinstance(data, Mapping):
        raise StateError(f"{where}: expected a dict, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    extra = [k for k in data if k not in keys]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(repr(k) for k in missing))
        if extra:
            parts.append("unexpected " + ", ".join(repr(k) for k in extra))
        raise StateError(f"{where}: {'; '.join(parts)}")
    return data
