"""CheckpointPolicy side by side with the real Keras and Lightning ModelCheckpoint callbacks.

Each test runs the framework's own callback on a metric stream, lists the files it leaves on disk,
and compares them with the names our policy said to save (and, for Lightning, the set it keeps).
The streams (``tests/_streams.py``) dwell on ties, plateaus, values one float32 ulp apart, NaN and
infinities, which is where checkpoint rules differ; a few hand-made streams add NaN-heavy cases.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _streams import metric_stream

from trainctl import Observation
from trainctl._checkpoint import CheckpointDecision, CheckpointPolicy, CheckpointState

os.environ.setdefault("KERAS_BACKEND", "torch")

# Keras' weight writer trips a numpy 2 deprecation on every save; it says nothing about us
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NAN, INF = math.nan, math.inf

#: streams written to hit the NaN and tie rules head on (inputs only: expectations come from the
#: frameworks)
HAND_MADE: list[list[float]] = [
    [NAN, NAN, 1.0, NAN, 1.0, 0.5, 0.5, INF],
    [0.5, 0.5, 0.5, 0.4, 0.4, 0.6, 0.4, 0.5],
    [INF, 2.0, NAN, 2.0, -INF, 1.0, 1.0, 3.0],
]


def _streams(mode: str, n: int, seeds: Sequence[int]) -> list[list[float]]:
    out: list[list[float]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        direction = "max" if mode == "max" else "min"
        values = metric_stream(rng, n, mode=direction, float32=True)  # type: ignore[arg-type]
        out.append([float(v) for v in values if v is not None])
    return out


def _round(
    policy: CheckpointPolicy, state: CheckpointState, metrics: dict[str, float], epoch: int,
    steps: int,
) -> tuple[CheckpointDecision, CheckpointState]:
    obs = Observation("round", metrics, epoch, epoch, steps, None, None)
    return policy.update(state, obs)


# -- Keras --------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def keras_model() -> Any:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    return model


def _keras_checkpoint(directory: Path, template: str, **kwargs: Any) -> Any:
    keras = pytest.importorskip("keras")
    return keras.callbacks.ModelCheckpoint(
        filepath=str(directory / (template + ".weights.h5")), save_weights_only=True, **kwargs
    )


KERAS_CASES = [
    (mode, best_only, threshold)
    for mode in ("auto", "min", "max")
    for best_only, threshold in ((True, None), (True, 0.0), (False, None))
]


def _keras_streams(mode: str) -> list[list[float]]:
    return HAND_MADE + _streams(mode, 12, seeds=range(4))


@pytest.mark.parametrize(("mode", "best_only", "threshold"), KERAS_CASES)
def test_keras_epoch_saves_match(
    keras_model: Any, tmp_path: Path, mode: str, best_only: bool, threshold: float | None
) -> None:
    template = "epoch{epoch:03d}-{val_loss:.4f}"
    for i, values in enumerate(_keras_streams(mode)):
        directory = tmp_path / str(i)
        directory.mkdir()
        callback = _keras_checkpoint(
            directory, template, monitor="val_loss", mode=mode, save_best_only=best_only,
            initial_value_threshold=threshold,
        )
        callback.set_model(keras_model)
        callback.on_train_begin()
        policy = CheckpointPolicy(
            "val_loss", mode=mode, filename=template, extension=".weights.h5",  # type: ignore[arg-type]
            save_best_only=best_only, initial_value_threshold=threshold, precision="float32",
        )
        state = policy.initial_state()
        ours: set[str] = set()
        for epoch, v in enumerate(values):
            callback.on_epoch_begin(epoch)
            callback.on_epoch_end(epoch, {"val_loss": v})
            d, state = _round(policy, state, {"val_loss": v}, epoch, 0)
            assert d.delete == ()  # Keras never deletes
            if d.save is not None:
                ours.add(d.save.name)
        on_disk = set(os.listdir(directory))
        assert on_disk == ours, (values, mode, best_only, threshold)
        assert on_disk == {c.name for c in state.kept}


@pytest.mark.parametrize(("save_freq", "best_only"), [(1, True), (2, True), (3, False), (4, True)])
def test_keras_batch_saves_match_every_n_steps(
    keras_model: Any, tmp_path: Path, save_freq: int, best_only: bool
) -> None:
    template = "epoch{epoch:03d}-{loss:.4f}"
    batches_per_epoch = 5
    for i, values in enumerate(HAND_MADE[:1] + _streams("min", 15, seeds=range(10, 13))):
        directory = tmp_path / str(i)
        directory.mkdir()
        callback = _keras_checkpoint(
            directory, template, monitor="loss", save_best_only=best_only, save_freq=save_freq
        )
        callback.set_model(keras_model)
        callback.on_train_begin()
        # Keras 3 resolves the comparison lazily at the first epoch end, so a second batch-level
        # save_best_only check inside epoch 1 calls monitor_op=None (a Keras bug); resolve it now,
        # as Keras' own monitor_callback_test does.
        callback._set_monitor_op()
        policy = CheckpointPolicy(
            "loss", filename=template, extension=".weights.h5", save_best_only=best_only,
            every_n_steps=save_freq, precision="float32",
        )
        state = policy.initial_state()
        ours: set[str] = set()
        step = 0
        for epoch, chunk in enumerate(_chunks(values, batches_per_epoch)):
            callback.on_epoch_begin(epoch)
            for batch, v in enumerate(chunk):
                callback.on_train_batch_end(batch, {"loss": v})
                step += 1
                obs = Observation("optimizer_step", {"loss": v}, epoch, epoch, step, None, None)
                d, state = policy.update(state, obs)
                if d.save is not None:
                    ours.add(d.save.name)
            callback.on_epoch_end(epoch, {"loss": chunk[-1]})
        assert set(os.listdir(directory)) == ours, (values, save_freq, best_only)


def _chunks(values: list[float], size: int) -> Iterator[list[float]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- Lightning ----------------------------------------------------------------------------------


def _lightning_kept_epochs(
    tmp_path: Path, values: list[float], k: int, mode: str
) -> set[int]:
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Scripted(lightning.LightningModule):  # type: ignore[misc, name-defined]
        """Logs the scripted val_loss of each epoch; trains nothing (lr 0)."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0]).sum()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", values[self.current_epoch])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1)))
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, filename="{epoch}", save_top_k=k, monitor="val_loss", mode=mode,
        auto_insert_metric_name=False,
    )
    trainer = lightning.Trainer(
        max_epochs=len(values), callbacks=[checkpoint], enable_progress_bar=False, logger=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(), data, data)
    return {int(p.stem) for p in tmp_path.iterdir() if p.suffix == ".ckpt"}


@pytest.fixture(autouse=False)
def quiet_lightning() -> Iterator[None]:
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("quiet_lightning")
@pytest.mark.parametrize("k", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_lightning_top_k_keeps_the_same_epochs(tmp_path: Path, k: int, mode: str) -> None:
    for i, values in enumerate(HAND_MADE + _streams(mode, 8, seeds=range(20, 23))):
        directory = tmp_path / str(i)
        directory.mkdir()
        theirs = _lightning_kept_epochs(directory, values, k, mode)
        policy = CheckpointPolicy(
            "val_loss", mode=mode, save_top_k=k, filename="{epoch}",  # type: ignore[arg-type]
            precision="float32",
        )
        state = policy.initial_state()
        files: set[str] = set()
        for epoch, v in enumerate(values):
            d, state = _round(policy, state, {"val_loss": v}, epoch, epoch + 1)
            if d.save is not None:
                files.add(d.save.name)
            files.difference_update(d.delete)
        assert {c.epoch for c in state.kept} == theirs, (values, k, mode)
        assert files == {c.name for c in state.kept}
