"""trainctl.adapters.lightning in a real ``lightning.Trainer`` (CPU, tiny models).

- The drop-in ``EarlyStopping`` side by side with Lightning's on scripted ``val_loss`` streams
  (thresholds, NaN/inf with and without ``check_finite``, both modes, both hook placements,
  ``min_epochs``, random streams from ``_streams.py``): the same epoch at which training ends,
  ``stopped_epoch``, ``stopping_reason`` and its message, ``wait_count`` and ``best_score``.
- ``ControllerCallback`` + ``CheckpointPolicy(save_top_k=k)`` beside Lightning's
  ``ModelCheckpoint(save_top_k=k)`` in the same Trainer: the same kept epochs.
- Resuming through ``fit(ckpt_path=...)`` ends exactly like an uninterrupted run.
- Warmup + plateau (Lightning#10759): the rates the optimizer used, batch by batch, are those of a
  mirror controller fed the same metrics.
- Best weights restored at the end; a NaN loss stops training at the step it happens.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from _locks import lock_is_free
from _streams import metric_stream, pick, same_float
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import trainctl
from trainctl.adapters.lightning import ControllerCallback, EarlyStopping, EarlyStoppingReason
from trainctl.adapters.torch import optimizer_lrs

NAN, INF = math.nan, math.inf
N_BATCHES = 4

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*number of training batches:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*not in metrics \\(present:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)"),
]


@pytest.fixture(autouse=True)
def quiet_lightning() -> Iterator[None]:
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


Value = float | None


class Scripted(pl.LightningModule):
    """Trains nn.Linear(2, 1); its validation logs ``values[current_epoch]`` as ``key``.

    ``None`` logs nothing that epoch. Records the optimizer's rates at every training batch and
    the weights at every epoch end.
    """

    def __init__(
        self,
        values: Sequence[Value],
        *,
        key: str = "val_loss",
        lr: float = 0.05,
        nan_at_step: int | None = None,
    ) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same initial weights in every run
        self.layer = nn.Linear(2, 1)
        self.values = list(values)
        self.key = key
        self.lr = lr
        self.nan_at_step = nan_at_step
        self.rates: list[tuple[float, ...]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.rates.append(optimizer_lrs(self.trainer.optimizers))
        x, y = batch
        loss = F.mse_loss(self.layer(x), y)
        if self.nan_at_step is not None and self.trainer.global_step == self.nan_at_step:
            loss = loss * math.nan
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        v = self.values[min(self.current_epoch, len(self.values) - 1)]
        if v is not None:
            self.log(self.key, torch.tensor(v, dtype=torch.float32))

    def on_train_epoch_end(self) -> None:
        self.weights.append({k: v.detach().clone() for k, v in self.state_dict().items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _data(n: int) -> DataLoader[Any]:
    g = torch.Generator().manual_seed(n)
    return DataLoader(
        TensorDataset(torch.randn(n, 2, generator=g), torch.randn(n, 1, generator=g)), batch_size=2
    )


def fit(
    model: pl.LightningModule,
    callbacks: list[pl.Callback],
    max_epochs: int,
    ckpt_path: str | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    kwargs: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 1,  # sanity checks run, and must be ignored
    }
    kwargs.update(trainer_kwargs)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=callbacks, **kwargs)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers")
        warnings.filterwarnings("ignore", message=".*number of training batches")
        trainer.fit(model, _data(2 * N_BATCHES), _data(2), ckpt_path=ckpt_path)
    return trainer


# -- the drop-in EarlyStopping, side by side ----------------------------------------------------


def run_both(
    stream: Sequence[Value], trainer_kwargs: dict[str, Any] | None = None, **es_kwargs: Any
) -> tuple[LightningEarlyStopping, EarlyStopping]:
    """Fit once with Lightning's EarlyStopping and once with ours; assert they agree."""
    kw = trainer_kwargs or {}
    epochs = kw.pop("max_epochs", len(stream))
    theirs = LightningEarlyStopping(monitor="val_loss", **es_kwargs)
    ours = EarlyStopping(monitor="val_loss", **es_kwargs)
    t_theirs = fit(Scripted(stream), [theirs], epochs, **kw)
    t_ours = fit(Scripted(stream), [ours], epochs, **kw)
    where = f"{es_kwargs} {kw} on {list(stream)}"
    assert t_ours.current_epoch == t_theirs.current_epoch, where
    assert t_ours.global_step == t_theirs.global_step, where
    assert ours.stopped_epoch == theirs.stopped_epoch, where
    assert ours.stopping_reason == theirs.stopping_reason, where
    assert ours.stopping_reason_message == theirs.stopping_reason_message, where
    assert ours.wait_count == theirs.wait_count, where
    assert isinstance(ours.best_score, torch.Tensor)
    assert same_float(float(ours.best_score), float(theirs.best_score)), where
    mine, lightning_state = ours.state_dict(), theirs.state_dict()
    assert set(lightning_state) <= set(mine), where
    return theirs, ours


