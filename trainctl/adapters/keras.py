"""Keras 3 adapter: drop-in callbacks built on trainctl's core, and a callback for any Controller.

Change one import and training is identical; then turn on what Keras cannot do::

    # from keras.callbacks import EarlyStopping, ReduceLROnPlateau, ModelCheckpoint
    from trainctl.adapters.keras import EarlyStopping, ReduceLROnPlateau, ModelCheckpoint

    es = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model.fit(x, y, validation_data=(vx, vy), epochs=50, callbacks=[es])
    print(es.last_decision.explain())        # why it stopped (or did not), in words

Each drop-in subclasses ``keras.callbacks.Callback``, takes exactly the arguments of its Keras twin
(same names, defaults, validation errors and warnings) and, inside ``model.fit``, gives the same
stop epoch, the same learning rate every epoch (History's ``learning_rate`` included), the same
files with the same names and the same restored weights. The decisions come from a core policy
(``.policy``) run by a one-policy :class:`trainctl.Controller` (``.controller``); the adapter only
reads the logs and carries the decision out. ``.last_decision`` is the latest
:class:`trainctl.Decision` (``.last_decision.explain()`` says why). Every public attribute of
Keras' classes exists and is writable where Keras' is (``es.wait = 3``), the write reaching the
core's state (``es.patience = 5`` reconfigures the policy, its progress kept), and Keras' own
callback test files pass against these classes (``tests/test_keras_own_tests.py``), on Keras'
torch and JAX backends alike.

==========================================  =====================================================
Keras                                       trainctl core configuration
==========================================  =====================================================
``EarlyStopping(monitor, min_delta,         ``Controller(trainctl.EarlyStopping(monitor,
patience, mode, baseline,                   min_delta=, patience=, mode=<resolved>, baseline=,
restore_best_weights, start_from_epoch)``   restore_best_weights=, start_from_epoch=,
                                            rules="keras", precision="float32",
                                            stop_is_final=False))`` (Keras evaluates every epoch
                                            end, a stop included); weights are
                                            snapshot on ``decision.snapshot_best`` and restored at
                                            ``on_train_end`` if ``ctl.finish().restore_best``
``ReduceLROnPlateau(monitor, factor,        ``Controller(trainctl.ReduceLROnPlateau(monitor,
patience, mode, min_delta, cooldown,        factor=, patience=, mode=<resolved>, min_delta=,
min_lr)``                                   cooldown=, min_lr=, rules="keras",
                                            precision="float32",
                                            allow_nonpositive_factor=True))``, stepped with the
                                            optimizer's float32 rate (``step(logs, lr=...)``);
                                            one rate per optimizer for multi-optimizers
``ModelCheckpoint(filepath, monitor,        ``CheckpointPolicy(monitor if save_best_only else
save_best_only, save_weights_only, mode,    None, filename=<file name of filepath>,
save_freq, initial_value_threshold)``       save_best_only=, every_n_epochs=1 (``"epoch"``) or
                                            every_n_steps=save_freq, precision="float32")``,
                                            its state's ``best`` starting at
                                            initial_value_threshold (Keras' ``best`` does);
                                            files written with ``model.save`` /
                                            ``model.save_weights`` as Keras writes them
``TerminateOnNaN(raise_error)``             ``Controller(trainctl.TerminateOnNaN("loss",
                                            stop_is_final=False))`` (each bad batch stops,
                                            as in Keras), ``optimizer_step({"loss": ...})``
                                            after each batch
``LearningRateScheduler(schedule,           the schedule is called as Keras calls it (no decision
verbose)``                                  to take); ``.as_schedule(lr)`` gives the equivalent
                                            ``trainctl.schedules.keras_recurrence`` for a
                                            Controller
``mode``, ``monitor_op``                    resolved at the first epoch end (``"auto"``: from
                                            the compiled metric's ``_direction``), as Keras'
                                            ``_set_monitor_op``; ``monitor_op`` is ``None`` until
                                            then, and assigning it sets the policy's direction
==========================================  =====================================================

As in Keras: ``EarlyStopping``, ``ReduceLROnPlateau`` and ``TerminateOnNaN`` start afresh at every
``fit`` (``on_train_begin``); ``ModelCheckpoint`` keeps its best across ``fit`` calls. An epoch
without the monitored metric (e.g. ``validation_freq > 1``) changes nothing and warns with Keras'
text each time it happens, as Keras does (Python's default filter shows a repeated warning once).

Differences, all on inputs where Keras misbehaves or that the core refuses:

- ``ModelCheckpoint(save_freq=<int>, save_best_only=True)`` resolves ``mode="auto"`` at the first
  save instead of crashing (Keras 3.15 calls ``monitor_op`` before setting it). With
  ``steps_per_execution > 1`` a batch trigger counts calls of ``on_train_batch_end``, not batches.
  Format fields must sit in the file name, not in the directory part of ``filepath``.
- Values the core validates and Keras does not (a negative ``patience``, ``cooldown`` or
  ``min_lr``) raise the core's ``ValueError``, when given and when assigned.
- Keras negates its stored ``min_delta`` when the direction resolves to ``"min"``; the drop-ins
  keep the value given (the comparison is the same). An assigned ``min_delta`` counts by its
  absolute value (the core's Keras rule), where Keras would use the sign as stored.
- ``ModelCheckpoint.monitor_op`` accepts ``ops.less`` / ``ops.greater`` (and numpy's) only, and
  ``ModelCheckpoint.min_delta`` stays 0 (``CheckpointPolicy`` has no ``min_delta``).

Beyond Keras: :class:`ControllerCallback` runs any :class:`trainctl.Controller` in ``fit`` (batch
hooks -> ``optimizer_step``, epoch hooks -> ``step``), owns the learning rate (warmup + cosine +
plateau, which Keras refuses), writes checkpoints through the crash-safe
:class:`trainctl.storage.CheckpointStore` with the controller's state, and resumes exactly::

    import trainctl
    from trainctl import schedules
    from trainctl.adapters.keras import ControllerCallback

    steps = epochs * steps_per_epoch
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=2, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy("val_loss", save_top_k=2, extension=".weights.h5"),
        schedule=schedules.warmup(schedules.cosine(1e-3, total_steps=steps), warmup_steps=100),
    )
    cb = ControllerCallback(ctl, store="checkpoints")
    resumed = cb.resume(model)                  # a fresh start if the store is empty
    model.fit(x, y, validation_data=(vx, vy), epochs=epochs, callbacks=[cb])
    # fit starts at resumed.epoch by itself (and trains nothing if the run had stopped)

Logs
----
Like Keras' own ``ReduceLROnPlateau`` and ``LearningRateScheduler``, the drop-in
``ReduceLROnPlateau``, ``LearningRateScheduler`` and :class:`ControllerCallback` put the rate of
the epoch into ``logs`` as ``learning_rate`` (``learning_rate_<optimizer name>`` for each
optimizer of a multi-optimizer model), so History, ``CSVLogger`` and ``TensorBoard`` record it.
``log_scalars=True`` (every drop-in, and :class:`ControllerCallback`) adds trainctl's decisions
too, under a ``trainctl/`` prefix (:mod:`trainctl.adapters._scalars` lists the keys):
``trainctl/stop``, each policy's numeric fields (``trainctl/EarlyStopping(val_loss)/wait``,
``.../best``, ``.../best_epoch``) and one count per event (``trainctl/events/reduced_lr``). The
keys are the same from the first epoch on, so ``CSVLogger`` (which fixes its columns at the first
epoch) keeps them all. They are off by default because Keras prints every key of ``logs`` in its
progress bar (``fit(verbose=1)``): about twenty more columns per epoch, and a drop-in must print
what Keras' own callback prints. The ``trainctl/`` keys are never read back as metrics.
``keras.callbacks.TensorBoard`` writes every key of ``logs`` too, through tensorflow, which it
needs on every backend (not installed in trainctl's tests, which read History and the CSV back).
"""

