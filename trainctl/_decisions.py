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

__all__ = ["EVENTS", "Decision", "Reason", "SaveRequest"]

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
    }
)


def _text(message: str) -> str:
    return message


class Reason(tuple[str, str, Callable[..., str], tuple[Any, ...]]):
    """Why a policy did what it did.

    Attributes:
        source: the policy, e.g. ``"EarlyStopping(val_loss)"``.
        event: a machine-readable tag, one of :data:`EVENTS`.
        message: one human-readable sentence with the numbers behind the decision.

    ``Reason(source, event, message)`` builds one from a finished message; policies build theirs
    with :meth:`lazy` so that the message is only formatted when it is read.
    """

    __slots__ = ()

    def __new__(cls, source: str, event: str, message: str) -> Reason:
        return tuple.__new__(cls, (source, event, _text, (message,)))

    @classmethod
    def lazy(cls, source: str, event: str, render: Callable[..., str], *args: Any) -> Reason:
        """A reason whose message is ``render(*args)``, formatted on first read."""
        return tuple.__new__(cls, (source, event, render, args))

    @property
    def source(self) -> str:
        return self[0]

    @property
    def event(self) -> str:
        return self[1]

    @property
    def message(self) -> str:
        return self[2](*self[3])

    def __str__(self) -> str:
        return f"{self[0]}: {self.message}"

    def __repr__(self) -> str:
        return f"Reason(source={self[0]!r}, event={self[1]!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reason):
            return NotImplemented
        return self[:2] == other[:2] and self.message == other.message

    def __hash__(self) -> int:
        return hash((self[0], self[1], self.message))

    def __getnewargs__(self) -> tuple[str, str, str]:
        return (self[0], self[1], self.message)


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
        restore_best: load the kept best weights now (training ends).
        save: the checkpoint to write now, or ``None``.
        last: the rolling "last" checkpoint to (over)write now (``save_last``), or ``None``.
        delete: checkpoints to delete once the round's first write (``save``, else ``last``) is
            durable. Pass them with that first write (``CheckpointStore.save(..., delete=...)``):
            the controller state saved with it already assumes they are gone.
        details: each policy's own decision, in policy order (``details[i].reason``,
            ``details[i].best``, ...).
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

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """What each policy did and why, in policy order."""
        return tuple(d.reason for d in self.details)

    def explain(self) -> str:
        """All reasons, one per line."""
        return "\n".join(str(d.reason) for d in self.details)