def test_patience_stop_and_state() -> None:
    theirs, ours = run_both([1.0, 0.9, 0.95, 0.9, 0.91, 0.5, 0.4], patience=3, verbose=True)
    assert ours.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert ours.stopped_epoch == 4
    assert ours.state_key == theirs.state_key
    assert ours.core_state.best == pytest.approx(0.9)


@pytest.mark.parametrize("check_finite", [True, False])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite(check_finite: bool, bad: float) -> None:
    run_both([1.0, 0.9, bad, 0.95, 0.97, 0.99], patience=2, check_finite=check_finite)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_thresholds_and_min_delta(mode: str) -> None:
    up = mode == "max"
    stream = [0.5, 0.6, 0.7, 0.75, 0.9] if up else [0.5, 0.4, 0.3, 0.25, 0.1]
    run_both(stream, mode=mode, stopping_threshold=0.75 if up else 0.25, patience=5)
    worse = [0.5, 0.4, 0.3, 0.2] if up else [0.5, 0.6, 0.7, 0.8]
    run_both(worse, mode=mode, divergence_threshold=0.3 if up else 0.7, patience=5)
    run_both(stream, mode=mode, min_delta=0.1, patience=2)


@pytest.mark.parametrize(
    "trainer_kwargs",
    [{}, {"check_val_every_n_epoch": 2, "max_epochs": 16}, {"val_check_interval": 0.5}],
    ids=["every-epoch", "every-2-epochs", "twice-per-epoch"],
)
@pytest.mark.parametrize("check_on_train_epoch_end", [None, True, False])
def test_hook_placement(
    trainer_kwargs: dict[str, Any], check_on_train_epoch_end: bool | None
) -> None:
    stream = [1.0, 0.8, 0.85, 0.7, 0.75, 0.8, 0.82, 0.9]
    # strict=False: at a train epoch end without validation the metric is absent
    run_both(
        stream,
        dict(trainer_kwargs),
        patience=2,
        strict=False,
        check_on_train_epoch_end=check_on_train_epoch_end,
    )


