"""``trainctl inspect`` (trainctl._inspect) on real runs, read back without changing a byte.

Runs of every kind are built for real: a plain Controller loop writing a store and a decision log
(JSON Lines and CSV), the numpy demo, a TorchController loop, a Lightning Trainer, and a store
with the Keras adapter's best-weights entry written by the effects runner. Each report is checked
against the run itself: the stop's event and message, the best epoch against the kept best file's
name, the kept list against the manifest, the resume point against the adapter's own
``resume()``, the rate history against the decisions. The directory's bytes and modification
times are compared before and after, also with a stray temporary file and with a save a killed
process left half done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import trainctl
from trainctl import CheckpointStore, DecisionLog, epoch_number
from trainctl._inspect import InspectError, inspect_run, load_log, render_report
from trainctl.effects import BEST_WEIGHTS_ENTRY, EffectsRunner

ROOT = Path(__file__).resolve().parents[1]

# val_loss: best 0.69 at index 6 (epoch 7); patience 3 runs out at index 9 (epoch 10)
STREAM = [1.0, 0.8, 0.85, 0.7, 0.72, 0.75, 0.69, 0.71, 0.7, 0.7, 0.7, 0.7, 0.6]
STOP_EPOCH, BEST_EPOCH = 10, 7


def plain_controller(log: Any = None, *, last: bool = True, top_k: int = 2) -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=top_k, save_last=last,
                                  filename="epoch{epoch:03d}-{val_loss:.2f}", extension=".bin"),
        lr=(0.1, 0.01),
        log=log,
    )


def plain_run(
    directory: Path,
    *,
    log_name: str | None = "decisions.jsonl",
    controller: Any = None,
    stream: list[float] = STREAM,
) -> list[trainctl.Decision]:
    """A plain loop as the README writes it: decide, then save through the store."""
    log = DecisionLog(directory / log_name) if log_name else None
    ctl = controller(log) if controller is not None else plain_controller(log)
    decisions = []
    with CheckpointStore(directory) as store:
        store.recover()
        for i, value in enumerate(stream):
            metrics = {"val_loss": value, "acc": 1.0 - value}
            d = ctl.step(metrics)
            decisions.append(d)
            state = ctl.state_dict()
            first = d.save or d.last
            for request in (d.save, d.last):
                if request is not None:
                    store.save(request.name, lambda p, i=i: p.write_bytes(b"weights %d" % i),
                               metrics=metrics, state=state,
                               delete=d.delete if request is first else ())
            if first is None and d.delete:
                store.delete(d.delete)
            if d.stop:
                break
        decisions.append(ctl.finish())
    if log is not None:
        log.close()
    return decisions


def manifest(directory: Path) -> CheckpointStore:
    reader = CheckpointStore(directory, read_only=True)
    reader.recover()
    return reader


def epoch_of(d: trainctl.Decision) -> int:
    """The 1-based epoch of a round's decision."""
    assert d.epoch is not None
    return epoch_number(d.epoch)


def expected_rates(decisions: list[trainctl.Decision]) -> list[tuple[int, list[Any]]]:
    out: list[tuple[int, list[Any]]] = []
    before: Any = None
    for d in decisions:
        if d.clock != "round":
            continue
        lr = list(d.lr) if isinstance(d.lr, tuple) else [d.lr]
        if lr != before:
            out.append((epoch_of(d), lr))
            before = lr
    return out


def reason_dicts(reasons: Any) -> list[dict[str, str]]:
    return [{"source": r.source, "event": r.event, "message": r.message} for r in reasons]


# -- a plain loop ---------------------------------------------------------------------------------


