"""A sweep is the scalar policy, vectorised: every configuration of a grid, on every run, gives
exactly what ``trainctl.simulate`` gives (stop round, best and its round, the weights restored,
the rates and cuts, the checkpoints kept).

The runs are ``tests/_streams.metric_stream`` streams (exact ties, plateaus, values exactly
``min_delta`` away and one ulp either side, NaN, +-inf, absent values, empty runs); the grids
vary several options at once, each drawn by hypothesis, and every configuration of every grid is
replayed one by one through the live policy (``tests/_replay_reference.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _replay_reference import Reference, random_runs, reference, same
from _streams import DELTAS, FACTORS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainctl
from trainctl._prechelt import GL, PQ, UP
from trainctl.replay import Run, RunArrays, sweep

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# streams that happen to hold no value of the metric make the sweep (rightly) warn
pytestmark = pytest.mark.filterwarnings("ignore:metric 'val_loss' was logged in none")

SMALL_DELTAS = tuple(d for d in DELTAS if d < 1.0)


def _finite(runs: list[list[dict[str, float]]], name: str) -> list[float]:
    return sorted(m[name] for run in runs for m in run if name in m and math.isfinite(m[name]))


def _pick(values: list[float], q: float, default: float) -> float:
    return values[int(q * (len(values) - 1))] if values else default


def _grid(draw: Any, options: dict[str, list[Any]], lo: int = 2, hi: int = 4) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=min(lo, len(options)),
                          max_size=min(hi, len(options)), unique=True))
    return {
        name: draw(st.lists(st.sampled_from(options[name]), min_size=min(2, len(options[name])),
                            max_size=3, unique_by=repr))
        for name in names
    }


def check(result: Any, runs: list[list[dict[str, float]]], *, lr: float | None = None,
          best_round: bool = True) -> int:
    """Every configuration x run of ``result`` against the live policy; returns the count."""
    checked = 0
    for c, config in enumerate(result.configs):
        for r, rounds in enumerate(runs):
            ref: Reference = reference(config, rounds, lr=lr)
            where = f"config {c} {result.params[c]} run {r}: {config!r}"
            assert int(result.stop_round[c, r]) == ref.stop_round, where
            assert same(float(result.best[c, r]), ref.best), (where, result.best[c, r], ref.best)
            if best_round:
                assert int(result.best_round[c, r]) == ref.best_round, where
            if ref.restored_round != -2:
                assert int(result.restored_round[c, r]) == ref.restored_round, where
            used = ref.stop_round + 1 if ref.stop_round >= 0 else len(rounds)
            assert int(result.rounds_used[c, r]) == used, where
            if ref.lrs:
                got = result["lr"][c, r, : len(ref.lrs)].tolist()
                assert got == list(ref.lrs), (where, got, ref.lrs)
                assert result["cuts"][c, r, : len(ref.cuts)].tolist() == list(ref.cuts), where
            if ref.restored_round == -2:  # a checkpoint policy
                kept = set(np.flatnonzero(result["kept"][c, r]).tolist())
                assert kept == set(ref.kept), (where, kept, ref.kept)
                assert int(result["n_saved"][c, r]) == ref.saves, where
            checked += 1
    return checked


# -- EarlyStopping -----------------------------------------------------------------------------


@st.composite
def early_stopping_cases(draw: Any) -> tuple[Any, dict[str, Any], list[Any]]:
    rules = draw(st.sampled_from(["keras", "lightning", "huggingface"]))
    mode = draw(st.sampled_from(["min", "max"]))
    delta = draw(st.sampled_from(SMALL_DELTAS))
    runs = random_runs(draw(st.integers(0, 2**32 - 1)), draw(st.integers(2, 5)), 32,
                       mode=mode, min_delta=delta, float32=draw(st.booleans()))
    values = _finite(runs, "val_loss")
    good, bad = (0.2, 0.8) if mode == "min" else (0.8, 0.2)
    options: dict[str, list[Any]] = {
        "patience": [0, 1, 2, 3, 5, 8, 16],
        "min_delta": [0.0, delta, -delta],
        "start_from_epoch": [0, 1, 3],
        "check_finite": [False, True],
        "restore_best_weights": [False, True],
        "precision": ["float64", "float32"],
        "stop_is_final": [True, False],
    }
    stop_at, diverge = _pick(values, good, -1.0), _pick(values, bad, 1.0)
    if (stop_at < diverge) == (mode == "min") and stop_at != diverge:
        options["stopping_threshold"] = [None, stop_at]
        options["divergence_threshold"] = [None, diverge]
    if rules != "huggingface":
        options["threshold_mode"] = ["abs", "rel"]
    if rules == "keras":
        options["baseline"] = [None, _pick(values, 0.5, 0.0)]
    if rules == "lightning":
        options["signed_min_delta"] = [False, True]
    grid = _grid(draw, options)
    policy = trainctl.EarlyStopping("val_loss", rules=rules, mode=mode)
    return policy, grid, runs


@FAST
@given(early_stopping_cases())
def test_early_stopping_sweep_equals_simulate(case: tuple[Any, dict[str, Any], list[Any]]) -> None:
    policy, grid, runs = case
    result = sweep(policy, grid, runs)
    assert result.stop_round.shape == (len(result.configs), len(runs))
    assert check(result, runs) == len(result.configs) * len(runs)


def test_every_rule_and_option_in_one_grid() -> None:
    """One large grid per rule set: every option at two values at once, on 6 runs."""
    runs = random_runs(7, 6, 30, missing=True)
    values = _finite(runs, "val_loss")
    common = {"patience": [0, 2, 4], "min_delta": [0.0, 0.25], "check_finite": [False, True],
              "restore_best_weights": [False, True], "precision": ["float64", "float32"],
              "start_from_epoch": [0, 2]}
    thresholds = {"stopping_threshold": [None, _pick(values, 0.1, -1.0)],
                  "divergence_threshold": [None, _pick(values, 0.9, 1.0)]}
    for rules, extra in (("keras", {"baseline": [None, _pick(values, 0.5, 0.0)]}),
                         ("lightning", {"min_delta": [0.0, -0.25, 0.25]}),
                         ("huggingface", {})):
        grid = {**common, **thresholds, **extra}
        result = sweep(trainctl.EarlyStopping("val_loss", rules=rules, mode="min"), grid, runs)
        n = len(result.configs)
        assert n >= 2 ** 8
        events = set()
        for c in range(0, n, 5):  # every 5th configuration of the grid, on every run
            for r, rounds in enumerate(runs):
                ref = reference(result.configs[c], rounds)
                events.add(ref.event)
                assert int(result.stop_round[c, r]) == ref.stop_round
                assert same(float(result.best[c, r]), ref.best)
                assert int(result.best_round[c, r]) == ref.best_round
                assert int(result.restored_round[c, r]) == ref.restored_round
        # the grid reaches every way a run can end
        assert events >= {"", "patience_exhausted", "non_finite", "stopping_threshold",
                          "divergence_threshold"}, (rules, events)


def test_logged_epochs_are_the_policy_epochs() -> None:
    """Runs that log their epochs (validation every other epoch) replay with those epochs, as
    ``Controller.step(metrics, epoch=...)``: ``start_from_epoch`` and Keras' ``epoch > 0``."""
    runs = random_runs(3, 5, 20, missing=False)
    logged = [Run(source=f"r{i}", rounds=rounds, epochs=[2 * j + 1 for j in range(len(rounds))])
              for i, rounds in enumerate(runs)]
    grid = {"patience": [0, 1, 3], "start_from_epoch": [0, 4, 9]}
    arrays = _arrays(runs, ("val_loss",))
    arrays = RunArrays(metrics=arrays.metrics, present=arrays.present, lengths=arrays.lengths,
                       epochs=2 * np.arange(arrays.shape[1])[None, :].repeat(len(runs), 0) + 1)
    for rules in ("keras", "lightning"):
        result = sweep(trainctl.EarlyStopping("val_loss", rules=rules), grid, logged)
        same_result = sweep(trainctl.EarlyStopping("val_loss", rules=rules), grid, arrays)
        np.testing.assert_array_equal(same_result.stop_round, result.stop_round)
        for c, config in enumerate(result.configs):
            for r, run in enumerate(logged):
                ref = reference(config, run.rounds, epochs=list(run.epochs or ()))
                assert int(result.stop_round[c, r]) == ref.stop_round
                assert int(result.best_round[c, r]) == ref.best_round