def test_min_epochs_keeps_checking_after_a_stop() -> None:
    """Lightning's stop is not final while min_epochs holds the Trainer: the checks go on."""
    stream = [1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    theirs, ours = run_both(stream, {"min_epochs": 6}, patience=2)
    # stopped at epoch 2 (patience), went on, improved at epoch 3, stopped again at epoch 5
    assert ours.wait_count == theirs.wait_count == 2
    assert ours.core_state.best == 0.5
    assert ours.stopped_epoch == theirs.stopped_epoch == 5


def test_strict_missing_metric_raises_like_lightning() -> None:
    for callback in (LightningEarlyStopping("val_loss"), EarlyStopping("val_loss")):
        with pytest.raises(RuntimeError, match="val_loss") as info:
            fit(Scripted([1.0, 0.9], key="other"), [callback], 2)
        assert type(info.value) is RuntimeError


def test_random_streams() -> None:
    """Random streams (plateaus, ties, exact min_delta steps, NaN/inf, absent values) and
    configurations; every way of stopping is reached."""
    rng = np.random.default_rng(7)
    reasons: set[EarlyStoppingReason] = set()
    for i in range(24):
        mode: Literal["min", "max"] = "min" if i % 2 else "max"
        delta = pick(rng, [0.0, 0.0, 0.25, 1e-3, 0.5])
        stream = metric_stream(rng, 10, min_delta=delta, mode=mode, missing=i % 4 == 3)
        finite = [v for v in stream if v is not None and math.isfinite(v)]
        threshold = pick(rng, finite) if finite and rng.random() < 0.3 else None
        divergence = pick(rng, finite) if finite and rng.random() < 0.3 else None
        if threshold is not None and divergence is not None and (
            threshold >= divergence if mode == "min" else threshold <= divergence
        ):
            divergence = None  # refused: every value would stop training at once
        _, ours = run_both(
            stream,
            strict=False,
            mode=mode,
            min_delta=delta,
            patience=int(rng.integers(1, 4)),
            check_finite=bool(rng.random() < 0.6),
            stopping_threshold=threshold,
            divergence_threshold=divergence,
        )
        reasons.add(ours.stopping_reason)
    assert reasons >= set(EarlyStoppingReason) - {EarlyStoppingReason.NOT_STOPPED}, reasons


def test_loads_lightnings_own_state() -> None:
    """A checkpoint of Lightning's EarlyStopping resumes in ours (same state_key, same keys)."""
    theirs = LightningEarlyStopping("val_loss", patience=3)
    fit(Scripted([1.0, 0.8, 0.9]), [theirs], 3)
    ours = EarlyStopping("val_loss", patience=3)
    ours.load_state_dict(theirs.state_dict())
    assert ours.core_state.best == pytest.approx(0.8)
    assert ours.core_state.wait == theirs.wait_count == 1
    stop, _ = ours._evaluate_stopping_criteria(torch.tensor(0.85))
    stop2, _ = ours._evaluate_stopping_criteria(torch.tensor(0.85))
    assert (stop, stop2, ours.wait_count) == (False, True, 3)
    clone = EarlyStopping("val_loss", patience=3)
    clone.load_state_dict(
        json.loads(json.dumps({**ours.state_dict(), "best_score": None}))
        | {"best_score": ours.best_score}
    )
    assert clone.core_state == ours.core_state


# -- ControllerCallback -------------------------------------------------------------------------


def test_controller_stops_where_lightning_does() -> None:
    """The core EarlyStopping(rules="lightning") behind a ControllerCallback ends training at the
    epoch Lightning's EarlyStopping ends it; sanity checks are not rounds."""
    rng = np.random.default_rng(11)
    streams: list[list[Value]] = [[1.0, 0.9, NAN, 0.8], [1.0, 0.9, 0.95, 0.91, 0.92, 0.8]]
    streams += [metric_stream(rng, 8) for _ in range(4)]
    for stream in streams:
        theirs = LightningEarlyStopping("val_loss", patience=2)
        t_theirs = fit(Scripted(stream), [theirs], len(stream))
        ctl = trainctl.Controller(
            trainctl.EarlyStopping(
                "val_loss",
                patience=2,
                rules="lightning",
                precision="float32",
                check_finite=True,
                mode="min",
            )
        )
        callback = ControllerCallback(ctl)
        t_ours = fit(Scripted(stream), [callback], len(stream))
        assert t_ours.current_epoch == t_theirs.current_epoch, stream
        assert len(callback.decisions) == ctl.rounds == t_ours.current_epoch
        assert ctl.stopped == bool(theirs.stopped_epoch)
        d = ctl.states[0]
        assert d.wait == theirs.wait_count, stream


HAND_MADE: list[list[Value]] = [
    [NAN, NAN, 1.0, NAN, 1.0, 0.5, 0.5, INF],
    [0.5, 0.5, 0.5, 0.4, 0.4, 0.6, 0.4, 0.5],
    [INF, 2.0, NAN, 2.0, -INF, 1.0, 1.0, 3.0],
]


def _epochs(directory: Path, offset: int = 0) -> set[int]:
    return {int(p.stem) - offset for p in directory.glob("*.ckpt") if p.stem.isdigit()}


@pytest.mark.parametrize(
    ("k", "mode"), [(1, "min"), (2, "max"), (3, "min"), (-1, "max"), (0, "min")]
)
def test_kept_checkpoints_match_model_checkpoint(tmp_path: Path, k: int, mode: str) -> None:
    rng = np.random.default_rng(k + 5)
    streams = [*HAND_MADE, metric_stream(rng, 8, mode=mode)]  # type: ignore[arg-type]
    for i, stream in enumerate(streams):
        theirs_dir, ours_dir = tmp_path / f"theirs{i}", tmp_path / f"ours{i}"
        theirs = ModelCheckpoint(
            dirpath=theirs_dir,
            filename="{epoch}",
            save_top_k=k,
            monitor="val_loss",
            mode=mode,
            auto_insert_metric_name=False,
        )
        policy = trainctl.CheckpointPolicy(
            "val_loss",
            mode=mode,  # type: ignore[arg-type]
            save_top_k=k,
            filename="{epoch}",
            extension=".ckpt",
            precision="float32",
        )
        ours = ControllerCallback(trainctl.Controller(policy), dirpath=ours_dir)
        fit(Scripted(stream), [theirs, ours], len(stream), enable_checkpointing=True)
        # trainctl's {epoch} is 1-based, Lightning's 0-based
        assert _epochs(ours_dir, offset=1) == _epochs(theirs_dir), (stream, k, mode)
        assert ours.store is not None
        on_disk = {p.name for p in ours_dir.iterdir() if p.name.endswith(".ckpt")}
        assert on_disk == {e.name for e in ours.store.entries}
        for name in on_disk:  # real Lightning checkpoints, carrying the controller's state
            ckpt = torch.load(ours_dir / name, weights_only=False)
            assert "state_dict" in ckpt and "optimizer_states" in ckpt
            assert ours.state_key in ckpt["callbacks"]


def _resume_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau(
            "val_loss", patience=1, factor=0.5, cooldown=1, rules="torch", precision="float32"
        ),
        trainctl.EarlyStopping(
            "val_loss",
            patience=4,
            rules="lightning",
            precision="float32",
            restore_best_weights=True,
        ),
        trainctl.CheckpointPolicy(
            "val_loss",
            save_top_k=2,
            save_last=True,
            filename="{epoch}",
            extension=".ckpt",
            precision="float32",
        ),
        lr=0.05,
    )


