"""What every policy is: a frozen configuration with a pure transition over a plain-data state.

A policy ``p`` provides:

- ``p.initial_state()``: the state before any round;
- ``p.update(state, obs) -> (decision, new_state)``: the transition, reading only ``obs``;
- ``p.state_to_dict(state)`` / ``p.state_from_dict(data)``: JSON-safe state round trip;
- ``p.config_dict()``: the configuration as plain data (resumes check it);
- ``p.clocks``: which clocks it listens to (``"round"``, ``"optimizer_step"``);
- ``p.label``: how reasons name it, e.g. ``"EarlyStopping(val_loss)"``.

No transition reads a clock, a file, a global or randomness, and none mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import attrs

from ._state import encode_float

__all__ = ["Clock", "Observation", "Policy", "compact_repr", "config_to_dict"]

Clock = Literal["round", "optimizer_step"]

S = TypeVar("S")
D = TypeVar("D", covariant=True)


class Observation(NamedTuple):
    """What a policy sees on one call.

    Attributes:
        clock: ``"round"`` (an evaluation round) or ``"optimizer_step"``.
        metrics: the metrics of this call (name -> number).
        epoch: the 0-based epoch index of this round (the round index unless the caller says
            otherwise); for optimizer steps, the epoch in progress.
        round: evaluation rounds completed before this call.
        optimizer_steps: optimizer steps completed, this one included for an optimizer step.
        lr: the learning rate in use (one float, or one per param group), or ``None``.
        time: training time in seconds as the caller measures it, or ``None``.
    """

    clock: Clock
    metrics: Mapping[str, Any]
    epoch: int
    round: int
    optimizer_steps: int
    lr: float | tuple[float, ...] | None = None
    time: float | None = None


class Policy(Protocol[S, D]):
    """The shape of a policy (see the module docstring)."""

    @property
    def label(self) -> str: ...

    @property
    def clocks(self) -> frozenset[Clock]: ...

    def initial_state(self) -> S: ...

    def update(self, state: S, obs: Observation) -> tuple[D, S]: ...

    def state_to_dict(self, state: S) -> dict[str, Any]: ...

    def state_from_dict(self, data: Mapping[str, Any]) -> S: ...

    def config_dict(self) -> dict[str, Any]: ...


def config_to_dict(config: Any) -> dict[str, Any]:
    """An attrs configuration as JSON-safe plain data (init fields only)."""
    out: dict[str, Any] = {"type": type(config).__name__}
    for field in attrs.fields(type(config)):
        if not field.init:
            continue
        value = getattr(config, field.name)
        if isinstance(value, float):
            value = encode_float(value)
        elif isinstance(value, tuple):
            value = [encode_float(v) if isinstance(v, float) else v for v in value]
        out[field.name] = value
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
        if value != default or field.default is attrs.NOTHING:
            parts.append(f"{field.name}={value!r}")
    return f"{type(config).__name__}({', '.join(parts)})"
