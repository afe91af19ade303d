"""trainctl's decisions where users already look: the frameworks' own loggers, read back.

- ``trainctl.adapters._scalars``: the one rule that turns decisions into ``{name: float}``; its
  keys are the same from the first log on (CSV columns), repeats of a final stop are not
  counted twice, two sources merge into one dict.
- Keras: ``model.fit`` with ``keras.callbacks.CSVLogger`` (and ``TensorBoard``, where tensorflow
  is installed) after trainctl's callbacks; the CSV read back with the ``csv`` module, History and
  the event files hold ``learning_rate`` and the ``trainctl/`` columns, epoch by epoch equal to
  what the decisions said.
- Lightning: a ``Trainer`` with ``CSVLogger`` and ``TensorBoardLogger``; the rates are named
  exactly as Lightning's own ``LearningRateMonitor`` names them, proven by running it beside ours
  in the same ``fit`` (one group, two groups, named groups, two optimizers of one class, a
  scheduler-owned optimizer).
- torch: ``TorchController(tensorboard=...)`` event files read back with TensorBoard's own
  ``EventAccumulator``: rates per group, metrics and ``trainctl/`` scalars at the optimizer step
  of each round; tensorboard is imported only when a round writes.
"""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainctl
from trainctl.adapters._scalars import (
    EVENT_KEYS,
    ScalarTally,
    decision_scalars,
    merge_scalars,
)

ROOT = Path(__file__).resolve().parents[1]
#: scripted val_loss: improves twice, then stalls (plateau reductions, then an early stop)
VAL = [1.0, 0.9, 0.95, 0.97, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]
EVENT_COLUMNS = [f"trainctl/events/{e}" for e in EVENT_KEYS]

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*number of training batches:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)"),
]


def same(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def events(*decisions: Any) -> Counter[str]:
    return Counter(e for d in decisions if d is not None for e in d.events)


# -- the one rule -------------------------------------------------------------------------------


def test_scalars_have_the_same_numeric_keys_every_round() -> None:
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=0, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=2),
        trainctl.CheckpointPolicy("val_loss", save_top_k=1),
        trainctl.TerminateOnNaN("loss"),
        lr=0.1,
        warn_missing=False,
    )
    tally = ScalarTally()
    stream = [{"loss": 1.0}, {"loss": 1.0, "val_loss": 1.0}, {"loss": 1.0, "val_loss": 2.0},
              {"loss": 1.0, "val_loss": 3.0}, {"loss": 1.0, "val_loss": 0.5}]
    seen = []
    for metrics in stream:
        d = ctl.step(metrics)
        tally.add(d)
        seen.append((d, tally.scalars()))
    first_keys = list(seen[0][1])
    for _, scalars in seen:
        assert list(scalars) == first_keys  # the same keys, in the same order, every round
        assert all(type(v) is float for v in scalars.values())
    _, s0 = seen[0]
    # before any val_loss: the policy's optional numbers are NaN, the missing metric counted
    assert math.isnan(s0["trainctl/EarlyStopping(val_loss)/best"])
    assert s0["trainctl/events/missing_metric"] == 3.0  # plateau, early stopping, checkpoint
    assert "trainctl/events/finite" not in s0  # said on every check: not a column
    assert "trainctl/CheckpointPolicy(val_loss)/save" not in s0  # a SaveRequest, not a number
    d2, s2 = seen[2]
    assert s2["trainctl/EarlyStopping(val_loss)/wait"] == 1.0 == d2.detail(1).wait
    assert s2["trainctl/ReduceLROnPlateau(val_loss)/reduced"] == 1.0
    assert s2["trainctl/events/reduced_lr"] == 1.0 and s2["trainctl/stop"] == 0.0
    d3, s3 = seen[3]
    assert d3.stop and s3["trainctl/stop"] == 1.0 and s3["trainctl/events/patience_exhausted"] == 1
    # the stopped controller repeats the stop's reasons: it says stop but counts no new event
    d4, s4 = seen[4]
    assert d4.stop and d4.events == ("reduced_lr", "patience_exhausted", "skip_save")
    assert s4["trainctl/stop"] == 1.0
    assert all(s4[k] == 0.0 for k in s4 if k.startswith("trainctl/events/"))
    # a policy absent from the repeat (the NaN guard's "finite") keeps its latest values
    assert d4.labels == d3.labels[:3] and s4 == {**s3, **{k: v for k, v in s4.items()
                                                           if "/events/" in k}}
    assert decision_scalars(d3) == s3


