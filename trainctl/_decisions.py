"""Decision values: what to do now, and why.

Each policy's transition returns an immutable decision carrying a :class:`Reason`: the policy that
decided (``source``), a machine-readable ``event`` from a small fixed vocabulary (:data:`EVENTS`),
and a human-readable ``message`` with the numbers behind it. The :class:`Controller` merges the
per-policy decisions of one call into a :class:`Decision`.

Decisions and states are named tuples: immutable, plain data, and cheap enough to build on every
optimizer step. A reason renders its message only when it is read, so a training loop that never
looks at the messages never pays for formatting them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

__all__ = [
    "EVENTS",
    "Decision",
    "Reason",
    "SaveRequest",
    "epoch_text",
    "lazy_reason",
    "make_decision",
    "number_text",
    "reasons_of",
]

#: Every ``Reason.event`` trainctl emits.
EVENTS = frozenset(
    {
        "missing_metric",  # the monitored key is absent: nothing changed
        "not_started",  # before start_from_epoch: nothing changed
        "improved",  # a new best value
        "no_improvement",  # counted towards patience
        "already_stopped",  # a stop is final
        "patience_exhausted",  # EarlyStopping
        "non_finite",  # EarlyStopping(check_finite), TerminateOnNaN
        "stopping_threshold",
        "divergence_threshold",
        "restore_best",  # end of training
        "cooldown",  # ReduceLROnPlateau
        "reduced_lr",
        "at_min_lr",
        "finite",  # TerminateOnNaN: checked, fine
        "save",  # checkpoints
        "skip_save",
        "note",  # a user policy's plain-string reason
    }
)


def epoch_text(index: int | None) -> str:
    """How every message names an epoch: 1-based, as Keras prints it and ``{epoch}`` in file
    names counts (``epoch_text(0) == "epoch 1"``). Attributes that mirror a framework's keep that
    framework's convention; text a person reads uses this.
    """
    return "no epoch" if index is None else f"epoch {index + 1}"


def number_text(x: float | None) -> str:
    """A metric value in a message: six significant digits (``"None"`` for no value)."""
    return "None" if x is None else f"{x:.6g}"


def _text(message: str) -> str:
    return message


_tuple_new = tuple.__new__


def lazy_reason(source: str, event: str, render: Callable[..., str], *args: Any) -> Reason:
    """:meth:`Reason.lazy` as a plain function: the policies' hot paths call this one."""
    reason: Reason = _tuple_new(Reason, (source, event, render, args))
    return reason


class _ReasonFields(NamedTuple):
    source: str
    event: str
    render: Callable[..., str]
    args: tuple[Any, ...]


class Reason(_ReasonFields):
    """Why a policy did what it did.

    Attributes:
        source: the policy, e.g. ``"EarlyStopping(val_loss)"``.
        event: a machine-readable tag, one of :data:`EVENTS` (a policy of your own may use its
            own).
        message: one human-readable sentence with the numbers behind the decision.

    ``Reason(source, event, message)`` builds one from a finished message; policies build theirs
    with :meth:`lazy` so that the message is only formatted when it is read. Two reasons are
    equal when their source, event and message are.
    """

    __slots__ = ()

    def __new__(cls, source: str, event: str, message: str) -> Reason:
        return _tuple_new(cls, (source, event, _text, (message,)))

    @classmethod
    def lazy(cls, source: str, event: str, render: Callable[..., str], *args: Any) -> Reason:
        """A reason whose message is ``render(*args)``, formatted on first read."""
        reason: Reason = _tuple_new(cls, (source, event, render, args))
        return reason

    @property
    def message(self) -> str:
        return self.render(*self.args)

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"

    def __repr__(self) -> str:
        return f"Reason(source={self.source!r}, event={self.event!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reason):
            return NotImplemented
        return (
            self.source == other.source
            and self.event == other.event
            and self.message == other.message
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.source, self.event, self.message))

    def __getnewargs__(self) -> tuple[str, str, str]:
        return (self.source, self.event, self.message)


class SaveRequest(NamedTuple):
    """A checkpoint to write now.

    Attributes:
        name: the file name inside the checkpoint directory (no directories).
        is_best: whether it is the new best by the policy's monitor.
        score: the monitored value it was ranked by (``None`` without a monitor).
    """

    name: str
    is_best: bool = False
    score: float | None = None


