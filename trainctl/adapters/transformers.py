"""Hugging Face adapter: run a trainctl Controller inside ``transformers.Trainer`` (5.x).

Two callbacks and a scheduler:

- :class:`ControllerCallback` feeds a :class:`trainctl.Controller` from the Trainer's hooks and
  carries its decisions out: ``control.should_training_stop``, the learning rate of every param
  group, best-weights snapshots restored at the end of training (like
  ``load_best_model_at_end``, for any policy), and checkpoints written as the Trainer's own
  ``checkpoint-<step>`` folders whose retention (best-k + latest-n + last) trainctl decides.
  ``trainer.train(resume_from_checkpoint=...)`` resumes the controller exactly, with no extra flag.
- :class:`EarlyStoppingCallback`, a drop-in for ``transformers.EarlyStoppingCallback`` (a subclass
  of it: same signature, assertions, log messages, ``state()`` dict and class name, so
  ``isinstance`` checks and ``stateful_callbacks`` keep working), whose decisions are made by the
  core ``trainctl.EarlyStopping(rules="huggingface")``.
- :class:`ControlledLR`, an ``LRScheduler`` that leaves the rate to trainctl, for
  ``Trainer(optimizers=ControllerCallback.optimizers(optimizer))``.

Hooks and why
-------------
=====================  ==========================================================================
hook                   what ``ControllerCallback`` does there
=====================  ==========================================================================
``on_train_begin``     refuse a Trainer scheduler that would fight the controller's rate and
                       Trainer saving arguments that would fight a ``CheckpointPolicy``; then
                       either resume (the Trainer loaded a ``trainer_state.json`` holding this
                       callback's state: ``state.global_step > 0``) or start afresh
                       (``controller.reset()``, as the Trainer starts a new ``TrainerState``;
                       with a ``CheckpointPolicy``, ``output_dir`` must hold no other
                       ``checkpoint-*`` folders unless ``overwrite=True``); write the
                       controller's rate into the optimizer. A resumed run that had stopped
                       sets ``should_training_stop`` (the Trainer still runs one step)
``on_step_begin``      check that a save asked for in the previous step was made
``on_step_end``        one real optimizer step (gradient accumulation counts once; the Trainer
                       has already stepped its own scheduler): ``ctl.optimizer_step()``, unless
                       mixed precision skipped the step (``optimizer.step_was_skipped``, the flag
                       behind ``accelerator.optimizer_step_was_skipped``), which the Trainer does
                       not count for its scheduler either. The new rate is written into the
                       param groups before the next step. When a save follows in this step
                       (``control.should_save``, by the Trainer's save strategy or a policy),
                       this callback's state is put into ``state.stateful_callbacks`` first
                       (see "Resume")
``on_epoch_end``       the same for a save at the end of the epoch
``on_evaluate``        one evaluation round from ``metrics`` (see "metric names" below), only
                       inside ``train()`` (a ``trainer.evaluate()`` call after training is not a
                       round): ``ctl.step(metrics, epoch=<epoch in progress, 0-based>,
                       lr=<the param groups' rates>)``. It fires before the Trainer's
                       ``_determine_best_metric``, so ``state.best_metric`` is the previous best.
                       The state is put into ``state.stateful_callbacks`` after every round
``on_save``            the Trainer has written ``checkpoint-<global_step>``: write the kept best
                       weights into it (``trainctl-best-weights.pt``), then delete the folders
                       the policy released (only now, after the new folder is complete). If
                       a callback placed after this one asked for the save, the state in the
                       folder's ``trainer_state.json`` is refreshed (atomically)
``on_train_end``       ``ctl.finish()``: restore the best weights if a policy asks (after the
                       Trainer's own ``load_best_model_at_end``, so this one wins: use one)
=====================  ==========================================================================

Effects of a decision (carried out by :class:`trainctl.effects.EffectsRunner`, ``cb.runner``,
except the checkpoint folders, which the Trainer writes):

===========================  =====================================================================
decision                     effect
===========================  =====================================================================
``lr``                       written into every param group of the Trainer's optimizer
``stop``                     ``control.should_training_stop = True`` (final for the controller)
``snapshot_best``            a detached CPU copy of ``model.state_dict()``
``restore_best``             loaded back at ``on_train_end``
``save`` / ``last``          ``control.should_save = True``: the Trainer writes
                             ``checkpoint-<global_step>`` right after this hook
``delete``                   the folders no kept checkpoint refers to any more are deleted at
                             ``on_save``, after the new folder is complete; a folder is first
                             renamed out of the ``checkpoint-*`` namespace (so
                             ``resume_from_checkpoint=True`` never picks a half-deleted one),
                             then removed
===========================  =====================================================================

Metric names
------------
A round sees the metrics exactly as the Trainer reports them (``eval_loss``, ``eval_accuracy``,
...) **plus** each ``eval_x`` once more as ``x``, unless ``x`` is itself a key. So a policy
monitoring ``"eval_loss"`` and one monitoring ``"loss"`` both work, which is Hugging Face's own
convention for ``metric_for_best_model`` (``"loss"`` means ``"eval_loss"``; a dict of eval datasets
gives ``eval_<name>_loss``, monitored as ``"<name>_loss"`` or the full name). Evaluation metrics
never carry a training key, so no alias hides a real value; the log names (``eval_loss``) keep
working in file-name templates. At optimizer steps the Trainer hands callbacks no loss, so
per-step policies get no metrics: a ``TerminateOnNaN`` watches an evaluation metric
(``TerminateOnNaN("eval_loss")``, or ``"loss"``, which at a round is the evaluation loss).

Checkpoints: the Trainer's folders, decided by trainctl
------------------------------------------------------
With a :class:`trainctl.CheckpointPolicy` in the controller, the policy decides when to save and
what to keep; the Trainer writes each checkpoint as its usual ``checkpoint-<global_step>`` folder
(model, optimizer, scheduler, RNG states, ``trainer_state.json``). Why the Trainer's folders and
not trainctl's one-file :class:`~trainctl.storage.CheckpointStore`: a Hugging Face user resumes
with ``trainer.train(resume_from_checkpoint=True)`` or a folder path, pushes checkpoints to the
Hub, and loads them with ``from_pretrained``; all of that needs the Trainer's folder format. The
store's crash-safety rules are kept where the Trainer allows it: a folder is deleted only after
the next one is complete, the folder a run resumed from is not deleted before this run's first
new checkpoint, deletions are recorded in the saved state and finished on resume, and a folder is
renamed away before it is removed. (The Trainer itself writes a folder in place, not atomically.)

The policy's names (``filename`` + ``extension``) are labels: each one maps to the folder written
in its round (``cb.folders``); ``filename="checkpoint-{step}"`` makes them equal the folder names
whenever no mixed-precision step was skipped. ``save_last=True`` keeps the newest folder too.
Requirements, checked at ``on_train_begin``: ``TrainingArguments(save_strategy="no")`` (the
policy sets ``control.should_save``; the Trainer's own saves would be unknown to its retention),
``save_total_limit=None`` and ``eval_on_start=False`` (the Trainer does not save after that
evaluation). ``load_best_model_at_end`` needs the Trainer's own save strategy: use
``trainctl.EarlyStopping(..., restore_best_weights=True)`` instead, which works for any policy.
Without a ``CheckpointPolicy`` the Trainer saves as configured and this callback only adds its
state (and the kept best weights) to each checkpoint.

Resume
------
The callback's state (the controller's ``state_dict()``, the folder of every kept checkpoint, the
deletions in flight, where the best weights are) is put into ``state.stateful_callbacks`` under
``cb.state_key`` before every save, so it is inside each checkpoint's ``trainer_state.json``. The
Trainer loads that file whenever it resumes, whatever ``restore_callback_states_from_checkpoint``
says (that flag only decides whether the Trainer rebuilds ``ExportableState`` callbacks from it,
which a callback holding a Controller cannot be), so ``on_train_begin`` finds the state and loads
it: patience, cooldown, best, the schedule's clock, the kept set and the best weights continue
exactly. (With ``restore_callback_states_from_checkpoint=True`` the Trainer logs that it ignores
the entry ``trainctl.ControllerCallback:<name>``; that is expected.) The best weights are read
from the folder resumed from (``args.resume_from_checkpoint`` or
``<output_dir>/checkpoint-<global_step>``, identified by its ``trainer_state.json``).

Learning rate
-------------
When the controller owns the rate (a schedule, ``lr=``, or a plateau policy), a Trainer scheduler
that changes it would overwrite trainctl's rate after every step; the Trainer creates one (linear
decay) when ``optimizers=`` is not given. Such a scheduler is refused at train start. Hand the
schedule to trainctl and give the Trainer :class:`ControlledLR`::

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    trainer = Trainer(..., optimizers=ControllerCallback.optimizers(optimizer))

``ControlledLR.step()`` changes nothing and its ``get_last_lr()`` reads the param groups, so the
Trainer's logged ``learning_rate`` is trainctl's. When the controller does not own the rate (only
early stopping and checkpoints), any Trainer scheduler is fine, including a trainctl schedule as
the Trainer's scheduler: ``optimizers=(opt, trainctl.adapters.torch.ScheduleLR(opt, schedule))``.

Usage::

    import torch, trainctl
    from trainctl import schedules
    from trainctl.adapters.transformers import ControllerCallback

    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("eval_loss", patience=2, factor=0.5, rules="torch"),
        trainctl.EarlyStopping("eval_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy("eval_loss", save_top_k=2, save_last=True,
                                  filename="checkpoint-{step}"),
        schedule=schedules.warmup(schedules.cosine(3e-4, total_steps=2000), warmup_steps=100),
    )
    cb = ControllerCallback(ctl)
    args = TrainingArguments("out", eval_strategy="steps", eval_steps=100, save_strategy="no")
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[cb],
                      optimizers=ControllerCallback.optimizers(torch.optim.AdamW(
                          model.parameters(), lr=3e-4)))
    trainer.train()                                  # ... and after a crash:
    trainer.train(resume_from_checkpoint=True)

Distributed: every process runs the same controller on the same (gathered) evaluation metrics, so
every process takes the same decisions; only the process that saves (``args.should_save``) writes
the best weights and deletes folders. Not supported with a ``CheckpointPolicy``:
``hyperparameter_search`` (trial subdirectories) and a ``save_strategy`` other than ``"no"``. A
dict of eval datasets makes the Trainer call ``on_evaluate`` once per dataset: each is a round.

``transformers.EarlyStoppingCallback`` argument -> core configuration
----------------------------------------------------------------------
================================  ================================================================
Hugging Face                      ``trainctl.EarlyStopping(rules="huggingface", ...)``
================================  ================================================================
metric_for_best_model             monitor (``"eval_"`` prefixed if missing, as the Trainer does)
greater_is_better                 mode ("max" / "min")
early_stopping_patience (1)       patience (stop at ``counter >= patience``)
early_stopping_threshold (0.0)    min_delta (absolute, strict; a negative threshold is the same
                                  test as 0, since the Trainer's comparison is already strict)
``state.best_metric``             the core state's ``best``, copied from the Trainer before each
                                  check (the Trainer's own rule moves it on any strict improvement;
                                  the core's huggingface rule moves it the same way)
counter kept across ``train()``   ``stop_is_final=False`` (a later check counts on, as HF's does)
================================  ================================================================
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import EarlyStoppingCallback as _HFEarlyStoppingCallback
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging as hf_logging

from .. import Controller, Decision, StateError
from .. import EarlyStopping as CoreEarlyStopping
from .. import EarlyStoppingState as CoreEarlyStoppingState
from .._validation import check_controller
from ..effects import EffectsRunner, FreshRunError, Resume
from ..storage import atomic_write, fsync_dir
from .torch import RunnerViews, cpu_state_dict, optimizer_lrs, set_optimizer_lrs

__all__ = [
    "BEST_WEIGHTS_FILE",
    "STATE_FORMAT",
    "ControlledLR",
    "ControllerCallback",
    "EarlyStoppingCallback",
    "round_metrics",
]

#: The file in a ``checkpoint-*`` folder that holds the kept best weights.
BEST_WEIGHTS_FILE = "trainctl-best-weights.pt"
#: The ``format`` of the state this adapter keeps in ``trainer_state.json``.
STATE_FORMAT = "trainctl.transformers.ControllerCallback"
STATE_VERSION = 1

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # the Trainer's folder names (trainer_utils)
_TRASH_PREFIX = ".trainctl-trash-"  # a folder being deleted: outside the checkpoint-* namespace
_TRAINER_STATE = "trainer_state.json"
# the Trainer's own logger: the drop-in logs its messages where Hugging Face's class logs them
_hf_logger = hf_logging.get_logger("transformers.trainer_callback")


def round_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics an evaluation round sees: the Trainer's, plus each ``eval_x`` as ``x`` unless
    ``x`` is itself a key (Hugging Face's ``metric_for_best_model`` convention read backwards).

    >>> round_metrics({"eval_loss": 0.5, "epoch": 1.0})
    {'eval_loss': 0.5, 'epoch': 1.0, 'loss': 0.5}
    """
    out = dict(metrics)
    for key, value in metrics.items():
        if isinstance(key, str) and key.startswith("eval_") and len(key) > 5:
            out.setdefault(key[5:], value)
    return out


