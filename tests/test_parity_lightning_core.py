"""trainctl.EarlyStopping(rules="lightning") against Lightning's EarlyStopping, side by side.

Each stream drives a real ``lightning.pytorch.callbacks.EarlyStopping`` and a
``trainctl.Controller`` holding ``trainctl.EarlyStopping(rules="lightning", precision="float32")``
with the same arguments (``min_delta``, ``patience``, ``mode``, ``check_finite``,
``stopping_threshold``, ``divergence_threshold``, ``strict``). After every round both must agree on
whether to stop, on ``wait_count`` and on ``best_score``; at the stop, on the reason (Lightning's
``stopping_reason`` mapped to trainctl's ``details[0].reason.event``). Both are fed until the first
stop.

How Lightning is driven: a full ``Trainer`` per stream (thousands of streams) is far too slow, so
each round calls what ``EarlyStopping._run_early_stopping_check`` calls with the trainer's
``callback_metrics``: ``_validate_condition_metric(logs)`` (the absent-metric path: skip, or raise
with ``strict=True``) and then ``_evaluate_stopping_criteria(logs[monitor].squeeze())`` on a float32
tensor, which is the whole decision. The trainer-side plumbing (``trainer.should_stop``,
``stopped_epoch``, the DDP reduction) is not exercised here; that belongs to the Lightning
adapter (trainctl.adapters.lightning), whose tests run a real Trainer.

Metric values are float32 (``_streams.metric_stream(float32=True)``), with plateaus, exact ties,
values exactly ``min_delta`` from the best and one float32 ulp either side, slow improvements, NaN,
+inf, -inf and absent metrics; thresholds are often set to a value of the stream itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
from _streams import DELTAS, Value, f32, metric_stream, pick, same_float
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import trainctl

torch = pytest.importorskip("torch")
early_stopping = pytest.importorskip("lightning.pytorch.callbacks.early_stopping")
LightningEarlyStopping = early_stopping.EarlyStopping
Reason = early_stopping.EarlyStoppingReason

N_STREAMS = 3000
SEED = 4242

# trainctl warns once per controller about an absent metric; Lightning (strict=False, verbose=0)
# skips silently. The decisions are what is compared here.
pytestmark = pytest.mark.filterwarnings("ignore:.*'val_loss' not in metrics:UserWarning")

#: Lightning's EarlyStoppingReason -> trainctl's Reason.event
EVENTS: dict[Any, str] = {
    Reason.PATIENCE_EXHAUSTED: "patience_exhausted",
    Reason.NON_FINITE_METRIC: "non_finite",
    Reason.STOPPING_THRESHOLD: "stopping_threshold",
    Reason.DIVERGENCE_THRESHOLD: "divergence_threshold",
}


@dataclass(frozen=True)
class Config:
    mode: Literal["min", "max"]
    min_delta: float
    patience: int
    check_finite: bool
    stopping_threshold: float | None
    divergence_threshold: float | None
    strict: bool = False

    def kwargs(self) -> dict[str, Any]:
        return {
            "monitor": "val_loss",
            "mode": self.mode,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "check_finite": self.check_finite,
            "stopping_threshold": self.stopping_threshold,
            "divergence_threshold": self.divergence_threshold,
            "strict": self.strict,
        }


@dataclass(frozen=True)
class Outcome:
    stop_round: int | None
    event: str | None


def metrics_of(v: Value) -> dict[str, Any]:
    """What ``trainer.callback_metrics`` holds: a float32 tensor, or nothing."""
    return {} if v is None else {"val_loss": torch.tensor(v, dtype=torch.float32)}


def compare(cfg: Config, stream: Sequence[Value]) -> Outcome:
    """Feed ``stream`` to both until the first stop; assert agreement after every round."""
    theirs = LightningEarlyStopping(**cfg.kwargs())
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(rules="lightning", precision="float32", **cfg.kwargs())
    )
    worst = math.inf if cfg.mode == "min" else -math.inf
    where = f"{cfg} on {list(stream)!r}"
    for i, v in enumerate(stream):
        logs = metrics_of(v)
        stop = False
        if theirs._validate_condition_metric(logs):
            stop, _ = theirs._evaluate_stopping_criteria(logs["val_loss"].squeeze())
        d = ctl.step(logs)  # the same float32 tensors a Lightning user would hand over
        mine = d.details[0]
        at = f"round {i} (value {v!r}) of {where}"
        assert d.stop == bool(stop), f"stop: Lightning {stop}, trainctl {d.stop} at {at}"
        assert mine.wait == theirs.wait_count, (
            f"wait: Lightning {theirs.wait_count}, trainctl {mine.wait} at {at}"
        )
        best = worst if mine.best is None else mine.best
        assert same_float(best, float(theirs.best_score)), (
            f"best: Lightning {float(theirs.best_score)}, trainctl {best} at {at}"
        )
        if d.stop:
            event = mine.reason.event
            assert event == EVENTS[theirs.stopping_reason], (
                f"reason: Lightning {theirs.stopping_reason}, trainctl {event} at {at}"
            )
            return Outcome(i, event)
    assert theirs.stopping_reason == Reason.NOT_STOPPED
    return Outcome(None, None)


def random_config(
    rng: np.random.Generator, stream: Sequence[Value], mode: Literal["min", "max"], delta: float
) -> Config:
    """A configuration for ``stream``; thresholds often equal (or neighbour) one of its values."""
    finite = [v for v in stream if v is not None and math.isfinite(v)]

    def threshold() -> float | None:
        if not finite or rng.random() < 0.6:
            return None
        v = pick(rng, finite)
        ulp = float(np.nextafter(np.float32(v), np.float32(pick(rng, [-math.inf, math.inf]))))
        # not rounded: Lightning compares with the threshold cast to float32
        return pick(rng, [v, v, f32(v + delta), f32(v - delta), ulp, v + delta, v - delta])

    stop, diverge = threshold(), threshold()
    if not coherent(mode, stop, diverge):
        diverge = None  # trainctl refuses a pair under which every value stops at once
    return Config(
        mode=mode,
        min_delta=delta,
        patience=int(rng.choice([0, 1, 1, 2, 3, 5])),
        check_finite=bool(rng.random() < 0.5),
        stopping_threshold=stop,
        divergence_threshold=diverge,
    )


def coherent(mode: str, stop: float | None, diverge: float | None) -> bool:
    """Whether some value neither reaches ``stop`` nor passes ``diverge`` (else refused)."""
    if stop is None or diverge is None:
        return True
    return stop < diverge if mode == "min" else stop > diverge


def run_random_streams(seed: int, float32_min_delta: bool) -> dict[str | None, int]:
    """3,000 random streams and configurations; return how many ended in each way."""
    rng = np.random.default_rng(seed)
    events: dict[str | None, int] = {}
    for _ in range(N_STREAMS):
        mode: Literal["min", "max"] = "min" if rng.random() < 0.5 else "max"
        delta = pick(rng, DELTAS)
        if float32_min_delta:
            delta = f32(delta)
        stream = metric_stream(
            rng,
            int(rng.integers(3, 40)),
            min_delta=delta,
            mode=mode,
            missing=bool(rng.random() < 0.2),
        )
        out = compare(random_config(rng, stream, mode, delta), stream)
        events[out.event] = events.get(out.event, 0) + 1
    return events


def test_random_streams() -> None:
    """3,000 random streams, min_delta float32-representable (0, 0.25, f32(0.1), ...).

    The same stop round, reason, wait_count and best_score after every round.
    """
    events = run_random_streams(SEED, float32_min_delta=True)
    # every way of stopping (and not stopping) is exercised, not only the common one
    assert all(events.get(e, 0) > 50 for e in [None, *EVENTS.values()]), events


def test_random_streams_decimal_min_delta() -> None:
    """The same 3,000-stream comparison with decimal min_delta values as users write them."""
    run_random_streams(SEED + 1, float32_min_delta=False)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from([1.0, 0.9, 1.1, 0.5, math.nan, math.inf, -math.inf]),
            st.floats(min_value=-100, max_value=100, width=32),
            st.none(),
        ),
        min_size=1,
        max_size=30,
    ),
    mode=st.sampled_from(["min", "max"]),
    # float32-representable: see test_random_streams_decimal_min_delta for 0.1, 1e-3, ...
    min_delta=st.sampled_from([0.0, f32(0.1), 0.5, f32(1e-3), 0.25]),
    patience=st.integers(0, 4),
    check_finite=st.booleans(),
    stopping_threshold=st.one_of(st.none(), st.sampled_from([0.5, 0.9, 1.0])),
    divergence_threshold=st.one_of(st.none(), st.sampled_from([1.0, 1.1, 50.0])),
)
def test_hypothesis_streams(
    values: list[Value],
    mode: Literal["min", "max"],
    min_delta: float,
    patience: int,
    check_finite: bool,
    stopping_threshold: float | None,
    divergence_threshold: float | None,
) -> None:
    assume(coherent(mode, stopping_threshold, divergence_threshold))
    cfg = Config(mode, min_delta, patience, check_finite, stopping_threshold, divergence_threshold)
    compare(cfg, values)


@pytest.mark.parametrize("check_finite", [True, False])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("first", [math.nan, math.inf, -math.inf])
def test_non_finite_first_value(
    check_finite: bool, mode: Literal["min", "max"], first: float
) -> None:
    """A non-finite first value: a stop (check_finite), or compared with the +-inf start."""
    cfg = Config(mode, 0.0, 2, check_finite, None, None)
    compare(cfg, [first, 1.0, 1.0, 1.0, 1.0])


def test_strict_missing_metric_raises_like_lightning() -> None:
    """strict=True: Lightning raises RuntimeError on an absent metric; so does trainctl."""
    cfg = Config("min", 0.0, 3, True, None, None, strict=True)
    theirs = LightningEarlyStopping(**cfg.kwargs())
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(rules="lightning", precision="float32", **cfg.kwargs())
    )
    with pytest.raises(RuntimeError, match="val_loss"):
        theirs._validate_condition_metric({"loss": torch.tensor(1.0)})
    with pytest.raises(RuntimeError, match="val_loss"):
        ctl.step({"loss": torch.tensor(1.0)})


# -- known divergences -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
def test_negative_min_delta(mode: Literal["min", "max"]) -> None:
    """Lightning does not take abs(min_delta); rules="lightning" must not either."""
    worse = 1.25 if mode == "min" else 0.75
    compare(Config(mode, -0.5, 1, True, None, None), [1.0, worse, worse])


@pytest.mark.parametrize(
    ("mode", "min_delta", "stream"),
    [
        # max: the second value is exactly min_delta (as float32) above the best
        ("max", 0.3, [0.0, f32(0.3)]),
        # min: found by random search; Lightning: no improvement, trainctl: improvement
        ("min", 1e-3, [0.0012141941115260124, 0.00021419403492473066]),
    ],
)
def test_decimal_min_delta_tie(
    mode: Literal["min", "max"], min_delta: float, stream: list[float]
) -> None:
    """Lightning: the second value does not improve (patience 1 -> stop); trainctl must agree."""
    compare(Config(mode, min_delta, 1, True, None, None), stream)
