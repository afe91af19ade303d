"""Properties that must hold for every metric stream (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from trainctl import (
    CheckpointPolicy,
    Controller,
    EarlyStopping,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from trainctl import schedules as S

# Metric values with plateaus and exact ties: a small pool reused often, plus NaN and infinities.
values = st.one_of(
    st.sampled_from([0.5, 0.5, 0.4, 0.3, 1.0, 0.30001]),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
rounds = st.lists(
    st.fixed_dictionaries({"val_loss": values, "loss": values}), min_size=0, max_size=40
)


@st.composite
def controllers(draw: st.DrawFn) -> tuple[Any, ...]:
    """A recipe (so that a fresh identical controller can be built) and its initial lr."""
    groups = draw(st.sampled_from([None, 2]))
    lr: float | tuple[float, ...] = (
        draw(st.floats(1e-4, 1.0))
        if groups is None
        else tuple(draw(st.floats(1e-4, 1.0)) for _ in range(groups))
    )
    if groups is None:
        min_lr: float | tuple[float, ...] = draw(st.sampled_from([0.0, 1e-3, 0.05]))
    else:
        min_lr = (draw(st.sampled_from([0.0, 1e-3])), draw(st.sampled_from([0.0, 0.05])))
    plateau = ReduceLROnPlateau(
        patience=draw(st.integers(0, 4)),
        factor=draw(st.sampled_from([0.1, 0.5, 0.9])),
        cooldown=draw(st.integers(0, 3)),
        min_lr=min_lr,
        min_delta=draw(st.sampled_from([0.0, 1e-4, 0.1])),
        threshold_mode=draw(st.sampled_from(["abs", "rel"])),
        rules=draw(st.sampled_from(["keras", "torch"])),
        mode="min",
    )
    stopper = EarlyStopping(
        patience=draw(st.integers(0, 6)),
        min_delta=draw(st.sampled_from([0.0, 0.01])),
        baseline=draw(st.sampled_from([None, 0.45])),
        restore_best_weights=draw(st.booleans()),
        start_from_epoch=draw(st.integers(0, 3)),
        check_finite=draw(st.booleans()),
        mode="min",
    )
    return (TerminateOnNaN(), plateau, stopper), lr


def build(recipe: tuple[Any, ...]) -> Controller:
    policies, lr = recipe
    return Controller(*policies, lr=lr)


def summary(d: Any) -> tuple[Any, ...]:
    return (d.stop, d.lr, d.lr_changed, d.snapshot_best, d.restore_best, d.reasons)


@given(recipe=controllers(), stream=rounds, cut=st.integers(0, 40))
def test_resume_through_json_at_any_round_makes_identical_decisions(
    recipe: tuple[Any, ...], stream: list[dict[str, float]], cut: int
) -> None:
    cut = min(cut, len(stream))
    uninterrupted = build(recipe)
    expected = [summary(uninterrupted.step(m)) for m in stream]
    first = build(recipe)
    for m in stream[:cut]:
        first.step(m)
    resumed = build(recipe)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    got = [summary(resumed.step(m)) for m in stream[cut:]]
    assert got == expected[cut:]
    assert resumed.state_dict() == uninterrupted.state_dict()


@given(recipe=controllers(), stream=rounds)
def test_lr_never_below_min_lr_and_never_raised(
    recipe: tuple[Any, ...], stream: list[dict[str, float]]
) -> None:
    ctl = build(recipe)
    plateau = recipe[0][1]
    initial = ctl.lr
    groups = len(initial) if isinstance(initial, tuple) else None
    mins = plateau.min_lrs(groups)

    def as_tuple(x: Any) -> tuple[float, ...]:
        return x if isinstance(x, tuple) else (x,)

    previous = as_tuple(initial)
    for m in stream:
        now = as_tuple(ctl.step(m).lr)
        for old, new, lo, first in zip(previous, now, mins, as_tuple(initial), strict=True):
            assert new <= old  # a plateau never raises the rate
            assert new >= min(lo, first)  # and never takes it below min_lr
        previous = now


@given(recipe=controllers(), stream=rounds, steps=st.lists(values, max_size=20))
def test_a_stop_is_final(
    recipe: tuple[Any, ...], stream: list[dict[str, float]], steps: list[float]
) -> None:
    ctl = build(recipe)
    stopped = False
    for i, m in enumerate(stream):
        if i < len(steps):
            stopped = ctl.optimizer_step({"loss": steps[i]}).stop or stopped
            assert not stopped or ctl.stopped
        d = ctl.step(m)
        if stopped:
            assert d.stop
        stopped = stopped or d.stop
    lr_at_stop = ctl.lr
    if stopped:
        assert ctl.step({"val_loss": -100.0, "loss": 0.0}).stop
        assert ctl.lr == lr_at_stop  # no policy runs after a stop


def _step_factor(t: int) -> float:
    return 0.97 ** (t // 3)


def _keras_halving(epoch: int, lr: float) -> float:
    return lr * 0.5 if epoch % 4 == 3 else lr


@st.composite
def wider_recipes(draw: st.DrawFn) -> dict[str, Any]:
    """Configurations users really write: numpy-typed numbers, no lr= (the adapter reports the
    optimizer's rate each round), schedules on module-level functions, checkpoints."""
    np_int, np_float = np.int64, np.float32
    policies: list[Any] = [
        EarlyStopping(
            patience=np_int(draw(st.integers(0, 5))),
            min_delta=np_float(draw(st.sampled_from([0.0, 0.01]))),
            restore_best_weights=np.bool_(draw(st.booleans())),
            rules=draw(st.sampled_from(["keras", "lightning", "huggingface"])),
            mode="min",
        ),
        CheckpointPolicy(
            "val_loss", mode="min", save_top_k=np_int(draw(st.integers(1, 3))),
            keep_last_n=draw(st.sampled_from([None, 1])), filename="e{epoch}",
        ),
    ]
    kind = draw(st.sampled_from(["reported", "lambda", "keras", "plain"]))
    schedule = None
    if kind == "lambda":
        schedule = S.warmup(S.lambda_lr(np_float(0.1), _step_factor), np_int(3))
    elif kind == "keras":
        schedule = S.keras_recurrence(0.1, _keras_halving)
    if schedule is not None and draw(st.booleans()):
        policies.insert(0, ReduceLROnPlateau(patience=np_int(draw(st.integers(0, 3))),
                                             factor=np_float(0.5), mode="min"))
    return {"policies": policies, "schedule": schedule, "reported": kind == "reported",
            "clock": draw(st.sampled_from(["optimizer_step", "round"]))}


def build_wider(recipe: dict[str, Any]) -> Controller:
    return Controller(*recipe["policies"], schedule=recipe["schedule"],
                      schedule_clock=recipe["clock"])


def drive(ctl: Controller, recipe: dict[str, Any], m: dict[str, float], i: int) -> Any:
    ctl.optimizer_step()
    ctl.optimizer_step()
    # without lr=, an adapter reports what the optimizer holds (here: halving every 5 rounds)
    lr = 0.1 * 0.5 ** (i // 5) if recipe["reported"] else None
    d = ctl.step(m, lr=lr)
    return (d.stop, d.lr, d.save, d.delete, d.explain())


@given(recipe=wider_recipes(), stream=rounds, cut=st.integers(0, 40))
def test_resume_in_every_configuration_makes_identical_decisions(
    recipe: dict[str, Any], stream: list[dict[str, float]], cut: int
) -> None:
    cut = min(cut, len(stream))
    uninterrupted = build_wider(recipe)
    expected = [drive(uninterrupted, recipe, m, i) for i, m in enumerate(stream)]
    first = build_wider(recipe)
    for i, m in enumerate(stream[:cut]):
        drive(first, recipe, m, i)
    saved = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    resumed = build_wider(recipe)  # a fresh, identically built controller in "another process"
    resumed.load_state_dict(saved)
    rebuilt = Controller.from_state_dict(saved)  # and one rebuilt from the state alone
    got = [drive(resumed, recipe, m, i) for i, m in enumerate(stream[cut:], cut)]
    again = [drive(rebuilt, recipe, m, i) for i, m in enumerate(stream[cut:], cut)]
    assert got == again == expected[cut:]
    assert resumed.state_dict() == uninterrupted.state_dict()
