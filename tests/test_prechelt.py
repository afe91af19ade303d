"""Prechelt's GL, PQ and UP as policies: the formulas on hand-computed examples, and the policy
contract (validation, Controller, simulate, resume through JSON at every round, pickling,
``parse_call``, state errors naming the field).

Expected values are written from the definitions (Prechelt 1998; EarlyStopping.jl's ``GL``,
``PQ``, ``Patience``), not read from this code's output: the comments show the arithmetic.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest

import trainctl
from trainctl._prechelt import (
    GL,
    PQ,
    UP,
    generalization_loss,
    progress_quotient,
    training_progress,
)

# EarlyStopping.jl's test sequence (test/criteria.jl)
LOSSES = [10.0, 8.0, 9.0, 10.0, 11.0, 12.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 16.0]


def rounds(val: list[float], train: list[float] | None = None) -> list[dict[str, float]]:
    out = []
    for i, v in enumerate(val):
        m = {"val_loss": v}
        if train is not None:
            m["loss"] = train[i]
        out.append(m)
    return out


def stopping_time(policy: Any, stream: list[dict[str, float]]) -> int:
    """EarlyStopping.jl's ``stopping_time``: the 1-based round of the stop, 0 for never."""
    decisions = trainctl.simulate(policy, stream)
    return len(decisions) if decisions and decisions[-1].stop else 0


# -- the formulas ----------------------------------------------------------------------------------


def test_generalization_loss_formula() -> None:
    # 100 * (E / E_opt - 1): E_opt = 8
    assert float(generalization_loss(9.0, 8.0)) == 12.5  # 100 * 1/8
    assert float(generalization_loss(8.0, 8.0)) == 0.0
    assert float(generalization_loss(12.0, 8.0)) == 50.0
    assert float(generalization_loss(1.0, 0.0)) == math.inf  # E_opt = 0: any loss above it
    assert math.isnan(float(generalization_loss(0.0, 0.0)))


def test_training_progress_formula() -> None:
    # EarlyStopping.jl: progress([2, 3, 6, 7]) == 1000 * (4.5 - 2) / 2
    assert float(training_progress([2.0, 3.0, 6.0, 7.0])) == 1250.0
    # 1000 * (mean / min - 1): mean 1.7, min 1.6 -> 1000 * 0.1 / 1.6 = 62.5
    assert float(training_progress([1.8, 1.7, 1.6])) == pytest.approx(62.5)
    assert float(training_progress([2.0, 2.0, 2.0])) == 0.0  # no progress at all
    assert math.isnan(float(training_progress([2.0, math.nan, 1.0])))
    assert float(progress_quotient(25.0, 62.5)) == 0.4
    with pytest.raises(ValueError, match="at least one training error"):
        training_progress([])


# -- GL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "expected"), [
    (12, 3),    # round 3: E = 9, E_opt = 8: GL = 12.5 > 12
    (20, 4),    # round 4: E = 10: GL = 25 > 20 (round 3: 12.5)
    (40, 6),    # round 6: E = 12: GL = 50 > 40 (round 5: E = 11, 37.5)
    (90, 11),   # round 11: E = 16: GL = 100 > 90 (round 10: 87.5)
    (110, 12),  # round 12: E = 17: GL = 112.5
    (1000, 0),  # never
])
def test_gl_stopping_times(alpha: float, expected: int) -> None:
    # the same stopping times as EarlyStopping.jl's tests of GL(alpha) on LOSSES
    assert stopping_time(GL(alpha), rounds(LOSSES)) == expected


