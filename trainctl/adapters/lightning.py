"""Lightning adapter: run a trainctl Controller inside ``lightning.pytorch.Trainer`` (2.x).

Two callbacks:

- :class:`ControllerCallback` feeds a :class:`trainctl.Controller` from
  ``trainer.callback_metrics`` and carries its decisions out: ``trainer.should_stop``, the learning
  rate of every optimizer and param group, best-weights snapshots, and crash-safe checkpoints
  written through :class:`trainctl.storage.CheckpointStore`. Its state (the controller's, and the
  kept best weights) lives in Lightning's own checkpoints, so ``trainer.fit(model,
  ckpt_path=...)`` resumes patience, cooldown, the best value, the schedule's clock and the kept
  set exactly.
- :class:`EarlyStopping`, a drop-in for ``lightning.pytorch.callbacks.EarlyStopping`` with the
  same signature, state keys, ``stopping_reason`` values and messages, whose decision is made by
  the core ``trainctl.EarlyStopping(rules="lightning")``.

Hooks and why
-------------
=========================  ======================================================================
hook                       what ``ControllerCallback`` does there
=========================  ======================================================================
``setup``                  decide where a round is taken, with Lightning's ``EarlyStopping``
                           rule: at ``on_train_epoch_end`` when validation runs once per epoch
                           (``val_check_interval == 1.0 and check_val_every_n_epoch == 1``; in
                           Lightning 2.x validation runs *before* ``on_train_epoch_end``, so the
                           validation metrics are there), else at ``on_validation_end``. Global
                           rank 0 opens the :class:`~trainctl.storage.CheckpointStore` and runs
                           ``recover()``.
``load_state_dict``        (``fit(ckpt_path=...)``) restore the controller and the best weights.
``on_train_start``         the model, optimizers and callbacks are restored: write the
                           controller's rate into the optimizers, start the step counter from
                           ``trainer.global_step``, protect the checkpoint resumed from (Lightning
                           never deletes it).
``on_train_batch_end``     after Lightning's optimizer step (and after Lightning's own
                           ``interval="step"`` schedulers): one ``ctl.optimizer_step`` per new
                           ``trainer.global_step`` (gradient accumulation counts once). Metrics
                           (the step's ``loss`` and ``callback_metrics``, which cost a device
                           sync) are read only if a policy listens to optimizer steps
                           (``TerminateOnNaN``, step-triggered checkpoints); a schedule alone
                           needs none.
``on_train_epoch_end`` /   one evaluation round, ``ctl.step(callback_metrics, epoch=
``on_validation_end``      current_epoch, lr=<the optimizers' rates>)``: hand changes of the
                           rate are adopted. Skipped during sanity checking, outside ``fit`` and
                           with ``fast_dev_run`` (as Lightning's callbacks do).
``on_train_end``           ``ctl.finish()``: restore the best weights if asked.
=========================  ======================================================================

Checkpoints: ``trainer.save_checkpoint`` writes straight to its path and is collective, which does
not fit an atomic store. So every rank builds the checkpoint dictionary
(``trainer._checkpoint_connector.dump_checkpoint()``, exactly what ``save_checkpoint`` writes,
including this callback's state after the round), global rank 0 writes it through
``store.save(name, write=lambda path: trainer.strategy.checkpoint_io.save_checkpoint(ckpt,
path), delete=...)`` (temporary file, fsync, rename, manifest, deletes last) and then all ranks
meet in a broadcast of rank 0's success, which is also the barrier: a failed write raises on every
rank instead of hanging the others. Files are regular ``.ckpt`` files that ``fit(ckpt_path=...)``,
``LightningModule.load_from_checkpoint`` and ``torch.load`` read. Strategies that write a
directory per checkpoint (sharded FSDP, DeepSpeed) are not supported by the store.

Distributed (DDP): every rank steps its own controller with its own ``callback_metrics`` and votes
on stopping through ``trainer.strategy.reduce_boolean_decision(stop, all=False)``, so a stop on any
rank stops all, as Lightning's ``EarlyStopping`` does. Everything else (the learning rate, the
files, the best-weights snapshot) must be identical on every rank or the replicas diverge and the
collective checkpoint hangs (Lightning#19045), so rank 0's decision is broadcast together with
rank 0's controller state, which the other ranks load: after every round all controllers are
rank 0's. Rounds cost one reduction and one small broadcast; optimizer steps cost nothing unless a
step policy is present (then the same per step).

Lightning ``EarlyStopping`` argument -> core configuration
-----------------------------------------------------------
===========================  ==================================================================
Lightning                    ``trainctl.EarlyStopping(rules="lightning", ...)``
===========================  ==================================================================
monitor                      monitor
min_delta (0.0)              min_delta (sign kept, absolute)
patience (3)                 patience (stop at ``wait >= patience``)
verbose                      — (Lightning's logging, inherited)
mode ("min")                 mode ("min" | "max")
strict (True)                — (the absent-metric check is Lightning's, inherited: RuntimeError)
check_finite (True)          check_finite
stopping_threshold           stopping_threshold
divergence_threshold         divergence_threshold
check_on_train_epoch_end     — (hook placement, inherited)
log_rank_zero_only           — (logging, inherited)
(float32 tensor metric)      precision="float32" (``"float64"`` for a float64 tensor)
===========================  ==================================================================

Usage::

    import lightning.pytorch as pl
    import trainctl
    from trainctl.adapters.lightning import ControllerCallback

    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=2, factor=0.5, rules="torch"),
        trainctl.EarlyStopping(monitor="val_loss", patience=5, rules="lightning",
                               precision="float32", restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=2, save_last=True,
                                  filename="epoch{epoch:03d}-{val_loss:.4f}", extension=".ckpt"),
        schedule=trainctl.schedules.warmup(trainctl.schedules.constant(1e-3), warmup_steps=500),
    )
    trainer = pl.Trainer(callbacks=[ControllerCallback(ctl, dirpath="checkpoints")],
                         enable_checkpointing=False)
    trainer.fit(model)                                   # ... and later, after a crash:
    trainer.fit(model, ckpt_path="checkpoints/last.ckpt")

``ControllerCallback`` owns the learning rate when the controller manages one: do not combine it
with an ``lr_scheduler`` from ``configure_optimizers`` (the controller's rate is written after
Lightning's schedulers step). A stop is final for the controller: if ``min_epochs`` keeps the
Trainer running, the controller makes no further saves or rate changes.

Logging: at every round ``ControllerCallback`` (``log_scalars=True``, the default) sends the
Trainer's loggers (``logger.log_metrics``, on global rank 0; TensorBoard, CSV, W&B alike) the
rate each param group trained at, named as ``LearningRateMonitor`` names it (``lr-SGD``,
``lr-SGD/pg1``, ``lr-Adam-1``, a scheduler config's ``name``: :func:`lr_monitor_names`), and
trainctl's decisions under ``trainctl/`` keys (``trainctl/stop``, each policy's numeric fields
such as ``trainctl/EarlyStopping(val_loss)/wait``, one count per event such as
``trainctl/events/reduced_lr``; :mod:`trainctl.adapters._scalars` lists them), at the step
Lightning logs that epoch's metrics at. Nothing goes to the progress bar. Two param groups with
the same ``name`` cannot be told apart in a log and are refused at train start.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks.early_stopping import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.trainer.states import TrainerFn

from .. import Controller, Decision
from .. import EarlyStopping as CoreEarlyStopping
from .. import EarlyStoppingState as CoreEarlyStoppingState
from .._validation import check_bool, check_controller
from ..effects import EffectsRunner, FreshRunError, Resume
from ..storage import CheckpointStore
from ._scalars import ScalarTally
from .torch import (
    RunnerViews,
    ScheduleLR,
    cpu_state_dict,
    optimizer_lrs,
    rng_state,
    set_optimizer_lrs,
    set_rng_state,
)

__all__ = ["ControllerCallback", "EarlyStopping", "EarlyStoppingReason", "lr_monitor_names"]

LR = float | tuple[float, ...]


def _batches_that_stepped(trainer: pl.Trainer) -> int:
    """The step Lightning's loggers count in (``LearningRateMonitor`` and ``self.log`` use it)."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))


