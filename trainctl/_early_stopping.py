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

``rules="huggingface"`` (``transformers.EarlyStoppingCallback`` with the Trainer's own
``state.best_metric``, which moves on *any* strict improvement, threshold or not; ``best``
starts at +inf / -inf once a value was seen)::

    if best is None or (strictly_better(v, best) and abs(v - best) > min_delta): wait = 0
    else: wait += 1
    if strictly_better(v, best if best is not None else worst): best, best_epoch = v, epoch
    elif best is None: best = worst
    if wait >= patience: stop ("patience_exhausted")

``rules="lightning"`` (``lightning.pytorch.callbacks.EarlyStopping`` 2.x: an elif chain, best
starts at +inf / -inf so a NaN or +inf first value is not an improvement)::

    if stopping_threshold reached: stop          # best not updated
    elif divergence_threshold passed: stop
    elif improves(v, best): best, wait = v, 0
    else: wait += 1; if wait >= patience: stop

Restoring: with ``restore_best_weights`` every improving round sets ``snapshot_best`` (keep a copy
of the weights) and the stop decision, or the end of training (:meth:`finish`) whatever ended it,
says ``restore_best`` if a best exists, as Keras does.

A stop is final by default: once stopped, every later round says stop again and nothing changes.
``stop_is_final=False`` is Lightning's behaviour when ``min_epochs`` keeps the Trainer running: the
next round is evaluated as usual (an improvement resets ``wait``; ``stopped_epoch`` records the
latest stop).

The sign of ``min_delta``: Keras rules take its absolute value; Lightning rules keep a negative
value (which accepts a slightly worse value as an improvement). ``signed_min_delta=True`` reads
``min_delta`` as Lightning *stores* it (multiplied by -1 for ``mode="min"``: the improvement test
is ``op(current - min_delta, best)``), so that Lightning's drop-in passes its attribute as it is.

(``rules="huggingface"``: ``patience`` is ``early_stopping_patience``, ``min_delta`` is
``early_stopping_threshold``, absolute and strict, compared in float64.)

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
stop_is_final              — (True)                          False while ``min_epochs`` runs
stopping_threshold         —                                 stopping_threshold
divergence_threshold       —                                 divergence_threshold
strict                     — (False: warn, skip)             strict (True: raise)
precision                  "float32"                         "float32" (float32 tensors)
=========================  ================================  ===============================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import attrs

from ._config import Configured
from ._decisions import Reason, epoch_text, lazy_reason, number_text
from ._monitor import Monitor
from ._policy import Clock, Observation
from ._state import (
    StateError,
    decode_float,
    decode_int,
    decode_optional_int,
    encode_float,
    require_keys,
)
from ._validation import boolean, finite, ge, integer, metric_name, one_of, optional, plain

__all__ = ["EarlyStopping", "EarlyStoppingDecision", "EarlyStoppingState"]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_g = number_text



def hf_resets(value: Any, best: Any, min_delta: float) -> Any:
    """Hugging Face's counter test: an improvement resets the counter only when it moves by
    more than ``min_delta``, compared as given (its sign kept: a negative one resets on every
    strict improvement). On floats and numpy arrays alike (the replay's kernels call it)."""
    return abs(value - best) > min_delta


class EarlyStoppingState(NamedTuple):
    """Plain-data state of :class:`EarlyStopping`.

    Attributes:
        best: the best monitored value (``None`` before the first).
        best_epoch: its 0-based epoch index.
        wait: rounds counted towards ``patience``.
        stopped_epoch: the 0-based epoch of the (latest) stop, else ``None``.
        stop_event: why it stopped (``"patience_exhausted"``, ``"non_finite"``, ...).
    """

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
        best, best_epoch, wait: the state after this round (``best_epoch`` 0-based).
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


def _outcome(
    *,
    stop: bool,
    improved: bool,
    snapshot_best: bool,
    restore_best: bool,
    best: float | None,
    best_epoch: int | None,
    wait: int,
    stopped_epoch: int | None,
    stop_event: str | None,
    reason: Reason,
) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
    """A round's decision and the new state, built by field name in one plain call (the hot
    path: a ``NamedTuple`` constructor called with keywords costs several times more). A test
    checks that the two tuples below list each type's fields in order."""
    decision: EarlyStoppingDecision = _tuple_new(
        EarlyStoppingDecision,
        (stop, improved, snapshot_best, restore_best, best, best_epoch, wait, reason),
    )
    state: EarlyStoppingState = _tuple_new(
        EarlyStoppingState, (best, best_epoch, wait, stopped_epoch, stop_event)
    )
    return decision, state