def test_gl_reports_its_numbers_and_restores_the_best() -> None:
    decisions = trainctl.simulate(GL(40, restore_best_weights=True), rounds(LOSSES))
    gls = [d.details[0].generalization_loss for d in decisions]
    # E_opt is 10 at round 1, then 8: GL = 0, 0, 12.5, 25, 37.5, 50
    assert gls == [0.0, 0.0, 12.5, 25.0, 37.5, 50.0]
    last = decisions[-1]
    assert last.stop and last.restore_best and last.details[0].best == 8.0
    assert last.details[0].best_epoch == 1 and last.events == ("generalization_loss",)
    assert "GL = 50 > alpha = 40" in last.explain() and "restore the weights of epoch 2" in (
        last.explain())
    assert [d.snapshot_best for d in decisions] == [True, True, False, False, False, False]


def test_gl_ignores_nan_and_stops_on_inf() -> None:
    stream = rounds([2.0, math.nan, 2.01, math.inf])
    decisions = trainctl.simulate(GL(1.0), stream)
    # NaN never improves and its GL is NaN (not > alpha); 2.01 is 0.5% above 2; inf is +inf%
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert decisions[1].details[0].best == 2.0


# -- UP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "expected"), [(6, 0), (5, 12), (4, 6), (3, 5), (2, 4), (1, 3)])
def test_up_with_strips_of_one_epoch_is_patience(s: int, expected: int) -> None:
    # EarlyStopping.jl's Patience(n) stopping times on LOSSES: increases 8->9->10->11->12 are
    # 4 in a row (round 6), 12->12 restarts the count, 12->13->...->17 are 5 (round 12)
    assert stopping_time(UP(s, strip=1), rounds(LOSSES)) == expected


@pytest.mark.parametrize(("s", "expected"), [(1, 4), (2, 6), (3, 8), (5, 12), (6, 0)])
def test_up_compares_the_ends_of_strips(s: int, expected: int) -> None:
    # strip=2: the strips end at epochs 2, 4, 6, ... (1-based), values 8, 10, 12, 13, 15, 17:
    # each rises over the one before, so the s-th rise is at epoch 2 * (s + 1)
    assert stopping_time(UP(s, strip=2), rounds(LOSSES)) == expected


def test_up_a_fall_restarts_the_count() -> None:
    decisions = trainctl.simulate(UP(2, strip=1), rounds([1.0, 2.0, 1.5, 1.6, 1.7]))
    assert [d.details[0].rises for d in decisions] == [0, 1, 0, 1, 2]
    assert decisions[-1].stop and decisions[-1].events == ("successive_rises",)


# -- PQ --------------------------------------------------------------------------------------------

# strips of 3 epochs end at rounds 2, 5, 8; E_opt = 4 from round 1 on
VAL = [5.0, 4.0, 4.4, 4.2, 4.6, 5.0, 5.5, 6.0, 6.5]
TRAIN = [4.0, 3.0, 2.0, 1.8, 1.7, 1.6, 1.55, 1.5, 1.45]


def test_pq_values_at_the_ends_of_strips() -> None:
    decisions = trainctl.simulate(PQ(1e9, strip=3), rounds(VAL, TRAIN))
    tested = {i: d.details[0] for i, d in enumerate(decisions) if d.details[0].quotient is not None}
    assert sorted(tested) == [2, 5, 8]
    # round 2: window (4, 3, 2): P = 1000 * (3 / 2 - 1) = 500; GL = 100 * (4.4 / 4 - 1) = 10
    assert tested[2].progress == 500.0
    assert tested[2].generalization_loss == pytest.approx(10.0)
    assert tested[2].quotient == pytest.approx(10.0 / 500.0)
    # round 5: window (1.8, 1.7, 1.6): P = 62.5; GL = 100 * (5 / 4 - 1) = 25; PQ = 0.4
    assert tested[5].progress == pytest.approx(62.5)
    assert tested[5].generalization_loss == 25.0
    assert tested[5].quotient == pytest.approx(0.4)
    # round 8: window (1.55, 1.5, 1.45): P = 1000 * (1.5 / 1.45 - 1); GL = 62.5
    assert tested[8].progress == pytest.approx(1000 * (1.5 / 1.45 - 1))
    assert tested[8].quotient == pytest.approx(62.5 / (1000 * (1.5 / 1.45 - 1)))