RESUME_STREAM: list[Value] = [1.0, 0.8, 0.85, 0.7, 0.72, 0.75, 0.69, 0.71, 0.7, 0.7, 0.7, 0.7]


@pytest.mark.parametrize("split", [2, 5])
def test_resume_through_ckpt_path_ends_like_an_uninterrupted_run(
    tmp_path: Path, split: int
) -> None:
    n = len(RESUME_STREAM)
    full_cb = ControllerCallback(_resume_controller(), dirpath=tmp_path / "full")
    full_model = Scripted(RESUME_STREAM)
    full = fit(full_model, [full_cb], n)

    first_cb = ControllerCallback(_resume_controller(), dirpath=tmp_path / "split")
    fit(Scripted(RESUME_STREAM), [first_cb], split)
    second_cb = ControllerCallback(_resume_controller(), dirpath=tmp_path / "split")
    second_model = Scripted(RESUME_STREAM)
    second = fit(second_model, [second_cb], n, ckpt_path=str(tmp_path / "split" / "last.ckpt"))

    assert full_cb.controller.stopped and second_cb.controller.stopped  # the stop is resumed too
    assert second.current_epoch == full.current_epoch
    assert second_cb.controller.state_dict() == full_cb.controller.state_dict()
    assert [d.lr for d in second_cb.decisions] == [d.lr for d in full_cb.decisions[split:]]
    assert [d.save for d in second_cb.decisions] == [d.save for d in full_cb.decisions[split:]]
    # the rates in use at every batch of the resumed part, and the kept set on disk
    assert second_model.rates == full_model.rates[split * N_BATCHES :]
    names = {p.name for p in (tmp_path / "full").glob("*.ckpt")}
    assert names == {p.name for p in (tmp_path / "split").glob("*.ckpt")}
    assert second_cb.store is not None and full_cb.store is not None
    assert [e.name for e in second_cb.store.entries] == [e.name for e in full_cb.store.entries]
    # the best weights came back at the end, from the same epoch, in both runs
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, second_model.state_dict()[key]), key


