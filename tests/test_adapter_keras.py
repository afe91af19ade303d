"""The Keras drop-ins beside the real Keras callbacks, in real ``model.fit`` runs.

Every test trains the same tiny model twice from the same seed, once with ``keras.callbacks.X``
and once with ``trainctl.adapters.keras.X`` built from the same arguments, and compares what a
user sees: the epochs trained, History (``learning_rate`` included), the stop epoch, the restored
weights and the files on disk. Metric streams are scripted: a callback placed first writes the
chosen ``val_loss`` (or batch ``loss``) into the logs, so plateaus, ties, NaN and absent values
happen exactly where the stream says (``tests/_streams.py``). Expectations come from Keras.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _streams import metric_stream

keras = pytest.importorskip("keras")

from trainctl.adapters import keras as tk  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

NAN, INF = math.nan, math.inf
X = np.linspace(-1, 1, 48, dtype="float32").reshape(16, 3)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], "float32")) + 0.1


class Script(keras.callbacks.Callback):  # type: ignore[misc]
    """Placed first: writes scripted values into the logs the later callbacks see."""

    def __init__(
        self,
        epoch_values: Sequence[float | None] = (),
        key: str = "val_loss",
        batch_losses: dict[int, float] | None = None,
    ) -> None:
        super().__init__()
        self.values, self.key, self.batch_losses = list(epoch_values), key, batch_losses or {}
        self.steps = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self.steps in self.batch_losses:
            logs["loss"] = self.batch_losses[self.steps]
        self.steps += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or epoch >= len(self.values):
            return
        value = self.values[epoch]
        if value is None:
            logs.pop(self.key, None)
        else:
            logs[self.key] = value


def make_model(lr: float = 0.05, metrics: Sequence[str] = ()) -> Any:
    keras.utils.set_random_seed(1234)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse",
                  metrics=list(metrics))
    return model


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fit(
    callback: Any,
    values: Sequence[float | None] = (),
    *,
    epochs: int | None = None,
    lr: float = 0.05,
    batch_losses: dict[int, float] | None = None,
    before: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    model = make_model(lr)
    callback.set_model(model)
    if before is not None:
        before(callback)
    with quiet():
        history = model.fit(
            X, Y, batch_size=8, epochs=epochs or len(values), shuffle=False, verbose=0,
            callbacks=[Script(values, batch_losses=batch_losses), callback],
        )
    return {
        "epochs": len(history.history["loss"]),
        "lr": history.history.get("learning_rate"),
        "final_lr": float(model.optimizer.learning_rate),
        "weights": model.get_weights(),
        "stop": bool(model.stop_training),
    }


def assert_same(theirs: dict[str, Any], ours: dict[str, Any], where: str) -> None:
    assert ours["epochs"] == theirs["epochs"], where
    assert ours["lr"] == theirs["lr"], where
    assert ours["final_lr"] == theirs["final_lr"], where
    assert ours["stop"] == theirs["stop"], where
    for a, b in zip(theirs["weights"], ours["weights"], strict=True):
        np.testing.assert_array_equal(a, b, err_msg=where)


def streams(n: int, length: int, seed: int, *, missing: bool = True) -> list[list[float | None]]:
    rng = np.random.default_rng(seed)
    return [metric_stream(rng, length, min_delta=0.01, missing=missing) for _ in range(n)]


HAND_MADE: list[list[float | None]] = [
    [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8],  # plateaus and ties
    [1.0, NAN, 0.5, 0.4, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8],  # NaN inside
    [NAN, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1],  # NaN first: becomes best
    [0.9, None, 0.8, None, 0.85, None, 0.86, None, 0.87, 0.88],  # validation_freq=2-like
    [0.5, 0.49, 0.48, 0.47, 0.46, 0.45, 0.44, 0.43, 0.42, 0.41],  # slow improvement
]
STREAMS = HAND_MADE + streams(3, 10, seed=7)


# -- EarlyStopping ------------------------------------------------------------------------------

ES_CONFIGS: list[dict[str, Any]] = [
    {"patience": 0},
    {"patience": 2, "restore_best_weights": True},
    {"patience": 3, "min_delta": 0.05, "restore_best_weights": True},
    {"patience": 2, "baseline": 0.45, "restore_best_weights": True},
    {"patience": 1, "start_from_epoch": 3, "restore_best_weights": True},
    {"patience": 2, "mode": "max"},
]


@pytest.mark.parametrize("values", STREAMS, ids=[f"s{i}" for i in range(len(STREAMS))])
@pytest.mark.parametrize("kwargs", ES_CONFIGS, ids=[str(c) for c in ES_CONFIGS])
def test_early_stopping_in_fit(values: list[float | None], kwargs: dict[str, Any]) -> None:
    theirs_cb = keras.callbacks.EarlyStopping(**kwargs)
    ours_cb = tk.EarlyStopping(**kwargs)
    theirs, ours = fit(theirs_cb, values), fit(ours_cb, values)
    assert_same(theirs, ours, f"{kwargs} on {values}")
    assert ours_cb.stopped_epoch == theirs_cb.stopped_epoch
    assert ours_cb.wait == theirs_cb.wait
    if kwargs.get("restore_best_weights") and theirs_cb.best_weights is not None:
        assert ours_cb.best_epoch == theirs_cb.best_epoch


def test_early_stopping_is_reset_between_fits() -> None:
    values = [1.0, 0.5, 0.6, 0.7, 0.8]
    for cls in (keras.callbacks.EarlyStopping, tk.EarlyStopping):
        cb = cls(patience=1)
        first, second = fit(cb, values), fit(cb, values)
        assert first["epochs"] == second["epochs"] == 3


def test_early_stopping_docstring_example() -> None:
    """Keras' docstring: patience=3 on 'loss' stops after 4 epochs; ours too."""
    out = []
    for cls in (keras.callbacks.EarlyStopping, tk.EarlyStopping):
        keras.utils.set_random_seed(0)
        callback = cls(monitor="loss", patience=3)
        model = keras.models.Sequential([keras.layers.Dense(10)])
        model.compile(keras.optimizers.SGD(), loss="mse")
        history = model.fit(np.arange(100).reshape(5, 20), np.zeros(5), epochs=10,
                            batch_size=1, callbacks=[callback], verbose=0)
        out.append(len(history.history["loss"]))
    assert out == [4, 4]