def test_a_plain_store_names_the_stop_the_best_the_kept_set_and_the_resume(
    tmp_path: Path,
) -> None:
    decisions = plain_run(tmp_path)
    stopping = next(d for d in decisions if d.stop)
    report = inspect_run(tmp_path)
    assert report["kind"] == "store" and report["stopped"] is True
    assert report["controller"]["rebuilt"] is True
    assert report["controller"]["policies"] == [
        "ReduceLROnPlateau(val_loss)", "EarlyStopping(val_loss)", "CheckpointPolicy(val_loss)"
    ]
    # the stop: the policy that stopped, its event and its message, at the 1-based epoch
    es = stopping.detail("EarlyStopping(val_loss)")
    assert report["stop"]["reasons"] == reason_dicts([es.reason])
    assert report["stop"]["reasons"][0]["event"] == "patience_exhausted"
    assert "patience 3" in report["stop"]["reasons"][0]["message"]
    assert report["stop"]["epoch"] == epoch_of(stopping) == STOP_EPOCH
    assert report["stop"]["clock"] == "round"
    # the best: its epoch is the one in the kept best file's name
    assert report["best"]["epoch"] == epoch_number(es.best_epoch) == BEST_EPOCH
    assert report["best"]["value"] == 0.69 and report["best"]["monitor"] == "val_loss"
    best_files = [k["name"] for k in report["kept"] if k["role"] == "best"]
    assert best_files == [report["best"]["checkpoint"]]
    assert best_files[0].startswith(f"epoch{report['best']['epoch']:03d}-")
    # the kept list is the manifest's, with its scores
    store = manifest(tmp_path)
    assert [k["name"] for k in report["kept"]] == [e.name for e in store.entries]
    assert [k["score"] for k in report["kept"]] == [e.metrics["val_loss"] for e in store.entries]
    assert [k["role"] for k in report["kept"]].count("last") == 1
    # resume: the newest checkpoint, which had stopped
    latest = store.latest()
    assert latest is not None
    assert report["resume"]["checkpoint"] == latest.name == "last.bin"
    assert report["resume"]["path"] == str(tmp_path / "last.bin")
    assert report["resume"]["stopped"] is True
    assert report["resume"]["epochs_done"] == STOP_EPOCH
    # the rate of both groups each time it changed, and why
    assert [(r["epoch"], r["lr"]) for r in report["rates"]] == expected_rates(decisions)
    cuts = [r for r in report["rates"] if "reduced_lr" in r["cause"]]
    assert len(cuts) == sum("reduced_lr" in d.events for d in decisions) > 0
    assert report["log"] == str(tmp_path / "decisions.jsonl")
    json.dumps(report, allow_nan=False)  # plain data
    text = render_report(report)
    assert f"stopped at epoch {STOP_EPOCH}: EarlyStopping(val_loss): " in text
    assert f"best: val_loss 0.69 at epoch {BEST_EPOCH}" in text


def test_the_decision_log_alone_tells_the_same_story(tmp_path: Path) -> None:
    decisions = plain_run(tmp_path)
    from_store = inspect_run(tmp_path)
    from_log = inspect_run(tmp_path / "decisions.jsonl")
    assert from_log["kind"] == "log" and from_log["resume"] is None
    for key in ("stopped", "rates", "progress"):
        assert from_log[key] == from_store[key], key
    assert from_log["stop"]["reasons"] == from_store["stop"]["reasons"]
    assert from_log["stop"]["epoch"] == from_store["stop"]["epoch"] == STOP_EPOCH
    assert {k: from_log["best"][k] for k in ("epoch", "value", "policy", "checkpoint")} == {
        k: from_store["best"][k] for k in ("epoch", "value", "policy", "checkpoint")
    }
    # the kept set, replayed from the log's saves and deletes, is the manifest's
    assert [k["name"] for k in from_log["kept"]] == [e.name for e in manifest(tmp_path).entries]
    assert from_log["controller"]["policies"] == from_store["controller"]["policies"]
    assert len(decisions) == STOP_EPOCH + 1  # the rounds and the end


def test_a_csv_decision_log_is_read_and_found_beside_the_store(tmp_path: Path) -> None:
    decisions = plain_run(tmp_path, log_name="decisions.csv")
    stopping = next(d for d in decisions if d.stop)
    report = inspect_run(tmp_path / "decisions.csv")
    assert report["stop"]["epoch"] == STOP_EPOCH
    assert report["stop"]["reasons"] == reason_dicts(
        r for r in stopping.reasons if r.event == "patience_exhausted"
    )
    assert [(r["epoch"], r["lr"]) for r in report["rates"]] == expected_rates(decisions)
    # the table has a column for saves, none for the rolling last checkpoint
    assert [k["name"] for k in report["kept"]] == [
        e.name for e in manifest(tmp_path).entries if e.name != "last.bin"
    ]
    assert report["best"] is None and any("CSV" in n for n in report["notes"])
    beside = inspect_run(tmp_path)
    assert beside["log"] == str(tmp_path / "decisions.csv")
    assert beside["rates"] == report["rates"]
    header, records, notes = load_log(tmp_path / "decisions.csv")
    assert header is None and not notes and len(records) == len(decisions)


def test_the_numpy_demo_store(tmp_path: Path) -> None:
    from trainctl._demo import run_demo

    history = run_demo(checkpoint_dir=str(tmp_path), out=lambda _: None)
    report = inspect_run(tmp_path)
    assert report["stop"]["epoch"] == len(history)  # the demo stops at its last epoch
    assert report["stop"]["reasons"][0]["source"] == "EarlyStopping(val_loss)"
    best = report["best"]["epoch"]
    losses = [h["val_loss"] for h in history]
    assert losses[best - 1] == min(losses) == report["best"]["value"]
    assert report["best"]["checkpoint"].startswith(f"epoch{best:03d}-")
    assert report["rates"] is None and "no decision log" in render_report(report)


