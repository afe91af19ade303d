"""Keras' public callback attributes on the drop-ins: present, equal, and writable into the core.

Keras' ``EarlyStopping``, ``ReduceLROnPlateau`` and ``ModelCheckpoint`` keep their state and their
configuration in plain attributes that they read at every epoch end, so user code (and Keras' own
tests) assign them: ``es.wait = 3``, ``es.patience = 5``, ``cb.best = None``, ``cb.monitor_op =
ops.greater``. Each test here drives a Keras callback and its drop-in by hand, as ``fit`` calls
them, makes the same assignments to both between epochs, and compares after every epoch what a
user sees: the stop request, the learning rate, the files written, and every public attribute of
Keras' instance. ``model.stop_training`` is cleared before each epoch, so that epochs after a stop
are compared too (a Keras stop is not final).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from trainctl.adapters import keras as tk  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

#: an epoch's monitored value, or an assignment ``(name, value)`` made to both callbacks before
#: the next epoch (a :class:`PerSide` value differs between the two)
Step = float | tuple[str, Any]
SIDES = ("keras", "ours")


class PerSide:
    """A value to assign that depends on the side ("keras" or "ours"), e.g. a directory."""

    def __init__(self, value: Callable[[str], Any]) -> None:
        self.value = value


def make_model() -> Any:
    keras.utils.set_random_seed(7)  # both sides start from the same weights
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse",
                  metrics=["accuracy"])
    return model


def public(cb: Any) -> dict[str, Any]:
    """Keras' public instance attributes (its configuration and its state)."""
    return {k: v for k, v in vars(cb).items() if not k.startswith("_")}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list):  # weights
        return isinstance(b, list) and len(a) == len(b) and all(
            np.array_equal(x, y) for x, y in zip(a, b, strict=True)
        )
    return bool(a == b)


def assert_attributes_match(
    theirs: Any, ours: Any, where: str, per_side: frozenset[str] = frozenset()
) -> None:
    for name, value in public(theirs).items():
        if name in ("model", "params", "validation_data") or name in per_side:
            continue  # the model, or a value given per side (compared by its effects)
        assert hasattr(ours, name), (where, name)
        if name == "min_delta":
            # Keras negates its stored value when the direction resolves to "min"; the drop-ins
            # keep the value given (the core applies Keras' rule, abs(min_delta), either way)
            assert abs(ours.min_delta) == abs(value), (where, name)
            continue
        assert same(value, getattr(ours, name)), (where, name, value, getattr(ours, name))


