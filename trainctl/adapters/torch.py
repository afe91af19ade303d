"""PyTorch adapter: a Controller drives a plain training loop, on one process or many.

Wrap the loop's two clocks; everything the decision says is carried out for you::

    import trainctl
    from trainctl import schedules
    from trainctl.adapters.torch import TorchController

    ctl = trainctl.Controller(
        trainctl.TerminateOnNaN(),                                     # per-step loss guard
        trainctl.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3),
        trainctl.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=2, save_last=True,
                                  extension=".pt"),
        schedule=schedules.warmup(schedules.cosine(3e-3, total_steps), warmup_steps=500),
    )
    loop = TorchController(ctl, model, optimizer, store="checkpoints",
                           extra_state=lambda: {"epoch": epoch})
    extra = loop.resume()                          # None on a fresh start
    for epoch in range(start, epochs):
        for batch in loader:
            loss = ...; loss.backward(); optimizer.step(); optimizer.zero_grad()
            if loop.optimizer_step(loss).stop:     # schedule, NaN guard, step-triggered saves
                break
        decision = loop.step({"val_loss": val_loss, "val_acc": acc}, epoch=epoch)
        if decision.stop:
            break
    loop.finish()                                  # restores the best weights if asked

What each part of a decision does here:

==============================  ===============================================================
decision                        effect
==============================  ===============================================================
``lr``                          written into every param group (one rate per group when the
                                Controller was given one per group; a single rate goes to all
                                groups); the groups' current rates are read back first, so a
                                rate changed by hand is adopted, not overwritten
``snapshot_best``               a detached CPU copy of ``model.state_dict()`` (no accelerator
                                memory); ``restore_best`` and :meth:`TorchController.finish`
                                load it back, as Keras' ``restore_best_weights``
``save`` / ``last`` /           one ``torch.save`` of model, optimizer, controller state, best
``delete``                      weights and ``extra_state()`` through the crash-safe
                                :class:`trainctl.storage.CheckpointStore`; the round's deletes
                                go with its first write; only rank 0 writes, the others wait
``stop``                        returned; on several ranks every rank gets the same stop
==============================  ===============================================================

Checkpoints load with ``torch.load(weights_only=True)`` (a checkpoint file can never run code);
:meth:`TorchController.resume` restores the model, the optimizer, the controller (patience,
cooldown, best, schedule step, kept checkpoints) and the best-weights snapshot exactly, and
refuses, with :class:`CheckpointLoadError` naming the file, a file that is not a trainctl
checkpoint or that belongs to another model or configuration.

Distributed (``torch.distributed`` initialised before the TorchController is built): at each
round the ranks agree on the metrics (``reduce="mean"`` by default, or ``"sum"``, ``"min"``,
``"max"``, ``"rank0"``; a NaN on any rank stays NaN), so every rank's controller takes the same
decision; a per-step NaN check is a collective flag, so a NaN on one rank stops all. An error in
the adapter on one rank (a bad metric, a failed save) is raised on every rank instead of
leaving the others waiting in a collective. Every rank must call ``step``/``optimizer_step``
equally often, as with any collective.

Also here: :class:`ReduceLROnPlateau` (torch's, exactly, built on the core), :class:`ScheduleLR`
(any trainctl schedule as a ``torch.optim.lr_scheduler.LRScheduler``, for Lightning's
``configure_optimizers`` or Hugging Face's Trainer), and the primitives
:func:`optimizer_lrs`, :func:`set_optimizer_lrs`, :func:`cpu_state_dict` and :class:`BestWeights`
that the Lightning adapter shares.

TensorBoard: ``TorchController(..., tensorboard="runs/exp1")`` writes, at every round, the rate
of each param group as ``lr/pg0``, ``lr/pg1``, ... (the rate the epoch trained at: a reduction
decided at this round shows at the next), the round's numeric metrics under their own names and
trainctl's decisions under ``trainctl/`` tags (``trainctl/stop``, each policy's numeric fields
such as ``trainctl/EarlyStopping(val_loss)/wait``, one count per event such as
``trainctl/events/reduced_lr``; :mod:`trainctl.adapters._scalars` lists them), all at
``global_step`` = the optimizer steps taken so far (the round number in a loop that never calls
``optimizer_step``). A directory opens a ``torch.utils.tensorboard.SummaryWriter`` at the first
round (``pip install 'trainctl[tensorboard]'``; nothing is imported before) and :meth:`finish`
closes it; a writer of your own (anything with ``add_scalar``) is flushed, never closed. Only
rank 0 writes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._torch_lr import ReduceLROnPlateau, ScheduleLR

if TYPE_CHECKING:
    from trainctl.effects import EffectsRunner

__all__ = [
    "CHECKPOINT_FORMAT",
    "BestWeights",
    "CheckpointLoadError",
    "ReduceLROnPlateau",
    "ScheduleLR",
    "TorchController",
    "cpu_state_dict",
    "optimizer_lrs",
    "rng_state",
    "set_optimizer_lrs",
    "set_rng_state",
]


def _optimizers(optimizers: Any) -> tuple[torch.optim.Optimizer, ...]:
    if isinstance(optimizers, torch.optim.Optimizer):
        return (optimizers,)
    if isinstance(optimizers, Iterable) and not isinstance(optimizers, (str, bytes)):
        out = tuple(optimizers)
        for i, opt in enumerate(out):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    f"'optimizer' [{i}] must be a torch.optim.Optimizer, got {type(opt).__name__}"
                )
        if not out:
            raise ValueError("'optimizer' must name at least one optimizer, got an empty sequence")
        return out
    raise TypeError(f"'optimizer' must be a torch.optim.Optimizer, got {type(optimizers).__name__}")


def _group_lr(group: Mapping[str, Any], where: str) -> float:
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise TypeError(f"{where}: a tensor learning rate must have one element")
        return float(lr.item())
    return float(lr)


def optimizer_lrs(optimizers: Any) -> tuple[float, ...]:
    """The learning rate of every param group, optimizer by optimizer, in order.

    ``optimizers`` is one ``torch.optim.Optimizer`` or a sequence of them (Lightning's
    ``trainer.optimizers``). Tensor rates (``lr=torch.tensor(...)``) are read as floats.
    """
    return tuple(
        _group_lr(g, f"optimizer {i} param group {j}")
        for i, opt in enumerate(_optimizers(optimizers))
        for j, g in enumerate(opt.param_groups)
    )


def set_optimizer_lrs(optimizers: Any, lrs: float | Sequence[float]) -> None:
    """Write ``lrs`` into every param group, optimizer by optimizer (the order of
    :func:`optimizer_lrs`). A single float is written to every group. A tensor rate is updated in
    place (``fill_``), so a captured or compiled optimizer sees the new value.

    Raises ``ValueError`` naming both counts when ``lrs`` has a different number of rates than
    there are param groups.
    """
    groups = [g for opt in _optimizers(optimizers) for g in opt.param_groups]
    if isinstance(lrs, (int, float)):
        values = [float(lrs)] * len(groups)
    else:
        values = [float(v) for v in lrs]
        if len(values) != len(groups):
            raise ValueError(
                f"the controller manages {len(values)} learning rate(s) but the optimizer(s) have "
                f"{len(groups)} param group(s); give the Controller lr= with one rate per group"
            )
    for group, value in zip(groups, values, strict=True):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"'lr' must be a finite float >= 0, got {value!r}")
        lr = group["lr"]
        if isinstance(lr, torch.Tensor):
            lr.fill_(value)
        else:
            group["lr"] = value


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module.state_dict()`` on the CPU (no extra accelerator memory).

    Tensors already on the CPU are cloned, so later in-place updates of the model do not change
    the copy.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        if isinstance(value, torch.Tensor):
            t = value.detach()
            out[key] = t.clone() if t.device.type == "cpu" else t.to("cpu", copy=True)
        else:  # extra state objects
            out[key] = value
    return out


class BestWeights:
    """Keeps a CPU copy of a model's weights at its best round and puts them back on request.

    ``snapshot(module)`` copies the weights (see :func:`cpu_state_dict`); ``restore(module)``
    loads them back onto the module's own devices and returns ``True``, or returns ``False``
    when no snapshot was taken (as Keras, which keeps the last weights then).
    """

    def __init__(self) -> None:
        self._weights: dict[str, torch.Tensor] | None = None

    @property
    def available(self) -> bool:
        """Whether a snapshot has been taken."""
        return self._weights is not None

    def snapshot(self, module: nn.Module) -> None:
        self._weights = cpu_state_dict(module)

    def restore(self, module: nn.Module) -> bool:
        if self._weights is None:
            return False
        module.load_state_dict(self._weights)
        return True

    def clear(self) -> None:
        self._weights = None

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The kept weights (or ``None``), e.g. to store them in a checkpoint."""
        return self._weights

    def load_state_dict(self, weights: Mapping[str, torch.Tensor] | None) -> None:
        self._weights = None if weights is None else dict(weights)


