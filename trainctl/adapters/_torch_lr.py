"""torch learning-rate schedulers backed by trainctl: a drop-in ``ReduceLROnPlateau`` and
``ScheduleLR``, which runs any :mod:`trainctl.schedules` schedule as a real ``LRScheduler``.

ReduceLROnPlateau
-----------------
``ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8)`` is a subclass of
``torch.optim.lr_scheduler.ReduceLROnPlateau`` (so Lightning and Hugging Face recognise it and pass
it the monitored metric) whose every decision is made by the core,
``trainctl.ReduceLROnPlateau(rules="torch")``. The adapter only reads the metric and the optimizer's
current rates, calls the core's pure transition, and writes back the rates the core lowered.

===================================  ==========================================================
torch argument / attribute           core configuration (``trainctl.ReduceLROnPlateau``)
===================================  ==========================================================
(the value given to ``step``)        ``monitor="metrics"``; ``float(metrics)`` as torch does
``mode`` ("min" | "max")             ``mode``
``factor`` (``0 < factor < 1``)      ``factor``
``patience``                         ``patience`` (fires at ``num_bad_epochs > patience``)
``threshold``                        ``min_delta`` (signed, shifts ``best``: ``rules="torch"``)
``threshold_mode`` ("rel" | "abs")   ``threshold_mode``
``cooldown``                         ``cooldown``
``min_lr`` / ``min_lrs``             ``min_lr``: always one value per param group
``eps``                              ``eps`` (a reduction below ``eps`` is not applied)
``best`` (``mode_worse`` at first)   state ``best`` (``None`` until the first improvement)
``num_bad_epochs``                   state ``wait``
``cooldown_counter``                 state ``cooldown_counter``
``last_epoch``                       counted here (the core has no clock of its own)
===================================  ==========================================================

The hyperparameters and the counters live in the attributes torch uses, so ``state_dict()`` has
exactly torch's keys and a state dict moves freely between this class and torch's own (both ways).
The core configuration is rebuilt (and validated) when a hyperparameter attribute is changed, as
torch reads its attributes at every step. The optimizer's rates are read at every step: a rate
changed by hand is respected, and the reduction starts from it.

Arguments torch accepts that the core refuses (they raise ``ValueError`` or ``TypeError`` here, at
construction, naming the argument):

- ``factor >= 1`` raises torch's own ``ValueError("Factor should be < 1.0.")``; ``factor <= 0``
  is accepted as torch accepts it (each reduction goes straight to ``min_lr``:
  ``allow_nonpositive_factor=True`` in the core);
- ``threshold >= 1`` with ``threshold_mode="rel"`` and ``mode="min"`` (a positive metric can
  never improve by 100% of itself; the core refuses the combination, naming both);
- negative ``patience``, ``cooldown``, ``eps`` or ``min_lr``, non-finite ``threshold``/``eps``/
  ``min_lr``, and non-whole ``patience``/``cooldown`` (whole floats such as ``5.0`` are accepted).

A state dict that holds such values (possible from torch's class) is refused by ``load_state_dict``
the same way, leaving the scheduler unchanged.

>>> import torch
>>> from trainctl.adapters.torch import ReduceLROnPlateau
>>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
>>> scheduler = ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
>>> for val_loss in (1.0, 1.0, 1.0, 0.5):
...     scheduler.step(val_loss)
>>> scheduler.get_last_lr(), scheduler.best, scheduler.num_bad_epochs
([0.05], 0.5, 0)
>>> print(scheduler.last_decision.explain())
ReduceLROnPlateau(metrics): metrics = 0.5: new best

``last_decision`` is a :class:`trainctl.Decision`, as on every adapter object: ``explain()``,
``lr`` (the groups' rates after the step), ``lr_changed``, ``to_dict()``, and the core's
``PlateauDecision`` as ``last_decision.details[0]`` (``.best``, ``.wait``, ``.lr_factor``).
Its ``epoch`` is 0-based (the first ``step()`` decides epoch 0, torch's ``last_epoch`` 1).

ScheduleLR
----------
``ScheduleLR(optimizer, schedule, last_epoch=-1)`` is a ``torch.optim.lr_scheduler.LRScheduler``:
``step()`` advances ``last_epoch`` (the schedule's step ``t``) and sets every param group's rate in
closed form (``_get_closed_form_lr``, O(1) per step, no drift, any ``t`` reachable directly). Param
groups keep their own base rates as with torch's ``LambdaLR``::

    group_lr(t) = schedule(t)                                   if base_lr_i == schedule.base_lr
                = base_lr_i * (schedule(t) / schedule.base_lr)   otherwise

``state_dict()`` holds torch's usual entries (``last_epoch``, ``base_lrs``, ``_step_count``,
``_last_lr``, ...) and the schedule as its ``repr`` under ``"schedule"``, a plain string: loading
never builds or unpickles a schedule (no code runs); the scheduler keeps the schedule it was
constructed with, and ``load_state_dict`` warns when the saved ``repr`` differs from it.

>>> from trainctl.adapters.torch import ScheduleLR
>>> from trainctl.schedules import cosine, warmup
>>> params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
>>> optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 0.1},
...                              {"params": [params[1]], "lr": 0.01}])
>>> scheduler = ScheduleLR(optimizer, warmup(cosine(0.1, total_steps=8), warmup_steps=2))
>>> for _ in range(2):
...     optimizer.step()
...     scheduler.step()
>>> [round(lr, 6) for lr in scheduler.get_last_lr()]
[0.1, 0.01]

In Lightning::

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=3e-4)
        sched = ScheduleLR(opt, warmup(cosine(3e-4, total_steps=10_000), warmup_steps=500))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any, Literal, SupportsFloat

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

import trainctl
from trainctl import Decision, Observation, PlateauState
from trainctl._decisions import make_decision
from trainctl._rates import group_rate, reduced_rate, schedule_rate
from trainctl.schedules import Schedule

__all__ = ["ReduceLROnPlateau", "ScheduleLR"]

try:  # the text torch warns with when step() is given an epoch
    from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING as _EPOCH_WARNING
except ImportError:  # pragma: no cover - a torch without the constant
    _EPOCH_WARNING = (
        "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated "
        "where possible. Please use `scheduler.step()` to step the scheduler."
    )

_MONITOR = "metrics"


# -- optimizer rates -----------------------------------------------------------------------------


def _group_lrs(optimizer: Optimizer) -> list[float | Tensor]:
    """Each group's rate as stored (a tensor is cloned so that callers never alias it)."""
    return [
        g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"] for g in optimizer.param_groups
    ]