_tuple_new = tuple.__new__


# -- messages (rendered only when read; epochs are 1-based, see trainctl.epoch_text) -------------


def _m_stopped(epoch: int, event: str) -> str:
    return f"stopped at {epoch_text(epoch)} ({event}); a stop is final"


def _m_not_started(epoch: int, start: int) -> str:
    return (
        f"{epoch_text(epoch)} is before start_from_epoch={start} (the first monitored epoch is "
        f"{epoch_text(start)}); not monitoring yet"
    )


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


def _m_small_improvement(
    name: str, best: float | None, v: float, delta: float, wait: int, patience: int
) -> str:
    return (
        f"{name} improved from {_g(best)} to {_g(v)}, by no more than {delta:g}: the new best, "
        f"but wait {wait}/{patience}"
    )


def _m_no_improvement(
    name: str, v: float, best: float | None, best_epoch: int | None, delta: float, wait: int,
    patience: int,
) -> str:
    return (
        f"{name} = {_g(v)} did not improve on {_g(best)} ({epoch_text(best_epoch)}) by more than "
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
        f"best {_g(best)} at {epoch_text(best_epoch)}; stopping"
    )


def _m_restore(inner: Reason, best_epoch: int | None) -> str:
    return f"{inner.message}; restore the weights of {epoch_text(best_epoch)}"


def _m_finish(name: str, restore: bool, best: float | None, best_epoch: int | None) -> str:
    if restore:
        return (
            f"training ended; restore the weights of {epoch_text(best_epoch)} "
            f"({name} = {_g(best)})"
        )
    return "training ended; nothing to restore"