from __future__ import annotations

import os
import string
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import keras
import numpy as np
from keras.src.utils import io_utils

import trainctl
from trainctl import CheckpointPolicy, Controller, Decision
from trainctl._validation import check_bool, check_controller
from trainctl.effects import EffectsRunner, Resume
from trainctl.storage import CheckpointStore

from ._scalars import ScalarTally, is_trainctl_key, merge_scalars

__all__ = [
    "ControllerCallback",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]

Direction = Literal["min", "max"]
_Callback: Any = keras.callbacks.Callback
_Schedule: Any = keras.optimizers.schedules.LearningRateSchedule


# -- shared helpers -----------------------------------------------------------------------------


def _check_mode(owner: str, mode: Any) -> str:
    """Keras' MonitorCallback: an unknown mode warns and falls back to ``"auto"``."""
    if mode not in ("auto", "min", "max"):
        warnings.warn(
            f"{owner} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3
        )
        return "auto"
    return str(mode)


def keras_direction(owner: str, model: Any, monitor: str, mode: str) -> Direction:
    """The direction Keras' ``MonitorCallback._set_monitor_op`` would pick, as ``"min"``/``"max"``.

    ``mode="auto"``: ``loss`` / ``val_loss`` minimise; otherwise the compiled metric named like
    ``monitor`` (without ``val_``) decides by its ``_direction`` (``"up"`` maximises). Raises
    Keras' ``ValueError`` when neither applies.
    """
    if mode in ("min", "max"):
        return mode  # type: ignore[return-value]
    name = monitor.removeprefix("val_")
    direction: Direction | None = "min" if name == "loss" else None
    from keras.src.trainers import compile_utils

    found = []
    for m in getattr(model, "metrics", ()) or ():
        if isinstance(m, (compile_utils.CompileMetrics, compile_utils.MetricsList)):
            found.extend(m.metrics)
    for m in found:
        if m.name == name and hasattr(m, "_direction"):
            direction = "max" if m._direction == "up" else "min"
    if direction is None:
        raise ValueError(
            f"{owner} callback received monitor={monitor}, but Keras isn't able to "
            "automatically determine whether that metric should be maximized or minimized. "
            "Pass `mode='max'` in order to monitor based on the highest metric value, or pass "
            "`mode='min'` in order to use the lowest value."
        )
    return direction


