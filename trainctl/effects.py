"""Carry a decision out: one framework-neutral runner under every adapter.

The core decides; an adapter translates a framework's hooks into calls on a
:class:`~trainctl.Controller` and its decisions into effects. The effects follow the same rules
in every framework, so they live here, once, and an adapter provides only a small
:class:`Backend`: read and set the learning rates, copy and restore the weights, write a
checkpoint file, request a stop (and, on several processes, agree on errors).

Theory of operation
-------------------
:meth:`EffectsRunner.round` / :meth:`EffectsRunner.optimizer_step` read the optimizer's rates back
(a rate changed by hand is reported to the controller, see :meth:`Controller.step`), call the
controller, and :meth:`EffectsRunner.carry_out` the decision, in this order:

=====================  =====================================================================
effect                 rule
=====================  =====================================================================
rates                  written into every param group (a single rate goes to every group)
                       whenever a decision changes it, and at every round when the controller
                       owns the rate (``Controller.owns_lr``)
best weights           ``snapshot_best``: ``backend.snapshot_weights()`` is kept in memory;
                       :meth:`finish` puts it back when the controller says ``restore_best``
                       (at the end of training, whatever ended it, as Keras does: a stop's
                       ``restore_best`` announces it, so that checkpoints written in the same
                       round still hold the last weights). Every checkpoint carries the
                       snapshot, so a restore still works after a resume
checkpoints            ``save`` then ``last``, each written once through the crash-safe
                       :class:`~trainctl.storage.CheckpointStore` with the controller's
                       ``state_dict()`` and the round's metrics (:func:`manifest_metrics`); the
                       round's ``delete`` goes with the first write (the state saved with it
                       already assumes they are gone), or alone if nothing is written.
                       Only the writing process (rank 0) touches the store; every process meets
                       in ``backend.agree`` afterwards, so a failure on one raises on all
resumed checkpoint     the checkpoint a run resumed from is protected: it is never deleted
                       before the run's first new checkpoint is durable. That first save
                       lifts the protection, so its own deletions (made only after it is
                       durable) may then remove it, and it may be overwritten (``last``)
a fresh run            a store that already holds checkpoints when this run writes its first
                       one is refused (another run's files would be mixed with this one's),
                       unless the run resumed from it or ``overwrite=True``
stop                   ``backend.request_stop()``
=====================  =====================================================================

Backends whose checkpoint payload cannot hold the best weights (a Keras model file) provide
``write_best``; the runner then keeps the snapshot as its own store entry
(:data:`BEST_WEIGHTS_ENTRY` plus the backend's suffix), written before the round's checkpoints
whenever it changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ._controller import Controller
from ._decisions import Decision, SaveRequest, epoch_after
from ._monitor import number_metrics
from ._validation import check_controller
from .storage import CheckpointStore, CheckpointStoreError

__all__ = [
    "BEST_WEIGHTS_ENTRY",
    "Backend",
    "EffectsRunner",
    "FreshRunError",
    "Resume",
    "manifest_metrics",
    "rates_like",
]

#: The store entry (name prefix) that holds the best weights for backends with ``write_best``.
BEST_WEIGHTS_ENTRY = "trainctl-best"


class FreshRunError(CheckpointStoreError):
    """A fresh run would write into a directory that holds another run's checkpoints."""


@runtime_checkable
class Backend(Protocol):
    """What an adapter gives the runner (one per framework).

    Required:

    - ``read_lrs() -> tuple[float, ...] | None``: every param group's rate now, optimizer by
      optimizer (``None`` when there is no optimizer yet);
    - ``set_lrs(lrs: tuple[float, ...]) -> None``: write one rate per param group;
    - ``snapshot_weights() -> object``: an in-memory copy of the weights;
    - ``restore_weights(snapshot) -> None``;
    - ``make_checkpoint(*, controller_state, best_weights) -> object``: what a checkpoint holds,
      built (and checked) on every process before anything is written, so that a bad payload
      fails before the store is touched (and a collective dump runs everywhere);
    - ``write_checkpoint(payload, path) -> None``: write that payload as one file at ``path`` (a
      temporary name in the checkpoint directory);
    - ``request_stop() -> None``.

    Optional: ``is_writer: bool`` (default ``True``; ``False`` on ranks other than 0),
    ``agree(error, what) -> None`` (collective: raise on every process if any failed; default:
    raise ``error``), ``write_best(path) -> None`` with ``best_suffix: str`` (see the module
    docstring).
    """

    def read_lrs(self) -> tuple[float, ...] | None: ...

    def set_lrs(self, lrs: tuple[float, ...]) -> None: ...

    def snapshot_weights(self) -> Any: ...

    def restore_weights(self, snapshot: Any) -> None: ...

    def make_checkpoint(
        self, *, controller_state: Mapping[str, Any], best_weights: Any
    ) -> Any: ...

    def write_checkpoint(self, payload: Any, path: Path) -> None: ...

    def request_stop(self) -> None: ...