@attrs.frozen(repr=False)
class EarlyStopping(Configured):
    """Stop training when ``monitor`` has stopped improving (Keras semantics by default).

    Args:
        monitor: metric name. Default ``"val_loss"``.
        min_delta: minimum change that counts as an improvement (Keras rules take its absolute
            value; Lightning rules keep a negative value, which accepts slightly worse values).
        patience: rounds without improvement before stopping; fires at ``wait >= patience``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name; an unknown name raises here).
        baseline: ``wait`` only resets on rounds that also beat it (Keras rules only).
        restore_best_weights: ask for the best weights back when training ends.
        start_from_epoch: ignore rounds whose 0-based ``epoch`` is below this (Keras).
        stopping_threshold: stop as soon as the metric is better than this (Lightning).
        divergence_threshold: stop as soon as the metric is worse than this (Lightning).
        check_finite: stop on a NaN or infinite value (Lightning's default; Keras: ``False``).
        strict: raise :class:`MetricNotFoundError` when the metric is absent, instead of skipping.
        threshold_mode: ``"abs"`` (Keras, Lightning) or ``"rel"`` (``min_delta`` as a fraction of
            ``best``, as torch's threshold).
        rules: ``"keras"``, ``"lightning"`` or ``"huggingface"`` (see the module docstring for
            the differences).
        precision: ``"float64"``, or ``"float32"`` to compare as Keras and Lightning do.
        stop_is_final: ``False`` keeps evaluating after a stop (Lightning under ``min_epochs``).
        signed_min_delta: ``min_delta`` is given as Lightning stores it (see the module
            docstring).

    Numbers may be numpy scalars (they are stored as Python numbers); flags must be ``bool``.

    >>> import trainctl
    >>> es = trainctl.EarlyStopping(monitor="loss", patience=2)
    >>> [d.stop for d in trainctl.simulate(es, [{"loss": v} for v in (3.0, 2.0, 2.5, 2.4)])]
    [False, False, False, True]
    """

    monitor: str = attrs.field(default="val_loss", validator=metric_name)
    min_delta: float = attrs.field(default=0.0, kw_only=True, converter=plain, validator=finite)
    patience: int = attrs.field(
        default=0, kw_only=True, converter=plain, validator=[integer, ge(0)]
    )
    mode: Literal["min", "max", "auto"] = attrs.field(
        default="auto", kw_only=True, validator=one_of("min", "max", "auto")
    )
    baseline: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite)
    )
    restore_best_weights: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )
    start_from_epoch: int = attrs.field(
        default=0, kw_only=True, converter=plain, validator=[integer, ge(0)]
    )
    stopping_threshold: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite)
    )
    divergence_threshold: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite)
    )
    check_finite: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )
    strict: bool = attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)
    threshold_mode: Literal["abs", "rel"] = attrs.field(
        default="abs", kw_only=True, validator=one_of("abs", "rel")
    )
    rules: Literal["keras", "lightning", "huggingface"] = attrs.field(
        default="keras", kw_only=True, validator=one_of("keras", "lightning", "huggingface")
    )
    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    stop_is_final: bool = attrs.field(
        default=True, kw_only=True, converter=plain, validator=boolean
    )
    signed_min_delta: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )

    direction: Literal["min", "max"] = attrs.field(init=False)
    monitoring: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor`: metric, direction, comparison, missing-metric rule."""
    _label: str = attrs.field(init=False, repr=False, eq=False)
    # hot-path copies, derived from the fields above
    _improves: Any = attrs.field(init=False, repr=False, eq=False)
    _worst: float = attrs.field(init=False, repr=False, eq=False)
    _thresholds: bool = attrs.field(init=False, repr=False, eq=False)
    _lightning: bool = attrs.field(init=False, repr=False, eq=False)

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round"})

    def __attrs_post_init__(self) -> None:
        if self.baseline is not None and self.rules != "keras":
            raise ValueError(
                f"'baseline' is a Keras rule and has no meaning with rules={self.rules!r}; "
                "use stopping_threshold / divergence_threshold, or rules='keras'"
            )
        if self.rules == "huggingface" and self.threshold_mode != "abs":
            raise ValueError(
                "rules='huggingface' compares with an absolute threshold "
                f"(early_stopping_threshold); got threshold_mode={self.threshold_mode!r}"
            )
        lightning = self.rules == "lightning"
        if self.signed_min_delta and not lightning:
            raise ValueError(
                "'signed_min_delta' is Lightning's stored form of min_delta and needs "
                f"rules='lightning', got rules={self.rules!r}"
            )
        # the signed improvement threshold: Keras takes abs(min_delta), Lightning keeps the sign
        delta = self.min_delta if lightning else abs(self.min_delta)
        direction = None if self.mode == "auto" else self.mode
        monitoring = Monitor(
            self.monitor,
            mode=self.mode,
            delta=delta,
            threshold_mode=self.threshold_mode,
            precision=self.precision,
            float32_arithmetic=lightning,
            strict=self.strict,
        )
        direction = monitoring.direction
        if self.signed_min_delta and direction == "min":
            # Lightning stores -min_delta for "min": the test is op(current - min_delta, best)
            monitoring = attrs.evolve(monitoring, delta=-self.min_delta)
        _check_thresholds(self, direction, monitoring.delta)
        set_attr = object.__setattr__
        set_attr(self, "direction", direction)
        set_attr(self, "monitoring", monitoring)
        set_attr(self, "_label", f"EarlyStopping({self.monitor})")
        set_attr(self, "_improves", monitoring.improves)
        set_attr(self, "_worst", monitoring.worst)
        set_attr(
            self,
            "_thresholds",
            self.stopping_threshold is not None or self.divergence_threshold is not None,
        )
        set_attr(self, "_lightning", lightning)


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
        if state.stopped_epoch is not None and self.stop_is_final:
            return self._decide(
                state, stop=True, improved=False,
                why=lazy_reason(self._label, "already_stopped", _m_stopped, state.stopped_epoch,
                                state.stop_event),
            )
        metrics = obs.metrics
        v = metrics.get(self.monitor)
        if v.__class__ is not float:  # absent, or to be converted: the monitor's rule
            v = self.monitoring.read(metrics, self._label)
            if v is None:
                return self._decide(
                    state, stop=False, improved=False,
                    why=self.monitoring.missing(self._label, metrics),
                )
        epoch = obs.epoch
        if epoch < self.start_from_epoch:
            return self._decide(
                state, stop=False, improved=False,
                why=lazy_reason(self._label, "not_started", _m_not_started, epoch,
                                self.start_from_epoch),
            )
        if self.check_finite and not math.isfinite(v):
            new = state._replace(stopped_epoch=epoch, stop_event="non_finite")
            return self._decide(
                new, stop=True, improved=False,
                why=lazy_reason(self._label, "non_finite", _m_non_finite, self.monitor, v,
                                state.best),
            )
        if self._lightning:
            return self._update_lightning(state, v, epoch)
        if self.rules == "huggingface":
            return self._update_huggingface(state, v, epoch)
        return self._update_keras(state, v, epoch)

    def _update_keras(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        wait = state.wait + 1
        best = state.best
        if best is None or self._improves(v, best):
            baseline = self.baseline
            beats_baseline = baseline is None or bool(self._improves(v, baseline))
            if beats_baseline:
                wait = 0
            if self._thresholds:
                improved = state._replace(best=v, best_epoch=epoch, wait=wait)
                stop = self._threshold_stop(improved, v, epoch, improved=True)
                if stop is not None:
                    return stop
            if beats_baseline:
                why = lazy_reason(self._label, "improved", _m_improved, self.monitor, best, v)
            else:
                why = lazy_reason(self._label, "improved", _m_below_baseline, self.monitor, best,
                                  v, baseline, wait, self.patience)
            return _outcome(
                stop=False, improved=True, snapshot_best=self.restore_best_weights,
                restore_best=False, best=v, best_epoch=epoch, wait=wait,
                stopped_epoch=state.stopped_epoch, stop_event=state.stop_event, reason=why,
            )
        if self._thresholds:
            stop = self._threshold_stop(state._replace(wait=wait), v, epoch, improved=False)
            if stop is not None:
                return stop
        if wait >= self.patience and epoch > 0:
            return self._patience_stop(state._replace(wait=wait), v, epoch)
        best_epoch = state.best_epoch
        return _outcome(
            stop=False, improved=False, snapshot_best=False, restore_best=False, best=best,
            best_epoch=best_epoch, wait=wait, stopped_epoch=state.stopped_epoch,
            stop_event=state.stop_event,
            reason=lazy_reason(self._label, "no_improvement", _m_no_improvement, self.monitor,
                               v, best, best_epoch, self.min_delta, wait, self.patience),
        )

    def _update_lightning(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        if self._thresholds:
            stop = self._threshold_stop(state, v, epoch, improved=False)
            if stop is not None:
                return stop
        best = state.best
        if self._improves(v, self._worst if best is None else best):
            return _outcome(
                stop=False, improved=True, snapshot_best=self.restore_best_weights,
                restore_best=False, best=v, best_epoch=epoch, wait=0,
                stopped_epoch=state.stopped_epoch, stop_event=state.stop_event,
                reason=lazy_reason(self._label, "improved", _m_improved, self.monitor, best, v),
            )
        wait = state.wait + 1
        if wait >= self.patience:
            return self._patience_stop(state._replace(wait=wait), v, epoch)
        return _outcome(
            stop=False, improved=False, snapshot_best=False, restore_best=False, best=best,
            best_epoch=state.best_epoch, wait=wait, stopped_epoch=state.stopped_epoch,
            stop_event=state.stop_event,
            reason=lazy_reason(self._label, "no_improvement", _m_no_improvement, self.monitor,
                               v, best, state.best_epoch, self.min_delta, wait, self.patience),
        )

    def _update_huggingface(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        best = state.best
        ref = self._worst if best is None else best
        better = bool(self.monitoring.beyond(v, ref))  # the Trainer's best_metric: no threshold
        # the callback's counter resets only on an improvement beyond the threshold (its sign
        # as given: a negative one resets on every strict improvement)
        beyond = best is None or (better and hf_resets(v, ref, self.min_delta))
        wait = 0 if beyond else state.wait + 1
        new = state._replace(
            best=v if better else ref, best_epoch=epoch if better else state.best_epoch, wait=wait
        )
        if self._thresholds:
            stop = self._threshold_stop(new, v, epoch, improved=better)
            if stop is not None:
                return stop
        if wait >= self.patience:
            return self._patience_stop(new, v, epoch)
        if better and wait == 0:
            why = lazy_reason(self._label, "improved", _m_improved, self.monitor, best, v)
        elif better:
            why = lazy_reason(self._label, "improved", _m_small_improvement, self.monitor, best,
                              v, self.min_delta, wait, self.patience)
        else:
            why = lazy_reason(self._label, "no_improvement", _m_no_improvement, self.monitor, v,
                              best, state.best_epoch, self.min_delta, wait, self.patience)
        return self._decide(new, stop=False, improved=better, why=why)

    def _threshold_stop(
        self, state: EarlyStoppingState, v: float, epoch: int, *, improved: bool
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState] | None:
        beyond = self.monitoring.beyond
        for kind, bound, sign in (
            ("stopping_threshold", self.stopping_threshold, 1.0),
            # "worse than the threshold" is "better than it" with both signs flipped (Lightning)
            ("divergence_threshold", self.divergence_threshold, -1.0),
        ):
            if bound is not None and beyond(sign * v, sign * bound):
                new = state._replace(stopped_epoch=epoch, stop_event=kind)
                return self._decide(
                    new, stop=True, improved=improved,
                    why=lazy_reason(self._label, kind, _m_threshold, self.monitor, v, kind, bound),
                )
        return None

    def _patience_stop(
        self, state: EarlyStoppingState, v: float, epoch: int
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        new = state._replace(stopped_epoch=epoch, stop_event="patience_exhausted")
        return self._decide(
            new, stop=True, improved=False,
            why=lazy_reason(self._label, "patience_exhausted", _m_patience, self.monitor, v,
                            state.wait, self.patience, state.best, state.best_epoch),
        )

    def _decide(
        self, state: EarlyStoppingState, *, stop: bool, improved: bool, why: Reason
    ) -> tuple[EarlyStoppingDecision, EarlyStoppingState]:
        restore = stop and self.restore_best_weights and state.best_epoch is not None
        if restore:
            why = lazy_reason(self._label, why.event, _m_restore, why, state.best_epoch)
        return _outcome(
            stop=stop, improved=improved, snapshot_best=improved and self.restore_best_weights,
            restore_best=restore, best=state.best, best_epoch=state.best_epoch, wait=state.wait,
            stopped_epoch=state.stopped_epoch, stop_event=state.stop_event, reason=why,
        )

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
            reason=lazy_reason(
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
        wait = _count(d["wait"], f"{where}.wait")
        best_epoch = decode_optional_int(d["best_epoch"], where=f"{where}.best_epoch")
        stopped = decode_optional_int(d["stopped_epoch"], where=f"{where}.stopped_epoch")
        for key, value in (("best_epoch", best_epoch), ("stopped_epoch", stopped)):
            if value is not None and value < 0:
                raise StateError(f"{where}.{key}: must be >= 0, got {value}")
        if (stopped is None) != (event is None):
            raise StateError(
                f"{where}: 'stopped_epoch' and 'stop_event' must both be set or both be null, "
                f"got {stopped!r} and {event!r}"
            )
        return EarlyStoppingState(
            best=decode_float(d["best"], where=f"{where}.best"),
            best_epoch=best_epoch,
            wait=wait,
            stopped_epoch=stopped,
            stop_event=event,
        )


def _count(value: object, where: str) -> int:
    n = decode_int(value, where=where)
    if n < 0:
        raise StateError(f"{where}: must be >= 0, got {n}")
    return n


def _check_thresholds(policy: EarlyStopping, direction: str, delta: float) -> None:
    """Refuse combinations that decide before the first value is seen (naming both)."""
    stop, diverge = policy.stopping_threshold, policy.divergence_threshold
    if stop is not None and diverge is not None:
        # every value either reaches the target or passes the divergence bound: a stop at once
        always = stop >= diverge if direction == "min" else stop <= diverge
        if always:
            relation = "below" if direction == "min" else "above"
            raise ValueError(
                f"'stopping_threshold' ({stop!r}) must be {relation} 'divergence_threshold' "
                f"({diverge!r}) with mode={direction!r}: otherwise every value stops training at "
                "the first round"
            )
    if policy.threshold_mode == "rel" and direction == "min" and delta >= 1.0:
        raise ValueError(
            f"'min_delta' must be < 1 with threshold_mode='rel' and mode='min', got "
            f"{policy.min_delta!r}: a positive value can never improve by {delta:g} of itself"
        )