def test_warmup_then_plateau(tmp_path: Path) -> None:
    """Lightning#10759: a per-step warmup and a plateau reduction on one optimizer."""
    schedule = trainctl.schedules.warmup(trainctl.schedules.constant(0.1), warmup_steps=6)

    def controller() -> trainctl.Controller:
        return trainctl.Controller(
            trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, rules="torch"),
            schedule=schedule,
        )

    stream: list[Value] = [1.0, 0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7]
    callback = ControllerCallback(controller())
    model = Scripted(stream)
    fit(model, [callback], len(stream))
    used = [r[0] for r in model.rates]
    # a mirror controller fed the same metrics, batch by batch
    mirror = controller()
    expected: list[float] = []
    rounds = []
    for v in stream:
        for _ in range(N_BATCHES):
            lr = mirror.lr
            assert isinstance(lr, float)
            expected.append(lr)
            mirror.optimizer_step()
        rounds.append(mirror.step({"val_loss": v}))
    assert used == expected
    assert [(d.lr, d.lr_changed) for d in callback.decisions] == [
        (d.lr, d.lr_changed) for d in rounds
    ]
    ramp = [0.0, 0.1 / 6, 0.2 / 6, 0.3 / 6, 0.4 / 6, 0.5 / 6]
    assert used[:6] == pytest.approx(ramp, rel=1e-12)  # warmup, per optimizer step
    assert used[6 : 5 * N_BATCHES] == [0.1] * (5 * N_BATCHES - 6)
    reductions = [d.epoch for d in callback.decisions if d.lr_changed]
    assert reductions == [4, 7]  # torch's rule: 2 bad epochs > patience 1
    assert used[5 * N_BATCHES :] == [0.05] * 3 * N_BATCHES + [0.025] * N_BATCHES


def test_best_weights_restored_at_the_end() -> None:
    stream: list[Value] = [1.0, 0.5, 0.7, 0.8, 0.9, 0.95]
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(
            "val_loss",
            patience=3,
            rules="lightning",
            precision="float32",
            restore_best_weights=True,
        )
    )
    model = Scripted(stream)
    trainer = fit(model, [ControllerCallback(ctl)], len(stream))
    assert trainer.current_epoch == 5  # stopped at epoch 4, patience 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, model.weights[1][key]), key
        assert not torch.equal(value, model.weights[-1][key]), key


def test_nan_loss_stops_at_that_step() -> None:
    ctl = trainctl.Controller(trainctl.TerminateOnNaN("loss"))
    callback = ControllerCallback(ctl)
    model = Scripted([1.0] * 5, nan_at_step=5)
    trainer = fit(model, [callback], 5)
    assert ctl.stopped and ctl.optimizer_steps == 6
    assert trainer.global_step == len(model.rates) == 6  # stopped after that batch, mid-epoch 1
    assert callback.decisions[-1].stop


def test_hand_changed_rate_is_adopted() -> None:
    """No schedule: a rate set by hand between rounds is what the next reduction halves."""

    class HandTuned(Scripted):
        def on_train_epoch_start(self) -> None:
            if self.current_epoch == 2:
                for group in self.trainer.optimizers[0].param_groups:
                    group["lr"] = 0.01

    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, rules="torch")
    )
    model = HandTuned([1.0, 1.0, 1.0, 1.0, 1.0])
    fit(model, [ControllerCallback(ctl)], 5)
    per_epoch = [model.rates[i * N_BATCHES][0] for i in range(5)]
    # torch's rule: the reduction after epoch 2 (two bad epochs) halves the hand-set 0.01
    assert per_epoch == [0.05, 0.05, 0.01, 0.005, 0.005]


