"""The framework-neutral effects runner, with an in-memory backend.

One rule each, the same under every adapter: rates, best weights, writes and deletes, the
checkpoint a run resumed from, a fresh run into another run's directory, errors on several
processes. The adapters' own tests check that each of them really goes through the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import trainctl
from trainctl.effects import (
    Backend,
    EffectsRunner,
    FreshRunError,
    manifest_metrics,
    rates_like,
)
from trainctl.storage import CheckpointStore


class Memory:
    """A model that is a dict, an optimizer that is a list of rates."""

    def __init__(self, lrs: tuple[float, ...] = (0.1,)) -> None:
        self.weights = {"w": 0.0}
        self.lrs = list(lrs)
        self.stopped = False
        self.written: list[tuple[str, Any]] = []
        self.fail_writes = False

    def read_lrs(self) -> tuple[float, ...]:
        return tuple(self.lrs)

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        self.lrs = list(lrs)

    def snapshot_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def restore_weights(self, snapshot: Any) -> None:
        self.weights = dict(snapshot)

    def make_checkpoint(self, *, controller_state: Mapping[str, Any], best_weights: Any) -> Any:
        return {"weights": dict(self.weights), "best": best_weights}

    def write_checkpoint(self, payload: Any, path: Path) -> None:
        if self.fail_writes:
            raise OSError(28, "No space left on device")
        path.write_text(repr(payload))
        self.written.append((path.name, payload))

    def request_stop(self) -> None:
        self.stopped = True


def policy(**kwargs: Any) -> trainctl.CheckpointPolicy:
    return trainctl.CheckpointPolicy("val_loss", filename="e{epoch}", **kwargs)


def test_the_backend_protocol_is_what_the_adapters_implement() -> None:
    from trainctl.adapters.keras import _KerasBackend
    from trainctl.adapters.lightning import _LightningBackend
    from trainctl.adapters.torch import _TorchBackend

    assert isinstance(Memory(), Backend)
    for cls in (_TorchBackend, _KerasBackend, _LightningBackend):
        assert all(callable(getattr(cls, m)) for m in (
            "read_lrs", "set_lrs", "snapshot_weights", "restore_weights", "make_checkpoint",
            "write_checkpoint", "request_stop",
        )), cls


def test_rates_are_written_when_a_decision_changes_them_and_at_rounds_when_owned() -> None:
    backend = Memory((0.1, 0.1))
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau(patience=0, factor=0.5, min_delta=0.0), lr=0.1
    )
    runner = EffectsRunner(ctl, backend)
    runner.round({"val_loss": 1.0})
    backend.lrs = [0.2, 0.2]  # a hand change is reported, adopted, and the reduction starts there
    d = runner.round({"val_loss": 1.0})
    assert d.lr == 0.1 and backend.lrs == [0.1, 0.1]
    # a controller that only follows the optimizer leaves the rate alone at rounds
    follower = EffectsRunner(trainctl.Controller(trainctl.EarlyStopping(patience=3)), Memory())
    follower.backend.lrs = [0.3]  # type: ignore[attr-defined]
    follower.round({"val_loss": 1.0})
    assert follower.backend.lrs == [0.3]  # type: ignore[attr-defined]
    assert follower.controller.lr == 0.3  # read back: state, not configuration


def test_rates_like_shapes_the_optimizers_rates_as_the_controller_holds_them() -> None:
    assert rates_like(trainctl.Controller(lr=0.1), (0.2, 0.2)) == 0.2
    assert rates_like(trainctl.Controller(lr=(0.1, 0.2)), (0.3, 0.4)) == (0.3, 0.4)
    assert rates_like(trainctl.Controller(), (0.3, 0.4)) == (0.3, 0.4)
    with pytest.raises(ValueError, match=r"different rates .*single rate"):
        rates_like(trainctl.Controller(lr=0.1), (0.3, 0.4))


def test_deletes_go_with_the_first_write_and_metrics_are_numbers(tmp_path: Path) -> None:
    backend = Memory()
    ctl = trainctl.Controller(policy(save_top_k=1, save_last=True))
    runner = EffectsRunner(ctl, backend, store=tmp_path)
    runner.round({"val_loss": 1.0, "note": "text"})
    runner.round({"val_loss": 0.5})
    store = runner.store
    assert store is not None
    assert [e.name for e in store.entries] == ["e2", "last"]
    assert dict(store.get("e2").metrics) == {"val_loss": 0.5}
    assert manifest_metrics({"a": 1, "b": "x", "c": None, "d": float("nan")})["a"] == 1.0
    # the state saved with e2 already assumes e1 is gone
    saved = trainctl.Controller(policy(save_top_k=1, save_last=True))
    saved.load_state_dict(store.load_state("e2"))
    assert [c.name for c in saved.states[0].kept] == ["e2"]


def test_best_weights_are_snapshotted_and_restored_at_the_end() -> None:
    backend = Memory()
    ctl = trainctl.Controller(trainctl.EarlyStopping(patience=1, restore_best_weights=True))
    runner = EffectsRunner(ctl, backend)
    for step, loss in enumerate([1.0, 0.5, 0.9]):
        backend.weights = {"w": float(step)}
        d = runner.round({"val_loss": loss})
    assert d.stop and d.restore_best and backend.stopped
    assert backend.weights == {"w": 2.0}  # the stop only announces the restore
    assert runner.finish().restore_best and backend.weights == {"w": 1.0}
    assert runner.best_epoch == 1


def _resumable(tmp_path: Path) -> tuple[EffectsRunner, Memory]:
    backend = Memory()
    ctl = trainctl.Controller(policy(save_top_k=1))
    return EffectsRunner(ctl, backend, store=tmp_path), backend


def test_the_checkpoint_resumed_from_survives_until_the_first_new_save(tmp_path: Path) -> None:
    first, _ = _resumable(tmp_path)
    first.round({"val_loss": 1.0})
    assert first.latest() == "e1"
    # a resumed run: e1 is protected
    runner, backend = _resumable(tmp_path)
    runner.controller.load_state_dict(runner.store.load_state("e1"))  # type: ignore[union-attr]
    runner.resumed_from("e1")
    assert runner.store is not None and runner.store.protected == {"e1"}
    # a first save that fails leaves it untouched
    backend.fail_writes = True
    with pytest.raises(trainctl.CheckpointSaveError):
        runner.round({"val_loss": 0.5})
    assert (tmp_path / "e1").exists() and "e1" in runner.store
    # the first save that succeeds lifts the protection and, being better, replaces it
    backend.fail_writes = False
    runner.controller.load_state_dict(runner.store.load_state("e1"))
    runner.round({"val_loss": 0.5})
    assert [e.name for e in runner.store.entries] == ["e2"]
    assert not (tmp_path / "e1").exists() and runner.store.protected == frozenset()


def test_a_fresh_run_into_another_runs_directory_is_refused(tmp_path: Path) -> None:
    first, _ = _resumable(tmp_path)
    first.round({"val_loss": 1.0})
    runner, _ = _resumable(tmp_path)
    with pytest.raises(FreshRunError, match=r"already holds 1 checkpoint.*resume it"):
        runner.round({"val_loss": 0.7})
    assert [e.name for e in runner.store.entries] == ["e1"]  # type: ignore[union-attr]
    overwriting = EffectsRunner(
        trainctl.Controller(policy(save_top_k=1)), Memory(), store=tmp_path, overwrite=True
    )
    overwriting.round({"val_loss": 0.7})
    store = overwriting.store
    assert store is not None and store.get("e1").metrics == {"val_loss": 0.7}


def test_an_error_on_one_process_is_raised_on_every_process(tmp_path: Path) -> None:
    seen: list[tuple[BaseException | None, str]] = []

    class Follower(Memory):
        is_writer = False

        def agree(self, error: BaseException | None, what: str) -> None:
            seen.append((error, what))
            raise RuntimeError(f"rank 0 failed in {what}")

    runner = EffectsRunner(trainctl.Controller(policy()), Follower(), store=tmp_path)
    with pytest.raises(RuntimeError, match="rank 0 failed in saving a checkpoint"):
        runner.round({"val_loss": 1.0})
    assert seen == [(None, "saving a checkpoint")]
    assert not (tmp_path / "e1").exists()  # only the writer writes


def test_backends_that_cannot_embed_the_best_weights_keep_them_beside(tmp_path: Path) -> None:
    class KerasLike(Memory):
        best_suffix = ".best"

        def write_best(self, path: Path) -> None:
            path.write_text(repr(runner.best_weights))

    backend = KerasLike()
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(patience=5, restore_best_weights=True), policy(save_top_k=1)
    )
    runner = EffectsRunner(ctl, backend, store=tmp_path)
    backend.weights = {"w": 7.0}
    runner.round({"val_loss": 1.0})
    store = runner.store
    assert store is not None
    assert [e.name for e in store.entries] == ["trainctl-best.best", "e1"]
    assert store.get("trainctl-best.best").metrics == {"epoch": 0.0}
    assert runner.latest() == "e1"  # the best-weights entry is not a checkpoint to resume
    runner.round({"val_loss": 2.0})  # no new best: the entry is not written again
    assert store.get("trainctl-best.best").sequence == 0


def test_a_store_given_as_a_directory_is_opened_on_first_use(tmp_path: Path) -> None:
    runner = EffectsRunner(trainctl.Controller(), Memory(), store=tmp_path / "new")
    assert runner.has_store and not (tmp_path / "new").exists()
    assert isinstance(runner.store, CheckpointStore) and (tmp_path / "new").is_dir()
    with pytest.raises(TypeError, match=r"'controller' must be a trainctl\.Controller"):
        EffectsRunner(object(), Memory())  # type: ignore[arg-type]
