"""trainctl.ReduceLROnPlateau(rules="torch") against the real torch scheduler, side by side.

Every stream drives a real ``torch.optim.lr_scheduler.ReduceLROnPlateau`` attached to a real
``torch.optim.SGD`` with TWO param groups (different rates, and a ``min_lr`` per group), and a
``trainctl.Controller`` holding ``trainctl.ReduceLROnPlateau(rules="torch", ...)`` with the same
arguments (``threshold`` is trainctl's ``min_delta``). After every ``scheduler.step(v)`` /
``ctl.step({"val_loss": v})`` the rates in the optimizer's param groups must equal the controller's
``decision.lr`` exactly (float equality, no tolerance), and ``best``, ``num_bad_epochs`` (trainctl's
``wait``) and ``cooldown_counter`` must agree. The controller is never told the optimizer's rates:
it carries its own, as a user who applies ``decision.lr`` to the optimizer relies on.

Streams (``_streams.metric_stream``, float64, not rounded to float32 since torch takes
``float(metrics)``) contain plateaus, exact ties, values exactly ``threshold`` away from the best in
absolute and relative terms (and one ulp either side), slow improvements, negative values, NaN,
``+inf`` and ``-inf``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
from _streams import DELTAS, FACTORS, metric_stream, pick, same_float
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import trainctl

torch = pytest.importorskip("torch")
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchPlateau  # noqa: E402

N_STREAMS = 5000
SEED = 20240613


@dataclass(frozen=True)
class Config:
    """One ReduceLROnPlateau configuration, in torch's terms."""

    mode: Literal["min", "max"]
    factor: float
    patience: int
    threshold: float
    threshold_mode: Literal["rel", "abs"]
    cooldown: int
    min_lr: float | tuple[float, ...]  # a float: the same for every group
    eps: float | None  # None: each side's default (1e-8)
    lrs: float | tuple[float, ...]  # a float: one param group, and a float rate in trainctl


def random_config(rng: np.random.Generator) -> Config:
    """A configuration that often sits on an edge (patience 0, min_lr reachable, eps boundary)."""
    factor = pick(rng, FACTORS)
    lrs = (
        pick(rng, [0.1, 0.5, 1.0, 1e-3, float(10 ** rng.uniform(-6, 0))]),
        pick(rng, [0.01, 0.3, 0.05, 1e-4, float(10 ** rng.uniform(-6, 0))]),
    )

    def min_lr_for(lr: float) -> float:
        k = int(rng.integers(0, 5))
        return pick(
            rng,
            [0.0, 0.0, lr, lr * factor**k, lr * factor ** (k + 0.5), lr * 2, 1e-7, 1e-4],
        )

    eps_options: list[float | None] = [None, None, 0.0, 1e-12, 1e-3, lrs[0] * (1 - factor)]
    eps = eps_options[int(rng.integers(len(eps_options)))]
    threshold = pick(rng, [*DELTAS, 0.9, 1.0, 1.5])
    mode = "min" if rng.random() < 0.5 else "max"
    threshold_mode = "rel" if rng.random() < 0.5 else "abs"
    if mode == "min" and threshold_mode == "rel" and threshold >= 1.0:
        threshold = 0.9  # trainctl refuses it: a positive loss can never improve by 100% or more
    return Config(
        mode=mode,  # type: ignore[arg-type]
        factor=factor,
        patience=int(rng.choice([0, 0, 1, 2, 3, 5])),
        threshold=threshold,
        threshold_mode=threshold_mode,  # type: ignore[arg-type]
        cooldown=int(rng.choice([0, 0, 1, 2, 4])),
        min_lr=(min_lr_for(lrs[0]), min_lr_for(lrs[1])) if rng.random() < 0.75 else 1e-4,
        eps=eps,
        lrs=lrs,
    )


