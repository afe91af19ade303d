"""trainctl.schedules on its own: formulas, properties, validation, wrappers, plotting.

Parity with torch, Keras and Hugging Face lives in test_schedules_parity.py.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trainctl.schedules as S
from trainctl.schedules import Schedule

# Strategies ----------------------------------------------------------------------------------

rates = st.floats(1e-4, 10.0)
counts = st.integers(1, 500)
factors = st.floats(0.0, 2.0)
decays = st.floats(0.01, 1.0)


@st.composite
def increasing(draw: st.DrawFn, size: int, low: int = 0, strict: bool = True) -> list[int]:
    """``size`` ints ``>= low``, strictly increasing (or non-decreasing)."""
    gaps = draw(st.lists(st.integers(1 if strict else 0, 300), min_size=size, max_size=size))
    first = low - 1 if strict else low
    return [first + int(g) for g in np.cumsum(gaps)]


def _piecewise(draw: st.DrawFn) -> Schedule:
    bounds = draw(increasing(draw(st.integers(0, 4))))
    values = draw(st.lists(rates, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return S.piecewise_constant(bounds, values)


def _one_cycle(draw: st.DrawFn) -> Schedule:
    total = draw(st.integers(2, 2000))
    three = draw(st.booleans())
    pct = draw(st.sampled_from([0.1, 0.25, 0.3, 0.45, 0.5]))
    try:
        return S.one_cycle(
            draw(rates),
            total,
            pct_start=pct,
            anneal_strategy=draw(st.sampled_from(["cos", "linear"])),
            div_factor=draw(st.floats(1.0, 100.0)),
            final_div_factor=draw(st.floats(1.0, 1e4)),
            three_phase=three,
        )
    except ValueError:  # a zero-length phase for this pct_start * total_steps
        return S.one_cycle(draw(rates), total + 1000)


@st.composite
def plain_schedules(draw: st.DrawFn) -> Schedule:
    """Every closed-form factory with random valid parameters (one_cycle: steps <= total)."""
    kind = draw(st.integers(0, 19))
    lr = draw(rates)
    if kind == 0:
        return S.constant(lr)
    if kind == 1:
        return S.step_decay(lr, draw(counts), draw(decays))
    if kind == 2:
        return S.multistep(
            lr, draw(increasing(draw(st.integers(0, 5)), strict=False)), draw(decays)
        )
    if kind == 3:
        return S.exponential(lr, draw(st.floats(0.9, 1.0)))
    if kind == 4:
        return S.exponential_decay(lr, draw(counts), draw(decays), draw(st.booleans()))
    if kind == 5:
        return S.inverse_time_decay(lr, draw(counts), draw(st.floats(0, 5)), draw(st.booleans()))
    if kind == 6:
        return _piecewise(draw)
    if kind == 7:
        return S.polynomial(
            lr, draw(counts), lr * draw(decays), draw(st.floats(0, 3)), draw(st.booleans())
        )
    if kind == 8:
        return S.linear(lr, draw(factors), draw(factors), draw(counts))
    if kind == 9:
        return S.constant_factor(lr, draw(st.floats(0.0, 1.0)), draw(counts))
    if kind == 10:
        return S.cosine(lr, draw(counts), lr * draw(st.floats(0, 1)))
    if kind == 11:
        return S.cosine_restarts(
            lr,
            draw(st.integers(1, 50)),
            draw(st.sampled_from([1, 2, 3, 1.5, 2.5])),
            lr * draw(st.floats(0, 1)),
            draw(decays),
        )
    if kind == 12:
        return S.cyclic(
            lr,
            lr * draw(st.floats(1, 10)),
            draw(counts),
            draw(st.none() | st.integers(0, 500)),
            draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
            draw(st.floats(0.99, 1.0)),
        )
    if kind == 13:
        return _one_cycle(draw)
    if kind == 14:
        return S.inverse_sqrt(lr, draw(st.integers(0, 500)), draw(st.none() | counts))
    if kind == 15:
        return S.warmup_stable_decay(
            lr,
            draw(st.integers(0, 300)),
            draw(st.integers(0, 300)),
            stable_steps=draw(st.integers(0, 300)),
            warmup_type=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
            decay_type=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
            min_lr_ratio=draw(st.floats(0, 1)),
            num_cycles=draw(st.floats(0.1, 2.0)),
        )
    if kind in (16, 17):
        factory = S.warmup_cosine if kind == 16 else S.warmup_linear
        warm = draw(st.integers(0, 300))
        return factory(
            lr,
            warm + draw(st.integers(1, 500)),
            warm,
            final_lr=lr * draw(st.floats(0, 1)),
            start_lr=lr * draw(st.floats(0, 1)),
        )
    if kind == 18:
        return S.keras_recurrence(lr, _every_third_epoch)
    return S.lambda_lr(lr, _halving, vectorized=draw(st.booleans()))


def _every_third_epoch(epoch: int, lr: float) -> float:
    """A module-level (picklable) Keras-style schedule function."""
    return lr * 0.99 if epoch % 3 == 0 else lr


def _halving(t: Any) -> Any:
    """A module-level (picklable) factor that works on ints and on arrays."""
    return 0.5 ** (t // 100)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    """Plain schedules and the combinators over them, one level deep."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(plain_schedules())
    if kind == 1:
        return S.warmup(draw(plain_schedules()), draw(st.integers(0, 300)), draw(st.floats(0, 1)))
    parts = draw(st.lists(plain_schedules(), min_size=1, max_size=3))
    if kind == 2:
        return S.join(parts, draw(increasing(len(parts) - 1, low=1)))
    return S.chain(*parts)


