"""Per-call cost of ``ctl.step(metrics)`` against Keras' and torch's own callbacks.

Measured in one run, on the same metric stream (a noisy slow descent with plateaus, so that the
improving, waiting, reducing and cooldown paths all run):

- trainctl: ``Controller(EarlyStopping, ReduceLROnPlateau).step(metrics)``;
- Keras: ``EarlyStopping.on_epoch_end`` + ``ReduceLROnPlateau.on_epoch_end`` on a compiled model
  (KERAS_BACKEND=torch);
- torch: ``torch.optim.lr_scheduler.ReduceLROnPlateau.step`` (one scheduler, no early stopping).

Targets (issue 2): trainctl <= 0.25x the Keras pair and <= 3x torch's single scheduler.
Best-of-N timing, because these machines are shared and noisy. Run: python benchmarks/bench_core.py
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

import trainctl

N = 20_000
REPEAT = 7


def stream(n: int) -> list[dict[str, float]]:
    """A noisy slow descent with plateaus: 400 improving rounds, then 400 flat ones, and so on."""
    rng = np.random.RandomState(0)
    x, out = 1.0, []
    for i in range(n):
        if (i // 400) % 2 == 0:
            x *= 0.999
        v = float(np.float32(x * (1.0 + rng.normal(scale=0.002))))
        out.append({"val_loss": v, "loss": v})
    return out


def per_call(make: Callable[[], Callable[[dict[str, float]], object]],
             data: list[dict[str, float]]) -> float:
    """Best-of-REPEAT seconds per call; each repeat starts from a fresh object."""
    best = float("inf")
    for _ in range(REPEAT):
        call = make()
        t0 = timeit.default_timer()
        for m in data:
            call(m)
        best = min(best, timeit.default_timer() - t0)
    return best / len(data)


def trainctl_step() -> Callable[[dict[str, float]], object]:
    ctl = trainctl.Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=10**9),
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=10, min_lr=1e-9),
        lr=1e-3,
    )
    return ctl.step


def torch_step() -> Callable[[dict[str, float]], object]:
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=10, min_lr=1e-9)
    return lambda m: sched.step(m["val_loss"])


def keras_pair() -> Callable[[dict[str, float]], object]:
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10**9)
    rl = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=10, min_lr=1e-9)
    for cb in (es, rl):
        cb.set_model(model)
        cb.on_train_begin()
    epoch = [0]

    def call(m: dict[str, float]) -> None:
        logs = dict(m)
        es.on_epoch_end(epoch[0], logs)
        rl.on_epoch_end(epoch[0], logs)
        epoch[0] += 1

    return call


def main() -> None:
    data = stream(N)
    ours = per_call(trainctl_step, data)
    torch_t = per_call(torch_step, data)
    keras_t = per_call(keras_pair, data[: N // 10])
    rows = [
        ("trainctl Controller(EarlyStopping, ReduceLROnPlateau).step", ours),
        ("keras EarlyStopping + ReduceLROnPlateau .on_epoch_end", keras_t),
        ("torch ReduceLROnPlateau.step (one scheduler)", torch_t),
    ]
    for name, t in rows:
        print(f"{name:60s} {t * 1e6:8.2f} us/call")
    r_keras, r_torch = ours / keras_t, ours / torch_t
    print(f"ratio vs keras pair: {r_keras:.3f}x (target <= 0.25x) "
          f"{'OK' if r_keras <= 0.25 else 'MISSED'}")
    print(f"ratio vs torch:      {r_torch:.2f}x (target <= 3x) "
          f"{'OK' if r_torch <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