def test_early_stopping_explains_and_exposes_the_core() -> None:
    cb = tk.EarlyStopping(patience=1, mode="min")
    fit(cb, [1.0, 1.1, 1.2, 1.3])
    assert cb.last_decision is not None and cb.last_decision.stop
    assert "patience" in cb.last_decision.explain()
    assert cb.controller is not None and cb.policy is not None and cb.policy.patience == 1


def test_early_stopping_verbose_messages(capsys: pytest.CaptureFixture[str]) -> None:
    values = [1.0, 0.5, 0.6, 0.7, 0.8]
    kwargs = {"patience": 1, "verbose": 1, "restore_best_weights": True}
    fit(keras.callbacks.EarlyStopping(**kwargs), values)
    theirs = capsys.readouterr().out
    fit(tk.EarlyStopping(**kwargs), values)
    ours = capsys.readouterr().out
    assert "Epoch 3: early stopping" in theirs
    assert ours == theirs


def test_auto_mode_reads_compiled_metric_direction() -> None:
    """mode='auto' on val_accuracy maximises (the metric's _direction), as Keras does."""
    values = [0.5, 0.6, 0.7, 0.65, 0.66, 0.67, 0.68]
    results = []
    for cls in (keras.callbacks.EarlyStopping, tk.EarlyStopping):
        model = make_model(metrics=["accuracy"])
        cb = cls(monitor="val_accuracy", patience=2)
        with quiet():
            h = model.fit(X, Y, epochs=len(values), verbose=0, shuffle=False, batch_size=8,
                          callbacks=[Script(values, key="val_accuracy"), cb])
        results.append(len(h.history["loss"]))
    assert results[0] == results[1] == 5  # "min" would stop after 3