def _skip(trainer: pl.Trainer) -> bool:
    """Lightning's own rule (EarlyStopping, ModelCheckpoint): act only while fitting for real."""
    return (
        trainer.state.fn != TrainerFn.FITTING
        or trainer.sanity_checking
        or bool(getattr(trainer, "fast_dev_run", False))
    )


def lr_monitor_names(trainer: pl.Trainer) -> list[str]:
    """The names Lightning's ``LearningRateMonitor`` logs the rates under, one per param group,
    in the order of :func:`~trainctl.adapters.torch.optimizer_lrs` (``trainer.optimizers``, group
    by group).

    ``LearningRateMonitor``'s rules: ``lr-<optimizer class>`` (``lr-SGD``), or the scheduler
    config's ``name``; optimizers with a scheduler are named first, in scheduler order; the
    second optimizer of a class gets ``-1``, the third ``-2``, ... (a named scheduler's does not
    count); several param groups get ``/pg1``, ``/pg2``, ... (1-based) or ``/<group name>``
    where the group has a ``"name"``, a single named group ``/<group name>``.

    Raises ``ValueError`` when one optimizer has two param groups with the same ``"name"``
    (``LearningRateMonitor`` refuses them too: their rates would share a key).
    """
    counts: defaultdict[type, int] = defaultdict(int)
    named: dict[int, list[str]] = {}
    seen: list[Any] = []

    def name_groups(opt: Any, name: str, *, counted: bool) -> None:
        seen.append(opt)
        cls = type(opt)
        if counted:
            counts[cls] += 1
        groups = opt.param_groups
        given = [g.get("name", f"pg{i}") for i, g in enumerate(groups, start=1)]
        twice = sorted({n for n in given if given.count(n) > 1})
        if twice:
            raise ValueError(
                f"{name} has param groups with the same 'name' ({', '.join(map(str, twice))}): "
                "their rates cannot be logged apart; name them apart, or pass "
                "ControllerCallback(log_scalars=False)"
            )
        count = counts.get(cls, 0)
        if count > 1:
            name = f"{name}-{count - 1}"
        if len(groups) > 1:
            named[id(opt)] = [f"{name}/{g.get('name', f'pg{i}')}"
                              for i, g in enumerate(groups, start=1)]
        else:
            only = groups[0].get("name") if groups else None
            named[id(opt)] = [f"{name}/{only}" if only else name] * len(groups)

    for config in trainer.lr_scheduler_configs:
        opt = config.scheduler.optimizer
        given = config.name
        name_groups(
            opt, given if given is not None else f"lr-{type(opt).__name__}", counted=given is None
        )
    optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
    for opt in optimizers:
        if not any(opt is other for other in seen):
            name_groups(opt, f"lr-{type(opt).__name__}", counted=True)
    return [name for opt in optimizers for name in named[id(opt)]]


