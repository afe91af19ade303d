"""Test setup shared by every module.

Keras 3 needs a backend before it is first imported; the suite uses torch's (CPU), so that one
installed framework serves the Keras, torch and Lightning tests alike. An explicit
``KERAS_BACKEND`` wins: ``make test`` runs the Keras adapter's tests a second time with
``KERAS_BACKEND=jax`` (the backend is fixed per process), and the run's header names it.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.dirname(__file__), "..", ".keras-home"))

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_report_header(config: pytest.Config) -> str:
    return f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"


def pytest_configure(config: pytest.Config) -> None:
    # Keras' own test files (tests/test_keras_own_tests.py) carry this mark; Keras registers it
    # in its repository's conftest.py, which the installed package does not ship.
    config.addinivalue_line(
        "markers", "requires_trainable_backend: mark test for trainable backend only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keras' own rule for its mark: skip where the backend has no trainer."""
    marked = [item for item in items if "requires_trainable_backend" in item.keywords]
    if not marked:
        return  # keras is not imported by a run that collects none of its tests
    from keras.src.backend import backend

    skip = pytest.mark.skipif(
        backend() in ("numpy", "openvino"),
        reason="Trainer not implemented for NumPy and OpenVINO backend.",
    )
    for item in marked:
        item.add_marker(skip)