def test_auto_mode_unknown_metric_raises_like_keras() -> None:
    for cls in (keras.callbacks.EarlyStopping, tk.EarlyStopping):
        with pytest.raises(ValueError, match="isn't able to automatically determine"):
            fit(cls(monitor="val_mystery"), [1.0, 2.0])


def test_unknown_mode_warns_and_falls_back_to_auto() -> None:
    for cls in (keras.callbacks.EarlyStopping, tk.EarlyStopping, keras.callbacks.ReduceLROnPlateau,
                tk.ReduceLROnPlateau):
        with pytest.warns(UserWarning, match="mode 'sideways' is unknown, fallback to auto mode"):
            cb = cls(mode="sideways")
        assert cb.mode == "auto"


def test_missing_metric_warns_each_epoch_like_keras() -> None:
    for cls, text in ((tk.EarlyStopping, "Early stopping conditioned on metric `val_loss`"),
                      (tk.ReduceLROnPlateau, "Learning rate reduction is conditioned on metric")):
        model = make_model()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, Y, epochs=3, verbose=0, callbacks=[cls(mode="min")])
        assert sum(text in str(w.message) for w in caught) == 3


# -- ReduceLROnPlateau --------------------------------------------------------------------------

RL_CONFIGS: list[dict[str, Any]] = [
    {"patience": 1, "factor": 0.5},
    {"patience": 2, "factor": 0.1, "min_lr": 0.001, "cooldown": 1},
    {"patience": 0, "factor": 0.3, "min_delta": 0.05, "min_lr": 0.004},
    {"patience": 1, "factor": 0.0, "min_lr": 0.01},  # Keras accepts factor 0
    {"patience": 1, "factor": 0.5, "cooldown": 2, "mode": "max"},
]


@pytest.mark.parametrize("values", STREAMS, ids=[f"s{i}" for i in range(len(STREAMS))])
@pytest.mark.parametrize("kwargs", RL_CONFIGS, ids=[str(c) for c in RL_CONFIGS])
def test_reduce_lr_in_fit(values: list[float | None], kwargs: dict[str, Any]) -> None:
    theirs_cb = keras.callbacks.ReduceLROnPlateau(**kwargs)
    ours_cb = tk.ReduceLROnPlateau(**kwargs)
    theirs, ours = fit(theirs_cb, values), fit(ours_cb, values)
    assert_same(theirs, ours, f"{kwargs} on {values}")
    assert (ours_cb.wait, ours_cb.cooldown_counter) == (theirs_cb.wait, theirs_cb.cooldown_counter)


@pytest.mark.parametrize("factor", [0.0, -0.5, 0.5])
def test_reduce_lr_decision_reports_the_rate_really_set(factor: float) -> None:
    # factor <= 0 is decided by the core with a stand-in factor; the decision must still tell
    # the truth about the rate the optimizer got (Keras': max(lr * factor, min_lr))
    theirs_cb = keras.callbacks.ReduceLROnPlateau(patience=1, factor=factor, min_lr=0.01)
    ours_cb = tk.ReduceLROnPlateau(patience=1, factor=factor, min_lr=0.01)
    theirs, ours = fit(theirs_cb, [1.0, 1.0]), fit(ours_cb, [1.0, 1.0])  # reduced at epoch 1
    assert_same(theirs, ours, f"factor={factor}")
    d = ours_cb.last_decision
    assert d is not None and d.lr_changed
    assert d.lr == pytest.approx(ours["final_lr"], rel=1e-6) and ours["final_lr"] < 0.05


