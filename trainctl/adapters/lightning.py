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
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks.early_stopping import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.trainer.states import TrainerFn

from .. import CheckpointPolicy, Controller, Decision, Observation, SaveRequest
from .. import EarlyStopping as CoreEarlyStopping
from .. import EarlyStoppingState as CoreEarlyStoppingState
from ..storage import CheckpointStore
from .torch import BestWeights, optimizer_lrs, set_optimizer_lrs

__all__ = ["ControllerCallback", "EarlyStopping", "EarlyStoppingReason"]

LR = float | tuple[float, ...]


def _skip(trainer: pl.Trainer) -> bool:
    """Lightning's own rule (EarlyStopping, ModelCheckpoint): act only while fitting for real."""
    return (
        trainer.state.fn != TrainerFn.FITTING
        or trainer.sanity_checking
        or bool(getattr(trainer, "fast_dev_run", False))
    )


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-element metrics as floats, for the store's manifest."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() == 1:
                out[key] = float(value.item())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class ControllerCallback(pl.Callback):
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

    Attributes:
        controller: the controller.
        store: the checkpoint store on global rank 0 (``None`` elsewhere, or without ``dirpath``).
        decisions: the decision of every evaluation round of this process, as carried out (in DDP,
            the agreed one: the stop vote of all ranks, everything else rank 0's).
        best_weights: the kept best weights (:class:`trainctl.adapters.torch.BestWeights`).
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
    ) -> None:
        super().__init__()
        if not isinstance(controller, Controller):
            raise TypeError(
                f"'controller' must be a trainctl.Controller, got {type(controller).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"'name' must be a non-empty str, got {name!r}")
        self.controller = controller
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.weights_only = bool(weights_only)
        self.name = name
        self.resume_strict = bool(resume_strict)
        self.store: CheckpointStore | None = None
        self.decisions: list[Decision] = []
        self.best_weights = BestWeights()
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self._step_policies = any("optimizer_step" in p.clocks for p in controller.policies)
        self._seen_step = 0
        self._t0 = 0.0
        self._resumed_name: str | None = None

    # -- Lightning plumbing ----------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "best_weights": self.best_weights.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.controller.load_state_dict(state_dict["controller"], strict=self.resume_strict)
        self.best_weights.load_state_dict(state_dict.get("best_weights"))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # Lightning's EarlyStopping.setup: validation several times per epoch, or not every
            # epoch -> after validation; otherwise at the train epoch end (after validation)
            self._check_on_train_epoch_end = (
                trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
            )
        if stage != "fit" or not trainer.is_global_zero or self.dirpath is None:
            return
        if self.store is None:
            self.store = CheckpointStore(self.dirpath)
            self.store.recover()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saves() and self.dirpath is None:
            raise ValueError(
                "a checkpoint policy asks for saves but ControllerCallback has no dirpath; "
                "pass dirpath=..."
            )
        self._seen_step = trainer.global_step
        self._t0 = time.monotonic()
        lr = self.controller.lr
        if lr is not None and trainer.optimizers:
            set_optimizer_lrs(trainer.optimizers, lr)
        ckpt = trainer.ckpt_path
        store = self.store
        if store is not None and ckpt is not None:
            path = Path(ckpt)
            if path.parent.resolve() == store.directory.resolve() and path.name in store:
                store.protect(path.name)  # Lightning never deletes the checkpoint resumed from
                self._resumed_name = path.name

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
        for _ in range(new_steps):
            d = ctl.optimizer_step(metrics, epoch=trainer.current_epoch, time=self._time())
            if self._step_policies:
                d = self._agree(trainer, d)
            self._apply(trainer, pl_module, d)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_on_train_epoch_end and not _skip(trainer):
            self._round(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._check_on_train_epoch_end and not _skip(trainer):
            self._round(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.controller.finish().restore_best:
            self.best_weights.restore(pl_module)

    # -- rounds and decisions --------------------------------------------------------------------

    def _round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ctl = self.controller
        d = ctl.step(
            dict(trainer.callback_metrics),
            epoch=trainer.current_epoch,
            lr=self._reported_lr(trainer),
            time=self._time(),
        )
        d = self._agree(trainer, d)
        self.decisions.append(d)
        self._apply(trainer, pl_module, d)

    def _time(self) -> float:
        return time.monotonic() - self._t0

    def _saves(self) -> bool:
        return any(isinstance(p, CheckpointPolicy) for p in self.controller.policies)

    def _reported_lr(self, trainer: pl.Trainer) -> LR | None:
        """The optimizers' rates, shaped like the controller's (hand changes are respected)."""
        if not trainer.optimizers:
            return None
        rates = optimizer_lrs(trainer.optimizers)
        mine = self.controller.lr
        if isinstance(mine, tuple) or (mine is None and len(rates) > 1):
            return rates
        if len(set(rates)) > 1:
            raise ValueError(
                f"the optimizers have {len(rates)} param groups with different rates {rates} but "
                "the controller manages a single rate; give Controller(lr=...) one rate per group"
            )
        return rates[0]

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

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, d: Decision) -> None:
        if d.lr is not None and d.lr_changed and trainer.optimizers:
            set_optimizer_lrs(trainer.optimizers, d.lr)
        if d.snapshot_best:
            self.best_weights.snapshot(pl_module)
        if d.save is not None or d.last is not None:
            self._write(trainer, d)
        if d.stop:
            trainer.should_stop = True

    def _write(self, trainer: pl.Trainer, d: Decision) -> None:
        """Every rank dumps the checkpoint (collective for some strategies); rank 0 writes it."""
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.weights_only)
        error: BaseException | None = None
        store = self.store
        if trainer.is_global_zero:
            try:
                if store is None:
                    raise ValueError(
                        "a checkpoint policy asks for a save but ControllerCallback has no "
                        "dirpath; pass dirpath=..."
                    )
                self._store_writes(trainer, store, checkpoint, d)
            except BaseException as exc:  # re-raised below, after the other ranks know
                error = exc
        if trainer.world_size > 1:
            ok = trainer.strategy.broadcast(error is None, src=0)  # also the barrier
            if not ok and error is None:
                raise RuntimeError(
                    "global rank 0 failed to write a checkpoint (see its traceback); stopping"
                )
        if error is not None:
            raise error

    def _store_writes(
        self,
        trainer: pl.Trainer,
        store: CheckpointStore,
        checkpoint: dict[str, Any],
        d: Decision,
    ) -> None:
        io = trainer.strategy.checkpoint_io

        def write(path: Path) -> None:
            io.save_checkpoint(checkpoint, path)

        metrics = _scalar_metrics(trainer.callback_metrics)
        state = self.controller.state_dict()
        requests: list[SaveRequest] = [r for r in (d.save, d.last) if r is not None]
        for i, request in enumerate(requests):
            if request.name == self._resumed_name:
                # overwriting the checkpoint resumed from (e.g. last.ckpt), as Lightning does:
                # its content is loaded already
                store.unprotect(request.name)
                self._resumed_name = None
            # the deletions go with the round's first durable write (Decision.delete)
            store.save(
                request.name,
                write,
                metrics=metrics,
                state=state,
                delete=d.delete if i == 0 else (),
            )


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

    One Lightning behaviour the core does not have: a stop is not final. When ``min_epochs`` or
    ``min_steps`` keep the Trainer running, Lightning evaluates again at the next check (an
    improvement resets ``wait_count``); so does this class, by re-arming the core's state.
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
        self._core_kwargs: dict[str, Any] = {
            "monitor": monitor,
            # Lightning flips self.min_delta's sign; the core wants it as given
            "min_delta": float(min_delta),
            "patience": patience,
            "mode": mode,
            "check_finite": check_finite,
            "stopping_threshold": stopping_threshold,
            "divergence_threshold": divergence_threshold,
            "rules": "lightning",
        }
        self._policies: dict[str, CoreEarlyStopping] = {}  # by precision
        self.policy = self._policy("float32")  # validates the arguments now
        self.core_state = self.policy.initial_state()
        self._epoch = 0

    def _policy(self, precision: Literal["float32", "float64"]) -> CoreEarlyStopping:
        policy = self._policies.get(precision)
        if policy is None:
            policy = CoreEarlyStopping(precision=precision, **self._core_kwargs)
            self._policies[precision] = policy
        return policy

    def _sync_config(self) -> None:
        """Follow the attributes Lightning (or a user) changes after construction.

        Lightning's ``load_state_dict`` overwrites ``patience`` with the checkpoint's; users set
        ``es.patience`` and friends by hand. The core configuration is frozen, so a change builds
        a new one (the state carries over: it is plain data).
        """
        raw_delta = self.min_delta if self.mode == "max" else -self.min_delta
        current = {
            "monitor": self.monitor,
            "min_delta": float(raw_delta),
            "patience": self.patience,
            "mode": self.mode,
            "check_finite": self.check_finite,
            "stopping_threshold": self.stopping_threshold,
            "divergence_threshold": self.divergence_threshold,
            "rules": "lightning",
        }
        if current != self._core_kwargs:
            self._core_kwargs = current
            self._policies.clear()
            self.policy = self._policy("float32")

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        self._epoch = trainer.current_epoch
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        self._sync_config()
        policy = self._policy("float64" if current.dtype == torch.float64 else "float32")
        state = self.core_state
        if state.stopped_epoch is not None:  # Lightning checks again if the Trainer went on
            state = state._replace(stopped_epoch=None, stop_event=None)
        obs = Observation("round", {self.monitor: current}, self._epoch, 0, 0, None, None)
        decision, self.core_state = policy.update(state, obs)
        reason: str | None = None
        if decision.improved:
            reason = self._improvement_message(current)
            self.best_score = current
        self.wait_count = decision.wait
        if decision.stop:
            event = decision.reason.event
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
        self._sync_config()  # the checkpoint's patience wins, as in Lightning
        saved = state_dict.get("trainctl")
        if saved is not None:
            self.core_state = self.policy.state_from_dict(saved)
            return
        # a checkpoint of Lightning's own EarlyStopping: best and wait are all it has
        best = float(torch.as_tensor(self.best_score))
        start = math.inf if self.mode == "min" else -math.inf
        self.core_state = CoreEarlyStoppingState(
            best=None if best == start else best, wait=int(self.wait_count)
        )