class RunnerViews:
    """What every torch-based adapter (this loop, Lightning's and Hugging Face's callbacks)
    shows of its effects runner, ``self.runner``."""

    runner: EffectsRunner

    @property
    def last_decision(self) -> Any:
        """The latest :class:`trainctl.Decision` carried out (``None`` before the first);
        ``last_decision.explain()`` says why."""
        return self.runner.last_decision

    @property
    def best_weights(self) -> BestWeights:
        """The kept best weights (a detached CPU copy), as a :class:`BestWeights`."""
        kept = BestWeights()
        kept.load_state_dict(self.runner.best_weights)
        return kept


# -- the loop driver ----------------------------------------------------------------------------

CHECKPOINT_FORMAT = "trainctl.torch.checkpoint"
CHECKPOINT_VERSION = 1

_REDUCE_OPS = ("mean", "sum", "min", "max", "rank0")


class CheckpointLoadError(ValueError):
    """A checkpoint file could not be loaded: not a trainctl checkpoint, or another model's."""


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel prefix every key with "module."
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and isinstance(
        model, (nn.parallel.DistributedDataParallel, nn.DataParallel)
    ):
        return inner
    return model


_SAFE_SCALARS = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device,
                 torch.Size)


def _check_loadable(value: Any, where: str) -> None:
    """Raise TypeError unless ``torch.load(weights_only=True)`` can read ``value`` back."""
    if isinstance(value, _SAFE_SCALARS):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be a str or int")
            _check_loadable(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_loadable(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoints hold only tensors, numbers, strings, "
        "and lists/dicts of them, so that torch.load(weights_only=True) can read them back "
        "without running code"
    )


class TorchController(RunnerViews):
    """Drive a plain PyTorch loop with a :class:`trainctl.Controller`.

    Args:
        controller: the policies, schedule and learning rates (``trainctl.Controller``).
        model: the model whose weights are snapshotted, restored and checkpointed (a
            ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer: the optimizer whose param groups get the controller's rates.
        store: a :class:`trainctl.storage.CheckpointStore` or a directory; required when a policy
            asks for checkpoints. Only rank 0 touches it.
        extra_state: called at each save; its dict (tensors, numbers, strings, lists and dicts of
            them) is saved beside the weights and handed back by :meth:`resume`.
        reduce: how the ranks of a process group agree on the round's metrics: ``"mean"``
            (default), ``"sum"``, ``"min"``, ``"max"`` (a NaN on any rank stays NaN), or
            ``"rank0"`` (rank 0's values are broadcast).
        check_every: how often a per-step loss is checked for NaN/inf (see below).
        process_group: the ``torch.distributed`` group (default: the world, if initialised).
        save_rng: save the random states (Python, numpy, torch, CUDA) in every checkpoint and
            restore them on :meth:`resume`, so that a resumed run with dropout or shuffling
            continues bit for bit (``False`` to leave the random states alone).
        overwrite: let a fresh run write into a directory that holds another run's checkpoints
            (refused otherwise: resume it, or use another directory).
        tensorboard: write TensorBoard scalars at every round (see "TensorBoard" in the module
            docstring): a log directory (``str`` or ``os.PathLike``; a
            ``torch.utils.tensorboard.SummaryWriter`` is opened there at the first round and
            closed by :meth:`finish`), or a writer of your own (a ``SummaryWriter``, or any
            object with ``add_scalar(tag, value, global_step)``; flushed by :meth:`finish`, not
            closed). ``None`` (the default) writes nothing. Only rank 0 writes.

    The decisions are carried out by the framework-neutral :class:`trainctl.effects.EffectsRunner`
    (``loop.runner``): see its rules for rates, best weights, checkpoints and the checkpoint a
    run resumed from.
    """

    def __init__(
        self,
        controller: Any,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        store: Any = None,
        extra_state: Any = None,
        reduce: str = "mean",
        check_every: int | None = None,
        process_group: Any = None,
        save_rng: bool = True,
        overwrite: bool = False,
        tensorboard: Any = None,
    ) -> None:
        from trainctl import TerminateOnNaN
        from trainctl._validation import check_bool, check_controller
        from trainctl.effects import EffectsRunner

        check_controller(controller)
        if not isinstance(model, nn.Module):
            raise TypeError(f"'model' must be a torch.nn.Module, got {type(model).__name__}")
        self._optimizers = _optimizers(optimizer)
        if len(self._optimizers) != 1:
            raise TypeError("'optimizer' must be one torch.optim.Optimizer")
        if reduce not in _REDUCE_OPS:
            raise ValueError(f"'reduce' must be one of {', '.join(_REDUCE_OPS)}, got {reduce!r}")
        if check_every is not None and (
            isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1
        ):
            raise ValueError(f"'check_every' must be an int >= 1 or None, got {check_every!r}")
        if extra_state is not None and not callable(extra_state):
            raise TypeError(
                "'extra_state' must be a callable returning a dict, got "
                f"{type(extra_state).__name__}"
            )
        save_rng, overwrite = check_bool("save_rng", save_rng), check_bool("overwrite", overwrite)
        board = _Board.of(tensorboard)
        self.controller = controller
        self.model = model
        self.optimizer = self._optimizers[0]
        self.save_rng = save_rng
        self._extra_state = extra_state
        self._reduce = reduce
        self._check_every = check_every
        self._group = process_group
        self._board = board if self.rank == 0 else None  # only rank 0 writes
        n_groups = len(self.optimizer.param_groups)
        lr = controller.lr
        if isinstance(lr, tuple) and len(lr) != n_groups:
            raise ValueError(
                f"the controller manages {len(lr)} learning rates but the optimizer has "
                f"{n_groups} param group(s); give Controller(lr=...) one rate per group"
            )
        self._groups = n_groups
        # the per-step loss is fed as "loss": it matters only to a NaN guard watching that key
        self._check_loss = any(
            isinstance(p, TerminateOnNaN) and p.monitor == "loss" and "optimizer_step" in p.clocks
            for p in controller.policies
        )
        self._fast_loss = check_every is None and not self.distributed
        self._pending: Any = None  # lazily accumulated "a loss was not finite"
        self._since_check = 0
        self.runner = EffectsRunner(
            controller, _TorchBackend(self), store=store, overwrite=overwrite
        )
        if not self.runner.has_store and any(
            callable(getattr(p, "format_name", None)) for p in controller.policies
        ):
            raise ValueError(
                "the controller has a checkpoint policy but 'store' is None; pass "
                "store=<directory or trainctl.storage.CheckpointStore>"
            )
        if lr is not None and controller.owns_lr:
            self.runner.set_rates(lr)

    @property
    def store(self) -> Any:
        """The :class:`trainctl.storage.CheckpointStore` (recovered on first use), or ``None``.

        Only rank 0 may use it.
        """
        return self.runner.store

    # -- distributed ----------------------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        """Whether a ``torch.distributed`` process group with more than one rank is in use."""
        dist = torch.distributed
        return bool(
            dist.is_available() and dist.is_initialized()
            and dist.get_world_size(self._group) > 1
        )

    @property
    def rank(self) -> int:
        """This process's rank in the group (0 without a process group)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank(self._group))
        return 0

    def _agree(self, local_error: BaseException | None, what: str) -> None:
        """Collective: every rank learns whether any rank failed; all raise together."""
        if not self.distributed:
            if local_error is not None:
                raise local_error
            return
        dist = torch.distributed
        world = dist.get_world_size(self._group)
        message = None if local_error is None else f"{type(local_error).__name__}: {local_error}"
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, message, group=self._group)
        if local_error is not None:
            raise local_error
        for r, msg in enumerate(gathered):
            if msg is not None:
                raise RuntimeError(f"rank {r} failed in {what} ({msg}); stopping every rank")

    def _reduce_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        from trainctl._monitor import coerce_metric

        dist = torch.distributed
        error: BaseException | None = None
        local: dict[str, float] = {}
        try:
            if not isinstance(metrics, Mapping):
                raise TypeError(
                    f"'metrics' must be a mapping of name -> number, got {type(metrics).__name__}"
                )
            local = {k: coerce_metric(k, metrics[k]) for k in sorted(metrics)}
        except Exception as exc:  # every rank must hear of it, or the others would hang
            error = exc
        world = dist.get_world_size(self._group)
        keys = tuple(local)
        gathered: list[Any] = [None] * world
        message = None if error is None else f"{type(error).__name__}: {error}"
        dist.all_gather_object(gathered, (keys, message), group=self._group)
        if error is not None:
            raise error
        for r, (_, msg) in enumerate(gathered):
            if msg is not None:
                raise RuntimeError(f"rank {r} failed in step() ({msg}); stopping every rank")
        for k, _ in gathered:
            if tuple(k) != keys:
                listing = "; ".join(f"rank {i}: {list(g[0])}" for i, g in enumerate(gathered))
                raise ValueError(f"ranks report different metrics ({listing})")
        if not keys:
            return {}
        values = torch.tensor([local[k] for k in keys], dtype=torch.float64)
        if self._reduce == "rank0":
            src = 0 if self._group is None else dist.get_global_rank(self._group, 0)
            dist.broadcast(values, src=src, group=self._group)
        elif self._reduce in ("mean", "sum"):  # NaN and inf propagate through a sum
            dist.all_reduce(values, op=dist.ReduceOp.SUM, group=self._group)
            if self._reduce == "mean":
                values /= world
        else:  # min / max: NaN must win on every rank, whatever the backend's NaN handling
            nan = torch.isnan(values).to(torch.float64)
            op = dist.ReduceOp.MIN if self._reduce == "min" else dist.ReduceOp.MAX
            dist.all_reduce(values, op=op, group=self._group)
            dist.all_reduce(nan, op=dist.ReduceOp.SUM, group=self._group)
            values[nan > 0] = math.nan
        return dict(zip(keys, values.tolist(), strict=True))

    # -- the two clocks -------------------------------------------------------------------------

    def step(
        self, metrics: Mapping[str, Any], *, epoch: int | None = None, time: float | None = None
    ) -> Any:
        """One evaluation round: agree on the metrics across ranks, decide, carry it out.

        Reads the optimizer's rates back first (a rate changed by hand is adopted, see
        :meth:`trainctl.Controller.step`), then sets the decided rates, snapshots or restores the
        best weights, and writes/deletes checkpoints. Returns the :class:`trainctl.Decision`,
        identical on every rank.
        """
        distributed = self.distributed
        self._fast_loss = self._check_every is None and not distributed
        if distributed:
            metrics = self._reduce_metrics(metrics)
        nan_check = self._check_loss and (self._pending is not None or distributed)
        if nan_check and self._resolve_pending():
            metrics = {**metrics, "loss": math.nan}
        board = self._board
        if board is None:
            return self.runner.round(metrics, epoch=epoch, time=time)
        rates = optimizer_lrs(self.optimizer)  # the rates the round's epoch trained at
        decision = self.runner.round(metrics, epoch=epoch, time=time)
        board.round(decision, rates)
        return decision

    def optimizer_step(
        self,
        loss: Any = None,
        *,
        metrics: Mapping[str, Any] | None = None,
        epoch: int | None = None,
        time: float | None = None,
    ) -> Any:
        """One optimizer step: call it after ``optimizer.step()``.

        Advances per-step schedules (the new rate is written into the optimizer at once) and
        step-triggered checkpoints, and checks ``loss`` (fed as ``"loss"``) for NaN/inf when a
        ``TerminateOnNaN`` listens to optimizer steps:

        ================================  ============================================
        where the loss lives              when it is checked
        ================================  ============================================
        a float or CPU tensor, one rank   every step (no device sync to pay)
        an accelerator tensor             every ``check_every`` steps, and at each round
        several ranks (any device)        every ``check_every`` steps, and at each round
        ================================  ============================================

        Lazy checking keeps a running "some loss was not finite" flag on the device (no sync);
        reading it costs one sync. The trade-off: a non-finite loss stops training up to
        ``check_every`` steps (or a round) late, after the weights may have gone bad, so pair it
        with ``restore_best_weights``. On several ranks the check is collective: every rank must
        call ``optimizer_step`` equally often, and a NaN on any rank stops all of them.
        """
        if self._check_loss and loss is not None:
            if isinstance(loss, torch.Tensor):
                if loss.numel() != 1:
                    raise TypeError(
                        f"'loss' must be a one-element tensor, got shape {tuple(loss.shape)}"
                    )
                eager = self._fast_loss and loss.device.type == "cpu"
            else:
                if isinstance(loss, (bool, str, bytes)):
                    raise TypeError(f"'loss' must be a number or a tensor, got {loss!r}")
                loss = float(loss)
                eager = self._fast_loss
            if eager:  # one process, loss on the CPU: reading it costs no sync, check now
                value = loss.item() if isinstance(loss, torch.Tensor) else loss
                metrics = {"loss": value} if metrics is None else {**metrics, "loss": value}
            else:
                if isinstance(loss, torch.Tensor):
                    bad: Any = ~torch.isfinite(loss.detach())  # stays on the device: no sync
                else:
                    bad = not math.isfinite(loss)
                pending = self._pending
                self._pending = bad if pending is None else pending | bad
                self._since_check += 1
                due = self._check_every is not None and self._since_check >= self._check_every
                if due and self._resolve_pending():
                    metrics = {**(metrics or {}), "loss": math.nan}
        decision = self.runner.optimizer_step(metrics, epoch=epoch, time=time)
        board = self._board
        if board is not None:
            board.tally.add(decision)
        return decision

    def finish(self) -> Any:
        """The end of training, whatever ended it: restores the best weights if a policy asks.

        Returns the controller's final :class:`trainctl.Decision` (``restore_best`` says whether
        weights were restored). The checkpoint store's writer lock is released.
        """
        if self._pending is not None and not self.distributed and self._resolve_pending():
            import warnings

            warnings.warn(
                "a non-finite loss was seen after the last NaN check; the weights may be bad",
                RuntimeWarning,
                stacklevel=2,
            )
        end = self.runner.finish()
        self.runner.close()  # the store's writer lock: released (using the store reopens it)
        if self._board is not None:
            self._board.close()
        return end

    def _resolve_pending(self) -> bool:
        pending, self._pending = self._pending, None
        self._since_check = 0
        if pending is None:
            bad = False
        elif isinstance(pending, torch.Tensor):
            bad = bool(pending.item())  # the one sync
        else:
            bad = bool(pending)
        if self.distributed:
            flag = torch.tensor([1.0 if bad else 0.0])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._group)
            bad = bool(flag.item() > 0)
        return bad

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint holds now: model and optimizer state, the controller's state, the
        best-weights snapshot (so that restoring the best still works after a resume), the
        random states (``save_rng``) and ``extra_state()``. Every part loads with
        ``torch.load(weights_only=True)``."""
        return self._payload(self.controller.state_dict(), self.runner.best_weights)

    def _payload(self, controller_state: Mapping[str, Any], best: Any) -> dict[str, Any]:
        extra = None if self._extra_state is None else self._extra_state()
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise TypeError(
                    f"'extra_state' must return a dict, got {type(extra).__name__}"
                )
            _check_loadable(extra, "extra_state()")
        _check_loadable(controller_state, "the controller's state_dict()")
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "controller": dict(controller_state),
            "best_weights": best,
            "rng": rng_state() if self.save_rng else None,
            "extra": None if extra is None else dict(extra),
        }

    def save(self, name: str, *, delete: Sequence[str] = ()) -> None:
        """Write a checkpoint named ``name`` now (rank 0 writes, every rank must call it)."""
        self.runner.save(name, delete=delete)

    def load_checkpoint(self, path: Any) -> dict[str, Any] | None:
        """Load a checkpoint file written by :meth:`save` or a policy: model, optimizer,
        controller, best weights and (``save_rng``) the random states. Returns the saved
        ``extra_state()`` (or ``None``).

        The file is read with ``torch.load(weights_only=True)``, so it can never run code.
        Everything is checked before anything changes: a file that is not a trainctl checkpoint,
        or that holds another model's weights, another optimizer's state or another
        configuration's controller state raises :class:`CheckpointLoadError` naming the file,
        and the model, the optimizer and the controller are left as they were.
        """
        import pickle

        from trainctl import StateError

        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
            raise CheckpointLoadError(
                f"{str(path)!r} is not a trainctl checkpoint: torch.load(weights_only=True) "
                f"refused it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointLoadError(
                f"{str(path)!r} is not a trainctl checkpoint (expected a dict with "
                f"'format': {CHECKPOINT_FORMAT!r}; save it with TorchController.save)"
            )
        if payload.get("version") != CHECKPOINT_VERSION:
            raise CheckpointLoadError(
                f"{str(path)!r} has checkpoint version {payload.get('version')!r}; this "
                f"trainctl reads version {CHECKPOINT_VERSION}"
            )
        probe = self.controller.clone()
        try:
            probe.load_state_dict(payload["controller"])
        except StateError as exc:
            raise CheckpointLoadError(
                f"{str(path)!r} was saved by a differently configured controller: {exc}"
            ) from exc
        model = _unwrap(self.model)
        problem = _state_dict_mismatch(model.state_dict(), payload["model"])
        if problem is not None:
            raise CheckpointLoadError(
                f"{str(path)!r} holds the weights of another model: {problem}"
            )
        problem = _optimizer_mismatch(self.optimizer, payload["optimizer"])
        if problem is not None:
            raise CheckpointLoadError(
                f"{str(path)!r} holds the state of another optimizer: {problem}"
            )
        best = payload.get("best_weights")
        if best is not None:
            problem = _state_dict_mismatch(model.state_dict(), best)
            if problem is not None:
                raise CheckpointLoadError(
                    f"{str(path)!r} holds best weights of another model: {problem}"
                )
        # everything fits: apply
        model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.controller.load_state_dict(payload["controller"])
        self.runner.best_weights = best
        self.runner.best_written = True
        if self.save_rng and payload.get("rng") is not None:
            set_rng_state(payload["rng"])
        self._pending = None
        self._since_check = 0
        if self.controller.lr is not None and self.controller.owns_lr:
            self.runner.set_rates(self.controller.lr)
        extra = payload.get("extra")
        return None if extra is None else dict(extra)

    def resume(self, name: str | None = None) -> Any:
        """Continue the run in the store: load its latest checkpoint (or ``name``).

        Returns a :class:`trainctl.effects.Resume`: ``resume.epoch`` is the 0-based epoch to
        train next (``for epoch in range(resume.epoch, epochs)``), ``resume.stopped`` says the
        run had already stopped (train nothing), ``resume.extra`` is the saved
        ``extra_state()``, ``resume.fresh`` says there was nothing to resume (nothing changed).
        On several ranks, rank 0 reads the manifest and every rank loads the file (a shared
        file system is assumed). The controller continues exactly where the checkpoint left
        it: same patience, cooldown, best, schedule step, kept checkpoints and random states.
        """
        chosen: str | None = None
        error: BaseException | None = None
        if self.rank == 0:
            try:
                store = self.runner.store
                if store is None:
                    raise ValueError("resume() needs a store: TorchController(..., store=...)")
                chosen = store.get(name).name if name is not None else self.runner.latest()
            except Exception as exc:
                error = exc
        if self.distributed:
            box: list[Any] = [(chosen, None if error is None else repr(error))]
            torch.distributed.broadcast_object_list(
                box, src=0 if self._group is None else torch.distributed.get_global_rank(
                    self._group, 0), group=self._group
            )
            chosen, remote = box[0]
            if error is not None:
                raise error
            if remote is not None:
                raise RuntimeError(f"rank 0 failed to open the checkpoint store: {remote}")
        elif error is not None:
            raise error
        if chosen is None:
            self.runner.resumed_from(None)
            return self.runner.where_to_start(None)
        if self.rank == 0:
            path = self.runner.verified_path(chosen)  # a changed file is refused, named
        else:
            path = self.runner._store.directory / chosen  # type: ignore[union-attr]
        extra = self.load_checkpoint(path)
        self.runner.resumed_from(chosen)
        return self.runner.where_to_start(chosen, extra)


