"""The Controller: the one mutable shell around the pure policies.

Theory of operation
-------------------
A Controller holds one state per policy, the learning rate, and two clocks that must never be
confused:

- **rounds** (``ctl.step(metrics)``): evaluation rounds, the end of an epoch or of a validation
  pass. Early stopping, plateau detection and checkpoint retention listen here.
- **optimizer steps** (``ctl.optimizer_step(metrics)``): one call after each ``optimizer.step()``.
  Per-step schedules and the batch-level NaN guard listen here.

Each call builds an :class:`~trainctl._policy.Observation`, runs every policy that listens to that
clock in order, threads the learning rate through the learning-rate policies, and merges their
decisions into one :class:`~trainctl.Decision`. A stop is final: once any policy said stop, every
later call says stop, and no policy runs again.

Learning rate:

- without a schedule, the rate is whatever the last plateau reduction left, or what the caller
  reported with ``lr=``. The arithmetic is torch's and Keras' own (``max(lr * factor,
  min_lr)``); for bit-exact Keras parity report the optimizer's rate with ``lr=`` each round,
  since Keras stores it in a float32 variable between reductions;
- with a schedule, group ``i`` runs at
  ``max(base_i * s(t) / s.base_lr * scale_i, min(base_i * s(t) / s.base_lr, min_lr_i))``:
  the schedule gives the shape, each param group keeps its own base rate (torch's LambdaLR), a
  plateau reduction multiplies ``scale_i`` by its factor, and a reduction never takes the rate below
  ``min_lr`` (nor above the schedule). ``t`` counts optimizer steps or rounds
  (``schedule_clock``); after ``t`` ticks the rate is ``s(t)``, as torch's schedulers do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import attrs

from ._decisions import Decision, Reason, SaveRequest
from ._early_stopping import EarlyStopping
from ._plateau import ReduceLROnPlateau
from ._policy import Clock, Observation
from ._state import StateError, decode_float, decode_int, decode_optional_int

__all__ = ["Controller", "ControllerStatistics", "simulate"]

FORMAT = "trainctl.Controller"
VERSION = 1

LR = float | tuple[float, ...]


@attrs.frozen(kw_only=True)
class ControllerStatistics:
    """A snapshot of a controller (trio-style): clocks, rate, stop flag and per-policy states."""

    rounds: int
    optimizer_steps: int
    epoch: int | None
    lr: float | tuple[float, ...] | None
    stopped: bool
    policy_states: tuple[Any, ...]


def _check_lr(name: str, lr: object) -> LR:
    if isinstance(lr, (list, tuple)):
        if not lr:
            raise ValueError(f"'{name}' must be a float or a non-empty sequence, got {lr!r}")
        return tuple(_check_lr(f"{name}[{i}]", v) for i, v in enumerate(lr))  # type: ignore[misc]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        try:
            value = float(lr)  # type: ignore[arg-type]  # numpy / tensor scalars
        except (TypeError, ValueError):
            raise TypeError(f"'{name}' must be a float, got {type(lr).__name__} {lr!r}") from None
    else:
        value = float(lr)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' must be a finite float >= 0, got {value!r}")
    return value


def _as_tuple(lr: LR) -> tuple[float, ...]:
    return lr if isinstance(lr, tuple) else (lr,)


def _like(template: LR, values: Sequence[float]) -> LR:
    return tuple(values) if isinstance(template, tuple) else values[0]


def _encode_lr(lr: LR | None) -> Any:
    if lr is None or isinstance(lr, float):
        return lr
    return list(lr)


def _decode_lr(value: Any, where: str) -> LR | None:
    if value is None:
        return None
    if isinstance(value, list):
        out = tuple(decode_float(v, where=where) for v in value)
        return tuple(x for x in out if x is not None)
    return decode_float(value, where=where)


class Controller:
    """Compose policies behind ``decision = ctl.step(metrics)``.

    Args:
        *policies: any number of policies (:class:`EarlyStopping`, :class:`ReduceLROnPlateau`,
            :class:`TerminateOnNaN`, a checkpoint policy, ...), run in this order.
        lr: the learning rate (a float, or one per param group). Required by plateau policies
            unless each ``step`` reports it with ``lr=``; with a schedule, the base rate of each
            group (default: the schedule's own ``base_lr``).
        schedule: a learning-rate schedule (``trainctl.schedules``), or ``None``.
        schedule_clock: ``"optimizer_step"`` (default) or ``"round"``: what ``t`` counts.

    >>> import trainctl
    >>> ctl = trainctl.Controller(
    ...     trainctl.EarlyStopping(monitor="val_loss", patience=2),
    ...     trainctl.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
    ...     lr=1e-3,
    ... )
    >>> d = ctl.step({"val_loss": 0.9})
    >>> d.stop, d.lr
    (False, 0.001)
    >>> d = ctl.step({"val_loss": 0.95})
    >>> d.stop, d.lr, [r.event for r in d.reasons]
    (False, 0.0005, ['no_improvement', 'reduced_lr'])
    """

    def __init__(
        self,
        *policies: Any,
        lr: float | Sequence[float] | None = None,
        schedule: Any = None,
        schedule_clock: Literal["optimizer_step", "round"] = "optimizer_step",
    ) -> None:
        for i, p in enumerate(policies):
            if isinstance(p, type):
                raise TypeError(
                    f"policy {i} is the class {p.__name__}, not an instance: "
                    f"did you pass a class instead of an instance? Write {p.__name__}(...)"
                )
            for attr in ("update", "initial_state", "state_to_dict", "state_from_dict", "clocks"):
                if not hasattr(p, attr):
                    raise TypeError(
                        f"policy {i} ({type(p).__name__}) is not a trainctl policy: it has no "
                        f"{attr!r}; did you pass a class instead of an instance?"
                    )
        if schedule_clock not in ("optimizer_step", "round"):
            raise ValueError(
                f"'schedule_clock' must be one of 'optimizer_step', 'round', got {schedule_clock!r}"
            )
        if schedule is not None and not (callable(schedule) and hasattr(schedule, "base_lr")):
            raise TypeError(
                f"'schedule' must be a trainctl schedule (callable with a base_lr), got "
                f"{type(schedule).__name__}"
            )
        self._policies: tuple[Any, ...] = tuple(policies)
        self._schedule = schedule
        self._schedule_clock: Clock = schedule_clock
        base = None if lr is None else _check_lr("lr", lr)
        if schedule is not None and base is None:
            base = float(schedule.base_lr)
        self._base_lr: LR | None = base
        plateaus = [p for p in policies if isinstance(p, ReduceLROnPlateau)]
        if base is not None:
            for p in plateaus:
                p.min_lrs(len(base) if isinstance(base, tuple) else None)  # shape check, now
        #: each group's floor under a schedule (the largest min_lr of the plateau policies)
        self._mins: tuple[float, ...] | None = None if base is None else self._min_lrs(base)
        kinds = [_kind(p) for p in self._policies]
        self._round_policies = tuple(
            (i, p, k) for i, (p, k) in enumerate(zip(self._policies, kinds, strict=True))
            if "round" in p.clocks
        )
        self._step_policies = tuple(
            (i, p, k) for i, (p, k) in enumerate(zip(self._policies, kinds, strict=True))
            if "optimizer_step" in p.clocks
        )
        self._round_schedule = schedule is not None and schedule_clock == "round"
        self._step_schedule = schedule is not None and schedule_clock == "optimizer_step"
        self._warned: set[tuple[str, str]] = set()
        self.reset()

    # -- the configuration ----------------------------------------------------------------------

    @property
    def policies(self) -> tuple[Any, ...]:
        """The policies, in the order they run."""
        return self._policies

    @property
    def schedule(self) -> Any:
        """The learning-rate schedule, or ``None``."""
        return self._schedule

    @property
    def schedule_clock(self) -> Clock:
        """What the schedule's step counts: ``"optimizer_step"`` or ``"round"``."""
        return self._schedule_clock

    def reset(self) -> None:
        """Forget all progress: initial states, clocks at zero, the initial learning rate."""
        self._states: list[Any] = [p.initial_state() for p in self._policies]
        self._rounds = 0
        self._steps = 0
        self._epoch: int | None = None
        self._stopped = False
        self._stop_details: tuple[Any, ...] = ()
        base = self._base_lr
        self._scale: tuple[float, ...] | None = (
            None if self._schedule is None or base is None else (1.0,) * len(_as_tuple(base))
        )
        self._lr: LR | None = self._scheduled_lr(0) if self._schedule is not None else base

    # -- reading --------------------------------------------------------------------------------

    @property
    def lr(self) -> float | tuple[float, ...] | None:
        """The learning rate to use now (one per param group if a tuple was given)."""
        return self._lr

    @property
    def rounds(self) -> int:
        """Evaluation rounds completed (calls of :meth:`step`)."""
        return self._rounds

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps completed (calls of :meth:`optimizer_step`)."""
        return self._steps

    @property
    def stopped(self) -> bool:
        """Whether some policy has said stop (final)."""
        return self._stopped

    @property
    def states(self) -> tuple[Any, ...]:
        """The current state of each policy (frozen values)."""
        return tuple(self._states)

    def statistics(self) -> ControllerStatistics:
        """A frozen snapshot of the clocks, the rate and the policy states."""
        return ControllerStatistics(
            rounds=self._rounds,
            optimizer_steps=self._steps,
            epoch=self._epoch,
            lr=self._lr,
            stopped=self._stopped,
            policy_states=tuple(self._states),
        )

    # -- the two clocks -------------------------------------------------------------------------

    def step(
        self,
        metrics: Mapping[str, Any],
        *,
        epoch: int | None = None,
        lr: float | Sequence[float] | None = None,
        time: float | None = None,
    ) -> Decision:
        """One evaluation round (the end of an epoch, or of a validation pass).

        Args:
            metrics: name -> number (floats, ints, numpy scalars, one-element arrays/tensors).
            epoch: the 0-based epoch index this round belongs to (default: the round index).
            lr: the rate the optimizer holds now, if the caller reads it back. Without a
                schedule a rate changed by hand is adopted, not overwritten; with a schedule it
                serves this round's plateau decision only and a differing rate warns (rounding
                to float32, as a Keras variable holds it, is not a difference).
            time: training time in seconds, for time-based checkpoint policies.
        """
        if type(metrics) is not dict and not isinstance(metrics, Mapping):
            raise TypeError(
                f"'metrics' must be a mapping of name -> number, got {type(metrics).__name__}"
            )
        if epoch is None:
            epoch = self._rounds
        elif isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"'epoch' must be an int >= 0, got {epoch!r}")
        if lr is not None:
            self._adopt_lr(_check_lr("lr", lr))
        self._rounds += 1
        self._epoch = epoch
        if self._stopped:
            return self._final_decision("round")
        obs: Observation = _new(
            Observation, ("round", metrics, epoch, self._rounds - 1, self._steps, self._lr, time)
        )
        decision = self._run("round", self._round_policies, obs)
        if self._round_schedule and not decision.stop:
            new = self._scheduled_lr(self._rounds)
            changed = decision.lr_changed or new != self._lr
            self._lr = new
            decision = decision._replace(lr=new, lr_changed=changed)
        return decision

    def optimizer_step(
        self,
        metrics: Mapping[str, Any] | None = None,
        *,
        epoch: int | None = None,
        time: float | None = None,
    ) -> Decision:
        """One optimizer step: call it after ``optimizer.step()``; use ``decision.lr`` next.

        Args:
            metrics: e.g. ``{"loss": loss.item()}``, for per-step policies such as
                :class:`TerminateOnNaN`; the schedule and step-triggered checkpoints advance
                either way.
            epoch: the 0-based epoch in progress (default: one past the last round's epoch,
                i.e. rounds are taken to be epochs; pass it when validation runs several times
                per epoch).
            time: training time in seconds, for time-triggered checkpoints.
        """
        self._steps += 1
        if self._stopped:
            return self._final_decision("optimizer_step")
        old = self._lr
        if self._step_policies:
            if epoch is None:
                epoch = 0 if self._epoch is None else self._epoch + 1
            elif isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"'epoch' must be an int >= 0, got {epoch!r}")
            obs: Observation = _new(
                Observation,
                ("optimizer_step", _NO_METRICS if metrics is None else metrics, epoch,
                 self._rounds, self._steps, self._lr, time),
            )
            decision = self._run("optimizer_step", self._step_policies, obs)
        else:
            decision = Decision(
                clock="optimizer_step", round=self._rounds, epoch=self._epoch,
                optimizer_steps=self._steps, lr=self._lr,
            )
        if self._step_schedule and not decision.stop:
            self._lr = self._scheduled_lr(self._steps)
            decision = decision._replace(lr=self._lr, lr_changed=self._lr != old)
        return decision

    def finish(self) -> Decision:
        """The end of training, whatever ended it: says whether to restore the best weights.

        Keras restores the best weights at the end of training even when early stopping did not
        end it; call this once after the loop and honour ``decision.restore_best``.
        """
        details = []
        restore = False
        for policy, state in zip(self._policies, self._states, strict=True):
            if isinstance(policy, EarlyStopping):
                d = policy.finish(state)
                restore = restore or d.restore_best
                details.append(d)
        return Decision(
            clock="end", round=self._rounds, epoch=self._epoch, optimizer_steps=self._steps,
            stop=True, lr=self._lr, restore_best=restore, details=tuple(details),
        )

    # -- internals ------------------------------------------------------------------------------

    def _run(
        self, clock: Clock, policies: tuple[tuple[int, Any, int], ...], obs: Observation
    ) -> Decision:
        states = self._states
        lr = self._lr
        stop = snapshot = restore = lr_changed = False
        save: SaveRequest | None = None
        last: SaveRequest | None = None
        delete: tuple[str, ...] = ()
        details = []
        for i, policy, kind in policies:
            d, states[i] = policy.update(states[i], obs)
            details.append(d)
            if d.reason[1] == "missing_metric" and policy.warn_if_missing:
                self._warn_missing(policy, obs[1])
            if kind == _PLATEAU:
                if d[1]:  # reduced
                    lr = self._apply_reduction(policy, lr, d[0])
                    lr_changed = True
                    obs = obs._replace(lr=lr)
                continue
            if d[0]:  # every other decision starts with `stop`
                stop = True
            if kind == _EARLY_STOPPING:
                if d[2]:
                    snapshot = True
                if d[3]:
                    restore = True
            elif kind == _OTHER:
                req = getattr(d, "save", None)
                if req is not None:
                    save = req
                req = getattr(d, "last", None)
                if req is not None:
                    last = req
                delete = delete + tuple(getattr(d, "delete", ()))
        self._lr = lr
        out: Decision = _new(
            Decision,
            (clock, self._rounds, self._epoch, self._steps, stop, lr, lr_changed, snapshot,
             restore, save, last, delete, tuple(details)),
        )
        if stop:
            self._stopped = True
            self._stop_details = tuple(
                d for d in details if d.reason.event not in _QUIET_EVENTS
            )
        return out

    def _apply_reduction(self, policy: ReduceLROnPlateau, old: LR | None, new: LR | None) -> LR:
        assert old is not None and new is not None
        if self._schedule is None or self._scale is None:
            return new
        # with a schedule, the reduction becomes a multiplier on the reduced groups
        olds, news = _as_tuple(old), _as_tuple(new)
        self._scale = tuple(
            s * policy.factor if n != o else s
            for s, o, n in zip(self._scale, olds, news, strict=True)
        )
        return new

    def _scheduled_lr(self, t: int) -> LR:
        sched, base = self._schedule, self._base_lr
        assert sched is not None and base is not None
        value = float(sched(t))
        ref = float(sched.base_lr)
        scale = self._scale or (1.0,) * len(_as_tuple(base))
        mins = self._mins
        assert mins is not None
        out = []
        for b, s, lo in zip(_as_tuple(base), scale, mins, strict=True):
            # torch's LambdaLR rule; exact s(t) when the group runs at the schedule's own rate
            plain = value if b == ref else (b * value / ref if ref else 0.0)
            out.append(plain if s == 1.0 else max(plain * s, min(plain, lo)))
        return _like(base, out)

    def _min_lrs(self, base: LR) -> tuple[float, ...]:
        n = len(base) if isinstance(base, tuple) else None
        mins = [0.0] * (1 if n is None else n)
        for p in self._policies:
            if isinstance(p, ReduceLROnPlateau):
                mins = [max(a, b) for a, b in zip(mins, p.min_lrs(n), strict=True)]
        return tuple(mins)

    def _adopt_lr(self, lr: LR) -> None:
        mine = self._lr
        if mine is not None and (
            isinstance(lr, tuple) != isinstance(mine, tuple)
            or len(_as_tuple(lr)) != len(_as_tuple(mine))
        ):
            got = f"{len(lr)} values" if isinstance(lr, tuple) else "a single rate"
            want = f"{len(mine)} rates" if isinstance(mine, tuple) else "a single rate"
            raise ValueError(
                f"'lr' has {got} but the controller manages {want}; report one rate per "
                "param group, in the shape given to Controller(lr=...)"
            )
        if self._schedule is not None and mine is not None:
            # the schedule owns the rate: a hand change cannot persist past the next tick
            for got_i, want_i in zip(_as_tuple(lr), _as_tuple(mine), strict=True):
                if abs(got_i - want_i) > 1e-6 * max(abs(want_i), 1e-12):
                    warnings.warn(
                        f"step(lr={lr!r}) differs from the scheduled rate {mine!r}: with a "
                        "schedule the reported rate is used for this round's plateau decision "
                        "only and the next tick sets the scheduled rate again; change the "
                        "schedule (or its base rate) instead",
                        UserWarning,
                        stacklevel=3,
                    )
                    break
        self._lr = lr

    def _warn_missing(self, policy: Any, metrics: Mapping[str, Any]) -> None:
        key = (policy.label, policy.monitor)
        if key in self._warned:
            return
        self._warned.add(key)
        present = ", ".join(metrics) or "none"
        warnings.warn(
            f"{policy.label}: metric {policy.monitor!r} is not available (present: {present}); "
            "the round is skipped and the policy's state is unchanged. This warning is shown "
            "once; pass strict=True to make it an error.",
            UserWarning,
            stacklevel=4,
        )

    def _final_decision(self, clock: Literal["round", "optimizer_step"]) -> Decision:
        return Decision(
            clock=clock, round=self._rounds, epoch=self._epoch, optimizer_steps=self._steps,
            stop=True, lr=self._lr, details=self._stop_details,
        )

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole progress as strict-JSON plain data, with a format version.

        ``json.loads(json.dumps(ctl.state_dict()))`` loads back into a controller of the same
        configuration and continues with exactly the same decisions.
        """
        return {
            "format": FORMAT,
            "version": VERSION,
            "policies": [
                {"config": p.config_dict(), "state": p.state_to_dict(s)}
                for p, s in zip(self._policies, self._states, strict=True)
            ],
            "schedule": None if self._schedule is None else repr(self._schedule),
            "rounds": self._rounds,
            "optimizer_steps": self._steps,
            "epoch": self._epoch,
            "lr": _encode_lr(self._lr),
            "lr_scale": None if self._scale is None else list(self._scale),
            "stopped": self._stopped,
            "stop_reasons": [
                [r.source, r.event, r.message] for r in (d.reason for d in self._stop_details)
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any], *, strict: bool = True) -> None:
        """Restore progress saved by :meth:`state_dict`.

        Raises :class:`StateError` (a ``ValueError``) naming what does not fit: another format
        or version, another number or kind of policies, or (with ``strict=True``) a policy whose
        configuration differs (``strict=False`` accepts changed settings such as a new patience).
        Nothing is changed unless everything fits.
        """
        if not isinstance(state, Mapping):
            raise StateError(f"controller state must be a dict, got {type(state).__name__}")
        if state.get("format") != FORMAT:
            raise StateError(
                f"not a trainctl controller state: 'format' is {state.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        if state.get("version") != VERSION:
            raise StateError(
                f"controller state version {state.get('version')!r} is not supported by this "
                f"trainctl (version {VERSION})"
            )
        saved = state.get("policies")
        if not isinstance(saved, list) or len(saved) != len(self._policies):
            n = len(saved) if isinstance(saved, list) else "no"
            raise StateError(
                f"the state holds {n} policies but this controller has {len(self._policies)}"
            )
        new_states = []
        for i, (policy, entry) in enumerate(zip(self._policies, saved, strict=True)):
            if not isinstance(entry, Mapping) or "config" not in entry or "state" not in entry:
                raise StateError(f"policy {i}: expected {{'config': ..., 'state': ...}}")
            mine, theirs = policy.config_dict(), entry["config"]
            if not isinstance(theirs, Mapping) or theirs.get("type") != mine["type"]:
                other = theirs.get("type") if isinstance(theirs, Mapping) else theirs
                raise StateError(
                    f"policy {i} is a {mine['type']} but the state holds a {other}"
                )
            if strict and dict(theirs) != mine:
                diffs = [
                    f"{k!r} was {theirs.get(k)!r}, is {mine.get(k)!r}"
                    for k in sorted(set(mine) | set(theirs))
                    if theirs.get(k) != mine.get(k)
                ]
                raise StateError(
                    f"policy {i} {policy.label}: the state comes from another configuration ("
                    + "; ".join(diffs)
                    + "); pass strict=False to load it anyway"
                )
            new_states.append(policy.state_from_dict(entry["state"]))
        sched = None if self._schedule is None else repr(self._schedule)
        if strict and state.get("schedule") != sched:
            raise StateError(
                f"the state was saved with schedule {state.get('schedule')!r}, this controller "
                f"has {sched!r}; pass strict=False to load it anyway"
            )
        rounds = decode_int(state.get("rounds"), where="rounds")
        steps = decode_int(state.get("optimizer_steps"), where="optimizer_steps")
        epoch = decode_optional_int(state.get("epoch"), where="epoch")
        lr = _decode_lr(state.get("lr"), "lr")
        raw_scale = state.get("lr_scale")
        scale = None
        if raw_scale is not None:
            if not isinstance(raw_scale, list):
                raise StateError(f"lr_scale: expected a list, got {raw_scale!r}")
            scale = tuple(float(decode_float(v, where="lr_scale") or 0.0) for v in raw_scale)
        if (lr is None) != (self._lr is None) or (
            lr is not None and self._lr is not None
            and len(_as_tuple(lr)) != len(_as_tuple(self._lr))
        ):
            raise StateError(
                f"the state's learning rate {lr!r} does not fit this controller's {self._lr!r} "
                "(one rate per param group)"
            )
        stopped = state.get("stopped")
        if not isinstance(stopped, bool):
            raise StateError(f"stopped: expected a bool, got {stopped!r}")
        raw_reasons = state.get("stop_reasons", [])
        try:
            details = tuple(_Stopped(Reason(s, e, m)) for s, e, m in raw_reasons)
        except (TypeError, ValueError):
            raise StateError(f"stop_reasons: expected [source, event, message] triples, got "
                             f"{raw_reasons!r}") from None
        self._states = new_states
        self._rounds, self._steps, self._epoch = rounds, steps, epoch
        self._lr, self._scale = lr, scale
        self._stopped, self._stop_details = stopped, details

    def clone(self) -> Controller:
        """A new controller with the same configuration and progress (nothing shared)."""
        other = Controller(
            *self._policies,
            lr=self._base_lr,
            schedule=self._schedule,
            schedule_clock=self._schedule_clock,
        )
        other.load_state_dict(self.state_dict())
        return other

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self._policies)
        extra = "" if self._schedule is None else f", schedule={self._schedule!r}"
        return f"Controller({inner}, lr={self._base_lr!r}{extra})"


