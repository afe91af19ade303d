"""The torch LR adapters against torch itself: the drop-in ``ReduceLROnPlateau`` beside torch's own
class, and ``ScheduleLR`` beside torch's ``LambdaLR`` and inside a real Lightning ``Trainer``.

Plateau parity is exact: after every ``step`` the rates in both optimizers' param groups are equal
as floats (no tolerance), and so are ``best``, ``num_bad_epochs``, ``cooldown_counter``,
``last_epoch`` and ``get_last_lr()``. Streams come from ``_streams.metric_stream`` (plateaus, ties,
values exactly ``threshold`` away from the best and one ulp either side, NaN, +-inf), with metrics
sometimes given as tensors, and rates sometimes changed by hand between steps.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import attrs
import numpy as np
import pytest
import torch
from _streams import DELTAS, FACTORS, metric_stream, pick, same_float
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchPlateau

import trainctl
from trainctl import schedules
from trainctl.adapters.torch import ReduceLROnPlateau, ScheduleLR

SEED = 20250917
N_STREAMS = 2000


# -- helpers -------------------------------------------------------------------------------------


def make_optimizer(lrs: Sequence[float | torch.Tensor]) -> torch.optim.Optimizer:
    """SGD with one single-parameter param group per rate."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)])


def rates(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


@dataclass(frozen=True)
class Config:
    """One ReduceLROnPlateau configuration, in torch's keyword arguments."""

    mode: Literal["min", "max"] = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = 0
    min_lr: float | tuple[float, ...] = 0
    eps: float | None = None  # None: the default (1e-8)
    lrs: tuple[float, ...] = (0.1, 0.3)

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "min_lr": list(self.min_lr) if isinstance(self.min_lr, tuple) else self.min_lr,
        }
        if self.eps is not None:
            out["eps"] = self.eps
        return out

    def build(self, cls: type[TorchPlateau]) -> tuple[torch.optim.Optimizer, TorchPlateau]:
        optimizer = make_optimizer(self.lrs)
        return optimizer, cls(optimizer, **self.kwargs())


def random_config(rng: np.random.Generator) -> Config:
    """A configuration that often sits on an edge (patience 0, min_lr reachable, eps large)."""
    factor = pick(rng, FACTORS)
    lrs = (
        pick(rng, [0.1, 0.5, 1.0, 1e-3, float(10 ** rng.uniform(-6, 0))]),
        pick(rng, [0.01, 0.3, 0.05, 1e-4, float(10 ** rng.uniform(-6, 0))]),
    )

    def min_lr_for(lr: float) -> float:
        k = int(rng.integers(0, 5))
        return pick(rng, [0.0, 0.0, lr, lr * factor**k, lr * factor ** (k + 0.5), lr * 2, 1e-7])

    eps_options = [None, None, 0.0, 1e-12, 1e-3, 0.05, 1.0, lrs[0] * (1 - factor)]
    mode = "min" if rng.random() < 0.5 else "max"
    threshold = pick(rng, [*DELTAS, 0.9, 1.0, 1.5, -0.1])
    threshold_mode = "rel" if rng.random() < 0.5 else "abs"
    if mode == "min" and threshold_mode == "rel" and threshold >= 1.0:
        threshold = 0.9  # refused by trainctl (see test_arguments_torch_accepts_but_...)
    return Config(
        mode=mode,  # type: ignore[arg-type]
        factor=factor,
        patience=int(rng.choice([0, 0, 1, 2, 3, 5])),
        threshold=threshold,
        threshold_mode=threshold_mode,  # type: ignore[arg-type]
        cooldown=int(rng.choice([0, 0, 1, 2, 4])),
        min_lr=(
            (min_lr_for(lrs[0]), min_lr_for(lrs[1]))
            if rng.random() < 0.7
            else pick(rng, [0.0, 1e-4, 1e-7])
        ),
        eps=eps_options[int(rng.integers(len(eps_options)))],
        lrs=lrs,
    )


def random_stream(rng: np.random.Generator, cfg: Config, n: int) -> list[float]:
    stream = [
        x
        for x in metric_stream(rng, n, min_delta=abs(cfg.threshold), mode=cfg.mode, float32=False)
        if x is not None
    ]
    for j in rng.choice(len(stream), size=min(2, len(stream)), replace=False):
        if rng.random() < 0.3:  # extra non-finite and negated values (torch #47513)
            stream[int(j)] = pick(rng, [math.nan, math.inf, -math.inf, -stream[int(j)]])
    return stream


