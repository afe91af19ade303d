"""Wall time of a CPU training loop driven by trainctl against the same loop driven by torch.

Both loops train the same small MLP (2 x 256 hidden units, batch 128, 64 batches per epoch, 12
epochs, one thread) on the same data from the same initial weights, with the same control:

- torch: ``SequentialLR(LinearLR warmup, CosineAnnealingLR)`` stepped after every batch,
  ``ReduceLROnPlateau.step(val_loss)`` after every epoch and a hand-written early-stopping check
  (torch has none) -- torch cannot put the plateau reduction on top of the schedule, so its
  reduction is overwritten at the next batch; the cost is what is measured here;
- trainctl: ``TorchController(Controller(TerminateOnNaN, ReduceLROnPlateau, EarlyStopping,
  schedule=warmup(cosine)))``, ``loop.optimizer_step(loss)`` after every batch (with a per-step
  NaN check of the loss, which the torch loop does not do) and ``loop.step(metrics)`` after every
  epoch.

The two variants alternate, REPEAT times each; the ratio of the best (least disturbed) times is
printed. Target (issue 5): ratio <= 1.02. Run: python benchmarks/bench_torch_loop.py
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

import trainctl
from trainctl.adapters.torch import TorchController

EPOCHS = 12
BATCHES = 64
BATCH = 128
REPEAT = 7
LR = 1e-3


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 32, generator=g)
    y = (x[:, :4].sum(1) > 0).float()
    xv = torch.randn(1024, 32, generator=g)
    yv = (xv[:, :4].sum(1) > 0).float()
    return x, y, xv, yv


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 1))


def run(variant: str) -> float:
    x, y, xv, yv = data()
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    loss_fn = nn.BCEWithLogitsLoss()
    total = EPOCHS * BATCHES
    on_step: Callable[[torch.Tensor], bool]
    on_epoch: Callable[[float], bool]
    if variant == "torch":
        sched = torch.optim.lr_scheduler.SequentialLR(
            opt,
            [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=BATCHES),
             torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - BATCHES)],
            milestones=[BATCHES],
        )
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2, factor=0.5)
        best, wait = [float("inf")], [0]

        def on_step(loss: torch.Tensor) -> bool:
            sched.step()
            return False

        def on_epoch(val: float) -> bool:
            plateau.step(val)
            if val < best[0]:
                best[0], wait[0] = val, 0
            else:
                wait[0] += 1
            return wait[0] >= 100
    else:
        ctl = trainctl.Controller(
            trainctl.TerminateOnNaN(),
            trainctl.ReduceLROnPlateau(monitor="val_loss", patience=2, factor=0.5, rules="torch"),
            trainctl.EarlyStopping(monitor="val_loss", patience=100),
            schedule=trainctl.schedules.warmup(
                trainctl.schedules.cosine(LR, total - BATCHES), BATCHES, start_lr=LR * 1e-3
            ),
        )
        loop = TorchController(ctl, net, opt)

        def on_step(loss: torch.Tensor) -> bool:
            return bool(loop.optimizer_step(loss).stop)

        def on_epoch(val: float) -> bool:
            return bool(loop.step({"val_loss": val}).stop)

    start = time.perf_counter()
    for _ in range(EPOCHS):
        for i in range(BATCHES):
            xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
            loss = loss_fn(net(xb).squeeze(1), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_step(loss.detach()):
                break
        with torch.no_grad():
            val = loss_fn(net(xv).squeeze(1), yv).item()
        if on_epoch(val):
            break
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    run("torch")
    run("trainctl")  # warm-up: imports, allocator
    times: dict[str, list[float]] = {"torch": [], "trainctl": []}
    for _ in range(REPEAT):
        for variant in ("torch", "trainctl"):
            times[variant].append(run(variant))
    best_torch, best_ours = min(times["torch"]), min(times["trainctl"])
    steps = EPOCHS * BATCHES
    ratio = best_ours / best_torch
    torch_us, ours_us = best_torch / steps * 1e6, best_ours / steps * 1e6
    print(f"training loop, {steps} steps, best of {REPEAT}:")
    print(f"  torch schedulers : {best_torch * 1e3:8.1f} ms  ({torch_us:6.1f} us/step)")
    print(f"  trainctl         : {best_ours * 1e3:8.1f} ms  ({ours_us:6.1f} us/step)")
    sched_us, ctl_us = per_step_cost()
    print(f"  per-step control alone: torch SequentialLR.step {sched_us:.1f} us, "
          f"trainctl optimizer_step(loss) {ctl_us:.1f} us")
    print(f"  ratio trainctl / torch: {ratio:.3f}  (target <= 1.02: "
          f"{'OK' if ratio <= 1.02 else 'MISSED'})")


def per_step_cost(n: int = 20_000) -> tuple[float, float]:
    """Microseconds per call of the per-step control alone (no training), best of REPEAT."""
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    loss = torch.tensor(0.5)
    best = [float("inf"), float("inf")]
    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
    for _ in range(REPEAT):
        sched = torch.optim.lr_scheduler.SequentialLR(
            opt,
            [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=n // 2),
             torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n)],
            milestones=[n // 2],
        )
        t0 = time.perf_counter()
        for _ in range(n):
            sched.step()
        best[0] = min(best[0], time.perf_counter() - t0)
        ctl = trainctl.Controller(
            trainctl.TerminateOnNaN(),
            schedule=trainctl.schedules.warmup(trainctl.schedules.cosine(LR, n), n // 2),
        )
        loop = TorchController(ctl, net, opt)
        t0 = time.perf_counter()
        for _ in range(n):
            loop.optimizer_step(loss)
        best[1] = min(best[1], time.perf_counter() - t0)
    return best[0] / n * 1e6, best[1] / n * 1e6

if __name__ == "__main__":
    main()