@pytest.mark.parametrize(
    ("kwargs", "epochs"),
    [
        ({"patience": 1, "factor": 0.1, "min_delta": 100}, 2),
        ({"patience": 1, "factor": 0.1, "min_delta": 10, "min_lr": 0.005}, 4),
        ({"patience": 1, "factor": 0.1, "min_delta": 100, "cooldown": 2}, 4),
    ],
)
def test_keras_suite_reduce_lr(kwargs: dict[str, Any], epochs: int) -> None:
    """reduce_lr_on_plateau_test: Adam(0.1) on real val_loss; the same rate as Keras each epoch."""
    rates = []
    for cls in (keras.callbacks.ReduceLROnPlateau, tk.ReduceLROnPlateau):
        keras.utils.set_random_seed(1337)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5), keras.layers.Dense(2)])
        m.compile(loss="mse", optimizer=keras.optimizers.Adam(0.1))
        x, y = X[:10], np.eye(2, dtype="float32")[[0, 1] * 5]
        h = m.fit(x, y, validation_data=(x, y), epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[cls(monitor="val_loss", **kwargs)])
        rates.append((h.history["learning_rate"], float(m.optimizer.learning_rate)))
    assert rates[0] == rates[1]


def test_reduce_lr_verbose_message(capsys: pytest.CaptureFixture[str]) -> None:
    values = [1.0, 1.0, 1.0, 1.0]
    fit(keras.callbacks.ReduceLROnPlateau(patience=1, verbose=1), values)
    theirs = capsys.readouterr().out
    fit(tk.ReduceLROnPlateau(patience=1, verbose=1), values)
    assert "ReduceLROnPlateau reducing learning rate to" in theirs
    assert capsys.readouterr().out == theirs


def test_reduce_lr_validation() -> None:
    for cls in (keras.callbacks.ReduceLROnPlateau, tk.ReduceLROnPlateau):
        with pytest.raises(ValueError, match=r"does not support a factor >= 1\.0\. Received"):
            cls(factor=1.0)
    tk.ReduceLROnPlateau(factor=-0.5)  # Keras accepts it; so do we


def test_reduce_lr_with_a_keras_schedule_fails_like_keras() -> None:
    """Keras refuses to lower a rate a LearningRateSchedule owns (tf#36612); so does the drop-in."""
    errors = []
    for cls in (keras.callbacks.ReduceLROnPlateau, tk.ReduceLROnPlateau):
        model = make_model()
        model.compile(optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), loss="mse")
        with pytest.raises(TypeError) as info, quiet():
            model.fit(X, Y, epochs=3, verbose=0,
                      callbacks=[Script([1.0, 1.0, 1.0]), cls(patience=0)])
        errors.append(str(info.value))
    assert errors[0] == errors[1]


# -- ModelCheckpoint ----------------------------------------------------------------------------

MC_CONFIGS: list[dict[str, Any]] = [
    {"save_best_only": True},
    {"save_best_only": True, "initial_value_threshold": 0.45},
    {"save_best_only": False},
    {"save_best_only": True, "mode": "max"},
]