def observed(scheduler: TorchPlateau) -> tuple[Any, ...]:
    """What a user reads from a plateau scheduler."""
    return (
        rates(scheduler.optimizer),
        scheduler.best,
        scheduler.num_bad_epochs,
        scheduler.cooldown_counter,
        scheduler.last_epoch,
        [float(x) for x in scheduler.get_last_lr()],
    )


def assert_same(mine: TorchPlateau, theirs: TorchPlateau, where: str | Callable[[], str]) -> None:
    """Equal observations (``where`` says where; a callable is only rendered on a failure)."""
    got, want = observed(mine), observed(theirs)
    if got[0] == want[0] and same_float(got[1], want[1]) and got[2:] == want[2:]:
        return
    place = where() if callable(where) else where
    raise AssertionError(
        f"{place}: (rates, best, bad epochs, cooldown, last_epoch, last_lr) = {got}, torch {want}"
    )


def run_side_by_side(
    cfg: Config, stream: Sequence[float], rng: np.random.Generator | None = None
) -> int:
    """Step ours and torch's with the same values; compare after every step; return reductions.

    With ``rng``, metrics are sometimes passed as tensors and rates sometimes set by hand (on
    both optimizers alike) between steps.
    """
    opt_t, theirs = cfg.build(TorchPlateau)
    opt_m, mine = cfg.build(ReduceLROnPlateau)
    assert_same(mine, theirs, "after construction")
    reductions = 0
    for i, v in enumerate(stream):
        value: Any = v
        if rng is not None:
            r = rng.random()
            if r < 0.05:
                value = torch.tensor(v, dtype=torch.float64)
            elif r < 0.08:
                value = torch.tensor([v], dtype=torch.float64)
            elif r < 0.1:
                value = np.float64(v)
            if rng.random() < 0.03:
                g = int(rng.integers(len(cfg.lrs)))
                by_hand = float(10 ** rng.uniform(-6, 0))
                opt_t.param_groups[g]["lr"] = by_hand
                opt_m.param_groups[g]["lr"] = by_hand
        before = rates(opt_t)
        theirs.step(value)
        mine.step(value)
        reductions += rates(opt_t) != before
        assert_same(
            mine, theirs, lambda i=i, v=v: f"step {i} (value {v!r}) of {list(stream)!r} with {cfg}"
        )
    return reductions


# -- ReduceLROnPlateau: parity with torch --------------------------------------------------------


def test_is_a_torch_plateau_scheduler() -> None:
    """Lightning and Hugging Face find plateau schedulers with isinstance (they pass the metric)."""
    _, mine = Config().build(ReduceLROnPlateau)
    assert isinstance(mine, TorchPlateau)
    assert isinstance(mine, LRScheduler)


def test_random_streams_exact_parity() -> None:
    """2,000 random configurations and streams: identical rates and counters after every step."""
    rng = np.random.default_rng(SEED)
    reductions = 0
    for _ in range(N_STREAMS):
        cfg = random_config(rng)
        reductions += run_side_by_side(cfg, random_stream(rng, cfg, 60), rng)
    assert reductions > N_STREAMS  # the streams exercise reductions, not only agreement on none


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("eps", [None, 0.0, 0.04, 10.0])
def test_flat_metric_reaches_min_lr(
    mode: Literal["min", "max"], threshold_mode: Literal["rel", "abs"], eps: float | None
) -> None:
    """A flat metric: reductions every patience + 1 + cooldown steps, stopping at min_lr / eps."""
    cfg = Config(mode, 0.5, 1, 1e-4, threshold_mode, 2, (1e-3, 0.0), eps, (0.1, 0.3))
    run_side_by_side(cfg, [1.0] * 60)