UNBOUNDED = 10**7


def _limit(s: Any) -> int:
    """The largest step a schedule accepts (a one_cycle anywhere inside stops at its end)."""
    kind = type(s).__name__
    if kind == "_OneCycle":
        return int(s.total_steps)
    if kind == "_KerasRecurrence":
        return 5_000  # folded in Python from step 0: keep the test fast
    if kind == "_Warmup":
        return min(UNBOUNDED, s.warmup_steps + _limit(s.schedule))
    if kind == "_Chain":
        return min(_limit(p) for p in s.schedules)
    if kind == "_Join":
        starts = [0, *s.boundaries]
        ends = [*s.boundaries, None]
        for part, begin, end in zip(s.schedules, starts, ends, strict=True):
            last = begin + _limit(part)
            if end is None or last < end - 1:
                return min(UNBOUNDED, last)
    return UNBOUNDED


def _close(a: Any, b: Any, s: Schedule) -> None:
    # Scalar (math) and vector (numpy) paths compute the same expression; on this machine they
    # agree bit for bit, but numpy may use SIMD libm variants elsewhere, hence a few ulps' room.
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15 * s.base_lr)


# Properties ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(schedules(), st.data())
def test_vectorised_equals_scalar(s: Schedule, data: st.DataObject) -> None:
    high = _limit(s)
    steps = np.array(
        data.draw(st.lists(st.integers(0, high), min_size=1, max_size=40)), dtype=np.int64
    )
    vector = s(steps)
    assert vector.dtype == np.float64 and vector.shape == steps.shape
    scalar = [s(int(t)) for t in steps]
    assert all(type(x) is float for x in scalar)
    _close(vector, scalar, s)
    dense = np.arange(min(high, 700) + 1)
    _close(s(dense), [s(int(t)) for t in dense], s)


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_pickle_round_trip(s: Schedule) -> None:
    copy = pickle.loads(pickle.dumps(s))
    assert copy == s and hash(copy) == hash(s)
    steps = np.arange(_limit(s) if _limit(s) < 300 else 300)
    np.testing.assert_array_equal(copy(steps), s(steps))


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_repr_is_the_factory_call(s: Schedule) -> None:
    if "lambda_lr" in repr(s) or "keras_recurrence" in repr(s):
        return  # a function's repr is not source
    rebuilt = eval(repr(s), {name: getattr(S, name) for name in S.__all__})
    assert rebuilt == s


@settings(max_examples=150, deadline=None)
@given(plain_schedules(), st.integers(0, 300), st.floats(0, 1))
def test_warmup_boundaries(inner: Schedule, warm: int, start: float) -> None:
    s = S.warmup(inner, warm, start_lr=start)
    assert s.base_lr == inner.base_lr
    if warm == 0:
        assert s(0) == inner(0)
        return
    assert s(0) == start
    assert s(warm) == inner(0)
    high = min(_limit(inner), 50)
    for k in range(high + 1):
        assert s(warm + k) == inner(k)
    ramp = s(np.arange(warm + 1))
    if inner(0) >= start:
        assert np.all(np.diff(ramp[:-1]) >= -1e-15)
    else:
        assert np.all(np.diff(ramp[:-1]) <= 1e-15)
    assert ramp[warm - 1] == pytest.approx(start + (inner(0) - start) * (warm - 1) / warm)


