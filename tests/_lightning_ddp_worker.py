"""A 2-process DDP fit (CPU, gloo) for tests/test_adapter_lightning_ddp.py.

``python _lightning_ddp_worker.py OUT`` trains with ``strategy="ddp", devices=2`` (Lightning
re-launches this script for rank 1). The ranks log *different* ``val_loss`` streams with
``sync_dist=False``: rank 0 plateaus (a learning-rate reduction on rank 0's metrics only), rank 1
hits a NaN at epoch 4 (a stop on rank 1 only). Each rank writes ``OUT/rank<r>.json`` with what it
decided and did; ``CheckpointStore.save`` is wrapped to count the writes made by each process.
"""

from __future__ import annotations

import json
import math
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

import trainctl
from trainctl.adapters.lightning import ControllerCallback, EarlyStopping
from trainctl.adapters.torch import optimizer_lrs
from trainctl.storage import CheckpointStore

STREAMS = {
    0: [1.0, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
    1: [2.0, 1.5, 1.2, 1.0, math.nan, 0.5, 0.4, 0.3, 0.2, 0.1],
}
EPOCHS = 10
SAVES: list[str] = []

_original_save = CheckpointStore.save


def _counting_save(self: CheckpointStore, name: str, *args: Any, **kwargs: Any) -> Path:
    SAVES.append(name)
    return _original_save(self, name, *args, **kwargs)


CheckpointStore.save = _counting_save  # type: ignore[method-assign]


class Scripted(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(2, 1)
        self.rates: list[list[float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.rates.append(list(optimizer_lrs(self.trainer.optimizers)))
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        value = STREAMS[self.global_rank][self.current_epoch]
        self.log("val_loss", torch.tensor(value), sync_dist=False)
        # the same values under another name: the drop-in shares Lightning's state_key per monitor
        self.log("val_loss_copy", torch.tensor(value), sync_dist=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.TerminateOnNaN("loss"),  # a step policy: exercises the per-step agreement
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, rules="torch"),
        trainctl.EarlyStopping(
            "val_loss", patience=5, rules="lightning", precision="float32", check_finite=True
        ),
        trainctl.CheckpointPolicy(
            "val_loss", save_top_k=2, filename="{epoch}", extension=".ckpt", precision="float32"
        ),
        lr=0.05,
    )


def es_state(es: LightningEarlyStopping) -> dict[str, Any]:
    return {
        "stopped_epoch": es.stopped_epoch,
        "stopping_reason": es.stopping_reason.name,
        "wait_count": es.wait_count,
        "best_score": str(float(es.best_score)),
    }


def main() -> None:
    out = Path(sys.argv[1])
    warnings.filterwarnings("ignore")
    data = TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
    callback = ControllerCallback(controller(), dirpath=out / "checkpoints")
    theirs = LightningEarlyStopping("val_loss", patience=5)
    ours = EarlyStopping("val_loss_copy", patience=5)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=EPOCHS,
        callbacks=[callback, theirs, ours],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    model = Scripted()
    trainer.fit(model, DataLoader(data, batch_size=2), DataLoader(data, batch_size=8))
    result = {
        "rank": trainer.global_rank,
        "current_epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "decisions": [
            {
                "epoch": d.epoch,
                "stop": d.stop,
                "lr": d.lr,
                "lr_changed": d.lr_changed,
                "save": None if d.save is None else d.save.name,
                "delete": list(d.delete),
            }
            for d in callback.decisions
        ],
        "local_stop_events": [
            [r.event for r in d.reasons if r.event != "finite"] for d in callback.decisions
        ],
        "rates": model.rates,
        "controller": callback.controller.state_dict(),
        "store_saves": SAVES,
        "has_store": callback.store is not None,
        "lightning_es": es_state(theirs),
        "trainctl_es": es_state(ours),
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
