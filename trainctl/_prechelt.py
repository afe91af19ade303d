"""Prechelt's stopping criteria GL, PQ and UP as policies.

L. Prechelt, "Early Stopping - But When?", in *Neural Networks: Tricks of the Trade* (1998),
defines three classes of stopping criteria on the validation error ``E_va`` and the training
error ``E_tr``; EarlyStopping.jl (``GL``, ``PQ``, ``Patience``) codes them. Each class here is a
policy like the built-ins (frozen configuration, plain-data state, ``update`` -> (decision,
state), resumable through JSON), usable live in a :class:`~trainctl.Controller` and vectorised in
:func:`trainctl.replay.sweep`.

Theory of operation
-------------------
All three track ``E_opt``, the lowest validation error so far (``best``; NaN never improves on
it, the first real value always does: ``improves(v, best if best is not None else +inf)`` with
the policy's :class:`~trainctl.Monitor`), and stop for good once they fire. A *strip* of length
``k`` is ``k`` consecutive epochs ending at an epoch whose 1-based number is a multiple of ``k``
(``(epoch + 1) % k == 0``, as ``CheckpointPolicy(every_n_epochs=k)`` counts).

======================  ===========================================  ===========================
criterion               stops after the first round where            EarlyStopping.jl
======================  ===========================================  ===========================
``GL(alpha)``           ``GL(t) > alpha``, every round               ``GL(alpha=...)``
``PQ(alpha, strip=k)``  at the end of a strip, with the last ``k``   ``PQ(alpha=..., k=...)``
                        training errors known: ``P_k(t) <= tol``     (checked at every
                        (training has stopped progressing) or       evaluation with the last
                        ``GL(t) / P_k(t) > alpha``                   ``k`` training losses)
``UP(s, strip=k)``      at the end of a strip: ``E_va`` rose over    ``Patience(n=s)`` is
                        each of the last ``s`` strips (``E(t) >      ``UP(s, strip=1)``
                        E(t - k)``, counted as E.jl counts
                        consecutive increases)
======================  ===========================================  ===========================

with the formulas (written once, below, as functions valid on floats and numpy arrays alike, so
that the sweep evaluates the very expressions the live policy does)::

    GL(t)   = 100 * (E_va(t) / |E_opt(t)| - 1)                        generalization_loss
    P_k(t)  = 1000 * (mean(E_tr(t-k+1..t)) / min(E_tr(t-k+1..t)) - 1)  training_progress
    PQ(t)   = GL(t) / P_k(t)

(``GL`` is EarlyStopping.jl's expression; Prechelt writes ``E_va / E_opt - 1``: the same for the
positive errors both assume. With ``E_opt == 0`` a larger error gives ``GL = inf``; an error that
is not positive makes the ratio meaningless, as in both sources.) ``P_k`` is the mean of the last
``k`` training errors over their minimum, in parts per thousand: the training errors that came
with the last ``k`` rounds that had one (the *window*, oldest first). A NaN training error makes
``P_k`` NaN, which is not ``> tol``: PQ stops, as EarlyStopping.jl's ``P > tol || return true``
does.

Per round with validation error ``v`` (absent: nothing changes, ``strict``: raise), in order:

1. already stopped -> stop again;
2. ``v`` improves on ``best`` -> ``best, best_epoch = v, epoch`` (``snapshot_best`` with
   ``restore_best_weights``);
3. the criterion's test above (``PQ``: the training error of the round, if present, enters the
   window first; ``UP``: the strip's value becomes the one the next strip is compared with);
4. a stop says ``restore_best`` with ``restore_best_weights`` and a best; so does :meth:`finish`
   at the end of training, whatever ended it (as Keras' ``restore_best_weights``).

The criteria measure an *error*: lower is better. A monitor whose name reads as "higher is
better" (``val_accuracy``) is refused; monitor an error rate instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import attrs
import numpy as np

from ._config import Configured
from ._decisions import Reason, epoch_text, lazy_reason, number_text
from ._early_stopping import _m_finish, _m_restore, _m_stopped  # the same sentences
from ._monitor import Monitor, infer_direction
from ._policy import Clock, Observation
from ._state import (
    StateError,
    decode_float,
    decode_int,
    decode_optional_int,
    encode_float,
    require_keys,
)
from ._validation import boolean, finite, ge, gt, integer, metric_name, plain

__all__ = [
    "GL",
    "PQ",
    "UP",
    "GLDecision",
    "GLState",
    "PQDecision",
    "PQState",
    "UPDecision",
    "UPState",
    "generalization_loss",
    "progress_quotient",
    "strip_end",
    "training_progress",
]

_g = number_text

#: EarlyStopping.jl's default ``tol`` for PQ: ``eps(Float64)``.
DEFAULT_TOL = 2.220446049250313e-16


# -- the formulas (floats or numpy arrays) -------------------------------------------------------


def generalization_loss(current: Any, best: Any) -> Any:
    """``GL = 100 * (current / |best| - 1)``: how far ``current`` is above the best, in percent.

    Floats give a numpy float, arrays an array (element by element); ``best == 0`` gives
    ``inf`` (or NaN for ``0 / 0``) without a warning.

    >>> float(generalization_loss(9.0, 8.0))
    12.5
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return 100.0 * (np.divide(current, np.abs(best)) - 1.0)