def test_checkpoint_patience_and_changed_attributes_are_followed() -> None:
    """Lightning's load_state_dict overwrites patience; users set attributes by hand."""
    source = LightningEarlyStopping("val_loss", patience=1)
    source.best_score = torch.tensor(0.5)
    state = source.state_dict()
    theirs, ours = (
        LightningEarlyStopping("val_loss", patience=5),
        EarlyStopping("val_loss", patience=5),
    )
    for es in (theirs, ours):
        es.load_state_dict(state)
    for es in (theirs, ours):
        assert es._evaluate_stopping_criteria(torch.tensor(0.6))[0]  # patience 1, from the state
    theirs, ours = LightningEarlyStopping("val_loss"), EarlyStopping("val_loss")
    for es in (theirs, ours):
        es.stopping_threshold = 0.2
    for v in (0.5, 0.3, 0.1):
        assert ours._evaluate_stopping_criteria(torch.tensor(v)) == (
            theirs._evaluate_stopping_criteria(torch.tensor(v))
        )
    assert ours.stopping_reason == theirs.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD


def test_resume_says_where_to_start_and_protects_until_the_first_new_save(
    tmp_path: Path,
) -> None:
    first = ControllerCallback(_resume_controller(), dirpath=tmp_path)
    fit(Scripted(RESUME_STREAM), [first], 3)
    cb = ControllerCallback(_resume_controller(), dirpath=tmp_path)
    resumed = cb.resume()
    assert resumed.checkpoint == "last.ckpt" and resumed.path == tmp_path / "last.ckpt"
    assert resumed.epoch == 3 and not resumed.stopped
    assert cb.store is not None and cb.store.protected == {"last.ckpt"}

    class Watch(pl.Callback):
        protected: ClassVar[list[frozenset[str]]] = []

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
            assert cb.store is not None
            self.protected.append(cb.store.protected)

    watch = Watch()
    fit(Scripted(RESUME_STREAM), [cb, watch], 5, ckpt_path=str(resumed.path))
    # protected while the resumed epoch trains, lifted by the first new checkpoint
    assert watch.protected == [frozenset({"last.ckpt"}), frozenset()]


def test_a_fresh_fit_into_another_runs_directory_is_refused_with_lightnings_way(
    tmp_path: Path,
) -> None:
    from trainctl.effects import FreshRunError

    fit(Scripted(RESUME_STREAM), [ControllerCallback(_resume_controller(), dirpath=tmp_path)], 2)
    again = ControllerCallback(_resume_controller(), dirpath=tmp_path)
    with pytest.raises(FreshRunError, match=r"ckpt_path=callback\.resume\(\)\.path"):
        fit(Scripted(RESUME_STREAM), [again], 4)
    # Lightning's "last" only finds ModelCheckpoint's files: it warns, starts fresh, and the
    # callback refuses instead of mixing two runs' files
    with pytest.raises(FreshRunError, match="ModelCheckpoint"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(Scripted(RESUME_STREAM), [again], 4, ckpt_path="last")
    fit(Scripted(RESUME_STREAM),
        [ControllerCallback(_resume_controller(), dirpath=tmp_path, overwrite=True)], 1)


def test_a_scheduler_from_configure_optimizers_is_refused_at_train_start() -> None:
    class WithScheduler(Scripted):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.01)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    ctl = trainctl.Controller(trainctl.ReduceLROnPlateau("val_loss", patience=1), lr=0.01)
    with pytest.raises(ValueError, match=r"StepLR.*hand the schedule to trainctl"):
        fit(WithScheduler(RESUME_STREAM), [ControllerCallback(ctl)], 2)