@attrs.frozen(kw_only=True)
class Resume:
    """Where a resumed run starts: the same record from every adapter.

    Attributes:
        checkpoint: the checkpoint resumed from (its name in the store), or ``None`` for a
            fresh start.
        path: its file, or ``None``.
        epoch: the 0-based epoch to train next (Keras' ``initial_epoch``; ``range(epoch,
            epochs)`` in a plain loop).
        optimizer_steps: optimizer steps already taken.
        stopped: the run had already stopped: there is nothing left to train.
        extra: what the adapter's checkpoint carried besides (torch: ``extra_state()``), or
            ``None``.
    """

    checkpoint: str | None = None
    path: Path | None = None
    epoch: int = 0
    optimizer_steps: int = 0
    stopped: bool = False
    extra: Any = None

    @property
    def fresh(self) -> bool:
        """Whether there was nothing to resume."""
        return self.checkpoint is None

    @classmethod
    def of(
        cls,
        controller: Controller,
        checkpoint: str | None = None,
        path: Path | None = None,
        extra: Any = None,
    ) -> Resume:
        """The record for ``controller``'s progress (loaded from ``checkpoint``): the one rule
        for where a resumed run starts, the epoch after the last round's (0 before any)."""
        return cls(
            checkpoint=checkpoint,
            path=path,
            epoch=epoch_after(controller.epoch),
            optimizer_steps=controller.optimizer_steps,
            stopped=controller.stopped,
            extra=extra,
        )