def _output_dir(args: TrainingArguments) -> Path:
    if args.output_dir is None:
        raise ValueError("TrainingArguments(output_dir=None): the checkpoint folders need one")
    return Path(args.output_dir)


def _epoch_index(state: TrainerState) -> int:
    """The 0-based epoch in progress: the Trainer's ``state.epoch`` is fractional (``e + done``,
    exactly ``e + 1.0`` at the end of epoch ``e``)."""
    return max(0, math.ceil(float(state.epoch or 0.0)) - 1)


def _remove_folder(root: Path, name: str) -> None:
    """Delete ``root/name``: first renamed out of the ``checkpoint-*`` namespace (atomic), so a
    crash mid-delete never leaves a half-deleted folder that ``get_last_checkpoint`` would pick."""
    src = root / name
    if not src.exists():
        return
    trash = root / f"{_TRASH_PREFIX}{secrets.token_hex(6)}-{name}"
    os.replace(src, trash)
    fsync_dir(root)
    shutil.rmtree(trash, ignore_errors=True)


def _sweep_trash(root: Path) -> None:
    """Finish deletions a crash interrupted (folders already renamed away, or stray temp files)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.startswith(_TRASH_PREFIX):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


# -- the scheduler that leaves the rate to trainctl ---------------------------------------------


class ControlledLR(LRScheduler):
    """An ``LRScheduler`` that leaves the learning rate to trainctl.

    ``step()`` changes no rate; ``get_last_lr()`` reads the param groups, so the Trainer's logged
    ``learning_rate`` is the rate trainctl set for the step just taken. Give it to the Trainer
    with :meth:`ControllerCallback.optimizers`; :class:`ControllerCallback` accepts it where it
    refuses a scheduler that changes the rate. Its state dict is torch's (the step count only).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"'optimizer' must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        """The rates the param groups hold now: a step writes them back unchanged."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float | torch.Tensor]:
        """The rates in use now (trainctl's), as floats or the groups' tensors."""
        return [group["lr"] for group in self.optimizer.param_groups]