class _Board:
    """The TensorBoard scalars of a :class:`TorchController` (``tensorboard=``)."""

    def __init__(self, writer: Any, log_dir: str | None) -> None:
        from ._scalars import ScalarTally

        self._writer = writer  # None until the first round when we open it in log_dir
        self._log_dir = log_dir
        self.tally = ScalarTally()

    @classmethod
    def of(cls, tensorboard: Any) -> _Board | None:
        """Check the ``tensorboard`` argument (nothing is imported or opened yet)."""
        if tensorboard is None:
            return None
        if isinstance(tensorboard, (str, os.PathLike)):
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise ImportError(
                    f"'tensorboard' is a log directory ({os.fspath(tensorboard)!r}) but the "
                    "tensorboard package is not installed: pip install 'trainctl[tensorboard]'"
                )
            return cls(None, os.fspath(tensorboard))
        if callable(getattr(tensorboard, "add_scalar", None)):
            return cls(tensorboard, None)
        raise TypeError(
            "'tensorboard' must be a log directory (str or os.PathLike) or a "
            "torch.utils.tensorboard.SummaryWriter (any object with add_scalar), got "
            f"{type(tensorboard).__name__} {tensorboard!r}"
        )

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self._log_dir)
        return self._writer

    def round(self, decision: Any, rates: Sequence[float]) -> None:
        """Write one round at ``global_step = decision.optimizer_steps`` (``decision.round``
        in a loop that never calls ``optimizer_step``)."""
        from trainctl._monitor import number_metrics

        self.tally.add(decision)
        writer = self._open()
        step = decision.optimizer_steps or decision.round
        for i, rate in enumerate(rates):
            writer.add_scalar(f"lr/pg{i}", rate, global_step=step)
        for name, value in number_metrics(decision.metrics).items():
            writer.add_scalar(name, value, global_step=step)
        for name, value in self.tally.scalars().items():
            writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        """Flush; close the writer if it was opened here (a later round opens a new one)."""
        writer = self._writer
        if writer is None:
            return
        flush = getattr(writer, "flush", None)
        if callable(flush):
            flush()
        if self._log_dir is not None:
            writer.close()
            self._writer = None


