"""trainctl's Keras-rules policies against the real Keras 3 callbacks, side by side.

Each random stream drives a real ``keras.callbacks.EarlyStopping`` / ``ReduceLROnPlateau`` /
``TerminateOnNaN`` attached to a tiny compiled model (``set_model``, ``on_train_begin``, then one
``on_epoch_end(epoch, logs)`` per epoch, as ``fit`` calls them) and a ``trainctl.Controller`` with
the twin policy (``precision="float32"``, the same arguments). After every epoch both must agree on
what a user sees: whether training stops (and at which epoch), ``best``, ``wait``, which epoch's
weights are restored, and the learning rate (exact equality of the float32 value Keras holds).
Both are fed until the first stop, as ``fit`` would.

Keras hands callbacks Python floats (``pythonify_logs``); the streams are float32-representable
(``_streams.metric_stream(float32=True)``), with plateaus, exact ties, values exactly ``min_delta``
from the best and one float32 ulp either side, slow improvements, NaN, +inf, -inf and epochs where
the metric is absent. Keras stores the learning rate in a float32 variable and reads it back before
each reduction; the controller is told that value with ``step(..., lr=...)``.

Keras' worked examples (keras/src/callbacks/*_test.py, quoted in the shared reference keras.md)
are run beside trainctl too; their literal expectations are Keras' own.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
from _streams import DELTAS, FACTORS, Value, f32, metric_stream, pick, same_float
from hypothesis import given, settings
from hypothesis import strategies as st

import trainctl

keras = pytest.importorskip("keras")

N_ES_STREAMS = 3000
N_RLROP_STREAMS = 3000
N_NAN_STREAMS = 2000
SEED = 31337

# Keras 3.15's own np.array(variable) calls warn under NumPy 2 (not ours, and not what is tested)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

Mode = Literal["min", "max", "auto"]


@contextmanager
def quiet() -> Iterator[None]:
    """Both sides warn about absent metrics; the tests compare decisions, not warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def model() -> Any:
    """A tiny compiled model: the callbacks' ``self.model`` (weights, optimizer, stop flag)."""
    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    return m


def mark_weights(model: Any, epoch: int) -> None:
    """Make the model's weights name the epoch, so that a restore says which epoch it restored."""
    model.set_weights([np.full((1, 1), epoch, "float32"), np.zeros((1,), "float32")])


def weights_epoch(model: Any) -> int:
    return int(model.get_weights()[0][0, 0])


def as_logs(v: Value, key: str = "val_loss") -> dict[str, float]:
    return {} if v is None else {key: v}


# -- EarlyStopping -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ESConfig:
    mode: Mode
    min_delta: float
    patience: int
    baseline: float | None
    start_from_epoch: int
    restore_best_weights: bool
    monitor: str = "val_loss"

    def kwargs(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "baseline": self.baseline,
            "start_from_epoch": self.start_from_epoch,
            "restore_best_weights": self.restore_best_weights,
        }


@dataclass(frozen=True)
class ESOutcome:
    stop_epoch: int | None
    restored_epoch: int | None