def _read_lr(optimizer: Any) -> float:
    """The rate the optimizer holds, as Keras reads it (its float32 variable, as a float)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _optimizers(model: Any) -> tuple[list[Any], bool]:
    opt = model.optimizer
    if hasattr(opt, "optimizers"):
        return list(opt.optimizers), True
    return [opt], False


def _rate_keys(optimizers: list[Any], multi: bool, rates: list[float]) -> dict[str, float]:
    """Keras' log keys for the rates: ``learning_rate``, or ``learning_rate_<optimizer name>``
    for each optimizer of a multi-optimizer (as Keras' ``ReduceLROnPlateau`` writes them)."""
    if multi:
        return {f"learning_rate_{o.name}": r for o, r in zip(optimizers, rates, strict=True)}
    return {"learning_rate": rates[0]}


def _present(logs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metrics in the logs: without ``None`` values (Keras treats ``logs.get(monitor) is
    None`` as absent) and without the ``trainctl/`` scalars that trainctl's callbacks add."""
    return {
        k: v for k, v in (logs or {}).items() if v is not None and not is_trainctl_key(k)
    }


class _EpochLogs:
    """What one trainctl callback adds to Keras' epoch logs (``log_scalars``, see the module
    docstring): ``tally`` collects the callback's decisions, :meth:`write` adds them."""

    def __init__(self) -> None:
        self.tally = ScalarTally()
        # The logs written last, kept so that its id cannot be reused: the same dict handed in
        # again (a callback driven by hand) holds this callback's own keys, to overwrite.
        self._written: dict[str, Any] | None = None

    def reset(self) -> None:
        self.tally.reset()
        self._written = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _EpochLogs):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def write(self, logs: dict[str, Any] | None) -> None:
        """Add the ``trainctl/`` scalars of the decisions since the last write to ``logs``,
        merged with those of trainctl callbacks earlier in the list (``merge_scalars``)."""
        if logs is None:
            return
        scalars = self.tally.scalars()
        if logs is self._written:
            logs.update(scalars)
        else:
            merge_scalars(logs, scalars)
        self._written = logs


def _missing(decision: Decision) -> bool:
    return any(r.event == "missing_metric" for r in decision.reasons)


# -- the drop-ins' shared base ------------------------------------------------------------------

#: Keras' comparisons (``MonitorCallback.monitor_op``) and the direction each one means; numpy's
#: are Keras 2's, which user code may still assign
_OPS: dict[Any, Direction] = {
    keras.ops.less: "min",
    keras.ops.greater: "max",
    np.less: "min",
    np.greater: "max",
}
_OP_OF: dict[Direction, Any] = {"min": keras.ops.less, "max": keras.ops.greater}


class _DropIn(_Callback):  # type: ignore[misc]
    """A Keras ``MonitorCallback`` whose decisions come from one core policy run by a one-policy
    Controller.

    Keras resolves the direction (``monitor_op``) at the first epoch end, from ``mode`` and the
    compiled metrics, and keeps it until ``monitor_op`` is assigned (``None`` resolves again).
    The controller is built as soon as a direction is known (at once for ``mode="min"/"max"``,
    or when the direction does not matter to the policy) and rebuilt, its progress carried over,
    whenever the direction resolves differently or an attribute in ``_CONFIG`` is assigned
    (Keras reads those at every epoch end, so a write must reach the core). Until the first
    build the core state lives in ``_pending``, so that Keras' attributes (``best``, ``wait``,
    ...) read and write the core's state all along.
    """

    #: the attributes the core policy is built from (see the class docstring)
    _CONFIG: ClassVar[frozenset[str]] = frozenset()

    policy: Any
    controller: Controller | None
    last_decision: Decision | None
    log_scalars: bool
    _logs: _EpochLogs
    _pending: Any
    _built: Direction | None  # the direction the policy was made with (None: not built)
    _direction: Direction | None  # Keras' resolved monitor_op, as a direction
    _ready: bool

    def _make_policy(self, direction: Direction) -> Any:
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._CONFIG or not self.__dict__.get("_ready", False):
            super().__setattr__(name, value)
            return
        old = getattr(self, name)
        super().__setattr__(name, value)
        try:
            self._build(self._built)
        except Exception:
            super().__setattr__(name, old)  # a value the core refuses changes nothing
            self._build(self._built)
            raise

    def _setup(self, mode: str, *, build_now: bool = False) -> None:
        """Validate the arguments now, as Keras does, and build if the direction is known."""
        self.policy = None
        self.controller = None
        self.last_decision = None
        self._logs = _EpochLogs()
        self._built = None
        self._direction = None
        probe = self._make_policy("min" if mode == "auto" else mode)  # type: ignore[arg-type]
        self._pending = probe.initial_state()
        if mode != "auto" or build_now:
            self._build("min" if mode == "auto" else mode)  # type: ignore[arg-type]
        self._ready = True

    def _build(self, direction: Direction | None) -> Controller | None:
        """(Re)build the policy and its controller for ``direction``; ``None`` only validates
        (nothing is built yet). The state and the controller's clocks carry over."""
        probe = self._make_policy("min" if direction is None else direction)
        if direction is None:
            return None
        ctl = Controller(probe, warn_missing=False)  # Keras' own warning text instead
        old = self.controller
        if old is None:
            ctl.replace_state(0, self._pending)
        else:
            ctl.load_state_dict(old.state_dict(), strict=False)  # a new config, same progress
        self.policy, self.controller, self._built = probe, ctl, direction
        return ctl

    def _resolve(self) -> Controller:
        """Keras' ``if self.monitor_op is None: self._set_monitor_op()`` at each epoch end."""
        if self._direction is None:
            direction = keras_direction(type(self).__name__, self.model, self.monitor, self.mode)
            if direction != self._built:
                self._build(direction)
            self._direction = direction
        assert self.controller is not None
        return self.controller

    def _ensure(self) -> Controller:
        """The controller, resolving the direction first if none is built yet (a batch save
        before the first epoch end, where Keras 3.15 fails)."""
        return self.controller if self.controller is not None else self._resolve()

    def _state(self) -> Any:
        return self._pending if self.controller is None else self.controller.states[0]

    def _set(self, **fields: Any) -> None:
        new = self._state()._replace(**fields)
        if self.controller is None:
            self._pending = new
        else:
            self.controller.replace_state(0, new)

    def _reset(self) -> None:
        self._pending = type(self._pending)()
        if self.controller is not None:
            self.controller.reset()
        self.last_decision = None
        self._logs.reset()

    def _log(self, logs: dict[str, Any] | None) -> None:
        """``log_scalars``: the epoch's ``trainctl/`` scalars into ``logs``."""
        if self.log_scalars:
            self._logs.write(logs)

    @property
    def monitor_op(self) -> Any:
        """Keras' comparison, ``ops.less`` or ``ops.greater``; ``None`` until the first epoch end
        resolves it, as in Keras. Assigning one of them (or numpy's) sets the direction of the
        core policy; ``None`` resolves it again at the next epoch end."""
        return None if self._direction is None else _OP_OF[self._direction]

    @monitor_op.setter
    def monitor_op(self, op: Any) -> None:
        if op is None:
            self._direction = None
            return
        direction = _OPS.get(op)
        if direction is None:
            raise ValueError(
                f"{type(self).__name__}.monitor_op must be keras.ops.less or keras.ops.greater "
                f"(the directions trainctl's core knows), got {op!r}"
            )
        self._build(direction)
        self._direction = direction

    @property
    def best(self) -> float | None:
        best: float | None = self._state().best
        return best

    @best.setter
    def best(self, value: float | None) -> None:
        self._set(best=None if value is None else float(value))


class _PatienceDropIn(_DropIn):
    """EarlyStopping and ReduceLROnPlateau: Keras' ``wait`` counter is the core's."""

    def _arguments(self, monitor: str, mode: str, min_delta: float, log_scalars: bool) -> None:
        """The arguments both take first, checked and stored in Keras' order."""
        self.log_scalars = check_bool("log_scalars", log_scalars)
        self.mode = _check_mode(type(self).__name__, mode)
        self.monitor = monitor
        self.min_delta = abs(min_delta)

    @property
    def wait(self) -> int:
        return int(self._state().wait)

    @wait.setter
    def wait(self, value: int) -> None:
        self._set(wait=int(value))


# -- EarlyStopping ------------------------------------------------------------------------------


class EarlyStopping(_PatienceDropIn):
    """``keras.callbacks.EarlyStopping`` on trainctl's core (same arguments and behaviour).

    Attributes beyond Keras: ``policy`` (the :class:`trainctl.EarlyStopping`), ``controller``
    (``None`` until the direction is known: at once for ``mode="min"/"max"``, at the first epoch
    end for ``"auto"``) and ``last_decision``. Keras' ``wait``, ``best``, ``best_epoch``,
    ``stopped_epoch`` and ``monitor_op`` read the core's state (and write it), ``best_weights``
    holds the kept weights; assigning ``monitor``, ``min_delta``, ``patience``, ``baseline``,
    ``restore_best_weights`` or ``start_from_epoch`` reconfigures the policy, as Keras reads them
    at every epoch end. As in Keras, a stop is not final: an epoch after a stop (training that
    goes on, e.g. driven by hand) is evaluated as usual, and ``stopped_epoch`` only records.
    """

    _CONFIG = frozenset(
        {"monitor", "min_delta", "patience", "baseline", "restore_best_weights",
         "start_from_epoch"}
    )

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        *,
        log_scalars: bool = False,
    ) -> None:
        super().__init__()
        self._arguments(monitor, mode, min_delta, log_scalars)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.best_weights: Any = None
        self._setup(self.mode)

    def _make_policy(self, direction: Direction) -> trainctl.EarlyStopping:
        return trainctl.EarlyStopping(
            self.monitor,
            min_delta=self.min_delta,
            patience=self.patience,
            mode=direction,
            baseline=self.baseline,
            restore_best_weights=bool(self.restore_best_weights),
            start_from_epoch=self.start_from_epoch,
            rules="keras",
            precision="float32",
            stop_is_final=False,  # Keras evaluates every epoch end; stopped_epoch only records
        )

    @property
    def best_epoch(self) -> int:
        return self._state().best_epoch or 0

    @best_epoch.setter
    def best_epoch(self, value: int) -> None:
        self._set(best_epoch=int(value))

    @property
    def stopped_epoch(self) -> int:
        return self._state().stopped_epoch or 0

    @stopped_epoch.setter
    def stopped_epoch(self, value: int) -> None:
        value = int(value)
        self._set(
            stopped_epoch=value or None, stop_event="patience_exhausted" if value else None
        )

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # Keras: allow instances to be re-used across fit() calls (keras#20256)
        self._reset()
        self.best_weights = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ctl = self._resolve()
        decision = ctl.step(_present(logs), epoch=epoch)
        self.last_decision = decision
        self._logs.tally.add(decision)
        if _missing(decision):
            self._warn_missing(logs or {})
        if decision.snapshot_best:
            self.best_weights = self.model.get_weights()
        if decision.stop:
            self.model.stop_training = True
        self._log(logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        ctl = self.controller
        if ctl is None:
            return
        if self.stopped_epoch > 0 and self.verbose > 0:
            io_utils.print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        end = ctl.finish()
        if end.restore_best and self.best_weights is not None:
            if self.verbose > 0:
                io_utils.print_msg(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: Mapping[str, Any] | None) -> Any:
        """Keras' helper: the monitored value, or ``None`` with Keras' warning."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            self._warn_missing(logs)
        return value

    def _warn_missing(self, logs: Mapping[str, Any]) -> None:
        """Keras' warning for an absent monitor, attributed to the caller of our caller."""
        warnings.warn(
            f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
            f"Available metrics are: {','.join(list(logs.keys()))}",
            stacklevel=3,
        )


# -- ReduceLROnPlateau --------------------------------------------------------------------------


class ReduceLROnPlateau(_PatienceDropIn):
    """``keras.callbacks.ReduceLROnPlateau`` on trainctl's core (same arguments and behaviour).

    Attributes beyond Keras: ``policy``, ``controller`` (``None`` until the direction is known)
    and ``last_decision``. Keras' ``wait``, ``best``, ``cooldown_counter`` and ``monitor_op``
    read (and write) the core's state; assigning ``monitor``, ``factor``, ``patience``,
    ``min_delta``, ``cooldown`` or ``min_lr`` reconfigures the policy (Keras reads them at every
    epoch end). Like Keras, it writes ``logs["learning_rate"]`` (the rate
    used during the epoch) at every epoch end, and fails with Keras' ``TypeError`` if it must
    lower a rate that a ``LearningRateSchedule`` owns (use :class:`ControllerCallback` with a
    trainctl schedule). ``factor <= 0`` sends each reduction to ``min_lr``, as in Keras.
    """

    _CONFIG = frozenset({"monitor", "factor", "patience", "min_delta", "cooldown", "min_lr"})

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        *,
        log_scalars: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._arguments(monitor, mode, min_delta, log_scalars)
        if factor >= 1.0:
            raise ValueError(
                "ReduceLROnPlateau does not support a factor >= 1.0. "
                f"Received factor={factor}"
            )
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self._setup(self.mode)

    def _make_policy(self, direction: Direction) -> trainctl.ReduceLROnPlateau:
        return trainctl.ReduceLROnPlateau(
            self.monitor,
            factor=self.factor,
            patience=self.patience,
            mode=direction,
            min_delta=self.min_delta,
            cooldown=self.cooldown,
            min_lr=self.min_lr,
            rules="keras",
            precision="float32",
            allow_nonpositive_factor=True,  # Keras: max(lr * factor, min_lr) for any factor < 1
        )

    @property
    def cooldown_counter(self) -> int:
        return int(self._state().cooldown_counter)

    @cooldown_counter.setter
    def cooldown_counter(self, value: int) -> None:
        self._set(cooldown_counter=int(value))

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ctl = self._resolve()
        logs = logs if logs is not None else {}
        optimizers, multi = _optimizers(self.model)
        rates = [_read_lr(opt) for opt in optimizers]
        logs.update(_rate_keys(optimizers, multi, rates))  # as Keras does, log_scalars or not
        decision = ctl.step(_present(logs), epoch=epoch, lr=tuple(rates) if multi else rates[0])
        self.last_decision = decision
        self._logs.tally.add(decision)
        if _missing(decision):
            warnings.warn(
                "Learning rate reduction is conditioned on metric "
                f"`{self.monitor}` which is not available. Available metrics "
                f"are: {','.join(list(logs.keys()))}.",
                stacklevel=2,
            )
        self._log(logs)
        if not decision.lr_changed or decision.lr is None:
            return
        new_rates = decision.lr if isinstance(decision.lr, tuple) else (decision.lr,)
        for opt, old, new in zip(optimizers, rates, new_rates, strict=True):
            if new == old:
                continue
            opt.learning_rate = new
            if self.verbose > 0:
                name_str = f" {opt.name}" if multi else ""
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{name_str} "
                    f"learning rate to {new}."
                )