# -- ReduceLROnPlateau -------------------------------------------------------------------------


@st.composite
def plateau_cases(draw: Any) -> tuple[Any, dict[str, Any], list[Any], float]:
    rules = draw(st.sampled_from(["keras", "torch"]))
    mode = draw(st.sampled_from(["min", "max"]))
    delta = draw(st.sampled_from(SMALL_DELTAS))
    runs = random_runs(draw(st.integers(0, 2**32 - 1)), draw(st.integers(2, 4)), 30,
                       mode=mode, min_delta=delta)
    lr = draw(st.sampled_from([1.0, 0.1, 1e-3, 3e-4]))
    options: dict[str, list[Any]] = {
        "patience": [0, 1, 2, 4],
        "cooldown": [0, 1, 3],
        "factor": list(FACTORS[:4]),
        "min_lr": [0.0, lr / 10, lr / 3],
        "min_delta": [0.0, delta, -delta],
        "threshold_mode": ["abs", "rel"],
        "eps": [None, 0.0, 1e-6],
        "precision": ["float64", "float32"],
    }
    grid = _grid(draw, options, 2, 5)
    policy = trainctl.ReduceLROnPlateau("val_loss", rules=rules, mode=mode)
    return policy, grid, runs, lr


@FAST
@given(plateau_cases())
def test_plateau_sweep_equals_simulate(case: tuple[Any, dict[str, Any], list[Any], float]) -> None:
    policy, grid, runs, lr = case
    result = sweep(policy, grid, runs, lr=lr)
    assert result.kind == "plateau"
    check(result, runs, lr=lr, best_round=False)
    assert (result["reductions"] == result["cuts"].sum(axis=2)).all()


