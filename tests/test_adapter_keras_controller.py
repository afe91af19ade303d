"""ControllerCallback: any trainctl Controller inside ``model.fit``, beyond what Keras can do.

- warmup + cosine + plateau + early stopping + checkpoints in one fit (Keras refuses a plateau
  on top of a schedule);
- an interrupted fit resumed from its checkpoint in a fresh model ends exactly like an
  uninterrupted one (rates, decisions, kept files, final weights: keras#14862, keras#17012);
- the bad inputs: a Keras LearningRateSchedule in the optimizer, a checkpoint policy without a
  store or with a name Keras cannot write.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from _locks import lock_is_free  # noqa: E402

import trainctl  # noqa: E402
from trainctl import schedules  # noqa: E402
from trainctl.adapters import keras as tk  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

X = np.linspace(-1, 1, 48, dtype="float32").reshape(16, 3)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], "float32")) + 0.1
STEPS_PER_EPOCH = 2  # 16 samples, batch 8
EPOCHS = 12
#: scripted val_loss: improves, plateaus (-> reduction), improves, then stalls (-> stop)
VAL = [1.0, 0.8, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


class Script(keras.callbacks.Callback):  # type: ignore[misc]
    """Placed first: writes the scripted val_loss into the epoch logs."""

    def __init__(self, values: Sequence[float]) -> None:
        super().__init__()
        self.values = list(values)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["val_loss"] = self.values[epoch]


class Rates(keras.callbacks.Callback):  # type: ignore[misc]
    """Records the rate each batch runs at (read before the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.rates.append(float(self.model.optimizer.learning_rate))


def make_model() -> Any:
    keras.utils.set_random_seed(99)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


def visible_files(directory: Path) -> list[str]:
    """The checkpoints and the manifest: the store's hidden bookkeeping (its writer lock file,
    ``.trainctl-lock``, which stays by design) is the storage tests' business."""
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def schedule() -> Any:
    total = EPOCHS * STEPS_PER_EPOCH
    return schedules.warmup(schedules.cosine(0.01, total_steps=total - 4), warmup_steps=4)


def make_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, min_delta=0.0),
        trainctl.EarlyStopping("val_loss", patience=3, restore_best_weights=True),
        trainctl.CheckpointPolicy(
            "val_loss", save_top_k=2, save_last=True, filename="e{epoch:02d}-{val_loss:.2f}",
            extension=".weights.h5",
        ),
        schedule=schedule(),
    )


def run(
    directory: Path, *, epochs: int = EPOCHS, initial_epoch: int = 0, resume: bool = False
) -> dict[str, Any]:
    model = make_model()
    cb = tk.ControllerCallback(make_controller(), store=directory)
    if resume:
        # fit starts where the run stopped by itself: no initial_epoch needed
        initial_epoch = cb.resume(model).epoch
    rates = Rates()
    history = model.fit(
        X, Y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
        callbacks=[Script(VAL), cb, rates],
    )
    return {
        "cb": cb,
        "model": model,
        "initial_epoch": initial_epoch,
        "batch_rates": rates.rates,
        "epoch_rates": history.history["learning_rate"],
        "epochs": len(history.history["loss"]),
        "weights": model.get_weights(),
        "files": visible_files(directory),
    }