class _TorchBackend:
    """The effects runner's backend for a plain loop (see :class:`trainctl.effects.Backend`)."""

    def __init__(self, owner: TorchController) -> None:
        self._owner = owner

    @property
    def is_writer(self) -> bool:
        return self._owner.rank == 0

    def read_lrs(self) -> tuple[float, ...]:
        return optimizer_lrs(self._owner.optimizer)

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        groups = self._owner.optimizer.param_groups
        if len(groups) != len(lrs):
            set_optimizer_lrs(self._owner.optimizer, lrs)  # raises, naming both counts
            return
        for group, value in zip(groups, lrs, strict=True):
            current = group["lr"]
            if current.__class__ is float:
                group["lr"] = value
            elif isinstance(current, torch.Tensor):
                current.fill_(value)  # a captured or compiled optimizer keeps seeing it
            else:
                group["lr"] = value

    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        return cpu_state_dict(_unwrap(self._owner.model))

    def restore_weights(self, snapshot: Any) -> None:
        _unwrap(self._owner.model).load_state_dict(snapshot)

    def make_checkpoint(
        self, *, controller_state: Mapping[str, Any], best_weights: Any
    ) -> dict[str, Any] | None:
        if not self.is_writer:
            return None  # only rank 0 writes: the others need no payload
        return self._owner._payload(controller_state, best_weights)

    def write_checkpoint(self, payload: Any, path: Any) -> None:
        # a file object, not the path: torch names the zip archive after the file, and the
        # store's temporary names start with a dot, which torch refuses as an archive name
        with open(path, "wb") as f:
            torch.save(payload, f)

    def request_stop(self) -> None:
        """Nothing to do: a plain loop reads ``decision.stop``."""

    def agree(self, error: BaseException | None, what: str) -> None:
        self._owner._agree(error, what)


