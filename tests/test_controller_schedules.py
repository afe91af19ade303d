"""Schedules inside the Controller: both clocks, param groups, plateau on top, resume."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainctl import Controller, EarlyStopping, ReduceLROnPlateau, StateError, schedules
from trainctl.schedules import cosine, step_decay, warmup


def warm_cosine() -> object:
    return warmup(cosine(0.1, total_steps=90), warmup_steps=10)


def test_optimizer_step_clock_follows_the_schedule_exactly() -> None:
    s = warm_cosine()
    ctl = Controller(schedule=s)
    assert ctl.lr == s(0)  # type: ignore[operator]
    seen = [ctl.lr] + [ctl.optimizer_step().lr for _ in range(120)]
    assert seen == [s(t) for t in range(121)]  # type: ignore[operator]
    # evaluation rounds do not advance a per-step schedule
    assert ctl.step({"val_loss": 1.0}).lr == s(120)  # type: ignore[operator]


def test_round_clock_advances_once_per_round() -> None:
    s = step_decay(0.1, step_size=2, gamma=0.5)
    ctl = Controller(schedule=s, schedule_clock="round")
    for _ in range(5):
        assert ctl.optimizer_step().lr == 0.1
    assert [ctl.step({}).lr for _ in range(5)] == [s(t) for t in range(1, 6)]


def _halving(t: int) -> float:
    return 0.5 ** (t // 250)


#: each schedule of the catalogue, long enough to cover its whole shape in >= 1,000 steps
CATALOGUE = [
    lambda: warm_cosine(),
    lambda: cosine(0.1, total_steps=1000, final_lr=1e-3),
    lambda: schedules.warmup(schedules.linear(0.2, 1.0, 0.1, total_steps=800), 200),
    lambda: schedules.step_decay(0.1, step_size=300, gamma=0.3),
    lambda: schedules.multistep(0.1, milestones=(100, 400, 900), gamma=0.5),
    lambda: schedules.exponential(0.1, gamma=0.998),
    lambda: schedules.exponential_decay(0.1, decay_steps=100, decay_rate=0.9),
    lambda: schedules.inverse_time_decay(0.1, decay_steps=100, decay_rate=0.5),
    lambda: schedules.piecewise_constant((200, 600), (0.1, 0.05, 0.01)),
    lambda: schedules.polynomial(0.1, total_steps=900, final_lr=1e-4, power=2.0),
    lambda: schedules.constant_factor(0.1, factor=0.25, total_steps=300),
    lambda: schedules.cosine_restarts(0.1, period=150, period_mult=2),
    lambda: schedules.cyclic(0.01, 0.1, step_size_up=120, mode="triangular2"),
    lambda: schedules.one_cycle(0.1, total_steps=1200),
    lambda: schedules.inverse_sqrt(0.1, warmup_steps=100),
    lambda: schedules.warmup_stable_decay(0.1, warmup_steps=100, stable_steps=500,
                                          decay_steps=300),
    lambda: schedules.constant(0.1),
    lambda: schedules.lambda_lr(0.1, _halving),
    lambda: schedules.warmup_cosine(0.1, total_steps=1000, warmup_steps=100, final_lr=1e-3),
    lambda: schedules.warmup_linear(0.1, total_steps=900, warmup_steps=50, start_lr=1e-3),
]


@pytest.mark.parametrize("make", CATALOGUE, ids=lambda m: repr(m())[:40])
def test_param_groups_equal_torch_lambda_lr_bit_for_bit(make: Any) -> None:
    """Two param groups with their own base rates: LambdaLR's base * (s(t) / s.base_lr), ==."""
    torch = pytest.importorskip("torch")
    s = make()
    bases = (s.base_lr * 0.37, s.base_lr * 2.5)
    ctl = Controller(schedule=s, lr=bases)
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [p], "lr": b} for p, b in zip(params, bases, strict=True)])
    ref = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: s(t) / s.base_lr)  # type: ignore
    for t in range(1001):
        assert ctl.lr == tuple(ref.get_last_lr()), t
        opt.step()
        ref.step()
        ctl.optimizer_step()