def test_a_log_that_goes_beyond_the_latest_checkpoint_supplies_the_stop(tmp_path: Path) -> None:
    # best-only checkpoints: nothing is written after epoch 7, the stop comes 3 epochs later
    plain_run(tmp_path, controller=lambda log: plain_controller(log, last=False, top_k=1))
    report = inspect_run(tmp_path)
    assert [e.name for e in manifest(tmp_path).entries] == ["epoch007-0.69.bin"]
    assert report["stop"]["epoch"] == STOP_EPOCH
    assert report["stop"]["source"] == "decision log decisions.jsonl"
    assert report["best"]["checkpoint"] == "epoch007-0.69.bin"
    assert report["resume"] == {
        "checkpoint": "epoch007-0.69.bin", "path": str(tmp_path / "epoch007-0.69.bin"),
        "epoch": BEST_EPOCH + 1, "epochs_done": BEST_EPOCH, "optimizer_steps": 0,
        "stopped": False,
    }
    assert any("3 round(s) beyond the checkpoint read" in n for n in report["notes"])


# -- strictly read-only ---------------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {".": os.stat(directory).st_mtime_ns}
    for p in sorted(directory.iterdir()):
        st = os.stat(p)
        out[p.name] = (p.read_bytes(), st.st_mtime_ns, st.st_size)
    return out


CRASH = textwrap.dedent(
    """
    import os, sys
    import trainctl.storage as storage
    store = storage.CheckpointStore(sys.argv[1])
    store.recover()
    real, seen = os.replace, []
    def replace(src, dst, *args, **kwargs):
        seen.append(str(dst))
        manifests = [d for d in seen if d.endswith("trainctl-manifest.json")]
        renamed = any(not d.endswith("trainctl-manifest.json") for d in seen)
        if sys.argv[2] == "before-rename" and not str(dst).endswith(".json"):
            os._exit(3)  # the intent is on disk, the file still has its temporary name
        if sys.argv[2] == "after-rename" and renamed and len(manifests) == 2:
            os._exit(3)  # renamed into place, not yet committed
        return real(src, dst, *args, **kwargs)
    os.replace = replace
    store.save("epoch099-0.10.bin", lambda p: p.write_bytes(b"x" * 100),
               metrics={"val_loss": 0.1}, state=None)
    """
)


@pytest.mark.parametrize("leftover", ["none", "stray-temp", "before-rename", "after-rename"])
def test_inspect_changes_nothing(tmp_path: Path, leftover: str) -> None:
    plain_run(tmp_path)
    if leftover == "stray-temp":
        (tmp_path / ".trainctl-tmp-0123456789ab-epoch099-0.10.bin").write_bytes(b"half")
    elif leftover != "none":
        crashed = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), leftover],
                                 capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert crashed.returncode == 3, crashed.stderr
        pending = json.loads((tmp_path / "trainctl-manifest.json").read_text())["pending"]
        assert pending is not None  # a real half-done save, as a killed writer leaves it
    before = snapshot(tmp_path)
    report = inspect_run(tmp_path)
    render_report(report)
    inspect_run(tmp_path / "decisions.jsonl")
    inspect_run(tmp_path / "trainctl-manifest.json")
    assert snapshot(tmp_path) == before
    notes = " ".join(report["notes"])
    if leftover == "before-rename":
        assert "epoch099-0.10.bin was interrupted before its file was in place" in notes
        assert report["resume"]["checkpoint"] == "last.bin"
    if leftover == "after-rename":
        assert "epoch099-0.10.bin was interrupted after its file was in place" in notes
        # counted as done, as the writer's recover() will: it is the newest, without a state
        assert report["kept"][-1]["name"] == "epoch099-0.10.bin"
        assert report["resume"]["checkpoint"] == "epoch099-0.10.bin"
        assert report["resume"]["epoch"] is None  # saved without a state: position unknown
        assert "holds no controller state" in notes
        assert report["stop"]["source"] == "decision log decisions.jsonl"  # the log tells
    if leftover == "stray-temp":
        assert report["resume"]["checkpoint"] == "last.bin"


# -- a controller that cannot be rebuilt ----------------------------------------------------------


class StopDecision(NamedTuple):
    stop: bool
    reason: str