def test_scalars_of_repeated_labels_user_policies_and_merging() -> None:
    class NoteDecision:
        """A user policy's decision without declared types: its values decide."""

        def __init__(self, count: int) -> None:
            self.count, self.ratio, self.text = count, None, "x"
            self.reason = trainctl.Reason("Note", "odd" if count % 2 == 0 else "even", "n")

    class Note:
        """A user policy with its own events."""

        label = "Note"
        clocks = frozenset({"round"})

        def initial_state(self) -> int:
            return 0

        def update(self, state: int, obs: Any) -> tuple[NoteDecision, int]:
            return NoteDecision(state + 1), state + 1

        def state_to_dict(self, state: int) -> dict[str, Any]:
            return {"n": state}

        def state_from_dict(self, data: Any) -> int:
            return int(data["n"])

        def config_dict(self) -> dict[str, Any]:
            return {"type": "Note"}

    ctl = trainctl.Controller(
        trainctl.EarlyStopping("loss", patience=1), trainctl.EarlyStopping("loss", patience=5),
        Note(),
    )
    tally = ScalarTally()
    tally.add(ctl.step({"loss": 1.0}))
    first = tally.scalars()
    assert first["trainctl/EarlyStopping(loss)/wait"] == 0.0
    assert first["trainctl/EarlyStopping(loss)#2/wait"] == 0.0
    assert first["trainctl/Note/count"] == 1.0 and math.isnan(first["trainctl/Note/ratio"])
    assert "trainctl/Note/text" not in first
    assert first["trainctl/events/even"] == 1.0 and first["trainctl/events/improved"] == 2.0
    tally.add(ctl.step({"loss": 2.0}))
    second = tally.scalars()
    # a user event keeps its key once it happened (0.0 when it does not)
    assert second["trainctl/events/even"] == 0.0 and second["trainctl/events/odd"] == 1.0
    assert second["trainctl/EarlyStopping(loss)/stop"] == 1.0
    assert second["trainctl/EarlyStopping(loss)#2/stop"] == 0.0

    logs: dict[str, Any] = {"loss": 2.0}
    merge_scalars(logs, second)
    merge_scalars(logs, second)  # a second source with the same labels
    assert logs["trainctl/events/odd"] == 2.0 and logs["trainctl/stop"] == 1.0
    assert logs["trainctl/EarlyStopping(loss)#3/wait"] == second[
        "trainctl/EarlyStopping(loss)/wait"]
    assert logs["trainctl/Note#2/count"] == 2.0
    with pytest.raises(TypeError, match=r"'decision' must be a trainctl\.Decision, got dict"):
        tally.add({"stop": True})  # type: ignore[arg-type]


# -- Keras --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras() -> Any:
    return pytest.importorskip("keras")


X = np.linspace(-1, 1, 48, dtype="float32").reshape(16, 3)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], "float32")) + 0.1


def keras_model(keras: Any, lr: float = 0.01) -> Any:
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    return model


