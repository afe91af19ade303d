"""Keras' own callback test files, run unchanged against trainctl's drop-ins.

The five files ship inside the installed Keras (``keras/src/callbacks/*_test.py``). This module
imports each one as Keras' own package module and exposes its ``TestCase`` classes here, so that
pytest collects every Keras test as an item of this module (``test_keras_own_tests.py::
EarlyStoppingTest::test_early_stopping``), with Keras' own marks and skips, and a failing Keras
assertion fails the run with Keras' message. While each of them runs, an autouse fixture puts the
drop-ins in place of Keras' five classes everywhere the test file can reach them:
``keras.src.callbacks.X`` (the files call ``callbacks.X(...)``), ``keras.callbacks.X`` and the
file's own globals (``terminate_on_nan_test`` does ``from keras.src.callbacks import
TerminateOnNaN``). The fixture also checks that the Keras test built at least one drop-in, so a
test that silently ran against Keras' class would fail here.

Keras' ``requires_trainable_backend`` mark is handled by ``tests/conftest.py`` with Keras' own
rule (skip on the numpy and openvino backends, which cannot train); the suite runs on torch and
jax, which train. The files are the installed version's, so a Keras upgrade brings its new tests.
"""

from __future__ import annotations

import importlib
import unittest
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from absl import logging as absl_logging

keras = pytest.importorskip("keras")

from keras.src import callbacks as src_callbacks  # noqa: E402
from keras.src.utils import io_utils  # noqa: E402

from trainctl.adapters import keras as tk  # noqa: E402

# Keras' backends trip a numpy 2 deprecation on every weight read; it says nothing about us
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

#: Keras test module (under keras.src.callbacks) -> the class it tests
FILES = {
    "early_stopping_test": "EarlyStopping",
    "reduce_lr_on_plateau_test": "ReduceLROnPlateau",
    "model_checkpoint_test": "ModelCheckpoint",
    "terminate_on_nan_test": "TerminateOnNaN",
    "learning_rate_scheduler_test": "LearningRateScheduler",
}
ORIGINALS: dict[str, type] = {name: getattr(src_callbacks, name) for name in FILES.values()}
DROP_INS: dict[str, type] = {name: getattr(tk, name) for name in FILES.values()}

# A missing or renamed file must fail collection loudly, not skip: import without a guard.
MODULES: dict[str, ModuleType] = {
    name: importlib.import_module(f"keras.src.callbacks.{name}") for name in FILES
}
#: TestCase class name -> the class this file's tests exercise
TESTED_BY_CLASS: dict[str, str] = {}


def _expose(module: ModuleType, tested: str) -> None:
    """Bind the file's own TestCase classes here, where pytest's unittest support collects them
    (any ``unittest.TestCase`` subclass in a test module's namespace, whatever its name)."""
    found = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
        and obj.__module__ == module.__name__
    ]
    if not found:
        raise RuntimeError(f"{module.__name__} defines no TestCase: has Keras moved its tests?")
    for cls in found:
        if cls.__name__ in globals():
            raise RuntimeError(f"two Keras test classes are named {cls.__name__}")
        globals()[cls.__name__] = cls
        TESTED_BY_CLASS[cls.__name__] = tested


for _name, _tested in FILES.items():
    _expose(MODULES[_name], _tested)


@pytest.fixture(autouse=True)
def drop_ins_in_place_of_keras(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Around each Keras test: the drop-ins replace Keras' classes; Keras' global logging state
    (its verbose tests switch interactive logging off and absl to INFO) is put back after."""
    cls = request.cls
    if cls is None or cls.__name__ not in TESTED_BY_CLASS:
        yield  # this module's own tests below
        return
    module = MODULES[cls.__module__.rsplit(".", 1)[-1]]
    for name, ours in DROP_INS.items():
        monkeypatch.setattr(src_callbacks, name, ours)
        monkeypatch.setattr(keras.callbacks, name, ours)
        if vars(module).get(name) is ORIGINALS[name]:
            monkeypatch.setattr(module, name, ours)
    built: list[str] = []
    tested = TESTED_BY_CLASS[cls.__name__]
    original_init = DROP_INS[tested].__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(DROP_INS[tested], "__init__", counting_init)
    interactive = io_utils.is_interactive_logging_enabled()
    verbosity = absl_logging.get_verbosity()
    yield
    if interactive:
        io_utils.enable_interactive_logging()
    else:
        io_utils.disable_interactive_logging()
    absl_logging.set_verbosity(verbosity)
    assert built, f"{request.node.nodeid} built no trainctl {tested}: the patch did not reach it"


def test_every_keras_file_is_collected() -> None:
    assert sorted(set(TESTED_BY_CLASS.values())) == sorted(FILES.values())


def test_the_drop_ins_are_keras_callbacks_with_keras_names() -> None:
    # Keras' messages name the class (type(self).__name__) and CallbackList accepts any
    # keras.callbacks.Callback: both must hold for the drop-ins to stand in unchanged.
    for name, ours in DROP_INS.items():
        assert ours is not ORIGINALS[name]
        assert ours.__name__ == name
        assert issubclass(ours, keras.callbacks.Callback)


def test_keras_names_are_restored_outside_keras_tests() -> None:
    # the fixture is a no-op here: Keras' classes are Keras' own again
    for name, original in ORIGINALS.items():
        assert getattr(src_callbacks, name) is original
        assert getattr(keras.callbacks, name) is original
