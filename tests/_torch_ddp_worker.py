"""One rank of a 2-process gloo job driving TorchController (see test_adapter_torch_ddp.py).

    python _torch_ddp_worker.py RANK WORLD PORT SCENARIO OUTDIR

Each rank trains a tiny DDP model and feeds its own, rank-dependent metrics to ``loop.step``;
it writes every decision it received to OUTDIR/rank{RANK}.json. Scenarios:

- ``differ``: ranks see different val_loss streams; decisions must agree (mean of the ranks);
- ``nan``: rank 1 reports a NaN val_loss at round 3;
- ``step_nan``: rank 0's per-step loss is NaN once (checked lazily every 2 steps);
- ``bad_metric``: rank 1 passes a 3-element tensor as a metric at round 2;
- ``raise``: rank 1 raises in its own code at round 2 and exits, never calling step().
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import trainctl
from trainctl.adapters.torch import TorchController

#: per-rank validation streams: different on each rank, their mean plateaus
STREAMS = {
    0: [1.0, 0.8, 0.7, 0.72, 0.69, 0.7, 0.71, 0.7, 0.69, 0.7, 0.72, 0.73, 0.74, 0.75],
    1: [1.2, 0.9, 0.6, 0.66, 0.71, 0.72, 0.70, 0.71, 0.72, 0.73, 0.7, 0.71, 0.72, 0.73],
}


def make_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.TerminateOnNaN(monitor="loss"),
        trainctl.TerminateOnNaN(monitor="val_loss"),
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
        trainctl.CheckpointPolicy(monitor="val_loss", save_top_k=2, save_last=True,
                                  extension=".pt"),
        lr=0.05,
    )


def main() -> None:
    rank, world, port, scenario, outdir = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
    )
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = port
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30)
    )
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loop = TorchController(
        make_controller(), model, opt, store=outdir / f"store-rank{rank}", check_every=2
    )
    records = []
    g = torch.Generator().manual_seed(rank)
    try:
        for epoch, value in enumerate(STREAMS[rank]):
            for step in range(4):
                x = torch.randn(8, 3, generator=g)
                loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if scenario == "step_nan" and rank == 0 and epoch == 1 and step == 0:
                    loss = torch.tensor(math.nan)
                d = loop.optimizer_step(loss)
                if d.stop:
                    records.append({"clock": "step", "epoch": epoch, "step": step,
                                    "events": [r.event for r in d.reasons]})
                    break
            if d.stop:
                break
            metric: object = value
            if scenario == "nan" and rank == 1 and epoch == 3:
                metric = math.nan
            if scenario == "bad_metric" and rank == 1 and epoch == 2:
                metric = torch.ones(3)
            if scenario == "raise" and rank == 1 and epoch == 2:
                raise ValueError("rank 1 failed in user code")
            d = loop.step({"val_loss": metric}, epoch=epoch)
            records.append({"clock": "round", "epoch": epoch, "stop": d.stop, "lr": d.lr,
                            "save": None if d.save is None else d.save.name,
                            "delete": list(d.delete),
                            "events": [r.event for r in d.reasons]})
            if d.stop:
                break
        end = loop.finish()
        records.append({"clock": "end", "restore_best": end.restore_best})
        (outdir / f"rank{rank}.json").write_text(json.dumps(records))
    except Exception as exc:
        (outdir / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if scenario not in ("raise", "bad_metric"):
            dist.barrier()  # let the peer finish reading before this rank's sockets close
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
