"""The PyTorch adapter: decisions carried out on a real model and optimizer.

Covers applying rates to param groups (each group keeping its base rate, as torch's LambdaLR),
reading hand-changed rates back, best-weight snapshots on the CPU, checkpoints that load with
``weights_only=True``, lazy NaN checks, bad input, the example loop, and a run SIGKILLed at
several points and resumed, which must end exactly like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _locks import lock_is_free
from torch import nn

import trainctl
from trainctl.adapters.torch import (
    BestWeights,
    CheckpointLoadError,
    TorchController,
    cpu_state_dict,
    optimizer_lrs,
    set_optimizer_lrs,
)

ROOT = Path(__file__).resolve().parents[1]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def _two_groups(model: nn.Module, lrs: tuple[float, float] = (0.1, 0.01)) -> torch.optim.SGD:
    return torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": lrs[0]},
         {"params": model[2].parameters(), "lr": lrs[1]}],
        lr=lrs[0],
    )


def _train_step(model: nn.Module, opt: torch.optim.Optimizer) -> torch.Tensor:
    x = torch.randn(8, 3)
    loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


# -- learning rates -------------------------------------------------------------------------------


def test_schedule_keeps_each_group_base_rate_like_lambdalr() -> None:
    sched = trainctl.schedules.warmup(trainctl.schedules.cosine(0.1, 200), 20)
    model, ref_model = _model(), _model()
    opt, ref_opt = _two_groups(model), _two_groups(ref_model)
    loop = TorchController(trainctl.Controller(schedule=sched, lr=(0.1, 0.01)), model, opt)
    ref = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda t: sched(t) / 0.1)
    assert optimizer_lrs(opt) == pytest.approx(optimizer_lrs(ref_opt), rel=1e-12)
    for _ in range(150):
        _train_step(model, opt)
        ref_opt.step()
        loop.optimizer_step()
        ref.step()
        assert optimizer_lrs(opt) == pytest.approx(optimizer_lrs(ref_opt), rel=1e-12)


def test_plateau_reduces_every_group_and_reads_hand_changes_back() -> None:
    model = _model()
    opt = _two_groups(model)
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=0, factor=0.5, min_lr=(0.0, 0.004))
    )
    loop = TorchController(ctl, model, opt)
    loop.step({"val_loss": 1.0})
    d = loop.step({"val_loss": 2.0})
    assert d.lr == (0.05, 0.005) and optimizer_lrs(opt) == (0.05, 0.005)
    opt.param_groups[0]["lr"] = 0.3  # by hand: adopted, not overwritten
    d = loop.step({"val_loss": 2.0})
    assert optimizer_lrs(opt) == (0.15, 0.004) == d.lr


def test_rate_count_must_match_param_groups() -> None:
    model = _model()
    with pytest.raises(ValueError, match="3 learning rates but the optimizer has 2 param group"):
        TorchController(trainctl.Controller(lr=(0.1, 0.1, 0.1)), model, _two_groups(model))
    with pytest.raises(ValueError, match="2 param group"):
        set_optimizer_lrs(_two_groups(model), [0.1])


def test_tensor_learning_rates_are_updated_in_place() -> None:
    model = _model()
    lr = torch.tensor(0.1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    set_optimizer_lrs(opt, 0.05)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    assert optimizer_lrs(opt) == pytest.approx((0.05,))


# -- best weights ---------------------------------------------------------------------------------


def test_best_weights_are_a_cpu_copy_restored_at_the_end() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    )
    loop = TorchController(ctl, model, opt)
    best = None
    for v in [3.0, 1.0, 2.0, 2.5]:
        _train_step(model, opt)
        d = loop.step({"val_loss": v})
        if d.snapshot_best:
            best = {k: t.clone() for k, t in model.state_dict().items()}
    kept = loop.best_weights.state_dict()
    assert kept is not None and all(t.device.type == "cpu" for t in kept.values())
    assert any(not torch.equal(model.state_dict()[k], best[k]) for k in best)  # type: ignore[index]
    end = loop.finish()
    assert end.restore_best
    for k, t in model.state_dict().items():
        assert torch.equal(t, best[k])  # type: ignore[index]


def test_cpu_state_dict_does_not_alias_the_model() -> None:
    model = _model()
    copy = cpu_state_dict(model)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(copy["0.weight"], model[0].weight)
    weights = BestWeights()
    assert not weights.restore(model) and not weights.available


# -- NaN checks -----------------------------------------------------------------------------------


def test_cpu_loss_is_checked_every_step() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TorchController(trainctl.Controller(trainctl.TerminateOnNaN()), model, opt)
    assert not loop.optimizer_step(torch.tensor(1.0)).stop
    d = loop.optimizer_step(torch.tensor(math.inf))
    assert d.stop and d.reasons[0].event == "non_finite"


def test_lazy_check_stops_at_the_next_check_point() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TorchController(
        trainctl.Controller(trainctl.TerminateOnNaN()), model, opt, check_every=4
    )
    stops = [loop.optimizer_step(torch.tensor(v)).stop for v in [1.0, math.nan, 1.0, 1.0, 1.0]]
    assert stops == [False, False, False, True, True]
    # a pending flag is resolved at the next round, too
    loop2 = TorchController(
        trainctl.Controller(trainctl.TerminateOnNaN()), _model(), opt, check_every=100
    )
    assert not loop2.optimizer_step(torch.tensor(math.nan)).stop
    assert loop2.step({"val_loss": 1.0}).stop


# -- checkpoints and bad input --------------------------------------------------------------------


def _ckpt_loop(tmp_path: Path, model: nn.Module | None = None, **kw: Any) -> TorchController:
    model = model or _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=1, extension=".pt"),
        lr=1e-3,
    )
    return TorchController(ctl, model, opt, store=tmp_path, **kw)


def test_checkpoint_round_trip_restores_controller_optimizer_and_extra(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path, extra_state=lambda: {"epoch": 7, "rng": torch.get_rng_state()})
    for v in [1.0, 0.5, 0.7]:
        _train_step(loop.model, loop.optimizer)
        loop.step({"val_loss": v})
    assert [e.name for e in loop.store.entries] == ["epoch002.pt"]
    fresh = _ckpt_loop(tmp_path, model=_model(seed=1))
    resumed = fresh.resume()
    assert resumed.checkpoint == "epoch002.pt" and resumed.epoch == 2 and not resumed.stopped
    assert resumed.extra is not None and resumed.extra["epoch"] == 7
    assert fresh.controller.state_dict() != loop.controller.state_dict()  # saved at round 2
    ref = _ckpt_loop(tmp_path / "ref")
    ref.controller.load_state_dict(loop.store.load_state("epoch002.pt"))
    assert fresh.controller.state_dict() == ref.controller.state_dict()
    saved = torch.load(loop.store.path("epoch002.pt"), weights_only=True)
    for key, state in saved["optimizer"]["state"].items():
        mine = fresh.optimizer.state_dict()["state"][key]
        assert all(torch.equal(state[k], mine[k]) for k in state)  # Adam's moments came back
    for k, t in saved["model"].items():
        assert torch.equal(fresh.model.state_dict()[k], t)
    assert fresh.best_weights.available


def test_resume_with_an_empty_store_is_a_fresh_start(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path)
    resumed = loop.resume()
    assert resumed.fresh and resumed.epoch == 0 and loop.controller.rounds == 0


def test_checkpoint_of_another_model_is_rejected(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path)
    loop.step({"val_loss": 1.0})
    other = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(CheckpointLoadError, match="weights of another model"):
        _ckpt_loop(tmp_path, model=other).resume()


def test_a_file_that_is_not_a_trainctl_checkpoint_is_rejected(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path / "run")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointLoadError, match="not a trainctl checkpoint"):
        loop.load_checkpoint(plain)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointLoadError, match="not a trainctl checkpoint"):
        loop.load_checkpoint(garbage)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(_Evil.marker),))

    marker = ""


def test_loading_never_runs_code_from_the_file(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path / "run")
    _Evil.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump(_Evil(), f, protocol=2)
    with pytest.raises(CheckpointLoadError, match="weights_only=True"):
        loop.load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_from_another_configuration_names_the_difference(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path)
    loop.step({"val_loss": 1.0})
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=9, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=1, extension=".pt"),
        lr=1e-3,
    )
    with pytest.raises(CheckpointLoadError, match="patience"):
        TorchController(ctl, model, opt, store=tmp_path).resume()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.ones(3), "one-element"),
        (torch.ones(1, requires_grad=True) * 2, "requires grad"),
        ("0.5", "must be a number"),
    ],
)
def test_bad_metrics_name_the_key(tmp_path: Path, value: Any, message: str) -> None:
    loop = _ckpt_loop(tmp_path)
    with pytest.raises(TypeError, match=f"'val_loss'.*{message}|{message}.*'val_loss'"):
        loop.step({"val_loss": value})


def test_bad_arguments(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctl = trainctl.Controller(trainctl.CheckpointPolicy(monitor="val_loss"))
    with pytest.raises(ValueError, match="'store' is None"):
        TorchController(ctl, model, opt)
    with pytest.raises(ValueError, match="'reduce' must be one of"):
        TorchController(trainctl.Controller(), model, opt, reduce="median")
    with pytest.raises(ValueError, match="'check_every' must be an int >= 1 or None, got 0"):
        TorchController(trainctl.Controller(), model, opt, check_every=0)
    with pytest.raises(TypeError, match=r"'optimizer' must be a torch\.optim\.Optimizer"):
        TorchController(trainctl.Controller(), model, "sgd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one-element tensor"):
        TorchController(trainctl.Controller(trainctl.TerminateOnNaN()), model, opt).optimizer_step(
            torch.ones(2)
        )
    bad = _ckpt_loop(tmp_path, extra_state=lambda: {"obj": object()})
    with pytest.raises(TypeError, match=r"extra_state\(\)\['obj'\] is a object"):
        bad.step({"val_loss": 1.0})


# -- the example, and a run killed and resumed ----------------------------------------------------


def _run_worker(directory: Path, summary: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_torch_loop_worker.py"), str(directory),
         str(summary), *extra],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )


def test_example_trains_stops_early_and_restores_the_best(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "torch_loop.py"), "--dir", str(tmp_path / "ck"),
         "--summary", str(summary)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30, f"the example must run in under 30 s on a CPU, took {elapsed:.1f} s"
    out = json.loads(summary.read_text())
    history = out["history"]
    events = [e for h in history for e in h["events"]]
    assert "reduced_lr" in events and "patience_exhausted" in events
    assert len(history) < 60  # stopped early
    assert "restored best weights: True" in proc.stdout
    assert out["final_val_loss"] == pytest.approx(min(h["val_loss"] for h in history), abs=1e-6)
    assert len(out["kept"]) == 3 and "last.pt" in out["kept"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("reference")
    proc = _run_worker(base / "ck", base / "summary.json")
    assert proc.returncode == 0, proc.stderr
    return json.loads((base / "summary.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [
        ["--kill-step", "5"],  # before the first checkpoint: a fresh start
        ["--kill-step", "67"],  # mid-epoch
        ["--kill-step", "192"],  # after an epoch's last step, before its round
        ["--kill-step", "305"],  # during the plateau phase
        ["--kill-save", "9"],  # half-way through writing a checkpoint file
    ],
    ids=lambda k: "-".join(k).strip("-"),
)
def test_killed_run_resumes_to_the_same_end(
    tmp_path: Path, uninterrupted: dict[str, Any], kill: list[str]
) -> None:
    directory = tmp_path / "ck"
    died = _run_worker(directory, tmp_path / "unused.json", *kill)
    assert died.returncode == -9, died.stderr
    resumed = _run_worker(directory, tmp_path / "summary.json")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads((tmp_path / "summary.json").read_text())
    assert out["controller"] == uninterrupted["controller"]
    assert out["kept"] == uninterrupted["kept"]
    assert out["weights"] == uninterrupted["weights"]  # bit for bit
    assert out["final_val_loss"] == uninterrupted["final_val_loss"]
    tail = uninterrupted["history"][-len(out["history"]):]
    assert out["history"] == tail
    files = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    assert files == sorted([*uninterrupted["kept"], "trainctl-manifest.json"]) or files == sorted(
        uninterrupted["kept"]
    ) + [n for n in files if n.endswith(".json")]


def test_manual_save_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    loop = _ckpt_loop(tmp_path)
    loop.step({"val_loss": 1.0})
    loop.save("manual.pt", delete=["epoch001.pt"])
    assert [e.name for e in loop.store.entries] == ["manual.pt"]
    fresh = _ckpt_loop(tmp_path, model=_model(seed=3))
    fresh.resume("manual.pt")
    assert fresh.controller.state_dict() == loop.controller.state_dict()
    for k, t in loop.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[k], t)


def test_the_checkpoint_resumed_from_is_protected_until_the_first_new_save(
    tmp_path: Path,
) -> None:
    loop = _ckpt_loop(tmp_path)
    for v in [1.0, 0.5]:
        loop.step({"val_loss": v})
    fresh = _ckpt_loop(tmp_path, model=_model(seed=2))
    assert fresh.resume().checkpoint == "epoch002.pt"
    assert fresh.store.protected == {"epoch002.pt"}
    fresh.step({"val_loss": 0.7})  # not better: nothing written, still protected
    assert fresh.store.protected == {"epoch002.pt"}
    fresh.step({"val_loss": 0.2})  # the first new save: the best-1 policy replaces it
    assert [e.name for e in fresh.store.entries] == ["epoch004.pt"]
    assert fresh.store.protected == frozenset()


def test_a_fresh_run_into_a_directory_with_another_runs_checkpoints_is_refused(
    tmp_path: Path,
) -> None:
    from trainctl.effects import FreshRunError

    _ckpt_loop(tmp_path).step({"val_loss": 1.0})
    with pytest.raises(FreshRunError, match="already holds 1 checkpoint"):
        _ckpt_loop(tmp_path).step({"val_loss": 1.0})
    _ckpt_loop(tmp_path, overwrite=True).step({"val_loss": 1.0})  # asked for


def test_resuming_a_run_that_stopped_says_so(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=1),
        trainctl.CheckpointPolicy(extension=".pt"),
    )
    loop = TorchController(ctl, model, opt, store=tmp_path)
    for v in [1.0, 2.0]:
        d = loop.step({"val_loss": v})
    assert d.stop
    again = TorchController(
        trainctl.Controller(
            trainctl.EarlyStopping(monitor="val_loss", patience=1),
            trainctl.CheckpointPolicy(extension=".pt"),
        ),
        _model(), torch.optim.SGD(_model().parameters(), lr=0.1), store=tmp_path,
    )
    resumed = again.resume()
    assert resumed.stopped and resumed.epoch == 2 and again.controller.stopped


def test_a_checkpoint_changed_on_disk_is_refused_on_resume_naming_it(tmp_path: Path) -> None:
    from trainctl.storage import CheckpointCorruptError

    loop = _ckpt_loop(tmp_path)
    loop.step({"val_loss": 1.0})
    loop.finish()
    path = tmp_path / "epoch001.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    fresh = _ckpt_loop(tmp_path, model=_model(seed=4))
    before = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(CheckpointCorruptError, match=r"epoch001\.pt"):
        fresh.resume()
    assert all(torch.equal(before[k], v) for k, v in fresh.model.state_dict().items())
    assert fresh.controller.rounds == 0


def test_a_checkpoint_of_another_optimizer_changes_nothing_before_it_is_refused(
    tmp_path: Path,
) -> None:
    loop = _ckpt_loop(tmp_path)
    _train_step(loop.model, loop.optimizer)
    loop.step({"val_loss": 1.0})
    model = _model(seed=5)
    two_groups = _two_groups(model)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=1, extension=".pt"),
        lr=1e-3,
    )
    other = TorchController(ctl, model, two_groups, store=tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointLoadError, match=r"another optimizer.*1 param group"):
        other.resume()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert other.controller.rounds == 0


# -- random states: a resume is exact with dropout and shuffling ----------------------------------


def _noisy_run(tmp_path: Path, epochs: range, *, save_rng: bool, resume: bool) -> list[float]:
    """Train a dropout model on shuffled batches with numpy and Python noise in the data;
    return each epoch's validation loss. ``resume`` continues the run in ``tmp_path``."""
    import random

    import numpy as np

    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ctl = trainctl.Controller(
        trainctl.CheckpointPolicy("val_loss", save_last=True, save_top_k=0, extension=".pt"),
        lr=0.05,
    )
    loop = TorchController(ctl, model, opt, store=tmp_path, save_rng=save_rng)
    if resume:
        # a new process would start from other random states: the checkpoint must bring them back
        torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)
        assert loop.resume().epoch == epochs.start
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=gen), torch.randn(64, 1, generator=gen)
    losses = []
    for epoch in epochs:
        model.train()
        for batch in torch.randperm(64).split(16):  # the global torch RNG shuffles
            noise = torch.from_numpy(np.random.normal(0, 0.01, (len(batch), 6))).float()
            scale = random.uniform(0.9, 1.1)
            opt.zero_grad()
            loss = ((model(x[batch] * scale + noise) - y[batch]) ** 2).mean()
            loss.backward()
            opt.step()
            loop.optimizer_step(loss)
        model.eval()
        with torch.no_grad():
            val = float(((model(x) - y) ** 2).mean())
        losses.append(val)
        loop.step({"val_loss": val}, epoch=epoch)
    loop.finish()
    assert lock_is_free(tmp_path)  # finish() released the writer lock: a resume may write
    return losses


@pytest.mark.parametrize("save_rng", [True, False])
def test_resume_is_bit_exact_with_dropout_and_shuffling(tmp_path: Path, save_rng: bool) -> None:
    """Saved random states (the default) make a resumed run identical to an uninterrupted
    one; with ``save_rng=False`` it is not, which shows what the states carry."""
    import random

    import numpy as np

    def seed() -> None:
        torch.manual_seed(0), np.random.seed(0), random.seed(0)

    seed()
    whole = _noisy_run(tmp_path / "whole", range(8), save_rng=save_rng, resume=False)
    seed()
    head = _noisy_run(tmp_path / "split", range(4), save_rng=save_rng, resume=False)
    tail = _noisy_run(tmp_path / "split", range(4, 8), save_rng=save_rng, resume=True)
    assert head == whole[:4]
    if save_rng:
        assert tail == whole[4:]  # bit for bit
    else:
        assert tail != whole[4:]
