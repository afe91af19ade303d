"""The bundled corpus of real learning curves (``data/curves.npz``, see ``data/README.md``).

192 runs of small MLPs on scikit-learn's datasets, 150 epochs each, recorded without any early
stopping: what a stopping policy would have seen, noise included. Each round carries ``loss``
(the epoch's mean training loss), ``val_loss`` and the validation metric under its own name:
``val_accuracy`` for the classification runs, ``val_r2`` for the regression ones. A run marked
``diverged`` ends at its first non-finite round (a log ends when its job dies); none of the 192
is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._run import Run, RunArrays

__all__ = ["corpus_arrays", "default_corpus_path", "load_corpus"]


def default_corpus_path() -> Path:
    """``data/curves.npz`` next to the ``trainctl`` package (a source checkout)."""
    import trainctl

    return Path(trainctl.__file__).resolve().parents[1] / "data" / "curves.npz"


def _load(path: str | os.PathLike[str] | None) -> tuple[Path, dict[str, Any]]:
    p = Path(path) if path is not None else default_corpus_path()
    if not p.is_file():
        raise FileNotFoundError(
            f"{str(p)!r}: no learning-curve corpus there (it ships in a source checkout as "
            "data/curves.npz; pass its path)"
        )
    with np.load(p, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if int(arrays.get("version", 0)) != 1:
        raise ValueError(f"{str(p)!r}: corpus layout version {arrays.get('version')!r} is not 1")
    return p, arrays


def _lengths(arrays: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Rounds per run: all of them, or up to the first non-finite one of a diverged run."""
    t = arrays["val_loss"].shape[1]
    bad = ~(np.isfinite(arrays["val_loss"]) & np.isfinite(arrays["train_loss"])
            & np.isfinite(arrays["val_metric"]))
    first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), t)
    out: np.ndarray[Any, Any] = np.where(arrays["diverged"], first_bad, t).astype(np.int64)
    return out


def _describe(p: Path, arrays: dict[str, Any], i: int) -> str:
    return (
        f"{p.name}#{i} ({arrays['dataset'][i]}, {arrays['optimizer'][i]} "
        f"lr={float(arrays['lr'][i]):g}, width {int(arrays['width'][i])}, weight decay "
        f"{float(arrays['weight_decay'][i]):g}, seed {int(arrays['seed'][i])})"
    )


def load_corpus(path: str | os.PathLike[str] | None = None) -> list[Run]:
    """The corpus as :class:`Run` s (default: the repository's ``data/curves.npz``).

    >>> runs = load_corpus()
    >>> len(runs), len(runs[0]), sorted(runs[0].rounds[0])
    (192, 150, ['loss', 'val_accuracy', 'val_loss'])
    """
    p, arrays = _load(path)
    lengths = _lengths(arrays)
    out = []
    for i in range(len(lengths)):
        metric = f"val_{arrays['metric_name'][i]}"
        n = int(lengths[i])
        train = arrays["train_loss"][i, :n].astype(np.float64).tolist()
        val = arrays["val_loss"][i, :n].astype(np.float64).tolist()
        score = arrays["val_metric"][i, :n].astype(np.float64).tolist()
        rounds = [{"loss": a, "val_loss": b, metric: c}
                  for a, b, c in zip(train, val, score, strict=True)]
        out.append(Run(source=_describe(p, arrays, i), rounds=rounds, epochs=range(n),
                       steps=[None] * n))
    return out


def corpus_arrays(path: str | os.PathLike[str] | None = None) -> RunArrays:
    """The corpus as :class:`RunArrays` (the same values as :func:`load_corpus`; faster to
    sweep): ``loss``, ``val_loss``, and ``val_accuracy`` / ``val_r2`` present on the runs that
    log them."""
    p, arrays = _load(path)
    lengths = _lengths(arrays)
    metric_name = arrays["metric_name"]
    score = arrays["val_metric"].astype(np.float64)
    is_acc = (metric_name == "accuracy")[:, None] & np.ones_like(score, dtype=bool)
    is_r2 = (metric_name == "r2")[:, None] & np.ones_like(score, dtype=bool)
    return RunArrays(
        metrics={
            "loss": arrays["train_loss"].astype(np.float64),
            "val_loss": arrays["val_loss"].astype(np.float64),
            "val_accuracy": score,
            "val_r2": score,
        },
        present={"val_accuracy": is_acc, "val_r2": is_r2},
        lengths=lengths,
        sources=[_describe(p, arrays, i) for i in range(len(lengths))],
    )