# -- ModelCheckpoint ----------------------------------------------------------------------------


def _has_fields(text: str) -> bool:
    try:
        return any(field is not None for _, field, _, _ in string.Formatter().parse(text))
    except ValueError:
        return True


def _batch_template(template: str) -> str | None:
    """``template`` with ``{batch...}`` fields escaped for a second pass (``None``: there are none).

    Literal braces are escaped twice, so that they survive both passes.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return None
    if not any(field == "batch" for _, field, _, _ in parts):
        return None
    out = []
    for literal, field, spec, conversion in parts:
        out.append(literal.replace("{", "{{{{").replace("}", "}}}}"))
        if field is None:
            continue
        conv = f"!{conversion}" if conversion else ""
        fmt = f":{spec}" if spec else ""
        if field == "batch":
            out.append("{{" + field + conv + fmt + "}}")
        else:
            out.append("{" + field + conv + fmt + "}")
    return "".join(out)


class ModelCheckpoint(_DropIn):
    """``keras.callbacks.ModelCheckpoint`` on trainctl's core (same arguments, files and names).

    The saving decision and the name come from a :class:`trainctl.CheckpointPolicy` (``policy``)
    run by a one-policy :class:`trainctl.Controller` (``controller``; its state in ``state``, the
    latest decision in ``last_decision``); files are written with ``model.save`` /
    ``model.save_weights(..., overwrite=True)`` as Keras writes them, nothing is deleted, and the
    best survives across ``fit`` calls (as in Keras). Keras' ``best`` (which starts at
    ``initial_value_threshold``) and ``monitor_op`` read and write the core's state; assigning
    ``monitor``, ``filepath``, ``save_best_only`` or ``save_freq`` reconfigures the policy.
    """

    _CONFIG = frozenset({"monitor", "filepath", "save_best_only", "save_freq"})

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
        *,
        log_scalars: bool = False,
    ) -> None:
        super().__init__()
        self.log_scalars = check_bool("log_scalars", log_scalars)
        self.mode = _check_mode(type(self).__name__, mode)
        self.monitor = monitor
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        if self.save_freq != "epoch" and not isinstance(self.save_freq, int):
            raise ValueError(
                f"Unrecognized save_freq: {self.save_freq}. "
                "Expected save_freq are 'epoch' or integer values"
            )
        if save_weights_only:
            if not self.filepath.endswith(".weights.h5"):
                raise ValueError(
                    "When using `save_weights_only=True` in `ModelCheckpoint`"
                    ", the filepath provided must end in `.weights.h5` "
                    "(Keras weights format). Received: "
                    f"filepath={self.filepath}"
                )
        elif not any(self.filepath.endswith(ext) for ext in (".keras", ".h5")):
            raise ValueError(
                "The filepath provided must end in `.keras` "
                "(Keras model format). Received: "
                f"filepath={self.filepath}"
            )
        self._current_epoch = 0
        # without save_best_only the policy monitors nothing, so it can be built at once
        self._setup(self.mode, build_now=not save_best_only)
        # Keras' MonitorCallback starts ``best`` at the threshold (and never resets it): the
        # core's state holds it, so that assigning ``best`` (None included) reaches the policy
        self.best = initial_value_threshold

    def _make_policy(self, direction: Direction) -> CheckpointPolicy:
        directory, template = os.path.split(os.fspath(self.filepath))
        if _has_fields(directory):
            raise ValueError(
                "trainctl's ModelCheckpoint needs the format fields of `filepath` in the file "
                f"name, not in its directory; got filepath={self.filepath}"
            )
        # The core formats names with metric values (floats); Keras' ``{batch}`` is an int
        # that only batch saves have. The core leaves batch fields in place ({{batch}}) and
        # the adapter fills them in a second pass, as Keras' own str.format would.
        batch_fields = _batch_template(template)
        by_step = self.save_freq != "epoch"
        policy = CheckpointPolicy(
            self.monitor if self.save_best_only else None,  # Keras saves every time otherwise
            mode=direction,
            filename=template if batch_fields is None else batch_fields,
            save_best_only=bool(self.save_best_only),
            every_n_epochs=None if by_step else 1,
            # Keras saves once ``save_freq`` batches were seen: 0 (or less) means every batch
            every_n_steps=max(1, int(self.save_freq)) if by_step else None,
            precision="float32",
        )
        self._directory, self._batch_fields = directory, batch_fields
        return policy

    @property
    def state(self) -> trainctl.CheckpointState | None:
        """The policy's state (``None`` until the direction is known)."""
        return None if self.controller is None else self.controller.states[0]

    @property
    def min_delta(self) -> float:
        """Keras' ``MonitorCallback.min_delta``: always 0 for a checkpoint (not an argument)."""
        return 0.0

    @min_delta.setter
    def min_delta(self, value: float) -> None:
        if float(value) != 0.0:  # validation only: the core has nothing to configure
            raise ValueError(
                "trainctl's CheckpointPolicy compares without a min_delta (Keras' "
                f"ModelCheckpoint has none as an argument either); got min_delta={value!r}"
            )

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._resolve()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)
        self._log(logs)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._save_model(self._current_epoch, batch, logs)

    def _keras_path(self, epoch: int, batch: int | None, logs: Mapping[str, Any]) -> str:
        """Keras' own formatting, used only to raise Keras' error for a missing field."""
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}'
            ) from None

    def _save_model(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        ctl = self._ensure()
        logs = logs or {}
        if self.save_best_only and logs.get(self.monitor) is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
        previous = self.best
        try:
            if batch is None:
                decision = ctl.step(_present(logs), epoch=epoch)
            else:
                decision = ctl.optimizer_step(_present(logs), epoch=epoch)
        except ValueError:
            self._keras_path(epoch, batch, logs)  # Keras' KeyError for a missing field
            raise
        self.last_decision = decision
        self._logs.tally.add(decision)
        current = logs.get(self.monitor)
        path = None
        if decision.save is not None:
            name = decision.save.name
            if self._batch_fields is not None:
                if "batch" in logs:
                    name = name.format(batch=logs["batch"])
                elif batch is not None:
                    name = name.format(batch=batch + 1)
                else:
                    self._keras_path(epoch, batch, logs)  # Keras' KeyError
            path = os.path.join(self._directory, name)
        if self.verbose > 0:
            best_str = "None" if previous is None else f"{previous:.5f}"
            if not self.save_best_only:
                io_utils.print_msg(f"\nEpoch {epoch + 1}: saving model to {path}")
            elif current is not None and path is not None:
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to "
                    f"{current:.5f}, saving model to {path}"
                )
            elif current is not None:
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}"
                )
        if path is None:
            return
        if self._directory and not os.path.exists(self._directory):
            os.makedirs(self._directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)
        if self.verbose > 0:
            io_utils.print_msg(f"\nEpoch {epoch + 1}: finished saving model to {path}")


