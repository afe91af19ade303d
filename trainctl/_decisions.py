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

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from ._state import encode_float

_NO_METRICS: Mapping[str, Any] = MappingProxyType({})

__all__ = [
    "EVENTS",
    "Decision",
    "Reason",
    "SaveRequest",
    "epoch_text",
    "lazy_reason",
    "make_decision",
    "number_text",
    "plain_fields",
    "plain_metrics",
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


def epoch_number(index: int) -> int:
    """The number a person reads for the 0-based epoch ``index``: ``index + 1``, as Keras'
    progress bar ("Epoch 1/50") and ``{epoch}`` in file names count. The one home of the rule."""
    return index + 1


def epoch_after(index: int | None) -> int:
    """The 0-based epoch after the last round's epoch ``index`` (0 before any round): the epoch in
    progress between two rounds, and where a resumed run starts. The one home of the rule."""
    return 0 if index is None else index + 1


def epoch_text(index: int | None) -> str:
    """How every message names an epoch: 1-based (:func:`epoch_number`, ``epoch_text(0) ==
    "epoch 1"``). Attributes that mirror a framework's keep that framework's convention; text a
    person reads uses this.
    """
    return "no epoch" if index is None else f"epoch {epoch_number(index)}"


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
        metrics: the metrics the call was given (the mapping itself, not a copy).

    Data fields (``epoch``, ``details[i].best_epoch``) are 0-based indices, as Keras' attributes
    are; every text a person reads (``explain()``, messages, logs' text, file names) counts
    epochs from 1 (:func:`epoch_text`).
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
    metrics: Mapping[str, Any] = _NO_METRICS

    @property
    def events(self) -> tuple[str, ...]:
        """Every reason's event, in policy order."""
        return tuple(r.event for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-safe plain data (``json.dumps`` writes it as it is).

        Keys: ``clock``, ``round``, ``epoch`` (0-based, ``None`` before the first round),
        ``optimizer_steps``, ``metrics`` (the numbers among the call's metrics, as floats),
        ``lr`` (one rate per param group, or ``None``), ``lr_changed``, ``stop``,
        ``snapshot_best``, ``restore_best``, ``save`` / ``last`` (``{"name", "is_best",
        "score"}`` or ``None``), ``delete``, ``events``, ``reasons`` (``{"source", "event",
        "message"}`` with the rendered message) and ``policies`` (each policy's own plain
        fields by label: ``best``, ``wait``, ...). Non-finite floats are ``"nan"``, ``"inf"``,
        ``"-inf"``. There is no inverse: a decision is made, not loaded.
        """
        reasons = self.reasons
        lr = self.lr
        return {
            "clock": self.clock,
            "round": self.round,
            "epoch": self.epoch,
            "optimizer_steps": self.optimizer_steps,
            "metrics": plain_metrics(self.metrics),
            "lr": None if lr is None else [encode_float(x) for x in _rates(lr)],
            "lr_changed": self.lr_changed,
            "stop": self.stop,
            "snapshot_best": self.snapshot_best,
            "restore_best": self.restore_best,
            "save": _request_dict(self.save),
            "last": _request_dict(self.last),
            "delete": list(self.delete),
            "events": [r.event for r in reasons],
            "reasons": [
                {"source": r.source, "event": r.event, "message": r.message} for r in reasons
            ],
            "policies": {
                label: plain_fields(d)
                for label, d in zip(self.labels or ("",) * len(self.details), self.details,
                                    strict=True)
            },
        }

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


def _rates(lr: float | tuple[float, ...]) -> tuple[float, ...]:
    return lr if isinstance(lr, tuple) else (lr,)


def _request_dict(request: SaveRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    score = None if request.score is None else encode_float(request.score)
    return {"name": request.name, "is_best": request.is_best, "score": score}


def plain_metrics(metrics: Mapping[str, Any]) -> dict[str, float | str]:
    """The numbers among ``metrics`` as JSON-safe floats (non-finite ones as strings)."""
    from ._monitor import number_metrics

    return {k: encode_float(v) for k, v in number_metrics(metrics).items()}


def plain_fields(decision: object) -> dict[str, Any]:
    """A policy decision's own plain-data fields (numbers, strings, bools, ``None``), JSON-safe;
    its reason(s) are left out (they are listed with the merged decision)."""
    if isinstance(decision, Mapping):
        items: Any = decision.items()
    elif hasattr(decision, "_asdict"):
        items = decision._asdict().items()
    elif hasattr(decision, "__attrs_attrs__"):
        items = ((a.name, getattr(decision, a.name)) for a in decision.__attrs_attrs__)
    else:
        items = getattr(decision, "__dict__", {}).items()
    out: dict[str, Any] = {}
    for key, value in items:
        if key in ("reason", "reasons") or key.startswith("_"):
            continue
        if isinstance(value, float):
            out[key] = encode_float(value)
        elif value is None or isinstance(value, (bool, int, str)):
            out[key] = value
        elif isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            out[key] = [encode_float(float(v)) for v in value]
    return out


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
    metrics: Mapping[str, Any],
) -> Decision:
    """``Decision(...)`` by field name, without a NamedTuple constructor's keyword overhead
    (it runs on every call of the Controller). Its parameters are :class:`Decision`'s fields, in
    order; a test checks that they stay so."""
    decision: Decision = _tuple_new(
        Decision,
        (clock, round, epoch, optimizer_steps, stop, lr, lr_changed, snapshot_best, restore_best,
         save, last, delete, details, labels, metrics),
    )
    return decision
