"""Plateau detection: lower the learning rate when a monitored metric stops improving.

Theory of operation
-------------------
State: ``best`` (``None`` before any improvement), ``wait``, ``cooldown_counter``, ``reductions``.
The learning rate is *not* state: it is read from the observation (what the optimizer holds now,
so a rate changed by hand or by a schedule is respected) and the decision returns the new one.
An absent metric changes nothing (not even the cooldown, as in Keras).

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
factor              factor                          factor
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

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import attrs
import numpy as np

from ._decisions import Reason
from ._monitor import Comparison, Direction, MetricNotFoundError, coerce_metric, infer_direction
from ._policy import Clock, Observation, compact_repr, config_to_dict
from ._state import StateError, decode_float, decode_int, encode_float, require_keys
from ._validation import check_finite, check_ge, finite, ge, gt, integer, lt, one_of

__all__ = ["PlateauDecision", "PlateauState", "ReduceLROnPlateau"]

LR = float | tuple[float, ...]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _g(x: float | None) -> str:
    return "None" if x is None else f"{x:.6g}"


def _fmt_lr(lr: LR) -> str:
    if isinstance(lr, tuple):
        return "(" + ", ".join(f"{x:.6g}" for x in lr) + ")"
    return f"{lr:.6g}"


_new = tuple.__new__


def _lazy(source: str, event: str, render: Callable[..., str], *args: Any) -> Reason:
    reason: Reason = _new(Reason, (source, event, render, args))
    return reason


# -- messages (rendered only when read) ---------------------------------------------------------

def _m_missing(monitor: str, keys: tuple[str, ...]) -> str:
    return f"{monitor!r} not in metrics (present: {', '.join(keys) or 'none'}); nothing changed"


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
        lr: the learning rate to use from now on (same shape as the observed one).
        reduced: whether any rate was lowered.
        best, wait, cooldown_counter: the state after this round.
        reason: why.
    """

    lr: float | tuple[float, ...] | None
    reduced: bool
    best: float | None
    wait: int
    cooldown_counter: int
    reason: Reason


def _convert_min_lr(value: Any) -> float | tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return value  # type: ignore[no-any-return]  # the validator names the bad type


