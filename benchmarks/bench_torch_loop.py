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
  epoch;
- trainctl + log: the same, with a :class:`trainctl.DecisionLog` recording every round to a file.

The variants alternate, REPEAT times each; the ratios of the best (least disturbed) times are
printed. Targets: ratio <= 1.02 (issue 5), and still <= 1.02 with per-round logging (issue 14).
The per-step cost of the control alone is printed too, with and without per-step logging.
Run: python benchmarks/bench_torch_loop.py
"""

from __future__ import annotations

import re
import tempfile
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


def run(variant: str, log_dir: str = "") -> float:
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
            schedule=trainctl.schedules.warmup_cosine(LR, total, BATCHES, start_lr=LR * 1e-3),
            log=trainctl.DecisionLog(f"{log_dir}/decisions.jsonl") if variant.endswith("log")
            else None,
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
    variants = ("torch", "trainctl", "trainctl+log")
    with tempfile.TemporaryDirectory() as log_dir:
        for variant in variants:
            run(variant, log_dir)  # warm-up: imports, allocator
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(REPEAT):
            for variant in variants:
                times[variant].append(run(variant, log_dir))
    best = {v: min(t) for v, t in times.items()}
    steps = EPOCHS * BATCHES
    print(f"training loop, {steps} steps, best of {REPEAT}:")
    for variant, label in zip(variants, ("torch schedulers", "trainctl", "trainctl + log"),
                              strict=True):
        print(f"  {label:<17}: {best[variant] * 1e3:8.1f} ms  "
              f"({best[variant] / steps * 1e6:6.1f} us/step)")
    sched_us, ctl_us, logged_us = per_step_cost()
    print(f"  per-step control alone: torch SequentialLR.step {sched_us:.1f} us, "
          f"trainctl optimizer_step(loss) {ctl_us:.1f} us, with every step logged "
          f"{logged_us:.1f} us")
    for variant in variants[1:]:
        ratio = best[variant] / best["torch"]
        print(f"  ratio {variant} / torch: {ratio:.3f}  (target <= 1.02: "
              f"{'OK' if ratio <= 1.02 else 'MISSED'})")


def per_step_cost(n: int = 20_000) -> tuple[float, float, float]:
    """Microseconds per call of the per-step control alone (no training), best of REPEAT:
    torch's scheduler, trainctl's, and trainctl's with a DecisionLog(steps=True)."""
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    loss = torch.tensor(0.5)
    best = [float("inf"), float("inf"), float("inf")]
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
        for k in (1, 2):
            with tempfile.TemporaryDirectory() as log_dir:
                log = trainctl.DecisionLog(f"{log_dir}/steps.jsonl", steps=True) if k == 2 else None
                ctl = trainctl.Controller(
                    trainctl.TerminateOnNaN(),
                    schedule=trainctl.schedules.warmup_cosine(LR, n + n // 2, n // 2),
                    log=log,
                )
                loop = TorchController(ctl, net, opt)
                t0 = time.perf_counter()
                for _ in range(n):
                    loop.optimizer_step(loss)
                best[k] = min(best[k], time.perf_counter() - t0)
                if log is not None:
                    log.close()
    return best[0] / n * 1e6, best[1] / n * 1e6, best[2] / n * 1e6

if __name__ == "__main__":
    main()
