"""Regenerate the README's pictures (needs the dev install: torch and matplotlib).

    python docs/make_figures.py

- ``docs/run.png``: ``trainctl plot`` of the decision log that ``examples/torch_loop.py`` writes
  (warmup + cosine + plateau cuts + early stopping + checkpoints);
- ``docs/sweep.png``: the Pareto plot of an ``EarlyStopping`` sweep over the bundled corpus of
  192 real learning curves (``data/curves.npz``);
- and it prints the README's replay of two real logs: a Keras ``CSVLogger`` file and a Lightning
  ``CSVLogger`` ``metrics.csv``, each written by a real training run here (scikit-learn's bundled
  digits and breast-cancer data, no download).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import trainctl
from trainctl.replay import load_corpus, read_run, sweep

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parents[1]


def keras_log(directory: Path) -> Path:
    """A Keras fit on digits with CSVLogger; returns the CSV."""
    import keras
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = directory / "training.csv"
    model.fit(x[:300], y[:300], validation_data=(x[1000:], y[1000:]), epochs=60, batch_size=32,
              verbose=0, callbacks=[keras.callbacks.CSVLogger(str(path))])
    return path


def lightning_log(directory: Path) -> Path:
    """A Lightning fit on breast cancer with CSVLogger; returns its version directory."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from sklearn.datasets import load_breast_cancer
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_breast_cancer(return_X_y=True)
    x, y = ((x - x.mean(0)) / x.std(0)).astype("float32"), y.astype("float32")
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
            )

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            loss = bce(self.net(batch[0]).squeeze(1), batch[1])
            self.log("loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            self.log("val_loss", bce(self.net(batch[0]).squeeze(1), batch[1]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), 1e-2)

    torch.manual_seed(0)
    train = TensorDataset(torch.from_numpy(x[:100]), torch.from_numpy(y[:100]))
    val = TensorDataset(torch.from_numpy(x[300:]), torch.from_numpy(y[300:]))
    pl.Trainer(max_epochs=60, logger=CSVLogger(str(directory), name="lit"),
               enable_progress_bar=False, enable_checkpointing=False,
               enable_model_summary=False).fit(
        Model(), DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128)
    )
    return directory / "lit" / "version_0"


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        spec = importlib.util.spec_from_file_location("torch_loop", ROOT / "examples/torch_loop.py")
        assert spec is not None and spec.loader is not None
        torch_loop = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(torch_loop)
        torch_loop.train(directory, out=lambda _: None)
        subprocess.run(
            [sys.executable, "-m", "trainctl", "plot", f"{directory}/decisions.jsonl",
             "-o", str(ROOT / "docs/run.png")],
            check=True,
        )
    with tempfile.TemporaryDirectory() as directory:
        runs = [read_run(keras_log(Path(directory))), read_run(lightning_log(Path(directory)))]
        logged = sweep(trainctl.EarlyStopping("val_loss", restore_best_weights=True),
                       {"patience": [2, 5, 10]}, runs)
        print(logged.summary())
    result = sweep(
        trainctl.EarlyStopping("val_loss", restore_best_weights=True),
        {"patience": [2, 5, 10, 20], "min_delta": [0.0, 1e-3]},
        load_corpus(),
    )
    print(result.summary())
    result.plot(ROOT / "docs/sweep.png")


if __name__ == "__main__":
    main()