# -- the effects backend -------------------------------------------------------------------------


class _TransformersBackend:
    """The effects runner's backend for a Trainer (see :class:`trainctl.effects.Backend`).

    Checkpoints never reach it: the Trainer writes its folders itself (``control.should_save``),
    so ``make_checkpoint`` / ``write_checkpoint`` refuse.
    """

    def __init__(self, owner: ControllerCallback) -> None:
        self._owner = owner

    @property
    def is_writer(self) -> bool:
        args = self._owner._args
        return args is None or bool(args.should_save)

    def read_lrs(self) -> tuple[float, ...] | None:
        optimizer = self._owner._optimizer
        if optimizer is None:
            return None
        return optimizer_lrs(optimizer)

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        optimizer = self._owner._optimizer
        assert optimizer is not None, "the callback has no optimizer yet"
        set_optimizer_lrs(optimizer, lrs)

    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        model = self._owner._model
        assert model is not None, "the callback has no model yet"
        return cpu_state_dict(model)

    def restore_weights(self, snapshot: Any) -> None:
        model = self._owner._model
        assert model is not None, "the callback has no model yet"
        model.load_state_dict(snapshot)

    def make_checkpoint(self, *, controller_state: Mapping[str, Any], best_weights: Any) -> Any:
        raise NotImplementedError(
            "the Trainer writes the checkpoint folders (control.should_save); the transformers "
            "adapter never writes through a CheckpointStore"
        )

    def write_checkpoint(self, payload: Any, path: Path) -> None:
        self.make_checkpoint(controller_state={}, best_weights=None)

    def request_stop(self) -> None:
        control = self._owner._control
        assert control is not None, "the callback has no TrainerControl yet"
        control.should_training_stop = True