def make_torch(cfg: Config) -> tuple[Any, Any]:
    """A real SGD optimizer with two param groups and its real ReduceLROnPlateau."""
    lrs = cfg.lrs if isinstance(cfg.lrs, tuple) else (cfg.lrs,)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    optimizer = torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)]
    )
    kwargs: dict[str, Any] = {} if cfg.eps is None else {"eps": cfg.eps}
    scheduler = TorchPlateau(
        optimizer,
        mode=cfg.mode,
        factor=cfg.factor,
        patience=cfg.patience,
        threshold=cfg.threshold,
        threshold_mode=cfg.threshold_mode,
        cooldown=cfg.cooldown,
        min_lr=list(cfg.min_lr) if isinstance(cfg.min_lr, tuple) else cfg.min_lr,
        **kwargs,
    )
    return optimizer, scheduler


def make_ours(cfg: Config) -> trainctl.Controller:
    """The trainctl twin of :func:`make_torch`."""
    policy = trainctl.ReduceLROnPlateau(
        "val_loss",
        rules="torch",
        mode=cfg.mode,
        factor=cfg.factor,
        patience=cfg.patience,
        min_delta=cfg.threshold,
        threshold_mode=cfg.threshold_mode,
        cooldown=cfg.cooldown,
        min_lr=cfg.min_lr,
        eps=cfg.eps,
    )
    return trainctl.Controller(policy, lr=cfg.lrs)


def compare(cfg: Config, stream: Sequence[float]) -> int:
    """Run both side by side, asserting agreement after every step; return the reductions."""
    optimizer, scheduler = make_torch(cfg)
    ctl = make_ours(cfg)
    worst = math.inf if cfg.mode == "min" else -math.inf
    reductions = 0
    for i, v in enumerate(stream):
        scheduler.step(v)
        d = ctl.step({"val_loss": v})
        rates = tuple(float(g["lr"]) for g in optimizer.param_groups)
        theirs = rates if isinstance(cfg.lrs, tuple) else rates[0]
        mine = d.details[0]
        ours_best = worst if mine.best is None else mine.best
        got = (d.lr, ours_best, mine.wait, mine.cooldown_counter)
        want = (theirs, scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter)
        assert got[0] == want[0] and same_float(got[1], want[1]) and got[2:] == want[2:], (
            f"step {i} (value {v!r}) of {list(stream)!r} with {cfg}: "
            f"torch (lr, best, bad epochs, cooldown) = {want}, trainctl = {got}"
        )
        reductions += d.lr_changed
    return reductions


def test_random_streams_lr_after_every_step() -> None:
    """5,000 random configurations x streams: the same rates, bit for bit, after every step."""
    rng = np.random.default_rng(SEED)
    reductions = 0
    for _ in range(N_STREAMS):
        cfg = random_config(rng)
        stream = metric_stream(
            rng, int(rng.integers(5, 60)), min_delta=cfg.threshold, mode=cfg.mode, float32=False
        )
        reductions += compare(cfg, [x for x in stream if x is not None])
    # the streams must exercise reductions, not only agree that nothing happened
    assert reductions > N_STREAMS


def test_random_streams_nonfinite_and_negative() -> None:
    """Streams dense in NaN / +-inf and negated values (torch #47513: rel mode, negative best)."""
    rng = np.random.default_rng(SEED + 1)
    for _ in range(1500):
        cfg = random_config(rng)
        stream = [
            x
            for x in metric_stream(
                rng,
                int(rng.integers(3, 30)),
                min_delta=cfg.threshold,
                mode=cfg.mode,
                float32=False,
            )
            if x is not None
        ]
        for j in rng.choice(len(stream), size=min(3, len(stream)), replace=False):
            special = [math.nan, math.inf, -math.inf, -stream[int(j)], -stream[0]]
            stream[int(j)] = pick(rng, special)
        compare(cfg, stream)


def test_random_streams_one_group_float_lr() -> None:
    """One param group, a float rate and a scalar min_lr (the common single-optimizer case)."""
    rng = np.random.default_rng(SEED + 2)
    for _ in range(1000):
        cfg = random_config(rng)
        lr = cfg.lrs[0] if isinstance(cfg.lrs, tuple) else cfg.lrs
        min_lr = cfg.min_lr[0] if isinstance(cfg.min_lr, tuple) else cfg.min_lr
        cfg = dataclasses.replace(cfg, lrs=lr, min_lr=min_lr)
        stream = metric_stream(
            rng, int(rng.integers(5, 40)), min_delta=cfg.threshold, mode=cfg.mode, float32=False
        )
        compare(cfg, [x for x in stream if x is not None])


