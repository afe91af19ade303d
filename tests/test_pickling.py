"""Every public object round-trips through plain ``pickle`` to an equal object.

Configurations pickle by their arguments (their compiled comparisons are rebuilt), controllers
with their progress, schedules built on module-level functions, decisions and reasons; the
drop-ins and callbacks too (``multiprocessing``, ``ddp_spawn`` and Ray pickle them). The
Lightning drop-in runs under ``strategy="ddp_spawn"`` in 2 processes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import trainctl
from trainctl import schedules as S


def _factor(t: int) -> float:
    return 0.9 ** (t // 10)


def _keras_step(epoch: int, lr: float) -> float:
    return lr * 0.5 if epoch % 3 == 2 else lr


CONFIGS: dict[str, Any] = {
    "EarlyStopping": trainctl.EarlyStopping("val_acc", patience=3, min_delta=0.01,
                                            restore_best_weights=True, rules="lightning",
                                            check_finite=True),
    "ReduceLROnPlateau": trainctl.ReduceLROnPlateau(min_lr=(0.1, 0.2), rules="torch",
                                                    threshold_mode="rel", eps=1e-6),
    "TerminateOnNaN": trainctl.TerminateOnNaN(stop_is_final=False),
    "CheckpointPolicy": trainctl.CheckpointPolicy("val_loss", save_top_k=2, save_last=True,
                                                  filename="e{epoch}-{val_loss:.2f}"),
    "Monitor": trainctl.Monitor("val_acc", delta=0.5, precision="float32"),
    "Comparison": trainctl.Comparison(direction="min", delta=0.1, threshold_mode="rel"),
}
SCHEDULES: dict[str, Any] = {
    "warmup_cosine": S.warmup(S.cosine(0.1, 100), 10),
    "chain": S.chain(S.constant(1.0), S.exponential(1.0, 0.5)),
    "join": S.join([S.constant(0.1), S.step_decay(0.1, 10, 0.5)], [20]),
    "one_cycle": S.one_cycle(0.1, total_steps=100),
    "cyclic": S.cyclic(0.01, 0.1, step_size_up=5),
    "lambda_lr": S.lambda_lr(0.1, _factor),
    "keras_recurrence": S.keras_recurrence(0.1, _keras_step),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_configurations_pickle_to_an_equal_working_object(name: str) -> None:
    obj = CONFIGS[name]
    again = pickle.loads(pickle.dumps(obj))
    assert again == obj and repr(again) == repr(obj)
    if hasattr(obj, "improves"):
        assert again.improves(0.5, 1.0) == obj.improves(0.5, 1.0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_pickle_to_an_equal_schedule(name: str) -> None:
    s = SCHEDULES[name]
    s(50)  # a memo (keras_recurrence) is not shipped along
    again = pickle.loads(pickle.dumps(s))
    assert again == s and [again(t) for t in range(60)] == [s(t) for t in range(60)]


def test_a_controller_pickles_with_its_progress() -> None:
    ctl = trainctl.Controller(
        CONFIGS["EarlyStopping"], trainctl.ReduceLROnPlateau("val_acc", patience=0),
        CONFIGS["CheckpointPolicy"], lr=0.1, schedule=SCHEDULES["lambda_lr"],
    )
    for v in (0.5, 0.4):
        ctl.step({"val_acc": v, "val_loss": 1 - v})
    again = pickle.loads(pickle.dumps(ctl))
    assert again == ctl
    assert again.step({"val_acc": 0.6, "val_loss": 0.4}) == ctl.step(
        {"val_acc": 0.6, "val_loss": 0.4}
    )


def test_decisions_and_reasons_pickle() -> None:
    ctl = trainctl.Controller(trainctl.EarlyStopping("loss", patience=0))
    ctl.step({"loss": 1.0})
    d = ctl.step({"loss": 2.0})
    again = pickle.loads(pickle.dumps(d))
    assert again == d and again.explain() == d.explain() and again.stop


def _same_vars(a: Any, b: Any) -> None:
    assert vars(a).keys() == vars(b).keys()
    for key, value in vars(a).items():
        other = vars(b)[key]
        if key in ("runner", "_owner"):
            continue  # compared below through what they hold
        assert value == other, key


def test_the_keras_drop_ins_and_callback_pickle(tmp_path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from trainctl.adapters import keras as tk

    for cb in (
        tk.EarlyStopping(patience=2, mode="min", restore_best_weights=True),
        tk.ReduceLROnPlateau(factor=0.0, mode="min"),
        tk.ModelCheckpoint(str(tmp_path / "m{epoch}.keras")),
        tk.TerminateOnNaN(raise_error=True),
        tk.LearningRateScheduler(_keras_step),
    ):
        _same_vars(pickle.loads(pickle.dumps(cb)), cb)
    cb = tk.ControllerCallback(trainctl.Controller(CONFIGS["EarlyStopping"]), store=tmp_path)
    again = pickle.loads(pickle.dumps(cb))
    _same_vars(again, cb)
    assert again.runner.controller == cb.controller and again.controller is again.runner.controller
    assert again.runner._store.directory == tmp_path  # type: ignore[union-attr]


def test_the_torch_drop_ins_pickle() -> None:
    torch = pytest.importorskip("torch")
    from trainctl.adapters.torch import ReduceLROnPlateau, ScheduleLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = ReduceLROnPlateau(opt, patience=1, factor=0.0)
    plateau.step(1.0)
    again = pickle.loads(pickle.dumps(plateau))
    assert again.state_dict() == plateau.state_dict() and again.policy == plateau.policy
    sched = ScheduleLR(opt, SCHEDULES["warmup_cosine"])
    assert pickle.loads(pickle.dumps(sched)).state_dict() == sched.state_dict()


def test_the_lightning_drop_in_and_callback_pickle(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from trainctl.adapters import lightning as tl

    es = tl.EarlyStopping("val_loss", patience=2, min_delta=0.1)
    again = pickle.loads(pickle.dumps(es))
    assert vars(again) == vars(es)  # Lightning's own test_pickling asserts exactly this
    cb = tl.ControllerCallback(trainctl.Controller(CONFIGS["EarlyStopping"]), dirpath=tmp_path)
    again_cb = pickle.loads(pickle.dumps(cb))
    _same_vars(again_cb, cb)
    assert again_cb.runner.controller == cb.controller


@pytest.mark.slow
def test_the_lightning_drop_in_runs_under_ddp_spawn(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    worker = Path(__file__).with_name("_lightning_spawn_worker.py")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(worker.parent), env.get("PYTHONPATH", "")])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(
        [sys.executable, str(worker), str(tmp_path)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # patience 3 after the best 0.8 at epoch 1: both stop after epoch 4, in agreement
        assert result["epoch"] == 5, rank
        for key in ("wait_count", "stopped_epoch", "patience", "stopping_reason"):
            assert result["ours"][key] == result["theirs"][key], (rank, key)
        assert math.isclose(result["ours"]["best_score"], result["theirs"]["best_score"])
        assert result["trainctl"]["best"] == pytest.approx(0.8)