def manifest_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a checkpoint's manifest entry records: every value that is a number (floats,
    ints, numpy scalars, one-element arrays and tensors), as a float; anything else is left out
    (the policies never used it)."""
    return number_metrics(metrics)


def rates_like(controller: Controller, rates: Sequence[float]) -> float | tuple[float, ...]:
    """The optimizer's rates in the controller's shape: one per group if the controller manages
    one per group (or has none yet and there are several), else the single common rate.

    ``ValueError`` if the groups run at different rates but the controller manages one rate.
    """
    mine = controller.lr
    if isinstance(mine, tuple) or (mine is None and len(rates) > 1):
        return tuple(rates)
    if any(r != rates[0] for r in rates):
        raise ValueError(
            f"the optimizer's param groups run at different rates {list(rates)} but the "
            "controller manages a single rate; give Controller(lr=...) one rate per group"
        )
    return rates[0]


class EffectsRunner:
    """Run a controller and carry its decisions out through a :class:`Backend`.

    Args:
        controller: the :class:`~trainctl.Controller`.
        backend: the framework's :class:`Backend`.
        store: a :class:`~trainctl.storage.CheckpointStore`, a directory, or ``None`` (then a
            checkpoint request raises, naming what to pass).
        overwrite: let a fresh run write into a directory that holds another run's checkpoints
            (they stay, unknown to this run's policies, until the store's deletions reach
            them: they never do).
        report_lr: read the optimizer's rates back at every round (``True``), so that a rate
            changed by hand is seen.
    """

    def __init__(
        self,
        controller: Controller,
        backend: Backend,
        *,
        store: CheckpointStore | str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        report_lr: bool = True,
    ) -> None:
        check_controller(controller)
        if store is not None and not isinstance(store, CheckpointStore):
            store = CheckpointStore(store)
        self.controller = controller
        self.backend = backend
        self.overwrite = bool(overwrite)
        self.report_lr = bool(report_lr)
        self.best_weights: Any = None
        self.best_epoch: int | None = None  # the 0-based epoch best_weights come from
        self.best_written = False  # whether best_weights is in the store (write_best backends)
        self.last_decision: Decision | None = None
        self._store = store
        self._recovered = False
        self._resumed: str | None = None
        self._wrote = False

    # -- the store --------------------------------------------------------------------------------

    @property
    def store(self) -> CheckpointStore | None:
        """The checkpoint store, recovered on first use (writer process only)."""
        store = self._store
        if store is not None and not self._recovered:
            store.recover()
            self._recovered = True
        return store

    @property
    def has_store(self) -> bool:
        return self._store is not None

    def attach(self, store: CheckpointStore) -> None:
        """Use ``store`` from now on (an adapter that learns its directory late)."""
        if self._store is None or self._store.directory != store.directory:
            self._store = store
            self._recovered = False

    @property
    def is_writer(self) -> bool:
        return bool(getattr(self.backend, "is_writer", True))

    def close(self) -> None:
        """Release the store (its writer lock); the next use opens it again."""
        store = self._store
        if store is not None and self._recovered:
            store.close()
            self._recovered = False

    def resumed_from(self, name: str | None) -> None:
        """Record the checkpoint the run resumed from (protected until the first new save).

        ``None`` (nothing to resume: a fresh start) also rewinds the controller's decision log
        to its start, dropping the records of a run that died before its first checkpoint; a
        loaded state rewinds it to the checkpoint by itself."""
        self._resumed = name
        store = self.store if self.is_writer else None
        if name is not None and store is not None and name in store:
            store.protect(name)
        if name is None and self.is_writer:
            rewind = getattr(self.controller.log, "rewind", None)
            if rewind is not None:
                rewind(0, 0)

    def _agree(self, error: BaseException | None, what: str) -> None:
        agree: Callable[[BaseException | None, str], None] | None = getattr(
            self.backend, "agree", None
        )
        if agree is not None:
            agree(error, what)
        elif error is not None:
            raise error

    def check_fresh(self) -> None:
        """Refuse a fresh run in a directory that holds another run's checkpoints (see the
        module docstring); call it where training starts to fail before any work."""
        if self._resumed is not None or self.overwrite or self._wrote or not self.is_writer:
            return
        store = self.store
        if store is None:
            return
        entries = [e.name for e in store.entries]
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise FreshRunError(
                f"{str(store.directory)!r} already holds {len(entries)} checkpoint(s) of another "
                f"run ({shown}); resume it (the adapter's resume()), write into an empty "
                "directory, or pass overwrite=True to write beside them"
            )

    # -- the clocks -------------------------------------------------------------------------------

    def read_rates(self) -> float | tuple[float, ...] | None:
        """The optimizer's rates in the controller's shape, or ``None`` without an optimizer."""
        rates = self.backend.read_lrs()
        if not rates:
            return None
        return rates_like(self.controller, rates)

    def round(
        self,
        metrics: Mapping[str, Any],
        *,
        epoch: int | None = None,
        time: float | None = None,
    ) -> Decision:
        """One evaluation round: report the rates, decide, carry it out."""
        lr = self.read_rates() if self.report_lr else None
        decision = self.controller.step(metrics, epoch=epoch, lr=lr, time=time)
        self.carry_out(decision, metrics)
        return decision

    def optimizer_step(
        self,
        metrics: Mapping[str, Any] | None = None,
        *,
        epoch: int | None = None,
        time: float | None = None,
    ) -> Decision:
        """One optimizer step: decide, carry it out."""
        decision = self.controller.optimizer_step(metrics, epoch=epoch, time=time)
        self.carry_out(decision, metrics or {})
        return decision

    def finish(self) -> Decision:
        """The end of training: restore the best weights if the controller says so."""
        decision = self.controller.finish()
        if decision.restore_best and self.best_weights is not None:
            self.backend.restore_weights(self.best_weights)
        return decision  # last_decision keeps the last round's: why training ended

    # -- effects ----------------------------------------------------------------------------------

    def carry_out(self, decision: Decision, metrics: Mapping[str, Any]) -> None:
        """Carry ``decision`` out (see the module docstring for the rules and their order)."""
        self.last_decision = decision
        lr = decision.lr
        if lr is not None and (
            decision.lr_changed or (decision.clock == "round" and self.controller.owns_lr)
        ):
            self.set_rates(lr)
        if decision.snapshot_best:
            self.best_weights = self.backend.snapshot_weights()
            self.best_epoch = decision.epoch
            self.best_written = False
        if decision.save is not None or decision.last is not None or decision.delete:
            requests = [r for r in (decision.save, decision.last) if r is not None]
            self.write(requests, decision.delete, metrics)
        if decision.stop:
            self.backend.request_stop()

    def set_rates(self, lr: float | tuple[float, ...]) -> None:
        """Write the controller's rate(s) into the optimizer: a single rate to every group."""
        current = self.backend.read_lrs()
        if not current:
            return
        values = lr if isinstance(lr, tuple) else (lr,) * len(current)
        if len(values) != len(current):
            raise ValueError(
                f"the controller manages {len(values)} learning rate(s) but the optimizer(s) have "
                f"{len(current)} param group(s); give Controller(lr=...) one rate per group"
            )
        self.backend.set_lrs(tuple(values))

    def save(self, name: str, *, delete: Sequence[str] = ()) -> None:
        """Write a checkpoint named ``name`` now (every process must call it)."""
        self.write([SaveRequest(name=name)], tuple(delete), {})

    def write(
        self, requests: Sequence[SaveRequest], delete: Sequence[str], metrics: Mapping[str, Any]
    ) -> None:
        """Write ``requests`` and delete ``delete`` through the store (see the module docstring).

        Collective: every process builds the payload, the writer writes, then every process
        meets in ``backend.agree``.
        """
        error: BaseException | None = None
        try:
            state = self.controller.state_dict()
            payload = self.backend.make_checkpoint(
                controller_state=state, best_weights=self.best_weights
            )
            if self.is_writer:
                self._write(requests, delete, metrics, state, payload)
        except Exception as exc:  # every process must hear of it
            error = exc
        self._agree(error, "saving a checkpoint")

    def _write(
        self,
        requests: Sequence[SaveRequest],
        delete: Sequence[str],
        metrics: Mapping[str, Any],
        state: Mapping[str, Any],
        payload: Any,
    ) -> None:
        store = self.store
        if store is None:
            raise ValueError(
                "a policy asked for a checkpoint but there is no checkpoint store; give the "
                "adapter a directory (store=... / dirpath=...)"
            )
        self.check_fresh()
        if self._resumed is not None:
            # the run's first new checkpoint: the one resumed from becomes an ordinary one
            store.unprotect(self._resumed)
            self._resumed = None
        self._wrote = True
        numbers = manifest_metrics(metrics)
        self._write_best(store)
        backend = self.backend

        def write(path: Path) -> None:
            backend.write_checkpoint(payload, path)

        pending = tuple(delete)
        for request in requests:
            store.save(request.name, write, metrics=numbers, state=state, delete=pending)
            pending = ()
        if pending:
            store.delete(pending)

    def _write_best(self, store: CheckpointStore) -> None:
        write_best = getattr(self.backend, "write_best", None)
        if write_best is None or self.best_weights is None or self.best_written:
            return
        epoch = {} if self.best_epoch is None else {"epoch": float(self.best_epoch)}
        store.save(self.best_entry(), write_best, metrics=epoch)
        self.best_written = True

    # -- resuming ---------------------------------------------------------------------------------

    def best_entry(self) -> str:
        """The store entry holding the best weights (backends with ``write_best``)."""
        return BEST_WEIGHTS_ENTRY + str(getattr(self.backend, "best_suffix", ""))

    def latest(self) -> str | None:
        """The newest checkpoint a run can resume from (the best-weights entry excluded)."""
        store = self.store
        if store is None:
            raise ValueError("resuming needs a checkpoint store; give the adapter a directory")
        best = self.best_entry()
        names = [e.name for e in store.entries if e.name != best]
        return names[-1] if names else None

    def verified_path(self, name: str) -> Path:
        """The file of checkpoint ``name``, its checksum checked first
        (:class:`~trainctl.storage.CheckpointCorruptError` names the file if it changed)."""
        store = self.store
        if store is None:
            raise ValueError("resuming needs a checkpoint store; give the adapter a directory")
        store.verify(name)
        return store.path(name)

    def where_to_start(self, name: str | None, extra: Any = None) -> Resume:
        """The :class:`Resume` record for the controller's (just loaded) progress."""
        store = self._store
        path = None if name is None or store is None else store.directory / name
        return Resume.of(self.controller, name, path, extra)