def test_a_group_at_the_schedules_own_rate_runs_at_exactly_the_schedule() -> None:
    s = warm_cosine()
    ctl = Controller(schedule=s, lr=(s.base_lr, s.base_lr / 10))
    for t in range(1, 600):
        lr = ctl.optimizer_step().lr
        assert isinstance(lr, tuple) and lr[0] == s(t)


def test_plateau_multiplies_the_schedule_and_respects_min_lr() -> None:
    s = cosine(0.1, total_steps=1000)
    plateau = ReduceLROnPlateau(patience=0, factor=0.5, min_lr=0.02)
    ctl = Controller(plateau, schedule=s)
    ctl.step({"val_loss": 1.0})  # the first value is the best
    for _ in range(10):
        ctl.optimizer_step()
    d = ctl.step({"val_loss": 1.0})  # reduction 1
    assert d.lr_changed and d.lr == pytest.approx(0.5 * s(10))
    for t in range(11, 300):
        assert ctl.optimizer_step().lr == pytest.approx(max(0.5 * s(t), min(s(t), 0.02)))
    for _ in range(5):
        ctl.step({"val_loss": 1.0})  # more reductions, floored at min_lr
    for t in range(300, 1001, 50):
        for _ in range(50 if t > 300 else 0):
            ctl.optimizer_step()
        lr = ctl.lr
        assert isinstance(lr, float)
        assert lr >= min(s(ctl.optimizer_steps), 0.02) - 1e-15
        assert lr <= s(ctl.optimizer_steps) + 1e-15


def test_warmup_from_zero_is_not_floored_by_min_lr() -> None:
    s = warmup(cosine(0.1, total_steps=100), warmup_steps=10)
    ctl = Controller(ReduceLROnPlateau(patience=0, min_lr=0.05), schedule=s)
    assert ctl.lr == 0.0  # a plateau policy never raises the schedule


def test_schedule_must_be_a_trainctl_schedule() -> None:
    with pytest.raises(TypeError, match="'schedule' must be a trainctl schedule"):
        Controller(schedule=lambda t: 0.1)


def test_state_from_another_schedule_is_rejected() -> None:
    state = Controller(schedule=cosine(0.1, total_steps=100)).state_dict()
    with pytest.raises(StateError, match="saved with schedule"):
        Controller(schedule=cosine(0.1, total_steps=200)).load_state_dict(state)


def recipe() -> Controller:
    return Controller(
        ReduceLROnPlateau(patience=1, factor=0.5, min_lr=1e-3, cooldown=1),
        EarlyStopping(patience=6),
        schedule=warm_cosine(),
        lr=(0.1, 0.02),
    )


losses = st.lists(st.sampled_from([1.0, 0.9, 0.8, 0.8, 0.85, math.nan]), max_size=20)


@given(stream=losses, steps_per_round=st.integers(0, 7), cut=st.integers(0, 20))
def test_warmup_cosine_plateau_resume_is_exact(
    stream: list[float], steps_per_round: int, cut: int
) -> None:
    def run(ctl: Controller, part: list[float]) -> list[object]:
        out: list[object] = []
        for v in part:
            for _ in range(steps_per_round):
                out.append(ctl.optimizer_step().lr)
            d = ctl.step({"val_loss": v})
            out.append((d.lr, d.stop, d.reasons))
        return out

    cut = min(cut, len(stream))
    full = run(recipe(), stream)
    first = recipe()
    head = run(first, stream[:cut])
    resumed = recipe()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    assert head + run(resumed, stream[cut:]) == full


def test_a_hand_changed_rate_under_a_schedule_warns_instead_of_vanishing() -> None:
    s = cosine(0.1, total_steps=100)
    ctl = Controller(ReduceLROnPlateau(patience=5), schedule=s)
    ctl.step({"val_loss": 1.0}, lr=float(np.float32(s(0))))  # float32 readback: no warning
    with pytest.warns(UserWarning, match="differs from the scheduled rate"):
        ctl.step({"val_loss": 1.0}, lr=0.5)
    assert ctl.optimizer_step().lr == s(1)  # the schedule owns the rate