def compare_es(model: Any, cfg: ESConfig, stream: Sequence[Value]) -> ESOutcome:
    """Feed ``stream`` to Keras and trainctl until the first stop; assert agreement every epoch."""
    cb = keras.callbacks.EarlyStopping(**cfg.kwargs())
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin()
    ctl = trainctl.Controller(trainctl.EarlyStopping(precision="float32", **cfg.kwargs()))
    where = f"{cfg} on {list(stream)!r}"
    stop_epoch = None
    d = None
    with quiet():
        for epoch, v in enumerate(stream):
            if cfg.restore_best_weights:
                mark_weights(model, epoch)
            cb.on_epoch_end(epoch, as_logs(v, cfg.monitor))
            d = ctl.step(as_logs(v, cfg.monitor))
            mine = d.details[0]
            at = f"epoch {epoch} (value {v!r}) of {where}"
            assert d.stop == model.stop_training, f"stop differs at {at}"
            assert mine.wait == cb.wait, f"wait {mine.wait} != Keras {cb.wait} at {at}"
            assert same_float(mine.best, cb.best), f"best {mine.best} != Keras {cb.best} at {at}"
            if mine.best_epoch is not None:
                assert mine.best_epoch == cb.best_epoch, f"best_epoch differs at {at}"
            if d.stop:
                assert cb.stopped_epoch == epoch, at
                stop_epoch = epoch
                break
        cb.on_train_end()
    # what ends training (this stop, or the end of the stream) says which weights come back
    end = d if d is not None and d.stop else ctl.finish()
    restored = (
        weights_epoch(model) if cfg.restore_best_weights and cb.best_weights is not None else None
    )
    assert end.restore_best == (restored is not None), f"restore differs: {where}"
    if restored is not None:
        assert end.details[0].best_epoch == restored, f"restored epoch differs: {where}"
    return ESOutcome(stop_epoch, restored)


def random_es_config(
    rng: np.random.Generator, stream: Sequence[Value], mode: Literal["min", "max"], delta: float
) -> ESConfig:
    """A configuration for ``stream`` (built for ``mode`` and ``delta``), often on an edge."""
    finite = [v for v in stream if v is not None and math.isfinite(v)]
    baseline = None
    if finite and rng.random() < 0.35:
        baseline = f32(pick(rng, finite) + pick(rng, [0.0, 0.0, delta, -delta]))
    return ESConfig(
        # "auto" on val_loss is "min" in both
        mode="auto" if mode == "min" and rng.random() < 0.2 else mode,
        min_delta=-delta if rng.random() < 0.1 else delta,  # both take abs(min_delta)
        patience=int(rng.choice([0, 0, 1, 2, 3, 5])),
        baseline=baseline,
        start_from_epoch=int(rng.choice([0, 0, 0, 1, 2, 5])),
        restore_best_weights=bool(rng.random() < 0.4),
    )


def test_early_stopping_random_streams(model: Any) -> None:
    """3,000 random streams: same stop epoch, best, wait, best epoch and restored weights."""
    rng = np.random.default_rng(SEED)
    stops = restores = 0
    for _ in range(N_ES_STREAMS):
        mode: Literal["min", "max"] = "min" if rng.random() < 0.5 else "max"
        delta = pick(rng, DELTAS)
        stream = metric_stream(
            rng,
            int(rng.integers(3, 40)),
            min_delta=delta,
            mode=mode,
            missing=bool(rng.random() < 0.2),
        )
        out = compare_es(model, random_es_config(rng, stream, mode, delta), stream)
        stops += out.stop_epoch is not None
        restores += out.restored_epoch is not None
    assert stops > N_ES_STREAMS // 3 and restores > N_ES_STREAMS // 10  # the streams do stop


def test_early_stopping_auto_mode_val_loss(model: Any) -> None:
    """mode="auto" on "val_loss": Keras minimises it, so does trainctl."""
    rng = np.random.default_rng(SEED + 1)
    for _ in range(200):
        stream = metric_stream(rng, 20, min_delta=0.1, mode="min")
        compare_es(model, ESConfig("auto", 0.1, int(rng.integers(0, 4)), None, 0, True), stream)