@pytest.mark.parametrize(("alpha", "expected"), [(0.01, 3), (0.3, 6), (0.5, 9), (2.0, 0)])
def test_pq_stopping_times(alpha: float, expected: int) -> None:
    # quotients 0.02, 0.4 and 1.8125 (62.5 / 34.48...) at rounds 3, 6, 9 (1-based)
    assert stopping_time(PQ(alpha, strip=3), rounds(VAL, TRAIN)) == expected


def test_pq_stops_when_training_stops_progressing() -> None:
    # EarlyStopping.jl: P_k <= tol stops (here the window (2, 2, 2) gives P = 0)
    train = [3.0, 2.5, 2.0, 2.0, 2.0, 2.0]
    decisions = trainctl.simulate(PQ(100.0, strip=3), rounds([1.0] * 6, train))
    assert len(decisions) == 6 and decisions[-1].events == ("no_progress",)
    assert decisions[-1].details[0].progress == 0.0


def test_pq_waits_for_a_full_window_and_warns_without_training_errors() -> None:
    stream = [{"val_loss": 1.0}, {"val_loss": 2.0}, {"val_loss": 3.0}]
    with pytest.warns(UserWarning, match="'loss' not in metrics"):
        decisions = trainctl.simulate(PQ(0.1, strip=2), stream)
    assert not any(d.stop for d in decisions)


# -- the policy contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: GL(0), ValueError, "'alpha' must be > 0.0, got 0"),
    (lambda: GL(math.inf), ValueError, "'alpha' must be finite, got inf"),
    (lambda: GL("2"), TypeError, "'alpha' must be a real number, got str '2'"),
    (lambda: PQ(strip=1), ValueError, "'strip' must be >= 2, got 1"),
    (lambda: PQ(tol=0.0), ValueError, "'tol' must be > 0.0, got 0.0"),
    (lambda: UP(0), ValueError, "'s' must be >= 1, got 0"),
    (lambda: UP(2.5), TypeError, "'s' must be an int, got float 2.5"),
    (lambda: UP(strip=0), ValueError, "'strip' must be >= 1, got 0"),
    (lambda: GL(monitor=""), ValueError, "'monitor' must be a non-empty str"),
    (lambda: GL(restore_best_weights="yes"), TypeError, "'restore_best_weights' must be a bool"),
    (lambda: GL(monitor="val_accuracy"), ValueError, "reads as higher-is-better"),
    (lambda: PQ(monitor="x_loss", train_monitor="x_loss"), ValueError, "different metrics"),
])
def test_bad_configurations_are_named(make: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


POLICIES = [GL(5.0, restore_best_weights=True), PQ(0.5, strip=3, monitor="val_loss"),
            UP(2, strip=2, monitor="val_loss")]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: type(p).__name__)
def test_contract_members(policy: Any) -> None:
    assert policy.clocks == frozenset({"round"})
    assert policy.label == f"{type(policy).__name__}(val_loss)"
    config = policy.config_dict()
    assert config["type"] == type(policy).__name__
    json.dumps(config, allow_nan=False)
    again = pickle.loads(pickle.dumps(policy))
    assert again == policy and repr(again) == repr(policy)
    assert trainctl.parse_call(repr(policy)) == policy
    from trainctl._rebuild import policy_from_config

    assert policy_from_config(config) == policy
    state = policy.initial_state()
    assert policy.state_from_dict(json.loads(json.dumps(policy.state_to_dict(state)))) == state


def test_repr_and_parse_call() -> None:
    assert repr(GL(5)) == "GL(alpha=5)"
    assert repr(PQ(0.5, strip=3)) == "PQ(alpha=0.5, strip=3)"
    assert trainctl.parse_call("UP(3, strip=5, monitor='eval_loss')") == UP(
        3, strip=5, monitor="eval_loss")


