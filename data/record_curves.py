"""Record a corpus of real learning curves for replaying and tuning early-stopping policies.

Small MLPs are trained on scikit-learn's bundled datasets (no download) over a grid of learning
rate, hidden width, optimizer, weight decay and seed, and every epoch's training loss, validation
loss and validation metric are written to ``data/curves.npz`` (layout: ``data/README.md``).

The curves are raw: no smoothing, no early stopping, every run trained for the same number of
epochs, so that a policy replayed on them sees what it would have seen live, including the noise
and the rise of the validation loss once a run overfits (Prechelt, "Early Stopping - But When?",
1998). This script deliberately does not import trainctl: the corpus is what the library's
policies are judged against, so it must not depend on them.

Run: .venv/bin/python data/record_curves.py                          (the corpus, ~1.5 min, 1 core)
     .venv/bin/python data/record_curves.py --quick --out /tmp/q.npz  (smoke run, 8 runs x 5 epochs)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

VERSION = 1
EPOCHS = 150
QUICK_EPOCHS = 5
BATCH_SIZE = 32
# A large validation share makes the validation loss a steadier estimate and leaves a small
# training set, which the nets memorise within the epoch budget: that is what makes many curves
# turn upwards, the case early stopping is for.
VAL_FRACTION = 0.4
DATASETS = ("digits", "breast_cancer", "wine", "diabetes")
# Per optimizer a low, a middle and a high rate. The ranges differ because SGD with momentum 0.9
# needs a far larger rate than Adam (whose steps are normalised) to make comparable progress.
LEARNING_RATES = {"adam": (3e-4, 1e-3, 3e-3), "sgd": (1e-2, 3e-2, 1e-1)}
WIDTHS = (16, 64)
# 1e-2 rather than a token 1e-4: coupled L2 that small leaves the curve of the same seed almost
# unchanged, which would only duplicate runs.
WEIGHT_DECAYS = (0.0, 1e-2)
SEEDS = (0, 1)
ADAM_BETAS, ADAM_EPS, SGD_MOMENTUM = (0.9, 0.999), 1e-8, 0.9
DEFAULT_OUT = Path(__file__).resolve().parent / "curves.npz"

LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "diabetes": load_diabetes,
}


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    optimizer: str  # "adam" or "sgd" (momentum 0.9); weight decay is coupled L2 for both
    lr: float
    width: int
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class Split:
    """One dataset split by one seed, standardised with the training part's statistics."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_outputs: int


def make_split(dataset: str, seed: int) -> Split:
    x, y = LOADERS[dataset](return_X_y=True)
    task = "regression" if dataset == "diabetes" else "classification"
    # Stratified for classification, so that small classes (wine: 48 samples) reach both parts.
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=VAL_FRACTION, random_state=seed,
        stratify=y if task == "classification" else None,
    )
    # Fitted on the training part only, as a real pipeline would be. StandardScaler leaves
    # zero-variance columns (digits' blank border pixels) unscaled instead of dividing by ~0.
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_va = scaler.transform(x_tr), scaler.transform(x_va)
    if task == "regression":
        # Standardised targets put the MSE near 1 at the start, on the scale of the
        # classification runs' cross-entropy; R^2 is unchanged by this affine rescaling.
        y_mean, y_std = y_tr.mean(), y_tr.std()
        y_tr, y_va = (y_tr - y_mean) / y_std, (y_va - y_mean) / y_std
        targets = (torch.tensor(y_tr, dtype=torch.float32).unsqueeze(1),
                   torch.tensor(y_va, dtype=torch.float32).unsqueeze(1))
        n_outputs = 1
    else:
        targets = torch.tensor(y_tr, dtype=torch.int64), torch.tensor(y_va, dtype=torch.int64)
        n_outputs = int(y.max()) + 1
    return Split(
        task=task,
        x_train=torch.tensor(x_tr, dtype=torch.float32),
        y_train=targets[0],
        x_val=torch.tensor(x_va, dtype=torch.float32),
        y_val=targets[1],
        n_outputs=n_outputs,
    )