def training_progress(window: Sequence[Any]) -> Any:
    """``P_k = 1000 * (mean(window) / min(window) - 1)``, the window oldest first.

    The sum runs left to right and the minimum is ``np.minimum`` (NaN propagates), written out so
    that a window of floats and a window of arrays (one per position, the sweep's runs side by
    side) give bit-identical results.

    >>> float(training_progress([2.0, 3.0, 6.0, 7.0]))  # EarlyStopping.jl's own example
    1250.0
    """
    if len(window) == 0:
        raise ValueError("'window' must hold at least one training error, got none")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = np.float64(0.0) + window[0]
        lowest = np.minimum(window[0], window[0])
        for x in window[1:]:
            total = total + x
            lowest = np.minimum(lowest, x)
        return 1000.0 * (np.divide(total / len(window), lowest) - 1.0)


def progress_quotient(gl: Any, progress: Any) -> Any:
    """``PQ = GL / P_k`` (floats or arrays; a zero progress gives ``inf`` or NaN quietly)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.divide(gl, progress)


def strip_end(epoch: Any, strip: Any) -> Any:
    """Whether the 0-based ``epoch`` ends a strip of ``strip`` epochs: ``(epoch + 1) % strip ==
    0`` (ints or integer arrays)."""
    return (epoch + 1) % strip == 0


# -- shared pieces ---------------------------------------------------------------------------


def _error_monitor(policy: str, name: str, strict: bool) -> Monitor:
    """A lower-is-better monitor; a name that reads as higher-is-better is refused."""
    try:
        direction = infer_direction(name)
    except ValueError:
        direction = "min"  # an unknown name: the criteria define it as an error
    if direction == "max":
        raise ValueError(
            f"{policy} measures an error (lower is better) but 'monitor' {name!r} reads as "
            "higher-is-better; monitor an error rate or a loss instead"
        )
    return Monitor(name, mode="min", strict=strict)


def _check_stopped(where: str, stopped: int | None, event: object) -> None:
    if event is not None and not isinstance(event, str):
        raise StateError(f"{where}.stop_event: must be a string or null, got {event!r}")
    if (stopped is None) != (event is None):
        raise StateError(
            f"{where}: 'stopped_epoch' and 'stop_event' must both be set or both be null, "
            f"got {stopped!r} and {event!r}"
        )


def _epoch_field(value: object, where: str) -> int | None:
    n = decode_optional_int(value, where=where)
    if n is not None and n < 0:
        raise StateError(f"{where}: must be >= 0, got {n}")
    return n


def _best_fields(d: Mapping[str, Any], where: str) -> tuple[float | None, int | None]:
    best = decode_float(d["best"], where=f"{where}.best")
    best_epoch = _epoch_field(d["best_epoch"], f"{where}.best_epoch")
    if (best is None) != (best_epoch is None):
        raise StateError(
            f"{where}: 'best' and 'best_epoch' must both be set or both be null, got "
            f"{d['best']!r} and {d['best_epoch']!r}"
        )
    return best, best_epoch


D = TypeVar("D")
S = TypeVar("S", "GLState", "PQState", "UPState")


def _finish(
    label: str, monitor: str, restore_best_weights: bool, best: float | None,
    best_epoch: int | None, decision_type: Callable[..., D], extra: dict[str, Any],
) -> D:
    restore = restore_best_weights and best_epoch is not None
    return decision_type(
        stop=True, improved=False, snapshot_best=False, restore_best=restore, best=best,
        best_epoch=best_epoch,
        reason=lazy_reason(label, "restore_best" if restore else "already_stopped", _m_finish,
                           monitor, restore, best, best_epoch),
        **extra,
    )


def _name_field(default: str) -> Any:
    """A metric name: keyword-only, a non-empty str."""
    return attrs.field(default=default, kw_only=True, validator=metric_name)


def _flag_field() -> Any:
    """``restore_best_weights`` / ``strict``: keyword-only, a plain bool, default ``False``."""
    return attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)


def _derived_field() -> Any:
    """A field computed in ``__attrs_post_init__`` (no argument, no repr, not compared)."""
    return attrs.field(init=False, repr=False, eq=False)


class _Criterion(Configured):
    """What GL, PQ and UP share: the label, the error monitor, the start of a round (a stop is
    final, the lowest error so far), the decision's common fields and the end of training.

    A subclass is an attrs class with the fields ``monitor``, ``restore_best_weights``,
    ``strict``, ``monitoring`` and ``_label``; it sets ``_NAME`` (how the label begins),
    ``_STATE`` and ``_DECISION`` (its NamedTuples).
    """

    __slots__ = ()

    _NAME: ClassVar[str]
    _STATE: ClassVar[type[Any]]
    _DECISION: ClassVar[type[Any]]

    monitor: str
    restore_best_weights: bool
    strict: bool
    monitoring: Monitor
    _label: str

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round"})

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "monitoring",
                           _error_monitor(self._NAME, self.monitor, self.strict))
        object.__setattr__(self, "_label", f"{self._NAME}({self.monitor})")

    @property
    def label(self) -> str:
        """How reasons name this policy, e.g. ``"GL(val_loss)"``."""
        return self._label

    @property
    def direction(self) -> str:
        """``"min"``: the criteria measure errors."""
        return "min"

    def update(self, state: Any, obs: Observation) -> tuple[Any, Any]:
        """One evaluation round (see the module docstring): a stop is final, a round without
        the validation error changes nothing, then the lowest error so far and the criterion's
        own test (:meth:`_test`)."""
        if state.stopped_epoch is not None:
            return self._again(state)
        v = self.monitoring.read(obs.metrics, self._label)
        if v is None:
            return self._missing(state, obs.metrics)
        improved, new = self._track(state, v, obs.epoch)
        return self._test(new, obs, v, improved)

    def _test(self, new: Any, obs: Observation, v: float, improved: bool) -> tuple[Any, Any]:
        """The criterion's test, after the lowest error so far is in ``new``."""
        raise NotImplementedError

    def _again(self, state: S) -> tuple[Any, S]:
        """The round after a stop: stop again (a stop is final)."""
        why = lazy_reason(self._label, "already_stopped", _m_stopped, state.stopped_epoch,
                          state.stop_event)
        return self._decide(state, stop=True, improved=False, why=why), state

    def _missing(self, state: S, metrics: Mapping[str, Any]) -> tuple[Any, S]:
        """A round without the validation error: nothing changes (``strict`` raised already)."""
        return self._decide(state, stop=False, improved=False,
                            why=self.monitoring.missing(self._label, metrics)), state

    def _track(self, state: S, v: float, epoch: int) -> tuple[bool, S]:
        """Whether ``v`` improves on the lowest error so far, and the state that records it."""
        best, best_epoch = state.best, state.best_epoch
        improved = bool(self.monitoring.improves(v, self.monitoring.worst if best is None
                                                 else best))
        if improved:
            best, best_epoch = v, epoch
        return improved, state._replace(best=best, best_epoch=best_epoch)

    def _extra(self, state: Any) -> dict[str, Any]:
        """The decision's own fields that come from the state (UP: ``rises``)."""
        return {}

    def _decide(self, state: Any, *, stop: bool, improved: bool, why: Reason,
                **fields: Any) -> Any:
        restore = stop and self.restore_best_weights and state.best_epoch is not None
        if restore:
            why = lazy_reason(self._label, why.event, _m_restore, why, state.best_epoch)
        return self._DECISION(
            stop=stop, improved=improved, snapshot_best=improved and self.restore_best_weights,
            restore_best=restore, best=state.best, best_epoch=state.best_epoch, reason=why,
            **fields, **self._extra(state),
        )

    def initial_state(self) -> Any:
        return self._STATE()

    def finish(self, state: Any) -> Any:
        """The end of training, whatever ended it: restore the best weights if configured."""
        return _finish(self._label, self.monitor, self.restore_best_weights, state.best,
                       state.best_epoch, self._DECISION, self._extra(state))

    def _read_state(self, data: Mapping[str, Any], keys: tuple[str, ...]
                    ) -> tuple[str, Mapping[str, Any], float | None, int | None]:
        """The common part of ``state_from_dict``: the keys and the best; ``keys`` are the
        criterion's own, between ``best_epoch`` and ``stopped_epoch``."""
        where = f"{self._label} state"
        d = require_keys(data, ("best", "best_epoch", *keys, "stopped_epoch", "stop_event"),
                         where=where)
        best, best_epoch = _best_fields(d, where)
        return where, d, best, best_epoch


