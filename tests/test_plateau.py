"""ReduceLROnPlateau: Keras and torch rules, cooldown, min_lr, param groups, bad input."""

from __future__ import annotations

import math

import pytest

from trainctl import Controller, ReduceLROnPlateau, simulate


def lrs(
    policy: ReduceLROnPlateau,
    values: list[float],
    lr: float | tuple[float, ...] = 1.0,
    key: str = "val_loss",
) -> list[object]:
    return [d.lr for d in simulate(policy, [{key: v} for v in values], lr=lr)]


def test_keras_fires_at_wait_ge_patience() -> None:
    p = ReduceLROnPlateau(patience=2, factor=0.5)
    assert lrs(p, [1, 1, 1, 1, 1]) == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_torch_fires_at_bad_epochs_gt_patience() -> None:
    p = ReduceLROnPlateau(patience=2, factor=0.5, rules="torch", mode="min")
    assert lrs(p, [1, 1, 1, 1, 1, 1, 1]) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_keras_patience_zero_reduces_on_every_non_improving_round() -> None:
    assert lrs(ReduceLROnPlateau(patience=0, factor=0.5), [1, 1, 1]) == [1.0, 0.5, 0.25]


def test_keras_first_value_is_always_an_improvement() -> None:
    d = simulate(ReduceLROnPlateau(patience=0), [{"val_loss": math.inf}], lr=1.0)[0]
    assert d.details[0].best == math.inf and d.reasons[0].event == "improved"


def test_keras_cooldown_skips_counting_then_counts_the_round_it_ends() -> None:
    p = ReduceLROnPlateau(patience=1, factor=0.5, cooldown=2)
    decisions = simulate(p, [{"val_loss": 1.0}] * 7, lr=1.0)
    assert [d.reasons[0].event for d in decisions] == [
        "improved",
        "reduced_lr",
        "cooldown",
        "reduced_lr",
        "cooldown",
        "reduced_lr",
        "cooldown",
    ]
    assert [d.details[0].cooldown_counter for d in decisions] == [0, 2, 1, 2, 1, 2, 1]


def test_torch_cooldown_resets_bad_epochs_one_round_longer() -> None:
    p = ReduceLROnPlateau(patience=0, factor=0.5, cooldown=2, rules="torch", mode="min")
    assert lrs(p, [1.0] * 8) == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_keras_at_min_lr_keeps_counting_without_reset() -> None:
    # reaching min_lr exactly: 0.5 * 0.5 = 0.25 < 0.4 -> clipped to 0.4, then no more reductions
    p = ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.4)
    decisions = simulate(p, [{"val_loss": 1.0}] * 6, lr=1.0)
    assert [d.lr for d in decisions] == [1.0, 0.5, 0.4, 0.4, 0.4, 0.4]
    assert [d.reasons[0].event for d in decisions][-3:] == ["at_min_lr"] * 3
    assert [d.details[0].wait for d in decisions][-3:] == [1, 2, 3]


def test_torch_at_min_lr_still_restarts_cooldown_and_eps_blocks_tiny_changes() -> None:
    p = ReduceLROnPlateau(patience=0, factor=0.5, min_lr=0.5, rules="torch", mode="min", cooldown=1)
    decisions = simulate(p, [{"val_loss": 1.0}] * 5, lr=1.0)
    assert [d.lr for d in decisions] == [1.0, 0.5, 0.5, 0.5, 0.5]
    assert [d.details[0].cooldown_counter for d in decisions] == [0, 1, 0, 1, 0]
    p = ReduceLROnPlateau(patience=0, factor=0.99999999, rules="torch", mode="min", eps=1e-8)
    assert lrs(p, [1.0, 1.0], lr=1e-3) == [1e-3, 1e-3]  # the change is below eps


def test_relative_threshold_like_torch() -> None:
    p = ReduceLROnPlateau(
        patience=0, factor=0.5, min_delta=0.1, threshold_mode="rel", rules="torch", mode="min"
    )
    # best 1.0: 0.91 is not below 1.0 * 0.9; 0.89 is
    assert lrs(p, [1.0, 0.91, 0.89]) == [1.0, 0.5, 0.5]


def test_param_groups_each_with_its_own_min_lr() -> None:
    p = ReduceLROnPlateau(patience=0, factor=0.1, min_lr=(0.05, 0.001))
    out = lrs(p, [1.0, 1.0, 1.0], lr=(1.0, 0.1))
    assert out[0] == (1.0, 0.1)
    assert out[1] == (pytest.approx(0.1), pytest.approx(0.01))
    assert out[2] == (0.05, pytest.approx(0.001))


def test_min_lr_tuple_must_match_groups() -> None:
    p = ReduceLROnPlateau(min_lr=(0.1, 0.2))
    with pytest.raises(ValueError, match="'min_lr' has 2 values but the learning rate has 3 rates"):
        Controller(p, lr=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="a single rate"):
        Controller(p, lr=1.0)


def test_needs_a_learning_rate() -> None:
    with pytest.raises(ValueError, match=r"needs the current learning rate.*lr="):
        Controller(ReduceLROnPlateau()).step({"val_loss": 1.0})


def test_lr_reported_by_the_caller_is_respected() -> None:
    ctl = Controller(ReduceLROnPlateau(patience=0, factor=0.5), lr=1.0)
    ctl.step({"val_loss": 1.0})
    d = ctl.step({"val_loss": 1.0}, lr=0.3)  # the user lowered it by hand
    assert d.lr == 0.15


def test_never_raises_the_rate_and_reason_names_the_numbers() -> None:
    d = simulate(
        ReduceLROnPlateau(patience=0, factor=0.5), [{"val_loss": 1}, {"val_loss": 2}], lr=0.2
    )[-1]
    assert d.lr == 0.1 and d.lr_changed
    msg = d.reasons[0].message
    assert "lr 0.2 -> 0.1" in msg and "val_loss = 2" in msg


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"factor": 1.0}, ValueError, "'factor' must be < 1.0, got 1.0"),
        ({"factor": 0.0}, ValueError, "'factor' must be > 0.0, got 0.0"),
        ({"factor": -0.5}, ValueError, "'factor' must be > 0.0, got -0.5"),
        ({"patience": -1}, ValueError, "'patience' must be >= 0, got -1"),
        ({"cooldown": -1}, ValueError, "'cooldown' must be >= 0, got -1"),
        ({"min_lr": -1e-3}, ValueError, "'min_lr' must be >= 0.0, got -0.001"),
        ({"min_lr": (0.1, -1.0)}, ValueError, "'min_lr[1]' must be >= 0.0, got -1.0"),
        ({"min_lr": ()}, ValueError, "non-empty"),
        ({"eps": -1.0}, ValueError, "'eps' must be >= 0.0, got -1.0"),
        ({"threshold_mode": "pct"}, ValueError, "'threshold_mode' must be one of 'abs', 'rel'"),
        ({"mode": "up"}, ValueError, "'mode' must be one of 'min', 'max', 'auto', got 'up'"),
        ({"rules": "keras2"}, ValueError, "'rules' must be one of 'keras', 'torch'"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as info:
        ReduceLROnPlateau(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
