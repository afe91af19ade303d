"""Helpers shared by the frozen configuration classes (policies, comparisons, monitors).

A configuration is an attrs ``@frozen`` class whose ``init`` fields are the user's arguments and
whose ``init=False`` fields are derived from them (compiled comparisons, hot-path copies). These
helpers read only the ``init`` fields, so that a configuration is its arguments:

- :func:`config_to_dict`: the arguments as JSON-safe plain data (saved with every state, and
  compared on resume);
- :func:`compact_repr`: ``Name(arg=value, ...)`` with only the arguments that differ from their
  defaults;
- :func:`rebuild_reduce`: ``__reduce__`` for pickle and ``copy``: rebuild from the arguments, so
  that derived fields (closures, which do not pickle) are recomputed.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._state import encode_float

__all__ = ["compact_repr", "config_to_dict", "init_kwargs", "rebuild_reduce"]


def init_kwargs(config: Any) -> dict[str, Any]:
    """The ``init`` arguments of an attrs configuration, by name."""
    return {
        f.name if f.alias is None else f.alias: getattr(config, f.name)
        for f in attrs.fields(type(config))
        if f.init
    }


def _rebuild(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    return cls(**kwargs)


def rebuild_reduce(config: Any) -> tuple[Any, tuple[type[Any], dict[str, Any]]]:
    """``__reduce__`` for a frozen configuration: rebuild it from its ``init`` arguments."""
    return (_rebuild, (type(config), init_kwargs(config)))


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """An attrs configuration as JSON-safe plain data (``init`` fields only), with its type."""
    out: dict[str, Any] = {"type": type(config).__name__}
    for field in attrs.fields(type(config)):
        if field.init:
            out[field.name] = _plain(getattr(config, field.name))
    return out


def compact_repr(config: Any) -> str:
    """``Name(arg=value, ...)`` with only the arguments that differ from their defaults."""
    parts = []
    for field in attrs.fields(type(config)):
        if not field.init:
            continue
        value = getattr(config, field.name)
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        if field.default is attrs.NOTHING or value != default:
            parts.append(f"{field.name}={value!r}")
    return f"{type(config).__name__}({', '.join(parts)})"


class Configured:
    """What every policy class (an attrs ``@frozen(repr=False)`` configuration) shares: it
    pickles as its arguments (:func:`rebuild_reduce`), ``config_dict()`` is
    :func:`config_to_dict` and its repr is :func:`compact_repr`."""

    __slots__ = ()

    __reduce__ = rebuild_reduce

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def __repr__(self) -> str:
        return compact_repr(self)