def test_plateau_factor_to_min_lr() -> None:
    runs = random_runs(11, 3, 25, missing=False)
    policy = trainctl.ReduceLROnPlateau("val_loss", allow_nonpositive_factor=True, min_lr=1e-3)
    result = sweep(policy, {"factor": [0.0, -1.0, 0.5], "patience": [0, 1]}, runs, lr=0.1)
    check(result, runs, lr=0.1, best_round=False)


# -- CheckpointPolicy ----------------------------------------------------------------------------


@st.composite
def checkpoint_cases(draw: Any) -> tuple[Any, dict[str, Any], list[Any]]:
    mode = draw(st.sampled_from(["min", "max"]))
    runs = random_runs(draw(st.integers(0, 2**32 - 1)), draw(st.integers(2, 4)), 20,
                       mode=mode, float32=draw(st.booleans()))
    monitor = draw(st.sampled_from(["val_loss", None]))
    name = "e{epoch:03d}"
    if monitor is not None and draw(st.booleans()):
        values = _finite(runs, "val_loss")
        options: dict[str, list[Any]] = {
            "initial_value_threshold": [None, _pick(values, 0.5, 0.0)],
            "every_n_epochs": [1, 2, 3],
            "precision": ["float64", "float32"],
        }
        policy = trainctl.CheckpointPolicy(monitor, mode=mode, filename=name, save_best_only=True)
        return policy, _grid(draw, options, 1, 3), runs
    options = {
        "save_top_k": [None, -1, 0, 1, 2, 3] if monitor else [None, -1, 0, 1],
        "keep_last_n": [None, 1, 2],
        "keep_every_n_epochs": [None, 2, 3],
        "every_n_epochs": [1, 2],
    }
    if monitor is not None:
        options["precision"] = ["float64", "float32"]
    policy = trainctl.CheckpointPolicy(monitor, mode="auto" if monitor is None else mode,
                                       filename=name)
    return policy, _grid(draw, options, 2, 4), runs