class StackedMLP:
    """G independent MLPs (2 hidden ReLU layers of one width) evaluated as one batched matmul.

    The runs of a group share dataset, seed, width and optimizer and differ in lr and weight
    decay, so they see the same mini-batches; stacking them turns G small training loops into one.
    On these tiny nets per-op overhead dominates, which makes this ~4-5x faster than one loop per
    run with no change to what each run computes: every model's loss, gradient and optimizer
    state only ever touch its own slice [g] (the summed loss has gradient 1 w.r.t. each term).
    """

    def __init__(self, n_inputs: int, width: int, n_outputs: int, seed: int, copies: int):
        # torch's own nn.Linear initialisation, seeded right before construction: runs that share
        # seed and width start from identical weights, so their lr / optimizer / weight decay are
        # compared from one starting point.
        torch.manual_seed(seed)
        ref = nn.Sequential(
            nn.Linear(n_inputs, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, n_outputs),
        )
        self.params: list[torch.Tensor] = []
        for layer in ref:
            if isinstance(layer, nn.Linear):
                w = layer.weight.detach().T.unsqueeze(0).repeat(copies, 1, 1)  # (G, in, out)
                b = layer.bias.detach().view(1, 1, -1).repeat(copies, 1, 1)  # (G, 1, out)
                self.params += [w.requires_grad_(True), b.requires_grad_(True)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (G, N, out)."""
        h = x.expand(self.params[0].shape[0], *x.shape)
        last = len(self.params) - 2
        for i in range(0, len(self.params), 2):
            h = torch.baddbmm(self.params[i + 1], h, self.params[i])
            if i < last:
                h = torch.relu(h)
        return h


class StackedOptimizer:
    """Adam or SGD-with-momentum for StackedMLP, with one lr and weight decay per model.

    The update is torch.optim.Adam's / torch.optim.SGD's single-tensor code, op for op, with the
    scalars lr and weight_decay replaced by (G, 1, 1) tensors; torch.optim itself cannot give
    each slice of one parameter its own rate.
    """

    def __init__(self, kind: str, params: list[torch.Tensor], lr: Sequence[float],
                 weight_decay: Sequence[float]):
        self.kind, self.params, self.step_count = kind, params, 0
        self.lr = torch.tensor(lr, dtype=torch.float32).view(-1, 1, 1)
        self.wd = torch.tensor(weight_decay, dtype=torch.float32).view(-1, 1, 1)
        # SGD's momentum buffer starts at 0, so its first update is buf = grad, as torch's.
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if kind == "adam" else []

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        t = self.step_count
        beta1, beta2 = ADAM_BETAS
        for i, p in enumerate(self.params):
            assert p.grad is not None
            g = p.grad.add_(p * self.wd)  # coupled L2, as torch's weight_decay
            if self.kind == "adam":
                self.m[i].lerp_(g, 1 - beta1)
                self.v[i].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (self.v[i].sqrt() / (1 - beta2**t) ** 0.5).add_(ADAM_EPS)
                p.addcdiv_(self.m[i] * (-self.lr / (1 - beta1**t)), denom)
            else:
                self.m[i].mul_(SGD_MOMENTUM).add_(g)
                p.sub_(self.lr * self.m[i])
            p.grad = None


def per_model_loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(G, N, out) predictions -> (G,) mean loss of each model: cross-entropy or MSE."""
    if task == "classification":
        ce = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.repeat(out.shape[0]),
                             reduction="none")
        return ce.view(out.shape[0], -1).mean(dim=1)
    return ((out - y) ** 2).mean(dim=(1, 2))