def test_nonfinite_metrics() -> None:
    """NaN is never an improvement; -inf (min) / +inf (max) becomes the best for good."""
    for mode in ("min", "max"):
        for stream in (
            [math.nan] * 8,
            [math.inf, 1.0, math.nan, 0.5, -math.inf, 0.1, 0.0, math.nan],
            [-math.inf, math.inf, 2.0, math.nan, 3.0, math.inf, 1.0, 1.0],
        ):
            cfg = Config(mode, 0.5, 0, 0.1, "rel", 1, 0.0, None, (0.1, 0.3))  # type: ignore[arg-type]
            run_side_by_side(cfg, stream)
            run_side_by_side(Config(**{**cfg.__dict__, "threshold_mode": "abs"}), stream)


PLATEAU_TRACES = {
    # torch's test/optim/test_lrscheduler.py: (config, metrics, per-group targets)
    "plateau2": (
        Config("min", 0.1, 5, 0.1, "abs", 0, 0, None, (0.5, 0.5)),
        [10 - i * 0.0165 for i in range(22)],
        [[0.5] * 6 + [0.05] * 7 + [0.005] * 7 + [0.0005] * 2] * 2,
    ),
    "plateau7": (
        Config("min", 0.1, 5, 0.1, "rel", 5, 0, None, (0.5, 0.5)),
        [1.0] * 7 + [0.6] + [0.5] * 12,
        [[0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 3] * 2,
    ),
    "plateau8": (
        Config("max", 0.1, 5, 0.1, "rel", 5, (0.4, 0.3), None, (0.5, 0.5)),
        [1.5 * (1.005**i) for i in range(20)],
        [[0.5] * 6 + [0.4] * 14, [0.5] * 6 + [0.3] * 14],
    ),
}


@pytest.mark.parametrize("name", sorted(PLATEAU_TRACES))
def test_torch_suite_traces(name: str) -> None:
    """torch's plateau2/7/8: both classes reach torch's targets, and agree exactly."""
    cfg, metrics, targets = PLATEAU_TRACES[name]
    for cls in (TorchPlateau, ReduceLROnPlateau):
        optimizer, scheduler = cfg.build(cls)
        for i, v in enumerate(metrics):
            scheduler.step(v)
            want = [t[i] for t in targets]
            assert rates(optimizer) == pytest.approx(want, abs=1e-5), f"{cls.__module__} step {i}"
    run_side_by_side(cfg, metrics)


def test_metric_types_like_torch() -> None:
    """float(metrics): a 0-d / one-element tensor or numpy value works (a tensor that requires
    grad too); several elements raise torch's ValueError in both, changing nothing."""
    cfg = Config(patience=0)
    _, theirs = cfg.build(TorchPlateau)
    _, mine = cfg.build(ReduceLROnPlateau)
    for value in (
        torch.tensor(1.0),
        torch.tensor([0.5]),
        np.float32(0.7),
        torch.tensor(0.4, requires_grad=True) * 2,
        2,
    ):
        for scheduler in (theirs, mine):
            with warnings.catch_warnings():
                # torch warns (once per process) about float() of a tensor that requires grad
                warnings.filterwarnings("ignore", message=".*requires_grad=True.*")
                scheduler.step(value)
        assert_same(mine, theirs, f"value {value!r}")
    for value in (torch.tensor([1.0, 2.0]), torch.zeros(0)):
        errors = []
        for scheduler in (theirs, mine):
            with pytest.raises(ValueError) as info:
                scheduler.step(value)
            errors.append(str(info.value))
        assert errors[0] == errors[1]
        assert_same(mine, theirs, "after a refused metric")  # nothing changed


def test_epoch_argument_is_deprecated_like_torch() -> None:
    cfg = Config(patience=0)
    _, theirs = cfg.build(TorchPlateau)
    _, mine = cfg.build(ReduceLROnPlateau)
    messages = []
    for scheduler in (theirs, mine):
        with pytest.warns(UserWarning, match="epoch parameter") as record:
            scheduler.step(1.0, epoch=7)
        messages.append(str(record[0].message))
        scheduler.step(2.0)
    assert messages[0] == messages[1]
    assert mine.last_epoch == theirs.last_epoch == 8
    assert_same(mine, theirs, "after step(epoch=...)")


def test_tensor_rates_are_filled_in_place() -> None:
    """A tensor lr stays the same tensor object (a compiled optimizer keeps seeing it)."""
    lrs = [torch.tensor(0.1), torch.tensor(0.2)]
    theirs = TorchPlateau(make_optimizer([x.clone() for x in lrs]), patience=0)
    opt_m = make_optimizer([x.clone() for x in lrs])
    mine = ReduceLROnPlateau(opt_m, patience=0)
    held = [g["lr"] for g in opt_m.param_groups]
    for v in (1.0, 2.0, 3.0, 0.5, 0.6):
        theirs.step(v)
        mine.step(v)
        assert_same(mine, theirs, f"value {v}")
    assert all(g["lr"] is h for g, h in zip(opt_m.param_groups, held, strict=True))
    assert all(isinstance(x, torch.Tensor) for x in mine.get_last_lr())
    assert not any(x is h for x, h in zip(mine.get_last_lr(), held, strict=True))  # copies


def test_rate_changed_by_hand_is_reduced_from() -> None:
    """The optimizer's rates are read at every step, as torch reads them when reducing."""
    cfg = Config(patience=0, factor=0.5, min_lr=(0.0, 0.0))
    opt_t, theirs = cfg.build(TorchPlateau)
    opt_m, mine = cfg.build(ReduceLROnPlateau)
    for v in (1.0, 2.0, 3.0):
        if v == 3.0:
            opt_t.param_groups[1]["lr"] = opt_m.param_groups[1]["lr"] = 0.02
        theirs.step(v)
        mine.step(v)
        assert_same(mine, theirs, f"value {v}")
    assert rates(opt_m) == [0.025, 0.01]


def test_param_group_added_after_construction() -> None:
    """Scalar min_lr covers the new group; a min_lr list raises torch's RuntimeError on reducing."""
    for min_lr in (1e-3, [1e-3, 1e-4]):
        pair = []
        for cls in (TorchPlateau, ReduceLROnPlateau):
            optimizer = make_optimizer([0.1, 0.3])
            scheduler = cls(optimizer, patience=0, min_lr=min_lr)
            scheduler.step(1.0)
            optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5})
            if isinstance(min_lr, list):
                with pytest.raises(RuntimeError, match="min_lrs"):
                    scheduler.step(2.0)
            else:
                scheduler.step(2.0)
                scheduler.step(3.0)
                assert scheduler.min_lrs == [1e-3] * 3
            pair.append(rates(optimizer))
        assert pair[0] == pair[1]


