"""The contract between a policy and the :class:`~trainctl.Controller`.

A policy is a frozen configuration with a pure transition over a plain-data state. The Controller
knows no concrete policy: it calls the members below, reads every decision **by field name**, and
merges the decisions of one call with one rule (:mod:`trainctl._controller`). A policy written in
your own module works exactly like a built-in one.

Required members
----------------
==============================================  ==================================================
``label: str``                                  how reasons and errors name it, e.g.
                                                ``"EarlyStopping(val_loss)"``
``clocks: frozenset[str]``                      which calls it listens to: ``"round"``
                                                (``ctl.step``), ``"optimizer_step"``
                                                (``ctl.optimizer_step``), or both
``initial_state() -> S``                        the state before any call
``update(state, obs) -> (decision, state)``     the transition; reads only ``obs``
                                                (:class:`Observation`), never a clock, a file, a
                                                global or randomness, and mutates nothing
``state_to_dict(state) -> dict``                the state as strict-JSON plain data
``state_from_dict(data) -> S``                  the inverse; raise :class:`~trainctl.StateError`
                                                naming the field that does not fit
``config_dict() -> dict``                       the configuration as plain data with a ``"type"``
                                                key (a strict resume compares it)
==============================================  ==================================================

Optional hooks (the Controller uses them when present)
------------------------------------------------------
==============================================  ==================================================
``finish(state) -> decision``                   the end of training, whatever ended it
                                                (``Controller.finish``): e.g. ask for the best
                                                weights back
``min_lrs(n_groups) -> tuple[float, ...]``      a floor for the learning rate of each param group
                                                (``n_groups`` is ``None`` for a single rate):
                                                no rate request of any policy takes a rate below
                                                the largest floor declared
``stop_is_final: bool`` (default ``True``)      ``False``: a stop by this policy holds for this
                                                call only; the Controller keeps running it
                                                (Lightning's re-check under ``min_epochs``,
                                                Keras' ``TerminateOnNaN`` reacting to each bad
                                                batch)
``warn_if_missing: bool`` (default ``True``)    the Controller warns once when a decision's event
                                                is ``"missing_metric"``
==============================================  ==================================================

Decision fields (read by name; a field a decision lacks, or ``None``, means "no effect")
------------------------------------------------------------------------------------------
==============================================  ==================================================
``stop: bool``                                  stop training now
``lr: float | Sequence[float]``                 an absolute rate request: run at this rate (one
                                                per param group) from now on; under a schedule,
                                                the group's scale is set so that it runs at this
                                                rate now and follows the schedule's shape after
``lr_factor: float | Sequence[float]``          a relative request: multiply the rate (under a
                                                schedule, the group's scale on the schedule) by
                                                this, per param group (``1.0``: unchanged)
``snapshot_best: bool``                         keep a copy of the weights now
``restore_best: bool``                          load the kept best weights now
``save``, ``last``: ``SaveRequest | str``       a checkpoint to write now (``last``: the rolling
                                                one)
``delete: Sequence[str]``                       checkpoints to delete once the call's first write
                                                is durable
``reason: Reason | str`` or ``reasons``         why (a plain string becomes a
                                                ``Reason(label, "note", text)``)
==============================================  ==================================================

Any object with attributes works as a decision: a ``NamedTuple`` (the built-ins), an attrs or
dataclass instance, ``types.SimpleNamespace``. Its other fields (``best``, ``wait``, ...) are the
policy's own and reach the user through ``Decision.details``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from ._config import compact_repr, config_to_dict

__all__ = [
    "DECISION_FIELDS",
    "Clock",
    "DecisionFields",
    "Observation",
    "Policy",
    "compact_repr",
    "config_to_dict",
    "decision_fields",
    "make_observation",
]

Clock = Literal["round", "optimizer_step"]

S = TypeVar("S")
D = TypeVar("D", covariant=True)


class Observation(NamedTuple):
    """What a policy sees on one call.

    Attributes:
        clock: ``"round"`` (an evaluation round) or ``"optimizer_step"``.
        metrics: the metrics of this call (name -> number); read them, never write them.
        epoch: the 0-based epoch index of this round (the round index unless the caller says
            otherwise); for optimizer steps, the epoch in progress.
        round: evaluation rounds completed before this call.
        optimizer_steps: optimizer steps completed, this one included for an optimizer step.
        lr: the learning rate in force (one float, or one per param group), or ``None``; a
            policy later in the controller's order sees the rate earlier policies requested.
        time: training time in seconds as the caller measures it, or ``None``.
    """

    clock: Clock
    metrics: Mapping[str, Any]
    epoch: int
    round: int
    optimizer_steps: int
    lr: float | tuple[float, ...] | None = None
    time: float | None = None


def make_observation(
    *,
    clock: Clock,
    metrics: Mapping[str, Any],
    epoch: int,
    round: int,
    optimizer_steps: int,
    lr: float | tuple[float, ...] | None,
    time: float | None,
) -> Observation:
    """``Observation(...)`` by field name, without a NamedTuple constructor's keyword overhead
    (the Controller builds one per call). Its parameters are :class:`Observation`'s fields, in
    order; a test checks that they stay so."""
    obs: Observation = _tuple_new(
        Observation, (clock, metrics, epoch, round, optimizer_steps, lr, time)
    )
    return obs


_tuple_new = tuple.__new__


class Policy(Protocol[S, D]):
    """The required members of a policy (see the module docstring for the optional hooks)."""

    @property
    def label(self) -> str: ...

    @property
    def clocks(self) -> frozenset[Clock]: ...

    def initial_state(self) -> S: ...

    def update(self, state: S, obs: Observation) -> tuple[D, S]: ...

    def state_to_dict(self, state: S) -> dict[str, Any]: ...

    def state_from_dict(self, data: Mapping[str, Any]) -> S: ...

    def config_dict(self) -> dict[str, Any]: ...


#: The fields the Controller reads from a policy's decision, by name.
DECISION_FIELDS = (
    "stop",
    "lr",
    "lr_factor",
    "snapshot_best",
    "restore_best",
    "save",
    "last",
    "delete",
    "reason",
    "reasons",
)


class DecisionFields(NamedTuple):
    """Which of :data:`DECISION_FIELDS` a decision has (computed once per declared type)."""

    stop: bool
    lr: bool
    lr_factor: bool
    snapshot_best: bool
    restore_best: bool
    save: bool
    last: bool
    delete: bool
    reason: bool
    reasons: bool


_DECLARED: dict[type, DecisionFields] = {}


def _declared_names(cls: type) -> set[str] | None:
    """The attribute names a class declares for every instance, or ``None`` if unknown."""
    fields = getattr(cls, "_fields", None)
    if isinstance(fields, tuple) and issubclass(cls, tuple):  # a NamedTuple
        return set(fields)
    attrs_fields = getattr(cls, "__attrs_attrs__", None)
    if attrs_fields is not None:
        return {a.name for a in attrs_fields}
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return None


def decision_fields(decision: object) -> DecisionFields:
    """Which contract fields ``decision`` has.

    For a NamedTuple, attrs or dataclass type the answer is computed once per type (its declared
    fields, plus properties and class attributes of those names); any other object is inspected
    on every call.
    """
    cls = type(decision)
    known = _DECLARED.get(cls)
    if known is not None:
        return known
    names = _declared_names(cls)
    if names is None:
        return DecisionFields(**{f: hasattr(decision, f) for f in DECISION_FIELDS})
    found = DecisionFields(**{f: f in names or hasattr(cls, f) for f in DECISION_FIELDS})
    _DECLARED[cls] = found
    return found