def per_model_metric(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(G,) accuracy, or R^2 as sklearn's r2_score (1 - SSE / SST around the validation mean).

    Both are higher-is-better, so one "max" mode fits every run's metric.
    """
    if task == "classification":
        return (out.argmax(dim=2) == y).float().mean(dim=1)
    sst = ((y - y.mean()) ** 2).sum()
    return 1.0 - ((out - y) ** 2).sum(dim=(1, 2)) / sst


def train_group(
    group: Sequence[RunConfig], split: Split, epochs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train runs that differ only in lr and weight decay, in lockstep.

    Returns (train_loss, val_loss, val_metric) as (G, epochs) and diverged as (G,). The training
    loss is the size-weighted mean of the mini-batch losses seen during the epoch, as Keras' and
    Lightning's logs report it (not a second pass after the epoch); the validation loss and metric
    are computed on the whole validation part after the epoch.
    """
    first = group[0]
    model = StackedMLP(split.x_train.shape[1], first.width, split.n_outputs, first.seed,
                       len(group))
    opt = StackedOptimizer(first.optimizer, model.params, [c.lr for c in group],
                           [c.weight_decay for c in group])
    # The batch order gets its own generator, so it depends on the seed only (not on how many
    # random numbers the initialisation drew, which changes with the width).
    gen = torch.Generator().manual_seed(first.seed)
    n = split.x_train.shape[0]
    curves = np.full((3, len(group), epochs), np.nan)
    diverged = np.zeros(len(group), dtype=bool)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(len(group))
        for start in range(0, n, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = per_model_loss(split.task, model(split.x_train[idx]), split.y_train[idx])
            loss.sum().backward()
            opt.step()
            total += loss.detach() * len(idx)
        with torch.no_grad():
            out = model(split.x_val)
            row = np.stack([
                (total / n).numpy(),
                per_model_loss(split.task, out, split.y_val).numpy(),
                per_model_metric(split.task, out, split.y_val).numpy(),
            ])
        # A run whose numbers stop being finite has diverged: from that epoch on it stays NaN, as
        # its log would end when the job is killed. Its params are NaN too, which cannot leak into
        # the other runs (see StackedMLP), so the group trains on.
        diverged |= ~np.isfinite(row).all(axis=0)
        curves[:, :, epoch] = np.where(diverged, np.nan, row)
    return curves[0], curves[1], curves[2], diverged


def grid(quick: bool) -> list[RunConfig]:
    if quick:
        # Two rates per dataset: small, yet it exercises every code path, a stacked group of
        # more than one model included, and the whole file layout.
        return [RunConfig(d, "adam", lr, 16, 0.0, 0) for d in DATASETS for lr in (1e-3, 1e-2)]
    return [
        RunConfig(dataset, optimizer, lr, width, wd, seed)
        for dataset, seed, width, optimizer in itertools.product(
            DATASETS, SEEDS, WIDTHS, LEARNING_RATES)
        for wd in WEIGHT_DECAYS
        for lr in LEARNING_RATES[optimizer]
    ]


def record(configs: Sequence[RunConfig], epochs: int,
           log: Callable[[str], None]) -> dict[str, np.ndarray]:
    groups: dict[tuple[str, int, int, str], list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault((c.dataset, c.seed, c.width, c.optimizer), []).append(i)
    results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = {}
    splits: dict[int, Split] = {}
    t0 = time.perf_counter()
    for (dataset, seed, width, optimizer), members in groups.items():
        split = make_split(dataset, seed)
        train, val, metric, diverged = train_group([configs[i] for i in members], split, epochs)
        for g, i in enumerate(members):
            results[i] = (train[g], val[g], metric[g], bool(diverged[g]))
            splits[i] = split
        log(f"{time.perf_counter() - t0:6.1f}s {dataset} seed={seed} width={width} "
            f"{optimizer}: {len(members)} runs, {int(diverged.sum())} diverged")

    runs = range(len(configs))
    tasks = [splits[i].task for i in runs]
    return {
        "version": np.array(VERSION, dtype=np.int64),
        "epochs": np.array(epochs, dtype=np.int64),
        # float32 halves the file; losses need no more than ~7 significant digits.
        "train_loss": np.stack([results[i][0] for i in runs]).astype(np.float32),
        "val_loss": np.stack([results[i][1] for i in runs]).astype(np.float32),
        "val_metric": np.stack([results[i][2] for i in runs]).astype(np.float32),
        "diverged": np.array([results[i][3] for i in runs], dtype=bool),
        # Strings as fixed-width unicode arrays, so the file loads with allow_pickle=False.
        "dataset": np.array([c.dataset for c in configs], dtype=str),
        "task": np.array(tasks, dtype=str),
        "metric_name": np.array(
            ["accuracy" if t == "classification" else "r2" for t in tasks], dtype=str),
        "optimizer": np.array([c.optimizer for c in configs], dtype=str),
        "lr": np.array([c.lr for c in configs], dtype=np.float64),
        "width": np.array([c.width for c in configs], dtype=np.int64),
        "weight_decay": np.array([c.weight_decay for c in configs], dtype=np.float64),
        "seed": np.array([c.seed for c in configs], dtype=np.int64),
        "batch_size": np.full(len(configs), BATCH_SIZE, dtype=np.int64),
        "n_train": np.array([splits[i].x_train.shape[0] for i in runs], dtype=np.int64),
        "n_val": np.array([splits[i].x_val.shape[0] for i in runs], dtype=np.int64),
    }


def best_epochs(val_loss: np.ndarray) -> np.ndarray:
    """0-based column of each run's lowest validation loss (a diverged run's precedes its NaNs)."""
    return np.asarray(np.argmin(np.where(np.isfinite(val_loss), val_loss, np.inf), axis=1))


def summarize(corpus: dict[str, np.ndarray]) -> str:
    """The statistics quoted in data/README.md, computed from the arrays."""
    epochs = int(corpus["epochs"])
    val = corpus["val_loss"]
    best = best_epochs(val)
    # "Overfits": the minimum lies before the last 20% of the epochs, so the curve then rose or
    # at least never came back below it (the README's definition).
    overfit = best < int(0.8 * epochs)
    # A stricter reading: the last recorded value is at least 5% above the minimum.
    last = np.array([row[np.isfinite(row)][-1] for row in val])
    rose = last >= 1.05 * np.nanmin(val, axis=1)
    lines = [f"runs {len(best)}, epochs {epochs}, diverged {int(corpus['diverged'].sum())}",
             f"{'':14s} {'runs':>4s} {'overfit':>7s} {'rose 5%':>7s} {'median best epoch':>17s}"]
    keys = [(d, corpus["dataset"] == d) for d in DATASETS] + [
        (o, corpus["optimizer"] == o) for o in LEARNING_RATES] + [
        ("all", np.ones(len(best), dtype=bool))]
    for name, sel in keys:
        if sel.any():
            lines.append(f"{name:14s} {int(sel.sum()):4d} {overfit[sel].mean():7.0%} "
                         f"{rose[sel].mean():7.0%} {np.median(best[sel] + 1):17.1f}")
    lines.append("(overfit: best val_loss before the last 20% of epochs; rose 5%: last val_loss"
                 " >= 1.05 x best; best epoch 1-based)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the learning-curve corpus.")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 8 runs x {QUICK_EPOCHS} epochs (needs --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output .npz (default: {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        # A smoke run must never overwrite the real corpus by accident.
        parser.error("--quick needs --out (it would otherwise replace data/curves.npz)")
    out: Path = args.out or DEFAULT_OUT
    # One thread: these nets are far too small to gain from intra-op parallelism, and one thread
    # keeps the numbers repeatable run to run on a given machine.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    corpus = record(
        grid(args.quick), QUICK_EPOCHS if args.quick else EPOCHS,
        (lambda _: None) if args.quiet else (lambda s: print(s, file=sys.stderr)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # numpy's stub types **kwds as if it could collide with allow_pickle: bool.
    np.savez_compressed(out, **corpus)  # type: ignore[arg-type]
    print(summarize(corpus))
    print(f"wrote {out} ({out.stat().st_size} bytes) in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