def test_changed_hyperparameters_are_read_at_each_step() -> None:
    """torch reads self.patience etc. at every step; the core configuration follows them."""
    cfg = Config(patience=5, min_lr=(0.0, 0.0))
    _, theirs = cfg.build(TorchPlateau)
    _, mine = cfg.build(ReduceLROnPlateau)
    for i, v in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        if i == 2:
            for s in (theirs, mine):
                s.patience, s.factor, s.min_lrs = 0, 0.5, [0.03, 0.2]
        theirs.step(v)
        mine.step(v)
        assert_same(mine, theirs, f"step {i}")
    assert mine.policy.patience == 0 and mine.policy.min_lr == (0.03, 0.2)


def test_last_decision_explains() -> None:
    _, mine = Config(patience=0, factor=0.5).build(ReduceLROnPlateau)
    assert mine.last_decision is None
    mine.step(1.0)
    first = mine.last_decision
    assert isinstance(first, trainctl.Decision)
    assert first.events == ("improved",) and first.epoch == 0 and not first.lr_changed
    mine.step(1.0)
    decision = mine.last_decision
    assert decision.epoch == 1 and decision.lr == (0.05, 0.15) and decision.lr_changed
    plateau = decision.detail("ReduceLROnPlateau(metrics)")
    assert plateau is decision.details[0]
    assert plateau.reduced and plateau.lr_factor == (0.5, 0.5)
    assert mine.get_last_lr() == [0.05, 0.15]
    assert "0.1" in decision.explain() and "0.05" in decision.explain()
    assert decision.to_dict()["lr"] == [0.05, 0.15]


# -- ReduceLROnPlateau: validation ---------------------------------------------------------------