@pytest.mark.parametrize(
    ("monitor", "direction"),
    [("val_accuracy", "max"), ("val_auc", "max"), ("accuracy", "max"), ("val_loss", "min")],
)
def test_early_stopping_auto_mode_compiled_metrics(monitor: str, direction: str) -> None:
    """mode="auto": Keras reads the direction off the compiled metric, trainctl off the name."""
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy", "auc"])
    rng = np.random.default_rng(SEED + 5)
    m.evaluate(rng.random((4, 3)), np.eye(2)[[0, 1, 0, 1]], verbose=0)  # builds the metrics
    for _ in range(100):
        stream = metric_stream(rng, 15, min_delta=0.01, mode="max" if direction == "max" else "min")
        cfg = ESConfig("auto", 0.01, int(rng.integers(0, 3)), None, 0, False, monitor)
        compare_es(m, cfg, stream)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from([1.0, 0.9, 1.1, 0.5, math.nan, math.inf, -math.inf]),
            st.floats(min_value=-100, max_value=100, width=32),
            st.none(),
        ),
        min_size=1,
        max_size=30,
    ),
    mode=st.sampled_from(["min", "max"]),
    min_delta=st.sampled_from([0.0, 0.1, 0.5, 1e-3]),
    patience=st.integers(0, 4),
    baseline=st.one_of(st.none(), st.sampled_from([1.0, 0.5, 0.9])),
    start_from_epoch=st.integers(0, 3),
    restore=st.booleans(),
)
def test_early_stopping_hypothesis(
    model: Any,
    values: list[Value],
    mode: Mode,
    min_delta: float,
    patience: int,
    baseline: float | None,
    start_from_epoch: int,
    restore: bool,
) -> None:
    cfg = ESConfig(mode, min_delta, patience, baseline, start_from_epoch, restore)
    compare_es(model, cfg, values)


KERAS_PATIENCE_LOSSES = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]


@pytest.mark.parametrize(("patience", "keras_stopped_epoch"), [(0, 3), (1, 3), (2, 4), (3, 5)])
def test_keras_suite_patience_table(model: Any, patience: int, keras_stopped_epoch: int) -> None:
    """Keras' test_early_stopping_patience: Keras stops at epoch 3, 3, 4, 5; so does trainctl."""
    cfg = ESConfig("auto", 0.0, patience, None, 0, False)
    assert compare_es(model, cfg, KERAS_PATIENCE_LOSSES).stop_epoch == keras_stopped_epoch


@pytest.mark.parametrize(
    ("losses", "patience", "baseline", "stop_after", "keras_epochs", "keras_restored"),
    [
        ([0.2, 0.15, 0.1, 0.11, 0.12], 2, None, None, 5, 2),
        ([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], 5, 0.5, None, 5, 2),
        ([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], 5, 0.5, 3, 4, 2),  # another callback stops at 3
    ],
)
def test_keras_suite_restore_best_weights(
    model: Any,
    losses: list[float],
    patience: int,
    baseline: float | None,
    stop_after: int | None,
    keras_epochs: int,
    keras_restored: int,
) -> None:
    """early_stopping_test...restoring_model_weights: the same epochs trained, the same restore."""
    cfg = ESConfig("auto", 0.0, patience, baseline, 0, True)
    stream = losses if stop_after is None else losses[: stop_after + 1]
    out = compare_es(model, cfg, stream)
    trained = len(stream) if out.stop_epoch is None else out.stop_epoch + 1
    assert (trained, out.restored_epoch) == (keras_epochs, keras_restored)


# -- ReduceLROnPlateau -------------------------------------------------------------------------


@dataclass(frozen=True)
class RLConfig:
    mode: Mode
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_lr: float
    lr: float

    def kwargs(self) -> dict[str, Any]:
        return {
            "monitor": "val_loss",
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
        }


def compare_rlrop(model: Any, cfg: RLConfig, stream: Sequence[Value]) -> int:
    """Feed ``stream`` to Keras and trainctl; assert the same float32 rate after every epoch.

    Returns the number of reductions.
    """
    optimizer = model.optimizer
    optimizer.learning_rate = cfg.lr
    cb = keras.callbacks.ReduceLROnPlateau(**cfg.kwargs())
    cb.set_model(model)
    cb.on_train_begin()
    start = float(optimizer.learning_rate)
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau(precision="float32", **cfg.kwargs()), lr=start
    )
    where = f"{cfg} on {list(stream)!r}"
    reductions = 0
    with quiet():
        for epoch, v in enumerate(stream):
            held = float(optimizer.learning_rate)  # the float32 variable, read back
            d = ctl.step(as_logs(v), lr=held)
            cb.on_epoch_end(epoch, as_logs(v))
            theirs = float(optimizer.learning_rate)
            mine = d.details[0]
            at = f"epoch {epoch} (value {v!r}) of {where}"
            assert d.lr is not None and f32(d.lr) == theirs, (
                f"lr {d.lr!r} != Keras {theirs!r} at {at}"
            )
            assert (mine.wait, mine.cooldown_counter) == (cb.wait, cb.cooldown_counter), (
                f"(wait, cooldown) {(mine.wait, mine.cooldown_counter)} != Keras "
                f"{(cb.wait, cb.cooldown_counter)} at {at}"
            )
            assert same_float(mine.best, cb.best), f"best {mine.best} != Keras {cb.best} at {at}"
            reductions += theirs != held
    return reductions