STREAM_VAL = [3.0, 2.5, 2.6, 2.2, 2.3, math.nan, 2.25, 2.4, 2.5, 2.45, 2.7, 2.8, 3.0, 3.1, 3.3,
              3.2, 3.6, 3.9]
STREAM_TRAIN = [3.1, 2.4, 2.0, 1.8, 1.7, 1.65, 1.6, 1.58, 1.55, 1.53, 1.52, 1.51, 1.505, 1.5,
                1.499, 1.4985, 1.498, 1.4979]


def _decisions(ctl: trainctl.Controller, stream: list[dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for metrics in stream:
        out.append(ctl.step(metrics).to_dict())
    return out


def test_live_in_a_controller_and_resumed_through_json_at_every_round() -> None:
    stream = rounds(STREAM_VAL, STREAM_TRAIN)

    def controller() -> trainctl.Controller:
        return trainctl.Controller(GL(30.0, restore_best_weights=True), PQ(2.0, strip=3),
                                   UP(3, strip=2), trainctl.EarlyStopping(patience=4))

    whole = _decisions(controller(), stream)
    assert any(d["stop"] for d in whole)
    for cut in range(len(stream) + 1):
        first = controller()
        head = _decisions(first, stream[:cut])
        state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
        second = controller()
        second.load_state_dict(state)
        assert head + _decisions(second, stream[cut:]) == whole, cut
    ctl = controller()
    _decisions(ctl, stream)
    assert ctl.finish().restore_best


@pytest.mark.parametrize(("policy", "data", "message"), [
    (GL(), {"best": "x", "best_epoch": 0, "stopped_epoch": None, "stop_event": None},
     "GL(val_loss) state.best: expected a number, got string 'x'"),
    (GL(), {"best": 1.0, "best_epoch": None, "stopped_epoch": None, "stop_event": None},
     "GL(val_loss) state: 'best' and 'best_epoch' must both be set or both be null"),
    (GL(), {"best": None, "best_epoch": None, "stopped_epoch": 3, "stop_event": None},
     "GL(val_loss) state: 'stopped_epoch' and 'stop_event' must both be set"),
    (GL(), {"best": None, "best_epoch": None, "stopped_epoch": None},
     "GL(val_loss) state: missing 'stop_event'"),
    (PQ(strip=2), {"best": None, "best_epoch": None, "window": [1.0, 2.0, 3.0],
                   "stopped_epoch": None, "stop_event": None},
     "PQ(val_loss) state.window: holds at most strip=2 training errors, got 3"),
    (PQ(), {"best": None, "best_epoch": None, "window": [1.0, None], "stopped_epoch": None,
            "stop_event": None}, r"PQ(val_loss) state.window[1]: expected a number, got null"),
    (UP(), {"best": None, "best_epoch": None, "previous": None, "rises": -1,
            "stopped_epoch": None, "stop_event": None}, "UP(val_loss) state.rises: must be >= 0"),
    (UP(), {"best": None, "best_epoch": -2, "previous": None, "rises": 0,
            "stopped_epoch": None, "stop_event": None},
     "UP(val_loss) state.best_epoch: must be >= 0, got -2"),
])
def test_state_errors_name_the_field(policy: Any, data: dict[str, Any], message: str) -> None:
    with pytest.raises(trainctl.StateError) as info:
        policy.state_from_dict(data)
    assert message in str(info.value)


def test_strict_raises_and_stops_are_final() -> None:
    with pytest.raises(trainctl.MetricNotFoundError, match="PQ"):
        trainctl.simulate(PQ(strict=True), [{"val_loss": 1.0}])
    ctl = trainctl.Controller(UP(1, strip=1))
    for v in (1.0, 2.0, 0.5, 0.4):
        d = ctl.step({"val_loss": v})
    assert d.stop and d.events == ("successive_rises",)