def outcome(build: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    try:
        build()
    except Exception as error:
        return type(error), str(error)
    return None


class _NotAnOptimizer:
    param_groups: list[dict[str, Any]] = [{"lr": 0.1}]  # noqa: RUF012


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factor": 1.0},
        {"factor": 2},
        {"factor": 1.0, "optimizer": "not an optimizer"},  # torch checks factor first
        {"mode": "maximum"},
        {"mode": None},
        {"threshold_mode": "relative"},
        {"threshold_mode": None},
        {"min_lr": [0.0]},
        {"min_lr": (0.0, 0.0, 0.0)},
        {"optimizer": "not an optimizer"},
        {"optimizer": None},
        {"optimizer": torch.nn.Linear(1, 1)},
        {"optimizer": _NotAnOptimizer()},
        {"factor": None},
    ],
    ids=repr,
)
def test_validation_like_torch(kwargs: dict[str, Any]) -> None:
    """Invalid arguments: torch's exception type (and, for torch's own checks, its message)."""
    args = dict(kwargs)
    optimizer = args.pop("optimizer", None) if "optimizer" in args else make_optimizer([0.1, 0.3])
    theirs = outcome(lambda: TorchPlateau(optimizer, **args))
    mine = outcome(lambda: ReduceLROnPlateau(optimizer, **args))
    assert theirs is not None and mine is not None, (theirs, mine)
    assert mine[0] is theirs[0], (theirs, mine)
    if theirs[0] is ValueError or "Optimizer" in theirs[1]:
        assert mine[1] == theirs[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"factor": math.nan}, ValueError, "factor"),
        ({"threshold": 1.0, "threshold_mode": "rel"}, ValueError, "min_delta.*mode='min'"),
        ({"patience": -1}, ValueError, "patience"),
        ({"patience": 2.5}, TypeError, "patience"),
        ({"cooldown": -1}, ValueError, "cooldown"),
        ({"eps": -1e-3}, ValueError, "eps"),
        ({"eps": math.inf}, ValueError, "eps"),
        ({"min_lr": -1e-3}, ValueError, "min_lr"),
        ({"min_lr": [0.0, -1.0]}, ValueError, "min_lr"),
        ({"threshold": math.nan}, ValueError, "min_delta"),
    ],
    ids=repr,
)
def test_arguments_torch_accepts_but_the_core_cannot_express(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    """Documented divergences: torch takes these silently; the drop-in refuses them at once."""
    TorchPlateau(make_optimizer([0.1, 0.3]), **kwargs)
    with pytest.raises(error, match=name):
        ReduceLROnPlateau(make_optimizer([0.1, 0.3]), **kwargs)


@pytest.mark.parametrize("factor", [0.0, -0.5])
def test_a_factor_at_or_below_zero_goes_straight_to_min_lr_as_in_torch(factor: float) -> None:
    cfg = Config(patience=1, factor=factor, min_lr=(1e-3, 0.0))
    run_side_by_side(cfg, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])


def test_whole_float_counts_are_accepted() -> None:
    cfg = Config(patience=2.0, cooldown=1.0)  # type: ignore[arg-type]
    run_side_by_side(cfg, [1.0] * 20)


# -- ReduceLROnPlateau: state --------------------------------------------------------------------


def test_state_dict_has_torchs_keys() -> None:
    for cfg in (Config(), Config(min_lr=(0.01, 0.0), mode="max")):
        _, theirs = cfg.build(TorchPlateau)
        _, mine = cfg.build(ReduceLROnPlateau)
        for v in (1.0, 2.0, 0.5):
            theirs.step(v)
            mine.step(v)
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        assert mine.state_dict() == theirs.state_dict()


def resumed(cfg: Config, values: Sequence[float], k: int, *, source: type, target: type) -> Any:
    """Run ``source`` for ``k`` values, move its state (through JSON) and the optimizer's into a
    fresh ``target``, and run the rest; return what was observed after every step."""
    optimizer, scheduler = cfg.build(source)
    trace = []
    for v in values[:k]:
        scheduler.step(v)
        trace.append(observed(scheduler))
    blob = json.dumps(scheduler.state_dict())
    opt_state = optimizer.state_dict()
    optimizer, scheduler = cfg.build(target)
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(json.loads(blob))
    for v in values[k:]:
        scheduler.step(v)
        trace.append(observed(scheduler))
    return trace


def same_traces(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and same_float(x[1], y[1]) and x[2:] == y[2:]
        for x, y in zip(a, b, strict=True)
    )