class ControllerCallback(RunnerViews, pl.Callback):
    """Run a :class:`trainctl.Controller` in a ``lightning.pytorch.Trainer``.

    Args:
        controller: the controller; its policies decide, this callback only carries out.
        dirpath: the checkpoint directory (written by global rank 0 through a
            :class:`~trainctl.storage.CheckpointStore`). Required when a policy asks for saves.
        check_on_train_epoch_end: take rounds at ``on_train_epoch_end`` (``True``) or at
            ``on_validation_end`` (``False``); ``None``: Lightning's ``EarlyStopping`` rule (see the
            module docstring).
        weights_only: write checkpoints with the model weights only (no resume).
        name: distinguishes several ``ControllerCallback`` in one Trainer (the ``state_key``).
        resume_strict: on resume, refuse a controller state saved under another configuration
            (``Controller.load_state_dict(strict=...)``); ``False`` accepts changed settings.
        save_rng: keep the random states (Python, numpy, torch, CUDA) in the callback's state
            in every checkpoint and restore them when ``trainer.fit(ckpt_path=...)`` loads it
            (``False``: leave them alone), so that dropout and shuffling continue as in an
            uninterrupted run. Random numbers drawn by your own hooks between the checkpoint
            load and the first batch (``on_fit_start``, ``on_train_start``) shift the stream.
        overwrite: let a fresh run write into a directory that holds another run's checkpoints
            (refused otherwise: resume it, or use another directory).
        log_scalars: at every round, log the rates (named as ``LearningRateMonitor`` names
            them, :func:`lr_monitor_names`) and trainctl's scalars to the Trainer's loggers (see
            "Logging" in the module docstring); ``False``: log nothing.

    Attributes:
        controller: the controller.
        runner: the :class:`trainctl.effects.EffectsRunner` that carries the decisions out.
        store: the checkpoint store on global rank 0 (``None`` elsewhere, or without ``dirpath``).
        decisions: the decision of every evaluation round of this process, as carried out (in DDP,
            the agreed one: the stop vote of all ranks, everything else rank 0's).
        last_decision: the latest decision carried out (``.explain()`` says why).
    """

    def __init__(
        self,
        controller: Controller,
        *,
        dirpath: str | os.PathLike[str] | None = None,
        check_on_train_epoch_end: bool | None = None,
        weights_only: bool = False,
        name: str = "controller",
        resume_strict: bool = True,
        save_rng: bool = True,
        overwrite: bool = False,
        log_scalars: bool = True,
    ) -> None:
        super().__init__()
        check_controller(controller)
        if not isinstance(name, str) or not name:
            raise ValueError(f"'name' must be a non-empty str, got {name!r}")
        save_rng, overwrite = check_bool("save_rng", save_rng), check_bool("overwrite", overwrite)
        self.log_scalars = check_bool("log_scalars", log_scalars)
        self._tally = ScalarTally()
        self.controller = controller
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.weights_only = bool(weights_only)
        self.name = name
        self.resume_strict = bool(resume_strict)
        self.save_rng = save_rng
        self.overwrite = overwrite
        self.decisions: list[Decision] = []
        self.runner = EffectsRunner(controller, _LightningBackend(self), overwrite=overwrite)
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self._step_policies = any("optimizer_step" in p.clocks for p in controller.policies)
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None
        self._seen_step = 0
        self._t0 = 0.0

    # -- Lightning plumbing ----------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    @property
    def store(self) -> CheckpointStore | None:
        """The checkpoint store (global rank 0, with a ``dirpath``), recovered on first use."""
        return self.runner.store if self.runner.has_store else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "best_weights": self.runner.best_weights,
            "rng": rng_state() if self.save_rng else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.controller.load_state_dict(state_dict["controller"], strict=self.resume_strict)
        self.runner.best_weights = state_dict.get("best_weights")
        rng = state_dict.get("rng") if self.save_rng else None
        trainer = self._trainer
        if rng is not None and trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # Now, while Lightning loads the checkpoint: the next random numbers drawn are the
            # ones the uninterrupted run drew after this checkpoint (the train loader's iterator
            # is created before on_train_start; the sanity check runs under isolate_rng).
            set_rng_state(rng)

    def resume(self) -> Resume:
        """Where the run in ``dirpath`` stands: pass ``resume.path`` to
        ``trainer.fit(model, ckpt_path=...)`` (``None`` on a fresh start).

        Lightning's ``ckpt_path="last"`` only finds ``ModelCheckpoint``'s files; this callback's
        are found here. ``resume.epoch`` is the epoch the Trainer will continue with,
        ``resume.stopped`` says the run had stopped (``fit`` then trains nothing more).
        """
        if self.dirpath is None:
            raise ValueError("resume() needs a checkpoint directory: ControllerCallback(dirpath=)")
        self.runner.attach(CheckpointStore(self.dirpath))
        name = self.runner.latest()
        if name is None:
            self.runner.resumed_from(None)
            return self.runner.where_to_start(None)
        store = self.runner.store
        assert store is not None
        self.runner.verified_path(name)  # a changed file is refused before Lightning reads it
        probe = self.controller.clone()
        probe.load_state_dict(store.load_state(name), strict=self.resume_strict)
        self.runner.resumed_from(name)
        return Resume.of(probe, name, store.directory / name)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer, self._module = trainer, pl_module
        if self._check_on_train_epoch_end is None:
            # Lightning's EarlyStopping.setup: validation several times per epoch, or not every
            # epoch -> after validation; otherwise at the train epoch end (after validation)
            self._check_on_train_epoch_end = (
                trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
            )
        if stage != "fit" or not trainer.is_global_zero or self.dirpath is None:
            return
        if not self.runner.has_store:
            self.runner.attach(CheckpointStore(self.dirpath))
        assert self.runner.store is not None  # recovered now, before training starts

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saves() and self.dirpath is None:
            raise ValueError(
                "a checkpoint policy asks for saves but ControllerCallback has no dirpath; "
                "pass dirpath=..."
            )
        self._trainer, self._module = trainer, pl_module
        self._check_schedulers(trainer)
        if self._logs(trainer):
            lr_monitor_names(trainer)  # two param groups named alike: refused now, not mid-run
        self._seen_step = trainer.global_step
        self._t0 = time.monotonic()
        ckpt = trainer.ckpt_path
        store = self.store
        if store is not None and ckpt is not None:
            path = Path(ckpt)
            if path.parent.resolve() == store.directory.resolve() and path.name in store:
                self.runner.resumed_from(path.name)
        elif store is not None and ckpt is None and trainer.is_global_zero:
            try:
                self.runner.check_fresh()
            except FreshRunError as exc:
                raise FreshRunError(
                    f"{exc}. With Lightning: trainer.fit(model, "
                    "ckpt_path=callback.resume().path) (ckpt_path='last' only finds "
                    "ModelCheckpoint's files)"
                ) from None
        lr = self.controller.lr
        if lr is not None and self.controller.owns_lr and trainer.optimizers:
            self.runner.set_rates(lr)
        if self.controller.stopped:
            # a resumed run that had stopped: Lightning would start one more epoch; a stop is final
            trainer.should_stop = True

    def _check_schedulers(self, trainer: pl.Trainer) -> None:
        """A scheduler from ``configure_optimizers`` would fight the controller's rate."""
        if not self.controller.owns_lr:
            return
        configs = getattr(trainer, "lr_scheduler_configs", None) or []
        for config in configs:
            scheduler = config.scheduler
            if isinstance(scheduler, ScheduleLR):
                continue  # a trainctl schedule as Lightning's scheduler: the user's choice
            raise ValueError(
                f"configure_optimizers returns the learning-rate scheduler "
                f"{type(scheduler).__name__}, but the trainctl controller sets the rate itself "
                "(a schedule or a plateau policy), so the two would overwrite each other every "
                "step or epoch. Return only the optimizer and hand the schedule to trainctl: "
                "Controller(..., schedule=trainctl.schedules.<yours>(...)) (or return no "
                "scheduler-owning policies from the controller)"
            )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        new_steps = trainer.global_step - self._seen_step
        if new_steps <= 0:
            return  # accumulating gradients, or a skipped step
        self._seen_step = trainer.global_step
        metrics: Mapping[str, Any] | None = None
        if self._step_policies:
            metrics = dict(trainer.callback_metrics)
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, torch.Tensor) and "loss" not in metrics:
                metrics["loss"] = loss.detach()
        ctl = self.controller
        logs = self._logs(trainer)
        for _ in range(new_steps):
            d = ctl.optimizer_step(metrics, epoch=trainer.current_epoch, time=self._time())
            if self._step_policies:
                d = self._agree(trainer, d)
            if logs:
                self._tally.add(d)
            self.runner.carry_out(d, metrics or {})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_on_train_epoch_end and not _skip(trainer):
            # Lightning logs the epoch's metrics one step back (FitLoop.on_advance_end)
            self._round(trainer, log_step=_batches_that_stepped(trainer) - 1)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._check_on_train_epoch_end and not _skip(trainer):
            # validation runs before the counter counts the batch it follows
            self._round(trainer, log_step=_batches_that_stepped(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.runner.finish()
        self.runner.close()  # the store's writer lock (a next fit opens it again)

    # -- rounds and decisions --------------------------------------------------------------------

    def _round(self, trainer: pl.Trainer, *, log_step: int) -> None:
        metrics = dict(trainer.callback_metrics)
        logs = self._logs(trainer)
        rates = optimizer_lrs(trainer.optimizers) if logs and trainer.optimizers else ()
        d = self.controller.step(
            metrics, epoch=trainer.current_epoch, lr=self.runner.read_rates(), time=self._time()
        )
        d = self._agree(trainer, d)
        self.decisions.append(d)
        self.runner.carry_out(d, metrics)
        if logs:
            self._tally.add(d)
            self._log(trainer, rates, max(0, log_step))

    def _logs(self, trainer: pl.Trainer) -> bool:
        """Whether this process logs: ``log_scalars``, a logger, and global rank 0 (the
        decisions are rank 0's on every rank, see ``_agree``; Lightning's loggers write from
        rank 0 only)."""
        return self.log_scalars and bool(trainer.loggers) and bool(trainer.is_global_zero)

    def _log(self, trainer: pl.Trainer, rates: tuple[float, ...], step: int) -> None:
        """Log the round (see "Logging" in the module docstring)."""
        scalars: dict[str, float] = {}
        if rates:
            scalars.update(zip(lr_monitor_names(trainer), rates, strict=True))
        scalars.update(self._tally.scalars())
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)

    def _time(self) -> float:
        return time.monotonic() - self._t0

    def _saves(self) -> bool:
        return any(callable(getattr(p, "format_name", None)) for p in self.controller.policies)

    def _agree(self, trainer: pl.Trainer, d: Decision) -> Decision:
        """DDP: any rank's stop stops all; everything else (and the state) is rank 0's."""
        if trainer.world_size <= 1:
            return d
        strategy = trainer.strategy
        stop = bool(strategy.reduce_boolean_decision(bool(d.stop), all=False))
        effects = (d.lr, d.lr_changed, d.snapshot_best, d.restore_best, d.save, d.last, d.delete)
        state, effects = strategy.broadcast((self.controller.state_dict(), effects), src=0)
        if trainer.global_rank != 0:
            self.controller.load_state_dict(state)
        lr, lr_changed, snapshot, restore, save, last, delete = effects
        return d._replace(
            stop=stop,
            lr=lr,
            lr_changed=lr_changed,
            snapshot_best=snapshot,
            restore_best=restore,
            save=save,
            last=last,
            delete=tuple(delete),
        )


class _LightningBackend:
    """The effects runner's backend for a Trainer (see :class:`trainctl.effects.Backend`)."""

    def __init__(self, owner: ControllerCallback) -> None:
        self._owner = owner

    @property
    def _trainer(self) -> pl.Trainer:
        trainer = self._owner._trainer
        assert trainer is not None, "the callback is not attached to a Trainer yet"
        return trainer

    @property
    def is_writer(self) -> bool:
        trainer = self._owner._trainer
        return trainer is None or bool(trainer.is_global_zero)

    def read_lrs(self) -> tuple[float, ...] | None:
        trainer = self._owner._trainer
        if trainer is None or not trainer.optimizers:
            return None
        return optimizer_lrs(trainer.optimizers)

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        set_optimizer_lrs(self._trainer.optimizers, lrs)

    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        module = self._owner._module
        assert module is not None
        return cpu_state_dict(module)

    def restore_weights(self, snapshot: Any) -> None:
        module = self._owner._module
        assert module is not None
        module.load_state_dict(snapshot)

    def make_checkpoint(self, *, controller_state: Mapping[str, Any], best_weights: Any) -> Any:
        # exactly what trainer.save_checkpoint writes (this callback's state included); every
        # rank builds it, since some strategies gather the state collectively
        return self._trainer._checkpoint_connector.dump_checkpoint(self._owner.weights_only)

    def write_checkpoint(self, payload: Any, path: Path) -> None:
        self._trainer.strategy.checkpoint_io.save_checkpoint(payload, path)

    def request_stop(self) -> None:
        self._trainer.should_stop = True

    def agree(self, error: BaseException | None, what: str) -> None:
        trainer = self._trainer
        if trainer.world_size > 1:
            failed = bool(trainer.strategy.reduce_boolean_decision(error is not None, all=False))
            if failed and error is None:
                raise RuntimeError(
                    f"another rank failed in {what} (see its traceback); stopping every rank"
                )
        if error is not None:
            raise error


# -- the drop-in EarlyStopping ------------------------------------------------------------------

_REASONS: dict[str, EarlyStoppingReason] = {
    "non_finite": EarlyStoppingReason.NON_FINITE_METRIC,
    "stopping_threshold": EarlyStoppingReason.STOPPING_THRESHOLD,
    "divergence_threshold": EarlyStoppingReason.DIVERGENCE_THRESHOLD,
    "patience_exhausted": EarlyStoppingReason.PATIENCE_EXHAUSTED,
}


class EarlyStopping(_LightningEarlyStopping):
    """``lightning.pytorch.callbacks.EarlyStopping``, decided by ``trainctl.EarlyStopping``.

    Same signature, defaults, hooks (``on_train_epoch_end`` / ``on_validation_end``), DDP
    reduction, ``state_key`` and state keys (``wait_count``, ``stopped_epoch``, ``best_score``,
    ``patience``, ``stopping_reason``, ``stopping_reason_message``) as Lightning's, whose
    plumbing it inherits; the decision of each check is the core's
    (``rules="lightning"``, ``precision="float32"``, or ``"float64"`` for a float64 metric), and
    ``wait_count``, ``best_score`` (a tensor), ``stopping_reason`` and the messages are kept in
    sync with it. The core's state is saved under the extra key ``"trainctl"``; a checkpoint
    written by Lightning's own ``EarlyStopping`` loads too (the state key is the same).

    The core's arguments are validated: a negative ``patience`` or a non-finite ``min_delta``
    raises ``ValueError`` (Lightning accepts them).

    Lightning's own rules are core options: a stop is not final (``stop_is_final=False``: when
    ``min_epochs`` or ``min_steps`` keep the Trainer running, the next check is evaluated as
    usual and an improvement resets ``wait_count``), and ``min_delta`` is passed signed as
    Lightning stores it (``signed_min_delta=True``). ``last_decision`` is the latest
    :class:`trainctl.Decision` (``.explain()`` says why), ``controller`` the one-policy
    Controller that made it.
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            verbose=verbose,
            mode=mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        self.last_decision: Decision | None = None
        self._epoch = 0
        self._key: tuple[Any, ...] | None = None
        self.controller = self._controller("float32")  # validates the arguments now

    def _core_kwargs(self) -> dict[str, Any]:
        """The core configuration for Lightning's current attributes (Lightning's
        ``load_state_dict`` overwrites ``patience``; users set attributes by hand)."""
        return {
            "monitor": self.monitor,
            "min_delta": self.min_delta,  # signed, as Lightning stores it
            "signed_min_delta": True,
            "patience": self.patience,
            "mode": self.mode,
            "check_finite": self.check_finite,
            "stopping_threshold": self.stopping_threshold,
            "divergence_threshold": self.divergence_threshold,
            "rules": "lightning",
            "stop_is_final": False,  # Lightning checks again when the Trainer goes on
        }

    def _controller(self, precision: Literal["float32", "float64"]) -> Controller:
        """The one-policy Controller for the current attributes and the metric's precision; a
        change builds a new one carrying the state over (it is plain data)."""
        kwargs = self._core_kwargs()
        key = (precision, *sorted(kwargs.items()))
        current: Controller | None = getattr(self, "controller", None)
        if current is not None and key == self._key:
            return current
        ctl = Controller(CoreEarlyStopping(precision=precision, **kwargs), warn_missing=False)
        if current is not None:
            ctl.replace_state(0, current.states[0])
        self._key = key
        self.controller = ctl
        return ctl

    @property
    def policy(self) -> CoreEarlyStopping:
        """The core :class:`trainctl.EarlyStopping` making the decisions."""
        policy: CoreEarlyStopping = self.controller.policies[0]
        return policy

    @property
    def core_state(self) -> CoreEarlyStoppingState:
        """The core policy's state."""
        state: CoreEarlyStoppingState = self.controller.states[0]
        return state

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        self._epoch = trainer.current_epoch
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        ctl = self._controller("float64" if current.dtype == torch.float64 else "float32")
        decision = ctl.step({self.monitor: current}, epoch=self._epoch)
        self.last_decision = decision
        detail = decision.detail(ctl.labels[0])
        reason: str | None = None
        if detail.improved:
            reason = self._improvement_message(current)
            self.best_score = current
        self.wait_count = detail.wait
        if decision.stop:
            event = detail.reason.event
            self.stopping_reason = _REASONS[event]
            reason = self._stop_message(event, current)
        return decision.stop, reason

    def _stop_message(self, event: str, current: torch.Tensor) -> str:
        """Lightning's messages, word for word."""
        order = self.order_dict[self.mode]
        if event == "non_finite":
            return (
                f"Monitored metric {self.monitor} = {current} is not finite."
                f" Previous best value was {self.best_score:.3f}. Signaling Trainer to stop."
            )
        if event == "stopping_threshold":
            return (
                "Stopping threshold reached:"
                f" {self.monitor} = {current} {order} {self.stopping_threshold}."
                " Signaling Trainer to stop."
            )
        if event == "divergence_threshold":
            return (
                "Divergence threshold reached:"
                f" {self.monitor} = {current} {order} {self.divergence_threshold}."
                " Signaling Trainer to stop."
            )
        return (
            f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} "
            f"records. Best score: {self.best_score:.3f}. Signaling Trainer to stop."
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["trainctl"] = self.policy.state_to_dict(self.core_state)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        ctl = self._controller("float32")  # the checkpoint's patience wins, as in Lightning
        saved = state_dict.get("trainctl")
        if saved is not None:
            ctl.replace_state(0, self.policy.state_from_dict(saved))
            return
        # a checkpoint of Lightning's own EarlyStopping: best and wait are all it has
        best = float(torch.as_tensor(self.best_score))
        start = math.inf if self.mode == "min" else -math.inf
        ctl.replace_state(
            0, CoreEarlyStoppingState(best=None if best == start else best,
                                      wait=int(self.wait_count)),
        )
