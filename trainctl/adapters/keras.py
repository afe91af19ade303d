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
(``.policy``; ``.controller`` where a Controller runs it); the adapter only reads the logs and
carries the decision out. ``.last_decision`` is the latest :class:`trainctl.Decision`.

==========================================  =====================================================
Keras                                       trainctl core configuration
==========================================  =====================================================
``EarlyStopping(monitor, min_delta,         ``Controller(trainctl.EarlyStopping(monitor,
patience, mode, baseline,                   min_delta=, patience=, mode=<resolved>, baseline=,
restore_best_weights, start_from_epoch)``   restore_best_weights=, start_from_epoch=,
                                            rules="keras", precision="float32"))``; weights are
                                            snapshot on ``decision.snapshot_best`` and restored at
                                            ``on_train_end`` if ``ctl.finish().restore_best``
``ReduceLROnPlateau(monitor, factor,        ``Controller(trainctl.ReduceLROnPlateau(monitor,
patience, mode, min_delta, cooldown,        factor=, patience=, mode=<resolved>, min_delta=,
min_lr)``                                   cooldown=, min_lr=, rules="keras",
                                            precision="float32"))``, stepped with the
                                            optimizer's float32 rate (``step(logs, lr=...)``);
                                            one rate per optimizer for multi-optimizers
``ModelCheckpoint(filepath, monitor,        ``CheckpointPolicy(monitor if save_best_only else
save_best_only, save_weights_only, mode,    None, filename=<file name of filepath>,
save_freq, initial_value_threshold)``       save_best_only=, every_n_epochs=1 (``"epoch"``) or
                                            every_n_steps=save_freq, initial_value_threshold=,
                                            precision="float32")``, driven by its pure
                                            transition; files written with ``model.save`` /
                                            ``model.save_weights`` as Keras writes them
``TerminateOnNaN(raise_error)``             ``Controller(trainctl.TerminateOnNaN("loss"))``,
                                            ``optimizer_step({"loss": ...})`` after each batch
``LearningRateScheduler(schedule,           the schedule is called as Keras calls it (no decision
verbose)``                                  to take); ``.as_schedule(lr)`` gives the equivalent
                                            ``trainctl.schedules.keras_recurrence`` for a
                                            Controller
``mode="auto"``                             resolved at the first epoch end from the compiled
                                            metric's ``_direction`` (Keras' ``_set_monitor_op``)
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
- ``ReduceLROnPlateau(factor <= 0)`` (Keras accepts any factor below 1; the core's factor is in
  ``(0, 1)``): the core decides *when* with a stand-in factor of 0.5 and the adapter sets Keras'
  ``max(old * factor, min_lr)``; ``last_decision.lr`` is the rate set, but the reason's message
  names the stand-in's rate.
- Values the core validates and Keras does not (a negative ``patience``, ``cooldown`` or
  ``min_lr``) raise the core's ``ValueError``.

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
    initial_epoch = cb.resume(model)            # 0 on a fresh start
    model.fit(x, y, validation_data=(vx, vy), epochs=epochs, initial_epoch=initial_epoch,
              callbacks=[cb])