def _stop_fields(d: Mapping[str, Any], where: str) -> tuple[int | None, str | None]:
    stopped = _epoch_field(d["stopped_epoch"], f"{where}.stopped_epoch")
    _check_stopped(where, stopped, d["stop_event"])
    return stopped, d["stop_event"]


def _state_dict(state: Any, **own: Any) -> dict[str, Any]:
    """The JSON of a criterion's state: the best, the criterion's own entries, the stop."""
    return {
        "best": encode_float(state.best),
        "best_epoch": state.best_epoch,
        **own,
        "stopped_epoch": state.stopped_epoch,
        "stop_event": state.stop_event,
    }


# -- GL ------------------------------------------------------------------------------------------


class GLState(NamedTuple):
    """Plain-data state of :class:`GL`.

    Attributes:
        best: ``E_opt``, the lowest validation error so far (``None`` before one).
        best_epoch: its 0-based epoch.
        stopped_epoch: the 0-based epoch of the stop, else ``None``.
        stop_event: why it stopped, else ``None``.
    """

    best: float | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    stop_event: str | None = None


class GLDecision(NamedTuple):
    """What :class:`GL` decided this round.

    Attributes:
        stop, snapshot_best, restore_best, reason: the contract's fields.
        improved: this round set a new ``E_opt``.
        best, best_epoch: ``E_opt`` and its 0-based epoch after this round.
        generalization_loss: ``GL`` this round (``None`` when not computed).
    """

    stop: bool
    improved: bool
    snapshot_best: bool
    restore_best: bool
    best: float | None
    best_epoch: int | None
    reason: Reason
    generalization_loss: float | None = None