def _state_dict_mismatch(mine: Mapping[str, Any], theirs: Any) -> str | None:
    """Why ``theirs`` cannot be loaded into a module whose state dict is ``mine``, or None."""
    if not isinstance(theirs, Mapping):
        return f"expected a state dict, got {type(theirs).__name__}"
    missing = [k for k in mine if k not in theirs]
    unexpected = [k for k in theirs if k not in mine]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing keys " + ", ".join(map(repr, missing[:5])))
        if unexpected:
            parts.append("unexpected keys " + ", ".join(map(repr, unexpected[:5])))
        return "; ".join(parts)
    for key, value in mine.items():
        other = theirs[key]
        if isinstance(value, torch.Tensor) and (
            not isinstance(other, torch.Tensor) or other.shape != value.shape
        ):
            got = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other)
            return f"{key!r} has shape {got}, the model's has {tuple(value.shape)}"
    return None


def _optimizer_mismatch(optimizer: torch.optim.Optimizer, saved: Any) -> str | None:
    """Why ``saved`` cannot be loaded into ``optimizer`` (torch's own checks, made first)."""
    if not isinstance(saved, Mapping) or "param_groups" not in saved or "state" not in saved:
        return "expected an optimizer state dict with 'state' and 'param_groups'"
    groups, theirs = optimizer.param_groups, saved["param_groups"]
    if len(groups) != len(theirs):
        return f"it has {len(theirs)} param group(s), the optimizer has {len(groups)}"
    for i, (g, t) in enumerate(zip(groups, theirs, strict=True)):
        if len(g["params"]) != len(t.get("params", ())):
            return (
                f"param group {i} holds {len(t.get('params', ()))} parameter(s), the "
                f"optimizer's holds {len(g['params'])}"
            )
    return None


def rng_state() -> dict[str, Any]:
    """The random states a resumed run needs (Python, numpy's global, torch's CPU and CUDA), in
    a form ``torch.load(weights_only=True)`` reads back."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    out: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA only where CUDA is present)."""
    import random

    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal.tolist()), gauss))
    saved = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": int(saved["pos"])},
        "has_gauss": int(saved["has_gauss"]),
        "gauss": float(saved["gauss"]),
    })
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