@FAST
@given(checkpoint_cases())
def test_checkpoint_sweep_keeps_what_simulate_keeps(
    case: tuple[Any, dict[str, Any], list[Any]],
) -> None:
    policy, grid, runs = case
    result = sweep(policy, grid, runs)
    assert result.kind == "checkpoint"
    check(result, runs)
    assert (result["n_kept"] == result["kept"].sum(axis=2)).all()


# -- Prechelt's criteria -------------------------------------------------------------------------


@st.composite
def prechelt_cases(draw: Any) -> tuple[Any, dict[str, Any], list[Any]]:
    kind = draw(st.sampled_from(["GL", "PQ", "UP"]))
    runs = random_runs(draw(st.integers(0, 2**32 - 1)), draw(st.integers(2, 5)), 30,
                       float32=draw(st.booleans()), train=kind == "PQ")
    restore = [False, True]
    if kind == "GL":
        policy: Any = GL(2.0)
        options: dict[str, list[Any]] = {"alpha": [0.5, 1.0, 5.0, 50.0],
                                         "restore_best_weights": restore}
    elif kind == "PQ":
        policy = PQ(0.75)
        options = {"alpha": [0.1, 0.5, 2.0], "strip": [2, 3, 5], "tol": [1e-12, 1e-3, 5.0],
                   "restore_best_weights": restore}
    else:
        policy = UP(2)
        options = {"s": [1, 2, 3], "strip": [1, 2, 3], "restore_best_weights": restore}
    return policy, _grid(draw, options, 1, 3), runs


@FAST
@given(prechelt_cases())
def test_prechelt_sweep_equals_simulate(case: tuple[Any, dict[str, Any], list[Any]]) -> None:
    policy, grid, runs = case
    result = sweep(policy, grid, runs)
    check(result, runs)


def test_prechelt_grids_reach_every_stop() -> None:
    runs = random_runs(21, 8, 40, train=True, missing=True)
    events = set()
    for policy, grid in ((GL(), {"alpha": [0.5, 5.0, 1e6], "restore_best_weights": [False,
                                                                                    True]}),
                         (PQ(), {"alpha": [0.01, 1.0, 1e6], "strip": [2, 5], "tol": [1e-9, 10.0]}),
                         (UP(), {"s": [1, 2, 4], "strip": [1, 3]})):
        result = sweep(policy, grid, runs)
        check(result, runs)
        for config in result.configs:
            events |= {reference(config, rounds).event for rounds in runs}
    assert events >= {"", "generalization_loss", "progress_quotient", "no_progress",
                      "successive_rises"}, events


# -- inputs, chunks, results ---------------------------------------------------------------------


def _arrays(runs: list[list[dict[str, float]]], names: tuple[str, ...]) -> RunArrays:
    t = max(len(r) for r in runs)
    metrics = {n: np.full((len(runs), t), np.nan) for n in names}
    present = {n: np.zeros((len(runs), t), dtype=bool) for n in names}
    for i, rounds in enumerate(runs):
        for j, m in enumerate(rounds):
            for n in names:
                if n in m:
                    metrics[n][i, j] = m[n]
                    present[n][i, j] = True
    return RunArrays(metrics=metrics, present=present,
                     lengths=np.array([len(r) for r in runs]))


def test_inputs_and_chunks_give_the_same_arrays() -> None:
    runs = random_runs(5, 9, 20, train=True)
    policy = trainctl.EarlyStopping("val_loss", restore_best_weights=True)
    grid = {"patience": [0, 1, 3], "min_delta": [0.0, 0.1]}
    base = sweep(policy, grid, runs)
    as_runs = [Run.from_rounds(r, source=f"run {i}") for i, r in enumerate(runs)]
    arrays = _arrays(runs, ("val_loss", "loss"))
    variants = [
        sweep(policy, grid, as_runs, chunk=1),
        sweep(policy, grid, iter(runs), chunk=4),
        sweep(policy, grid, arrays, chunk=2),
        sweep(policy, grid, [arrays]),
    ]
    for other in variants:
        for name in ("stop_round", "best", "best_round", "restored_round", "rounds_used"):
            np.testing.assert_array_equal(getattr(other, name), getattr(base, name))
        np.testing.assert_array_equal(other.regret, base.regret)
    assert variants[0].sources[2] == "run 2"
    lean = sweep(policy, grid, iter(runs), chunk=2, per_run=False)
    assert lean.per_run is None and lean.runs == len(runs)
    for key, column in base.summary().columns.items():
        np.testing.assert_allclose(lean.summary().columns[key], column, equal_nan=True)
    with pytest.raises(ValueError, match="per_run=False"):
        _ = lean.stop_round