@settings(max_examples=150, deadline=None)
@given(st.lists(plain_schedules(), min_size=2, max_size=4), st.data())
def test_join_boundaries(parts: list[Schedule], data: st.DataObject) -> None:
    bounds = data.draw(increasing(len(parts) - 1, low=1))
    s = S.join(parts, bounds)
    assert s.base_lr == parts[0].base_lr
    starts = [0, *bounds]
    for i, part in enumerate(parts):
        begin = starts[i]
        assert s(begin) == part(0)  # each piece restarts at its own step 0
        if i + 1 < len(parts):
            length = bounds[i] - begin
            last = min(length - 1, _limit(part))
            assert s(begin + last) == part(last)


@settings(max_examples=100, deadline=None)
@given(st.lists(plain_schedules(), min_size=1, max_size=4), st.integers(0, 10**5))
def test_chain_is_a_product_of_factors(parts: list[Schedule], t: int) -> None:
    t = min([t, *(_limit(p) for p in parts)])
    s = S.chain(*parts)
    expected = parts[0].base_lr * math.prod(p(t) / p.base_lr for p in parts)
    assert s(t) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert s.base_lr == parts[0].base_lr


# Formulas ------------------------------------------------------------------------------------


def test_seed_example_exponential_staircase() -> None:
    initial_lr, decay_rate, decay_steps = 0.1, 0.96, 1000
    s = S.exponential_decay(initial_lr, decay_steps, decay_rate, staircase=True)
    steps = np.arange(0, 10_000, 7)
    expected = [initial_lr * decay_rate ** (int(t) // decay_steps) for t in steps]
    np.testing.assert_allclose(s(steps), expected, rtol=1e-15)


def test_cosine_holds_final_lr_after_total_steps() -> None:
    s = S.cosine(0.1, 100, final_lr=0.001)
    assert s(0) == 0.1
    assert s(50) == pytest.approx(0.0505)
    np.testing.assert_array_equal(s(np.array([100, 101, 10**6])), [0.001] * 3)


def test_cosine_restarts_cycle_starts_and_decay() -> None:
    s = S.cosine_restarts(1.0, 3, 3, final_lr=0.0, decay=0.5)
    starts = [0, 3, 12, 39, 120, 363]  # 3 * (3**i - 1) / 2
    for i, start in enumerate(starts):
        assert s(start) == 0.5**i
        if start:
            assert s(start - 1) < s(start)
    # a fractional period_mult: cycles of 4, 6, 9, 13.5 from 0, 4, 10, 19
    f = S.cosine_restarts(1.0, 4, 1.5)
    assert [f(t) for t in (0, 4, 10, 19)] == [1.0, 1.0, 1.0, 1.0]
    assert f(32) < 0.01 and f(33) > 0.99  # the 4th restart is at 32.5


def test_cyclic_exp_range_and_default_down() -> None:
    s = S.cyclic(0.1, 1.0, step_size_up=10, mode="exp_range", gamma=0.9)
    assert s.step_size_down == 10  # type: ignore[attr-defined]
    assert s(10) == pytest.approx(0.1 + 0.9 * 0.9**10)
    assert s(20) == pytest.approx(0.1)


def test_one_cycle_past_total_steps_raises() -> None:
    s = S.one_cycle(1.0, 100)
    assert math.isfinite(s(100))  # torch computes step total_steps too
    with pytest.raises(ValueError, match=r"'step' must be <= total_steps \(100\) .*got 101"):
        s(101)
    with pytest.raises(ValueError, match=r"got 150"):
        s(np.array([0, 150, 120]))
    with pytest.raises(ValueError, match=r"got 101"):
        S.warmup(s, 0)(101)


def test_one_cycle_rejects_zero_length_phase() -> None:
    with pytest.raises(ValueError, match="'pct_start' must not give a phase of zero length"):
        S.one_cycle(1.0, 10, pct_start=0.1)  # 0.1 * 10 - 1 == 0: torch divides by zero
    with pytest.raises(ValueError, match="zero length"):
        S.one_cycle(1.0, 10, pct_start=1.0)


def test_inverse_sqrt_and_wsd_formulas() -> None:
    s = S.inverse_sqrt(2.0, 100)
    assert s(50) == 1.0 and s(100) == 2.0 and s(400) == pytest.approx(2.0 / math.sqrt(4))
    w = S.warmup_stable_decay(1.0, 10, 20, total_steps=100, min_lr_ratio=0.1)
    assert w.stable_steps == 70  # type: ignore[attr-defined]
    assert w(0) == pytest.approx(0.1) and w(10) == 1.0 and w(79) == 1.0
    assert w(90) == pytest.approx(0.55) and w(100) == pytest.approx(0.1) and w(10**6) == 0.1


@settings(max_examples=150, deadline=None)
@given(rates, st.integers(0, 300), st.integers(1, 500), st.floats(0, 1), st.floats(0, 1))
def test_one_call_warmups_end_on_time(
    lr: float, warm: int, decay: int, final: float, start: float
) -> None:
    """``total_steps`` counts the warmup: the peak at ``warmup_steps``, ``final_lr`` at
    ``total_steps`` and after, and the two-call form with the inner schedule shortened by the
    warmup is the same curve."""
    total = warm + decay
    final_lr, start_lr = lr * final, lr * start
    c = S.warmup_cosine(lr, total, warm, final_lr=final_lr, start_lr=start_lr)
    lin = S.warmup_linear(lr, total, warm, final_lr=final_lr, start_lr=start_lr)
    for s in (c, lin):
        assert s.base_lr == lr
        assert s(warm) == pytest.approx(lr, rel=1e-12)
        assert s(total) == pytest.approx(final_lr, rel=1e-12, abs=1e-15 * lr)
        assert s(total + 1) == s(total) == s(total + 10**6)
        if warm:
            assert s(0) == start_lr
    steps = np.arange(total + 20)
    two_call_cosine = S.warmup(S.cosine(lr, decay, final_lr), warm, start_lr)
    _close(c(steps), two_call_cosine(steps), c)
    two_call_linear = S.warmup(S.polynomial(lr, decay, final_lr, power=1.0), warm, start_lr)
    _close(lin(steps), two_call_linear(steps), lin)


def test_one_call_warmups_refuse_a_total_inside_the_warmup() -> None:
    for factory in (S.warmup_cosine, S.warmup_linear):
        with pytest.raises(
            ValueError,
            match=r"'total_steps' must be > warmup_steps = 10 .*counts the warmup.*got 10",
        ):
            factory(0.1, 10, 10)
        with pytest.raises(ValueError, match=r"'warmup_steps' must be >= 0, got -1"):
            factory(0.1, 10, -1)
        with pytest.raises(ValueError, match=r"'final_lr' must be >= 0"):
            factory(0.1, 10, 1, final_lr=-1.0)


def test_per_group_rates_scale_from_base_lr() -> None:
    for s, base in [
        (S.cyclic(0.01, 0.1, 10), 0.01),
        (S.one_cycle(0.5, 100), 0.5),
        (S.piecewise_constant([5], [0.3, 0.03]), 0.3),
        (S.warmup(S.cosine(0.2, 10), 5), 0.2),
        (S.join([S.constant(0.7), S.constant(0.1)], [3]), 0.7),
        (S.chain(S.constant(0.4), S.exponential(2.0, 0.5)), 0.4),
        (S.lambda_lr(0.9, _halving), 0.9),
        (S.keras_recurrence(0.6, lambda e, lr: lr), 0.6),
    ]:
        assert s.base_lr == base


# Steps ---------------------------------------------------------------------------------------


def test_step_types_and_shapes() -> None:
    s = S.step_decay(1.0, 2, 0.5)
    assert s(np.int64(4)) == 0.25 and type(s(np.int32(4))) is float
    grid = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(s(grid), [[1.0, 1.0, 0.5], [0.5, 0.25, 0.25]])
    assert s(np.array(3)).shape == ()
    assert s(np.array([], dtype=np.int64)).shape == (0,)
    for bad in (1.0, True, "3", [1, 2], None):
        with pytest.raises(TypeError, match="'step' must be an int or an integer numpy array"):
            s(bad)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="dtype float64"):
        s(np.arange(3.0))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"^'step' must be >= 0, got -1$"):
        s(-1)
    with pytest.raises(ValueError, match=r"^'step' must be >= 0, got -5$"):
        s(np.array([3, -5, -2]))