@pytest.mark.parametrize("patience", [0, 1, 3])
@pytest.mark.parametrize("cooldown", [0, 2])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_plateau_of_constant_values(
    patience: int, cooldown: int, mode: Literal["min", "max"], threshold_mode: Literal["rel", "abs"]
) -> None:
    """A flat metric: reductions every ``patience + 1`` (+ cooldown) steps, down to min_lr."""
    cfg = Config(mode, 0.5, patience, 1e-4, threshold_mode, cooldown, (1e-3, 0.0), None, (0.1, 0.3))
    assert compare(cfg, [1.0] * 60) > 0


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from([0.0, 1.0, -1.0, 0.9, 1.1, 0.5, math.nan, math.inf, -math.inf]),
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    ),
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    threshold=st.sampled_from([0.0, 1e-4, 0.1, 0.5, 1.0]),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    factor=st.sampled_from([0.1, 0.5, 0.9]),
    min_lr=st.tuples(st.sampled_from([0.0, 1e-3, 0.05]), st.sampled_from([0.0, 1e-4, 0.3])),
    eps=st.sampled_from([None, 0.0, 1e-2]),
)
def test_hypothesis_streams(
    values: list[float],
    mode: Literal["min", "max"],
    threshold_mode: Literal["rel", "abs"],
    threshold: float,
    patience: int,
    cooldown: int,
    factor: float,
    min_lr: tuple[float, float],
    eps: float | None,
) -> None:
    assume(not (mode == "min" and threshold_mode == "rel" and threshold >= 1.0))  # refused
    cfg = Config(
        mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps, (0.1, 0.3)
    )
    compare(cfg, values)


# -- torch's own test traces (test/optim/test_lrscheduler.py), run beside trainctl ------------

PLATEAU_TRACES = {
    # name: (config, metrics, per-group targets quoted from torch's test suite)
    "plateau2": (
        Config("min", 0.1, 5, 0.1, "abs", 0, (0.0, 0.0), None, (0.5, 0.5)),
        [10 - i * 0.0165 for i in range(22)],
        [[0.5] * 6 + [0.05] * 7 + [0.005] * 7 + [0.0005] * 2] * 2,
    ),
    "plateau7": (
        Config("min", 0.1, 5, 0.1, "rel", 5, (0.0, 0.0), None, (0.5, 0.5)),
        [1.0] * 7 + [0.6] + [0.5] * 12,
        [[0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4] * 2,
    ),
    "plateau8": (
        Config("max", 0.1, 5, 0.1, "rel", 5, (0.4, 0.3), None, (0.5, 0.5)),
        [1.5 * (1.005**i) for i in range(20)],
        [[0.5] * 6 + [0.4] * 14, [0.5] * 6 + [0.3] * 14],
    ),
}


@pytest.mark.parametrize("name", sorted(PLATEAU_TRACES))
def test_torch_suite_traces(name: str) -> None:
    """torch's plateau2/7/8: torch reproduces its own targets, and trainctl reproduces torch."""
    cfg, metrics, targets = PLATEAU_TRACES[name]
    optimizer, scheduler = make_torch(cfg)
    ctl = make_ours(cfg)
    for i, v in enumerate(metrics):
        scheduler.step(v)
        theirs = tuple(float(g["lr"]) for g in optimizer.param_groups)
        assert theirs == pytest.approx(tuple(t[i] for t in targets), abs=1e-5)  # torch's atol
        assert ctl.step({"val_loss": v}).lr == theirs, f"{name}: step {i}"


# -- known divergences -------------------------------------------------------------------------


@pytest.mark.parametrize("threshold_mode", ["abs", "rel"])
def test_negative_threshold(threshold_mode: Literal["rel", "abs"]) -> None:
    """torch accepts a negative threshold and uses it signed; so must rules="torch"."""
    cfg = Config("min", 0.5, 0, -0.1, threshold_mode, 0, (0.0, 0.0), None, (0.1, 0.3))
    compare(cfg, [1.0, 1.05, 1.05])