def test_a_controller_without_lr_resumes_through_ckpt_path(tmp_path: Path) -> None:
    # the optimizer's rate is read back each round and saved: state, not configuration
    def make() -> trainctl.Controller:
        return trainctl.Controller(
            trainctl.EarlyStopping("val_loss", patience=5, rules="lightning"),
            trainctl.CheckpointPolicy("val_loss", save_top_k=1, save_last=True, extension=".ckpt"),
        )

    fit(Scripted(RESUME_STREAM), [ControllerCallback(make(), dirpath=tmp_path)], 2)
    cb = ControllerCallback(make(), dirpath=tmp_path)
    resumed = cb.resume()
    fit(Scripted(RESUME_STREAM), [cb], 4, ckpt_path=str(resumed.path))
    assert cb.controller.rounds == 4 and cb.controller.lr == pytest.approx(0.05)


# -- resuming: random states, and a run that had stopped ------------------------------------------


class Noisy(pl.LightningModule):
    """Dropout, shuffled batches and numpy/Python noise: a resume is exact only if the random
    states come back. Logs the real validation loss; records it per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
        self.val_losses: list[float] = []
        self._val: list[torch.Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        import random

        x, y = batch
        noise = torch.from_numpy(np.random.normal(0, 0.01, tuple(x.shape))).float()
        return F.mse_loss(self.net(x * random.uniform(0.9, 1.1) + noise), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._val.append(F.mse_loss(self.net(batch[0]), batch[1]))

    def on_validation_epoch_end(self) -> None:
        loss = torch.stack(self._val).mean()
        self._val.clear()
        self.log("val_loss", loss)
        if not self.trainer.sanity_checking:
            self.val_losses.append(float(loss))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _noisy_fit(directory: Path, epochs: int, *, save_rng: bool, resume: bool) -> Noisy:
    import random

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    model = Noisy()
    policy = trainctl.CheckpointPolicy(
        "val_loss", save_last=True, save_top_k=0, extension=".ckpt", precision="float32"
    )
    callback = ControllerCallback(trainctl.Controller(policy), dirpath=directory, save_rng=save_rng)
    ckpt_path = None
    if resume:
        ckpt_path = str(callback.resume().path)
        # a new process would start from other random states
        torch.manual_seed(999), np.random.seed(999), random.seed(999)
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.randn(32, 2, generator=g), torch.randn(32, 1, generator=g))
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[callback], accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers")
        trainer.fit(
            model,
            DataLoader(data, batch_size=8, shuffle=True),  # shuffled by the global torch RNG
            DataLoader(data, batch_size=8),
            ckpt_path=ckpt_path,
        )
    assert lock_is_free(directory)  # released at the end of training: a resume may write
    return model


@pytest.mark.parametrize("save_rng", [True, False])
def test_resume_is_bit_exact_with_dropout_and_shuffling(tmp_path: Path, save_rng: bool) -> None:
    whole = _noisy_fit(tmp_path / "whole", 6, save_rng=save_rng, resume=False).val_losses
    head = _noisy_fit(tmp_path / "split", 3, save_rng=save_rng, resume=False).val_losses
    tail = _noisy_fit(tmp_path / "split", 6, save_rng=save_rng, resume=True).val_losses
    assert head == whole[:3]
    if save_rng:
        assert tail == whole[3:]  # bit for bit
    else:
        assert tail != whole[3:]


def test_resuming_a_run_that_had_stopped_trains_nothing(tmp_path: Path) -> None:
    """Lightning would start one more epoch; the stop is final: no batch, no round, and the
    model ends with the best weights, as the uninterrupted run did."""
    first = ControllerCallback(_resume_controller(), dirpath=tmp_path)
    done = fit(Scripted(RESUME_STREAM), [first], 30)
    assert first.controller.stopped and done.current_epoch < 30
    final = {k: v.clone() for k, v in done.lightning_module.state_dict().items()}

    again = ControllerCallback(_resume_controller(), dirpath=tmp_path)
    resumed = again.resume()
    assert resumed.stopped and resumed.path == tmp_path / "last.ckpt"
    model = Scripted(RESUME_STREAM)
    trainer = fit(model, [again], 30, ckpt_path=str(resumed.path))
    assert model.rates == [] and again.decisions == []  # not one batch, not one round
    assert trainer.global_step == done.global_step
    assert again.controller.state_dict() == first.controller.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, final[key]), key  # the best weights, restored again at the end
