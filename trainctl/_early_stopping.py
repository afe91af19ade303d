"""Early stopping: stop when a monitored metric has stopped improving.

Theory of operation
-------------------
State: ``best`` (``None`` before the first monitored value), ``best_epoch``, ``wait`` and, once
stopped, ``stopped_epoch`` and ``stop_event``. One evaluation round with value ``v`` at ``epoch``:

1. already stopped -> stop again (a stop is final), nothing changes;
2. metric absent -> nothing changes (``strict=True``: :class:`MetricNotFoundError`);
3. ``epoch < start_from_epoch`` -> nothing changes;
4. ``check_finite`` and ``v`` is NaN/inf -> stop (``non_finite``), best unchanged;
5. the rest follows ``rules``:

``rules="keras"`` (default; ``keras.callbacks.EarlyStopping`` 3.x, line for line)::

    wait += 1
    if best is None or improves(v, best):            # the first value always improves, NaN too
        best, best_epoch = v, epoch
        if baseline is None or improves(v, baseline): wait = 0
        improved (never stops on an improving round, except at stopping_threshold)
    elif wait >= patience and epoch > 0: stop ("patience_exhausted")
    # trainctl extras, checked after the bookkeeping so that best is always recorded:
    stopping_threshold reached -> stop; divergence_threshold passed -> stop

``rules="lightning"`` (``lightning.pytorch.callbacks.EarlyStopping`` 2.x: an elif chain, best
starts at +inf / -inf so a NaN or +inf first value is not an improvement)::

    if stopping_threshold reached: stop          # best not updated
    elif divergence_threshold passed: stop
    elif improves(v, best): best, wait = v, 0
    else: wait += 1; if wait >= patience: stop

Restoring: with ``restore_best_weights`` every improving round sets ``snapshot_best`` (keep a copy
of the weights) and the stop decision, or the end of training (:meth:`finish`) whatever ended it,
says ``restore_best`` if a best exists, as Keras does.

=========================  ================================  ===============================
argument                   Keras ``EarlyStopping``           Lightning ``EarlyStopping``
=========================  ================================  ===============================
monitor                    monitor                           monitor
min_delta (absolute)       min_delta                         min_delta
patience (``>=``)          patience                          patience
mode                       mode (auto from compiled metric)  mode ("min" default)
baseline                   baseline                          —
restore_best_weights       restore_best_weights              —
start_from_epoch           start_from_epoch                  —
check_finite               — (False)                         check_finite (True)
stopping_threshold         —                                 stopping_threshold
divergence_threshold       —                                 divergence_threshold
strict                     — (False: warn, skip)             strict (True: raise)
precision                  "float32"                         "float32" (float32 tensors)
=========================  ================================  ===============================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import attrs

from ._decisions import Reason
from ._monitor import (
    Comparison,
    Direction,
    MetricNotFoundError,
    coerce_metric,
    infer_direction,
)
from ._policy import Clock, Observation, compact_repr, config_to_dict
from ._state import (
    StateError,
    decode_float,
    decode_int,
    decode_optional_int,
    encode_float,
    require_keys,
)
from ._validation import finite, ge, integer, one_of, optional

__all__ = ["EarlyStopping", "EarlyStoppingDecision", "EarlyStoppingState"]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _g(x: float | None) -> str:
    return "None" if x is None else f"{x:.6g}"


class EarlyStoppingState(NamedTuple):
    """Plain-data state of :class:`EarlyStopping`."""

    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_epoch: int | None = None
    stop_event: str | None = None


class EarlyStoppingDecision(NamedTuple):
    """What :class:`EarlyStopping` decided this round.

    Attributes:
        stop: stop training now.
        improved: this round set a new best.
        snapshot_best: keep a copy of the weights now (``improved`` and ``restore_best_weights``).
        restore_best: load the best weights now (training ends and a best exists).
        best, best_epoch, wait: the state after this round.
        reason: why.
    """

    stop: bool
    improved: bool
    snapshot_best: bool
    restore_best: bool
    best: float | None
    best_epoch: int | None
    wait: int
    reason: Reason


_new = tuple.__new__


def _lazy(source: str, event: str, render: Callable[..., str], *args: Any) -> Reason:
    reason: Reason = _new(Reason, (source, event, render, args))
    return reason


# -- messages (rendered only when read) ---------------------------------------------------------

def _m_stopped(epoch: int, event: str) -> str:
    return f"stopped at epoch {epoch} ({event}); a stop is final"


def _m_missing(monitor: str, keys: tuple[str, ...]) -> str:
    return f"{monitor!r} not in metrics (present: {', '.join(keys) or 'none'}); nothing changed"


def _m_not_started(epoch: int, start: int) -> str:
    return f"epoch {epoch} < start_from_epoch={start}; not monitoring yet"


def _m_non_finite(name: str, v: float, best: float | None) -> str:
    return f"{name} = {v} is not finite (best {_g(best)}); stopping"


def _m_improved(name: str, best: float | None, v: float) -> str:
    if best is None:
        return f"{name} = {_g(v)}: first monitored value, now the best; wait reset to 0"
    return f"{name} improved from {_g(best)} to {_g(v)}; wait reset to 0"


def _m_below_baseline(
    name: str, best: float | None, v: float, baseline: float, wait: int, patience: int
) -> str:
    return (
        f"{name} improved from {_g(best)} to {_g(v)} but not on baseline {_g(baseline)}; "
        f"wait {wait}/{patience}"
    )


def _m_no_improvement(
    name: str, v: float, best: float | None, best_epoch: int | None, delta: float, wait: int,
    patience: int,
) -> str:
    return (
        f"{name} = {_g(v)} did not improve on {_g(best)} (epoch {best_epoch}) by more than "
        f"{delta:g}; wait {wait}/{patience}"
    )


def _m_threshold(name: str, v: float, kind: str, bound: float) -> str:
    verb = "reached" if kind == "stopping_threshold" else "passed"
    return f"{name} = {_g(v)} {verb} {kind}={_g(bound)}; stopping"


def _m_patience(
    name: str, v: float, wait: int, patience: int, best: float | None, best_epoch: int | None
) -> str:
    return (
        f"{name} = {_g(v)}: no improvement for {_n(wait, 'round')} (patience {patience}); "
        f"best {_g(best)} at epoch {best_epoch}; stopping"
    )


def _m_restore(inner: Reason, best_epoch: int | None) -> str:
    return f"{inner.message}; restore the weights of epoch {best_epoch}"


def _m_finish(name: str, restore: bool, best: float | None, best_epoch: int | None) -> str:
    if restore:
        return f"training ended; restore the weights of epoch {best_epoch} ({name} = {_g(best)})"
    return "training ended; nothing to restore"


def _check_mode(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    one_of("min", "max", "auto")(_inst, attr, value)


@attrs.frozen(repr=False)
class EarlyStopping:
    """Stop training when ``monitor`` has stopped improving (Keras semantics by default).

    Args:
        monitor: metric name. Default ``"val_loss"``.
        min_delta: minimum change that counts as an improvement (Keras rules take its absolute
            value; Lightning rules keep a negative value, which accepts slightly worse values).
        patience: rounds without improvement before stopping; fires at ``wait >= patience``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name; unknown names raise).
        baseline: ``wait`` only resets on rounds that also beat it (Keras rules only).
        restore_best_weights: ask for the best weights back when training ends.
        start_from_epoch: ignore rounds whose ``epoch`` is below this.
        stopping_threshold: stop as soon as the metric is better than this (Lightning).
        divergence_threshold: stop as soon as the metric is worse than this (Lightning).
        check_finite: stop on a NaN or infinite value (Lightning's default; Keras: ``False``).
        strict: raise :class:`MetricNotFoundError` when the metric is absent, instead of skipping.
        threshold_mode: ``"abs"`` (Keras, Lightning) or ``"rel"`` (``min_delta`` as a fraction of
            ``best``, as torch's threshold).
        rules: ``"keras"`` or ``"lightning"`` (see the module docstring for the differences).
        precision: ``"float64"``, or ``"float32"`` to compare as Keras and Lightning do.

    >>> import trainctl
    >>> es = trainctl.EarlyStopping(monitor="loss", patience=2)
    >>> [d.stop for d in trainctl.simulate(es, [{"loss": v} for v in (3.0, 2.0, 2.5, 2.4)])]
    [False, False, False, True]
    """

    monitor: str = attrs.field(default="val_loss")
    min_delta: float = attrs.field(default=0.0, kw_only=True, validator=finite, converter=float)
    patience: int = attrs.field(default=0, kw_only=True, validator=[integer, ge(0)])
    mode: Literal["min", "max", "auto"] = attrs.field(
        default="auto", kw_only=True, validator=_check_mode
    )
    baseline: float | None = attrs.field(default=None, kw_only=True, validator=optional(finite))
    restore_best_weights: bool = attrs.field(default=False, kw_only=True)
    start_from_epoch: int = attrs.field(default=0, kw_only=True, validator=[integer, ge(0)])
    stopping_threshold: float | None = attrs.field(
        default=None, kw_only=True, validator=optional(finite)
    )
    divergence_threshold: float | None = attrs.field(
        default=None, kw_only=True, validator=optional(finite)
    )
    check_finite: bool = attrs.field(default=False, kw_only=True)
    strict: bool = attrs.field(default=False, kw_only=True)
    threshold_mode: Literal["abs", "rel"] = attrs.field(
        default="abs", kw_only=True, validator=one_of("abs", "rel")
    )
    rules: Literal["keras", "lightning"] = attrs.field(
        default="keras", kw_only=True, validator=one_of("keras", "lightning")
    )
    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    direction: Direction = attrs.field(init=False)
    _cmp: Comparison = attrs.field(init=False, repr=False, eq=False)
    _label: str = attrs.field(init=False, repr=False, eq=False)
    # hot-path copies, derived from the fields above
    _improves: Any = attrs.field(init=False, repr=False, eq=False)
    _worst: float = attrs.field(init=False, repr=False, eq=False)
    _thresholds: bool = attrs.field(init=False, repr=False, eq=False)
    lightning: bool = attrs.field(init=False, repr=False, eq=False)

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round"})
    warn_if_missing: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f"'monitor' must be a non-empty str, got {self.monitor!r}")
        direction = infer_direction(self.monitor) if self.mode == "auto" else self.mode
        if self.baseline is not None and self.rules == "lightning":
            raise ValueError(
                "'baseline' is a Keras rule and has no meaning with rules='lightning'; "
                "use stopping_threshold / divergence_threshold, or rules='keras'"
            )
        object.__setattr__(self, "direction", direction)
        lightning = self.rules == "lightning"
        cmp = Comparison(
            direction=direction,
            # Keras takes abs(min_delta); Lightning keeps the sign
            delta=self.min_delta if lightning else abs(self.min_delta),
            threshold_mode=self.threshold_mode,
            precision=self.precision,
            float32_arithmetic=lightning,
        )
        object.__setattr__(self, "_cmp", cmp)
        object.__setattr__(self, "_label", f"EarlyStopping({self.monitor})")
        object.__setattr__(self, "_improves", cmp.improves)
        object.__setattr__(self, "_worst", cmp.worst)
        has_thresholds = self.stopping_threshold is not None or (
            self.divergence_threshold is not None
        )
        object.__setattr__(self, "_thresholds", has_thresholds)
        object.__setattr__(self, "lightning", self.rules == "lightning")

    @property
    def label(self) -> str:
        """How reasons name this policy, e.g. ``"EarlyStopping(val_loss)"``."""
        return self._label

    # -- transition ---------------------------------------------------------------------------

    def initial_state(self) -> EarlyStoppingState:
        return EarlyStoppingState()

    def update(
        self, state: EarlyStoppingState, obs: Observation
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        """One evaluation round (see the module docstring for the rules)."""
        if state.stopped_epoch is not None:
            return self._decide(
                state, True, False,
                _lazy(self._label, "already_stopped", _m_stopped, state.stopped_epoch,
                      state.stop_event),
            )
        try:
            v = obs[1][self.monitor]
        except KeyError:
            v = None
        else:
            if v.__class__ is not float:
                v = coerce_metric(self.monitor, v)
        if v is None:
            if self.strict:
                raise MetricNotFoundError(
                    f"{self._label}: metric {self.monitor!r} is not in this round's metrics; "
                    f"present: {', '.join(map(repr, obs.metrics)) or 'none'}"
                )
            return self._decide(
                state, False, False,
                _lazy(self._label, "missing_metric", _m_missing, self.monitor,
                      tuple(obs.metrics)),
            )
        epoch = obs.epoch
        if epoch < self.start_from_epoch:
            return self._decide(
                state, False, False,
                _lazy(self._label, "not_started", _m_not_started, epoch, self.start_from_epoch),
            )
        if self.check_finite and not math.isfinite(v):
            new = state._replace(stopped_epoch=epoch, stop_event="non_finite")
            return self._decide(
                new, True, False,
                _lazy(self._label, "non_finite", _m_non_finite, self.monitor, v, state.best),
            )
        if self.lightning:
            return self._update_lightning(state, v, epoch)
        return self._update_keras(state, v, epoch)

    def _update_keras(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        wait = state.wait + 1
        best = state.best
        if best is None or self._improves(v, best):
            baseline = self.baseline
            beats_baseline = baseline is None or self._improves(v, baseline)
            if beats_baseline:
                wait = 0
            new: EarlyStoppingState = _new(EarlyStoppingState, (v, epoch, wait, None, None))
            if self._thresholds:
                stop = self._threshold_stop(new, v, epoch, True)
                if stop is not None:
                    return stop
            if beats_baseline:
                why = _new(Reason, (self._label, "improved", _m_improved, (self.monitor, best, v)))
            else:
                why = _new(Reason, (self._label, "improved", _m_below_baseline,
                                    (self.monitor, best, v, baseline, wait, self.patience)))
            snap = self.restore_best_weights
            decision: EarlyStoppingDecision = _new(
                EarlyStoppingDecision, (False, True, snap, False, v, epoch, wait, why)
            )
            return decision, new
        new = _new(EarlyStoppingState, (best, state.best_epoch, wait, None, None))
        if self._thresholds:
            stop = self._threshold_stop(new, v, epoch, False)
            if stop is not None:
                return stop
        if wait >= self.patience and epoch > 0:
            return self._patience_stop(new, v, epoch)
        why = _new(Reason, (self._label, "no_improvement", _m_no_improvement,
                            (self.monitor, v, best, new[1], self.min_delta, wait, self.patience)))
        decision = _new(
            EarlyStoppingDecision, (False, False, False, False, best, new[1], wait, why)
        )
        return decision, new

    def _update_lightning(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        if self._thresholds:
            stop = self._threshold_stop(state, v, epoch, False)
            if stop is not None:
                return stop
        best = state.best
        if self._improves(v, self._worst if best is None else best):
            new: EarlyStoppingState = _new(EarlyStoppingState, (v, epoch, 0, None, None))
            return self._decide(
                new, False, True, _lazy(self._label, "improved", _m_improved, self.monitor, best, v)
            )
        wait = state.wait + 1
        new = _new(EarlyStoppingState, (best, state.best_epoch, wait, None, None))
        if wait >= self.patience:
            return self._patience_stop(new, v, epoch)
        return self._decide(
            new, False, False,
            _lazy(self._label, "no_improvement", _m_no_improvement, self.monitor, v, best,
                  state.best_epoch, self.min_delta, wait, self.patience),
        )

    def _threshold_stop(
        self, state: EarlyStoppingState, v: float, epoch: int, improved: bool
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState] | None:
        cmp = self._cmp
        for kind, bound, sign in (
            ("stopping_threshold", self.stopping_threshold, 1.0),
            # "worse than the threshold" is "better than it" with both signs flipped (Lightning)
            ("divergence_threshold", self.divergence_threshold, -1.0),
        ):
            if bound is not None and cmp.beyond(sign * v, sign * bound):
                new = state._replace(stopped_epoch=epoch, stop_event=kind)
                return self._decide(
                    new, True, improved,
                    _lazy(self._label, kind, _m_threshold, self.monitor, v, kind, bound),
                )
        return None

    def _patience_stop(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        new = state._replace(stopped_epoch=epoch, stop_event="patience_exhausted")
        return self._decide(
            new, True, False,
            _lazy(self._label, "patience_exhausted", _m_patience, self.monitor, v, state.wait,
                  self.patience, state.best, state.best_epoch),
        )

    def _decide(
        self, state: EarlyStoppingState, stop: bool, improved: bool, why: Reason
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        restore = stop and self.restore_best_weights and state.best_epoch is not None
        if restore:
            why = _lazy(self._label, why.event, _m_restore, why, state.best_epoch)
        decision: EarlyStoppingDecision = _new(
            EarlyStoppingDecision,
            (stop, improved, improved and self.restore_best_weights, restore, state.best,
             state.best_epoch, state.wait, why),
        )
        return decision, state

    def finish(self, state: EarlyStoppingState) -> EarlyStoppingDecision:
        """The end of training, whatever ended it: restore the best weights if configured."""
        restore = self.restore_best_weights and state.best_epoch is not None
        return EarlyStoppingDecision(
            stop=True,
            improved=False,
            snapshot_best=False,
            restore_best=restore,
            best=state.best,
            best_epoch=state.best_epoch,
            wait=state.wait,
            reason=_lazy(
                self._label, "restore_best" if restore else "already_stopped", _m_finish,
                self.monitor, restore, state.best, state.best_epoch,
            ),
        )

    # -- state --------------------------------------------------------------------------------

    def state_to_dict(self, state: EarlyStoppingState) -> dict[str, Any]:
        return {
            "best": encode_float(state.best),
            "best_epoch": state.best_epoch,
            "wait": state.wait,
            "stopped_epoch": state.stopped_epoch,
            "stop_event": state.stop_event,
        }

    def state_from_dict(self, data: Mapping[str, Any]) -> EarlyStoppingState:
        where = f"{self._label} state"
        d = require_keys(data, ("best", "best_epoch", "wait", "stopped_epoch", "stop_event"),
                         where=where)
        event = d["stop_event"]
        if event is not None and not isinstance(event, str):
            raise StateError(f"{where}: 'stop_event' must be a string or null, got {event!r}")
        wait = decode_int(d["wait"], where=f"{where}.wait")
        if wait < 0:
            raise StateError(f"{where}: 'wait' must be >= 0, got {wait}")
        return EarlyStoppingState(
            decode_float(d["best"], where=f"{where}.best"),
            decode_optional_int(d["best_epoch"], where=f"{where}.best_epoch"),
            wait,
            decode_optional_int(d["stopped_epoch"], where=f"{where}.stopped_epoch"),
            event,
        )

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def __repr__(self) -> str:
        return compact_repr(self)
