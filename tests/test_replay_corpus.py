"""The bundled corpus as runs (``load_corpus``, ``corpus_arrays``), sweeps on it checked against
``simulate`` run by run, and the Prechelt-style table script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _replay_reference import reference, same

import trainctl
from trainctl._prechelt import GL, PQ, UP
from trainctl.replay import corpus_arrays, default_corpus_path, load_corpus, sweep
from trainctl.replay import table as table_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> list[trainctl.replay.Run]:
    return load_corpus()


def test_the_corpus_reads_as_the_file_says(corpus: list[trainctl.replay.Run]) -> None:
    assert default_corpus_path() == ROOT / "data" / "curves.npz"
    with np.load(ROOT / "data" / "curves.npz") as data:
        val, train, metric = data["val_loss"], data["train_loss"], data["val_metric"]
        names = data["metric_name"]
    assert len(corpus) == 192 and all(len(run) == 150 for run in corpus)
    for i in (0, 57, 191):
        run = corpus[i]
        assert run.epochs == tuple(range(150))
        assert run.metric("val_loss").tolist() == val[i].astype(float).tolist()
        assert run.metric("loss").tolist() == train[i].astype(float).tolist()
        assert run.metric(f"val_{names[i]}").tolist() == metric[i].astype(float).tolist()
    assert "diabetes" in corpus[191].source and "val_r2" in corpus[191].rounds[0]


def test_arrays_and_runs_sweep_alike(corpus: list[trainctl.replay.Run]) -> None:
    grid = {"patience": [1, 5, 20], "restore_best_weights": [False, True]}
    a = sweep(trainctl.EarlyStopping(), grid, corpus)
    b = sweep(trainctl.EarlyStopping(), grid, corpus_arrays(), chunk=50)
    for name in ("stop_round", "best", "best_round", "restored_round", "regret"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    acc = sweep(trainctl.EarlyStopping("val_accuracy", patience=3), None, corpus_arrays())
    assert (acc.stop_round[0, 144:] == -1).all()  # diabetes logs no accuracy: never stops


@pytest.mark.parametrize("policy,grid", [
    (trainctl.EarlyStopping(restore_best_weights=True), {"patience": [2, 10],
                                                         "min_delta": [0.0, 1e-3]}),
    (trainctl.EarlyStopping("val_accuracy", rules="lightning"), {"patience": [3, 8]}),
    (GL(restore_best_weights=True), {"alpha": [1.0, 5.0]}),
    (PQ(strip=5), {"alpha": [0.5, 2.0]}),
    (UP(strip=5), {"s": [2, 4]}),
], ids=["keras", "lightning-accuracy", "GL", "PQ", "UP"])
def test_corpus_sweeps_equal_simulate(corpus: list[trainctl.replay.Run], policy: object,
                                      grid: dict[str, list[object]]) -> None:
    result = sweep(policy, grid, corpus)
    for c, config in enumerate(result.configs):
        for r in range(0, 192, 23):  # every dataset, optimizer and width
            ref = reference(config, corpus[r].rounds)
            assert int(result.stop_round[c, r]) == ref.stop_round
            assert same(float(result.best[c, r]), ref.best)
            assert int(result.restored_round[c, r]) == ref.restored_round


def test_the_table_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert table_module.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("192 runs of 150 epochs")
    rows = {line.rsplit("  ", 5)[0].strip(): line for line in out[2:]}
    assert len(out) == 2 + sum(len(v) for _, _, _, v in table_module.CRITERIA)
    assert any(k.startswith("PQ alpha (strip 5) 0.75") for k in rows)
    # longer patience trains longer and loses less, as Prechelt found for slower criteria
    result = sweep(trainctl.EarlyStopping(restore_best_weights=True),
                   {"patience": [2, 5, 10, 20]}, corpus_arrays())
    summary = result.summary().columns
    assert (np.diff(summary["fraction_used"]) > 0).all()
    assert (np.diff(summary["relative_regret"]) < 0).all()