def test_schedules_are_frozen() -> None:
    s = S.cosine(0.1, 10)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.lr = 0.2  # type: ignore[misc]
    assert s == S.cosine(0.1, 10) and s != S.cosine(0.1, 11)
    assert repr(s) == "cosine(lr=0.1, total_steps=10, final_lr=0.0)"


# Validation ----------------------------------------------------------------------------------

BAD = [
    (lambda: S.step_decay(0.1, 0), ValueError, "'step_size' must be >= 1, got 0"),
    (lambda: S.step_decay(0.1, 2.0), TypeError, "'step_size' must be an int, got float 2.0"),
    (lambda: S.step_decay(0.1, 3, gamma=0.0), ValueError, "'gamma' must be > 0, got 0.0"),
    (lambda: S.step_decay(-0.1, 3), ValueError, "'lr' must be > 0, got -0.1"),
    (lambda: S.constant(float("nan")), ValueError, "'lr' must be finite, got nan"),
    (lambda: S.constant("0.1"), TypeError, "'lr' must be a real number, got str '0.1'"),
    (
        lambda: S.multistep(0.1, [5, 2]),
        ValueError,
        "'milestones' must be non-decreasing, got (5, 2)",
    ),
    (lambda: S.multistep(0.1, [-1]), ValueError, "'milestones' must be >= 0, got -1"),
    (lambda: S.exponential(0.1, -0.5), ValueError, "'gamma' must be > 0, got -0.5"),
    (lambda: S.exponential_decay(0.1, 0, 0.5), ValueError, "'decay_steps' must be >= 1, got 0"),
    (
        lambda: S.exponential_decay(0.1, 5, 0.5, staircase=1),
        TypeError,
        "'staircase' must be a bool, got int 1",
    ),
    (lambda: S.inverse_time_decay(0.1, 5, -1.0), ValueError, "'decay_rate' must be >= 0, got -1.0"),
    (
        lambda: S.piecewise_constant([10, 10], [0.1, 0.01, 0.001]),
        ValueError,
        "'boundaries' must be strictly increasing, got (10, 10)",
    ),
    (
        lambda: S.piecewise_constant([10], [0.1]),
        ValueError,
        "'values' must have len(boundaries) + 1 = 2 elements, got 1",
    ),
    (
        lambda: S.piecewise_constant([10], [0.0, 0.1]),
        ValueError,
        "'values[0]' must be > 0, got 0.0",
    ),
    (lambda: S.polynomial(0.1, 0), ValueError, "'total_steps' must be >= 1, got 0"),
    (lambda: S.polynomial(0.1, 10, power=-1.0), ValueError, "'power' must be >= 0, got -1.0"),
    (lambda: S.linear(0.1, start_factor=-0.5), ValueError, "'start_factor' must be >= 0, got -0.5"),
    (
        lambda: S.constant_factor(0.1, total_steps=0),
        ValueError,
        "'total_steps' must be >= 1, got 0",
    ),
    (lambda: S.constant_factor(0.1, factor=2), ValueError, "'factor' must be <= 1.0, got 2.0"),
    (
        lambda: S.warmup_stable_decay(0.1, 10, 10, stable_steps=10, min_lr_ratio=2),
        ValueError,
        "'min_lr_ratio' must be <= 1.0, got 2.0",
    ),
    (
        lambda: S.warmup_stable_decay(0.1, 10, 10, stable_steps=10, num_cycles=-3),
        ValueError,
        "'num_cycles' must be > 0.0, got -3.0",
    ),
    (lambda: S.cosine(0.1, 10, final_lr=-1e-3), ValueError, "'final_lr' must be >= 0, got -0.001"),
    (
        lambda: S.cosine_restarts(0.1, 10, period_mult=0.5),
        ValueError,
        "'period_mult' must be >= 1, got 0.5",
    ),
    (lambda: S.cosine_restarts(0.1, 0), ValueError, "'period' must be >= 1, got 0"),
    (lambda: S.cyclic(0.1, 0.05), ValueError, "'max_lr' must be >= 0.1, got 0.05"),
    (
        lambda: S.cyclic(0.01, 0.1, mode="cosine"),
        ValueError,
        "'mode' must be one of 'triangular', 'triangular2', 'exp_range', got 'cosine'",
    ),
    (lambda: S.cyclic(0.01, 0.1, gamma=0), ValueError, "'gamma' must be > 0, got 0"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.5), ValueError, "'pct_start' must be <= 1, got 1.5"),
    (
        lambda: S.one_cycle(0.1, 100, anneal_strategy="cosine"),
        ValueError,
        "'anneal_strategy' must be one of 'cos', 'linear', got 'cosine'",
    ),
    (lambda: S.inverse_sqrt(0.1, -1), ValueError, "'warmup_steps' must be >= 0, got -1"),
    (
        lambda: S.warmup_stable_decay(0.1, 10, 10),
        TypeError,
        "warmup_stable_decay() needs 'total_steps' or 'stable_steps'",
    ),
    (
        lambda: S.warmup_stable_decay(0.1, 10, 10, total_steps=15),
        ValueError,
        "'total_steps' must be >= 20, got 15",
    ),
    (
        lambda: S.warmup_stable_decay(0.1, 10, 10, total_steps=50, stable_steps=5),
        ValueError,
        "'total_steps' must be warmup_steps + stable_steps + decay_steps = 25, got 50",
    ),
    (
        lambda: S.warmup_stable_decay(0.1, 1, 1, 2, decay_type="cos"),
        ValueError,
        "'decay_type' must be one of 'linear', 'cosine', '1-sqrt', got 'cos'",
    ),
    (lambda: S.warmup(0.1, 10), TypeError, "'schedule' must be a Schedule, got float 0.1"),  # type: ignore[arg-type]
    (lambda: S.warmup(S.constant(0.1), -1), ValueError, "'warmup_steps' must be >= 0, got -1"),
    (
        lambda: S.join([S.constant(0.1), S.constant(0.2)], []),
        ValueError,
        "'boundaries' must have len(schedules) - 1 = 1 elements, got 0",
    ),
    (lambda: S.join([], []), ValueError, "'schedules' must hold at least 1 schedule, got 0"),
    (lambda: S.chain(), ValueError, "'schedules' must hold at least 1 schedule, got 0"),
    (lambda: S.lambda_lr(0.1, 3), TypeError, "'fn' must be callable, got int 3"),  # type: ignore[arg-type]
    (
        lambda: S.lambda_lr(0.1, lambda t: "x")(2),
        TypeError,
        "'fn' must return a real number at step 2, got str 'x'",
    ),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD, ids=[m for *_, m in BAD])