configs = st.builds(
    Config,
    mode=st.sampled_from(["min", "max"]),
    factor=st.sampled_from([0.1, 0.5, 0.9]),
    patience=st.integers(0, 3),
    threshold=st.sampled_from([0.0, 1e-4, 0.1, 1.0]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    cooldown=st.integers(0, 3),
    min_lr=st.one_of(
        st.sampled_from([0, 1e-3]),
        st.tuples(st.sampled_from([0.0, 1e-3, 0.05]), st.sampled_from([0.0, 1e-4, 0.3])),
    ),
    eps=st.sampled_from([None, 0.0, 1e-2]),
    lrs=st.just((0.1, 0.3)),
).filter(lambda c: not (c.mode == "min" and c.threshold_mode == "rel" and c.threshold >= 1.0))
metric_values = st.lists(
    st.one_of(
        st.sampled_from([0.0, 1.0, -1.0, 0.9, 1.1, 0.5, math.nan, math.inf, -math.inf]),
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    ),
    min_size=1,
    max_size=30,
)


@settings(deadline=None)
@given(cfg=configs, values=metric_values, data=st.data())
def test_interrupt_anywhere_resumes_exactly(cfg: Config, values: list[float], data: Any) -> None:
    """state_dict -> JSON -> a fresh drop-in at any step: the same rates and counters."""
    k = data.draw(st.integers(0, len(values)), label="interrupt at")
    _, uninterrupted = cfg.build(ReduceLROnPlateau)
    want = []
    for v in values:
        uninterrupted.step(v)
        want.append(observed(uninterrupted))
    got = resumed(cfg, values, k, source=ReduceLROnPlateau, target=ReduceLROnPlateau)
    assert same_traces(got, want)


def test_state_dicts_move_between_torch_and_trainctl() -> None:
    """Ours -> torch's class and torch's -> ours, mid-stream: both continue as torch would."""
    rng = np.random.default_rng(SEED + 1)
    for _ in range(300):
        cfg = random_config(rng)
        values = random_stream(rng, cfg, 30)
        k = int(rng.integers(0, len(values) + 1))
        want = resumed(cfg, values, k, source=TorchPlateau, target=TorchPlateau)
        for source, target in (
            (ReduceLROnPlateau, TorchPlateau),
            (TorchPlateau, ReduceLROnPlateau),
        ):
            got = resumed(cfg, values, k, source=source, target=target)
            assert same_traces(got, want), (cfg, values, k, source, target)


def test_load_state_dict_is_validated_and_atomic() -> None:
    _, mine = Config(patience=1).build(ReduceLROnPlateau)
    mine.step(1.0)
    before = mine.state_dict()
    for bad in (
        {"mode": "sideways"},
        {"num_bad_epochs": -1},
        {"num_bad_epochs": "two"},
        {"factor": 1.5},
        {"threshold_mode": 3},
    ):
        bad = {**before, **bad}
        with pytest.raises((ValueError, TypeError)):
            mine.load_state_dict(bad)
        assert mine.state_dict() == before
    # strict-JSON spellings of the non-finite floats are read too
    mine.load_state_dict({**before, "best": "-inf", "mode_worse": "inf"})
    assert mine.best == -math.inf and mine.mode_worse == math.inf
    mine.load_state_dict({"some_future_key": 1})  # ignored, like extra torch keys
    assert "some_future_key" not in mine.state_dict()


# -- ScheduleLR ----------------------------------------------------------------------------------

SCHEDULES = [
    schedules.warmup(schedules.cosine(0.1, total_steps=1200), warmup_steps=100),
    schedules.one_cycle(0.1, total_steps=1600),
    schedules.step_decay(0.1, step_size=300, gamma=0.5),
    schedules.cyclic(0.1, 0.5, step_size_up=150, mode="triangular2"),
    schedules.cosine_restarts(0.1, period=200, period_mult=2),
    schedules.lambda_lr(0.1, lambda t: 0.99 ** (t // 10)),
]


def schedule_optimizer(schedule: schedules.Schedule) -> torch.optim.Optimizer:
    """Two param groups: one at the schedule's base rate, one at its own (LambdaLR's rule)."""
    return make_optimizer([schedule.base_lr, 0.037])


def stepped(optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> None:
    optimizer.step()
    scheduler.step()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: repr(s)[:40])
def test_schedule_lr_matches_lambda_lr(schedule: schedules.Schedule) -> None:
    """1,500 steps beside torch's LambdaLR(lambda t: s(t) / s.base_lr) on two param groups."""
    opt_t = schedule_optimizer(schedule)
    theirs = LambdaLR(opt_t, lambda t: schedule(t) / schedule.base_lr)
    opt_m = schedule_optimizer(schedule)
    mine = ScheduleLR(opt_m, schedule)
    for t in range(1501):
        got, want = rates(opt_m), rates(opt_t)
        assert got == pytest.approx(want, rel=1e-12, abs=0), f"step {t}"
        assert got[0] == schedule(t)  # the group at the schedule's base rate: s(t) exactly
        assert mine.get_last_lr() == got
        assert mine.last_epoch == theirs.last_epoch == t
        stepped(opt_t, theirs)
        stepped(opt_m, mine)


def test_schedule_lr_state_round_trip_resumes_exactly() -> None:
    schedule = SCHEDULES[0]
    optimizer = schedule_optimizer(schedule)
    scheduler = ScheduleLR(optimizer, schedule)
    want = []
    for _ in range(1000):
        stepped(optimizer, scheduler)
        want.append(rates(optimizer))
    for k in (0, 1, 99, 100, 640):
        optimizer = schedule_optimizer(schedule)
        scheduler = ScheduleLR(optimizer, schedule)
        for _ in range(k):
            stepped(optimizer, scheduler)
        state = json.loads(json.dumps(scheduler.state_dict()))
        assert state["last_epoch"] == k and state["schedule"] == repr(schedule)
        opt_state = optimizer.state_dict()
        optimizer = schedule_optimizer(schedule)
        scheduler = ScheduleLR(optimizer, schedule)
        optimizer.load_state_dict(opt_state)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scheduler.load_state_dict(state)
        got = want[:k]
        for _ in range(k, 1000):
            stepped(optimizer, scheduler)
            got.append(rates(optimizer))
        assert got == want, f"resumed at {k}"


def test_schedule_lr_state_dict_loads_without_code(tmp_path: Any) -> None:
    """The state dict is plain data: torch.load(weights_only=True) reads it back."""
    schedule = SCHEDULES[5]  # a lambda: not picklable, and its repr holds an address
    optimizer = schedule_optimizer(schedule)
    scheduler = ScheduleLR(optimizer, schedule)
    for _ in range(5):
        stepped(optimizer, scheduler)
    torch.save(scheduler.state_dict(), tmp_path / "sched.pt")
    state = torch.load(tmp_path / "sched.pt", weights_only=True)
    fresh = ScheduleLR(schedule_optimizer(schedule), schedule)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5 and fresh.schedule is schedule


def test_schedule_lr_warns_when_the_schedule_changed() -> None:
    a = schedules.cosine(0.1, total_steps=100)
    b = schedules.cosine(0.1, total_steps=200)
    state = ScheduleLR(schedule_optimizer(a), a).state_dict()
    other = ScheduleLR(schedule_optimizer(b), b)
    with pytest.warns(UserWarning, match="total_steps=100"):
        other.load_state_dict({**state, "schedule": repr(a)})
    assert other.schedule is b
    with pytest.raises(TypeError, match="last_epoch"):
        other.load_state_dict({**state, "last_epoch": "3"})


def test_schedule_lr_epoch_argument_uses_the_closed_form() -> None:
    schedule = SCHEDULES[3]
    optimizer = schedule_optimizer(schedule)
    scheduler = ScheduleLR(optimizer, schedule)
    optimizer.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        scheduler.step(437)
    assert rates(optimizer)[0] == schedule(437)
    with pytest.warns(UserWarning, match="get_last_lr"):
        assert scheduler.get_lr() == rates(optimizer)


def test_schedule_lr_validation() -> None:
    s = schedules.constant(0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        ScheduleLR("sgd", s)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Schedule"):
        ScheduleLR(make_optimizer([0.1]), lambda t: 0.1)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="initial_lr"):  # torch's own resume check
        ScheduleLR(make_optimizer([0.1]), s, last_epoch=3)
    zero = _ZeroBase()  # no factory builds one; a user's own Schedule subclass might
    with pytest.raises(ValueError, match="base_lr"):
        ScheduleLR(make_optimizer([0.1]), zero)
    scheduler = ScheduleLR(make_optimizer([0.0, 0.0]), zero)
    for t in range(12):
        assert scheduler.get_last_lr() == [zero(t)] * 2
        stepped(scheduler.optimizer, scheduler)


@attrs.frozen
class _ZeroBase(schedules.Schedule):
    """A schedule whose reference rate is 0 (0.0 for 10 steps, then 0.1)."""

    @property
    def base_lr(self) -> float:
        return 0.0

    def _scalar(self, t: int) -> float:
        return 0.0 if t < 10 else 0.1

    def _array(self, t: Any) -> Any:
        return np.where(t < 10, 0.0, 0.1)


# -- Lightning -----------------------------------------------------------------------------------

pl = pytest.importorskip("lightning.pytorch")


def lightning_fit(module: Any, epochs: int = 2) -> None:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|GPU available|TPU|HPU).*")
        trainer.fit(module)


def tiny_loader() -> Any:
    x = torch.linspace(-1, 1, 24).reshape(12, 2)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3)


def test_schedule_lr_in_a_lightning_trainer() -> None:
    """interval "step": in every training_step the group rates are the schedule's at global_step."""
    schedule = schedules.warmup(schedules.cosine(0.05, total_steps=6), warmup_steps=3)
    seen: list[tuple[int, list[float], list[float]]] = []

    class Module(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            optimizer = self.optimizers().optimizer
            scheduler = self.lr_schedulers()
            seen.append(
                (
                    self.trainer.global_step,
                    rates(optimizer),
                    [float(v) for v in scheduler.get_last_lr()],
                )
            )
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def train_dataloader(self) -> Any:
            return tiny_loader()

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(
                [
                    {"params": [self.layer.weight], "lr": schedule.base_lr},
                    {"params": [self.layer.bias], "lr": 0.01},
                ]
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": ScheduleLR(optimizer, schedule), "interval": "step"},
            }

    module = Module()
    lightning_fit(module)
    assert [s[0] for s in seen] == list(range(8))  # 4 batches x 2 epochs
    for step, lrs, last in seen:
        want = [schedule(step), 0.01 * (schedule(step) / schedule.base_lr)]
        assert lrs == want, f"global step {step}"
        assert last == lrs
    final = module.lr_schedulers()
    assert final.last_epoch == 8 and final.get_last_lr()[0] == schedule(8)


def test_plateau_drop_in_in_a_lightning_trainer() -> None:
    """Lightning recognises the drop-in as a plateau scheduler and steps it with the metric."""
    finals = []
    for cls in (TorchPlateau, ReduceLROnPlateau):

        class Module(pl.LightningModule):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                x, y = batch
                self.log("plateau_metric", 1.0, on_step=False, on_epoch=True)
                return torch.nn.functional.mse_loss(self.layer(x), y)

            def train_dataloader(self) -> Any:
                return tiny_loader()

            def configure_optimizers(self, cls: type = cls) -> Any:
                optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
                scheduler = cls(optimizer, patience=0, factor=0.5)
                return {
                    "optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "plateau_metric"},
                }

        module = Module()
        lightning_fit(module, epochs=4)
        scheduler = module.lr_schedulers()
        finals.append((scheduler.get_last_lr(), scheduler.last_epoch, scheduler.num_bad_epochs))
    assert finals[0] == finals[1]
    assert finals[1][0] == [0.1 * 0.5**3]


def test_pickle_and_deepcopy_like_torch() -> None:
    """torch.save(scheduler) / copy.deepcopy work as with torch's class (the core is rebuilt)."""
    cfg = Config(patience=0, min_lr=(1e-3, 0.0))
    _, theirs = cfg.build(TorchPlateau)
    _, mine = cfg.build(ReduceLROnPlateau)
    for v in (1.0, 2.0):
        theirs.step(v)
        mine.step(v)
    for clone in (copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))):
        a, b = clone(theirs), clone(mine)
        for v in (3.0, 0.5, 0.7):
            a.step(v)
            b.step(v)
            assert_same(b, a, f"after {clone}")