def _m_gl(name: str, v: float, best: float | None, gl: float, alpha: float, stop: bool) -> str:
    verb = "> alpha" if stop else "<= alpha"
    tail = "; stopping" if stop else ""
    return f"{name} = {_g(v)}, E_opt {_g(best)}: GL = {gl:.6g} {verb} = {alpha:g}{tail}"


@attrs.frozen(repr=False)
class GL(_Criterion):
    """Stop when the generalization loss ``GL = 100 * (E / |E_opt| - 1)`` exceeds ``alpha``.

    Prechelt's ``GL_alpha``: the validation error has risen more than ``alpha`` percent above
    the lowest seen so far (see the module docstring).

    Args:
        alpha: the threshold, in percent (> 0). Prechelt uses 1, 2, 3, 5; EarlyStopping.jl's
            default is 2.
        monitor: the validation error. Default ``"val_loss"``.
        restore_best_weights: ask for the weights of the lowest validation error back when
            training ends.
        strict: raise :class:`~trainctl.MetricNotFoundError` when ``monitor`` is absent.

    >>> import trainctl
    >>> from trainctl._prechelt import GL
    >>> [d.stop for d in trainctl.simulate(GL(20), [{"val_loss": v} for v in (10, 8, 9, 10)])]
    [False, False, False, True]
    """

    alpha: float = attrs.field(default=2.0, converter=plain, validator=[finite, gt(0.0)])
    monitor: str = _name_field("val_loss")
    restore_best_weights: bool = _flag_field()
    strict: bool = _flag_field()

    monitoring: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor` of the validation error (``mode="min"``)."""
    _label: str = _derived_field()

    _NAME: ClassVar[str] = "GL"
    _STATE: ClassVar[type[Any]] = GLState
    _DECISION: ClassVar[type[Any]] = GLDecision

    def _test(self, new: GLState, obs: Observation, v: float, improved: bool
              ) -> tuple[GLDecision, GLState]:
        label, best = self._label, new.best
        if best is None:
            why = lazy_reason(label, "no_improvement", _m_no_best, self.monitor, v)
            return self._decide(new, stop=False, improved=False, why=why), new
        gl = float(generalization_loss(v, best))
        stop = bool(gl > self.alpha)
        event = "generalization_loss" if stop else ("improved" if improved else "no_improvement")
        why = lazy_reason(label, event, _m_gl, self.monitor, v, best, gl, self.alpha, stop)
        if stop:
            new = new._replace(stopped_epoch=obs.epoch, stop_event=event)
        return self._decide(new, stop=stop, improved=improved, why=why,
                            generalization_loss=gl), new

    def state_to_dict(self, state: GLState) -> dict[str, Any]:
        return _state_dict(state)

    def state_from_dict(self, data: Mapping[str, Any]) -> GLState:
        where, d, best, best_epoch = self._read_state(data, ())
        stopped, event = _stop_fields(d, where)
        return GLState(best=best, best_epoch=best_epoch, stopped_epoch=stopped, stop_event=event)


def _m_no_best(name: str, v: float) -> str:
    return f"{name} = {v}: no lowest validation error yet; nothing to compare"


# -- PQ ------------------------------------------------------------------------------------------


class PQState(NamedTuple):
    """Plain-data state of :class:`PQ`.

    Attributes:
        best, best_epoch: ``E_opt`` and its 0-based epoch (``None`` before one).
        window: the last (at most ``strip``) training errors, oldest first.
        stopped_epoch, stop_event: the stop, if any.
    """

    best: float | None = None
    best_epoch: int | None = None
    window: tuple[float, ...] = ()
    stopped_epoch: int | None = None
    stop_event: str | None = None


class PQDecision(NamedTuple):
    """What :class:`PQ` decided this round.

    Attributes:
        stop, snapshot_best, restore_best, reason: the contract's fields.
        improved: this round set a new ``E_opt``.
        best, best_epoch: ``E_opt`` and its 0-based epoch after this round.
        generalization_loss, progress, quotient: ``GL``, ``P_k`` and ``PQ`` when the test ran
            (at the end of a strip with a full window), else ``None``.
    """

    stop: bool
    improved: bool
    snapshot_best: bool
    restore_best: bool
    best: float | None
    best_epoch: int | None
    reason: Reason
    generalization_loss: float | None = None
    progress: float | None = None
    quotient: float | None = None


def _m_pq(
    name: str, v: float, best: float | None, gl: float, progress: float, quotient: float,
    alpha: float, tol: float, event: str,
) -> str:
    head = f"{name} = {_g(v)}, E_opt {_g(best)}: GL = {gl:.6g}, P_k = {progress:.6g}"
    if event == "no_progress":
        return f"{head} <= tol = {tol:g}: training has stopped progressing; stopping"
    verb = "> alpha" if event == "progress_quotient" else "<= alpha"
    tail = "; stopping" if event == "progress_quotient" else ""
    return f"{head}, PQ = {quotient:.6g} {verb} = {alpha:g}{tail}"


def _m_pq_wait(name: str, v: float, best: float | None, epoch: int, strip: int, have: int) -> str:
    if have < strip:
        return (
            f"{name} = {_g(v)} (E_opt {_g(best)}); {have} of {strip} training errors known, "
            "no test yet"
        )
    return f"{name} = {_g(v)} (E_opt {_g(best)}); {epoch_text(epoch)} does not end a strip"


def _m_pq_no_train(name: str, keys: str, strip: int) -> str:
    return f"{name!r} not in metrics (present: {keys}); the training window of {strip} waits"


@attrs.frozen(repr=False)
class PQ(_Criterion):
    """Stop when the generalization loss per unit of training progress exceeds ``alpha``.

    Prechelt's ``PQ_alpha``: at the end of each strip of ``strip`` epochs, ``GL / P_k >
    alpha``, where ``P_k`` measures how much the training error still moves within the strip
    (see the module docstring); or ``P_k <= tol`` (EarlyStopping.jl: the training error has
    stopped moving).

    Args:
        alpha: the threshold (> 0). Prechelt uses 0.5, 0.75, 1, 2, 3; EarlyStopping.jl's default
            is 0.75.
        strip: the strip length ``k`` in epochs (>= 2); Prechelt and EarlyStopping.jl use 5.
        tol: stop when ``P_k <= tol`` (> 0; default EarlyStopping.jl's ``eps(Float64)``).
        monitor: the validation error. Default ``"val_loss"``.
        train_monitor: the training error, one per round. Default ``"loss"``.
        restore_best_weights, strict: as for :class:`GL` (``strict`` covers both metrics).
    """

    alpha: float = attrs.field(default=0.75, converter=plain, validator=[finite, gt(0.0)])
    strip: int = attrs.field(default=5, kw_only=True, converter=plain,
                             validator=[integer, ge(2)])
    tol: float = attrs.field(default=DEFAULT_TOL, kw_only=True, converter=plain,
                             validator=[finite, gt(0.0)])
    monitor: str = _name_field("val_loss")
    train_monitor: str = _name_field("loss")
    restore_best_weights: bool = _flag_field()
    strict: bool = _flag_field()

    monitoring: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor` of the validation error (``mode="min"``)."""
    training: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor` of the training error."""
    _label: str = _derived_field()

    _NAME: ClassVar[str] = "PQ"
    _STATE: ClassVar[type[Any]] = PQState
    _DECISION: ClassVar[type[Any]] = PQDecision

    def __attrs_post_init__(self) -> None:
        if self.monitor == self.train_monitor:
            raise ValueError(
                f"'monitor' and 'train_monitor' must name different metrics (the validation and "
                f"the training error), got {self.monitor!r} for both"
            )
        super().__attrs_post_init__()
        object.__setattr__(self, "training",
                           _error_monitor("PQ", self.train_monitor, self.strict))

    def update(self, state: PQState, obs: Observation) -> tuple[PQDecision, PQState]:
        """One evaluation round (see the module docstring)."""
        label = self._label
        if state.stopped_epoch is not None:
            return self._again(state)
        metrics = obs.metrics
        v = self.monitoring.read(metrics, label)
        train = self.training.read(metrics, label)
        window = state.window
        if train is not None:
            window = (*window, train)[-self.strip:]
        new = state._replace(window=window)
        if v is None:
            return self._missing(new, metrics)
        improved, new = self._track(new, v, obs.epoch)
        best = new.best
        if best is None or len(window) < self.strip or not strip_end(obs.epoch, self.strip):
            if train is None:
                why = lazy_reason(label, "missing_metric", _m_pq_no_train, self.train_monitor,
                                  ", ".join(map(str, metrics)) or "none", self.strip)
            else:
                why = lazy_reason(label, "improved" if improved else "no_improvement",
                                  _m_pq_wait, self.monitor, v, best, obs.epoch, self.strip,
                                  len(window))
            return self._decide(new, stop=False, improved=improved, why=why), new
        gl = float(generalization_loss(v, best))
        progress = float(training_progress(window))
        quotient = float(progress_quotient(gl, progress))
        if not progress > self.tol:
            event = "no_progress"
        elif quotient > self.alpha:
            event = "progress_quotient"
        else:
            event = "improved" if improved else "no_improvement"
        stop = event in ("no_progress", "progress_quotient")
        why = lazy_reason(label, event, _m_pq, self.monitor, v, best, gl, progress, quotient,
                          self.alpha, self.tol, event)
        if stop:
            new = new._replace(stopped_epoch=obs.epoch, stop_event=event)
        return self._decide(new, stop=stop, improved=improved, why=why,
                            generalization_loss=gl, progress=progress, quotient=quotient), new

    def state_to_dict(self, state: PQState) -> dict[str, Any]:
        return _state_dict(state, window=[encode_float(x) for x in state.window])

    def state_from_dict(self, data: Mapping[str, Any]) -> PQState:
        where, d, best, best_epoch = self._read_state(data, ("window",))
        raw = d["window"]
        if not isinstance(raw, list):
            raise StateError(f"{where}.window: expected a list, got {type(raw).__name__}")
        if len(raw) > self.strip:
            raise StateError(
                f"{where}.window: holds at most strip={self.strip} training errors, got {len(raw)}"
            )
        window = []
        for i, x in enumerate(raw):
            value = decode_float(x, where=f"{where}.window[{i}]")
            if value is None:
                raise StateError(f"{where}.window[{i}]: expected a number, got null")
            window.append(value)
        stopped, event = _stop_fields(d, where)
        return PQState(best=best, best_epoch=best_epoch, window=tuple(window),
                       stopped_epoch=stopped, stop_event=event)