class StopAfter:
    """A user policy that nobody registered: from_state_dict cannot find its type."""

    label = "StopAfter(5)"
    clocks = frozenset({"round"})

    def initial_state(self) -> int:
        return 0

    def update(self, state: int, obs: trainctl.Observation) -> tuple[StopDecision, int]:
        seen = state + 1
        return StopDecision(seen >= 5, f"round {seen} of 5"), seen

    def state_to_dict(self, state: int) -> dict[str, Any]:
        return {"seen": state}

    def state_from_dict(self, data: Any) -> int:
        return int(data["seen"])

    def config_dict(self) -> dict[str, Any]:
        return {"type": "StopAfter", "rounds": 5}


def test_a_controller_that_cannot_be_rebuilt_is_read_from_the_raw_state(tmp_path: Path) -> None:
    def make(log: Any) -> trainctl.Controller:
        return trainctl.Controller(
            StopAfter(),
            trainctl.EarlyStopping(monitor="val_loss", patience=10),
            trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=1, save_last=True,
                                      filename="epoch{epoch:03d}", extension=".bin"),
            log=log,
        )

    with pytest.raises(trainctl.StateError):
        trainctl.Controller.from_state_dict(make(None).state_dict())
    plain_run(tmp_path, controller=make)
    report = inspect_run(tmp_path)
    assert report["controller"]["rebuilt"] is False
    assert report["controller"]["policies"][0] == "StopAfter"
    assert any("could not be rebuilt" in n for n in report["notes"])
    assert report["stop"]["reasons"] == [
        {"source": "StopAfter(5)", "event": "note", "message": "round 5 of 5"}
    ]
    assert report["stop"]["epoch"] == 5 and report["stop"]["clock"] is None
    assert report["best"]["epoch"] == 4 and report["best"]["checkpoint"] == "epoch004.bin"
    assert report["resume"]["checkpoint"] == "last.bin"
    assert report["resume"]["epochs_done"] == 5 and report["resume"]["stopped"] is True
    assert "[not rebuilt: read from the raw state]" in render_report(report)


# -- the effects runner's best-weights entry (the Keras adapter's) --------------------------------


class _ListBackend:
    """A backend whose checkpoint payload cannot hold the best weights (as Keras' cannot)."""

    best_suffix = ".npz"

    def __init__(self) -> None:
        self.weights = [0.0]
        self.lrs: tuple[float, ...] = (0.1, 0.01)

    def read_lrs(self) -> tuple[float, ...]:
        return self.lrs

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        self.lrs = lrs

    def snapshot_weights(self) -> list[float]:
        return list(self.weights)

    def restore_weights(self, snapshot: list[float]) -> None:
        self.weights = list(snapshot)

    def make_checkpoint(self, *, controller_state: Any, best_weights: Any) -> bytes:
        return json.dumps(self.weights).encode()

    def write_checkpoint(self, payload: bytes, path: Path) -> None:
        path.write_bytes(payload)

    def request_stop(self) -> None:
        pass

    def write_best(self, path: Path) -> None:
        path.write_bytes(b"best")


def test_the_best_weights_entry_is_shown_and_never_resumed_from(tmp_path: Path) -> None:
    runner = EffectsRunner(plain_controller(), _ListBackend(), store=tmp_path)
    for value in STREAM[:8]:
        runner.round({"val_loss": value})
    runner.close()
    report = inspect_run(tmp_path)
    best_entry = BEST_WEIGHTS_ENTRY + ".npz"
    roles = {k["name"]: k["role"] for k in report["kept"]}
    assert roles[best_entry] == "best weights"
    assert [k["epoch"] for k in report["kept"] if k["name"] == best_entry] == [BEST_EPOCH]
    again = EffectsRunner(plain_controller(), _ListBackend(), store=tmp_path)
    assert report["resume"]["checkpoint"] == again.latest() == "last.bin"
    assert report["resume"]["epoch"] == 9 and report["stopped"] is False
    assert report["stop"] is None
    assert "did not stop" in render_report(report)
    again.close()


# -- torch and Lightning --------------------------------------------------------------------------


