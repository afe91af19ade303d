"""ControllerCallback and the drop-in EarlyStopping under DDP: 2 CPU processes, gloo.

The fit runs in a subprocess (``tests/_lightning_ddp_worker.py``) with a hard timeout, so a hang
(ranks that disagree about a collective checkpoint, Lightning#19045) fails the test instead of
the suite. The ranks log different ``val_loss`` streams (``sync_dist=False``): rank 0 plateaus,
rank 1 sees a NaN at epoch 4. Expected:

- identical decisions on both ranks (stop, learning rate, saves, deletes), identical rates in the
  optimizers at every batch and identical controller states at the end;
- the stop comes from rank 1 alone and stops both ranks at epoch 4; the rate reduction comes from
  rank 0's metrics and applies on both;
- only rank 0 wrote files, and the directory holds exactly what the manifest lists;
- Lightning's EarlyStopping and the drop-in agree on each rank (Lightning's own reduction).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainctl.storage import LOCK_NAME, CheckpointStore

pytest.importorskip("lightning")

WORKER = Path(__file__).with_name("_lightning_ddp_worker.py")
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(WORKER.parent), env.get("PYTHONPATH", "")])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(out)],
            cwd=out,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the DDP fit did not finish in {TIMEOUT_S} s (a hang?): {exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in results:
        r["directory"] = out / "checkpoints"
    return results


@pytest.mark.slow
def test_decisions_identical_on_both_ranks(ranks: list[dict[str, Any]]) -> None:
    r0, r1 = ranks
    assert r0["decisions"] == r1["decisions"]
    assert r0["rates"] == r1["rates"]
    assert r0["controller"] == r1["controller"]
    assert (r0["current_epoch"], r0["global_step"]) == (r1["current_epoch"], r1["global_step"])


@pytest.mark.slow
def test_a_stop_on_one_rank_stops_both(ranks: list[dict[str, Any]]) -> None:
    r0, r1 = ranks
    # rank 1 saw NaN at epoch 4 and voted stop; rank 0's own policies did not
    assert "non_finite" in r1["local_stop_events"][-1]
    assert not {"non_finite", "patience_exhausted"} & set(r0["local_stop_events"][-1])
    for r in ranks:
        assert [d["stop"] for d in r["decisions"]] == [False] * 4 + [True]
        assert r["current_epoch"] == 5
        assert r["lightning_es"]["stopped_epoch"] == 4  # Lightning's reduction, for reference
        assert r["trainctl_es"] == r["lightning_es"]
    assert r1["lightning_es"]["stopping_reason"] == "NON_FINITE_METRIC"
    assert r0["lightning_es"]["stopping_reason"] == "NOT_STOPPED"


@pytest.mark.slow
def test_rate_and_files_follow_rank_0(ranks: list[dict[str, Any]]) -> None:
    r0, r1 = ranks
    # rank 0's plateau (0.9, 0.9, 0.9) reduces the rate on both ranks; rank 1 never plateaus
    assert [d["lr"] for d in r1["decisions"]] == [0.05, 0.05, 0.05, 0.025, 0.025]
    assert {tuple(x) for x in r1["rates"][-4:]} == {(0.025,)}
    # the ranks disagreed on what to save (rank 1 ranks its own metrics), yet nothing hung
    assert r0["local_stop_events"] != r1["local_stop_events"]
    saved = [d["save"] for d in r0["decisions"] if d["save"] is not None]
    assert r0["has_store"] and not r1["has_store"]
    assert r0["store_saves"] == saved and r1["store_saves"] == []
    directory: Path = r0["directory"]
    store = CheckpointStore(directory)
    assert store.recover().clean
    # the store's own files: the manifest and the writer's lock
    on_disk = {
        p.name for p in directory.iterdir()
        if not p.name.startswith("trainctl-") and p.name != LOCK_NAME
    }
    kept = {c["name"] for c in r0["controller"]["policies"][3]["state"]["kept"]}
    assert on_disk == kept == {e.name for e in store.entries} == {"3.ckpt", "5.ckpt"}
