"""The README's demo: it trains, the policies act, and each action is explained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from trainctl._demo import make_moons, run_demo


def test_demo_run_reduces_lr_stops_early_and_restores(tmp_path: Path) -> None:
    lines: list[str] = []
    history = run_demo(out=lines.append, checkpoint_dir=str(tmp_path))
    text = "\n".join(lines)
    assert 5 < len(history) < 200, "early stopping should end the run before the epoch cap"
    assert "reduced_lr" in text and "lr " in text and " -> " in text
    assert "patience_exhausted" in text and "restore the weights of epoch" in text
    best = min(h["val_loss"] for h in history)
    assert f"final weights: val_loss {best:.4f}" in text  # the restored weights are the best
    # best 2 + latest on disk, the best among them, each loadable with its arrays
    kept = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(kept) == 3 and f"-{best:.4f}.npz" in " ".join(kept)
    assert "checkpoints kept (best 2 + latest): " in text
    with np.load(tmp_path / kept[0]) as arrays:
        assert set(arrays.files) == {"w1", "b1", "w2", "b2", "w3", "b3"}


def test_demo_counts_epochs_one_way(tmp_path: Path) -> None:
    """The table, the messages and the file names name the best epoch by the same number."""
    lines: list[str] = []
    history = run_demo(out=lines.append, checkpoint_dir=str(tmp_path))
    text = "\n".join(lines)
    best_index = int(np.argmin([h["val_loss"] for h in history]))  # 0-based
    best = history[best_index]["val_loss"]
    rows = {
        float(m.group(2)): int(m.group(1))
        for m in re.finditer(r"^\s*(\d+)\s+[\d.]+\s+([\d.]+)\s", text, re.MULTILINE)
    }
    shown = rows[round(best, 4)]
    assert shown == best_index + 1  # the first row is epoch 1, as Keras' "Epoch 1/50"
    restored = set(re.findall(r"restore the weights of epoch (\d+)", text))
    assert restored == {str(shown)}
    assert (tmp_path / f"epoch{shown:03d}-{best:.4f}.npz").exists()
    assert re.search(r"^\s*1\s", text, re.MULTILINE) and not re.search(r"^\s*0\s", text, re.M)


def test_demo_data_is_deterministic() -> None:
    a, b = make_moons(100, 0.1, 0.1, seed=3), make_moons(100, 0.1, 0.1, seed=3)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_cli_entry_point() -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "trainctl", "demo", "--epochs", "3"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "trainctl demo" in out and "final weights" in out


def test_replay_example_runs_and_reports_each_configuration() -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "examples/replay_history.py"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    stops = [int(m) for m in re.findall(r"stops after epoch (\d+)", out)]
    assert len(stops) == 3 and stops == sorted(stops) and stops[0] < stops[-1]
    assert "ReduceLROnPlateau(val_loss)" in out and "EarlyStopping(val_loss)" in out