_QUIET_EVENTS = frozenset({"missing_metric", "finite"})
_NO_METRICS: Mapping[str, Any] = MappingProxyType({})
_new = tuple.__new__
_EARLY_STOPPING, _PLATEAU, _OTHER = 0, 1, 2


def _kind(policy: Any) -> int:
    if isinstance(policy, EarlyStopping):
        return _EARLY_STOPPING
    if isinstance(policy, ReduceLROnPlateau):
        return _PLATEAU
    return _OTHER


class _Stopped(NamedTuple):
    """A stop restored from a saved state: only its reason survives the round trip."""

    reason: Reason
    stop: bool = True


def simulate(
    policy_or_controller: Any,
    metric_stream: Iterable[Mapping[str, Any]],
    *,
    lr: float | Sequence[float] | None = None,
    until_stop: bool = True,
) -> list[Decision]:
    """Run a policy (or a copy of a controller) over recorded metrics; return each round's decision.

    The way to unit-test a training policy without a GPU: each item of ``metric_stream`` is one
    evaluation round. With ``until_stop=True`` the run ends at the first stop, as training would.
    A controller passed in is cloned, never advanced.

    >>> import trainctl
    >>> es = trainctl.EarlyStopping(monitor="loss", patience=2)
    >>> losses = [10, 9, 8, 9, 8.9, 8.8, 8.7, 8.6, 8.5]
    >>> decisions = trainctl.simulate(es, [{"loss": x} for x in losses])
    >>> len(decisions) - 1  # the 0-based epoch at which training stops
    4
    """
    if isinstance(policy_or_controller, Controller):
        ctl = policy_or_controller.clone()
        if lr is not None:
            raise TypeError("'lr' is only for a bare policy; a controller carries its own rate")
    else:
        ctl = Controller(policy_or_controller, lr=lr)
    out: list[Decision] = []
    for metrics in metric_stream:
        d = ctl.step(metrics)
        out.append(d)
        if until_stop and d.stop:
            break
    return out

