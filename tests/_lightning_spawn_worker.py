"""A 2-process ``strategy="ddp_spawn"`` fit (CPU, gloo) for tests/test_pickling.py.

``python _lightning_spawn_worker.py OUT`` trains with the drop-in ``EarlyStopping`` beside
Lightning's own. ``ddp_spawn`` pickles the callbacks into each spawned process (a callback that
does not pickle crashes at start-up: Lightning's ``test_multiple_early_stopping_callbacks``). The
spawned processes write ``OUT/rank<r>.json`` with the epoch they stopped at and both callbacks'
states.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from trainctl.adapters.lightning import EarlyStopping

STREAM = [1.0, 0.8, 0.85, 0.9, 0.95, 0.7, 0.72, 0.74, 0.76, 0.78]


class Scripted(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", STREAM[self.current_epoch], sync_dist=False)
        self.log("val_loss_copy", STREAM[self.current_epoch], sync_dist=False)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def data() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class Recorder(pl.Callback):
    """Runs in each spawned process: writes what the two drop-ins decided there."""

    def __init__(self, out: Path, ours: EarlyStopping, theirs: LightningEarlyStopping) -> None:
        self.out, self.ours, self.theirs = out, ours, theirs

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the copies of the callbacks in this process (spawn pickled them)
        ours = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
        theirs = next(
            c for c in trainer.callbacks
            if isinstance(c, LightningEarlyStopping) and not isinstance(c, EarlyStopping)
        )
        result: dict[str, Any] = {"epoch": trainer.current_epoch}
        for side, cb in (("ours", ours), ("theirs", theirs)):
            state = {k: v for k, v in cb.state_dict().items() if k != "trainctl"}
            state["best_score"] = float(cb.best_score)
            state["stopping_reason"] = str(state["stopping_reason"])
            result[side] = state
        result["trainctl"] = ours.state_dict()["trainctl"]
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result, default=str))


def main(out: Path) -> None:
    ours = EarlyStopping("val_loss", patience=3)
    theirs = LightningEarlyStopping("val_loss_copy", patience=3)  # state keys must differ
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=len(STREAM),
        callbacks=[ours, theirs, Recorder(out, ours, theirs)], logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(), data(), data())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