def test_grids_over_the_monitor_and_the_rules() -> None:
    runs = random_runs(13, 4, 25, train=True)
    result = sweep(trainctl.EarlyStopping(mode="min", restore_best_weights=True),
                   {"monitor": ["val_loss", "loss"], "rules": ["keras", "lightning", "huggingface"],
                    "patience": [1, 4]}, runs)
    assert len(result.configs) == 12
    check(result, runs)
    # the regret of each configuration is measured on its own monitor
    for c, config in enumerate(result.configs):
        for r, rounds in enumerate(runs):
            at = int(result.restored_round[c, r])
            got = rounds[at].get(config.monitor, math.nan) if at >= 0 else math.nan
            assert same(float(result.restored_value[c, r]), got)


def test_regret_and_restored_value() -> None:
    curve = [3.0, 2.0, 1.0, 1.5, 2.5, 0.5, 4.0]
    runs = [[{"val_loss": v} for v in curve]]
    result = sweep(trainctl.EarlyStopping(), {"patience": [1, 2, 10],
                                              "restore_best_weights": [False, True]}, runs)
    # patience 1 stops at round 3 (1.5); patience 2 at round 4 (2.5); 10 never stops (4.0)
    assert result.stop_round[:, 0].tolist() == [3, 3, 4, 4, -1, -1]
    assert result.restored_value[:, 0].tolist() == [1.5, 1.0, 2.5, 1.0, 4.0, 0.5]
    assert result.run_best is not None and result.run_best[0] == 0.5
    np.testing.assert_allclose(result.regret[:, 0], [1.0, 0.5, 2.0, 0.5, 3.5, 0.0])
    np.testing.assert_allclose(result.relative_regret[:, 0], [2.0, 1.0, 4.0, 1.0, 7.0, 0.0])
    maxed = sweep(trainctl.EarlyStopping("val_acc", patience=1), None,
                  [[{"val_acc": v} for v in (0.5, 0.7, 0.6, 0.65, 0.9)]])
    # 0.6 does not improve on 0.7: patience 1 stops there, keeping 0.6 against the run's 0.9
    assert maxed.stop_round[0, 0] == 2 and maxed.regret[0, 0] == pytest.approx(0.3)