class Decision(NamedTuple):
    """The combined decision of one call on a :class:`~trainctl.Controller`.

    Attributes:
        clock: ``"round"`` for :meth:`Controller.step` (an evaluation round: end of an epoch or of
            a validation pass), ``"optimizer_step"`` for :meth:`Controller.optimizer_step`,
            ``"end"`` for :meth:`Controller.finish`.
        round: evaluation rounds completed, this one included.
        epoch: the epoch index of the last round (0-based, as Keras counts), or ``None``.
        optimizer_steps: optimizer steps completed so far.
        stop: stop training now. Final: every later decision says stop too.
        lr: the learning rate to use from now on (a tuple with one rate per param group), or
            ``None`` if the controller manages no learning rate.
        lr_changed: whether ``lr`` differs from the rate before this call.
        snapshot_best: keep a copy of the weights now: an early-stopping policy with
            ``restore_best_weights`` has a new best.
        restore_best: training ends and the kept best weights are to be loaded back; the
            adapters do it in ``finish()`` (the end of training, whatever ended it, as Keras
            does), so that a checkpoint written in the same round still holds the last weights.
        save: the checkpoint to write now, or ``None``.
        last: the rolling "last" checkpoint to (over)write now (``save_last``), or ``None``.
        delete: checkpoints to delete once the round's first write (``save``, else ``last``) is
            durable. Pass them with that first write (``CheckpointStore.save(..., delete=...)``):
            the controller state saved with it already assumes they are gone.
        details: each policy's own decision, in policy order (``details[i].reason``,
            ``details[i].best``, ...); :meth:`detail` finds one by the policy's label.
        labels: the label of the policy behind each entry of ``details``.
    """

    clock: Literal["round", "optimizer_step", "end"]
    round: int
    epoch: int | None
    optimizer_steps: int
    stop: bool = False
    lr: float | tuple[float, ...] | None = None
    lr_changed: bool = False
    snapshot_best: bool = False
    restore_best: bool = False
    save: SaveRequest | None = None
    last: SaveRequest | None = None
    delete: tuple[str, ...] = ()
    details: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """What each policy did and why, in policy order."""
        labels = self.labels or ("",) * len(self.details)
        return tuple(
            r for d, label in zip(self.details, labels, strict=True) for r in reasons_of(d, label)
        )

    def explain(self) -> str:
        """All reasons, one per line."""
        return "\n".join(str(r) for r in self.reasons)

    def detail(self, key: Any) -> Any:
        """The decision of one policy, by its label (``"EarlyStopping(val_loss)"``), by the
        policy object itself, or by its position; ``KeyError`` names the labels there are."""
        if isinstance(key, int):
            return self.details[key]
        label = key if isinstance(key, str) else getattr(key, "label", None)
        for d, mine in zip(self.details, self.labels, strict=True):
            if mine == label:
                return d
        raise KeyError(
            f"no decision of {label!r} in this decision; there are: "
            f"{', '.join(map(repr, self.labels)) or 'none'}"
        )


def reasons_of(decision: object, label: str) -> tuple[Reason, ...]:
    """A policy decision's reasons (its ``reason`` or ``reasons``); a plain string becomes
    ``Reason(label, "note", text)``."""
    raw: Any = getattr(decision, "reasons", None)
    if raw is None:
        one = getattr(decision, "reason", None)
        raw = () if one is None else (one,)
    return tuple(r if isinstance(r, Reason) else Reason(label, "note", str(r)) for r in raw)


def make_decision(
    *,
    clock: Literal["round", "optimizer_step", "end"],
    round: int,
    epoch: int | None,
    optimizer_steps: int,
    stop: bool,
    lr: float | tuple[float, ...] | None,
    lr_changed: bool,
    snapshot_best: bool,
    restore_best: bool,
    save: SaveRequest | None,
    last: SaveRequest | None,
    delete: tuple[str, ...],
    details: tuple[Any, ...],
    labels: tuple[str, ...],
) -> Decision:
    """``Decision(...)`` by field name, without a NamedTuple constructor's keyword overhead
    (it runs on every call of the Controller). Its parameters are :class:`Decision`'s fields, in
    order; a test checks that they stay so."""
    decision: Decision = _tuple_new(
        Decision,
        (clock, round, epoch, optimizer_steps, stop, lr, lr_changed, snapshot_best, restore_best,
         save, last, delete, details, labels),
    )
    return decision