def drive(
    name: str,
    kwargs: Callable[[str], dict[str, Any]],
    steps: Sequence[Step],
    *,
    monitor: str = "loss",
    read: Callable[[str, Any], Any] = lambda side, model: None,
) -> tuple[Any, Any]:
    """Run Keras' callback ``name`` and its drop-in side by side over ``steps``."""
    args = [kwargs(side) for side in SIDES]
    pair = (getattr(keras.callbacks, name)(**args[0]), getattr(tk, name)(**args[1]))
    per_side = frozenset(k for k in args[0] if args[0][k] != args[1][k])
    models = [make_model(), make_model()]
    for cb, model in zip(pair, models, strict=True):
        cb.set_model(model)
        cb.on_train_begin()
    assert_attributes_match(*pair, "after on_train_begin", per_side)
    assert pair[0].monitor_op is None and pair[1].monitor_op is None  # set at an epoch end
    epoch = 0
    for i, step in enumerate(steps):
        where = f"step {i} ({step!r}) of {steps}"
        if isinstance(step, tuple):
            attr, value = step
            for side, cb in zip(SIDES, pair, strict=True):
                setattr(cb, attr, value.value(side) if isinstance(value, PerSide) else value)
            assert_attributes_match(*pair, where, per_side)
            continue
        seen = []
        for side, cb, model in zip(SIDES, pair, models, strict=True):
            model.stop_training = False
            cb.on_epoch_begin(epoch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras' missing-metric warnings, on both
                cb.on_epoch_end(epoch, {monitor: step})
            seen.append((model.stop_training, read(side, model)))
        assert seen[1] == seen[0], where
        assert_attributes_match(*pair, where, per_side)
        epoch += 1
    return pair


def test_early_stopping_state_and_configuration_writes() -> None:
    _, ours = drive(
        "EarlyStopping",
        lambda side: {"monitor": "loss", "patience": 2, "mode": "min"},
        [
            1.0, 0.9, 0.95,
            ("patience", 1), 0.96,  # stops: wait 2 >= 1
            0.8,  # an epoch after a stop is evaluated: a new best, no stop
            ("wait", 5), 0.85,  # stops at once
            ("best", 0.5), 0.6,
            ("stopped_epoch", 7), 0.4,  # only a record: an improvement does not stop
            ("monitor_op", keras.ops.greater), 0.7,  # now maximising: 0.7 beats 0.4
            ("min_delta", 0.5), 0.8,  # not by more than 0.5: stops
            ("baseline", 2.0), ("patience", 3), 1.5,  # a best, but wait is not reset
            ("start_from_epoch", 20), 5.0,  # ignored
            ("start_from_epoch", 0), ("restore_best_weights", True), 5.0,
        ],
    )
    assert ours.policy.patience == 3 and ours.policy.baseline == 2.0
    assert ours.policy.direction == "max" and ours.controller.states[0].best == 5.0


def test_reduce_lr_on_plateau_state_and_configuration_writes() -> None:
    _, ours = drive(
        "ReduceLROnPlateau",
        lambda side: {"monitor": "loss", "patience": 1, "factor": 0.5, "min_delta": 0.0},
        [
            1.0, 1.0,  # reduces to 0.05
            ("patience", 3), ("wait", 2), 1.0,  # wait 3 >= 3: reduces to 0.025
            ("cooldown", 1), ("patience", 1), 1.0, 1.0,  # reduce, cool down one epoch, reduce
            ("factor", 0.1), ("min_lr", 0.002), 1.0,  # 0.000625 is below the floor: 0.002
            1.0,  # at the floor: no reduction, wait counts on
            ("best", 2.0), 1.5,  # improves on the assigned best
            ("cooldown_counter", 2), 1.6, 1.7, 1.8,
            ("monitor_op", keras.ops.greater), 1.9,  # now maximising: 1.9 beats 1.5
            ("min_delta", 0.5), 2.0, 2.1,  # not by more than 0.5
            ("monitor", "val_loss"), 3.0,  # absent: nothing changes
            ("monitor", "loss"), 3.0,
        ],
        read=lambda side, model: float(model.optimizer.learning_rate),
    )
    assert ours.policy.factor == 0.1 and ours.policy.direction == "max"


def test_model_checkpoint_state_and_configuration_writes(tmp_path: Path) -> None:
    def files(side: str, model: Any) -> list[str]:
        root = tmp_path / side
        return sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )

    def path(sub: str) -> PerSide:
        return PerSide(lambda side: str(tmp_path / side / sub / "{epoch}-{loss:.2f}.weights.h5"))

    drive(
        "ModelCheckpoint",
        lambda side: {
            "filepath": path("a").value(side), "monitor": "loss", "save_best_only": True,
            "save_weights_only": True, "initial_value_threshold": 0.9,
        },
        [
            1.0,  # not below the threshold (Keras' starting best)
            0.8, 0.85,
            ("best", None), 0.85,  # no best: saved
            ("filepath", path("b")), 0.7,
            ("save_best_only", False), 0.9,  # saved whatever it is
            ("monitor", "accuracy"), ("save_best_only", True), 0.6,  # absent: saved, as Keras
            ("monitor", "loss"), ("monitor_op", keras.ops.greater), 0.95, 0.5,
            ("save_freq", 2), 0.1,  # batch saves only now: nothing at the epoch end
        ],
        read=files,
    )


@pytest.mark.parametrize("name", ["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"])
def test_monitor_op_accepts_only_keras_directions(name: str, tmp_path: Path) -> None:
    args: dict[str, Any] = (
        {"filepath": str(tmp_path / "m.keras"), "save_best_only": True}
        if name == "ModelCheckpoint" else {}
    )
    cb = getattr(tk, name)(mode="min", **args)
    cb.monitor_op = np.greater  # Keras 2's comparisons are Keras 3's directions
    assert cb.monitor_op is keras.ops.greater and cb.policy.direction == "max"
    with pytest.raises(ValueError, match=r"must be keras\.ops\.less or keras\.ops\.greater"):
        cb.monitor_op = np.greater_equal
    cb.monitor_op = None  # resolved again (from mode) at the next epoch end
    cb.set_model(make_model())
    cb.on_epoch_end(0, {"val_loss": 1.0})
    assert cb.monitor_op is keras.ops.less and cb.policy.direction == "min"


def test_a_configuration_write_the_core_refuses_raises_and_changes_nothing() -> None:
    es = tk.EarlyStopping(mode="min", patience=2)
    es.wait = 1
    with pytest.raises(ValueError, match="'patience' must be >= 0, got -1"):
        es.patience = -1
    assert es.patience == es.policy.patience == 2 and es.wait == 1


def test_model_checkpoint_resolves_auto_mode_like_keras_without_save_best_only(
    tmp_path: Path,
) -> None:
    # Keras resolves monitor_op at the first epoch end even when nothing is compared
    for cls in (keras.callbacks.ModelCheckpoint, tk.ModelCheckpoint):
        cb = cls(str(tmp_path / "m.keras"), monitor="val_mystery")
        cb.set_model(make_model())
        with pytest.raises(ValueError, match="isn't able to automatically determine"):
            cb.on_epoch_end(0, {"val_mystery": 1.0})
