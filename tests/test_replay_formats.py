"""``read_run`` on files written by the real frameworks, checked against what each framework
held in memory while it wrote them; and damaged files, whose errors name the file, line and
column.

Each framework trains a tiny model for a few epochs on the CPU (nothing is downloaded): Keras
``fit`` with ``CSVLogger`` (``KERAS_BACKEND=torch``, set in conftest), a Lightning ``Trainer``
with ``CSVLogger``, a Hugging Face ``Trainer`` (a random tiny model from a config,
``report_to=[]``) whose ``trainer_state.json`` is read, ``torch.utils.tensorboard``'s
``SummaryWriter``, and a trainctl ``DecisionLog`` written by a Controller.
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainctl
from trainctl.replay import Run, RunFormatError, detect_format, read_run, sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# -- Keras ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], dtype="float32") + 0.3 * rng.normal(size=48)).astype(
        "float32")[:, None]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    path = tmp_path_factory.mktemp("keras") / "log.csv"
    history = model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=12,
                        batch_size=16, verbose=0, callbacks=[keras.callbacks.CSVLogger(path)])
    return path, history.history


def test_keras_csv_logger(keras_run: tuple[Path, dict[str, list[float]]]) -> None:
    path, history = keras_run
    assert detect_format(path) == "keras"
    run = read_run(path)
    assert len(run) == 12 and run.epochs == tuple(range(12))
    for name, values in history.items():
        assert [r[name] for r in run.rounds] == values, name  # exactly what fit() returned


def test_keras_validation_freq_leaves_rounds_without_val(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 2), dtype="float32")
    history = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), validation_freq=2, epochs=4,
                        verbose=0, callbacks=[keras.callbacks.CSVLogger(tmp_path / "l.csv")])
    run = read_run(tmp_path / "l.csv")
    assert [("val_loss" in r) for r in run.rounds] == [False, True, False, True]
    assert [r["val_loss"] for r in run.rounds if "val_loss" in r] == history.history["val_loss"]


@pytest.mark.parametrize("patience", [0, 1, 2, 4])
def test_sweep_of_a_keras_log_equals_keras_own_early_stopping(
    keras_run: tuple[Path, dict[str, list[float]]], patience: int,
) -> None:
    """Keras' EarlyStopping fed the logged epochs stops where the sweep says (float32 rules)."""
    keras = pytest.importorskip("keras")
    path, _ = keras_run
    run = read_run(path)
    # a noisy copy of the curve so that patience matters
    rng = np.random.default_rng(patience)
    rounds = [{**r, "val_loss": r["val_loss"] * float(1 + 0.3 * rng.random())} for r in run.rounds]
    result = sweep(trainctl.EarlyStopping("val_loss", mode="min", precision="float32"),
                   {"patience": [patience], "min_delta": [0.0, 0.01]}, [rounds])
    for c, min_delta in enumerate((0.0, 0.01)):
        theirs = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min",
                                               patience=patience, min_delta=min_delta)
        theirs.set_model(types.SimpleNamespace(stop_training=False))
        theirs.on_train_begin()
        stop = -1
        for epoch, logs in enumerate(rounds):
            theirs.on_epoch_end(epoch, logs)
            if theirs.model.stop_training:
                stop = epoch
                break
        assert int(result.stop_round[c, 0]) == stop


# -- Lightning -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, float]]]:
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    seen: list[dict[str, float]] = []

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def on_train_epoch_end(self) -> None:
            metrics = self.trainer.callback_metrics
            seen.append({k: float(v) for k, v in metrics.items()})

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = x.sum(1, keepdim=True)
    data = torch.utils.data.TensorDataset(x, y)
    root = tmp_path_factory.mktemp("lightning")
    trainer = lightning.Trainer(
        max_epochs=4, logger=CSVLogger(root, name="run"), log_every_n_steps=2,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", num_sanity_val_steps=0,
    )
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=8),
                torch.utils.data.DataLoader(data, batch_size=8))
    return Path(trainer.logger.log_dir) / "metrics.csv", seen


def test_lightning_csv_logger(lightning_run: tuple[Path, list[dict[str, float]]]) -> None:
    path, seen = lightning_run
    assert detect_format(path) == "lightning" and detect_format(path.parent) == "lightning"
    run = read_run(path.parent)
    assert run.epochs == (0, 1, 2, 3) and run.steps == (4, 8, 12, 16)
    for rnd, live in zip(run.rounds, seen, strict=True):
        # the epoch's merged rows hold what the Trainer held at the end of the epoch
        assert rnd["val_loss"] == live["val_loss"]
        assert rnd["train_loss_epoch"] == live["train_loss_epoch"]
        assert "train_loss_step" in rnd


# -- Hugging Face --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huggingface_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    pytest.importorskip("transformers")
    from _replay_hf import train_tiny

    return train_tiny(tmp_path_factory.mktemp("hf"))


def test_huggingface_trainer_state(huggingface_run: tuple[Path, list[Any]]) -> None:
    path, seen = huggingface_run
    assert detect_format(path) == "huggingface" and detect_format(path.parent) == "huggingface"
    run = read_run(path)
    evaluations = [m for kind, m in seen if kind == "evaluate"]
    assert len(run) == len(evaluations) == 3
    assert run.epochs == (0, 1, 2) and run.steps == (4, 8, 12)
    for rnd, metrics in zip(run.rounds, evaluations, strict=True):
        assert rnd["eval_loss"] == metrics["eval_loss"]
    # the training loss logged before each evaluation rides along with it
    losses = [m["loss"] for kind, m in seen if kind == "log" and "loss" in m]
    assert [r["loss"] for r in run.rounds] == losses
    result = sweep(trainctl.EarlyStopping("eval_loss", rules="huggingface"),
                   {"patience": [0, 1]}, [run])
    for c, config in enumerate(result.configs):
        decisions = trainctl.simulate(config, run.rounds)
        assert int(result.stop_round[c, 0]) == (len(decisions) - 1 if decisions[-1].stop else -1)