def test_a_torch_run_and_its_checkpoint_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from trainctl.adapters.torch import TorchController

    def loop() -> Any:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        ctl = trainctl.Controller(
            trainctl.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
            trainctl.EarlyStopping(monitor="val_loss", patience=3),
            trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=2, save_last=True,
                                      filename="epoch{epoch:03d}", extension=".pt"),
            lr=0.1,
        )
        return TorchController(ctl, model, optimizer, store=tmp_path)

    first = loop()
    for epoch, value in enumerate(STREAM[:8]):  # interrupted before the stop
        x = torch.randn(4, 3)
        loss = first.model(x).pow(2).mean()
        first.optimizer.zero_grad()
        loss.backward()
        first.optimizer.step()
        first.optimizer_step(loss)
        first.step({"val_loss": value}, epoch=epoch)
    first.runner.close()

    report = inspect_run(tmp_path)
    assert report["stopped"] is False and report["stop"] is None
    assert report["best"]["epoch"] == BEST_EPOCH and report["best"]["checkpoint"] == "epoch007.pt"
    assert [k["name"] for k in report["kept"]] == [e.name for e in manifest(tmp_path).entries]
    one_file = inspect_run(tmp_path / "epoch007.pt")
    assert one_file["kind"] == "checkpoint" and one_file["source"].startswith("TorchController")
    assert one_file["progress"]["epoch"] == BEST_EPOCH
    assert one_file["resume"]["checkpoint"] == "epoch007.pt"
    assert one_file["resume"]["path"] == str(tmp_path / "epoch007.pt")
    assert one_file["resume"]["epoch"] == BEST_EPOCH + 1
    last = inspect_run(tmp_path / "last.pt")
    assert last["best"] == report["best"] and last["stop"] is None

    resumed = loop().resume()  # what the adapter itself says (after inspecting: it writes)
    assert report["resume"]["checkpoint"] == resumed.checkpoint == "last.pt"
    assert report["resume"]["path"] == str(resumed.path)
    assert report["resume"]["epoch"] == epoch_number(resumed.epoch) == 9
    assert report["resume"]["optimizer_steps"] == resumed.optimizer_steps == 8
    assert report["resume"]["stopped"] is resumed.stopped is False


def test_a_lightning_run_and_its_ckpt_file(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    import logging
    import warnings

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from trainctl.adapters.lightning import ControllerCallback

    class Scripted(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            value = STREAM[min(self.current_epoch, len(STREAM) - 1)]
            self.log("val_loss", torch.tensor(value))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    def data(n: int) -> Any:
        g = torch.Generator().manual_seed(n)
        return DataLoader(TensorDataset(torch.randn(n, 2, generator=g),
                                        torch.randn(n, 1, generator=g)), batch_size=2)

    def callback() -> ControllerCallback:
        ctl = trainctl.Controller(
            trainctl.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
            trainctl.EarlyStopping(monitor="val_loss", patience=3),
            trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=2, save_last=True,
                                      filename="epoch{epoch:03d}", extension=".ckpt"),
            lr=0.05,
        )
        return ControllerCallback(ctl, dirpath=tmp_path)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = pl.Trainer(max_epochs=30, callbacks=[callback()], accelerator="cpu", devices=1,
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(), data(8), data(2))

    report = inspect_run(tmp_path)
    assert report["stop"]["epoch"] == STOP_EPOCH
    assert report["stop"]["reasons"][0]["event"] == "patience_exhausted"
    assert report["best"]["epoch"] == BEST_EPOCH
    assert report["best"]["checkpoint"] == f"epoch{BEST_EPOCH:03d}.ckpt"
    one_file = inspect_run(tmp_path / "last.ckpt")
    assert one_file["source"].startswith("Lightning checkpoint")
    assert one_file["stop"]["reasons"] == report["stop"]["reasons"]
    assert one_file["best"]["checkpoint"] == report["best"]["checkpoint"]
    resumed = callback().resume()
    assert report["resume"]["checkpoint"] == resumed.checkpoint == "last.ckpt"
    assert report["resume"]["epoch"] == epoch_number(resumed.epoch)
    assert report["resume"]["stopped"] is resumed.stopped is True


# -- what inspect refuses -------------------------------------------------------------------------


def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "trainctl-manifest.json").write_text("{not json")
    (tmp_path / "random.pt").write_bytes(b"\x80\x04 not really a pickle")
    return {
        "missing": tmp_path / "missing",
        "empty directory": tmp_path / "empty",
        "text file": tmp_path / "notes.txt",
        "json lines that are not a log": tmp_path / "other.jsonl",
        "csv that is not a log": tmp_path / "other.csv",
        "corrupt manifest": tmp_path / "broken",
        "not a torch file": tmp_path / "random.pt",
    }


def test_what_is_not_a_run_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    for what, path in _bad_paths(tmp_path).items():
        with pytest.raises(InspectError) as caught:
            inspect_run(path)
        message = str(caught.value)
        assert "\n" not in message, what
        assert repr(str(path)) in message, what
        assert caught.value.path == path, what
        if what != "corrupt manifest":
            assert "expected a checkpoint store directory" in message, what


def test_a_torch_file_without_a_controller_state_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(InspectError, match="holds no trainctl controller state"):
        inspect_run(tmp_path / "plain.pt")
