"""Plateau detection: lower the learning rate when a monitored metric stops improving.

Theory of operation
-------------------
State: ``best`` (``None`` before any improvement), ``wait``, ``cooldown_counter``, ``reductions``.
The learning rate is *not* state: it is read from the observation (what the optimizer holds now,
so a rate changed by hand or by a schedule is respected) and a reduction is a request
``lr_factor`` (``factor`` for each group it lowers, ``1.0`` for the others) that the Controller
applies as ``max(lr * factor, min_lr)`` (or to the schedule's scale). An absent metric changes
nothing (not even the cooldown, as in Keras).

``rules="keras"`` (default; ``keras.callbacks.ReduceLROnPlateau`` 3.x)::

    if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
    if best is None or improves(v, best): best = v; wait = 0
    elif cooldown_counter == 0:
        wait += 1
        if wait >= patience:
            for each rate: if old > min_lr: new = max(old * factor, min_lr)     # "reduced"
            if any reduced: cooldown_counter = cooldown; wait = 0
            # at min_lr nothing is reset: wait keeps counting

``rules="torch"`` (``torch.optim.lr_scheduler.ReduceLROnPlateau``)::

    if improves(v, best if best is not None else worst): best = v; wait = 0
    else: wait += 1
    if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
    if wait > patience:                                                    # strictly greater
        for each rate: new = max(old * factor, min_lr); applied only if old - new > eps
        cooldown_counter = cooldown; wait = 0                              # even at min_lr

==================  ==============================  =========================================
argument            Keras ``ReduceLROnPlateau``     torch ``ReduceLROnPlateau``
==================  ==============================  =========================================
monitor             monitor                         (the value passed to ``step``)
factor              factor (< 1; <= 0: to min_lr)   factor (< 1; <= 0: to min_lr)
                    ``allow_nonpositive_factor``    ``allow_nonpositive_factor``
patience            patience (fires at ``>=``)      patience (fires at ``>``; rules="torch")
mode                mode ("auto")                   mode ("min")
min_delta           min_delta (abs, 1e-4)           threshold (1e-4)
threshold_mode      "abs"                           threshold_mode ("rel" default)
cooldown            cooldown                        cooldown
min_lr              min_lr (float)                  min_lr (float or one per param group)
eps                 — (``old > min_lr``)            eps (1e-8)
precision           "float32"                       "float64"
==================  ==============================  =========================================

With ``rules="torch"`` and ``threshold_mode="abs"`` the threshold shifts ``best`` (torch's
arithmetic, ``current < best - threshold``); with Keras rules it shifts the current value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import attrs
import numpy as np

from ._config import Configured
from ._decisions import Reason, lazy_reason, number_text
from ._early_stopping import _n  # the same plural rule
from ._monitor import Monitor
from ._numbers import to_float32
from ._policy import Clock, Observation
from ._rates import reduced_rate
from ._state import StateError, decode_float, decode_int, encode_float, require_keys
from ._validation import (
    boolean,
    check_finite,
    check_ge,
    check_real,
    finite,
    ge,
    integer,
    lt,
    metric_name,
    one_of,
    optional,
    plain,
)

__all__ = ["PlateauDecision", "PlateauState", "ReduceLROnPlateau"]

LR = float | tuple[float, ...]


_g = number_text


def _fmt_lr(lr: LR) -> str:
    if isinstance(lr, tuple):
        return "(" + ", ".join(f"{x:.6g}" for x in lr) + ")"
    return f"{lr:.6g}"


# -- messages (rendered only when read) ---------------------------------------------------------


def _m_improved(name: str, best: float | None, v: float) -> str:
    if best is None:
        return f"{name} = {_g(v)}: new best"
    return f"{name} improved from {_g(best)} to {_g(v)}"


def _m_cooldown(name: str, v: float, best: float | None, left: int) -> str:
    return f"{name} = {_g(v)} did not improve on {_g(best)}; in cooldown ({left} rounds left)"


def _m_no_improvement(
    name: str, v: float, best: float | None, delta: float, wait: int, patience: int
) -> str:
    return (
        f"{name} = {_g(v)} did not improve on {_g(best)} by more than {delta:g}; "
        f"wait {wait}/{patience}"
    )


def _m_reduced(
    name: str, v: float, best: float | None, wait: int, patience: int, old: LR, new: LR
) -> str:
    return (
        f"{name} = {_g(v)}: no improvement on {_g(best)} for {_n(wait, 'round')} (patience "
        f"{patience}); lr {_fmt_lr(old)} -> {_fmt_lr(new)}"
    )


def _m_at_min_lr(name: str, v: float, wait: int, patience: int, lr: LR, min_lr: LR) -> str:
    return (
        f"{name} = {_g(v)}: patience exhausted ({wait}/{patience}) but lr {_fmt_lr(lr)} is "
        f"already at min_lr {_fmt_lr(min_lr)}"
    )


def _m_torch_reduced(name: str, v: float, patience: int, old: LR, new: LR) -> str:
    return (
        f"{name} = {_g(v)}: {patience + 1} bad rounds (> patience {patience}); "
        f"lr {_fmt_lr(old)} -> {_fmt_lr(new)}"
    )


def _m_torch_at_min(name: str, v: float, patience: int, lr: LR, min_lr: LR) -> str:
    return (
        f"{name} = {_g(v)}: {patience + 1} bad rounds but lr {_fmt_lr(lr)} is within eps of "
        f"min_lr {_fmt_lr(min_lr)}; cooldown restarts"
    )


def _m_torch_bad(name: str, v: float, best: float | None, wait: int, patience: int) -> str:
    return (
        f"{name} = {_g(v)} did not improve on {_g(best)}; bad rounds {wait} "
        f"(reduce when > {patience})"
    )


class PlateauState(NamedTuple):
    """Plain-data state of :class:`ReduceLROnPlateau`."""

    best: float | None = None
    wait: int = 0
    cooldown_counter: int = 0
    reductions: int = 0


class PlateauDecision(NamedTuple):
    """What :class:`ReduceLROnPlateau` decided this round.

    Attributes:
        lr_factor: the reduction requested (the policy contract's ``lr_factor``): the factor
            for each rate it lowers and ``1.0`` for the others, in the shape of the observed rate;
            ``None`` when nothing is reduced.
        reduced: whether any rate is lowered.
        best, wait, cooldown_counter: the state after this round.
        reason: why (a reduction's message names the old and the new rates).
    """

    lr_factor: float | tuple[float, ...] | None
    reduced: bool
    best: float | None
    wait: int
    cooldown_counter: int
    reason: Reason


def _outcome(
    *,
    lr_factor: float | tuple[float, ...] | None,
    best: float | None,
    wait: int,
    cooldown_counter: int,
    reductions: int,
    reason: Reason,
) -> tuple[PlateauDecision, PlateauState]:
    """A round's decision and the new state, built by field name in one plain call (the hot
    path: a ``NamedTuple`` constructor called with keywords costs several times more). A test
    checks that the two tuples below list each type's fields in order."""
    decision: PlateauDecision = _tuple_new(
        PlateauDecision, (lr_factor, lr_factor is not None, best, wait, cooldown_counter, reason)
    )
    state: PlateauState = _tuple_new(PlateauState, (best, wait, cooldown_counter, reductions))
    return decision, state


_tuple_new = tuple.__new__


def _convert_min_lr(value: Any) -> float | tuple[float, ...]:
    """A float, or a tuple of floats for a list, tuple or 1-D array (one per param group)."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        if len(value) == 0:
            raise ValueError(
                f"'min_lr' must be a float or a non-empty sequence of floats, got {value!r}"
            )
        return tuple(check_real(f"min_lr[{i}]", v) for i, v in enumerate(value))
    return check_real("min_lr", value)


def _check_min_lr(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for i, v in enumerate(values):
        name = f"min_lr[{i}]" if isinstance(value, tuple) else "min_lr"
        check_finite(name, v)
        check_ge(name, v, 0.0)


def _check_factor(inst: Any, _attr: attrs.Attribute[Any], value: float) -> None:
    check_finite("factor", value)
    lt(1.0)(inst, _attr, value)


@attrs.frozen(repr=False)
class ReduceLROnPlateau(Configured):
    """Lower the learning rate by ``factor`` when ``monitor`` plateaus (Keras rules by default).

    Args:
        monitor: metric name. Default ``"val_loss"``.
        factor: new rate = rate * factor; ``0 < factor < 1`` (see
            ``allow_nonpositive_factor``).
        patience: rounds without improvement before a reduction.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name; an unknown name raises here).
        min_delta: the improvement threshold (absolute by default; Keras' ``min_delta``, torch's
            ``threshold``). Keras rules take its absolute value; torch rules keep the sign.
        cooldown: rounds to wait after a reduction before counting again.
        min_lr: lower bound of the rate: a float, or one per param group. It is also the
            floor the Controller keeps every rate request above (the ``min_lrs`` hook).
        threshold_mode: ``"abs"`` or ``"rel"`` (``min_delta`` as a fraction of ``best``).
        eps: torch's minimal change; with ``rules="torch"`` ``None`` means ``1e-8``; with Keras
            rules ``None`` means no such test.
        rules: ``"keras"`` or ``"torch"`` (see the module docstring for the differences).
        strict: raise :class:`MetricNotFoundError` when the metric is absent.
        precision: ``"float64"``, or ``"float32"`` to compare as Keras does.
        allow_nonpositive_factor: accept ``factor <= 0``, as Keras and torch do: every
            reduction then goes straight to ``min_lr`` (``max(lr * factor, min_lr)``).

    Numbers may be numpy scalars (they are stored as Python numbers); flags must be ``bool``.

    >>> import trainctl
    >>> p = trainctl.ReduceLROnPlateau(monitor="loss", patience=2, factor=0.5)
    >>> ctl = trainctl.Controller(p, lr=0.1)
    >>> [ctl.step({"loss": v}).lr for v in (1.0, 1.0, 1.0, 1.0, 1.0)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    monitor: str = attrs.field(default="val_loss", validator=metric_name)
    factor: float = attrs.field(
        default=0.1, kw_only=True, converter=plain, validator=_check_factor
    )
    patience: int = attrs.field(
        default=10, kw_only=True, converter=plain, validator=[integer, ge(0)]
    )
    mode: Literal["min", "max", "auto"] = attrs.field(
        default="auto", kw_only=True, validator=one_of("min", "max", "auto")
    )
    min_delta: float = attrs.field(default=1e-4, kw_only=True, converter=plain, validator=finite)
    cooldown: int = attrs.field(
        default=0, kw_only=True, converter=plain, validator=[integer, ge(0)]
    )
    min_lr: float | tuple[float, ...] = attrs.field(
        default=0.0, kw_only=True, converter=_convert_min_lr, validator=_check_min_lr
    )
    threshold_mode: Literal["abs", "rel"] = attrs.field(
        default="abs", kw_only=True, validator=one_of("abs", "rel")
    )
    eps: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite, ge(0.0))
    )
    rules: Literal["keras", "torch"] = attrs.field(
        default="keras", kw_only=True, validator=one_of("keras", "torch")
    )
    strict: bool = attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)
    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    allow_nonpositive_factor: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )

    direction: Literal["min", "max"] = attrs.field(init=False)
    monitoring: Monitor = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor`: metric, direction, comparison, missing-metric rule."""
    _label: str = attrs.field(init=False, repr=False, eq=False)
    # hot-path copies, derived from the fields above
    _improves: Any = attrs.field(init=False, repr=False, eq=False)
    _worst: float = attrs.field(init=False, repr=False, eq=False)
    _torch: bool = attrs.field(init=False, repr=False, eq=False)
    _eps: float | None = attrs.field(init=False, repr=False, eq=False)
    _factor: float = attrs.field(init=False, repr=False, eq=False)
    _scalar_min_lr: float | None = attrs.field(init=False, repr=False, eq=False)
    _scalar_floor: float | None = attrs.field(init=False, repr=False, eq=False)

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round"})

    def __attrs_post_init__(self) -> None:
        if not self.allow_nonpositive_factor and not self.factor > 0:
            raise ValueError(
                f"'factor' must be > 0.0, got {self.factor!r} (pass "
                "allow_nonpositive_factor=True to send every reduction straight to min_lr, as "
                "Keras and torch do)"
            )
        torch = self.rules == "torch"
        monitoring = Monitor(
            self.monitor,
            mode=self.mode,
            # Keras takes abs(min_delta); torch keeps a negative threshold as it is
            delta=self.min_delta if torch else abs(self.min_delta),
            threshold_mode=self.threshold_mode,
            delta_applies_to="best" if torch else "current",
            precision=self.precision,
            strict=self.strict,
        )
        direction = monitoring.direction
        if self.threshold_mode == "rel" and direction == "min" and monitoring.delta >= 1.0:
            raise ValueError(
                f"'min_delta' must be < 1 with threshold_mode='rel' and mode='min', got "
                f"{self.min_delta!r}: a positive value can never improve by {monitoring.delta:g} "
                "of itself"
            )
        set_attr = object.__setattr__
        set_attr(self, "direction", direction)
        set_attr(self, "monitoring", monitoring)
        set_attr(self, "_label", f"ReduceLROnPlateau({self.monitor})")
        set_attr(self, "_improves", monitoring.improves)
        set_attr(self, "_worst", monitoring.worst)
        set_attr(self, "_torch", torch)
        set_attr(self, "_eps", self.eps if self.eps is not None else (1e-8 if torch else None))
        # max(lr * factor, min_lr) is the same for every factor <= 0: min_lr
        set_attr(self, "_factor", max(self.factor, 0.0))
        scalar = None if isinstance(self.min_lr, tuple) else self.min_lr
        set_attr(self, "_scalar_min_lr", scalar)
        floor = scalar
        if scalar is not None and self.precision == "float32":
            floor = to_float32(scalar)  # Keras: old_lr > np.float32(min_lr)
        set_attr(self, "_scalar_floor", floor)


    @property
    def label(self) -> str:
        """How reasons name this policy, e.g. ``"ReduceLROnPlateau(val_loss)"``."""
        return self._label

    # -- learning rates -----------------------------------------------------------------------

    def min_lrs(self, n_groups: int | None) -> tuple[float, ...]:
        """``min_lr`` for ``n_groups`` rates (``None``: a single float rate); the policy
        contract's floor hook."""
        if isinstance(self.min_lr, tuple):
            if n_groups is None or n_groups != len(self.min_lr):
                got = "a single rate" if n_groups is None else f"{n_groups} rates"
                raise ValueError(
                    f"{self._label}: 'min_lr' has {len(self.min_lr)} values but the learning rate "
                    f"has {got}; give one min_lr per param group"
                )
            return self.min_lr
        return (self.min_lr,) * (1 if n_groups is None else n_groups)

    def reduce(self, lr: LR) -> tuple[LR, bool]:
        """Apply one reduction to ``lr`` under this policy's rules; return (new lr, changed)."""
        factor, new = self._reduction(lr)
        return new, factor is not None

    def _reduction(self, lr: LR) -> tuple[float | tuple[float, ...] | None, LR]:
        """(the factor request, or ``None`` if no rate can be lowered; the rates it gives)."""
        f = self._factor
        eps = self._eps
        floor = self._scalar_floor
        if isinstance(lr, float) and floor is not None:
            # one rate and one min_lr: the common case, without building tuples
            lo = self._scalar_min_lr
            assert lo is not None
            new = reduced_rate(lr, f, lo)
            if self._torch:
                ok = eps is not None and lr - new > eps
            else:
                ok = lr > floor and (eps is None or lr - new > eps)
            return (f, new) if ok else (None, lr)
        rates = lr if isinstance(lr, tuple) else (lr,)
        mins = self.min_lrs(len(lr) if isinstance(lr, tuple) else None)
        f32 = self.precision == "float32"
        factors: list[float] = []
        out: list[float] = []
        for old, lo in zip(rates, mins, strict=True):
            new = reduced_rate(old, f, lo)
            if self._torch:
                ok = old - new > eps  # type: ignore[operator]  # eps is set for torch rules
            else:
                # Keras compares the float32 rate with np.float32(min_lr)
                ok = old > (to_float32(lo) if f32 else lo) and (eps is None or old - new > eps)
            factors.append(f if ok else 1.0)
            out.append(new if ok else old)
        if all(x == 1.0 for x in factors):
            return None, lr
        if isinstance(lr, tuple):
            return tuple(factors), tuple(out)
        return factors[0], out[0]

    # -- transition ---------------------------------------------------------------------------

    def initial_state(self) -> PlateauState:
        return PlateauState()

    def update(self, state: PlateauState, obs: Observation) -> tuple[PlateauDecision, PlateauState]:
        """One evaluation round (see the module docstring for the rules)."""
        metrics = obs.metrics
        v = metrics.get(self.monitor)
        if v.__class__ is not float:  # absent, or to be converted: the monitor's rule
            v = self.monitoring.read(metrics, self._label)
            if v is None:
                return _outcome(
                    lr_factor=None, best=state.best, wait=state.wait,
                    cooldown_counter=state.cooldown_counter, reductions=state.reductions,
                    reason=self.monitoring.missing(self._label, metrics),
                )
        lr = obs.lr
        if lr is None:
            raise ValueError(
                f"{self._label} needs the current learning rate: create the controller with "
                "Controller(..., lr=...) or pass step(metrics, lr=...)"
            )
        if self._torch:
            return self._update_torch(state, v, lr)
        return self._update_keras(state, v, lr)

    def _update_keras(
        self, state: PlateauState, v: float, lr: LR
    ) -> tuple[PlateauDecision, PlateauState]:
        best, wait, cooldown_counter = state.best, state.wait, state.cooldown_counter
        reductions = state.reductions
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        label, name = self._label, self.monitor
        if best is None or self._improves(v, best):
            return _outcome(
                lr_factor=None, best=v, wait=0, cooldown_counter=cooldown_counter,
                reductions=reductions,
                reason=lazy_reason(label, "improved", _m_improved, name, best, v),
            )
        if cooldown_counter > 0:
            return _outcome(
                lr_factor=None, best=best, wait=wait, cooldown_counter=cooldown_counter,
                reductions=reductions,
                reason=lazy_reason(label, "cooldown", _m_cooldown, name, v, best,
                                   cooldown_counter),
            )
        wait += 1
        if wait < self.patience:
            return _outcome(
                lr_factor=None, best=best, wait=wait, cooldown_counter=0, reductions=reductions,
                reason=lazy_reason(label, "no_improvement", _m_no_improvement, name, v, best,
                                   self.min_delta, wait, self.patience),
            )
        factor, new_lr = self._reduction(lr)
        if factor is not None:
            return _outcome(
                lr_factor=factor, best=best, wait=0, cooldown_counter=self.cooldown,
                reductions=reductions + 1,
                reason=lazy_reason(label, "reduced_lr", _m_reduced, name, v, best, wait,
                                   self.patience, lr, new_lr),
            )
        return _outcome(  # at min_lr: Keras resets nothing, wait keeps counting
            lr_factor=None, best=best, wait=wait, cooldown_counter=0, reductions=reductions,
            reason=lazy_reason(label, "at_min_lr", _m_at_min_lr, name, v, wait, self.patience,
                               lr, self.min_lr),
        )

    def _update_torch(
        self, state: PlateauState, v: float, lr: LR
    ) -> tuple[PlateauDecision, PlateauState]:
        best, wait, cooldown_counter = state.best, state.wait, state.cooldown_counter
        reductions = state.reductions
        label, name = self._label, self.monitor
        improved = self._improves(v, self._worst if best is None else best)
        if improved:
            best, wait = v, 0
        else:
            wait += 1
        in_cooldown = cooldown_counter > 0
        if in_cooldown:
            cooldown_counter -= 1
            wait = 0
        if wait > self.patience:
            factor, new_lr = self._reduction(lr)
            if factor is not None:
                why = lazy_reason(label, "reduced_lr", _m_torch_reduced, name, v, self.patience,
                                  lr, new_lr)
                reductions += 1
            else:
                why = lazy_reason(label, "at_min_lr", _m_torch_at_min, name, v, self.patience,
                                  lr, self.min_lr)
            # torch restarts the cooldown even when the rate is already at min_lr
            return _outcome(
                lr_factor=factor, best=best, wait=0, cooldown_counter=self.cooldown,
                reductions=reductions, reason=why,
            )
        if improved:
            why = lazy_reason(label, "improved", _m_improved, name, None, v)
        elif in_cooldown:
            why = lazy_reason(label, "cooldown", _m_cooldown, name, v, best, cooldown_counter)
        else:
            why = lazy_reason(label, "no_improvement", _m_torch_bad, name, v, best, wait,
                              self.patience)
        return _outcome(
            lr_factor=None, best=best, wait=wait, cooldown_counter=cooldown_counter,
            reductions=reductions, reason=why,
        )

    # -- state --------------------------------------------------------------------------------

    def state_to_dict(self, state: PlateauState) -> dict[str, Any]:
        return {
            "best": encode_float(state.best),
            "wait": state.wait,
            "cooldown_counter": state.cooldown_counter,
            "reductions": state.reductions,
        }

    def state_from_dict(self, data: Mapping[str, Any]) -> PlateauState:
        where = f"{self._label} state"
        d = require_keys(data, ("best", "wait", "cooldown_counter", "reductions"), where=where)
        counts = {}
        for key in ("wait", "cooldown_counter", "reductions"):
            n = decode_int(d[key], where=f"{where}.{key}")
            if n < 0:
                raise StateError(f"{where}.{key}: must be >= 0, got {n}")
            counts[key] = n
        return PlateauState(best=decode_float(d["best"], where=f"{where}.best"), **counts)