# -- TerminateOnNaN -----------------------------------------------------------------------------


class TerminateOnNaN(_Callback):  # type: ignore[misc]
    """``keras.callbacks.TerminateOnNaN`` on trainctl's core: stop (or raise) on a NaN/inf loss.

    ``controller`` runs a :class:`trainctl.TerminateOnNaN` (``stop_is_final=False``: each bad
    batch stops, as Keras reacts to each) on the optimizer-step clock; ``last_decision`` is the
    decision of the batch that stopped training (``None`` otherwise).
    """

    def __init__(self, raise_error: bool = False, *, log_scalars: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error
        self.log_scalars = check_bool("log_scalars", log_scalars)
        self.policy = trainctl.TerminateOnNaN("loss", stop_is_final=False)
        self.controller = Controller(self.policy)
        self.last_decision: Decision | None = None
        self._logs = _EpochLogs()

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.controller.reset()
        self.last_decision = None
        self._logs.reset()

    def on_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None:
            return
        decision = self.controller.optimizer_step({"loss": loss})
        self._logs.tally.add(decision)
        if not decision.stop:
            return
        self.last_decision = decision
        if self.raise_error:
            raise RuntimeError(
                f"NaN or Inf loss encountered at batch {batch}. "
                f"Loss value: {loss}. Terminating training immediately."
            )
        io_utils.print_msg(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.log_scalars:
            self._logs.write(logs)


# -- LearningRateScheduler ----------------------------------------------------------------------


class LearningRateScheduler(_Callback):  # type: ignore[misc]
    """``keras.callbacks.LearningRateScheduler``: ``schedule(epoch, lr)`` at every epoch start.

    There is no decision to take: the schedule is called exactly as Keras calls it, with the
    optimizer's current float32 rate (so a rate lowered by a plateau callback feeds the next
    call), falling back to ``schedule(epoch)`` on ``TypeError``, and must return a float.
    :meth:`as_schedule` gives the same recurrence as a trainctl schedule for a Controller.
    """

    def __init__(self, schedule: Callable[..., Any], verbose: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def as_schedule(self, lr: float) -> trainctl.schedules.Schedule:
        """``trainctl.schedules.keras_recurrence(lr, schedule)`` (rates in float64, see there)."""
        return trainctl.schedules.keras_recurrence(lr, self.schedule)

    def _update_optimizer_lr(self, optimizer: Any, epoch: int) -> Any:
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:  # new API
            learning_rate = self.schedule(epoch, _read_lr(optimizer))
        except TypeError:  # the old one-argument API, as Keras falls back
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(
                "The output of the `schedule` function should be a float. "
                f"Got: {learning_rate}"
            )
        optimizer.learning_rate = learning_rate
        return learning_rate

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        optimizers, multi = _optimizers(self.model)
        for opt in optimizers:
            learning_rate = self._update_optimizer_lr(opt, epoch)
            if self.verbose > 0:
                which = f"{opt.name} " if multi else ""
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: LearningRateScheduler setting "
                    f"{which}learning rate to {learning_rate}."
                )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        optimizers, multi = _optimizers(self.model)
        logs.update(_rate_keys(optimizers, multi, [_read_lr(o) for o in optimizers]))


# -- ControllerCallback -------------------------------------------------------------------------

#: the suffix of the store entry that keeps the best weights (numpy arrays, ``np.savez``)
BEST_WEIGHTS_SUFFIX = ".npz"

# -- random states --------------------------------------------------------------------------------
# Keras draws its shuffles and dropout masks from Python's and numpy's generators, Keras' global
# SeedGenerator, the layers' own SeedGenerators (model variables that Keras does not save; the JAX
# backend draws unseeded dropout from them) and, on the torch backend, torch's global generator.
# Their states travel inside each checkpoint file, so that the file alone resumes a run exactly: a
# ``.keras`` zip gets one more member, an HDF5 file (``.h5``, ``.weights.h5``) one more root
# attribute; Keras' loaders read neither.

_RNG_MEMBER = "trainctl-rng.json"  # in a .keras zip
_RNG_ATTRIBUTE = "trainctl_rng"  # on an HDF5 file's root


def _seed_states(model: Any) -> list[Any]:
    """The state variables of the model's layers' SeedGenerators, in the model's order."""
    return [
        v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")
    ]


def rng_state(model: Any) -> dict[str, Any]:
    """The random states a resumed ``fit`` of ``model`` needs, as plain JSON data."""
    import random

    from keras.src.random.seed_generator import global_seed_generator

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "keras": np.asarray(global_seed_generator().state.numpy()).tolist(),
        "layers": [np.asarray(v.numpy()).tolist() for v in _seed_states(model)],
        "torch": None,
    }
    if keras.backend.backend() == "torch":
        import base64

        import torch

        state["torch"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    return state


def set_rng_state(state: Mapping[str, Any], model: Any) -> None:
    """Restore what :func:`rng_state` saved (torch's only on the torch backend; the layers'
    generators only into a model with as many as the saved one)."""
    import random

    from keras.src.random.seed_generator import global_seed_generator

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    generator = global_seed_generator()
    generator.state.assign(np.asarray(state["keras"], dtype=generator.state.dtype))
    layers = _seed_states(model)
    saved_layers = state.get("layers", [])
    if len(layers) == len(saved_layers):
        for variable, value in zip(layers, saved_layers, strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
    else:
        warnings.warn(
            f"the checkpoint holds the random states of {len(saved_layers)} layer seed "
            f"generator(s) but the model has {len(layers)}: theirs are not restored",
            UserWarning,
            stacklevel=3,
        )
    saved = state.get("torch")
    if saved is not None and keras.backend.backend() == "torch":
        import base64

        import torch

        raw = np.frombuffer(base64.b64decode(saved), dtype=np.uint8).copy()
        torch.set_rng_state(torch.from_numpy(raw))


def _embed_rng(path: Path, state: Mapping[str, Any]) -> None:
    import json

    text = json.dumps(state)
    if _is_zip(path):
        import zipfile

        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(_RNG_MEMBER, text)
    else:
        import h5py  # type: ignore[import-untyped]

        with h5py.File(path, "a") as f:
            f.attrs[_RNG_ATTRIBUTE] = text


def _read_rng(path: Path) -> dict[str, Any] | None:
    import json

    if _is_zip(path):
        import zipfile

        with zipfile.ZipFile(path) as archive:
            if _RNG_MEMBER not in archive.namelist():
                return None
            loaded: dict[str, Any] = json.loads(archive.read(_RNG_MEMBER))
            return loaded
    import h5py

    with h5py.File(path, "r") as f:
        text = f.attrs.get(_RNG_ATTRIBUTE)
    if text is None:
        return None
    loaded = json.loads(text)
    return loaded


def _is_zip(path: Path) -> bool:
    """Whether Keras writes ``path`` as a ``.keras`` zip (else HDF5)."""
    return str(path).endswith(".keras")
_MODEL_SUFFIXES = (".keras", ".h5")


class _KerasBackend:
    """The effects runner's backend for a Keras model (see :class:`trainctl.effects.Backend`)."""

    best_suffix = BEST_WEIGHTS_SUFFIX

    def __init__(self, owner: ControllerCallback) -> None:
        self._owner = owner

    @property
    def _model(self) -> Any:
        return self._owner.model

    def read_lrs(self) -> tuple[float, ...] | None:
        model = self._model
        if model is None or getattr(model, "optimizer", None) is None:
            return None
        return tuple(_read_lr(o) for o in _optimizers(model)[0])

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        for o, rate in zip(_optimizers(self._model)[0], lrs, strict=True):
            # A controller that does not own the rate adopts the optimizer's at every round and
            # hands it back as changed when it moved by itself (a Keras LearningRateSchedule,
            # whose rate cannot be assigned): writing the float32 value the variable already
            # holds would change nothing, so it is not written.
            if np.float32(rate) != np.float32(_read_lr(o)):
                o.learning_rate = rate  # Keras' setter assigns its float32 variable

    def snapshot_weights(self) -> list[Any]:
        return list(self._model.get_weights())

    def restore_weights(self, snapshot: Any) -> None:
        self._model.set_weights(snapshot)

    def make_checkpoint(self, *, controller_state: Mapping[str, Any], best_weights: Any) -> None:
        return None  # Keras writes the model itself (write_checkpoint); the state is the store's

    def write_checkpoint(self, payload: Any, path: Path) -> None:
        model = self._model
        if str(path).endswith(".weights.h5"):
            model.save_weights(str(path), overwrite=True)
        else:
            model.save(str(path), overwrite=True)
        if self._owner.save_rng:
            _embed_rng(path, rng_state(model))

    def write_best(self, path: Path) -> None:
        weights = self._owner.runner.best_weights
        with open(path, "wb") as f:
            np.savez(f, *weights)

    def request_stop(self) -> None:
        self._model.stop_training = True


class ControllerCallback(_Callback):  # type: ignore[misc]
    """Run any :class:`trainctl.Controller` inside ``model.fit``.

    Hooks and clocks: ``on_train_batch_end`` -> ``ctl.optimizer_step`` (only when a policy or
    the schedule listens to optimizer steps; the batch loss is read only if a step policy needs
    metrics), ``on_epoch_end`` -> ``ctl.step(logs, epoch=epoch)``. The decisions are carried out
    by :class:`trainctl.effects.EffectsRunner` (``cb.runner``) with these Keras effects:

    - the learning rate: the optimizer's rate is reported with every round (Keras' float32
      value, so a plateau policy sees exactly what Keras would); when the controller owns the
      rate (a schedule or a plateau policy) its rate is assigned to each optimizer's
      ``learning_rate`` at train begin, whenever a decision changes it and at every round.
      ``logs["learning_rate"]`` records the rate in use during each epoch;
    - ``model.stop_training = True`` on a stop;
    - ``decision.snapshot_best`` keeps ``model.get_weights()``; at ``on_train_end``
      ``ctl.finish().restore_best`` puts them back;
    - checkpoints named by a :class:`trainctl.CheckpointPolicy` (its ``extension`` must be
      ``".keras"``/``".h5"`` for ``model.save`` or ``".weights.h5"`` for ``model.save_weights``)
      are written through the crash-safe ``store`` with the controller's ``state_dict()``; the
      best weights are kept beside them as ``trainctl-best.npz``.

    Args:
        controller: the controller to run.
        store: a :class:`~trainctl.storage.CheckpointStore` or a directory (needed by a
            checkpoint policy, and to resume).
        save_weights_only: refuse full-model names (``.keras``) and save weights only.
        verbose: 1 prints each decision's explanation when it changes something.
        overwrite: let a fresh run write into a directory that holds another run's checkpoints
            (refused otherwise: resume it, or use another directory).
        save_rng: keep the random states (Python's, numpy's, Keras' global ``SeedGenerator``,
            the layers' own ``SeedGenerator`` states, which Keras' files leave out, and, on the
            torch backend, torch's) inside every checkpoint file and restore them when a resumed
            ``fit`` begins, so that shuffling and dropout continue as in an uninterrupted run, on
            the torch and JAX backends alike (``False``: leave them alone).
        log_scalars: add trainctl's decisions to each epoch's ``logs`` under ``trainctl/``
            keys (see "Logs" in the module docstring); off by default because ``fit``'s
            progress bar prints every key of ``logs``.

    Epochs without validation (``fit(validation_freq=n)``) are still rounds: the policies that
    monitor a ``val_`` metric skip them without a change (as Keras' callbacks do), the others
    (e.g. an unmonitored checkpoint every epoch) act. The core warns once per policy that its
    metric was absent; unlike Keras' callbacks, which warn on each such epoch.

    The controller is not reset between ``fit`` calls: a second ``fit`` continues it (call
    ``controller.reset()`` to start over). Resume an interrupted run with :meth:`resume` before
    ``fit``: ``fit`` then starts at the right epoch by itself, and trains nothing if the run had
    already stopped.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        store: CheckpointStore | str | os.PathLike[str] | None = None,
        save_weights_only: bool = False,
        verbose: int = 0,
        overwrite: bool = False,
        save_rng: bool = True,
        log_scalars: bool = False,
    ) -> None:
        super().__init__()
        check_controller(controller)
        self.save_rng = check_bool("save_rng", save_rng)
        self.log_scalars = check_bool("log_scalars", log_scalars)
        self._logs = _EpochLogs()
        self._rng: dict[str, Any] | None = None
        self.controller = controller
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.decisions: list[Decision] = []  # one per round (epoch end), for inspection
        self.runner = EffectsRunner(
            controller, _KerasBackend(self), store=store, overwrite=overwrite
        )
        policies = controller.policies
        checkpoints = [p for p in policies if callable(getattr(p, "format_name", None))]
        for p in checkpoints:
            self._check_extension(p)
        if checkpoints and not self.runner.has_store:
            raise ValueError(
                "the controller has a CheckpointPolicy: pass store=<directory> (or a "
                "trainctl.storage.CheckpointStore) to ControllerCallback"
            )
        self._step_metrics = any("optimizer_step" in p.clocks for p in policies)
        clock = controller.schedule_clock
        self._step_schedule = controller.schedule is not None and clock == "optimizer_step"
        self._batch_hook = self._step_metrics or self._step_schedule
        self._resumed: Resume | None = None
        self._epoch = 0
        self._t0 = 0.0

    def _check_extension(self, policy: CheckpointPolicy) -> None:
        ends = policy.filename + policy.extension
        if ends.endswith(".weights.h5"):
            return
        if ends.endswith(_MODEL_SUFFIXES) and not self.save_weights_only:
            return
        want = "'.weights.h5'" if self.save_weights_only else "'.keras' or '.weights.h5'"
        raise ValueError(
            f"{policy.label}: checkpoint names must end with {want} so that Keras can write "
            f"them (filename={policy.filename!r}, extension={policy.extension!r}); pass "
            "CheckpointPolicy(..., extension='.weights.h5')"
        )

    @property
    def store(self) -> CheckpointStore | None:
        """The checkpoint store (recovered on first use)."""
        return self.runner.store

    @property
    def last_decision(self) -> Decision | None:
        """The latest :class:`trainctl.Decision` carried out (``None`` before the first)."""
        return self.runner.last_decision

    @property
    def best_weights(self) -> Any:
        """The kept best weights (``model.get_weights()`` at the best epoch), or ``None``."""
        return self.runner.best_weights

    # -- resuming -------------------------------------------------------------------------------

    def resume(self, model: Any) -> Resume:
        """Continue the run in the store: load the latest checkpoint into ``model``.

        Loads the weights (and the optimizer's state: the optimizer is built first), restores
        the controller's progress (patience, cooldown, best, kept checkpoints, the schedule's
        clock) and the best weights kept for ``restore_best_weights``. Returns a
        :class:`trainctl.effects.Resume`: ``resume.epoch`` is the 0-based epoch to train next
        (the ``initial_epoch`` that ``fit`` will start from by itself), ``resume.stopped`` says
        the run had stopped (``fit`` then trains nothing), ``resume.fresh`` that the store was
        empty. Call it before ``fit``.

        With ``save_rng`` (the default), the random states saved in the checkpoint are restored
        when ``fit`` begins: shuffled batches and dropout masks continue as in an uninterrupted
        run.
        """
        runner = self.runner
        name = runner.latest()
        if name is None:
            self._resumed = runner.where_to_start(None)
            runner.resumed_from(None)
            return self._resumed
        store = runner.store
        assert store is not None
        state = store.load_state(name)
        if state is None:
            raise ValueError(f"checkpoint {name!r} holds no controller state")
        probe = self.controller.clone()
        probe.load_state_dict(state)  # check before anything changes
        opt = getattr(model, "optimizer", None)
        if opt is not None and not opt.built:
            opt.build(model.trainable_variables)
        rng = _read_rng(store.path(name)) if self.save_rng else None
        model.load_weights(str(store.path(name)))
        self.controller.load_state_dict(state)
        self._rng = rng
        runner.best_weights = None
        best = runner.best_entry()
        if best in store:
            raw = store.get(best).metrics.get("epoch")
            saved = None if raw is None else int(raw)
            wanted = self._best_epoch()
            if saved is not None and saved == wanted:
                with np.load(store.path(best)) as arrays:
                    runner.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
                runner.best_epoch, runner.best_written = saved, True
            else:
                warnings.warn(
                    f"{best} holds the weights of {trainctl.epoch_text(saved)}, not of the best "
                    f"epoch of the resumed state; the best weights will come from the epochs "
                    "trained from now on",
                    UserWarning,
                    stacklevel=2,
                )
        runner.resumed_from(name)
        self._resumed = runner.where_to_start(name)
        return self._resumed

    def _best_epoch(self) -> int | None:
        for p, state in zip(self.controller.policies, self.controller.states, strict=True):
            if getattr(p, "restore_best_weights", False):
                best_epoch: int | None = state.best_epoch
                return best_epoch
        return None

    # -- hooks ----------------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.controller.owns_lr:
            for o in _optimizers(self.model)[0]:
                held = getattr(o, "_learning_rate", None)
                if isinstance(held, _Schedule):
                    raise TypeError(
                        f"the optimizer's learning rate is a Keras {type(held).__name__}, but "
                        "the trainctl controller sets the rate itself (schedule or plateau "
                        "reductions). Give the optimizer a float rate and hand the schedule to "
                        "trainctl instead, e.g. Controller(..., schedule=trainctl.schedules."
                        "cosine(1e-3, total_steps=...)) (trainctl.schedules mirrors Keras' "
                        "schedules: exponential_decay, piecewise_constant, polynomial, cosine, "
                        "cosine_restarts, inverse_time_decay)."
                    )
        self.runner.check_fresh()
        resumed = self._resumed
        if resumed is not None and not resumed.fresh:
            # fit reads model._initial_epoch after on_train_begin (as for BackupAndRestore):
            # continue where the run was, or train nothing if it had stopped
            epochs = int((self.params or {}).get("epochs", resumed.epoch))
            self.model._initial_epoch = epochs if resumed.stopped else resumed.epoch
            self._resumed = None
        if self._rng is not None:
            # after fit's own set-up: the next draws are the resumed epoch's
            set_rng_state(self._rng, self.model)
            self._rng = None
        lr = self.controller.lr
        if lr is not None and self.controller.owns_lr:
            self.runner.set_rates(lr)
        self._t0 = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._batch_hook:
            return
        decision = self.runner.optimizer_step(
            _present(logs) if self._step_metrics else None,
            epoch=self._epoch,
            time=time.monotonic() - self._t0,
        )
        self._logs.tally.add(decision)
        if decision.stop:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        optimizers, multi = _optimizers(self.model)
        logs.update(_rate_keys(optimizers, multi, [_read_lr(o) for o in optimizers]))
        decision = self.runner.round(
            _present(logs), epoch=epoch, time=time.monotonic() - self._t0
        )
        self.decisions.append(decision)
        self._logs.tally.add(decision)
        if self.log_scalars:
            self._logs.write(logs)
        if self.verbose > 0:
            text = decision.explain()
            if text:
                io_utils.print_msg(f"\nEpoch {epoch + 1}: {text}")

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        try:
            end = self.runner.finish()
        finally:
            self.runner.close()  # the store's writer lock: another process may now resume
        if end.restore_best and self.runner.best_weights is not None and self.verbose > 0:
            io_utils.print_msg(end.explain())
