"""NaN guard: stop as soon as a monitored value is NaN or infinite.

Theory of operation
-------------------
State: ``stopped_at`` (``None`` until it fires) with the offending value. It listens to both clocks:
Keras checks the batch loss after every batch (``on_batch_end``), a plain epoch loop checks at the
end of each epoch; whichever call carries ``monitor`` is checked. An absent key is not a warning
(per-step metrics often carry no loss). Once it fired, every later call says stop.

==============  ===================================  =====================================
                Keras ``TerminateOnNaN``             trainctl
==============  ===================================  =====================================
monitor         ``"loss"`` (fixed)                   ``monitor`` (default ``"loss"``)
when            after every batch                    every call carrying ``monitor``
effect          ``stop_training`` (or raise)         ``stop`` with the value and the clock
==============  ===================================  =====================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import attrs

from ._config import Configured
from ._decisions import Reason, epoch_text
from ._monitor import read_metric
from ._policy import Clock, Observation
from ._state import StateError, decode_float, require_keys
from ._validation import boolean, metric_name, plain

__all__ = ["NaNDecision", "NaNState", "TerminateOnNaN"]


def _m_stopped(monitor: str, state: NaNState) -> str:
    return f"{monitor} was {state.value} at {state.stopped_at}; a stop is final"


def _m_missing(monitor: str) -> str:
    return f"{monitor!r} not in metrics; nothing to check"


def _m_finite(monitor: str, v: float) -> str:
    return f"{monitor} = {v:.6g}"


def _m_non_finite(monitor: str, v: float, where: str) -> str:
    return f"{monitor} = {v} at {where}; terminating training"


class NaNState(NamedTuple):
    """Plain-data state of :class:`TerminateOnNaN`: where it fired, if it did."""

    stopped_at: str | None = None  # e.g. "optimizer step 1234" or "epoch 3" (1-based)
    value: float | None = None


class NaNDecision(NamedTuple):
    """What :class:`TerminateOnNaN` decided: ``stop`` and why."""

    stop: bool
    reason: Reason


@attrs.frozen(repr=False)
class TerminateOnNaN(Configured):
    """Stop training when ``monitor`` is NaN or infinite.

    Args:
        monitor: the metric to check (default ``"loss"``), on every call that carries it.
        stop_is_final: ``False`` reacts to each non-finite value separately (Keras' callback,
            per batch) instead of stopping for good at the first one.

    >>> import trainctl
    >>> ctl = trainctl.Controller(trainctl.TerminateOnNaN())
    >>> ctl.optimizer_step({"loss": 0.5}).stop, ctl.optimizer_step({"loss": float("nan")}).stop
    (False, True)
    """

    monitor: str = attrs.field(default="loss", validator=metric_name)
    stop_is_final: bool = attrs.field(
        default=True, kw_only=True, converter=plain, validator=boolean
    )

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round", "optimizer_step"})
    warn_if_missing: ClassVar[bool] = False


    @property
    def label(self) -> str:
        return f"TerminateOnNaN({self.monitor})"

    def initial_state(self) -> NaNState:
        return NaNState()

    def update(self, state: NaNState, obs: Observation) -> tuple[NaNDecision, NaNState]:
        if state.stopped_at is not None and self.stop_is_final:
            why = Reason.lazy(self.label, "already_stopped", _m_stopped, self.monitor, state)
            return NaNDecision(stop=True, reason=why), state
        v = read_metric(obs.metrics, self.monitor)
        if v is None:
            why = Reason.lazy(self.label, "missing_metric", _m_missing, self.monitor)
            return NaNDecision(stop=False, reason=why), state
        if v - v == 0.0:  # finite: inf - inf and nan - nan are nan
            why = Reason.lazy(self.label, "finite", _m_finite, self.monitor, v)
            return NaNDecision(stop=False, reason=why), state
        where = (
            f"optimizer step {obs.optimizer_steps}"
            if obs.clock == "optimizer_step"
            else epoch_text(obs.epoch)
        )
        new = NaNState(stopped_at=where, value=v)
        why = Reason.lazy(self.label, "non_finite", _m_non_finite, self.monitor, v, where)
        return NaNDecision(stop=True, reason=why), new

    def state_to_dict(self, state: NaNState) -> dict[str, Any]:
        value = None if state.value is None else str(state.value)  # always nan/inf/-inf
        return {"stopped_at": state.stopped_at, "value": value}

    def state_from_dict(self, data: Mapping[str, Any]) -> NaNState:
        where = f"{self.label} state"
        d = require_keys(data, ("stopped_at", "value"), where=where)
        at = d["stopped_at"]
        if at is not None and not isinstance(at, str):
            raise StateError(f"{where}: 'stopped_at' must be a string or null, got {at!r}")
        return NaNState(stopped_at=at, value=decode_float(d["value"], where=f"{where}.value"))