"""

from __future__ import annotations

import math
import os
import string
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from keras.src.utils import io_utils

import trainctl
from trainctl import CheckpointPolicy, Controller, Decision, Observation
from trainctl.storage import CheckpointStore

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


# -- EarlyStopping ------------------------------------------------------------------------------


class _OnePolicyCallback(_Callback):  # type: ignore[misc]
    """A drop-in whose decisions come from one core policy run by a one-policy Controller."""

    policy: Any
    controller: Controller | None
    _initial_state: Callable[[], Any]

    def _make_policy(self, direction: Direction) -> Any:
        raise NotImplementedError

    def _build(self, direction: Direction) -> Controller:
        self.policy = self._make_policy(direction)
        self.controller = Controller(self.policy)
        return self.controller

    def _state(self) -> Any:
        if self.controller is None:
            return self._initial_state()
        return self.controller.states[0]

    @property
    def wait(self) -> int:
        return int(self._state().wait)

    @property
    def best(self) -> float | None:
        best: float | None = self._state().best
        return best


class EarlyStopping(_OnePolicyCallback):
    """``keras.callbacks.EarlyStopping`` on trainctl's core (same arguments and behaviour).

    Attributes beyond Keras: ``policy`` (the :class:`trainctl.EarlyStopping`), ``controller``
    (``None`` until the direction is known: at once for ``mode="min"/"max"``, at the first epoch
    end for ``"auto"``) and ``last_decision``. Keras' ``wait``, ``best``, ``best_epoch``,
    ``stopped_epoch`` and ``best_weights`` read the core's state.
    """

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
    ) -> None:
        super().__init__()
        self.mode = _check_mode(type(self).__name__, mode)
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.best_weights: list[Any] | None = None
        self.policy: trainctl.EarlyStopping | None = None
        self.controller: Controller | None = None
        self.last_decision: Decision | None = None
        # validate now (the core's checks), even when the direction is only known later
        self._make_policy("min" if self.mode == "auto" else self.mode)  # type: ignore[arg-type]
        if self.mode != "auto":
            self._build(self.mode)  # type: ignore[arg-type]

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
        )

    _initial_state = trainctl.EarlyStoppingState

    @property
    def best_epoch(self) -> int:
        return self._state().best_epoch or 0

    @property
    def stopped_epoch(self) -> int:
        return self._state().stopped_epoch or 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # Keras: allow instances to be re-used across fit() calls
        if self.controller is not None:
            self.controller.reset()
        self.best_weights = None
        self.last_decision = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ctl = self.controller
        if ctl is None:  # Keras delays the direction until the model's metrics are built
            ctl = self._build(keras_direction(type(self).__name__, self.model, self.monitor,
                                              self.mode))
        logs = logs or {}
        if logs.get(self.monitor) is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(list(logs.keys()))}",
                stacklevel=2,
            )
            return  # an absent metric changes nothing in the core either
        decision = ctl.step(logs, epoch=epoch)
        self.last_decision = decision
        if decision.snapshot_best:
            self.best_weights = self.model.get_weights()
        if decision.stop:
            self.model.stop_training = True

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
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(list(logs.keys()))}",
                stacklevel=2,
            )
        return value


# -- ReduceLROnPlateau --------------------------------------------------------------------------

#: the core's factor for Keras' ``factor <= 0`` (see the module docstring)
_STAND_IN_FACTOR = 0.5


class ReduceLROnPlateau(_OnePolicyCallback):
    """``keras.callbacks.ReduceLROnPlateau`` on trainctl's core (same arguments and behaviour).

    Attributes beyond Keras: ``policy``, ``controller`` (``None`` until the direction is known)
    and ``last_decision``. Keras' ``wait``, ``best`` and ``cooldown_counter`` read the core's
    state. Like Keras, it writes ``logs["learning_rate"]`` (the rate used during the epoch) at
    every epoch end, and fails with Keras' ``TypeError`` if it must lower a rate that a
    ``LearningRateSchedule`` owns (use :class:`ControllerCallback` with a trainctl schedule).
    """

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
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.mode = _check_mode(type(self).__name__, mode)
        self.monitor = monitor
        self.min_delta = abs(min_delta)
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
        self.policy: trainctl.ReduceLROnPlateau | None = None
        self.controller: Controller | None = None
        self.last_decision: Decision | None = None
        self._make_policy("min" if self.mode == "auto" else self.mode)  # type: ignore[arg-type]
        if self.mode != "auto":
            self._build(self.mode)  # type: ignore[arg-type]

    def _make_policy(self, direction: Direction) -> trainctl.ReduceLROnPlateau:
        return trainctl.ReduceLROnPlateau(
            self.monitor,
            factor=self.factor if self.factor > 0 else _STAND_IN_FACTOR,
            patience=self.patience,
            mode=direction,
            min_delta=self.min_delta,
            cooldown=self.cooldown,
            min_lr=self.min_lr,
            rules="keras",
            precision="float32",
        )

    _initial_state = trainctl.PlateauState

    @property
    def cooldown_counter(self) -> int:
        return int(self._state().cooldown_counter)

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.controller is not None:
            self.controller.reset()
        self.last_decision = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ctl = self.controller
        if ctl is None:
            ctl = self._build(keras_direction(type(self).__name__, self.model, self.monitor,
                                              self.mode))
        logs = logs if logs is not None else {}
        optimizers, multi = _optimizers(self.model)
        rates = [_read_lr(opt) for opt in optimizers]
        if multi:
            for opt, rate in zip(optimizers, rates, strict=True):
                logs[f"learning_rate_{opt.name}"] = rate
        else:
            logs["learning_rate"] = rates[0]
        if logs.get(self.monitor) is None:
            warnings.warn(
                "Learning rate reduction is conditioned on metric "
                f"`{self.monitor}` which is not available. Available metrics "
                f"are: {','.join(list(logs.keys()))}.",
                stacklevel=2,
            )
            return  # the core changes nothing either (not even the cooldown)
        decision = ctl.step(logs, epoch=epoch, lr=tuple(rates) if multi else rates[0])
        self.last_decision = decision
        if not decision.lr_changed:
            return
        lr = decision.lr
        assert lr is not None  # a changed rate is a rate
        new_rates = lr if isinstance(lr, tuple) else (lr,)
        applied: list[float] = []
        for opt, old, new in zip(optimizers, rates, new_rates, strict=True):
            if new != old and self.factor <= 0:
                # the core decided *when* with a stand-in factor; the rate is Keras'
                new = max(old * self.factor, self.min_lr)
            applied.append(new)
            if new == old:
                continue
            opt.learning_rate = new
            if self.verbose > 0:
                name_str = f" {opt.name}" if multi else ""
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{name_str} "
                    f"learning rate to {new}."
                )
        if self.factor <= 0:  # report the rate really set, not the stand-in's
            self.last_decision = decision._replace(
                lr=tuple(applied) if multi else applied[0]
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


class ModelCheckpoint(_Callback):  # type: ignore[misc]
    """``keras.callbacks.ModelCheckpoint`` on trainctl's core (same arguments, files and names).

    The saving decision and the name come from a :class:`trainctl.CheckpointPolicy` (``policy``,
    its state in ``state``, the latest decision in ``last_decision``); files are written with
    ``model.save`` / ``model.save_weights(..., overwrite=True)`` as Keras writes them, nothing is
    deleted, and the best survives across ``fit`` calls (as in Keras).
    """

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
    ) -> None:
        super().__init__()
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
        self._directory, self._template = os.path.split(self.filepath)
        # The core formats names with metric values (floats); Keras' ``{batch}`` is an int
        # that only batch saves have. The core leaves batch fields in place ({{batch}}) and
        # the adapter fills them in a second pass, as Keras' own str.format would.
        self._batch_fields = _batch_template(self._template)
        if _has_fields(self._directory):
            raise ValueError(
                "trainctl's ModelCheckpoint needs the format fields of `filepath` in the file "
                f"name, not in its directory; got filepath={self.filepath}"
            )
        self.policy: CheckpointPolicy | None = None
        self.state: trainctl.CheckpointState | None = None
        self.last_decision: trainctl.CheckpointDecision | None = None
        self._steps = 0
        self._rounds = 0
        self._current_epoch = 0
        self._make_policy("min" if self.mode == "auto" else self.mode)  # type: ignore[arg-type]
        if not save_best_only or self.mode != "auto":
            self._build(self.mode if self.mode != "auto" else "min")  # type: ignore[arg-type]

    def _make_policy(self, direction: Direction) -> CheckpointPolicy:
        by_step = self.save_freq != "epoch"
        return CheckpointPolicy(
            self.monitor if self.save_best_only else None,  # Keras saves every time otherwise
            mode=direction,
            filename=self._template if self._batch_fields is None else self._batch_fields,
            save_best_only=bool(self.save_best_only),
            every_n_epochs=None if by_step else 1,
            # Keras saves once ``save_freq`` batches were seen: 0 (or less) means every batch
            every_n_steps=max(1, int(self.save_freq)) if by_step else None,
            initial_value_threshold=(
                self.initial_value_threshold if self.save_best_only else None
            ),
            precision="float32",
        )

    def _build(self, direction: Direction) -> CheckpointPolicy:
        self.policy = self._make_policy(direction)
        self.state = self.policy.initial_state()
        return self.policy

    @property
    def best(self) -> float | None:
        best = None if self.state is None else self.state.best
        return self.initial_value_threshold if best is None else best

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._ensure_policy()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._steps += 1
        self._save_model(self._current_epoch, batch, logs)

    def _ensure_policy(self) -> CheckpointPolicy:
        if self.policy is None:
            self._build(keras_direction(type(self).__name__, self.model, self.monitor,
                                        self.mode))
        assert self.policy is not None
        return self.policy

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
        policy = self._ensure_policy()
        state = self.state
        assert state is not None
        logs = logs or {}
        metrics: Mapping[str, Any] = logs
        clock: Any = "round" if batch is None else "optimizer_step"
        obs = Observation(clock, metrics, epoch, self._rounds, self._steps, None, None)
        if self.save_best_only and logs.get(self.monitor) is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
        previous = self.best
        try:
            decision, self.state = policy.update(state, obs)
        except ValueError:
            self._keras_path(epoch, batch, logs)  # Keras' KeyError for a missing field
            raise
        if batch is None:
            self._rounds += 1
        self.last_decision = decision
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

    ``controller`` runs a :class:`trainctl.TerminateOnNaN` on the optimizer-step clock;
    ``last_decision`` is the decision of the batch that stopped training (``None`` otherwise).
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error
        self.policy = trainctl.TerminateOnNaN("loss")
        self.controller = Controller(self.policy)
        self.last_decision: Decision | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.controller.reset()
        self.last_decision = None

    def on_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None:
            return
        ctl = self.controller
        already = ctl.stopped
        decision = ctl.optimizer_step({"loss": loss})
        if not decision.stop or (already and math.isfinite(float(loss))):
            return  # Keras reacts to each invalid loss, and only to those
        self.last_decision = decision
        if self.raise_error:
            raise RuntimeError(
                f"NaN or Inf loss encountered at batch {batch}. "
                f"Loss value: {loss}. Terminating training immediately."
            )
        io_utils.print_msg(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


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
        if multi:
            for opt in optimizers:
                logs[f"learning_rate_{opt.name}"] = _read_lr(opt)
        else:
            logs["learning_rate"] = _read_lr(optimizers[0])


# -- ControllerCallback -------------------------------------------------------------------------

#: the store entry holding the best weights for ``restore_best_weights`` across a resume
BEST_WEIGHTS_NAME = "trainctl-best.weights.h5"
_MODEL_SUFFIXES = (".keras", ".h5")


def _scalar_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class ControllerCallback(_Callback):  # type: ignore[misc]
    """Run any :class:`trainctl.Controller` inside ``model.fit``.

    Hooks and clocks: ``on_train_batch_end`` -> ``ctl.optimizer_step`` (only when a policy or
    the schedule listens to optimizer steps; the batch loss is read only if a step policy needs
    metrics), ``on_epoch_end`` -> ``ctl.step(logs, epoch=epoch)``. Effects:

    - the learning rate: the controller's rate is assigned to ``model.optimizer.learning_rate``
      at train begin and whenever a decision changes it (``schedule=...`` makes trainctl own
      the rate per step or per round; plateau reductions apply on top). Without a schedule the
      optimizer's rate is reported with every round, so a plateau policy sees Keras' float32
      value. ``logs["learning_rate"]`` records the rate in use at each epoch end.
    - ``model.stop_training = True`` on a stop;
    - ``decision.snapshot_best`` keeps ``model.get_weights()``; at ``on_train_end``
      ``ctl.finish().restore_best`` puts them back;
    - checkpoints named by a :class:`trainctl.CheckpointPolicy` (its ``extension`` must be
      ``".keras"``/``".h5"`` for ``model.save`` or ``".weights.h5"`` for ``model.save_weights``)
      are written through the crash-safe ``store`` with the controller's ``state_dict()`` and
      the round's deletions.

    Args:
        controller: the controller to run.
        store: a :class:`~trainctl.storage.CheckpointStore` or a directory (needed by a
            checkpoint policy, and to resume).
        save_weights_only: refuse full-model names (``.keras``) and save weights only.
        verbose: 1 prints each decision's explanation when it changes something.

    Epochs without validation (``fit(validation_freq=n)``) are still rounds: the policies that
    monitor a ``val_`` metric skip them without a change (as Keras' callbacks do), the others
    (e.g. an unmonitored checkpoint every epoch) act. The core warns once per policy that its
    metric was absent; unlike Keras' callbacks, which warn on each such epoch.

    The controller is not reset between ``fit`` calls: a second ``fit`` continues it (call
    ``controller.reset()`` to start over). Resume an interrupted run with :meth:`resume`,
    before ``fit``::

        initial_epoch = cb.resume(model)
        model.fit(..., initial_epoch=initial_epoch, callbacks=[cb])
    """

    def __init__(
        self,
        controller: Controller,
        *,
        store: CheckpointStore | str | os.PathLike[str] | None = None,
        save_weights_only: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(controller, Controller):
            raise TypeError(
                f"'controller' must be a trainctl.Controller, got {type(controller).__name__}"
            )
        self.controller = controller
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.last_decision: Decision | None = None
        self.best_weights: list[Any] | None = None
        self.decisions: list[Decision] = []  # one per round (epoch end), for inspection
        self._store: CheckpointStore | None = None
        self._recovered = False
        if store is not None:
            self._store = store if isinstance(store, CheckpointStore) else CheckpointStore(store)
        policies = controller.policies
        checkpoints = [p for p in policies if isinstance(p, CheckpointPolicy)]
        for p in checkpoints:
            self._check_extension(p)
        if checkpoints and self._store is None:
            raise ValueError(
                "the controller has a CheckpointPolicy: pass store=<directory> (or a "
                "trainctl.storage.CheckpointStore) to ControllerCallback"
            )
        self._step_metrics = any("optimizer_step" in p.clocks for p in policies)
        clock = controller.schedule_clock
        self._step_schedule = controller.schedule is not None and clock == "optimizer_step"
        self._batch_hook = self._step_metrics or self._step_schedule
        self._owns_lr = controller.schedule is not None or any(
            isinstance(p, trainctl.ReduceLROnPlateau) for p in policies
        )
        self._restores = any(
            isinstance(p, trainctl.EarlyStopping) and p.restore_best_weights for p in policies
        )
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

    # -- the store and resuming ---------------------------------------------------------------

    @property
    def store(self) -> CheckpointStore | None:
        """The checkpoint store (recovered on first use)."""
        if self._store is not None and not self._recovered:
            self._store.recover()
            self._recovered = True
        return self._store

    def resume(self, model: Any) -> int:
        """Load the latest checkpoint and the controller state saved with it.

        Loads the weights (and the optimizer's state: the optimizer is built first) from the
        store's latest checkpoint into ``model``, restores the controller's progress (patience,
        cooldown, best, kept checkpoints, the schedule's clock), and the best weights kept for
        ``restore_best_weights``. Returns the ``initial_epoch`` to pass to ``fit`` (0 when there
        is nothing to resume). Call it before ``fit``.
        """
        store = self.store
        if store is None:
            raise ValueError("resume() needs a store: ControllerCallback(ctl, store=...)")
        entries = [e for e in store.entries if e.name != BEST_WEIGHTS_NAME]
        if not entries:
            return 0
        latest = entries[-1]
        state = store.load_state(latest.name)
        if state is None:
            raise ValueError(f"checkpoint {latest.name!r} holds no controller state")
        self.controller.load_state_dict(state)
        opt = getattr(model, "optimizer", None)
        if opt is not None and not opt.built:
            opt.build(model.trainable_variables)
        self.best_weights = None
        if self._restores and BEST_WEIGHTS_NAME in store:
            saved_epoch = store.get(BEST_WEIGHTS_NAME).metrics.get("epoch")
            if saved_epoch is not None and saved_epoch in self._best_epochs():
                model.load_weights(str(store.path(BEST_WEIGHTS_NAME)))
                self.best_weights = model.get_weights()
            else:
                warnings.warn(
                    f"{BEST_WEIGHTS_NAME} holds the weights of epoch {saved_epoch}, not the "
                    "best epoch of the resumed state; the best weights will come from the "
                    "epochs trained from now on",
                    UserWarning,
                    stacklevel=2,
                )
        model.load_weights(str(store.path(latest.name)))
        store.protect(latest.name)  # what we resumed from stays until a newer save
        epoch = self.controller.statistics().epoch
        return 0 if epoch is None else epoch + 1

    def _best_epochs(self) -> set[float]:
        return {
            float(state.best_epoch)
            for p, state in zip(self.controller.policies, self.controller.states, strict=True)
            if isinstance(p, trainctl.EarlyStopping) and p.restore_best_weights
            and state.best_epoch is not None
        }

    # -- hooks ----------------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._owns_lr:
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
        lr = self.controller.lr
        if lr is not None and self._owns_lr:
            self._apply_lr(lr)
        self._t0 = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._batch_hook:
            return
        ctl = self.controller
        decision = ctl.optimizer_step(
            logs if self._step_metrics else None,
            epoch=self._epoch,
            time=time.monotonic() - self._t0,
        )
        if decision.lr_changed and decision.lr is not None:
            self._apply_lr(decision.lr)
        if decision.save is not None or decision.last is not None:
            self._save(decision, logs or {})
        if decision.stop:
            self.last_decision = decision
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        ctl = self.controller
        optimizers, multi = _optimizers(self.model)
        rates = [_read_lr(o) for o in optimizers]
        if multi:
            for o, rate in zip(optimizers, rates, strict=True):
                logs[f"learning_rate_{o.name}"] = rate
        else:
            logs["learning_rate"] = rates[0]
        held: float | tuple[float, ...] | None = None
        if self._owns_lr and ctl.schedule is None:
            held = tuple(rates) if multi else rates[0]
        decision = ctl.step(logs, epoch=epoch, lr=held, time=time.monotonic() - self._t0)
        self.last_decision = decision
        self.decisions.append(decision)
        if self.verbose > 0:
            text = decision.explain()
            if text:
                io_utils.print_msg(f"\nEpoch {epoch + 1}: {text}")
        if decision.snapshot_best:
            self.best_weights = self.model.get_weights()
            store = self.store
            if store is not None:
                store.save(
                    BEST_WEIGHTS_NAME,
                    lambda path: self.model.save_weights(str(path), overwrite=True),
                    metrics={**_scalar_metrics(logs), "epoch": float(epoch)},
                )
        if decision.lr is not None and self._owns_lr and (
            decision.lr_changed or not _same_lr(decision.lr, rates)
        ):
            self._apply_lr(decision.lr)
        if decision.save is not None or decision.last is not None:
            self._save(decision, logs)
        if decision.stop:
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        end = self.controller.finish()
        if end.restore_best and self.best_weights is not None:
            if self.verbose > 0:
                io_utils.print_msg(end.explain())
            self.model.set_weights(self.best_weights)

    # -- effects --------------------------------------------------------------------------------

    def _apply_lr(self, lr: float | tuple[float, ...]) -> None:
        optimizers = _optimizers(self.model)[0]
        rates = lr if isinstance(lr, tuple) else (lr,) * len(optimizers)
        if len(rates) != len(optimizers):
            raise ValueError(
                f"the controller manages {len(rates)} learning rates but the model has "
                f"{len(optimizers)} optimizers"
            )
        for o, rate in zip(optimizers, rates, strict=True):
            o.learning_rate = rate  # Keras' setter assigns its float32 variable

    def _writer(self, name: str) -> Callable[[Path], object]:
        model = self.model
        if name.endswith(".weights.h5"):
            return lambda path: model.save_weights(str(path), overwrite=True)
        return lambda path: model.save(str(path), overwrite=True)

    def _save(self, decision: Decision, logs: Mapping[str, Any]) -> None:
        store = self.store
        assert store is not None
        state = self.controller.state_dict()
        metrics = _scalar_metrics(logs)
        delete: Sequence[str] = decision.delete
        for request in (decision.save, decision.last):
            if request is None:
                continue
            for name in store.protected:  # a newer checkpoint replaces the one resumed from
                store.unprotect(name)
            store.save(request.name, self._writer(request.name), metrics=metrics, state=state,
                       delete=delete)
            delete = ()


def _same_lr(lr: float | tuple[float, ...], rates: Sequence[float]) -> bool:
    mine = lr if isinstance(lr, tuple) else (lr,)
    if len(mine) != len(rates):
        return False
    return all(float(np.float32(a)) == b for a, b in zip(mine, rates, strict=True))
