"""The replay corpus data/curves.npz: its layout, its content, and the script that records it.

The corpus is the ground truth that early-stopping policies will be replayed and tuned on, so the
tests pin what a consumer relies on (shapes, dtypes, NaN only after a divergence, every dataset
present, enough runs that overfit) and that data/record_curves.py still produces that layout.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "curves.npz"
SCRIPT = ROOT / "data" / "record_curves.py"

DATASETS = {"digits", "breast_cancer", "wine", "diabetes"}
SIZES = {"digits": 1797, "breast_cancer": 569, "wine": 178, "diabetes": 442}
CURVES = ("train_loss", "val_loss", "val_metric")
# Per-run metadata and its numpy dtype kind: U (str, loads without pickle), f, i, b.
PER_RUN = {
    "dataset": "U", "task": "U", "metric_name": "U", "optimizer": "U", "lr": "f",
    "width": "i", "weight_decay": "f", "seed": "i", "batch_size": "i", "n_train": "i",
    "n_val": "i", "diverged": "b",
}


def load(path: Path) -> dict[str, np.ndarray]:
    # allow_pickle=False: the layout promises plain arrays only, strings included.
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def assert_layout(c: dict[str, np.ndarray]) -> None:
    """What README.md documents, checked on any file the script writes."""
    assert set(c) == {"version", "epochs", *CURVES, *PER_RUN}
    assert c["version"].shape == () and int(c["version"]) == 1
    assert c["epochs"].shape == () and c["epochs"].dtype.kind == "i"
    epochs = int(c["epochs"])
    runs = len(c["dataset"])
    for name in CURVES:
        assert c[name].dtype == np.float32 and c[name].shape == (runs, epochs), name
    for name, kind in PER_RUN.items():
        assert c[name].dtype.kind == kind and c[name].shape == (runs,), name

    # NaN marks divergence only: a run not flagged is finite throughout; a flagged one is
    # finite up to the epoch it diverged and NaN from there on, in all three curves alike.
    for i in range(runs):
        finite = np.isfinite(np.stack([c[name][i] for name in CURVES]))
        if not c["diverged"][i]:
            assert finite.all(), f"run {i} has non-finite values but is not marked diverged"
        else:
            first_bad = int(np.argmin(finite.all(axis=0)))
            assert not finite[:, first_bad:].any() and finite[:, :first_bad].all(), i

    assert set(c["dataset"]) <= DATASETS
    for i, ds in enumerate(c["dataset"]):
        regression = ds == "diabetes"
        assert c["task"][i] == ("regression" if regression else "classification")
        assert c["metric_name"][i] == ("r2" if regression else "accuracy")
        assert c["n_train"][i] + c["n_val"][i] == SIZES[ds]
    assert set(c["optimizer"]) <= {"adam", "sgd"}
    assert (c["lr"] > 0).all() and (c["width"] > 0).all() and (c["weight_decay"] >= 0).all()

    with np.errstate(invalid="ignore"):  # comparisons with the NaN of diverged runs
        assert not (c["train_loss"] < 0).any() and not (c["val_loss"] < 0).any()
        acc = c["val_metric"][c["metric_name"] == "accuracy"]
        assert not ((acc < 0) | (acc > 1)).any()
        assert not (c["val_metric"][c["metric_name"] == "r2"] > 1).any()


@pytest.fixture(scope="module")
def corpus() -> dict[str, np.ndarray]:
    return load(CORPUS)


@pytest.fixture(scope="module")
def recorder() -> Iterator[ModuleType]:
    """data/record_curves.py as a module (data/ is not a package)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("record_curves", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body is processed.
    sys.modules["record_curves"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["record_curves"]


def test_corpus_layout(corpus: dict[str, np.ndarray]) -> None:
    assert_layout(corpus)
    assert 100 <= int(corpus["epochs"]) <= 200
    assert CORPUS.stat().st_size < 400_000, "keep the checked-in corpus compact"


def test_corpus_size_and_coverage(corpus: dict[str, np.ndarray]) -> None:
    runs = len(corpus["dataset"])
    assert runs >= 100
    names, counts = np.unique(corpus["dataset"], return_counts=True)
    assert set(names) == DATASETS
    assert counts.min() >= 20, dict(zip(names, counts, strict=True))
    # The knobs really vary, and no two runs recorded the same curve.
    for knob in ("lr", "width", "seed", "optimizer", "weight_decay"):
        assert len(np.unique(corpus[knob])) >= 2, knob
    assert len(np.unique(corpus["val_loss"], axis=0)) == runs


def test_many_runs_overfit(corpus: dict[str, np.ndarray]) -> None:
    val = corpus["val_loss"]
    epochs = int(corpus["epochs"])
    best = np.argmin(np.where(np.isfinite(val), val, np.inf), axis=1)
    overfit = best < int(0.8 * epochs)
    # Recorded: 70% overall (digits 75%, breast_cancer 77%, wine 29%, diabetes 100%). The bounds
    # are conservative so a re-recording on another CPU, with slightly different rounding, passes.
    assert overfit.mean() >= 0.5, overfit.mean()
    for ds in DATASETS:
        assert overfit[corpus["dataset"] == ds].any(), ds
    # Not only a minimum somewhere: in most overfitting runs the loss clearly climbs afterwards.
    last = val[:, -1]
    rose = overfit & ~corpus["diverged"] & (last >= 1.05 * val.min(axis=1, initial=np.inf,
                                                                   where=np.isfinite(val)))
    assert rose.mean() >= 0.4, rose.mean()  # recorded: 66%
    # And early stopping has something to decide on the other side too: some runs never overfit.
    assert (~overfit).sum() >= 10


def test_corpus_matches_the_script(corpus: dict[str, np.ndarray], recorder: Any) -> None:
    """The checked-in file is what the current script's grid records (rerun it after a change)."""
    grid = recorder.grid(False)
    assert int(corpus["epochs"]) == recorder.EPOCHS
    assert len(grid) == len(corpus["dataset"])
    for name in ("dataset", "optimizer", "lr", "width", "weight_decay", "seed"):
        assert list(corpus[name]) == [getattr(cfg, name) for cfg in grid], name


def test_quick_run_of_the_script(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path / "quick.npz"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    quick = load(out)
    assert_layout(quick)
    assert set(quick["dataset"]) == DATASETS
    assert len(quick["dataset"]) == 8 and int(quick["epochs"]) == 5


def test_quick_refuses_to_overwrite_the_corpus(
    recorder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: the refusal comes from argparse, before anything is trained or written.
    mtime = CORPUS.stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:
        recorder.main(["--quick"])
    assert exc.value.code == 2 and "--quick needs --out" in capsys.readouterr().err
    assert CORPUS.stat().st_mtime_ns == mtime


def test_recording_is_deterministic(recorder: Any) -> None:
    import torch

    # fork_rng: record() seeds torch's global generator, which other tests may rely on.
    with torch.random.fork_rng():
        a, b = (recorder.record(recorder.grid(True), 3, lambda _: None) for _ in range(2))
    for name in CURVES:
        np.testing.assert_array_equal(a[name], b[name])