def test_bad_arguments(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        build()
    assert str(info.value) == message


# Wrappers of user functions ------------------------------------------------------------------


def test_keras_recurrence_seed_example_worked() -> None:
    """``lambda epoch, lr: lr if epoch < 10 else lr * exp(-0.1)``: flat for 10 epochs, then
    ``lr * exp(-0.1) ** (epoch - 9)``."""
    s = S.keras_recurrence(0.01, lambda epoch, lr: lr if epoch < 10 else lr * math.exp(-0.1))
    expected = [0.01 if e < 10 else 0.01 * math.exp(-0.1) ** (e - 9) for e in range(40)]
    np.testing.assert_allclose(s(np.arange(40)), expected, rtol=1e-13)
    assert s(9) == 0.01 and s(10) == pytest.approx(0.01 * math.exp(-0.1), rel=1e-15)


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, epoch: int, lr: float) -> float:
        self.calls += 1
        return lr * 0.9


def test_keras_recurrence_memo_is_amortised() -> None:
    fn = _Counting()
    s = S.keras_recurrence(1.0, fn)
    for t in range(500):
        assert s(t) == pytest.approx(0.9 ** (t + 1))
    assert fn.calls == 500  # each step folded once, in order
    s(250)
    s(np.arange(100, 300))
    assert fn.calls == 500
    s(np.array([700, 3]))
    assert fn.calls == 701