def keras_helpers(keras: Any) -> tuple[type, type]:
    class Script(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        """Placed first: the scripted val_loss of each epoch."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            assert logs is not None
            logs["val_loss"] = VAL[epoch]

    class Recorder(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        """Placed after trainctl's callbacks: each epoch's decisions, log keys and batch rates."""

        def __init__(self, *sources: Any) -> None:
            super().__init__()
            self.sources = sources
            self.decisions: list[list[Any]] = []
            self.keys: list[list[str]] = []
            self.rates: list[list[float]] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.rates.append([])

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.rates[-1].append(float(self.model.optimizer.learning_rate))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            assert logs is not None
            self.decisions.append([s.last_decision for s in self.sources])
            self.keys.append(sorted(logs))

    return Script, Recorder


def test_keras_csv_logger_and_history_record_the_drop_ins(keras: Any, tmp_path: Path) -> None:
    from trainctl.adapters import keras as tk

    Script, Recorder = keras_helpers(keras)
    rlrop = tk.ReduceLROnPlateau(patience=1, factor=0.5, log_scalars=True)
    es = tk.EarlyStopping(patience=3, log_scalars=True)
    mc = tk.ModelCheckpoint(tmp_path / "best.weights.h5", save_best_only=True,
                            save_weights_only=True, log_scalars=True)
    ton = tk.TerminateOnNaN(log_scalars=True)
    recorder = Recorder(rlrop, es, mc)
    model = keras_model(keras)
    history = model.fit(
        X, Y, batch_size=8, epochs=len(VAL), shuffle=False, verbose=0,
        callbacks=[Script(), rlrop, es, mc, ton, recorder,
                   keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))],
    )
    rows = read_csv(tmp_path / "log.csv")
    assert 1 < len(rows) < len(VAL) and recorder.decisions[-1][1].stop  # early stopping ended it
    columns = list(rows[0])
    expected = {
        "trainctl/stop",
        *EVENT_COLUMNS,
        *(f"trainctl/EarlyStopping(val_loss)/{f}" for f in (
            "stop", "improved", "snapshot_best", "restore_best", "best", "best_epoch", "wait")),
        *(f"trainctl/ReduceLROnPlateau(val_loss)/{f}" for f in (
            "reduced", "best", "wait", "cooldown_counter")),
        "trainctl/CheckpointPolicy(val_loss)/stop", "trainctl/CheckpointPolicy(val_loss)/is_best",
        "trainctl/TerminateOnNaN(loss)/stop",
    }
    assert set(columns) == {"epoch", "loss", "val_loss", "learning_rate"} | expected
    for epoch, (row, keys) in enumerate(zip(rows, recorder.keys, strict=True)):
        # every key there from the first epoch on, every value a number: no "NA" cell
        assert sorted(keys) == sorted(c for c in columns if c != "epoch"), epoch
        values = {k: float(v) for k, v in row.items()}
        d_rlrop, d_es, d_mc = recorder.decisions[epoch]
        assert values["epoch"] == epoch
        # the rate the epoch's batches ran at (a reduction applies from the next epoch on)
        assert values["learning_rate"] == recorder.rates[epoch][-1] == recorder.rates[epoch][0]
        es_detail, rlrop_detail = d_es.details[0], d_rlrop.details[0]
        assert values["trainctl/EarlyStopping(val_loss)/wait"] == es_detail.wait
        assert values["trainctl/EarlyStopping(val_loss)/best"] == es_detail.best
        assert values["trainctl/EarlyStopping(val_loss)/best_epoch"] == es_detail.best_epoch
        assert values["trainctl/EarlyStopping(val_loss)/improved"] == es_detail.improved
        assert values["trainctl/ReduceLROnPlateau(val_loss)/wait"] == rlrop_detail.wait
        assert values["trainctl/ReduceLROnPlateau(val_loss)/reduced"] == rlrop_detail.reduced
        assert values["trainctl/CheckpointPolicy(val_loss)/is_best"] == d_mc.details[0].is_best
        assert values["trainctl/TerminateOnNaN(loss)/stop"] == 0.0
        assert values["trainctl/stop"] == float(d_es.stop)
        # the scalars of the callbacks before are no metrics to the ones after
        assert not any(k.startswith("trainctl/") for d in (d_es, d_mc) for k in d.metrics)
        counts = events(d_rlrop, d_es, d_mc)  # the three callbacks' events, added up
        for event in EVENT_KEYS:
            assert values[f"trainctl/events/{event}"] == counts[event], (epoch, event)
    reductions = [float(r["trainctl/events/reduced_lr"]) for r in rows]
    assert sum(reductions) >= 1 and float(rows[-1]["trainctl/events/patience_exhausted"]) == 1
    # History holds the same series
    for column in columns:
        if column != "epoch":
            assert all(same(a, float(b)) for a, b in zip(
                history.history[column], (r[column] for r in rows), strict=True)), column


def test_keras_controller_callback_logs_the_rounds(keras: Any, tmp_path: Path) -> None:
    from trainctl.adapters import keras as tk

    Script, Recorder = keras_helpers(keras)
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=3),
        trainctl.CheckpointPolicy("val_loss", save_top_k=1, extension=".weights.h5"),
        lr=0.01,
    )
    cb = tk.ControllerCallback(ctl, store=tmp_path / "ckpt", log_scalars=True)
    recorder = Recorder()
    history = keras_model(keras).fit(
        X, Y, batch_size=8, epochs=len(VAL), shuffle=False, verbose=0,
        callbacks=[Script(), cb, recorder, keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))],
    )
    rows = read_csv(tmp_path / "log.csv")
    assert len(rows) == len(cb.decisions) == len(history.history["loss"])
    for epoch, (row, d) in enumerate(zip(rows, cb.decisions, strict=True)):
        values = {k: float(v) for k, v in row.items() if k != "epoch"}
        expected = decision_scalars(d)
        assert set(values) == set(expected) | {"loss", "val_loss", "learning_rate"}
        assert all(same(values[k], v) for k, v in expected.items()), epoch
        assert values["learning_rate"] == recorder.rates[epoch][-1]
        assert values["trainctl/EarlyStopping(val_loss)/wait"] == d.detail(1).wait
        assert values["trainctl/events/save"] == float(d.save is not None)
    assert float(rows[-1]["trainctl/stop"]) == 1.0


@pytest.mark.parametrize("which", ["drop-in", "controller"])
def test_keras_a_nan_batch_is_counted_once(keras: Any, tmp_path: Path, which: str) -> None:
    from trainctl.adapters import keras as tk

    y = Y.copy()
    y[9] = np.nan  # the second batch of the first epoch
    cb = (
        tk.TerminateOnNaN(log_scalars=True) if which == "drop-in"
        else tk.ControllerCallback(trainctl.Controller(trainctl.TerminateOnNaN("loss")),
                                   log_scalars=True)
    )
    model = keras_model(keras)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                  callbacks=[cb, keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    (row,) = read_csv(tmp_path / "log.csv")
    # the batch's decision and (controller) the round's repeat of it: one NaN seen, counted once
    assert float(row["trainctl/events/non_finite"]) == 1.0
    assert float(row["trainctl/stop"]) == 1.0
    assert float(row["trainctl/TerminateOnNaN(loss)/stop"]) == 1.0
    if which == "controller":
        assert float(row["learning_rate"]) == pytest.approx(0.01)
    else:  # no rate: Keras' TerminateOnNaN writes none (History stays Keras')
        assert "learning_rate" not in row


def test_keras_log_scalars_off_by_default_and_hand_driven_logs(
    keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainctl.adapters import keras as tk

    Script, _ = keras_helpers(keras)
    # by default the logs (and so fit's progress bar) hold what Keras' own callbacks write
    quiet = [tk.EarlyStopping(patience=2), tk.TerminateOnNaN(),
             tk.ReduceLROnPlateau(patience=1),
             tk.ModelCheckpoint(tmp_path / "m.weights.h5", save_weights_only=True),
             tk.ControllerCallback(trainctl.Controller(trainctl.EarlyStopping("val_loss")))]
    history = keras_model(keras).fit(X, Y, batch_size=8, epochs=2, verbose=2,
                                     callbacks=[Script(), *quiet])
    # Keras' own keys only: ReduceLROnPlateau writes learning_rate, as Keras' does
    assert set(history.history) == {"loss", "val_loss", "learning_rate"}
    assert "trainctl/" not in capsys.readouterr().out
    with pytest.raises(TypeError, match="'log_scalars' must be a bool, got str 'no'"):
        tk.EarlyStopping(log_scalars="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'log_scalars' must be a bool, got int 0"):
        tk.ControllerCallback(trainctl.Controller(), log_scalars=0)  # type: ignore[arg-type]

    # by hand: two callbacks with the same label share one logs dict; one dict used twice
    model = keras_model(keras)
    first = tk.EarlyStopping("loss", patience=1, log_scalars=True)
    second = tk.EarlyStopping("loss", patience=4, log_scalars=True)
    for cb in (first, second):
        cb.set_model(model)
        cb.on_train_begin()
    logs: dict[str, Any] = {"loss": 1.0}
    first.on_epoch_end(0, logs)
    second.on_epoch_end(0, logs)
    assert logs["trainctl/events/improved"] == 2.0
    assert logs["trainctl/EarlyStopping(loss)/best"] == 1.0
    assert logs["trainctl/EarlyStopping(loss)#2/best"] == 1.0
    assert "learning_rate" not in logs  # as Keras' EarlyStopping: its History has no rate
    again = {"loss": 2.0}
    first.on_epoch_end(1, again)
    first.on_epoch_end(2, again)  # the same dict handed in twice: its own keys overwritten
    assert again["trainctl/EarlyStopping(loss)/wait"] == 2.0
    assert again["trainctl/events/patience_exhausted"] == 1.0  # a Keras stop is not final
    assert not any("#" in k for k in again)


# -- Lightning ----------------------------------------------------------------------------------


@pytest.fixture()
def pl() -> Iterator[Any]:
    module = pytest.importorskip("lightning.pytorch")
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield module
    logger.setLevel(level)


def lightning_module(pl: Any, optimizers: Any, *, manual: bool = False) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Module(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)
            self.automatic_optimization = not manual

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = F.mse_loss(self.b(self.a(x)), y)
            if not manual:
                return loss
            for opt in self.optimizers():
                opt.zero_grad()
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()
            return None

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", torch.tensor(VAL[min(self.current_epoch, len(VAL) - 1)]))

        def configure_optimizers(self) -> Any:
            return optimizers(self)

    return Module()


def lightning_fit(pl: Any, module: Any, callbacks: list[Any], loggers: list[Any],
                  epochs: int) -> Any:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 2, generator=g),
                                    torch.randn(8, 1, generator=g)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=callbacks, logger=loggers, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        log_every_n_steps=1,
    )
    trainer.fit(module, data, data)
    return trainer


def test_lightning_loggers_hold_the_decisions_and_lr_monitor_rates(
    pl: Any, tmp_path: Path
) -> None:
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainctl.adapters.lightning import ControllerCallback

    def two_groups(m: Any) -> Any:
        return torch.optim.SGD([{"params": m.a.parameters()},
                                {"params": m.b.parameters(), "lr": 0.01}], lr=0.1)

    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, rules="torch"),
        trainctl.EarlyStopping("val_loss", patience=3),
        lr=(0.1, 0.01),
    )
    cb = ControllerCallback(ctl)
    monitor = LearningRateMonitor(logging_interval="epoch")
    loggers = [CSVLogger(tmp_path), TensorBoardLogger(tmp_path)]
    lightning_fit(pl, lightning_module(pl, two_groups), [cb, monitor], loggers, len(VAL))
    rows = read_csv(Path(loggers[0].log_dir) / "metrics.csv")
    ours = [r for r in rows if r["trainctl/stop"]]
    assert 2 < len(ours) == len(cb.decisions) < len(VAL)
    # Lightning's own LearningRateMonitor, beside ours in the same fit: the same names, and the
    # same rate under each name, epoch by epoch (it logs at epoch starts, we at rounds)
    assert list(monitor.lrs) == ["lr-SGD/pg1", "lr-SGD/pg2"]
    assert {k for k in rows[0] if k.startswith("lr-")} == set(monitor.lrs)
    for name, rates in monitor.lrs.items():
        assert [float(r[name]) for r in ours] == rates, name
    assert monitor.lrs["lr-SGD/pg1"][-1] < 0.1  # a reduction happened
    # the trainctl series: the decisions of the rounds, at the step of the epoch's val_loss
    val_steps = [r["step"] for r in rows if r.get("val_loss")]
    assert [r["step"] for r in ours] == val_steps
    for row, d in zip(ours, cb.decisions, strict=True):
        assert float(row["trainctl/EarlyStopping(val_loss)/wait"]) == d.detail(1).wait
        assert float(row["trainctl/ReduceLROnPlateau(val_loss)/reduced"]) == d.detail(0).reduced
        assert float(row["trainctl/events/reduced_lr"]) == d.events.count("reduced_lr")
        assert float(row["trainctl/stop"]) == d.stop
        expected = decision_scalars(d)
        assert all(same(float(row[k]), v) for k, v in expected.items())
    # TensorBoardLogger got the same series (as float32)
    board = EventAccumulator(loggers[1].log_dir)
    board.Reload()
    steps = [int(r["step"]) for r in ours]
    for tag in ("trainctl/EarlyStopping(val_loss)/wait", "trainctl/events/reduced_lr",
                "trainctl/stop", "lr-SGD/pg1", "lr-SGD/pg2"):
        logged = {e.step: e.value for e in board.Scalars(tag)}
        assert [logged[s] for s in steps] == pytest.approx([float(r[tag]) for r in ours]), tag


def _one_group(m: Any) -> Any:
    import torch

    return torch.optim.SGD(m.parameters(), lr=0.1)


def _named_groups(m: Any) -> Any:
    import torch

    return torch.optim.Adam([{"params": m.a.parameters(), "name": "encoder"},
                             {"params": m.b.parameters(), "lr": 0.02, "name": "head"}], lr=0.01)


def _one_named_group(m: Any) -> Any:
    import torch

    return torch.optim.SGD([{"params": m.parameters(), "name": "all"}], lr=0.1)


def _two_sgd_and_adam(m: Any) -> Any:
    import torch

    return [torch.optim.SGD(m.a.parameters(), lr=0.1), torch.optim.Adam(m.b.parameters(), lr=0.3),
            torch.optim.SGD(m.b.parameters(), lr=0.2)]


def _scheduled_second(m: Any) -> Any:
    import torch

    plain = torch.optim.SGD(m.a.parameters(), lr=0.1)
    scheduled = torch.optim.SGD(m.b.parameters(), lr=0.2)
    step = torch.optim.lr_scheduler.StepLR(scheduled, step_size=100)
    return [plain, scheduled], [step]


def _named_scheduler(m: Any) -> Any:
    import torch

    first = torch.optim.SGD(m.a.parameters(), lr=0.1)
    second = torch.optim.SGD(m.b.parameters(), lr=0.2)
    step = torch.optim.lr_scheduler.StepLR(first, step_size=100)
    return [first, second], [{"scheduler": step, "name": "mine"}]


@pytest.mark.parametrize(
    ("optimizers", "manual", "names"),
    [
        (_one_group, False, ["lr-SGD"]),
        (_named_groups, False, ["lr-Adam/encoder", "lr-Adam/head"]),
        (_one_named_group, False, ["lr-SGD/all"]),
        (_two_sgd_and_adam, True, ["lr-SGD", "lr-Adam", "lr-SGD-1"]),
        (_scheduled_second, True, ["lr-SGD-1", "lr-SGD"]),
        (_named_scheduler, True, ["mine", "lr-SGD"]),
    ],
    ids=["one-group", "named-groups", "one-named-group", "two-sgd-and-adam",
         "scheduled-second", "named-scheduler"],
)
def test_lightning_rate_names_are_lr_monitors(
    pl: Any, tmp_path: Path, optimizers: Any, manual: bool, names: list[str]
) -> None:
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    from trainctl.adapters.lightning import ControllerCallback, lr_monitor_names

    cb = ControllerCallback(trainctl.Controller(trainctl.EarlyStopping("val_loss", patience=5)))
    monitor = LearningRateMonitor(logging_interval="epoch")
    logger = CSVLogger(tmp_path)
    trainer = lightning_fit(pl, lightning_module(pl, optimizers, manual=manual),
                            [cb, monitor], [logger], 1)
    assert lr_monitor_names(trainer) == names  # in the order of trainer.optimizers' groups
    (ours,) = [r for r in read_csv(Path(logger.log_dir) / "metrics.csv") if r["trainctl/stop"]]
    # each name carries the rate LearningRateMonitor logs under it (the rates differ)
    assert {name: float(ours[name]) for name in names} == {
        name: rates[0] for name, rates in monitor.lrs.items()}


def test_lightning_log_scalars_off_and_refused_group_names(pl: Any, tmp_path: Path) -> None:
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from trainctl.adapters.lightning import ControllerCallback

    logger = CSVLogger(tmp_path)
    quiet = ControllerCallback(trainctl.Controller(trainctl.EarlyStopping("val_loss")),
                               log_scalars=False)
    lightning_fit(pl, lightning_module(pl, _one_group), [quiet], [logger], 1)
    columns = set(read_csv(Path(logger.log_dir) / "metrics.csv")[0])
    assert columns == {"epoch", "step", "val_loss"}

    def twice(m: Any) -> Any:
        return torch.optim.SGD([{"params": m.a.parameters(), "name": "x"},
                                {"params": m.b.parameters(), "name": "x"}], lr=0.1)

    cb = ControllerCallback(trainctl.Controller(trainctl.EarlyStopping("val_loss")))
    with pytest.raises(ValueError, match=r"lr-SGD has param groups with the same 'name' \(x\)"):
        lightning_fit(pl, lightning_module(pl, twice), [cb], [CSVLogger(tmp_path)], 1)
    with pytest.raises(TypeError, match="'log_scalars' must be a bool, got str 'yes'"):
        ControllerCallback(trainctl.Controller(), log_scalars="yes")  # type: ignore[arg-type]


# -- torch --------------------------------------------------------------------------------------


def torch_run(tensorboard: Any, values: Sequence[float] = VAL) -> tuple[Any, list[Any], int]:
    import torch
    from torch import nn

    from trainctl.adapters.torch import TorchController

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD([{"params": model[0].parameters()},
                           {"params": model[1].parameters(), "lr": 0.01}], lr=0.1)
    ctl = trainctl.Controller(
        trainctl.TerminateOnNaN("loss"),
        trainctl.ReduceLROnPlateau("val_loss", patience=0, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=2),
        lr=(0.1, 0.01),
    )
    loop = TorchController(ctl, model, opt, tensorboard=tensorboard)
    rounds, steps_per_epoch = [], 3
    for epoch, v in enumerate(values):
        for _ in range(steps_per_epoch):
            opt.step()
            loop.optimizer_step(torch.tensor(1.0))
        rates = [g["lr"] for g in opt.param_groups]
        d = loop.step({"val_loss": v, "val_acc": 1 - v}, epoch=epoch)
        rounds.append((d, rates))
        if d.stop:
            break
    loop.finish()
    return loop, rounds, steps_per_epoch


def test_torch_tensorboard_event_files_hold_the_rounds(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, rounds, per_epoch = torch_run(tmp_path / "tb")
    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    tags = board.Tags()["scalars"]
    assert {"lr/pg0", "lr/pg1", "val_loss", "val_acc"} <= set(tags)
    assert "trainctl/TerminateOnNaN(loss)/stop" in tags and "loss" not in tags
    steps = [per_epoch * (i + 1) for i in range(len(rounds))]  # optimizer steps at each round
    assert [d.optimizer_steps for d, _ in rounds] == steps and rounds[-1][0].stop

    def series(tag: str) -> dict[int, float]:
        logged = {e.step: e.value for e in board.Scalars(tag)}
        assert list(logged) == steps, tag  # one point per round, at its optimizer step
        return logged

    for group in (0, 1):
        # the rate each epoch trained at: a reduction shows from the next round on
        assert list(series(f"lr/pg{group}").values()) == pytest.approx(
            [rates[group] for _, rates in rounds])
    assert list(series("val_loss").values()) == pytest.approx(
        [d.metrics["val_loss"] for d, _ in rounds])
    # the trainctl scalars: the decisions' (TensorBoard keeps float32)
    for tag in decision_scalars(rounds[0][0]):
        logged = list(series(tag).values())
        wanted = [decision_scalars(d)[tag] for d, _ in rounds]
        assert all(same(a, float(np.float32(b))) for a, b in zip(logged, wanted, strict=True))
    assert series("trainctl/EarlyStopping(val_loss)/wait")[steps[-1]] == 2.0
    assert series("trainctl/events/reduced_lr")[steps[2]] == 1.0
    assert list(series("trainctl/stop").values()) == [0.0] * (len(steps) - 1) + [1.0]


def test_torch_tensorboard_writer_of_your_own_and_bad_arguments(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from trainctl.adapters.torch import TorchController

    writer = SummaryWriter(str(tmp_path))
    _, rounds, _ = torch_run(writer, values=[1.0, 0.9])
    writer.add_scalar("mine", 1.0, global_step=0)  # flushed by finish(), not closed: still ours
    writer.close()
    board = EventAccumulator(str(tmp_path))
    board.Reload()
    assert [e.step for e in board.Scalars("lr/pg0")] == [3, 6]
    assert [e.value for e in board.Scalars("mine")] == [1.0]

    class Scalars:
        """Any object with add_scalar is a writer: what it was given, flushed, closed."""

        def __init__(self) -> None:
            self.points: list[tuple[str, float, int]] = []
            self.calls: list[str] = []

        def add_scalar(self, tag: str, value: float, global_step: int) -> None:
            self.points.append((tag, value, global_step))

        def flush(self) -> None:
            self.calls.append("flush")

        def close(self) -> None:
            self.calls.append("close")

    mine = Scalars()
    _, rounds, _ = torch_run(mine, values=[1.0, 0.9])
    assert mine.calls == ["flush"]  # the writer is yours: finish() flushes, never closes it
    assert [(v, s) for t, v, s in mine.points if t == "val_loss"] == [(1.0, 3), (0.9, 6)]
    assert {t for t, _, _ in mine.points} == {
        "lr/pg0", "lr/pg1", "val_loss", "val_acc", *decision_scalars(rounds[0][0])}

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctl = trainctl.Controller(trainctl.EarlyStopping("val_loss"))
    for bad, shown in ((3, "int 3"), (True, "bool True"), (["runs"], "list ['runs']")):
        with pytest.raises(TypeError, match=r"'tensorboard' must be a log directory .* got "
                           + shown.replace("[", r"\[").replace("]", r"\]")):
            TorchController(ctl, model, opt, tensorboard=bad)


def test_torch_imports_tensorboard_only_when_a_round_writes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    script = f"""
import sys, torch, trainctl
from trainctl.adapters.torch import TorchController
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] == "tensorboard"
                        or m.startswith("torch.utils.tensorboard"))
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loop = TorchController(trainctl.Controller(trainctl.EarlyStopping("val_loss")), model, opt,
                       tensorboard={str(tmp_path)!r})
loop.optimizer_step(1.0)
print(len(loaded()))
loop.step({{"val_loss": 1.0}})
print(len(loaded()) > 0)
loop.finish()
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["0", "True"]


def test_torch_tensorboard_counts_rounds_in_a_loop_without_optimizer_steps(
    tmp_path: Path,
) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainctl.adapters.torch import TorchController

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TorchController(trainctl.Controller(trainctl.EarlyStopping("val_loss")), model, opt,
                           tensorboard=tmp_path)
    for epoch, v in enumerate([1.0, 0.5, 0.7]):  # epochs only: no optimizer_step calls
        loop.step({"val_loss": v}, epoch=epoch)
    loop.finish()
    board = EventAccumulator(str(tmp_path))
    board.Reload()
    # one point per round, not three points piled on step 0
    logged = [(e.step, e.value) for e in board.Scalars("val_loss")]
    assert logged == [(1, 1.0), (2, 0.5), (3, float(np.float32(0.7)))]  # TensorBoard: float32
    assert [e.value for e in board.Scalars("trainctl/EarlyStopping(val_loss)/wait")] == [0, 0, 1]