# -- TensorBoard ---------------------------------------------------------------------------------


def test_tensorboard_summary_writer(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    written = {}
    for epoch in range(5):
        val = 1.0 / (epoch + 1) + 0.1 * math.sin(epoch)
        writer.add_scalar("val_loss", val, epoch)
        writer.add_scalar("loss", 2.0 / (epoch + 1), epoch)
        written[epoch] = val
    writer.add_scalars("lr", {"head": 0.1}, 0)  # a subdirectory: lr_head
    writer.close()
    assert detect_format(tmp_path / "tb") == "tensorboard"
    run = read_run(tmp_path / "tb")
    assert run.steps == (0, 1, 2, 3, 4) and run.epochs == (None,) * 5
    # SummaryWriter stores float32
    assert [r["val_loss"] for r in run.rounds] == [float(np.float32(written[e])) for e in range(5)]
    assert any(k.startswith("lr_head/") or k.endswith("lr") for k in run.rounds[0])
    (one,) = (tmp_path / "tb").glob("events.out.tfevents*")
    assert read_run(one).rounds[0]["loss"] == 2.0


# -- trainctl's decision log ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_trainctl_decision_log(tmp_path: Path, suffix: str) -> None:
    stream = [{"loss": 1.0 - 0.05 * i, "val_loss": v}
              for i, v in enumerate([0.9, 0.8, math.nan, 0.85, math.inf, 0.7, 0.75])]
    log = trainctl.DecisionLog(tmp_path / f"decisions{suffix}")
    ctl = trainctl.Controller(trainctl.EarlyStopping(patience=5), log=log)
    for metrics in stream:
        for _ in range(3):
            ctl.optimizer_step({"loss": metrics["loss"]})
        ctl.step(metrics)
    ctl.finish()
    log.close()
    assert detect_format(log.path) == "trainctl"
    run = read_run(log.path)
    assert run.epochs == tuple(range(7)) and run.steps == tuple(3 * (i + 1) for i in range(7))
    for got, want in zip(run.rounds, stream, strict=True):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k]))
    assert [d.stop for d in trainctl.simulate(trainctl.EarlyStopping(patience=1), run.rounds)] == [
        d.stop for d in trainctl.simulate(trainctl.EarlyStopping(patience=1), stream)]


# -- damaged files -------------------------------------------------------------------------------


def _error(path: Path, **kwargs: Any) -> RunFormatError:
    with pytest.raises(RunFormatError) as info:
        read_run(path, **kwargs)
    return info.value


def test_bad_csv_cells_name_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("epoch,loss,val_loss\n0,1.0,2.0\n1,0.9,abc\n")
    err = _error(p)
    assert (err.line, err.column) == (3, 3)
    assert f"'{p}' line 3, column 3 ('val_loss'): expected a number, got 'abc'" in str(err)
    p.write_text("epoch,loss,val_loss\n0,1.0,2.0\n1,0.9")  # torn by a crash
    err = _error(p)
    assert err.line == 3 and "2 cells but the header has 3" in str(err) and "torn" in str(err)
    p.write_text("epoch,loss\n-1,1.0\n")
    assert "expected an integer >= 0, got '-1'" in str(_error(p))
    p.write_text("a,b\n1,2\n")
    assert "neither an 'epoch' nor a 'clock' column" in str(_error(p))
    p.write_text("epoch,step,val_loss\n1,10,1.0\n0,12,2.0\n")
    err = _error(p)
    assert err.line == 3 and "epoch 0 after epoch 1" in str(err)


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    p.write_text('{\n  "log_history": [\n    {"eval_loss": 1.0, "step": 1},\n  ]\n}\n')
    err = _error(p)
    assert err.line == 4 and err.column is not None and "not valid JSON" in str(err)
    p.write_text('{\n  "log_history": [\n    {"eval_loss": 1.0, "step": 1},\n'
                 '    {"eval_loss": "oops", "step": 2}\n  ]\n}\n')
    err = _error(p)
    assert (err.line, err.column) == (4, 6)
    assert "log_history[1]['eval_loss']: expected a number, got 'oops'" in str(err)
    p.write_text(json.dumps({"global_step": 3}))
    assert "no 'log_history' list" in str(_error(p))


def test_bad_logs_and_paths(tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    header = {"clock": "header", "format": "trainctl.decision-log", "version": 1,
              "controller": {}}
    log.write_text(json.dumps(header) + "\n{not json\n" + json.dumps(
        {"clock": "round", "metrics": {}}) + "\n")
    assert "line 2" in str(_error(log))
    assert "no such file" in str(_error(tmp_path / "missing.csv"))
    (tmp_path / "empty").mkdir()
    assert "holding no trainer_state.json" in str(_error(tmp_path / "empty"))
    with pytest.raises(ValueError, match="'format' must be one of"):
        read_run(log, format="excel")  # type: ignore[arg-type]


def test_run_value_checks() -> None:
    run = Run.from_rounds([{"a": 1}, {"a": np.float32(0.5), "b": 2.0}])
    assert run.metric_names == ("a", "b")
    np.testing.assert_array_equal(run.present("b"), [False, True])
    assert run.metric("a").tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="'epochs' must have one entry per round"):
        Run(source="x", rounds=[{}], epochs=[0, 1])
    with pytest.raises(TypeError, match=r"x: round 0: metric 'a' must be a number, got str"):
        Run(source="x", rounds=[{"a": "high"}]).metric("a")
