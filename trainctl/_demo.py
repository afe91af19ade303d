"""``python -m trainctl demo``: a numpy MLP trained under a Controller, every decision explained.

No ML framework: a two-layer network with hand-written backprop learns a noisy two-moons problem.
Label noise makes the validation loss plateau and then rise, so the plateau policy lowers the
learning rate (on top of a warmup schedule), early stopping ends the run and restores the best
weights, and the checkpoint policy keeps the best two epochs and the latest one on disk, written
through the crash-safe store.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._checkpoint import CheckpointPolicy
from ._controller import Controller
from ._early_stopping import EarlyStopping
from ._nan import TerminateOnNaN
from ._plateau import ReduceLROnPlateau
from ._printer import Printer
from .schedules import constant, warmup
from .storage import CheckpointStore

__all__ = ["make_moons", "run_demo"]

Params = dict[str, np.ndarray]


def make_moons(
    n: int, noise: float, label_noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles with Gaussian jitter and a fraction of flipped labels."""
    rng = np.random.RandomState(seed)
    half = n // 2
    t = rng.uniform(0.0, math.pi, size=n)
    outer = np.stack([np.cos(t[:half]), np.sin(t[:half])], axis=1)
    inner = np.stack([1.0 - np.cos(t[half:]), 0.5 - np.sin(t[half:])], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n, 2))
    y = np.concatenate([np.zeros(half), np.ones(n - half)])
    flip = rng.uniform(size=n) < label_noise
    y = np.where(flip, 1.0 - y, y)
    order = rng.permutation(n)
    return x[order], y[order]


def _init(rng: np.random.RandomState, hidden: int) -> Params:
    return {
        "w1": rng.normal(scale=1.0 / math.sqrt(2), size=(2, hidden)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(scale=1.0 / math.sqrt(hidden), size=(hidden, hidden)),
        "b2": np.zeros(hidden),
        "w3": rng.normal(scale=1.0 / math.sqrt(hidden), size=(hidden, 1)),
        "b3": np.zeros(1),
    }


def _forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    h1 = np.tanh(x @ p["w1"] + p["b1"])
    h2 = np.tanh(h1 @ p["w2"] + p["b2"])
    logits = (h2 @ p["w3"] + p["b3"])[:, 0]
    return logits, (x, h1, h2)


def _loss_and_acc(p: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logits, _ = _forward(p, x)
    # log(1 + e^z) - y z, written stably
    loss = np.mean(np.logaddexp(0.0, logits) - y * logits)
    acc = np.mean((logits > 0) == (y > 0.5))
    return float(loss), float(acc)


def _grads(p: Params, x: np.ndarray, y: np.ndarray) -> Params:
    logits, (x0, h1, h2) = _forward(p, x)
    d = (1.0 / (1.0 + np.exp(-logits)) - y)[:, None] / len(y)
    g: Params = {"w3": h2.T @ d, "b3": d.sum(0)}
    d2 = (d @ p["w3"].T) * (1 - h2**2)
    g["w2"], g["b2"] = h1.T @ d2, d2.sum(0)
    d1 = (d2 @ p["w2"].T) * (1 - h1**2)
    g["w1"], g["b1"] = x0.T @ d1, d1.sum(0)
    return g


def run_demo(
    epochs: int = 200,
    seed: int = 0,
    out: Callable[[str], None] = print,
    checkpoint_dir: str | None = None,
) -> list[dict[str, float]]:
    """Train the demo network; print one line per epoch and every decision's reason.

    Checkpoints go to ``checkpoint_dir`` (a temporary directory if ``None``). Returns the
    per-epoch metric history (the demo's own test checks it).
    """
    if checkpoint_dir is None:
        with tempfile.TemporaryDirectory(prefix="trainctl-demo-") as tmp:
            return run_demo(epochs, seed, out, tmp)
    rng = np.random.RandomState(seed)
    x, y = make_moons(1200, noise=0.25, label_noise=0.08, seed=seed)
    x_train, y_train, x_val, y_val = x[:300], y[:300], x[300:], y[300:]
    params = _init(rng, hidden=64)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}

    ctl = Controller(
        TerminateOnNaN(monitor="loss"),
        ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=4, cooldown=2, min_lr=1e-3),
        EarlyStopping(monitor="val_loss", patience=12, min_delta=1e-4, restore_best_weights=True),
        CheckpointPolicy(monitor="val_loss", save_top_k=2, keep_last_n=1,
                         filename="epoch{epoch:03d}-{val_loss:.4f}", extension=".npz"),
        schedule=warmup(constant(0.3), warmup_steps=30, start_lr=0.03),
        log=Printer(out, style="plain"),  # the table below: one line per epoch, and why
    )
    store = CheckpointStore(checkpoint_dir)
    store.recover()
    out("trainctl demo: a numpy MLP on noisy two-moons, under")
    for policy in ctl.policies:
        out(f"  {policy!r}")
    out(f"  schedule={ctl.schedule!r} (per optimizer step; plateau reductions multiply it)")
    out(f"  checkpoints in {checkpoint_dir}")
    out("")
    best_params = {k: v.copy() for k, v in params.items()}
    history: list[dict[str, float]] = []
    batch = 30
    started = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        stop = False
        for start in range(0, len(order), batch):
            lr = ctl.lr
            assert isinstance(lr, float)
            idx = order[start : start + batch]
            grads = _grads(params, x_train[idx], y_train[idx])
            for k in params:
                velocity[k] = 0.9 * velocity[k] - lr * grads[k]
                params[k] += velocity[k]
            batch_loss, _ = _loss_and_acc(params, x_train[idx], y_train[idx])
            stop = ctl.optimizer_step({"loss": batch_loss}).stop
            if stop:
                break
        loss, _ = _loss_and_acc(params, x_train, y_train)
        val_loss, val_acc = _loss_and_acc(params, x_val, y_val)
        metrics = {"loss": loss, "val_loss": val_loss, "val_acc": val_acc}
        history.append(metrics)
        decision = ctl.step(metrics)
        if decision.snapshot_best:
            best_params = {k: v.copy() for k, v in params.items()}
        if decision.save is not None:
            store.save(
                decision.save.name, functools.partial(_write_npz, params=params),  # written now
                metrics=metrics, state=ctl.state_dict(), delete=decision.delete,
            )
        if decision.stop or stop:
            break
    final = ctl.finish()  # the printer shows its reasons (the restored best)
    if final.restore_best:
        params = best_params
    val_loss, val_acc = _loss_and_acc(params, x_val, y_val)
    elapsed = time.perf_counter() - started
    out("")
    kept = ", ".join(entry.name for entry in store.entries)
    out(f"checkpoints kept (best 2 + latest): {kept}")
    out(
        f"final weights: val_loss {val_loss:.4f}, val_acc {val_acc:.3f} "
        f"after {len(history)} epochs, {ctl.optimizer_steps} optimizer steps, {elapsed:.2f} s"
    )
    return history


def _write_npz(path: Path, *, params: Params) -> None:
    with open(path, "wb") as f:  # a file object: np.savez must not append its own suffix
        np.savez(f, **params)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
