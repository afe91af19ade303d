"""The Monitor value and its comparison, the one rule for "better" that every policy composes."""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import trainctl
from trainctl import Comparison, MetricNotFoundError, Monitor

VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 0.1 + 1e-17, 1e-8, math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.floats(min_value=-1e6, max_value=1e6),
)
COMPARISONS = st.builds(
    Comparison,
    direction=st.sampled_from(["min", "max"]),
    delta=st.sampled_from([0.0, 1e-4, 0.1, 0.5, -0.05, 3.0]),
    threshold_mode=st.sampled_from(["abs", "rel"]),
    delta_applies_to=st.sampled_from(["current", "best"]),
    precision=st.sampled_from(["float64", "float32"]),
    float32_arithmetic=st.booleans(),
)


@given(cmp=COMPARISONS, pairs=st.lists(st.tuples(VALUES, VALUES), min_size=1, max_size=30))
def test_the_rule_on_arrays_is_the_rule_on_floats_element_by_element(
    cmp: Comparison, pairs: list[tuple[float, float]]
) -> None:
    current = np.array([c for c, _ in pairs])
    best = np.array([b for _, b in pairs])
    with np.errstate(all="ignore"):
        vectorised = cmp.improves(current, best)
        one_by_one = [bool(cmp.improves(c, b)) for c, b in pairs]
        beyond = cmp.beyond(current, best)
        beyond_one = [bool(cmp.beyond(c, b)) for c, b in pairs]
    assert vectorised.dtype == np.bool_ and vectorised.tolist() == one_by_one
    assert beyond.tolist() == beyond_one


def test_nan_never_improves_and_nothing_improves_on_nan() -> None:
    for direction in ("min", "max"):
        cmp = Comparison(direction=direction)
        assert not cmp.improves(math.nan, 1.0) and not cmp.improves(1.0, math.nan)
        assert cmp.improves(1.0, cmp.worst)


def test_auto_direction_is_decided_at_construction() -> None:
    assert Monitor("val_acc").direction == "max" and Monitor("val_loss").direction == "min"
    with pytest.raises(ValueError, match=r"cannot infer whether metric 'val_top5x'.*mode="):
        Monitor("val_top5x")
    # and so in every policy that monitors a metric: not after the first epoch
    with pytest.raises(ValueError, match="val_widgets"):
        trainctl.EarlyStopping("val_widgets")
    with pytest.raises(ValueError, match="val_widgets"):
        trainctl.ReduceLROnPlateau("val_widgets")
    with pytest.raises(ValueError, match="val_widgets"):
        trainctl.CheckpointPolicy("val_widgets")


def test_reading_never_writes_into_the_metrics() -> None:
    metrics: dict[str, Any] = collections.defaultdict(float, {"loss": 1.0})
    monitor = Monitor("val_loss")
    assert monitor.read(metrics, "P") is None
    assert "val_loss" not in metrics  # a defaultdict did not invent it
    es = trainctl.EarlyStopping("val_loss", patience=0)
    ctl = trainctl.Controller(es, warn_missing=False)
    for _ in range(3):
        assert not ctl.step(metrics).stop  # never stopped on a metric that was never reported
    assert dict(metrics) == {"loss": 1.0}


def test_strict_names_the_policy_and_the_keys_present() -> None:
    with pytest.raises(MetricNotFoundError, match=r"P: metric 'val_loss' .* present: 'loss', 1"):
        Monitor("val_loss", strict=True).read({"loss": 1.0, 1: 2.0}, "P")  # type: ignore[dict-item]


def test_a_missing_metric_with_odd_keys_still_gets_a_readable_warning() -> None:
    ctl = trainctl.Controller(trainctl.EarlyStopping("val_loss"))
    with pytest.warns(UserWarning, match=r"'val_loss' not in metrics \(present: 3, loss\)"):
        ctl.step({3: 1.0, "loss": 2.0})  # type: ignore[dict-item]


def test_values_are_read_as_floats_or_refused_naming_the_key() -> None:
    monitor = Monitor("m", mode="min")
    assert monitor.read({"m": np.float32(0.5)}, "P") == 0.5
    assert monitor.read({"m": np.array([2])}, "P") == 2.0
    with pytest.raises(TypeError, match="metric 'm' must be a number, got str"):
        monitor.read({"m": "0.5"}, "P")
    with pytest.raises(ValueError, match="metric 'm' is too large for a float"):
        monitor.read({"m": 10**400}, "P")