def _checkpoint_run(
    cls: Any, directory: Path, template: str, values: Sequence[float | None], **kwargs: Any
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    directory.mkdir()
    cb = cls(str(directory / template), save_weights_only=True, **kwargs)

    def before(callback: Any) -> None:
        if isinstance(callback, keras.callbacks.ModelCheckpoint) and kwargs.get("save_freq"):
            callback._set_monitor_op()  # Keras 3.15 bug workaround (see test_checkpoint_parity)

    out = fit(cb, values, epochs=len(values), before=before)
    files = {}
    probe = make_model()
    for name in sorted(os.listdir(directory)):
        probe.load_weights(str(directory / name))
        files[name] = probe.get_weights()
    return out, files


@pytest.mark.parametrize("values", STREAMS[:6], ids=[f"s{i}" for i in range(6)])
@pytest.mark.parametrize("kwargs", MC_CONFIGS, ids=[str(c) for c in MC_CONFIGS])
def test_model_checkpoint_same_files(
    tmp_path: Path, values: list[float | None], kwargs: dict[str, Any]
) -> None:
    template = "w{epoch:02d}.weights.h5"
    theirs, their_files = _checkpoint_run(
        keras.callbacks.ModelCheckpoint, tmp_path / "k", template, values, **kwargs)
    ours, our_files = _checkpoint_run(
        tk.ModelCheckpoint, tmp_path / "t", template, values, **kwargs)
    assert sorted(our_files) == sorted(their_files)
    for name, weights in their_files.items():
        for a, b in zip(weights, our_files[name], strict=True):
            np.testing.assert_array_equal(a, b)
    assert_same(theirs, ours, str(values))


@pytest.mark.parametrize("save_freq", [1, 3, 5])
@pytest.mark.parametrize("best_only", [True, False])
def test_model_checkpoint_integer_save_freq(
    tmp_path: Path, save_freq: int, best_only: bool
) -> None:
    template = "e{epoch:02d}-b{batch:02d}-{loss:.4f}.weights.h5"
    values = [1.0, 0.9, 0.8, 0.85]
    kwargs = {"save_freq": save_freq, "save_best_only": best_only, "monitor": "loss"}
    _, their_files = _checkpoint_run(
        keras.callbacks.ModelCheckpoint, tmp_path / "k", template, values, **kwargs)
    _, our_files = _checkpoint_run(tk.ModelCheckpoint, tmp_path / "t", template, values, **kwargs)
    assert sorted(our_files) == sorted(their_files) and their_files


def test_model_checkpoint_full_model_and_name_with_metric(tmp_path: Path) -> None:
    template = "m{epoch:03d}-{val_loss:.3f}.keras"
    values = [0.5, 0.4, 0.45, 0.3]
    for cls, sub in ((keras.callbacks.ModelCheckpoint, "k"), (tk.ModelCheckpoint, "t")):
        fit(cls(str(tmp_path / sub / template), save_best_only=True), values)
    assert sorted(os.listdir(tmp_path / "t")) == sorted(os.listdir(tmp_path / "k"))
    assert sorted(os.listdir(tmp_path / "t")) == [
        "m001-0.500.keras", "m002-0.400.keras", "m004-0.300.keras"]


def test_model_checkpoint_keeps_best_across_fits(tmp_path: Path) -> None:
    for cls, sub in ((keras.callbacks.ModelCheckpoint, "k"), (tk.ModelCheckpoint, "t")):
        cb = cls(str(tmp_path / sub / "{epoch}-{val_loss}.weights.h5"), save_best_only=True,
                 save_weights_only=True)
        fit(cb, [0.5, 0.4])
        fit(cb, [0.45, 0.3])
    assert sorted(os.listdir(tmp_path / "t")) == sorted(os.listdir(tmp_path / "k"))


def test_model_checkpoint_validation_and_missing_field(tmp_path: Path) -> None:
    for cls in (keras.callbacks.ModelCheckpoint, tk.ModelCheckpoint):
        with pytest.raises(ValueError, match="Unrecognized save_freq"):
            cls(str(tmp_path / "a.keras"), save_freq="batch")
        with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
            cls(str(tmp_path / "a.keras"), save_weights_only=True)
        with pytest.raises(ValueError, match=r"must end in `.keras`"):
            cls(str(tmp_path / "a.ckpt"))
        with pytest.raises(KeyError, match="Failed to format this callback filepath"):
            fit(cls(str(tmp_path / "{nope}.weights.h5"), save_weights_only=True), [1.0])


def test_model_checkpoint_missing_monitor_saves_and_warns(tmp_path: Path) -> None:
    for cls, sub in ((keras.callbacks.ModelCheckpoint, "k"), (tk.ModelCheckpoint, "t")):
        model = make_model()
        cb = cls(str(tmp_path / sub / "{epoch}.weights.h5"), save_best_only=True,
                 save_weights_only=True)
        with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
            model.fit(X, Y, epochs=2, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(tmp_path / "t")) == sorted(os.listdir(tmp_path / "k"))


def test_model_checkpoint_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = [0.5, 0.6, 0.4]
    outs = []
    for cls in (keras.callbacks.ModelCheckpoint, tk.ModelCheckpoint):
        fit(cls(str(tmp_path / "{epoch}.weights.h5"), save_best_only=True, verbose=1,
                save_weights_only=True), values)
        outs.append(capsys.readouterr().out)
    assert "improved from 0.50000 to 0.40000" in outs[0]
    assert outs[0] == outs[1]


# -- TerminateOnNaN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_losses", [{}, {3: NAN}, {0: INF}, {5: -INF, 6: NAN}], ids=["none", "nan", "inf", "-inf"]
)
def test_terminate_on_nan_in_fit(
    batch_losses: dict[int, float], capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = fit(keras.callbacks.TerminateOnNaN(), epochs=5, batch_losses=batch_losses)
    their_out = capsys.readouterr().out
    ours = fit(tk.TerminateOnNaN(), epochs=5, batch_losses=batch_losses)
    assert_same(theirs, ours, str(batch_losses))
    assert capsys.readouterr().out == their_out


def test_terminate_on_nan_raise_error() -> None:
    for cls in (keras.callbacks.TerminateOnNaN, tk.TerminateOnNaN):
        with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
            fit(cls(raise_error=True), epochs=2, batch_losses={1: NAN})


# -- LearningRateScheduler ----------------------------------------------------------------------


def _scheduler(epoch: int, lr: float) -> float:
    """Keras' docstring scheduler (with math.exp: a tensor is not a float)."""
    return lr if epoch < 10 else lr * math.exp(-0.1)


@pytest.mark.parametrize(
    "schedule",
    [_scheduler, lambda epoch: 0.1 / (epoch + 1), lambda epoch, lr: np.float32(lr * 0.9)],
    ids=["docstring", "one_arg", "float32"],
)
def test_learning_rate_scheduler_in_fit(schedule: Callable[..., Any]) -> None:
    theirs = fit(keras.callbacks.LearningRateScheduler(schedule), epochs=15)
    ours = fit(tk.LearningRateScheduler(schedule), epochs=15)
    assert_same(theirs, ours, "")


def test_learning_rate_scheduler_docstring_example() -> None:
    """Keras' docstring: SGD's 0.01, 15 epochs -> round(lr, 5) == 0.00607."""
    out = []
    for cls in (keras.callbacks.LearningRateScheduler, tk.LearningRateScheduler):
        model = keras.models.Sequential([keras.layers.Dense(10)])
        model.compile(keras.optimizers.SGD(), loss="mse")
        model.fit(np.arange(100).reshape(5, 20), np.zeros((5, 10)), epochs=15,
                  callbacks=[cls(_scheduler)], verbose=0)
        out.append(round(float(model.optimizer.learning_rate), 5))
    assert out == [0.00607, 0.00607]


def test_learning_rate_scheduler_rejects_non_float() -> None:
    for cls in (keras.callbacks.LearningRateScheduler, tk.LearningRateScheduler):
        with pytest.raises(ValueError, match="should be a float"):
            fit(cls(lambda epoch, lr: "fast"), epochs=1)


def test_learning_rate_scheduler_and_plateau_together() -> None:
    """The scheduler reads the rate a plateau lowered: both pairs agree epoch by epoch."""
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    runs = []
    for mod in (keras.callbacks, tk):
        cbs = [mod.LearningRateScheduler(lambda e, lr: lr * 0.9),
               mod.ReduceLROnPlateau(patience=1, factor=0.5)]
        model = make_model()
        with quiet():
            h = model.fit(X, Y, epochs=len(values), verbose=0, shuffle=False,
                          callbacks=[Script(values), *cbs])
        runs.append(h.history["learning_rate"])
    assert runs[0] == runs[1]