def _check_min_lr(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value:
        raise ValueError("'min_lr' must be a float or a non-empty sequence of floats, got ()")
    for i, v in enumerate(values):
        name = f"min_lr[{i}]" if isinstance(value, tuple) else "min_lr"
        check_finite(name, v)
        check_ge(name, v, 0.0)


@attrs.frozen(repr=False)
class ReduceLROnPlateau:
    """Lower the learning rate by ``factor`` when ``monitor`` plateaus (Keras rules by default).

    Args:
        monitor: metric name. Default ``"val_loss"``.
        factor: new rate = rate * factor; ``0 < factor < 1``.
        patience: rounds without improvement before a reduction.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name; unknown names raise).
        min_delta: the improvement threshold (absolute by default; Keras' ``min_delta``, torch's
            ``threshold``). Keras rules take its absolute value; torch rules keep the sign.
        cooldown: rounds to wait after a reduction before counting again.
        min_lr: lower bound of the rate: a float, or one per param group.
        threshold_mode: ``"abs"`` or ``"rel"`` (``min_delta`` as a fraction of ``best``).
        eps: torch's minimal change; with ``rules="torch"`` ``None`` means ``1e-8``; with Keras
            rules ``None`` means no such test.
        rules: ``"keras"`` or ``"torch"`` (see the module docstring for the differences).
        strict: raise :class:`MetricNotFoundError` when the metric is absent.
        precision: ``"float64"``, or ``"float32"`` to compare as Keras does.

    >>> import trainctl
    >>> p = trainctl.ReduceLROnPlateau(monitor="loss", patience=2, factor=0.5)
    >>> ctl = trainctl.Controller(p, lr=0.1)
    >>> [ctl.step({"loss": v}).lr for v in (1.0, 1.0, 1.0, 1.0, 1.0)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    monitor: str = attrs.field(default="val_loss")
    factor: float = attrs.field(
        default=0.1, kw_only=True, converter=float, validator=[finite, gt(0.0), lt(1.0)]
    )
    patience: int = attrs.field(default=10, kw_only=True, validator=[integer, ge(0)])
    mode: Literal["min", "max", "auto"] = attrs.field(
        default="auto", kw_only=True, validator=one_of("min", "max", "auto")
    )
    min_delta: float = attrs.field(default=1e-4, kw_only=True, converter=float, validator=finite)
    cooldown: int = attrs.field(default=0, kw_only=True, validator=[integer, ge(0)])
    min_lr: float | tuple[float, ...] = attrs.field(
        default=0.0, kw_only=True, converter=_convert_min_lr, validator=_check_min_lr
    )
    threshold_mode: Literal["abs", "rel"] = attrs.field(
        default="abs", kw_only=True, validator=one_of("abs", "rel")
    )
    eps: float | None = attrs.field(default=None, kw_only=True)
    rules: Literal["keras", "torch"] = attrs.field(
        default="keras", kw_only=True, validator=one_of("keras", "torch")
    )
    strict: bool = attrs.field(default=False, kw_only=True)
    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    direction: Direction = attrs.field(init=False)
    _cmp: Comparison = attrs.field(init=False, repr=False, eq=False)
    _label: str = attrs.field(init=False, repr=False, eq=False)
    # hot-path copies, derived from the fields above
    _improves: Any = attrs.field(init=False, repr=False, eq=False)
    _worst: float = attrs.field(init=False, repr=False, eq=False)
    _torch: bool = attrs.field(init=False, repr=False, eq=False)
    _eps: float | None = attrs.field(init=False, repr=False, eq=False)
    _scalar_min_lr: float = attrs.field(init=False, repr=False, eq=False)
    _scalar_floor: float | None = attrs.field(init=False, repr=False, eq=False)

    clocks: ClassVar[frozenset[Clock]] = frozenset({"round"})
    warn_if_missing: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f"'monitor' must be a non-empty str, got {self.monitor!r}")
        if self.eps is not None:
            check_finite("eps", self.eps)
            check_ge("eps", self.eps, 0.0)
        direction = infer_direction(self.monitor) if self.mode == "auto" else self.mode
        object.__setattr__(self, "direction", direction)
        cmp = Comparison(
            direction=direction,
            # Keras takes abs(min_delta); torch keeps a negative threshold as it is
            delta=self.min_delta if self.rules == "torch" else abs(self.min_delta),
            threshold_mode=self.threshold_mode,
            delta_applies_to="best" if self.rules == "torch" else "current",
            precision=self.precision,
        )
        object.__setattr__(self, "_cmp", cmp)
        object.__setattr__(self, "_label", f"ReduceLROnPlateau({self.monitor})")
        object.__setattr__(self, "_improves", cmp.improves)
        object.__setattr__(self, "_worst", cmp.worst)
        object.__setattr__(self, "_torch", self.rules == "torch")
        eps = self.eps if self.eps is not None else (1e-8 if self.rules == "torch" else None)
        object.__setattr__(self, "_eps", eps)
        scalar = None if isinstance(self.min_lr, tuple) else self.min_lr
        object.__setattr__(self, "_scalar_min_lr", 0.0 if scalar is None else scalar)
        floor = scalar
        if scalar is not None and self.precision == "float32":
            floor = float(np.float32(scalar))  # Keras: old_lr > np.float32(min_lr)
        object.__setattr__(self, "_scalar_floor", floor)

    @property
    def label(self) -> str:
        """How reasons name this policy, e.g. ``"ReduceLROnPlateau(val_loss)"``."""
        return self._label

    # -- learning rates -----------------------------------------------------------------------

    def min_lrs(self, n_groups: int | None) -> tuple[float, ...]:
        """``min_lr`` for ``n_groups`` rates (``None``: a single float rate)."""
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
        floor = self._scalar_floor
        if isinstance(lr, float) and floor is not None:
            # one rate and one min_lr: the common case, without building tuples
            new = max(lr * self.factor, self._scalar_min_lr)
            eps = self._eps
            if self._torch:
                return (new, True) if eps is not None and lr - new > eps else (lr, False)
            if lr > floor and (eps is None or lr - new > eps):
                return new, True
            return lr, False
        rates = lr if isinstance(lr, tuple) else (lr,)
        mins = self.min_lrs(len(lr) if isinstance(lr, tuple) else None)
        out: list[float] = []
        changed = False
        f32 = self.precision == "float32"
        eps = self._eps
        for old, lo in zip(rates, mins, strict=True):
            new = max(old * self.factor, lo)
            if self._torch:
                ok = old - new > eps  # type: ignore[operator]  # eps is set for torch rules
            else:
                # Keras compares the float32 rate with np.float32(min_lr)
                ok = old > (float(np.float32(lo)) if f32 else lo)
                if ok and eps is not None:
                    ok = old - new > eps
            if ok:
                out.append(new)
                changed = True
            else:
                out.append(old)
        return (tuple(out) if isinstance(lr, tuple) else out[0]), changed

    # -- transition ---------------------------------------------------------------------------

    def initial_state(self) -> PlateauState:
        return PlateauState()

    def update(self, state: PlateauState, obs: Observation) -> tuple[PlateauDecision, PlateauState]:
        """One evaluation round (see the module docstring for the rules)."""
        try:
            v = obs[1][self.monitor]
        except KeyError:
            v = None
        else:
            if v.__class__ is not float:
                v = coerce_metric(self.monitor, v)
        lr = obs[5]
        if v is None:
            if self.strict:
                raise MetricNotFoundError(
                    f"{self._label}: metric {self.monitor!r} is not in this round's metrics; "
                    f"present: {', '.join(map(repr, obs.metrics)) or 'none'}"
                )
            return self._decide(
                state, lr, False,
                _lazy(self._label, "missing_metric", _m_missing, self.monitor, tuple(obs.metrics)),
            )
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
        best, wait, cooldown_counter, reductions = state
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        label, name = self._label, self.monitor
        if best is None or self._improves(v, best):
            new: PlateauState = _new(PlateauState, (v, 0, cooldown_counter, reductions))
            why = _new(Reason, (label, "improved", _m_improved, (name, best, v)))
            decision: PlateauDecision = _new(
                PlateauDecision, (lr, False, v, 0, cooldown_counter, why)
            )
            return decision, new
        if cooldown_counter > 0:
            new = _new(PlateauState, (best, wait, cooldown_counter, reductions))
            return self._decide(
                new, lr, False, _lazy(label, "cooldown", _m_cooldown, name, v, best,
                                      cooldown_counter),
            )
        wait += 1
        if wait < self.patience:
            new = _new(PlateauState, (best, wait, 0, reductions))
            why = _new(Reason, (label, "no_improvement", _m_no_improvement,
                                (name, v, best, self.min_delta, wait, self.patience)))
            decision = _new(PlateauDecision, (lr, False, best, wait, 0, why))
            return decision, new
        new_lr, reduced = self.reduce(lr)
        if reduced:
            new = _new(PlateauState, (best, 0, self.cooldown, reductions + 1))
            return self._decide(
                new, new_lr, True,
                _lazy(label, "reduced_lr", _m_reduced, name, v, best, wait, self.patience, lr,
                      new_lr),
            )
        new = _new(PlateauState, (best, wait, 0, reductions))
        return self._decide(
            new, lr, False,
            _lazy(label, "at_min_lr", _m_at_min_lr, name, v, wait, self.patience, lr,
                  self.min_lr),
        )

    def _update_torch(
        self, state: PlateauState, v: float, lr: LR
    ) -> tuple[PlateauDecision, PlateauState]:
        best, wait, cooldown_counter, reductions = state
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
            new_lr, reduced = self.reduce(lr)
            new: PlateauState = _new(
                PlateauState, (best, 0, self.cooldown, reductions + (1 if reduced else 0))
            )
            if reduced:
                return self._decide(
                    new, new_lr, True,
                    _lazy(label, "reduced_lr", _m_torch_reduced, name, v, self.patience, lr,
                          new_lr),
                )
            return self._decide(
                new, lr, False,
                _lazy(label, "at_min_lr", _m_torch_at_min, name, v, self.patience, lr,
                      self.min_lr),
            )
        new = _new(PlateauState, (best, wait, cooldown_counter, reductions))
        if improved:
            why = _lazy(label, "improved", _m_improved, name, None, v)
        elif in_cooldown:
            why = _lazy(label, "cooldown", _m_cooldown, name, v, best, cooldown_counter)
        else:
            why = _lazy(label, "no_improvement", _m_torch_bad, name, v, best, wait, self.patience)
        return self._decide(new, lr, False, why)

    def _decide(
        self, state: PlateauState, lr: LR | None, reduced: bool, why: Reason
    ) -> tuple[PlateauDecision, PlateauState]:
        decision: PlateauDecision = _new(
            PlateauDecision, (lr, reduced, state[0], state[1], state[2], why)
        )
        return decision, state

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
        out = PlateauState(
            decode_float(d["best"], where=f"{where}.best"),
            decode_int(d["wait"], where=f"{where}.wait"),
            decode_int(d["cooldown_counter"], where=f"{where}.cooldown_counter"),
            decode_int(d["reductions"], where=f"{where}.reductions"),
        )
        for key in ("wait", "cooldown_counter", "reductions"):
            if getattr(out, key) < 0:
                raise StateError(f"{where}: {key!r} must be >= 0, got {getattr(out, key)}")
        return out

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def __repr__(self) -> str:
        return compact_repr(self)
