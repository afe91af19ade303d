"""A run killed with SIGKILL and resumed from its checkpoints ends like an uninterrupted one.

The worker (tests/_train_worker.py) drives a Controller with plateau, early stopping and a
CheckpointPolicy (best 2 + latest 1 + last), writes through CheckpointStore, and on start resumes
from the newest checkpoint in the manifest. Each case kills it at a chosen round and point (after
the decision, after the save, after the rolling "last", after the deletes) or at a random time,
resumes it, and compares with an uninterrupted run: the same decision for every round, the same
final controller state and kept set, and the same files, except that a checkpoint training was
resumed from is never deleted by the resumed run (it stays on disk, protected).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("_train_worker.py")
ROOT = Path(__file__).resolve().parents[1]
POINTS = ("after_step", "after_save", "after_last", "after_delete")


def run(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(directory), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def decisions(log: Path) -> dict[int, list[Any]]:
    """The last decision logged per round (a resumed run redoes the rounds after its checkpoint)."""
    out: dict[int, list[Any]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        out[entry[0]] = entry
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[int, Any]]:
    base = tmp_path_factory.mktemp("uninterrupted")
    done = run(base / "ckpt")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), decisions(base / "decisions.jsonl")


def check(base: Path, final: dict[str, Any], ref: tuple[dict[str, Any], dict[int, Any]]) -> None:
    expected, expected_log = ref
    assert decisions(base / "decisions.jsonl") == expected_log
    assert final["state"] == expected["state"]
    assert final["kept"] == expected["kept"]
    extra = set(final["files"]) - set(expected["files"])
    assert set(expected["files"]) <= set(final["files"])
    assert extra <= set(final["protected"]), f"unexpected files left: {extra}"


_rng = random.Random(20261121)
KILLS = sorted({(_rng.randrange(0, 24), _rng.choice(POINTS)) for _ in range(40)})[:24]


@pytest.mark.parametrize(("kill_round", "kill_at"), KILLS)
def test_kill_at_a_chosen_point_and_resume(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[int, Any]], kill_round: int,
    kill_at: str,
) -> None:
    killed = run(tmp_path / "ckpt", "--kill-round", str(kill_round), "--kill-at", kill_at)
    if killed.returncode == 0:
        pytest.skip(f"the run ended before round {kill_round}")  # early stopping came first
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(tmp_path / "ckpt")
    assert resumed.returncode == 0, resumed.stderr
    check(tmp_path, json.loads(resumed.stdout), reference)


@pytest.mark.parametrize("seed", range(4))
def test_kill_at_a_random_time_and_resume(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[int, Any]], seed: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "ckpt")], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(random.Random(seed).uniform(0.15, 0.6))
    proc.kill()
    proc.communicate(timeout=60)
    resumed = run(tmp_path / "ckpt")
    assert resumed.returncode == 0, resumed.stderr
    check(tmp_path, json.loads(resumed.stdout), reference)