# -- UP ------------------------------------------------------------------------------------------


class UPState(NamedTuple):
    """Plain-data state of :class:`UP`.

    Attributes:
        best, best_epoch: the lowest validation error and its 0-based epoch.
        previous: the validation error at the end of the previous strip (``None`` before one).
        rises: how many strips in a row ended higher than the one before.
        stopped_epoch, stop_event: the stop, if any.
    """

    best: float | None = None
    best_epoch: int | None = None
    previous: float | None = None
    rises: int = 0
    stopped_epoch: int | None = None
    stop_event: str | None = None


class UPDecision(NamedTuple):
    """What :class:`UP` decided this round.

    Attributes:
        stop, snapshot_best, restore_best, reason: the contract's fields.
        improved: this round set a new lowest validation error.
        best, best_epoch: the lowest validation error and its 0-based epoch.
        rises: successive rising strips after this round.
    """

    stop: bool
    improved: bool
    snapshot_best: bool
    restore_best: bool
    best: float | None
    best_epoch: int | None
    reason: Reason
    rises: int = 0


def _m_up(name: str, v: float, previous: float | None, rises: int, s: int, event: str) -> str:
    if previous is None:
        return f"{name} = {_g(v)}: the first strip's value, kept for comparison"
    if event == "successive_rises":
        return (
            f"{name} = {_g(v)} > {_g(previous)} at the end of the strip before: "
            f"{rises} rising strips in a row (s = {s}); stopping"
        )
    if rises:
        return f"{name} = {_g(v)} > {_g(previous)}: {rises} of {s} rising strips in a row"
    return f"{name} = {_g(v)} did not rise over {_g(previous)}; the count restarts"