def test_summary_text_data_csv_and_plot(tmp_path: Any) -> None:
    runs = random_runs(2, 6, 30, missing=False)
    result = sweep(trainctl.EarlyStopping(restore_best_weights=True),
                   {"patience": [1, 3, 8], "min_delta": [0.0, 0.05]}, runs)
    summary = result.summary()
    rows = summary.rows()
    assert len(rows) == 6 and rows[0]["patience"] == 1 and rows[0]["min_delta"] == 0.0
    used = result.rounds_used.mean(axis=1)
    np.testing.assert_allclose(summary.columns["rounds_used"], used)
    np.testing.assert_allclose(summary.columns["stopped"], (result.stop_round >= 0).mean(axis=1))
    text = str(summary)
    assert "patience=3, min_delta=0.05" in text and "rel.regret" in text
    assert summary.pareto().any()
    path = result.to_csv(tmp_path / "runs.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 6 * len(runs)
    assert lines[0].startswith("config,patience,min_delta,run,source,length,run_best,stop_round")
    summary.to_csv(tmp_path / "summary.csv")
    png = result.plot(tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_and_plateau_summaries(tmp_path: Any) -> None:
    runs = random_runs(4, 3, 15, missing=False)
    kept = sweep(trainctl.CheckpointPolicy("val_loss", filename="e{epoch}"),
                 {"save_top_k": [1, 2], "keep_last_n": [None, 1]}, runs)
    assert "kept" in str(kept.summary())
    kept.to_csv(tmp_path / "kept.csv")
    assert "kept_rounds" in (tmp_path / "kept.csv").read_text().splitlines()[0]
    cut = sweep(trainctl.ReduceLROnPlateau(), {"patience": [0, 2]}, runs, lr=0.1)
    assert "cuts" in str(cut.summary())


def test_bad_grids_and_policies_are_named() -> None:
    runs = [[{"val_loss": 1.0}]]
    with pytest.raises(ValueError, match="'patiense' is not an argument of EarlyStopping"):
        sweep(trainctl.EarlyStopping(), {"patiense": [1]}, runs)
    with pytest.raises(ValueError, match=r"grid combination \(patience=-1\): 'patience' must "
                                         r"be >= 0, got -1"):
        sweep(trainctl.EarlyStopping(), {"patience": [1, -1]}, runs)
    with pytest.raises(TypeError, match="must be a list of values"):
        sweep(trainctl.EarlyStopping(), {"patience": 3}, runs)
    with pytest.raises(TypeError, match="a sweep replays EarlyStopping"):
        sweep(trainctl.TerminateOnNaN(), None, runs)
    with pytest.raises(ValueError, match="needs the starting learning rate"):
        sweep(trainctl.ReduceLROnPlateau(), None, runs)
    with pytest.raises(ValueError, match=r"must contain \{epoch\}"):
        sweep(trainctl.CheckpointPolicy("val_loss", filename="best"), None, runs)
    with pytest.raises(ValueError, match="trigger on epochs"):
        sweep(trainctl.CheckpointPolicy("val_loss", every_n_steps=10), None, runs)
    with pytest.raises(ValueError, match="'chunk' must be an int >= 1, got 0"):
        sweep(trainctl.EarlyStopping(), None, runs, chunk=0)
    with pytest.raises(TypeError, match=r"runs\[0\] must be"):
        sweep(trainctl.EarlyStopping(), None, [3.0])


def test_strict_raises_where_simulate_raises() -> None:
    rounds = [{"val_loss": 1.0}, {"val_loss": 2.0}, {"loss": 0.1}, {"val_loss": 3.0}]
    policy = trainctl.EarlyStopping(strict=True)
    with pytest.raises(trainctl.MetricNotFoundError):
        trainctl.simulate(trainctl.EarlyStopping(strict=True, patience=5), rounds)
    with pytest.raises(trainctl.MetricNotFoundError, match="round 2: metric 'val_loss'"):
        sweep(policy, {"patience": [5]}, [rounds])
    # patience 1 stops at round 1, before the round without the metric: no error, as simulate
    assert trainctl.simulate(trainctl.EarlyStopping(strict=True, patience=1), rounds)[-1].stop
    assert sweep(policy, {"patience": [1]}, [rounds]).stop_round[0, 0] == 1


def test_a_metric_never_logged_warns() -> None:
    with pytest.warns(UserWarning, match="'val_loss' was logged in none of the 1 runs"):
        result = sweep(trainctl.EarlyStopping(), None, [[{"eval_loss": 1.0}] * 3])
    assert result.stop_round[0, 0] == -1


def test_empty_and_no_runs() -> None:
    result = sweep(trainctl.EarlyStopping(), {"patience": [0, 1]}, [[], [{"val_loss": 1.0}]])
    assert result.stop_round.tolist() == [[-1, -1], [-1, -1]]
    assert result.rounds_used.tolist() == [[0, 1], [0, 1]]
    assert math.isnan(result.best[0, 0]) and result.best[0, 1] == 1.0
    nothing = sweep(trainctl.EarlyStopping(), {"patience": [0, 1]}, [])
    assert nothing.runs == 0 and nothing.stop_round.shape == (2, 0)
    assert np.isnan(nothing.summary().columns["rounds_used"]).all()


@pytest.mark.parametrize("name", ["trainctl._prechelt", "trainctl.replay", "trainctl.replay._sweep",
                                  "trainctl.replay._corpus"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(name))
    assert failures == 0 and tried > 0