# -- ControllerCallback --------------------------------------------------------------------------


class ControllerCallback(RunnerViews, TrainerCallback):
    """Run a :class:`trainctl.Controller` in a ``transformers.Trainer``.

    Args:
        controller: the controller; its policies decide, this callback only carries out.
        name: distinguishes several ``ControllerCallback`` in one Trainer (part of
            :attr:`state_key`).
        resume_strict: on resume, refuse a controller state saved under another configuration
            (``Controller.load_state_dict(strict=...)``); ``False`` accepts changed settings.
        overwrite: let a fresh run with a ``CheckpointPolicy`` write into an ``output_dir`` that
            holds another run's ``checkpoint-*`` folders (refused otherwise: resume it with
            ``trainer.train(resume_from_checkpoint=True)``, or use another directory). The
            other run's folders are left alone.
        verbose: print each round's explanation (on the main process).

    Attributes:
        controller: the controller.
        runner: the :class:`trainctl.effects.EffectsRunner` carrying the decisions out.
        decisions: the decision of every evaluation round of this ``train()`` call.
        last_decision: the latest decision (``.explain()`` says why), ``None`` before one.
        folders: each kept checkpoint's name -> its ``checkpoint-*`` folder.

    See the module docstring for the hooks, the metric names, checkpoints and resuming.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        name: str = "controller",
        resume_strict: bool = True,
        overwrite: bool = False,
        verbose: bool = False,
    ) -> None:
        check_controller(controller)
        if not isinstance(name, str) or not name:
            raise ValueError(f"'name' must be a non-empty str, got {name!r}")
        for flag_name, flag in (
            ("resume_strict", resume_strict), ("overwrite", overwrite), ("verbose", verbose)
        ):
            if not isinstance(flag, bool):
                raise TypeError(
                    f"'{flag_name}' must be a bool, got {type(flag).__name__} {flag!r}"
                )
        self.controller = controller
        self.name = name
        self.resume_strict = resume_strict
        self.overwrite = overwrite
        self.verbose = verbose
        self.decisions: list[Decision] = []
        self.runner = EffectsRunner(controller, _TransformersBackend(self), overwrite=overwrite)
        self._saves = any(callable(getattr(p, "format_name", None)) for p in controller.policies)
        # the Trainer's objects, refreshed at every hook (the callback never holds the Trainer)
        self._args: TrainingArguments | None = None
        self._control: TrainerControl | None = None
        self._model: torch.nn.Module | None = None
        self._optimizer: Optimizer | None = None
        self._training = False
        self._t0 = 0.0
        # checkpoint folders: each kept name -> its folder; folders to delete once the pending
        # save is complete; the folder the Trainer must write next; the one resumed from
        self._folders: dict[str, str] = {}
        self._deleting: list[str] = []
        self._pending: str | None = None
        self._protected: str | None = None
        self._exported: tuple[int, int] | None = None  # (rounds, steps) of the exported state

    # -- public helpers -------------------------------------------------------------------------

    @staticmethod
    def optimizers(optimizer: Optimizer) -> tuple[Optimizer, ControlledLR]:
        """``(optimizer, ControlledLR(optimizer))`` for ``Trainer(optimizers=...)``: the Trainer
        then steps a scheduler that leaves the rate to trainctl (instead of creating its default
        linear decay, which the callback refuses when the controller owns the rate)."""
        return optimizer, ControlledLR(optimizer)

    @property
    def state_key(self) -> str:
        """This callback's entry in ``state.stateful_callbacks`` (and ``trainer_state.json``)."""
        return f"trainctl.ControllerCallback:{self.name}"

    @property
    def folders(self) -> dict[str, str]:
        """Each kept checkpoint's name (the policy's) -> its ``checkpoint-*`` folder name."""
        return dict(self._folders)

    def resume(self, output_dir: str | os.PathLike[str]) -> Resume:
        """Where the run in ``output_dir`` stands, without changing anything: the newest
        ``checkpoint-*`` folder whose ``trainer_state.json`` holds this callback's state (a
        folder a crash left without one is passed over, which ``resume_from_checkpoint=True``
        would pick). Pass ``resume.path`` to ``trainer.train(resume_from_checkpoint=...)``
        (``None``: a fresh start); ``resume.stopped`` says the run had stopped (resuming it
        trains one more step, as the Trainer checks the stop flag after a step: skip ``train``).

        Raises :class:`trainctl.StateError` if the newest state does not fit this controller.
        """
        root = Path(output_dir)
        found = [] if not root.is_dir() else [
            e for e in root.iterdir() if _CHECKPOINT.match(e.name) and e.is_dir()
        ]
        for folder in sorted(found, key=lambda e: _step_of(e.name), reverse=True):
            try:
                data = json.loads((folder / _TRAINER_STATE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            saved = (data.get("stateful_callbacks") or {}).get(self.state_key)
            if not isinstance(saved, Mapping) or "controller" not in saved:
                continue
            probe = self.controller.clone()
            probe.load_state_dict(saved["controller"], strict=self.resume_strict)
            return Resume.of(probe, folder.name, folder)
        return Resume()

    def state_dict(self) -> dict[str, Any]:
        """What this callback puts into ``trainer_state.json`` (strict JSON)."""
        best = None
        if self.runner.best_weights is not None:
            best = {"file": BEST_WEIGHTS_FILE, "epoch": self.runner.best_epoch}
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "controller": self.controller.state_dict(),
            "folders": dict(self._folders),
            "deleting": list(self._deleting),
            "best_weights": best,
        }

    # -- hooks ----------------------------------------------------------------------------------

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        optimizer: Optimizer | None = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        self._args, self._control = args, control
        self._model, self._optimizer = model, optimizer
        self._check_scheduler(args, lr_scheduler)
        if self._saves:
            self._check_saving(args, state)
        self._pending = None
        self._protected = None
        self.decisions = []
        if args.should_save:
            _sweep_trash(_output_dir(args))
        exported: Any = state.stateful_callbacks or {}
        saved = exported.get(self.state_key)
        if state.global_step > 0 and saved is not None:
            self._resume(args, state, saved)
            if self.controller.stopped:
                control.should_training_stop = True  # a stop is final (one step still runs)
        else:
            if state.global_step > 0:
                warnings.warn(
                    f"the Trainer resumed at step {state.global_step} from a checkpoint without "
                    f"{self.state_key!r} in its trainer_state.json (written without this "
                    "callback?): the controller starts afresh",
                    UserWarning,
                    stacklevel=2,
                )
            # a fresh train() is a new run, as the Trainer's new TrainerState is
            self.controller.reset()
            self.runner.best_weights = None
            self.runner.best_epoch = None
            self.runner.last_decision = None
            self._folders, self._deleting = {}, []
            if self._saves and state.global_step == 0:
                self._check_fresh(args)
        ctl = self.controller
        if ctl.lr is not None and ctl.owns_lr and optimizer is not None:
            self.runner.set_rates(ctl.lr)
        self._t0 = time.monotonic()
        self._training = True
        self._export(state)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        self._check_saved()

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._training:
            return
        self._control = control
        if optimizer is not None:
            self._optimizer = optimizer
            if getattr(optimizer, "step_was_skipped", False):
                return  # mixed precision skipped it: the Trainer does not step its scheduler
        d = self.controller.optimizer_step(None, epoch=_epoch_index(state), time=self._time())
        self._carry_out(d, {}, state, control)
        if control.should_save:  # DefaultFlowCallback (before us) or a policy asked for a save
            self._export(state)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if self._training and control.should_save:
            self._export(state)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._training or metrics is None:
            return  # trainer.evaluate() outside train() is not a round
        self._control = control
        seen = round_metrics(metrics)
        d = self.controller.step(
            seen, epoch=_epoch_index(state), lr=self.runner.read_rates(), time=self._time()
        )
        self.decisions.append(d)
        self._carry_out(d, seen, state, control)
        self._export(state)  # before the Trainer's save that may follow in this step
        if self.verbose and state.is_world_process_zero:
            text = d.explain()
            if text:
                print(f"step {state.global_step}: {text}")

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not self._training:
            return
        folder = f"checkpoint-{state.global_step}"
        if self._pending is not None and self._pending != folder:
            raise RuntimeError(
                f"trainctl asked the Trainer to save {self._pending} but it saved {folder}"
            )
        path = _output_dir(args) / folder
        ctl = self.controller
        stale = self._exported != (ctl.rounds, ctl.optimizer_steps)
        if stale:  # a callback after this one asked for the save: the state written is old
            self._export(state)
        if args.should_save and path.is_dir():
            best = self.runner.best_weights
            if best is not None:
                atomic_write(path / BEST_WEIGHTS_FILE, lambda p: torch.save(best, p))
            if stale:
                self._patch_trainer_state(path)
        # the new checkpoint is complete: lift the resumed folder's protection, then delete
        self._pending = None
        self._protected = None
        self._delete(args)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._training:
            return
        self._training = False
        if model is not None:
            self._model = model
        self._check_saved()
        end = self.runner.finish()
        if self.verbose and state.is_world_process_zero and end.restore_best:
            print(end.explain())

    # -- decisions ------------------------------------------------------------------------------

    def _time(self) -> float:
        return time.monotonic() - self._t0

    def _carry_out(
        self, d: Decision, metrics: Mapping[str, Any], state: TrainerState,
        control: TrainerControl,
    ) -> None:
        # rates, best-weights snapshot and stop through the runner; the checkpoint folders are
        # the Trainer's to write, so the runner gets the decision without them
        if d.save is None and d.last is None and not d.delete:
            self.runner.carry_out(d, metrics)
            return
        self.runner.carry_out(d._replace(save=None, last=None, delete=()), metrics)
        self.runner.last_decision = d
        self._checkpoint(d, state, control)

    def _checkpoint(self, d: Decision, state: TrainerState, control: TrainerControl) -> None:
        """Map the decision's names onto folders: every name saved now refers to the folder the
        Trainer writes right after this hook; a folder no name refers to any more is released
        (deleted once that folder is complete)."""
        before = set(self._folders.values())
        for name in d.delete:
            self._folders.pop(name, None)
        requests = [r for r in (d.save, d.last) if r is not None]
        new: str | None = None
        if requests:
            new = f"checkpoint-{state.global_step}"
            for request in requests:
                self._folders[request.name] = new
            self._pending = new
            control.should_save = True
        after = set(self._folders.values())
        for folder in sorted(before - after, key=_step_of):
            if folder != new and folder not in self._deleting:
                self._deleting.append(folder)
        if new is None and self._pending is None:
            self._delete(self._args)  # deletions alone: no save to wait for

    def _delete(self, args: TrainingArguments | None) -> None:
        if not self._deleting:
            return
        referenced = set(self._folders.values())
        keep = []
        for folder in self._deleting:
            if folder == self._protected:
                keep.append(folder)  # resumed from: kept until this run's first new checkpoint
                continue
            if folder in referenced:
                continue  # saved again under another name since
            if args is not None and args.should_save:
                try:
                    _remove_folder(_output_dir(args), folder)
                except OSError as exc:
                    warnings.warn(
                        f"could not delete the released checkpoint folder {folder} "
                        f"({type(exc).__name__}: {exc}); it is left on disk",
                        UserWarning,
                        stacklevel=3,
                    )
        self._deleting = keep

    def _check_saved(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise RuntimeError(
                f"trainctl asked the Trainer to save {pending} (control.should_save) but the "
                "Trainer did not save it: another callback cleared should_save, or the save was "
                "asked where the Trainer does not save (eval_on_start); the controller's kept "
                "checkpoints no longer match the folders on disk"
            )

    # -- state in trainer_state.json ------------------------------------------------------------

    def _export(self, state: TrainerState) -> None:
        if state.stateful_callbacks is None:
            state.stateful_callbacks = {}  # type: ignore[assignment]
        callbacks: Any = state.stateful_callbacks
        callbacks[self.state_key] = self.state_dict()
        self._exported = (self.controller.rounds, self.controller.optimizer_steps)

    def _patch_trainer_state(self, folder: Path) -> None:
        path = folder / _TRAINER_STATE
        if not path.is_file():
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("stateful_callbacks", {})[self.state_key] = self.state_dict()
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"  # as TrainerState writes it
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))

    # -- resuming -------------------------------------------------------------------------------

    def _resume(self, args: TrainingArguments, state: TrainerState, saved: Any) -> None:
        """Load this callback's state from the ``trainer_state.json`` the Trainer resumed from."""
        where = f"trainer_state.json stateful_callbacks[{self.state_key!r}]"
        if not isinstance(saved, Mapping) or saved.get("format") != STATE_FORMAT:
            raise StateError(f"{where}: not a trainctl ControllerCallback state")
        if saved.get("version") != STATE_VERSION:
            raise StateError(
                f"{where}: version {saved.get('version')!r} is not supported (this trainctl "
                f"reads version {STATE_VERSION})"
            )
        folders = saved.get("folders")
        deleting = saved.get("deleting")
        if not isinstance(folders, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and _CHECKPOINT.match(v)
            for k, v in folders.items()
        ):
            raise StateError(f"{where}.folders: expected names -> 'checkpoint-<step>' folders")
        if not isinstance(deleting, list) or not all(
            isinstance(v, str) and _CHECKPOINT.match(v) for v in deleting
        ):
            raise StateError(f"{where}.deleting: expected a list of 'checkpoint-<step>' folders")
        probe = self.controller.clone()  # check everything before anything changes
        try:
            probe.load_state_dict(saved["controller"], strict=self.resume_strict)
        except StateError as exc:
            raise StateError(f"{where}: {exc}") from exc
        folder = self._resumed_folder(args, state, saved)
        best_weights = None
        best = saved.get("best_weights")
        if best is not None:
            path = None if folder is None else folder / BEST_WEIGHTS_FILE
            if path is None or not path.is_file():
                warnings.warn(
                    "the resumed state keeps best weights but the folder resumed from was not "
                    f"found or holds no {BEST_WEIGHTS_FILE}; the best weights will come from the "
                    "rounds trained from now on",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                best_weights = torch.load(path, map_location="cpu", weights_only=True)
        # everything fits: apply
        self.controller.load_state_dict(saved["controller"], strict=self.resume_strict)
        self._folders = dict(folders)
        self._deleting = list(deleting)
        self.runner.best_weights = best_weights
        raw_epoch = best.get("epoch") if isinstance(best, Mapping) else None
        self.runner.best_epoch = raw_epoch if best_weights is not None else None
        out = _output_dir(args).resolve()
        if folder is not None and folder.resolve().parent == out:
            self._protected = folder.name
        # deletions the interrupted run recorded with this checkpoint but may not have finished
        self._delete(args)

    def _resumed_folder(
        self, args: TrainingArguments, state: TrainerState, saved: Any
    ) -> Path | None:
        """The folder the Trainer resumed from: the callback is not told, so candidates are
        checked by their ``trainer_state.json``, which must hold exactly the state loaded."""
        candidates = []
        hint = getattr(args, "resume_from_checkpoint", None)
        if isinstance(hint, str) and hint:
            candidates.append(Path(hint))
        candidates.append(_output_dir(args) / f"checkpoint-{state.global_step}")
        for folder in candidates:
            path = folder / _TRAINER_STATE
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (data.get("stateful_callbacks") or {}).get(self.state_key) == saved:
                return folder
        return None

    # -- checks ---------------------------------------------------------------------------------

    def _check_scheduler(self, args: TrainingArguments, lr_scheduler: Any) -> None:
        """A Trainer scheduler that changes the rate would overwrite the controller's."""
        ctl = self.controller
        if not ctl.owns_lr or lr_scheduler is None:
            return
        inner = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's wrapper
        if isinstance(lr_scheduler, ControlledLR) or isinstance(inner, ControlledLR):
            return
        kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        why = (
            "it has a schedule" if ctl.schedule is not None
            else "it was given lr= or has a policy that lowers the rate (ReduceLROnPlateau)"
        )
        raise ValueError(
            f"the Trainer's learning-rate scheduler {type(lr_scheduler).__name__} "
            f"(lr_scheduler_type={kind!r}; the Trainer "
            "creates one when optimizers= is not given) changes the rate at every optimizer "
            f"step, but the trainctl controller sets the rate itself ({why}): each would "
            "overwrite the other. Hand the schedule to trainctl, Controller(..., "
            "schedule=trainctl.schedules.warmup(trainctl.schedules.cosine(lr, total_steps=...), "
            "warmup_steps=...)), and give the Trainer a scheduler that leaves the rate alone: "
            "Trainer(..., optimizers=ControllerCallback.optimizers(torch.optim.AdamW("
            "model.parameters(), lr=lr)))"
        )

    def _check_saving(self, args: TrainingArguments, state: TrainerState) -> None:
        """With a CheckpointPolicy the policy decides saves and retention, not the Trainer."""
        problems = []
        strategy = str(getattr(args.save_strategy, "value", args.save_strategy))
        if strategy != "no":
            problems.append(
                f"save_strategy must be 'no', got {strategy!r} (the policy sets "
                "control.should_save; the Trainer's own saves would be unknown to its retention)"
            )
        if args.save_total_limit is not None:
            problems.append(
                f"save_total_limit must be None, got {args.save_total_limit!r} (the policy "
                "decides which checkpoint-* folders to keep)"
            )
        if args.eval_on_start:
            problems.append(
                "eval_on_start must be False, got True (the Trainer does not save after that "
                "evaluation, so a checkpoint asked for there could not be written)"
            )
        if state.is_hyper_param_search:
            problems.append(
                "hyperparameter_search is not supported (each trial saves into its own "
                "subdirectory of output_dir)"
            )
        if problems:
            raise ValueError(
                "the trainctl controller has a CheckpointPolicy, so TrainingArguments: "
                + "; ".join(problems)
            )

    def _check_fresh(self, args: TrainingArguments) -> None:
        root = _output_dir(args)
        if self.overwrite or not root.is_dir():
            return  # every process checks (reading only), so that all of them raise together
        others = sorted(
            (e.name for e in root.iterdir() if _CHECKPOINT.match(e.name) and e.is_dir()),
            key=_step_of,
        )
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise FreshRunError(
                f"output_dir {str(root)!r} already holds {len(others)} checkpoint folder(s) of "
                f"another run ({shown}); resume it with trainer.train("
                "resume_from_checkpoint=True), use another output_dir, or pass "
                "ControllerCallback(..., overwrite=True) to write beside them"
            )


def _step_of(folder: str) -> int:
    match = _CHECKPOINT.match(folder)
    return int(match.group(1)) if match else -1


# -- the drop-in EarlyStoppingCallback ----------------------------------------------------------

_HF_NAMES = (("'patience'", "'early_stopping_patience'"),
             ("'min_delta'", "'early_stopping_threshold'"))


def _eval_name(metric: str) -> str:
    """Hugging Face's name of an evaluation metric: ``metric`` with ``eval_`` in front, once."""
    return metric if metric.startswith("eval_") else f"eval_{metric}"


class EarlyStoppingCallback(_HFEarlyStoppingCallback):
    """``transformers.EarlyStoppingCallback``, decided by ``trainctl.EarlyStopping``.

    Same signature, defaults, class name (so ``stateful_callbacks`` entries of either class load
    into the other), ``on_train_begin`` assertions and warning (inherited), missing-metric
    warning and ``state()`` dict as Hugging Face's, a subclass of it. Each check is the core's
    ``EarlyStopping(rules="huggingface")`` run by a one-policy ``Controller`` (:attr:`controller`);
    the baseline is the Trainer's ``state.best_metric``, copied into the core state before each
    check, as Hugging Face compares against it. ``early_stopping_patience_counter`` reads and
    writes the core state's ``wait``. :attr:`last_decision` is the latest
    :class:`trainctl.Decision` (``.explain()`` says why).

    Differences, on inputs where Hugging Face's class misbehaves: a negative or non-integer
    ``early_stopping_patience`` (which stops at the first evaluation) and an
    ``early_stopping_threshold`` of ``None`` (which raises ``TypeError`` at the first
    improvement) are refused here, at construction, with a ``ValueError``/``TypeError`` naming
    the argument.
    """

    def __init__(
        self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0
    ) -> None:
        self.last_decision: Decision | None = None
        self._ctl: Controller | None = None
        self._key: tuple[Any, ...] | None = None
        self._monitor = "eval_loss"  # until the Trainer's arguments are known
        self._mode: Literal["min", "max"] = "min"
        # Hugging Face's __init__ sets the two arguments, then the counter (our property,
        # which builds the core and so validates the arguments)
        super().__init__(early_stopping_patience, early_stopping_threshold)

    # -- the core -------------------------------------------------------------------------------

    def _controller(self) -> Controller:
        """The one-policy Controller for the current attributes (users may assign them; a
        resumed ``stateful_callbacks`` entry rebuilds the class from them); a change builds a
        new one carrying the state over (it is plain data)."""
        patience, threshold = self.early_stopping_patience, self.early_stopping_threshold
        key = (patience, threshold, self._monitor, self._mode)
        current = self._ctl
        if current is not None and key == self._key:
            return current
        # the Trainer's test is abs(v - best) > threshold after a strict improvement: a negative
        # threshold passes it always, exactly as 0 does (the core takes abs(min_delta))
        negative = isinstance(threshold, (int, float)) and threshold < 0
        try:
            policy = CoreEarlyStopping(
                self._monitor,
                patience=patience,
                min_delta=0.0 if negative else threshold,
                mode=self._mode,
                rules="huggingface",
                stop_is_final=False,  # Hugging Face keeps counting if training goes on
            )
        except (TypeError, ValueError) as error:
            message = str(error)
            for core, hf in _HF_NAMES:
                message = message.replace(core, hf)
            raise type(error)(f"EarlyStoppingCallback: {message}") from error
        ctl = Controller(policy, warn_missing=False)  # Hugging Face's own warning instead
        if current is not None:
            ctl.replace_state(0, current.states[0])
        self._ctl, self._key = ctl, key
        return ctl

    @property
    def controller(self) -> Controller:
        """The one-policy :class:`trainctl.Controller` making the decisions."""
        return self._controller()

    @property
    def policy(self) -> CoreEarlyStopping:
        """The core :class:`trainctl.EarlyStopping`."""
        policy: CoreEarlyStopping = self._controller().policies[0]
        return policy

    @property
    def core_state(self) -> CoreEarlyStoppingState:
        """The core policy's state (``best``, ``wait``, ...)."""
        state: CoreEarlyStoppingState = self._controller().states[0]
        return state

    @property
    def early_stopping_patience_counter(self) -> int:
        """Evaluations without an improvement beyond the threshold (the core state's ``wait``)."""
        return int(self.core_state.wait)

    @early_stopping_patience_counter.setter
    def early_stopping_patience_counter(self, value: int) -> None:
        ctl = self._controller()
        ctl.replace_state(0, ctl.states[0]._replace(wait=int(value)))

    # -- Hugging Face's hooks -------------------------------------------------------------------

    def check_metric_value(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        metric_value: float,
    ) -> None:
        """One check, decided by the core (Hugging Face's method of the same name)."""
        monitor = _eval_name(args.metric_for_best_model or "loss")
        self._monitor, self._mode = monitor, ("max" if args.greater_is_better else "min")
        ctl = self._controller()
        best = state.best_metric  # what Hugging Face compares against
        ctl.replace_state(0, ctl.states[0]._replace(best=None if best is None else float(best)))
        self.last_decision = ctl.step({monitor: metric_value})

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metric_to_check = args.metric_for_best_model
        assert metric_to_check is not None  # Hugging Face's on_train_begin asserts it
        metric_to_check = _eval_name(metric_to_check)
        metric_value = None if metrics is None else metrics.get(metric_to_check)
        if metric_value is None:
            _hf_logger.warning(
                f"early stopping required metric_for_best_model, but did not find "
                f"{metric_to_check} so early stopping is disabled"
            )
            return
        self.check_metric_value(args, state, control, metric_value)
        decision = self.last_decision
        if decision is not None and decision.stop:
            control.should_training_stop = True