def random_rl_config(rng: np.random.Generator) -> RLConfig:
    factor = pick(rng, FACTORS)
    lr = pick(rng, [0.1, 0.01, 1e-3, 0.3, 1.0, float(10 ** rng.uniform(-5, 0))])
    k = int(rng.integers(1, 5))
    chain = float(np.float32(lr))
    for _ in range(k):
        chain = f32(chain * factor)  # what Keras' float32 variable holds after k reductions
    min_lr = pick(
        rng, [0.0, 0.0, lr * factor**k, chain, lr, 2 * lr, 1e-4, lr * factor ** (k + 0.5)]
    )
    return RLConfig(
        mode="min" if rng.random() < 0.5 else "max",
        factor=factor,
        patience=int(rng.choice([0, 1, 1, 2, 3, 5])),
        min_delta=pick(rng, [*DELTAS, 1e-4]) * (-1.0 if rng.random() < 0.1 else 1.0),  # abs()
        cooldown=int(rng.choice([0, 0, 1, 2, 4])),
        min_lr=min_lr,
        lr=lr,
    )


def test_reduce_lr_random_streams(model: Any) -> None:
    """3,000 random configurations x streams: the same float32 rate after every epoch."""
    rng = np.random.default_rng(SEED + 2)
    reductions = 0
    for _ in range(N_RLROP_STREAMS):
        cfg = random_rl_config(rng)
        assert cfg.mode != "auto"
        stream = metric_stream(
            rng,
            int(rng.integers(3, 40)),
            min_delta=cfg.min_delta,
            mode=cfg.mode,
            missing=bool(rng.random() < 0.2),
        )
        reductions += compare_rlrop(model, cfg, stream)
    assert reductions > N_RLROP_STREAMS


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from([1.0, 0.9, 1.1, 0.5, math.nan, math.inf, -math.inf]),
            st.floats(min_value=-100, max_value=100, width=32),
            st.none(),
        ),
        min_size=1,
        max_size=30,
    ),
    mode=st.sampled_from(["min", "max"]),
    factor=st.sampled_from([0.1, 0.5, 0.3]),
    patience=st.integers(0, 3),
    min_delta=st.sampled_from([0.0, 1e-4, 0.1, 0.5]),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 1e-3, 0.001 * 0.1, 0.05]),
    lr=st.sampled_from([0.1, 0.01, 0.3]),
)
def test_reduce_lr_hypothesis(
    model: Any,
    values: list[Value],
    mode: Mode,
    factor: float,
    patience: int,
    min_delta: float,
    cooldown: int,
    min_lr: float,
    lr: float,
) -> None:
    compare_rlrop(model, RLConfig(mode, factor, patience, min_delta, cooldown, min_lr, lr), values)


class _TwinBefore(keras.callbacks.Callback):  # type: ignore[misc]
    """Inside ``fit``, before Keras' ReduceLROnPlateau: step the controller on the same logs."""

    def __init__(self, ctl: trainctl.Controller) -> None:
        super().__init__()
        self.ctl = ctl
        self.decisions: list[trainctl.Decision] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        held = float(self.model.optimizer.learning_rate)
        self.decisions.append(self.ctl.step({"val_loss": (logs or {})["val_loss"]}, lr=held))


