"""A plain PyTorch training loop driven by ``decision = ctl.step(metrics)``.

A small MLP learns a noisy synthetic two-moons problem. One trainctl Controller drives it:

- warmup + cosine learning-rate schedule, advanced after every optimizer step;
- plateau reduction on top of the schedule (which torch cannot combine with a schedule);
- early stopping that restores the best weights;
- a NaN guard on the per-step loss;
- checkpoints (best 2 by validation loss + a rolling ``last``) written crash-safely, with the
  controller's state inside, so that ``--resume`` continues exactly where a killed run stopped;
- a decision log, ``decisions.jsonl`` beside the checkpoints: every round's metrics, rates and
  reasons. A resumed run rewinds it to its checkpoint and carries on, so that it ends equal to
  the log of an uninterrupted run.

Run::

    python examples/torch_loop.py --dir /tmp/run            # train (about 5 s on a laptop CPU)
    python examples/torch_loop.py --dir /tmp/run --resume   # continue from the last checkpoint
    python -m trainctl inspect /tmp/run                     # why it stopped, best epoch, resume
    python -m trainctl plot /tmp/run/decisions.jsonl -o run.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import trainctl
from trainctl.adapters.torch import TorchController

EPOCHS = 60
BATCH = 64
BASE_LR = 3e-3
LOG_NAME = "decisions.jsonl"  # the decision log, beside the checkpoints


def make_data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Noisy two moons with 15% flipped labels: the validation loss plateaus, then rises."""
    g = torch.Generator().manual_seed(seed)
    n = 1536
    t = torch.rand(n, generator=g) * math.pi
    half = n // 2
    outer = torch.stack([torch.cos(t[:half]), torch.sin(t[:half])], 1)
    inner = torch.stack([1 - torch.cos(t[half:]), 0.5 - torch.sin(t[half:])], 1)
    x = torch.cat([outer, inner]) + 0.2 * torch.randn(n, 2, generator=g)
    y = torch.cat([torch.zeros(half), torch.ones(n - half)])
    flip = torch.rand(n, generator=g) < 0.15
    y = torch.where(flip, 1 - y, y)
    order = torch.randperm(n, generator=g)
    x, y = x[order], y[order]
    return x[:1024], y[:1024], x[1024:], y[1024:]


def make_controller(
    steps_per_epoch: int, log: trainctl.DecisionLog | None = None
) -> trainctl.Controller:
    total = EPOCHS * steps_per_epoch
    schedule = trainctl.schedules.warmup_cosine(  # total_steps counts the warmup
        BASE_LR, total, warmup_steps=steps_per_epoch * 3, final_lr=BASE_LR / 100
    )
    return trainctl.Controller(
        trainctl.TerminateOnNaN(monitor="loss"),
        trainctl.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5),
        trainctl.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True),
        trainctl.CheckpointPolicy(
            monitor="val_loss", save_top_k=2, save_last=True,
            filename="epoch{epoch:03d}-{val_loss:.4f}", extension=".pt",
        ),
        schedule=schedule,
        log=log,
    )


def train(
    directory: str,
    *,
    resume: bool = False,
    seed: int = 0,
    out: Callable[[str], None] = print,
    after_step: Callable[[int], None] | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Train (or continue training) in ``directory``; return a summary of the run.

    ``log`` writes the decision log ``decisions.jsonl`` in ``directory``."""
    torch.manual_seed(seed)
    xtr, ytr, xva, yva = make_data(seed)
    steps_per_epoch = len(xtr) // BATCH
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=BASE_LR, weight_decay=1e-4)
    decisions = trainctl.DecisionLog(Path(directory) / LOG_NAME) if log else None
    ctl = make_controller(steps_per_epoch, decisions)
    loop = TorchController(ctl, model, optimizer, store=directory)
    start = 0
    if resume:
        resumed = loop.resume()  # model, optimizer, controller, best weights and random states
        # loading the state rewinds the decision log to the checkpoint; with nothing to resume,
        # the log starts over (dropping what a run killed before its first checkpoint logged)
        start = resumed.epoch
        if not resumed.fresh:
            out(f"resumed from {resumed.checkpoint}: epochs 1-{start} are done "
                f"(lr {optimizer.param_groups[0]['lr']:.3g})")
    else:
        loop.runner.check_fresh()  # another run's checkpoints here: refused before any work
        if decisions is not None:
            decisions.rewind(0, 0)  # a fresh run's log starts over
    loss_fn = nn.BCEWithLogitsLoss()
    history: list[dict[str, Any]] = []
    decision = loop.last_decision
    for epoch in range(start, EPOCHS):
        if ctl.stopped:
            break
        order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed + epoch))
        model.train()
        for i in range(steps_per_epoch):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = loss_fn(model(xtr[idx]).squeeze(1), ytr[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            decision = loop.optimizer_step(loss)  # schedule + NaN guard
            if after_step is not None:
                after_step(ctl.optimizer_steps)
            if decision.stop:
                break
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(xva).squeeze(1), yva).item()
            acc = ((model(xva).squeeze(1) > 0).float() == yva).float().mean().item()
        decision = loop.step({"val_loss": val_loss, "val_acc": acc}, epoch=epoch)
        history.append({"epoch": epoch, "val_loss": val_loss, "lr": optimizer.param_groups[0]["lr"],
                        "events": [r.event for r in decision.reasons]})
        notes = [r.message for r in decision.reasons
                 if r.event in ("reduced_lr", "patience_exhausted", "non_finite")]
        out(f"epoch {trainctl.epoch_number(epoch):3d}  val_loss {val_loss:.4f}  acc {acc:.3f}  "
            f"lr {optimizer.param_groups[0]['lr']:.2e}" + "".join(f"  | {n}" for n in notes))
        if decision.stop:
            break
    end = loop.finish()
    with torch.no_grad():
        final = loss_fn(model(xva).squeeze(1), yva).item()
    out(f"finished: restored best weights: {end.restore_best}; final val_loss {final:.4f}")
    out("kept checkpoints: " + ", ".join(e.name for e in loop.store.entries))
    if decisions is not None:
        decisions.close()
        out(f"decision log: {decisions.path}")
    return {
        "history": history,
        "final_val_loss": final,
        "controller": ctl.state_dict(),
        "kept": [e.name for e in loop.store.entries],
        "weights": {k: v.tolist() for k, v in model.state_dict().items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="checkpoint directory (default: a temp dir)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summary", default=None, help="write a JSON summary here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # deterministic and fast for a model this small
    directory = args.dir or tempfile.mkdtemp(prefix="trainctl-torch-")
    summary = train(directory, resume=args.resume, seed=args.seed)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