def _m_up_wait(name: str, v: float, epoch: int) -> str:
    return f"{name} = {_g(v)}; {epoch_text(epoch)} does not end a strip"


@attrs.frozen(repr=False)
class UP(_Criterion):
    """Stop when the validation error rose over ``s`` successive strips.

    Prechelt's ``UP_s``: at the end of each strip of ``strip`` epochs, the validation error is
    compared with its value at the end of the previous strip; ``s`` rises in a row stop. With
    ``strip=1`` this is EarlyStopping.jl's ``Patience(n=s)`` (``s`` consecutive increases).

    Args:
        s: rising strips in a row that stop training (>= 1). Prechelt uses 2, 3, 4.
        strip: the strip length in epochs (>= 1); Prechelt uses 5.
        monitor: the validation error. Default ``"val_loss"``.
        restore_best_weights, strict: as for :class:`GL`.
    """

    s: int = attrs.field(default=5, converter=plain, validator=[integer, ge(1)])
    strip: int = attrs.field(default=5, kw_only=True, converter=plain,
                             validator=[integer, ge(1)])
    monitor: str = _name_field("val_loss")
    restore_best_weights: bool = _flag_field()
    strict: bool = _flag_field()

    monitoring: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor` of the validation error (``mode="min"``)."""
    _label: str = _derived_field()

    _NAME: ClassVar[str] = "UP"
    _STATE: ClassVar[type[Any]] = UPState
    _DECISION: ClassVar[type[Any]] = UPDecision

    def _test(self, new: UPState, obs: Observation, v: float, improved: bool
              ) -> tuple[UPDecision, UPState]:
        label = self._label
        if not strip_end(obs.epoch, self.strip):
            why = lazy_reason(label, "improved" if improved else "no_improvement", _m_up_wait,
                              self.monitor, v, obs.epoch)
            return self._decide(new, stop=False, improved=improved, why=why), new
        previous = new.previous
        # a rise: the previous strip's value is strictly better than this one (NaN: no rise)
        rose = previous is not None and bool(self.monitoring.beyond(previous, v))
        rises = new.rises + 1 if rose else 0
        stop = rises >= self.s
        event = "successive_rises" if stop else ("improved" if improved else "no_improvement")
        new = new._replace(previous=v, rises=rises)
        if stop:
            new = new._replace(stopped_epoch=obs.epoch, stop_event=event)
        why = lazy_reason(label, event, _m_up, self.monitor, v, previous, rises, self.s, event)
        return self._decide(new, stop=stop, improved=improved, why=why), new

    def _extra(self, state: UPState) -> dict[str, Any]:
        return {"rises": state.rises}

    def state_to_dict(self, state: UPState) -> dict[str, Any]:
        return _state_dict(state, previous=encode_float(state.previous), rises=state.rises)

    def state_from_dict(self, data: Mapping[str, Any]) -> UPState:
        where, d, best, best_epoch = self._read_state(data, ("previous", "rises"))
        rises = decode_int(d["rises"], where=f"{where}.rises")
        if rises < 0:
            raise StateError(f"{where}.rises: must be >= 0, got {rises}")
        stopped, event = _stop_fields(d, where)
        return UPState(
            best=best, best_epoch=best_epoch,
            previous=decode_float(d["previous"], where=f"{where}.previous"), rises=rises,
            stopped_epoch=stopped, stop_event=event,
        )