class _CheckAfter(keras.callbacks.Callback):  # type: ignore[misc]
    """After Keras' ReduceLROnPlateau: record (trainctl's rate as float32, Keras' rate)."""

    def __init__(self, twin: _TwinBefore) -> None:
        super().__init__()
        self.twin = twin
        self.pairs: list[tuple[float, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lr = self.twin.decisions[-1].lr
        assert isinstance(lr, float)
        self.pairs.append((f32(lr), float(self.model.optimizer.learning_rate)))


@pytest.mark.parametrize(
    ("kwargs", "epochs", "keras_lr"),
    [
        ({"patience": 1, "factor": 0.1, "min_delta": 100}, 2, 0.01),
        ({"patience": 1, "factor": 0.1, "min_delta": 10, "min_lr": 0.005}, 4, 0.005),
        ({"patience": 1, "factor": 0.1, "min_delta": 100, "cooldown": 2}, 4, 0.001),
    ],
    ids=["reduces", "honors_min_lr", "cooldown"],
)
def test_keras_suite_reduce_lr_in_fit(kwargs: dict[str, Any], epochs: int, keras_lr: float) -> None:
    """reduce_lr_on_plateau_test: Adam(0.1), a real ``fit``, trainctl stepped beside Keras in it."""
    rng = np.random.RandomState(1337)
    x, y = rng.random_sample((10, 3)), np.eye(2)[rng.randint(0, 2, 10)]
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5), keras.layers.Dense(2)])
    m.compile(loss="mse", optimizer=keras.optimizers.Adam(0.1))
    policy = trainctl.ReduceLROnPlateau("val_loss", precision="float32", **kwargs)
    twin = _TwinBefore(trainctl.Controller(policy, lr=0.1))
    check = _CheckAfter(twin)
    keras_cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **kwargs)
    m.fit(x, y, validation_data=(x, y), epochs=epochs, verbose=0, callbacks=[twin, keras_cb, check])
    assert len(check.pairs) == epochs
    for ours, theirs in check.pairs:
        assert ours == theirs
    # Keras' own expectation (assertEqual / assertAllClose on the float32 variable)
    assert float(m.optimizer.learning_rate) == pytest.approx(keras_lr, rel=1e-6)


# -- TerminateOnNaN ----------------------------------------------------------------------------


def compare_terminate_on_nan(model: Any, losses: Sequence[Value]) -> int | None:
    """Batch losses to Keras' TerminateOnNaN and to the controller; the same stop batch."""
    cb = keras.callbacks.TerminateOnNaN()
    cb.set_model(model)
    model.stop_training = False
    ctl = trainctl.Controller(trainctl.TerminateOnNaN())
    for batch, v in enumerate(losses):
        logs = as_logs(v, "loss")
        cb.on_train_batch_end(batch, dict(logs))  # what fit calls; it delegates to on_batch_end
        d = ctl.optimizer_step(logs)
        assert d.stop == model.stop_training, f"batch {batch} (loss {v!r}) of {list(losses)!r}"
        if d.stop:
            return batch
    return None


def test_terminate_on_nan_random_streams(model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """2,000 streams of batch losses with rare NaN / +inf / -inf / huge / absent values."""
    rng = np.random.default_rng(SEED + 3)
    stops = 0
    for _ in range(N_NAN_STREAMS):
        n = int(rng.integers(1, 80))
        losses: list[Value] = [f32(x) for x in rng.lognormal(0, 2, size=n)]
        for j in rng.choice(n, size=min(n, int(rng.integers(0, 3))), replace=False):
            losses[int(j)] = (
                pick(rng, [math.nan, math.inf, -math.inf, 3.4028234663852886e38, -1.0, 0.0])
                if rng.random() < 0.8
                else None
            )
        stops += compare_terminate_on_nan(model, losses) is not None
    capsys.readouterr()  # Keras prints "Batch i: Invalid loss, terminating training"
    assert stops > N_NAN_STREAMS // 4
