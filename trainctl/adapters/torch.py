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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ._torch_lr import ReduceLROnPlateau, ScheduleLR

__all__ = [
    "CHECKPOINT_FORMAT",
    "BestWeights",
    "CheckpointLoadError",
    "ReduceLROnPlateau",
    "ScheduleLR",
    "TorchController",
    "cpu_state_dict",
    "optimizer_lrs",
    "set_optimizer_lrs",
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


class TorchController:
    """Drive a plain PyTorch loop with a :class:`trainctl.Controller`.

    Args:
        controller: the policies, schedule and learning rates (``trainctl.Controller``).
        model: the model whose weights are snapshotted, restored and checkpointed (a
            ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer: the optimizer whose param groups get the controller's rates.
        store: a :class:`trainctl.storage.CheckpointStore` or a directory; required when a policy
            asks for checkpoints. Only rank 0 touches it.
        extra_state: called at each save; its dict (tensors, numbers, strings, lists and dicts of
            them) is saved beside the weights and returned by :meth:`resume`.
        reduce: how the ranks of a process group agree on the round's metrics: ``"mean"``
            (default), ``"sum"``, ``"min"``, ``"max"`` (a NaN on any rank stays NaN), or
            ``"rank0"`` (rank 0's values are broadcast).
        check_every: how often a per-step loss is checked for NaN/inf (see below).
        process_group: the ``torch.distributed`` group (default: the world, if initialised).
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
    ) -> None:
        from trainctl import CheckpointPolicy, Controller, TerminateOnNaN
        from trainctl.storage import CheckpointStore

        if not isinstance(controller, Controller):
            raise TypeError(
                f"'controller' must be a trainctl.Controller, got {type(controller).__name__}"
            )
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
        self.controller = controller
        self.model = model
        self.optimizer = self._optimizers[0]
        self.best_weights = BestWeights()
        self._extra_state = extra_state
        self._reduce = reduce
        self._check_every = check_every
        self._group = process_group
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
        self._step_policies = any("optimizer_step" in p.clocks for p in controller.policies)
        self._fast_loss = check_every is None and not self.distributed
        self._pending: Any = None  # lazily accumulated "a loss was not finite"
        self._since_check = 0
        if isinstance(store, CheckpointStore) or store is None:
            self._store = store
        else:
            self._store = CheckpointStore(store)
        if self._store is None and any(
            isinstance(p, CheckpointPolicy) for p in controller.policies
        ):
            raise ValueError(
                "the controller has a CheckpointPolicy but 'store' is None; pass "
                "store=<directory or trainctl.storage.CheckpointStore>"
            )
        self._recovered = False
        self.last_decision: Any = None
        if lr is not None:
            set_optimizer_lrs(self.optimizer, lr)

    @property
    def store(self) -> Any:
        """The :class:`trainctl.storage.CheckpointStore` (recovered on first use), or ``None``.

        Only rank 0 may use it.
        """
        return None if self._store is None else self._require_store()

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
        decision = self.controller.step(metrics, epoch=epoch, lr=self._readback(), time=time)
        self._apply(decision, metrics)
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
        decision = self.controller.optimizer_step(metrics, epoch=epoch, time=time)
        if decision.lr_changed:
            self._set_lrs(decision.lr)
        if decision.save is not None or decision.last is not None:
            self._apply(decision, metrics or {})
        self.last_decision = decision
        return decision

    def finish(self) -> Any:
        """The end of training, whatever ended it: restores the best weights if a policy asks.

        Returns the controller's final :class:`trainctl.Decision` (``restore_best`` says whether
        weights were restored).
        """
        if self._pending is not None and not self.distributed and self._resolve_pending():
            import warnings

            warnings.warn(
                "a non-finite loss was seen after the last NaN check; the weights may be bad",
                RuntimeWarning,
                stacklevel=2,
            )
        decision = self.controller.finish()
        if decision.restore_best:
            self.best_weights.restore(_unwrap(self.model))
        self.last_decision = decision
        return decision

    # -- effects --------------------------------------------------------------------------------

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

    def _set_lrs(self, lr: Any) -> None:
        """Write the controller's rates (already validated by it) into the param groups."""
        groups = self.optimizer.param_groups
        if len(groups) != self._groups:
            set_optimizer_lrs(self.optimizer, lr)  # raises, naming both counts
            return
        values = lr if isinstance(lr, tuple) else (lr,) * self._groups
        for group, value in zip(groups, values):  # noqa: B905  # lengths checked above
            current = group["lr"]
            if current.__class__ is float:
                group["lr"] = value
            elif isinstance(current, torch.Tensor):
                current.fill_(value)
            else:
                group["lr"] = value

    def _readback(self) -> float | tuple[float, ...]:
        lrs = optimizer_lrs(self.optimizer)
        if isinstance(self.controller.lr, tuple) or (self.controller.lr is None and len(lrs) > 1):
            return lrs
        if any(v != lrs[0] for v in lrs):
            raise ValueError(
                f"the optimizer's param groups run at different rates {list(lrs)} but the "
                "controller manages a single rate; give Controller(lr=...) one rate per group"
            )
        return lrs[0]

    def _apply(self, decision: Any, metrics: Mapping[str, Any]) -> None:
        self.last_decision = decision
        if decision.lr is not None and (decision.lr_changed or decision.clock == "round"):
            set_optimizer_lrs(self.optimizer, decision.lr)
        model = _unwrap(self.model)
        if decision.snapshot_best:
            self.best_weights.snapshot(model)
        if decision.restore_best:
            self.best_weights.restore(model)
        if decision.save is not None or decision.last is not None:
            self._collective_write(decision, metrics)

    def _collective_write(self, decision: Any, metrics: Mapping[str, Any]) -> None:
        requests = [r for r in (decision.save, decision.last) if r is not None]
        if not self.distributed:
            self._write(requests, decision.delete, metrics)
            return
        error: BaseException | None = None
        if self.rank == 0:
            try:
                self._write(requests, decision.delete, metrics)
            except Exception as exc:
                error = exc
        self._agree(error, "saving a checkpoint")  # the other ranks wait for rank 0 here

    def _require_store(self) -> Any:
        if self._store is None:
            raise ValueError(
                "a policy asked for a checkpoint but the TorchController has no store; pass "
                "store=<directory or trainctl.storage.CheckpointStore>"
            )
        if not self._recovered:
            self._store.recover()
            self._recovered = True
        return self._store

    def _write(
        self, requests: Sequence[Any], delete: Sequence[str], metrics: Mapping[str, Any]
    ) -> None:
        from trainctl._monitor import coerce_metric

        store = self._require_store()
        payload = self.checkpoint()
        numbers: dict[str, float] = {}
        for k, v in metrics.items():
            try:
                numbers[k] = coerce_metric(k, v)
            except TypeError:
                continue  # not a number: stays out of the manifest, the policies never used it
        def write(path: Any) -> None:
            # a file object, not the path: torch names the zip archive after the file, and the
            # store's temporary names start with a dot, which torch refuses as an archive name
            with open(path, "wb") as f:
                torch.save(payload, f)

        for i, request in enumerate(requests):
            store.save(
                request.name,
                write,
                metrics=numbers,
                state=payload["controller"],
                delete=delete if i == 0 else (),
            )

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint holds: model and optimizer state, the controller's state, the
        best-weights snapshot (so that restoring the best still works after a resume) and
        ``extra_state()``. Every part loads with ``torch.load(weights_only=True)``."""
        extra = None if self._extra_state is None else self._extra_state()
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise TypeError(
                    f"'extra_state' must return a dict, got {type(extra).__name__}"
                )
            _check_loadable(extra, "extra_state()")
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "controller": self.controller.state_dict(),
            "best_weights": self.best_weights.state_dict(),
            "extra": None if extra is None else dict(extra),
        }

    def save(self, name: str, *, delete: Sequence[str] = ()) -> None:
        """Write a checkpoint named ``name`` now (rank 0 writes, every rank must call it)."""
        from trainctl import SaveRequest

        decision_like = _Manual(SaveRequest(name), None, tuple(delete))
        self._collective_write(decision_like, {})

    def load_checkpoint(self, path: Any) -> dict[str, Any] | None:
        """Load a checkpoint file written by :meth:`save` or a policy: model, optimizer,
        controller and best weights. Returns the saved ``extra_state()`` (or ``None``).

        The file is read with ``torch.load(weights_only=True)``, so it can never run code.
        Raises :class:`CheckpointLoadError` naming the file when it is not a trainctl
        checkpoint or holds another model's weights or another configuration's state.
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
        try:
            _unwrap(self.model).load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointLoadError(
                f"{str(path)!r} holds the weights of another model: {exc}"
            ) from exc
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointLoadError(
                f"{str(path)!r} holds the state of another optimizer: {exc}"
            ) from exc
        self.controller.load_state_dict(payload["controller"])
        self.best_weights.load_state_dict(payload["best_weights"])
        self._pending = None
        self._since_check = 0
        if self.controller.lr is not None:
            set_optimizer_lrs(self.optimizer, self.controller.lr)
        extra = payload.get("extra")
        return None if extra is None else dict(extra)

    def resume(self, name: str | None = None) -> dict[str, Any] | None:
        """Load the latest checkpoint in the store (or ``name``); return its ``extra_state``.

        Returns ``None`` and changes nothing when the store holds no checkpoint (a fresh
        start). On several ranks, rank 0 reads the manifest and every rank loads the file (a
        shared file system is assumed). The controller continues exactly where the checkpoint
        left it: same patience, cooldown, best, schedule step and kept checkpoints.
        """
        chosen: str | None = None
        error: BaseException | None = None
        if self.rank == 0:
            try:
                store = self._require_store()
                if name is not None:
                    chosen = store.get(name).name
                else:
                    latest = store.latest()
                    chosen = None if latest is None else latest.name
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
            return None
        assert self._store is not None
        return self.load_checkpoint(self._store.directory / chosen)


class _Manual(NamedTuple):
    save: Any
    last: Any
    delete: tuple[str, ...]