def by_epoch(epoch: int) -> float:
    return 0.1 / (1 + epoch)


def test_keras_recurrence_one_argument_form_and_pickle() -> None:
    s = S.keras_recurrence(0.1, by_epoch)
    np.testing.assert_array_equal(s(np.arange(5)), [by_epoch(e) for e in range(5)])
    copy = pickle.loads(pickle.dumps(s))
    assert copy == s and copy(4) == s(4)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(S.keras_recurrence(0.1, lambda e, lr: lr))


def test_lambda_lr_vectorized_contract() -> None:
    s = S.lambda_lr(0.2, _halving, vectorized=True)
    np.testing.assert_array_equal(s(np.array([0, 100, 250])), [0.2, 0.1, 0.05])
    bad = S.lambda_lr(0.2, lambda t: np.ones(3), vectorized=True)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        bad(np.array([1, 2]))


# Plotting and imports ------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = S.plot(S.warmup(S.cosine(0.1, 900), 100), 1000, tmp_path / "lr.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install trainctl\[plot\]"):
        S.plot(S.constant(0.1), 10, "never.png")


def test_import_pulls_in_no_framework() -> None:
    code = (
        "import sys, trainctl.schedules\n"
        "heavy = {'torch', 'keras', 'lightning', 'tensorflow', 'jax', 'matplotlib'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
