"""TorchController on two CPU processes (gloo): every rank gets the same decision.

Each test starts two real ranks as subprocesses with a hard time limit, so a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import trainctl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _torch_ddp_worker import STREAMS, make_controller

WORKER = Path(__file__).resolve().parent / "_torch_ddp_worker.py"
ROOT = Path(__file__).resolve().parents[1]
LIMIT = 120  # seconds for a whole 2-rank job

pytestmark = pytest.mark.slow


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _job(scenario: str, outdir: Path) -> tuple[list[int], float]:
    port = _free_port()
    logs = [open(outdir / f"rank{rank}.log", "w") for rank in range(2)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), "2", port, scenario, str(outdir)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        for rank, log in enumerate(logs)
    ]
    start = time.monotonic()
    codes = []
    try:
        for p in procs:
            remaining = max(1.0, LIMIT - (time.monotonic() - start))
            p.wait(timeout=remaining)
            codes.append(p.returncode)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the 2-rank job {scenario!r} hung for more than {LIMIT} s")
    finally:
        for log in logs:
            log.close()
    return codes, time.monotonic() - start


def _logs(outdir: Path) -> str:
    """Both ranks' output, for the message of a failed assertion."""
    return "\n".join(f"--- rank {rank}:\n" + (outdir / f"rank{rank}.log").read_text()[-3000:]
                     for rank in range(2))


def _records(outdir: Path, rank: int) -> list[dict[str, Any]]:
    return json.loads((outdir / f"rank{rank}.json").read_text())  # type: ignore[no-any-return]


def test_ranks_with_different_metrics_get_identical_decisions(tmp_path: Path) -> None:
    codes, _ = _job("differ", tmp_path)
    assert codes == [0, 0], _logs(tmp_path)
    r0, r1 = _records(tmp_path, 0), _records(tmp_path, 1)
    assert r0 == r1
    # and they are the decisions of one controller fed the mean of the ranks' metrics
    ctl = make_controller()
    expected = []
    for epoch, (a, b) in enumerate(zip(STREAMS[0], STREAMS[1], strict=True)):
        d = ctl.step({"val_loss": (a + b) / 2}, epoch=epoch)
        expected.append((d.stop, d.lr, [r.event for r in d.reasons]))
        if d.stop:
            break
    got = [(r["stop"], r["lr"], r["events"]) for r in r0 if r["clock"] == "round"]
    assert got == expected
    assert any("reduced_lr" in e for _, _, e in got) and got[-1][0]
    # only rank 0 wrote checkpoints; rank 1's store directory was never created
    assert (tmp_path / "store-rank0" / "last.pt").exists()
    assert not (tmp_path / "store-rank1").exists()


def test_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    codes, _ = _job("nan", tmp_path)
    assert codes == [0, 0], _logs(tmp_path)
    r0, r1 = _records(tmp_path, 0), _records(tmp_path, 1)
    assert r0 == r1
    rounds = [r for r in r0 if r["clock"] == "round"]
    assert rounds[-1]["epoch"] == 3 and rounds[-1]["stop"]
    assert "non_finite" in rounds[-1]["events"]


def test_a_per_step_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    codes, _ = _job("step_nan", tmp_path)
    assert codes == [0, 0], _logs(tmp_path)
    r0, r1 = _records(tmp_path, 0), _records(tmp_path, 1)
    assert r0 == r1
    stop = [r for r in r0 if r["clock"] == "step"]
    # rank 0's NaN came at step 0 of epoch 1; the lazy check (every 2 steps) caught it at step 1
    assert [(r["epoch"], r["step"], r["events"][0]) for r in stop] == [(1, 1, "non_finite")]


def test_a_bad_metric_on_one_rank_fails_every_rank_with_a_clear_error(tmp_path: Path) -> None:
    codes, _ = _job("bad_metric", tmp_path)
    assert codes[0] != 0 and codes[1] != 0
    assert "one-element" in (tmp_path / "rank1.error").read_text()
    assert "rank 1 failed in step()" in (tmp_path / "rank0.error").read_text()


def test_a_rank_that_raises_does_not_leave_the_other_hanging(tmp_path: Path) -> None:
    codes, elapsed = _job("raise", tmp_path)
    assert codes[1] != 0 and "rank 1 failed in user code" in (
        tmp_path / "rank1.error"
    ).read_text()
    assert codes[0] != 0, "rank 0 must fail, not finish alone or hang"
    assert elapsed < 60, f"rank 0 took {elapsed:.0f} s to notice that rank 1 was gone"


def test_single_process_needs_no_process_group() -> None:
    # the same controller without torch.distributed: the adapter reports rank 0, not distributed
    import torch

    from trainctl.adapters.torch import TorchController

    model = torch.nn.Linear(3, 1)
    loop = TorchController(trainctl.Controller(lr=0.1), model, torch.optim.SGD(
        model.parameters(), lr=0.1))
    assert loop.rank == 0 and not loop.distributed
