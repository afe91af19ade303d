"""EarlyStopping: worked traces from Keras' docs and tests, every rule, every bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import trainctl
from trainctl import Controller, EarlyStopping, MetricNotFoundError, simulate

KERAS_LOSSES = [10, 9, 8, 9, 8.9, 8.8, 8.7, 8.6, 8.5]


def stop_epoch(policy: EarlyStopping, values: list[float], key: str = "loss") -> int | None:
    decisions = simulate(policy, [{key: v} for v in values])
    return len(decisions) - 1 if decisions and decisions[-1].stop else None


@pytest.mark.parametrize(("patience", "expected"), [(0, 3), (1, 3), (2, 4), (3, 5)])
def test_keras_patience_table(patience: int, expected: int) -> None:
    # keras' test_EarlyStopping_patience: losses [10, 9, 8, 9, 8.9, ...] stop at 3, 3, 4, 5
    assert stop_epoch(EarlyStopping(monitor="loss", patience=patience), KERAS_LOSSES) == expected


def test_restore_best_weights_names_the_best_epoch() -> None:
    # keras' test_EarlyStopping_reuse / restore: [0.2, 0.15, 0.1, 0.11, 0.12], patience 2 -> epoch 2
    es = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    decisions = simulate(es, [{"loss": v} for v in [0.2, 0.15, 0.1, 0.11, 0.12]])
    assert [d.snapshot_best for d in decisions] == [True, True, True, False, False]
    last = decisions[-1]
    assert last.stop and last.restore_best
    assert last.details[0].best_epoch == 2 and last.details[0].best == 0.1
    assert "restore the weights of epoch 3" in last.explain()  # 1-based, as Keras prints it


def test_no_snapshots_without_restore_best_weights() -> None:
    decisions = simulate(
        EarlyStopping(monitor="loss", patience=2), [{"loss": v} for v in [3, 2, 1]]
    )
    assert not any(d.snapshot_best for d in decisions)
    assert all(d.details[0].improved for d in decisions)


def test_baseline_only_decides_whether_wait_resets() -> None:
    # keras: baseline 0.5, patience 5, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]: 5 epochs, epoch 2 restored
    es = EarlyStopping(monitor="loss", patience=5, baseline=0.5, restore_best_weights=True)
    decisions = simulate(es, [{"loss": v} for v in [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]])
    assert len(decisions) == 5
    assert decisions[-1].stop and decisions[-1].details[0].best_epoch == 2
    assert [d.details[0].wait for d in decisions] == [1, 2, 3, 4, 5]


def test_baseline_beaten_resets_wait() -> None:
    es = EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    decisions = simulate(es, [{"loss": v} for v in [0.9, 0.4, 0.45, 0.46, 0.47]])
    assert [d.details[0].wait for d in decisions] == [1, 0, 1, 2]
    assert decisions[-1].stop


def test_start_from_epoch_ignores_early_rounds() -> None:
    es = EarlyStopping(monitor="loss", patience=1, start_from_epoch=3)
    decisions = simulate(es, [{"loss": v} for v in [1, 2, 3, 4, 5, 6]])
    events = [d.reasons[0].event for d in decisions]
    assert events == ["not_started"] * 3 + ["improved", "patience_exhausted"]


def test_mode_max_and_min_delta() -> None:
    es = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.01)
    assert es.direction == "max"
    # +0.005 is not enough, +0.02 is
    decisions = simulate(es, [{"val_accuracy": v} for v in [0.5, 0.52, 0.525]])
    assert [d.reasons[0].event for d in decisions] == ["improved", "improved", "patience_exhausted"]


def test_negative_min_delta_is_taken_as_absolute_like_keras() -> None:
    a = simulate(
        EarlyStopping(monitor="loss", patience=1, min_delta=-0.1), [{"loss": 1.0}, {"loss": 0.95}]
    )
    assert a[-1].stop


def test_ties_are_not_improvements() -> None:
    decisions = simulate(EarlyStopping(monitor="loss", patience=1), [{"loss": 1.0}, {"loss": 1.0}])
    assert decisions[-1].stop


def test_keras_rules_first_value_nan_becomes_best_and_nothing_improves_on_it() -> None:
    # keras: _is_improvement(nan, None) is True, and every later comparison with NaN is False
    decisions = simulate(
        EarlyStopping(monitor="loss", patience=2), [{"loss": v} for v in [math.nan, 1.0, 0.5]]
    )
    assert decisions[0].details[0].improved and math.isnan(decisions[0].details[0].best)
    assert decisions[-1].stop


def test_lightning_rules_nan_first_value_is_not_an_improvement() -> None:
    es = EarlyStopping(monitor="loss", patience=3, rules="lightning")
    decisions = simulate(es, [{"loss": v} for v in [math.nan, 1.0]])
    assert not decisions[0].details[0].improved and decisions[0].details[0].wait == 1
    assert decisions[1].details[0].improved and decisions[1].details[0].wait == 0


def test_check_finite_stops_on_nan_and_inf() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        es = EarlyStopping(monitor="loss", patience=10, check_finite=True)
        decisions = simulate(es, [{"loss": 1.0}, {"loss": bad}])
        assert decisions[-1].stop
        assert decisions[-1].reasons[0].event == "non_finite"
        assert decisions[-1].details[0].best == 1.0


def test_stopping_threshold_records_best_under_keras_rules() -> None:
    es = EarlyStopping(
        monitor="loss", patience=10, stopping_threshold=0.5, restore_best_weights=True
    )
    decisions = simulate(es, [{"loss": v} for v in [1.0, 0.6, 0.5, 0.4]])
    assert len(decisions) == 4  # 0.5 is not strictly below the threshold
    last = decisions[-1]
    assert last.stop and last.reasons[0].event == "stopping_threshold"
    assert last.snapshot_best and last.details[0].best == 0.4 and last.restore_best


def test_divergence_threshold() -> None:
    for rules in ("keras", "lightning"):
        es = EarlyStopping(monitor="loss", patience=10, divergence_threshold=5.0, rules=rules)  # type: ignore[arg-type]
        decisions = simulate(es, [{"loss": v} for v in [1.0, 5.0, 5.1]])
        assert len(decisions) == 3 and decisions[-1].reasons[0].event == "divergence_threshold"
        es = EarlyStopping(monitor="acc", patience=10, divergence_threshold=0.1, rules=rules)  # type: ignore[arg-type]
        decisions = simulate(es, [{"acc": v} for v in [0.5, 0.1, 0.09]])
        assert len(decisions) == 3 and decisions[-1].reasons[0].event == "divergence_threshold"


def test_stop_is_final_and_policy_does_not_run_again() -> None:
    ctl = Controller(EarlyStopping(monitor="loss", patience=0))
    ctl.step({"loss": 1.0})
    assert ctl.step({"loss": 2.0}).stop
    later = ctl.step({"loss": 0.0})
    assert later.stop and ctl.states[0].best == 1.0
    assert "patience_exhausted" in [r.event for r in later.reasons]


def test_finish_restores_best_even_when_something_else_ended_training() -> None:
    ctl = Controller(EarlyStopping(monitor="loss", patience=50, restore_best_weights=True))
    for v in [3.0, 1.0, 2.0]:
        assert not ctl.step({"loss": v}).stop
    end = ctl.finish()
    assert end.restore_best and end.clock == "end"
    assert "epoch 2" in end.explain()  # loss 1.0 came in the 2nd epoch
    assert not Controller(EarlyStopping(monitor="loss")).finish().restore_best


# -- metrics of every shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0.5, 1, np.float32(0.5), np.float64(0.5), np.array(0.5), np.array([0.5]), np.int64(1)],
)
def test_numbers_in_many_forms_are_accepted(value: object) -> None:
    d = simulate(EarlyStopping(monitor="loss"), [{"loss": value}])[0]
    assert d.details[0].best == float(np.asarray(value).reshape(-1)[0])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0.5", "str"),
        (None, "NoneType"),
        (True, "bool"),
        (np.array([0.5, 0.6]), "shape (2,)"),
        ([0.5], "list"),
    ],
)
def test_non_numbers_raise_type_error_naming_key_and_type(value: object, fragment: str) -> None:
    with pytest.raises(TypeError) as info:
        simulate(EarlyStopping(monitor="val_loss"), [{"val_loss": value}])
    assert "'val_loss'" in str(info.value) and fragment in str(info.value)


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    d = simulate(EarlyStopping(monitor="loss"), [{"loss": torch.tensor(0.25)}])[0]
    assert d.details[0].best == 0.25
    with pytest.raises(TypeError, match="requires grad"):
        simulate(EarlyStopping(monitor="loss"), [{"loss": torch.tensor(0.25, requires_grad=True)}])
    with pytest.raises(TypeError, match="4 elements"):
        simulate(EarlyStopping(monitor="loss"), [{"loss": torch.zeros(2, 2)}])


def test_missing_metric_warns_once_and_changes_nothing() -> None:
    ctl = Controller(EarlyStopping(monitor="val_loss", patience=1))
    ctl.step({"val_loss": 1.0})
    before = ctl.states
    with pytest.warns(UserWarning, match="'val_loss' not in metrics \\(present: loss\\)"):
        d = ctl.step({"loss": 0.3})
    assert ctl.states == before and not d.stop
    assert d.reasons[0].event == "missing_metric"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctl.step({"loss": 0.3})  # the second miss is silent


def test_missing_metric_strict_raises_naming_metric_and_present_keys() -> None:
    ctl = Controller(EarlyStopping(monitor="val_loss", strict=True))
    with pytest.raises(MetricNotFoundError, match=r"'val_loss'.*present: 'loss', 'acc'") as info:
        ctl.step({"loss": 1.0, "acc": 0.5})
    assert isinstance(info.value, LookupError) and isinstance(info.value, RuntimeError)


# -- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"patience": -1}, ValueError, "'patience' must be >= 0, got -1"),
        ({"patience": 1.5}, TypeError, "'patience' must be an int, got float 1.5"),
        ({"start_from_epoch": -2}, ValueError, "'start_from_epoch' must be >= 0, got -2"),
        (
            {"mode": "median"},
            ValueError,
            "'mode' must be one of 'min', 'max', 'auto', got 'median'",
        ),
        ({"min_delta": math.nan}, ValueError, "'min_delta' must be finite, got nan"),
        ({"baseline": math.inf}, ValueError, "'baseline' must be finite, got inf"),
        (
            {"rules": "tf"},
            ValueError,
            "'rules' must be one of 'keras', 'lightning', 'huggingface', got 'tf'",
        ),
        ({"monitor": ""}, ValueError, "'monitor' must be a non-empty str"),
        ({"monitor": "weird_metric"}, ValueError, "pass mode='min' or mode='max'"),
        ({"baseline": 0.5, "rules": "lightning"}, ValueError, "'baseline' is a Keras rule"),
    ],
)
def test_bad_configuration_names_parameter_bound_and_value(
    kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        EarlyStopping(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_policy_is_immutable_and_reprs_only_non_defaults() -> None:
    es = EarlyStopping(patience=3)
    with pytest.raises(AttributeError):
        es.patience = 4  # type: ignore[misc]
    assert repr(es) == "EarlyStopping(patience=3)"
    assert trainctl.EarlyStopping() == trainctl.EarlyStopping()