def test_warmup_cosine_plateau_stop_and_checkpoints_in_one_fit(tmp_path: Path) -> None:
    out = run(tmp_path)
    cb: tk.ControllerCallback = out["cb"]
    ctl = cb.controller
    s = schedule()
    rates = out["batch_rates"]
    # warmup then cosine, step by step, until the first plateau reduction (round 4 = epoch 3)
    for t in range(8):
        assert rates[t] == float(np.float32(s(t))), t
    reduced = [d.epoch for d in cb.decisions if d.lr_changed and any(
        r.event == "reduced_lr" for r in d.reasons)]
    assert reduced, [d.explain() for d in cb.decisions]
    # after the reduction the rate runs at half the schedule
    t = (reduced[0] + 1) * STEPS_PER_EPOCH
    assert rates[t] == pytest.approx(0.5 * s(t), rel=1e-6)
    # early stopping ended it; the best weights (epoch of val_loss 0.5, epoch 6) are back
    assert ctl.stopped and out["epochs"] < EPOCHS
    assert cb.decisions[-1].stop
    best = cb.model.get_weights()
    assert cb.best_weights is not None
    for a, b in zip(best, cb.best_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    # the store keeps the two best and last, plus the best weights for a resume
    kept = {c.name for c in ctl.states[2].kept}
    assert len(kept) == 2
    assert set(out["files"]) == kept | {"last.weights.h5", "trainctl-best.npz",
                                        "trainctl-manifest.json"}
    # History's learning_rate is the rate in use at each epoch end
    assert len(out["epoch_rates"]) == out["epochs"]


@pytest.mark.parametrize("interrupt_after", [3, 5])
def test_interrupted_fit_resumes_exactly(tmp_path: Path, interrupt_after: int) -> None:
    whole = run(tmp_path / "whole")
    first = run(tmp_path / "parts", epochs=interrupt_after)
    assert first["epochs"] == interrupt_after
    second = run(tmp_path / "parts", resume=True)
    assert second["initial_epoch"] == interrupt_after
    assert first["batch_rates"] + second["batch_rates"] == whole["batch_rates"]
    assert first["epoch_rates"] + second["epoch_rates"] == whole["epoch_rates"]
    assert first["epochs"] + second["epochs"] == whole["epochs"]
    assert second["files"] == whole["files"]
    whole_ctl, resumed = whole["cb"].controller, second["cb"].controller
    assert resumed.states == whole_ctl.states
    for a, b in zip(whole["weights"], second["weights"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_with_an_empty_store_starts_at_zero(tmp_path: Path) -> None:
    cb = tk.ControllerCallback(make_controller(), store=tmp_path)
    resumed = cb.resume(make_model())
    assert resumed.fresh and resumed.epoch == 0 and not resumed.stopped


def test_keras_schedule_in_the_optimizer_is_refused(tmp_path: Path) -> None:
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100)),
        loss="mse",
    )
    cb = tk.ControllerCallback(make_controller(), store=tmp_path)
    with pytest.raises(TypeError, match=r"Give the optimizer a float rate .*schedule=trainctl"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[cb])


def test_early_stopping_only_leaves_a_keras_schedule_alone() -> None:
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100)),
        loss="mse",
    )
    ctl = trainctl.Controller(trainctl.EarlyStopping("loss", patience=0))
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[tk.ControllerCallback(ctl)])
    assert ctl.rounds == 2


def test_bad_checkpoint_configurations(tmp_path: Path) -> None:
    pt = trainctl.Controller(trainctl.CheckpointPolicy("val_loss", extension=".pt"))
    with pytest.raises(ValueError, match=r"extension='\.weights\.h5'"):
        tk.ControllerCallback(pt, store=tmp_path)
    ok = trainctl.Controller(trainctl.CheckpointPolicy("val_loss", extension=".keras"))
    with pytest.raises(ValueError, match="pass store="):
        tk.ControllerCallback(ok)
    with pytest.raises(ValueError, match=r"'\.weights\.h5'"):
        tk.ControllerCallback(ok, store=tmp_path, save_weights_only=True)
    with pytest.raises(TypeError, match=r"must be a trainctl\.Controller"):
        tk.ControllerCallback(trainctl.EarlyStopping())  # type: ignore[arg-type]


def test_full_model_checkpoints_and_step_nan_guard(tmp_path: Path) -> None:
    """``.keras`` files through the store; TerminateOnNaN listens to batches."""
    ctl = trainctl.Controller(
        trainctl.TerminateOnNaN(),
        trainctl.CheckpointPolicy(None, filename="m{epoch}", extension=".keras", save_top_k=1),
    )
    model = make_model()
    cb = tk.ControllerCallback(ctl, store=tmp_path)
    model.fit(X, Y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[cb])
    assert ctl.optimizer_steps == 3 * STEPS_PER_EPOCH
    assert visible_files(tmp_path) == ["m3.keras", "trainctl-manifest.json"]
    # training over, the writer lock is released: another process (a resumed run) may write
    assert lock_is_free(tmp_path)
    loaded = keras.models.load_model(tmp_path / "m3.keras")
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_batch_work_without_step_policies() -> None:
    ctl = trainctl.Controller(trainctl.EarlyStopping("loss", patience=5))
    model = make_model()
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[tk.ControllerCallback(ctl)])
    assert ctl.optimizer_steps == 0 and ctl.rounds == 2