def _set_group_lr(group: dict[str, Any], value: float) -> None:
    """Write a rate; a tensor rate is filled in place (a compiled optimizer keeps seeing it)."""
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


# -- ReduceLROnPlateau ---------------------------------------------------------------------------


def _check_modes(mode: object, threshold_mode: object) -> None:
    # torch's messages; a non-str is a TypeError there too (torch concatenates it into the text)
    if not isinstance(mode, str):
        raise TypeError(f"mode must be 'min' or 'max', got {type(mode).__name__} {mode!r}")
    if mode not in {"min", "max"}:
        raise ValueError("mode " + mode + " is unknown!")
    if not isinstance(threshold_mode, str):
        raise TypeError(
            f"threshold_mode must be 'rel' or 'abs', got {type(threshold_mode).__name__} "
            f"{threshold_mode!r}"
        )
    if threshold_mode not in {"rel", "abs"}:
        raise ValueError("threshold mode " + threshold_mode + " is unknown!")


def _whole(name: str, value: Any) -> Any:
    """``5.0`` -> ``5`` (torch compares a count with it); anything else is left to the core."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if (
        isinstance(value, Real)
        and not isinstance(value, (Integral, bool))
        and math.isfinite(float(value))
    ):
        raise TypeError(
            f"'{name}' must be a whole number, got {value!r} (torch accepts it; trainctl's core "
            "counts whole rounds)"
        )
    return value


_Key = tuple[Any, ...]


def _build_policy(key: _Key) -> trainctl.ReduceLROnPlateau:
    """The core configuration for torch's hyperparameters (see the module's table)."""
    mode, factor, patience, threshold, threshold_mode, cooldown, eps, min_lrs = key
    _check_modes(mode, threshold_mode)
    if factor >= 1.0:
        raise ValueError("Factor should be < 1.0.")
    try:
        return trainctl.ReduceLROnPlateau(
            _MONITOR,
            rules="torch",
            mode=mode,
            factor=factor,
            patience=_whole("patience", patience),
            min_delta=threshold,
            threshold_mode=threshold_mode,
            cooldown=_whole("cooldown", cooldown),
            min_lr=min_lrs,
            eps=eps,
            allow_nonpositive_factor=True,  # torch: a reduction then goes straight to min_lr
        )
    except (TypeError, ValueError) as error:
        raise type(error)(f"ReduceLROnPlateau: {error}") from error


# attributes that are not part of the state dict (torch's own: everything but the optimizer)
_NOT_STATE = frozenset({"optimizer", "_policy", "_policy_key", "_reductions", "last_decision"})
# the state dict entries of torch's ReduceLROnPlateau (2.x)
_STATE_KEYS = frozenset(
    {
        "factor",
        "default_min_lr",
        "min_lrs",
        "patience",
        "cooldown",
        "eps",
        "last_epoch",
        "_last_lr",
        "mode_worse",
        "mode",
        "threshold",
        "threshold_mode",
        "best",
        "cooldown_counter",
        "num_bad_epochs",
    }
)


class ReduceLROnPlateau(_TorchReduceLROnPlateau):
    """torch's ``ReduceLROnPlateau``, decided by ``trainctl.ReduceLROnPlateau(rules="torch")``.

    Same arguments, defaults, attributes, ``state_dict`` keys and results as
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (a subclass of it); see the module docstring
    for the mapping and for the arguments the core cannot express.

    ``step(metrics)`` takes what torch takes (``float(metrics)``: a number, a 0-d or one-element
    tensor); a tensor with several elements raises torch's ``ValueError``. After each step,
    ``last_decision`` is a :class:`trainctl.Decision` (``explain()`` says why; the core's
    ``PlateauDecision`` is ``last_decision.details[0]``).
    """

    last_decision: Decision | None
    """The core's decision at the last ``step`` (``None`` before the first)."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        # torch's checks, in torch's order and with its exception types and messages
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        n_groups = len(optimizer.param_groups)
        default_min_lr: float | None
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(f"expected {n_groups} min_lrs, got {len(min_lr)}")
            default_min_lr, min_lrs = None, list(min_lr)
        else:
            default_min_lr, min_lrs = min_lr, [min_lr] * n_groups
        _check_modes(mode, threshold_mode)
        self.factor = factor
        self.optimizer = optimizer
        self.default_min_lr = default_min_lr
        self.min_lrs = min_lrs
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = _group_lrs(optimizer)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0
        self._reductions = 0
        self.last_decision = None
        self._policy_key: _Key | None = None
        self._policy = self._core(n_groups)  # validates what torch does not

    # -- the core, configured from torch's attributes -----------------------------------------

    def _core(self, n_groups: int) -> trainctl.ReduceLROnPlateau:
        if len(self.min_lrs) != n_groups and self.default_min_lr is not None:
            # torch: a param group was added; a scalar min_lr covers it
            self.min_lrs = [self.default_min_lr] * n_groups
        key = (
            self.mode,
            self.factor,
            self.patience,
            self.threshold,
            self.threshold_mode,
            self.cooldown,
            self.eps,
            tuple(self.min_lrs),
        )
        if key != self._policy_key:
            self._policy = _build_policy(key)
            self._policy_key = key
        return self._policy

    @property
    def policy(self) -> trainctl.ReduceLROnPlateau:
        """The core configuration making the decisions (rebuilt when an attribute changes)."""
        return self._core(len(self.optimizer.param_groups))

    def _core_state(self) -> PlateauState:
        best = None if self.best == self.mode_worse else self.best
        return PlateauState(
            best=best, wait=self.num_bad_epochs, cooldown_counter=self.cooldown_counter,
            reductions=self._reductions,
        )

    # -- torch's API ----------------------------------------------------------------------------

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """One evaluation round: ``metrics`` is the monitored value (``float(metrics)``)."""
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch

        groups = self.optimizer.param_groups
        policy = self._core(len(groups))
        lrs = tuple(float(g["lr"]) for g in groups)
        obs = Observation(
            clock="round", metrics={_MONITOR: current}, epoch=epoch, round=epoch,
            optimizer_steps=0, lr=lrs,
        )
        try:
            decision, state = policy.update(self._core_state(), obs)
        except ValueError as error:
            if len(self.min_lrs) != len(groups):
                raise RuntimeError(
                    "The number of param groups in the `optimizer` "
                    f"({len(groups)}) differs from when `ReduceLROnPlateau` was initialized "
                    f"({len(self.min_lrs)}), usually due to a new param group being added to the "
                    "optimizer. Please modify the `min_lrs` field to match the length of the "
                    "`optimizer` param groups."
                ) from error
            raise
        factors = decision.lr_factor
        if factors is not None:  # the core's request, carried out with the core's rule
            floors = policy.min_lrs(len(groups))
            for group, old, factor, floor in zip(groups, lrs, factors, floors, strict=True):  # type: ignore[arg-type]
                if factor != 1.0:
                    _set_group_lr(group, reduced_rate(old, factor, floor))
        self.best = self.mode_worse if state.best is None else state.best
        self.num_bad_epochs = state.wait
        self.cooldown_counter = state.cooldown_counter
        self._reductions = state.reductions
        self._last_lr = _group_lrs(self.optimizer)
        after = tuple(float(g["lr"]) for g in groups)
        self.last_decision = make_decision(
            clock="round", round=epoch, epoch=epoch - 1, optimizer_steps=0, stop=False,
            lr=after if len(after) > 1 else after[0], lr_changed=after != lrs,
            snapshot_best=False, restore_best=False, save=None, last=None, delete=(),
            details=(decision,), labels=(policy.label,), metrics=obs.metrics,
        )

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict: every attribute but the optimizer (same keys as torch's class).

        Non-finite values (``best``, ``mode_worse``) are floats, as in torch; ``json.dumps``
        writes them as ``Infinity`` / ``NaN``, which ``json.loads`` reads back.
        """
        out = {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}
        out["min_lrs"] = list(self.min_lrs)
        out["_last_lr"] = list(self._last_lr)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict of this class or of torch's ``ReduceLROnPlateau``.

        Entries torch's class does not have are ignored; a partial dict updates what it names
        (as torch does). The result is validated by the core before anything changes: on an
        error the scheduler is left as it was.
        """
        saved = dict(self.__dict__)
        try:
            self.__dict__.update({k: v for k, v in state_dict.items() if k in _STATE_KEYS})
            if isinstance(self.min_lrs, tuple):
                self.min_lrs = list(self.min_lrs)
            for name in ("best", "mode_worse"):
                value = self.__dict__[name]
                if isinstance(value, str):  # strict-JSON spellings: "inf", "-inf", "nan"
                    self.__dict__[name] = float(value)
            _check_modes(self.mode, self.threshold_mode)
            self.mode_worse = math.inf if self.mode == "min" else -math.inf  # as torch does
            policy = self._core(len(self.optimizer.param_groups))
            state = self._core_state()
            checked = policy.state_from_dict(policy.state_to_dict(state))
            self.num_bad_epochs, self.cooldown_counter = checked.wait, checked.cooldown_counter
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def __getstate__(self) -> dict[str, Any]:
        # the core configuration holds compiled comparisons (not picklable): rebuilt on load;
        # the last decision's lazily rendered reason is not kept either
        state = dict(self.__dict__)
        state.update(_policy=None, _policy_key=None, last_decision=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._policy = self._core(len(self.optimizer.param_groups))

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(last_epoch={self.last_epoch}, best={self.best!r}, "
            f"num_bad_epochs={self.num_bad_epochs}, cooldown_counter={self.cooldown_counter}, "
            f"policy={self._policy!r})"
        )


# -- ScheduleLR ----------------------------------------------------------------------------------

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _comparable(text: str) -> str:
    """A repr without memory addresses (a lambda's repr differs from process to process)."""
    return _ADDRESS.sub("", text)


class ScheduleLR(LRScheduler):
    """A ``torch.optim.lr_scheduler.LRScheduler`` that runs a trainctl schedule.

    Args:
        optimizer: the optimizer whose param groups it sets.
        schedule: any :class:`trainctl.schedules.Schedule`; step ``t`` is ``last_epoch``.
        last_epoch: torch's resume index (``-1``: start; each group's ``initial_lr`` is set from
            its ``lr``, as every torch scheduler does).

    Each group ``i`` gets ``schedule(t)`` when its base rate equals ``schedule.base_lr``, else
    ``base_lrs[i] * (schedule(t) / schedule.base_lr)`` (torch ``LambdaLR``'s rule). Construction
    writes the rates for ``t = last_epoch + 1`` into the optimizer, as torch's schedulers do.

    Raises:
        TypeError: ``optimizer`` is not an optimizer, or ``schedule`` is not a Schedule.
        ValueError: ``schedule.base_lr`` is 0 or not finite while a group's base rate differs
            from it (the group's rate cannot be scaled).
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if not isinstance(schedule, Schedule):
            raise TypeError(
                "'schedule' must be a trainctl.schedules.Schedule (e.g. trainctl.schedules."
                f"cosine(...)), got {type(schedule).__name__} {schedule!r}"
            )
        reference = float(schedule.base_lr)
        if not (math.isfinite(reference) and reference != 0.0):
            for i, group in enumerate(optimizer.param_groups):
                base = float(group.get("initial_lr", group["lr"]))
                if base != reference:
                    raise ValueError(
                        f"param group {i} has base lr {base!r} but the schedule's base_lr is "
                        f"{reference!r}, which cannot scale it; give the group lr={reference!r} "
                        "or use a schedule with a positive base_lr"
                    )
        self.schedule = schedule
        self._reference = reference
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | Tensor]:
        """The rates at ``last_epoch`` (closed form; called by ``step``)."""
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use "
                "`get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        return self._get_closed_form_lr()

    def _get_closed_form_lr(self) -> list[float | Tensor]:
        value = schedule_rate(self.schedule, self.last_epoch)  # refused if < 0 or not finite
        reference = self._reference
        return [group_rate(float(base), value, reference) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """torch's entries (``last_epoch``, ``base_lrs``, ...) and ``"schedule"``: its repr."""
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "schedule", "_reference")
        }
        out["base_lrs"] = list(self.base_lrs)
        out["schedule"] = repr(self.schedule)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume at the saved step; the schedule stays the one given to the constructor.

        Warns (``UserWarning``) when the saved schedule's repr differs from this one's
        (memory addresses, as in a lambda's repr, are ignored).
        """
        last_epoch = state_dict.get("last_epoch", self.last_epoch)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, Integral):
            raise TypeError(
                f"state dict 'last_epoch' must be an int, got {type(last_epoch).__name__} "
                f"{last_epoch!r}"
            )
        saved = state_dict.get("schedule")
        current = repr(self.schedule)
        if isinstance(saved, str) and _comparable(saved) != _comparable(current):
            warnings.warn(
                f"ScheduleLR: the state dict was saved with schedule {saved}, but this scheduler "
                f"runs {current}; resuming at step {last_epoch} with {current}",
                UserWarning,
                stacklevel=2,
            )
        self.__dict__.update(
            {
                k: v
                for k, v in state_dict.items()
                if k not in ("optimizer", "schedule", "_reference")
            }
        )
        self.last_epoch = int(last_epoch)

    def __repr__(self) -> str:
        return f"ScheduleLR({self.schedule!r}, last_epoch={self.last_epoch})"
