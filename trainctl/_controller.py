"""The Controller: the one mutable shell around the pure policies.

Theory of operation
-------------------
A Controller holds one state per policy, the learning rate, and two clocks that must never be
confused:

- **rounds** (``ctl.step(metrics)``): evaluation rounds, the end of an epoch or of a validation
  pass. Early stopping, plateau detection and checkpoint retention listen here.
- **optimizer steps** (``ctl.optimizer_step(metrics)``): one call after each ``optimizer.step()``.
  Per-step schedules and the batch-level NaN guard listen here.

Each call builds an :class:`~trainctl.Observation`, runs every policy that listens to that clock,
in order, and merges their decisions into one :class:`~trainctl.Decision`. The Controller knows
no concrete policy: it reads each decision by field name (the contract in
:mod:`trainctl._policy`) and merges with one rule, :meth:`Controller._run`:

==================  =============================================================================
field               merge
==================  =============================================================================
``stop``            any policy stops -> stop. A stop by a policy whose ``stop_is_final`` is true
                    (the default) is final: every later call says stop and no policy runs again
``lr`` /            rate requests apply in policy order; each later policy observes the rate left
``lr_factor``       by the earlier ones; no request takes a group below the largest ``min_lrs``
                    floor any policy declares
``snapshot_best``,  any policy asks -> asked
``restore_best``
``save``, ``last``  at most one policy may ask for each per call (two is an error naming both)
``delete``          the union, in policy order
==================  =============================================================================

A call is all or nothing: the arguments, every policy's transition and the schedule are evaluated
first; if anything raises, no clock, state or rate has moved, so the caller can fix the input and
call again.

Learning rate:

- without a schedule, the rate is whatever the last request left, or what the caller reported with
  ``lr=``. A factor request is applied with torch's and Keras' own arithmetic, ``max(lr * factor,
  min_lr)``; for bit-exact Keras parity report the optimizer's rate with ``lr=`` each round, since
  Keras stores it in a float32 variable between reductions;
- with a schedule, group ``i`` runs at ``scheduled_rate(group_rate(base_i, s(t), s.base_lr),
  scale_i, floor_i)`` (:mod:`trainctl._rates`): the schedule gives the shape, each param group
  keeps its own base rate (torch's LambdaLR), a factor request multiplies ``scale_i``, and the
  result is never below the floor nor above the schedule. ``t`` counts optimizer steps or rounds
  (``schedule_clock``); after ``t`` ticks the rate is ``s(t)``, as torch's schedulers do. A
  schedule value that is negative or not finite raises before it becomes a rate.

A Controller belongs to one thread: a call that starts while another call on the same controller
is running raises ``RuntimeError`` instead of losing an update.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import attrs

from ._decisions import (
    Decision,
    Reason,
    SaveRequest,
    epoch_after,
    make_decision,
    plain_fields,
    reasons_of,
)
from ._policy import _DECLARED as _FIELDS
from ._policy import Clock, Observation, decision_fields, make_observation
from ._rates import group_rate, reduced_rate, schedule_rate, scheduled_rate
from ._state import StateError, decode_float
from ._validation import check_bool, check_finite, check_int

__all__ = ["Controller", "ControllerStatistics", "StoppedDetail", "simulate"]

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


# -- argument checks ---------------------------------------------------------------------------


def _check_rate(name: str, value: object) -> float:
    rate = check_finite(name, value)
    if rate < 0:
        raise ValueError(f"'{name}' must be >= 0, got {value!r}")
    return rate


def _check_lr(name: str, lr: object) -> LR:
    """A learning rate: a finite float >= 0, or a non-empty sequence of them (one per group)."""
    if isinstance(lr, (list, tuple)) or (hasattr(lr, "ndim") and getattr(lr, "ndim", 0) == 1):
        values = list(lr)  # type: ignore[call-overload]
        if not values:
            raise ValueError(f"'{name}' must be a float or a non-empty sequence, got {lr!r}")
        return tuple(_check_rate(f"{name}[{i}]", v) for i, v in enumerate(values))
    if hasattr(lr, "item") and not isinstance(lr, numbers.Real):
        with contextlib.suppress(TypeError, ValueError):  # a one-element tensor or array
            lr = lr.item()
    return _check_rate(name, lr)


def _check_epoch(epoch: object) -> int:
    n = check_int("epoch", epoch)
    if n < 0:
        raise ValueError(f"'epoch' must be >= 0, got {n}")
    return n


def _check_time(time: object) -> float | None:
    return None if time is None else check_finite("time", time)


def _check_metrics(metrics: object, where: str) -> Mapping[str, Any]:
    if type(metrics) is dict or isinstance(metrics, Mapping):
        return metrics
    raise TypeError(
        f"'metrics' must be a mapping of name -> number, got {type(metrics).__name__} "
        f"{metrics!r:.60} (in {where})"
    )


def _as_tuple(lr: LR) -> tuple[float, ...]:
    return lr if isinstance(lr, tuple) else (lr,)


def _like(template: LR, values: Sequence[float]) -> LR:
    return tuple(values) if isinstance(template, tuple) else values[0]


def _shape(lr: LR | None) -> int | None:
    return len(lr) if isinstance(lr, tuple) else None


_REQUIRED = ("label", "clocks", "update", "initial_state", "state_to_dict", "state_from_dict",
             "config_dict")


def _check_policy(i: int, policy: object) -> None:
    if isinstance(policy, type):
        raise TypeError(
            f"policy {i} is the class {policy.__name__}, not an instance: write "
            f"{policy.__name__}(...)"
        )
    missing = [name for name in _REQUIRED if not hasattr(policy, name)]
    if missing:
        raise TypeError(
            f"policy {i} ({type(policy).__name__}) is not a trainctl policy: it has no "
            f"{', '.join(map(repr, missing))} (see trainctl.Policy for the contract)"
        )
    clocks = policy.clocks  # type: ignore[attr-defined]
    if not clocks or not set(clocks) <= {"round", "optimizer_step"}:
        raise ValueError(
            f"policy {i} ({policy.label}): 'clocks' must be a non-empty set of 'round' and "  # type: ignore[attr-defined]
            f"'optimizer_step', got {clocks!r}"
        )


# -- the stop details that survive a resume ----------------------------------------------------


class StoppedDetail(Mapping[str, Any]):
    """A policy's decision from the round that stopped a run, as restored from a saved state.

    The plain fields of the original decision (``best``, ``best_epoch``, ``wait``, ...) read as
    attributes, and ``reason`` is the original reason, so ``decision.details[i].best`` works on
    a run resumed after it stopped.
    """

    __slots__ = ("_fields", "reason", "stop")

    def __init__(self, fields: Mapping[str, Any], reason: Reason) -> None:
        self._fields = dict(fields)
        self.reason = reason
        self.stop = True

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __iter__(self) -> Any:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoppedDetail):
            return NotImplemented
        return self._fields == other._fields and self.reason == other.reason

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> tuple[dict[str, Any], Reason]:
        return (self._fields, self.reason)

    def __setstate__(self, state: tuple[dict[str, Any], Reason]) -> None:
        self._fields, self.reason = state
        self.stop = True

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"StoppedDetail({inner}, reason={self.reason!r})"


# -- the Controller ----------------------------------------------------------------------------


class Controller:
    """Compose policies behind ``decision = ctl.step(metrics)``.

    Args:
        *policies: any number of policies (:class:`EarlyStopping`, :class:`ReduceLROnPlateau`,
            :class:`TerminateOnNaN`, :class:`CheckpointPolicy`, or your own: see
            :class:`~trainctl.Policy`), run in this order.
        lr: the learning rate (a float, or one per param group). Needed by plateau policies
            unless each ``step`` reports it with ``lr=``. With a schedule: omit it (the
            schedule's ``base_lr`` is the rate), or give one base rate per param group as a
            tuple; a single float that differs from the schedule's base rate is refused.
        schedule: a learning-rate schedule (``trainctl.schedules``), or ``None``.
        schedule_clock: ``"optimizer_step"`` (default) or ``"round"``: what ``t`` counts.
        warn_missing: warn (once per policy) when a monitored metric is missing from a round;
            ``False`` leaves it to the caller (the Keras drop-ins print Keras' own text, every
            epoch, from the decision's ``"missing_metric"`` event).
        log: where every decision goes: a :class:`~trainctl.DecisionLog`, a
            :class:`~trainctl.Printer`, any callable taking each decision, or a list of them.
            A sink's optional ``start(description)`` is called here, its ``rewind(rounds,
            optimizer_steps)`` when a state is loaded (a resumed run).
        verbose: ``True`` adds a :class:`~trainctl.Printer` (one line per round on stdout)
            to the sinks.

    Numbers may be numpy scalars. A Controller belongs to one thread.

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
        warn_missing: bool = True,
        log: Any = None,
        verbose: bool = False,
    ) -> None:
        for i, p in enumerate(policies):
            _check_policy(i, p)
        if schedule_clock not in ("optimizer_step", "round"):
            raise ValueError(
                f"'schedule_clock' must be one of 'optimizer_step', 'round', got {schedule_clock!r}"
            )
        if schedule is not None:
            _check_schedule(schedule)
        base = None if lr is None else _check_lr("lr", lr)
        if schedule is not None:
            reference = float(schedule.base_lr)
            if isinstance(base, float) and base != reference:
                raise ValueError(
                    f"'lr' ({base!r}) conflicts with the schedule's base rate {reference!r}: with "
                    "a schedule the schedule sets the rate. Drop lr= (or build the schedule with "
                    "the rate you want), or give one base rate per param group as a tuple"
                )
            if base is None:
                base = reference
        self._policies: tuple[Any, ...] = tuple(policies)
        self._labels: tuple[str, ...] = tuple(str(p.label) for p in policies)
        self._schedule = schedule
        self._schedule_clock: Clock = schedule_clock
        self._base_lr: LR | None = base
        self._floor_hooks = tuple(p for p in policies if callable(getattr(p, "min_lrs", None)))
        self._floors: dict[int | None, tuple[float, ...]] = {}
        if base is not None:
            self._floor(_shape(base))  # a per-group min_lr of the wrong length fails now
        warn_missing = check_bool("warn_missing", warn_missing)
        self._warn_missing_flag = warn_missing
        entries = [
            (i, p, bool(getattr(p, "stop_is_final", True)),
             warn_missing and bool(getattr(p, "warn_if_missing", True)), self._labels[i])
            for i, p in enumerate(self._policies)
        ]
        self._round_policies = tuple(e for e in entries if "round" in e[1].clocks)
        self._step_policies = tuple(e for e in entries if "optimizer_step" in e[1].clocks)
        self._round_labels = tuple(e[4] for e in self._round_policies)
        self._step_labels = tuple(e[4] for e in self._step_policies)
        self._round_schedule = schedule is not None and schedule_clock == "round"
        self._step_schedule = schedule is not None and schedule_clock == "optimizer_step"
        self._warned: set[tuple[str, str]] = set()
        # set while a call runs: a second call entering meanwhile (another thread) is refused
        self._busy = False
        sinks = list(log) if isinstance(log, (list, tuple)) else ([] if log is None else [log])
        for i, sink in enumerate(sinks):
            if not callable(sink):
                where = "'log'" if len(sinks) == 1 and not isinstance(log, (list, tuple)) else (
                    f"'log'[{i}]"
                )
                raise TypeError(
                    f"{where} must be a trainctl.DecisionLog, a trainctl.Printer or a callable "
                    f"taking each decision, got {type(sink).__name__}"
                )
        if check_bool("verbose", verbose):
            from ._printer import Printer

            sinks.append(Printer())
        self._log: Any = sinks[0] if len(sinks) == 1 else (_Sinks(sinks) if sinks else None)
        self.reset()
        start = getattr(self._log, "start", None)
        if start is not None:
            start(self.describe())

    # -- the configuration ----------------------------------------------------------------------

    @property
    def policies(self) -> tuple[Any, ...]:
        """The policies, in the order they run."""
        return self._policies

    @property
    def log(self) -> Any:
        """Where the decisions go (``log=``; several sinks as one), or ``None``."""
        return self._log

    @property
    def labels(self) -> tuple[str, ...]:
        """Each policy's label, in policy order (``Decision.detail(label)`` finds one)."""
        return self._labels

    @property
    def schedule(self) -> Any:
        """The learning-rate schedule, or ``None``."""
        return self._schedule

    @property
    def schedule_clock(self) -> Clock:
        """What the schedule's step counts: ``"optimizer_step"`` or ``"round"``."""
        return self._schedule_clock

    @property
    def base_lr(self) -> float | tuple[float, ...] | None:
        """The configured rate (``lr=``, or the schedule's base rate), or ``None``."""
        return self._base_lr

    @property
    def owns_lr(self) -> bool:
        """Whether the controller sets the rate rather than only following the optimizer's: it
        was given ``lr=``, a schedule, or a policy with a rate floor (``min_lrs``, e.g. a plateau
        policy). Adapters then write its rate into the optimizer at the start and at every
        round; any rate a decision changes is written either way."""
        return (
            self._schedule is not None or self._base_lr is not None or bool(self._floor_hooks)
        )

    def describe(self) -> dict[str, Any]:
        """The configuration as plain data: each policy's ``config_dict()``, the schedule's
        identity, its clock and the base rate (what :meth:`from_state_dict` rebuilds from)."""
        schedule = self._schedule
        ident: str | None = None
        if schedule is not None:
            try:
                ident = _schedule_id(schedule)
            except ValueError:
                ident = repr(schedule)
        base = self._base_lr
        return {
            "policies": [p.config_dict() for p in self._policies],
            "schedule": ident,
            "schedule_clock": self._schedule_clock,
            "lr": list(base) if isinstance(base, tuple) else base,
        }

    def reset(self) -> None:
        """Forget all progress: initial states, clocks at zero, the initial learning rate."""
        self._states: list[Any] = [p.initial_state() for p in self._policies]
        self._rounds = 0
        self._steps = 0
        self._epoch: int | None = None
        self._stopped = False
        self._stop_details: tuple[Any, ...] = ()
        self._stop_labels: tuple[str, ...] = ()
        base = self._base_lr
        self._scale: tuple[float, ...] | None = (
            None if self._schedule is None or base is None else (1.0,) * len(_as_tuple(base))
        )
        self._lr: LR | None = (
            self._scheduled_lr(0, self._scale) if self._schedule is not None else base
        )

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
    def epoch(self) -> int | None:
        """The 0-based epoch of the last round, or ``None`` before the first."""
        return self._epoch

    @property
    def stopped(self) -> bool:
        """Whether a policy has said a final stop."""
        return self._stopped

    @property
    def states(self) -> tuple[Any, ...]:
        """The current state of each policy (frozen values)."""
        return tuple(self._states)

    def replace_state(self, policy: int | str, state: Any) -> None:
        """Put ``state`` in place as one policy's state (by index or label), checked by the
        policy's own state loader first (a round trip through its plain-data form). For adapters
        whose framework lets users assign state attributes (Keras' ``es.wait = 3``)."""
        if self._busy:
            raise _concurrent("replace_state")
        i = policy if isinstance(policy, int) else self._labels.index(policy)
        p = self._policies[i]
        checked = p.state_from_dict(json.loads(json.dumps(p.state_to_dict(state))))
        self._states[i] = checked

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
                Only read.
            epoch: the 0-based epoch index this round belongs to (default: the round index).
            lr: the rate the optimizer holds now, if the caller reads it back. Without a
                schedule a rate changed by hand is adopted, not overwritten; with a schedule it
                serves this round's plateau decision only and a differing rate warns (rounding
                to float32, as a Keras variable holds it, is not a difference).
            time: training time in seconds (finite), for time-based checkpoint policies.

        Nothing changes if it raises (see the module docstring).
        """
        if self._busy:
            raise _concurrent("step")
        self._busy = True
        try:
            if type(metrics) is not dict:
                metrics = _check_metrics(metrics, "step()")
            epoch = self._rounds if epoch is None else _check_epoch(epoch)
            if time is not None:
                time = _check_time(time)
            current = self._lr if lr is None else self._adopted(_check_lr("lr", lr))
            rounds = self._rounds + 1
            if self._stopped:
                self._rounds, self._epoch, self._lr = rounds, epoch, current
                return self._final_decision("round", metrics)
            obs = make_observation(
                clock="round", metrics=metrics, epoch=epoch, round=self._rounds,
                optimizer_steps=self._steps, lr=current, time=time,
            )
            return self._run("round", self._round_policies, obs, rounds, epoch, self._steps)
        finally:
            self._busy = False

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
            time: training time in seconds (finite), for time-triggered checkpoints.

        Nothing changes if it raises.
        """
        if self._busy:
            raise _concurrent("optimizer_step")
        self._busy = True
        try:
            if metrics is None:
                metrics = _NO_METRICS
            elif type(metrics) is not dict:
                metrics = _check_metrics(metrics, "optimizer_step()")
            epoch = epoch_after(self._epoch) if epoch is None else _check_epoch(epoch)
            if time is not None:
                time = _check_time(time)
            steps = self._steps + 1
            if self._stopped:
                self._steps = steps
                return self._final_decision("optimizer_step", metrics)
            obs = make_observation(
                clock="optimizer_step", metrics=metrics, epoch=epoch, round=self._rounds,
                optimizer_steps=steps, lr=self._lr, time=time,
            )
            return self._run(
                "optimizer_step", self._step_policies, obs, self._rounds, self._epoch, steps
            )
        finally:
            self._busy = False

    def finish(self) -> Decision:
        """The end of training, whatever ended it: says whether to restore the best weights.

        Keras restores the best weights at the end of training even when early stopping did not
        end it; call this once after the loop and honour ``decision.restore_best``. Runs each
        policy's optional ``finish(state)`` hook.
        """
        details, labels = [], []
        restore = False
        for label, policy, state in zip(self._labels, self._policies, self._states, strict=True):
            hook = getattr(policy, "finish", None)
            if hook is None:
                continue
            d = hook(state)
            fields = decision_fields(d)
            restore = restore or bool(fields.restore_best and d.restore_best)
            details.append(d)
            labels.append(label)
        decision = Decision(
            clock="end", round=self._rounds, epoch=self._epoch, optimizer_steps=self._steps,
            stop=True, lr=self._lr, restore_best=restore, details=tuple(details),
            labels=tuple(labels),
        )
        if self._log is not None:
            self._log(decision)
        return decision

    # -- the merge rule -------------------------------------------------------------------------

    def _run(
        self,
        clock: Literal["round", "optimizer_step"],
        policies: tuple[tuple[int, Any, bool, bool, str], ...],
        obs: Observation,
        rounds: int,
        epoch: int | None,
        steps: int,
    ) -> Decision:
        """Run ``policies`` on ``obs``, merge their decisions, tick the schedule, and commit
        (the clocks become ``rounds`` / ``epoch`` / ``steps``) only if nothing raised."""
        states = list(self._states)
        lr, scale = obs.lr, self._scale
        stop = final = snapshot = restore = False
        save: _Request | None = None
        last: _Request | None = None
        delete: list[str] | None = None
        details: list[Any] = []
        missing: list[tuple[str, Reason]] | None = None
        for i, policy, stop_is_final, warn, label in policies:
            d, states[i] = policy.update(states[i], obs)
            details.append(d)
            # which contract fields this decision type has (computed once per type)
            has = _FIELDS.get(d.__class__) or decision_fields(d)
            if has.stop and d.stop:
                stop = True
                final = final or stop_is_final
            if has.lr_factor and d.lr_factor is not None:
                lr, scale = self._request(label, lr, scale, d.lr_factor, absolute=False)
                obs = obs._replace(lr=lr)
            if has.lr and d.lr is not None:
                lr, scale = self._request(label, lr, scale, d.lr, absolute=True)
                obs = obs._replace(lr=lr)
            if has.snapshot_best and d.snapshot_best:
                snapshot = True
            if has.restore_best and d.restore_best:
                restore = True
            if has.save and d.save is not None:
                save = _one_request(save, d.save, label, "save")
            if has.last and d.last is not None:
                last = _one_request(last, d.last, label, "last")
            if has.delete and d.delete:
                if delete is None:
                    delete = []
                delete.extend(n for n in d.delete if n not in delete)
            if warn and has.reason and getattr(d.reason, "event", None) == "missing_metric":
                missing = [] if missing is None else missing
                missing.append((label, d.reason))
        if not stop and (
            self._round_schedule if clock == "round" else self._step_schedule
        ):
            lr = self._scheduled_lr(rounds if clock == "round" else steps, scale)
        # commit: nothing above changed the controller
        labels = self._round_labels if clock == "round" else self._step_labels
        before = self._lr
        self._states, self._lr, self._scale = states, lr, scale
        self._rounds, self._epoch, self._steps = rounds, epoch, steps
        decision = make_decision(
            clock=clock, round=rounds, epoch=epoch, optimizer_steps=steps, stop=stop, lr=lr,
            lr_changed=lr != before, snapshot_best=snapshot, restore_best=restore,
            save=None if save is None else save.request,
            last=None if last is None else last.request,
            delete=() if delete is None else tuple(delete), details=tuple(details),
            labels=labels, metrics=obs.metrics,
        )
        if final:
            self._stopped = True
            kept = [
                (label, d) for label, d in zip(labels, details, strict=True)
                if getattr(getattr(d, "reason", None), "event", None) not in _QUIET_EVENTS
            ]
            self._stop_details = tuple(d for _, d in kept)
            self._stop_labels = tuple(label for label, _ in kept)
        if missing is not None:
            for label, reason in missing:
                self._warn_missing(label, reason)
        if self._log is not None:
            self._log(decision)
        return decision

    def _request(
        self,
        label: str,
        old: LR | None,
        scale: tuple[float, ...] | None,
        raw: Any,
        *,
        absolute: bool,
    ) -> tuple[LR, tuple[float, ...] | None]:
        """One policy's rate request applied to the rate in force (and the schedule's scale)."""
        if old is None:
            raise ValueError(
                f"{label} asks for a learning rate change but the controller has no rate: give "
                "Controller(..., lr=...) or report it with step(metrics, lr=...)"
            )
        olds = _as_tuple(old)
        n = len(olds)
        what = "lr" if absolute else "lr_factor"
        values = _as_tuple(_check_lr(f"{label} decision.{what}", raw))
        if len(values) == 1:
            values = values * n
        elif len(values) != n:
            raise ValueError(
                f"{label}: decision.{what} has {len(values)} values but the controller manages "
                f"{n} rate(s)"
            )
        floors = self._floor(_shape(old))
        if self._schedule is None or scale is None:
            if absolute:
                new = [max(v, lo) for v, lo in zip(values, floors, strict=True)]
            else:
                new = [
                    o if f == 1.0 else reduced_rate(o, f, lo)
                    for o, f, lo in zip(olds, values, floors, strict=True)
                ]
            return _like(old, new), scale
        if absolute:
            plains = self._plain_rates(self._tick())
            scale = tuple(
                (v / p if p > 0 else s) for s, v, p in zip(scale, values, plains, strict=True)
            )
        else:
            scale = tuple(s * f for s, f in zip(scale, values, strict=True))
        return self._scheduled_lr(self._tick(), scale), scale

    # -- rates ------------------------------------------------------------------------------------

    def _tick(self) -> int:
        """The schedule's current ``t``."""
        return self._steps if self._schedule_clock == "optimizer_step" else self._rounds

    def _floor(self, n_groups: int | None) -> tuple[float, ...]:
        """Each group's floor: the largest ``min_lrs`` any policy declares (0 without one)."""
        floors = self._floors.get(n_groups)
        if floors is None:
            values = [0.0] * (1 if n_groups is None else n_groups)
            for p in self._floor_hooks:
                values = [max(a, b) for a, b in zip(values, p.min_lrs(n_groups), strict=True)]
            floors = self._floors[n_groups] = tuple(values)
        return floors

    def _plain_rates(self, t: int) -> tuple[float, ...]:
        sched, base = self._schedule, self._base_lr
        assert sched is not None and base is not None
        value = schedule_rate(sched, t)
        ref = sched.base_lr
        return tuple(group_rate(b, value, ref) for b in _as_tuple(base))

    def _scheduled_lr(self, t: int, scale: tuple[float, ...] | None) -> LR:
        base = self._base_lr
        assert base is not None
        plains = self._plain_rates(t)
        if scale is None or all(s == 1.0 for s in scale):
            return _like(base, plains)
        floors = self._floor(_shape(base))
        return _like(
            base,
            [scheduled_rate(p, s, lo) for p, s, lo in zip(plains, scale, floors, strict=True)],
        )

    def _adopted(self, lr: LR) -> LR:
        """The rate the caller reports, checked against the controller's (nothing is changed)."""
        mine = self._lr
        if mine is not None and (self._base_lr is not None or self._floor_hooks) and (
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
                        stacklevel=4,
                    )
                    break
        return lr

    def _warn_missing(self, label: str, reason: Reason) -> None:
        key = (label, reason.event)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(
            f"{label}: {reason.message}. This warning is shown once per policy; pass "
            "strict=True to make a missing metric an error.",
            UserWarning,
            stacklevel=5,
        )

    def _final_decision(
        self, clock: Literal["round", "optimizer_step"], metrics: Mapping[str, Any]
    ) -> Decision:
        decision = Decision(
            clock=clock, round=self._rounds, epoch=self._epoch, optimizer_steps=self._steps,
            stop=True, lr=self._lr, details=self._stop_details, labels=self._stop_labels,
            metrics=metrics,
        )
        if self._log is not None:
            self._log(decision)
        return decision

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole progress as strict-JSON plain data, with a format version.

        ``json.loads(json.dumps(ctl.state_dict()))`` loads back into a controller of the same
        configuration and continues with exactly the same decisions. A schedule is identified by
        its ``repr``; one built on a function that cannot be named (a lambda, a closure) raises
        here, with the remedy, rather than at resume.
        """
        return {
            "format": FORMAT,
            "version": VERSION,
            "policies": [
                {"config": p.config_dict(), "state": p.state_to_dict(s)}
                for p, s in zip(self._policies, self._states, strict=True)
            ],
            "schedule": None if self._schedule is None else _schedule_id(self._schedule),
            "schedule_clock": self._schedule_clock,
            "base_lr": _encode_lr(self._base_lr),
            "rounds": self._rounds,
            "optimizer_steps": self._steps,
            "epoch": self._epoch,
            "lr": _encode_lr(self._lr),
            "lr_scale": None if self._scale is None else list(self._scale),
            "stopped": self._stopped,
            "stop_reasons": [
                [r.source, r.event, r.message]
                for label, d in zip(self._stop_labels, self._stop_details, strict=True)
                for r in reasons_of(d, label)
            ],
            "stop_details": [
                {
                    "policy": self._labels.index(label) if label in self._labels else None,
                    "fields": plain_fields(d),
                    "reason": [[r.source, r.event, r.message] for r in reasons_of(d, label)],
                }
                for label, d in zip(self._stop_labels, self._stop_details, strict=True)
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any], *, strict: bool = True) -> None:
        """Restore progress saved by :meth:`state_dict`.

        Raises :class:`StateError` (a ``ValueError``) naming the field that does not fit: another
        format or version, another number or kind of policies, (with ``strict=True``) a policy
        whose configuration differs (``strict=False`` accepts changed settings such as a new
        patience), or a value out of range (a negative count, a rate that is not a finite number
        >= 0, a scale of the wrong length). Nothing is changed unless everything fits.
        """
        if self._busy:
            raise _concurrent("load_state_dict")
        self._busy = True
        try:
            self._load(_LoadedState.read(self, state, strict=strict))
        finally:
            self._busy = False

    def _load(self, loaded: _LoadedState) -> None:
        rewind = getattr(self._log, "rewind", None)
        if rewind is not None:  # a resumed run: the log continues from the loaded point
            rewind(loaded.rounds, loaded.steps)
        self._states = loaded.states
        self._rounds, self._steps, self._epoch = loaded.rounds, loaded.steps, loaded.epoch
        self._lr, self._scale = loaded.lr, loaded.scale
        self._stopped = loaded.stopped
        self._stop_details, self._stop_labels = loaded.details, loaded.labels

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, log: Any = None) -> Controller:
        """The controller that saved ``state``, rebuilt from the configuration the state holds,
        with its progress loaded.

        Policies are found by type name (every built-in, and classes registered with
        :func:`trainctl.register_policy`) or as ``module.QualName`` of a module already
        imported; the schedule is rebuilt from its identity (``repr``-like factory call; user
        functions by ``module.qualname``) by a parser that evaluates nothing and imports
        nothing. A type or function that cannot be found raises :class:`StateError` saying
        what to import or register.
        """
        from ._rebuild import ExpressionError, parse_call, policy_from_config
        from .schedules import Schedule

        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise StateError("not a trainctl controller state (no 'format': 'trainctl.Controller')")
        entries = state.get("policies")
        if not isinstance(entries, list):
            raise StateError("policies: expected a list")
        try:
            policies = [
                policy_from_config(e["config"] if isinstance(e, Mapping) and "config" in e else {})
                for e in entries
            ]
            ident = state.get("schedule")
            schedule = None
            if ident is not None:
                from ._rebuild import _schedule_factories

                schedule = parse_call(str(ident), factories=_schedule_factories())
                if not isinstance(schedule, Schedule):
                    raise ExpressionError(f"{ident!r} is not a schedule")
        except ExpressionError as exc:
            raise StateError(f"cannot rebuild the controller: {exc}") from None
        clock = state.get("schedule_clock", "optimizer_step")
        base = _decode_lr(state.get("base_lr"), "base_lr")
        if schedule is not None and isinstance(base, float):
            base = None  # the schedule's own base rate
        ctl = cls(*policies, lr=base, schedule=schedule, schedule_clock=clock, log=log)
        ctl.load_state_dict(state)
        return ctl

    def clone(self) -> Controller:
        """A new controller with the same configuration and progress (nothing shared; the copy
        writes no log)."""
        other = Controller(
            *self._policies,
            lr=self._base_lr,
            schedule=self._schedule,
            schedule_clock=self._schedule_clock,
            warn_missing=self._warn_missing_flag,
        )
        other._load(_LoadedState.copy_of(self))
        return other

    def config_equal(self, other: Controller) -> bool:
        """Whether ``other`` has the same policies, schedule, base rate and clock."""
        return (
            self._policies == other._policies
            and self._schedule == other._schedule
            and self._base_lr == other._base_lr
            and self._schedule_clock == other._schedule_clock
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Controller):
            return NotImplemented
        if not self.config_equal(other):
            return False
        try:
            return _comparable_state(self) == _comparable_state(other)
        except ValueError:  # a schedule without an identity: compare what can be compared
            return self.statistics() == other.statistics()

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["_busy"] = False  # a copy is never in the middle of a call
        return out

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self._policies)
        extra = "" if self._schedule is None else f", schedule={self._schedule!r}"
        return f"Controller({inner}, lr={self._base_lr!r}{extra})"


_QUIET_EVENTS = frozenset({"missing_metric", "finite"})


class _Sinks:
    """Several decision sinks as one: each decision, ``start`` and ``rewind`` go to all."""

    def __init__(self, sinks: Sequence[Any]) -> None:
        self.sinks = tuple(sinks)

    def __call__(self, decision: Decision) -> None:
        for sink in self.sinks:
            sink(decision)

    def start(self, description: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            start = getattr(sink, "start", None)
            if start is not None:
                start(description)

    def rewind(self, rounds: int, optimizer_steps: int) -> None:
        for sink in self.sinks:
            rewind = getattr(sink, "rewind", None)
            if rewind is not None:
                rewind(rounds, optimizer_steps)
_NO_METRICS: Mapping[str, Any] = MappingProxyType({})


class _Request(NamedTuple):
    """A save (or last) request and the policy that made it."""

    label: str
    request: SaveRequest


def _one_request(held: _Request | None, request: Any, label: str, what: str) -> _Request:
    """A save (or last) request; two in one call is an error naming both policies."""
    if isinstance(request, str):
        request = SaveRequest(name=request)
    if not isinstance(request, SaveRequest):
        raise TypeError(
            f"{label}: decision.{what} must be a SaveRequest or a file name, got "
            f"{type(request).__name__} {request!r}"
        )
    if held is not None:
        raise ValueError(
            f"{held.label} and {label} both ask for a {what!r} checkpoint "
            f"({held.request.name!r}, {request.name!r}) in one call; one policy may write each "
            "per call"
        )
    return _Request(label=label, request=request)


def _concurrent(method: str) -> RuntimeError:
    return RuntimeError(
        f"Controller.{method}() was called while another call on the same controller was "
        "running (two threads?); a Controller belongs to one thread: give each thread its own "
        "controller, or serialise the calls"
    )


def _check_schedule(schedule: object) -> None:
    from .schedules import Schedule

    if isinstance(schedule, type):
        raise TypeError(
            f"'schedule' must be a schedule instance, got the class {schedule.__name__}: build "
            "one with a factory, e.g. trainctl.schedules.cosine(1e-3, total_steps=10_000)"
        )
    if not isinstance(schedule, Schedule):
        raise TypeError(
            "'schedule' must be a trainctl schedule (trainctl.schedules.cosine(...), "
            f"warmup(...), lambda_lr(...), ...), got {type(schedule).__name__} {schedule!r:.60}"
        )


def _schedule_id(schedule: Any) -> str:
    """The schedule's identity in a saved state: its repr, which names functions by module and
    qualified name; a function that cannot be named raises (see ``trainctl.schedules``)."""
    ident = getattr(schedule, "identity", None)
    return ident() if callable(ident) else repr(schedule)


def _encode_lr(lr: LR | None) -> Any:
    if lr is None or isinstance(lr, float):
        return lr
    return list(lr)


def _comparable_state(ctl: Controller) -> dict[str, Any]:
    state = ctl.state_dict()
    state.pop("stop_reasons")
    return state


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
    >>> len(decisions)  # training stops after the 5th epoch
    5
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


# -- loading a state ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _LoadedState:
    """A checked state, ready to be put in place in one go."""

    states: list[Any]
    rounds: int
    steps: int
    epoch: int | None
    lr: LR | None
    scale: tuple[float, ...] | None
    stopped: bool
    details: tuple[Any, ...]
    labels: tuple[str, ...]

    @classmethod
    def copy_of(cls, ctl: Controller) -> _LoadedState:
        return cls(
            states=list(ctl._states), rounds=ctl._rounds, steps=ctl._steps, epoch=ctl._epoch,
            lr=ctl._lr, scale=ctl._scale, stopped=ctl._stopped, details=ctl._stop_details,
            labels=ctl._stop_labels,
        )

    @classmethod
    def read(cls, ctl: Controller, state: Mapping[str, Any], *, strict: bool) -> _LoadedState:
        if not isinstance(state, Mapping):
            raise StateError(f"controller state must be a dict, got {type(state).__name__}")
        if state.get("format") != FORMAT:
            raise StateError(
                f"not a trainctl controller state: 'format' is {state.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        version = state.get("version")
        if type(version) is not int or version != VERSION:
            raise StateError(
                f"version: controller state version {version!r} is not supported by this "
                f"trainctl (version {VERSION})"
            )
        policies = ctl._policies
        saved = state.get("policies")
        if not isinstance(saved, list) or len(saved) != len(policies):
            n = len(saved) if isinstance(saved, list) else "no"
            raise StateError(
                f"policies: the state holds {n} policies but this controller has {len(policies)}"
            )
        new_states = []
        for i, (policy, entry) in enumerate(zip(policies, saved, strict=True)):
            if not isinstance(entry, Mapping) or "config" not in entry or "state" not in entry:
                raise StateError(f"policies[{i}]: expected {{'config': ..., 'state': ...}}")
            mine, theirs = policy.config_dict(), entry["config"]
            if not isinstance(theirs, Mapping) or theirs.get("type") != mine.get("type"):
                other = theirs.get("type") if isinstance(theirs, Mapping) else theirs
                raise StateError(
                    f"policies[{i}]: policy {i} is a {mine.get('type')} but the state holds a "
                    f"{other}"
                )
            if strict and dict(theirs) != mine:
                diffs = [
                    f"{k!r} was {theirs.get(k)!r}, is {mine.get(k)!r}"
                    for k in sorted(set(mine) | set(theirs))
                    if theirs.get(k) != mine.get(k)
                ]
                raise StateError(
                    f"policies[{i}] {policy.label}: the state comes from another configuration ("
                    + "; ".join(diffs)
                    + "); pass strict=False to load it anyway"
                )
            new_states.append(policy.state_from_dict(entry["state"]))
        sched = None if ctl._schedule is None else _schedule_id(ctl._schedule)
        if strict and state.get("schedule") != sched:
            raise StateError(
                f"schedule: the state was saved with schedule {state.get('schedule')!r}, this "
                f"controller has {sched!r}; pass strict=False to load it anyway"
            )
        if strict and "schedule_clock" in state and state["schedule_clock"] != ctl._schedule_clock:
            raise StateError(
                f"schedule_clock: the state was saved with {state['schedule_clock']!r}, this "
                f"controller has {ctl._schedule_clock!r}; pass strict=False to load it anyway"
            )
        rounds = _count(state.get("rounds"), "rounds")
        steps = _count(state.get("optimizer_steps"), "optimizer_steps")
        raw_epoch = state.get("epoch")
        epoch = None if raw_epoch is None else _count(raw_epoch, "epoch")
        lr = _decode_lr(state.get("lr"), "lr")
        owns = ctl._base_lr is not None
        if owns and (
            lr is None or isinstance(lr, tuple) != isinstance(ctl._base_lr, tuple)
            or len(_as_tuple(lr)) != len(_as_tuple(ctl._base_lr))  # type: ignore[arg-type]
        ):
            raise StateError(
                f"lr: the state's learning rate {lr!r} does not fit this controller's "
                f"{ctl._base_lr!r} (one rate per param group)"
            )
        if not owns and lr is not None and ctl._floor_hooks:
            ctl._floor(_shape(lr))  # a per-group floor must fit the rate read back
        scale = _decode_scale(state.get("lr_scale"), ctl)
        stopped = state.get("stopped")
        if not isinstance(stopped, bool):
            raise StateError(f"stopped: expected a bool, got {stopped!r}")
        details, labels = _decode_details(state, ctl, stopped)
        return cls(
            states=new_states, rounds=rounds, steps=steps, epoch=epoch, lr=lr, scale=scale,
            stopped=stopped, details=details, labels=labels,
        )


def _count(value: object, where: str) -> int:
    if type(value) is not int:
        raise StateError(f"{where}: expected an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise StateError(f"{where}: must be >= 0, got {value}")
    return value


def _decode_rate(value: object, where: str) -> float:
    rate = decode_float(value, where=where)
    if rate is None or not (math.isfinite(rate) and rate >= 0):
        raise StateError(f"{where}: a learning rate must be a finite number >= 0, got {value!r}")
    return rate


def _decode_lr(value: Any, where: str) -> LR | None:
    if value is None:
        return None
    if isinstance(value, list):
        if not value:
            raise StateError(f"{where}: expected a rate or a non-empty list of rates, got []")
        return tuple(_decode_rate(v, f"{where}[{i}]") for i, v in enumerate(value))
    return _decode_rate(value, where)


def _decode_scale(raw: object, ctl: Controller) -> tuple[float, ...] | None:
    expected = None if ctl._scale is None else len(ctl._scale)
    if raw is None:
        if expected is not None:
            raise StateError(f"lr_scale: expected a list of {expected} scales, got None")
        return None
    if not isinstance(raw, list):
        raise StateError(f"lr_scale: expected a list, got {type(raw).__name__} {raw!r}")
    if expected is None or len(raw) != expected:
        want = "null (no schedule)" if expected is None else f"{expected} scales"
        raise StateError(f"lr_scale: expected {want}, got {raw!r}")
    out = []
    for i, v in enumerate(raw):
        s = decode_float(v, where=f"lr_scale[{i}]")
        if s is None or not (math.isfinite(s) and s >= 0):
            raise StateError(f"lr_scale[{i}]: a scale must be a finite number >= 0, got {v!r}")
        out.append(s)
    return tuple(out)


def _decode_reason(raw: object, where: str) -> Reason:
    if (
        not isinstance(raw, (list, tuple)) or len(raw) != 3
        or not all(isinstance(x, str) for x in raw)
    ):
        raise StateError(f"{where}: expected [source, event, message] strings, got {raw!r}")
    source, event, message = raw
    return Reason(source, event, message)


def _decode_details(
    state: Mapping[str, Any], ctl: Controller, stopped: bool
) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    raw = state.get("stop_details")
    if raw is None:  # a state written before stop details were saved: the reasons only
        reasons = state.get("stop_reasons", [])
        if not isinstance(reasons, list):
            raise StateError(f"stop_reasons: expected a list, got {reasons!r}")
        out = [
            StoppedDetail({}, _decode_reason(r, f"stop_reasons[{i}]"))
            for i, r in enumerate(reasons)
        ]
        return tuple(out), tuple(d.reason.source for d in out)
    if not isinstance(raw, list):
        raise StateError(f"stop_details: expected a list, got {type(raw).__name__}")
    details, labels = [], []
    for i, item in enumerate(raw):
        where = f"stop_details[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"policy", "fields", "reason"}:
            raise StateError(f"{where}: expected {{'policy', 'fields', 'reason'}}, got {item!r}")
        index, fields, reasons = item["policy"], item["fields"], item["reason"]
        if type(index) is not int or not 0 <= index < len(ctl._policies):
            raise StateError(f"{where}.policy: expected a policy index, got {index!r}")
        if not isinstance(fields, Mapping):
            raise StateError(f"{where}.fields: expected a dict, got {fields!r}")
        if not isinstance(reasons, list) or not reasons:
            raise StateError(f"{where}.reason: expected a list of reasons, got {reasons!r}")
        decoded = {
            k: (decode_float(v, where=f"{where}.fields.{k}") if isinstance(v, str)
                and v in ("nan", "inf", "-inf") else v)
            for k, v in fields.items()
        }
        details.append(StoppedDetail(decoded, _decode_reason(reasons[0], f"{where}.reason[0]")))
        labels.append(ctl._labels[index])
    if details and not stopped:
        raise StateError("stop_details: a state that has not stopped holds stop details")
    return tuple(details), tuple(labels)