def test_plateau_without_schedule_matches_keras_rates() -> None:
    """A plateau-only controller sees Keras' float32 rate: the same rates as Keras' callback."""
    values = [1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9]
    runs = []
    for cb in (
        keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.3),
        tk.ControllerCallback(trainctl.Controller(
            trainctl.ReduceLROnPlateau(patience=1, factor=0.3, precision="float32"))),
    ):
        model = make_model()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = model.fit(X, Y, epochs=len(values), verbose=0, shuffle=False,
                          callbacks=[Script(values), cb])
        runs.append((h.history["learning_rate"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_protects_the_checkpoint_until_the_first_new_save(tmp_path: Path) -> None:
    run(tmp_path, epochs=3)
    cb = tk.ControllerCallback(make_controller(), store=tmp_path)
    model = make_model()
    resumed = cb.resume(model)
    assert resumed.checkpoint == "last.weights.h5" and resumed.epoch == 3
    assert cb.store is not None and cb.store.protected == {"last.weights.h5"}
    model.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
              callbacks=[Script(VAL), cb])
    assert cb.store.protected == frozenset()  # epoch 4 wrote a new checkpoint


def test_resuming_a_run_that_already_stopped_trains_nothing(tmp_path: Path) -> None:
    whole = run(tmp_path)
    assert whole["cb"].controller.stopped
    model = make_model()
    cb = tk.ControllerCallback(make_controller(), store=tmp_path)
    resumed = cb.resume(model)
    assert resumed.stopped
    rates = Rates()
    history = model.fit(X, Y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0,
                        callbacks=[Script(VAL), cb, rates])
    assert rates.rates == [] and not history.history.get("loss")  # not one batch trained
    # the end of training still restores the best weights, as the uninterrupted run did
    for a, b in zip(whole["weights"], model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_fresh_fit_into_another_runs_directory_is_refused(tmp_path: Path) -> None:
    from trainctl.effects import FreshRunError

    run(tmp_path, epochs=2)
    with pytest.raises(FreshRunError, match="already holds"):
        run(tmp_path, epochs=2)


# -- random states: a resumed fit with shuffling and dropout is exact ----------------------------


def _noisy_fit(directory: Path, epochs: int, extension: str, *, save_rng: bool, resume: bool
               ) -> list[float]:
    """A model with (unseeded) dropout, fit with shuffle=True; returns each epoch's val_loss."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    policy = trainctl.CheckpointPolicy(
        "val_loss", save_last=True, save_top_k=0, extension=extension
    )
    cb = tk.ControllerCallback(trainctl.Controller(policy), store=directory, save_rng=save_rng)
    if resume:
        model.optimizer.build(model.trainable_variables)
        assert cb.resume(model).epoch == 3
        keras.utils.set_random_seed(999)  # a new process would start from other random states
    history = model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x, y), verbose=0,
                        callbacks=[cb], shuffle=True)
    assert lock_is_free(directory)
    losses: list[float] = history.history["val_loss"]
    return losses


@pytest.mark.parametrize(
    ("extension", "save_rng"),
    [(".weights.h5", True), (".keras", True), (".weights.h5", False)],
)
def test_resume_is_bit_exact_with_dropout_and_shuffling(
    tmp_path: Path, extension: str, save_rng: bool
) -> None:
    """The random states travel inside each checkpoint file (a zip member of a ``.keras``, an
    attribute of an HDF5 file) and come back when the resumed fit begins; without them
    (``save_rng=False``) the batches and masks differ."""
    whole = _noisy_fit(tmp_path / "whole", 6, extension, save_rng=save_rng, resume=False)
    head = _noisy_fit(tmp_path / "split", 3, extension, save_rng=save_rng, resume=False)
    tail = _noisy_fit(tmp_path / "split", 6, extension, save_rng=save_rng, resume=True)
    assert head == whole[:3]
    if save_rng:
        assert tail == whole[3:]  # bit for bit
    else:
        assert tail != whole[3:]
    # Keras itself still loads the files that carry the states
    last = tmp_path / "split" / f"last{extension}"
    if extension == ".keras":
        keras.models.load_model(last)
    else:
        probe = keras.Sequential([
            keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.5), keras.layers.Dense(1),
        ])
        probe.load_weights(last)
