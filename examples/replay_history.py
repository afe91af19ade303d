"""Replay a recorded metric history through a policy, with no GPU and no framework.

The way to choose patience / factor / min_delta before spending a training run: record the
metrics of an earlier run (a list of dicts, e.g. from Keras' History or a CSV log), then ask what a
given configuration would have decided at every epoch.

Run: python examples/replay_history.py
"""

from __future__ import annotations

import trainctl

# val_loss of an earlier run: fast progress, a plateau, then overfitting.
HISTORY = [
    {"epoch": e, "val_loss": v}
    for e, v in enumerate(
        [0.92, 0.71, 0.60, 0.55, 0.531, 0.528, 0.529, 0.527, 0.5272, 0.526, 0.5265,
         0.5268, 0.527, 0.531, 0.535, 0.54, 0.548, 0.556]
    )
]


def replay(patience: int, factor: float) -> list[trainctl.Decision]:
    ctl = trainctl.Controller(
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=patience, factor=factor,
                                   min_delta=1e-3),
        trainctl.EarlyStopping(monitor="val_loss", patience=2 * patience, min_delta=1e-3,
                               restore_best_weights=True),
        lr=1e-3,
    )
    return trainctl.simulate(ctl, HISTORY)


def main() -> None:
    for patience in (1, 2, 4):
        decisions = replay(patience, factor=0.5)
        last = decisions[-1]
        reductions = sum(d.details[0].reduced for d in decisions)
        outcome = f"stops after epoch {last.epoch}" if last.stop else "runs to the end"
        print(f"patience={patience}: {outcome}, {reductions} LR reductions, final lr {last.lr:.2e}")
        for d in decisions:
            for r in d.reasons:
                if r.event in ("reduced_lr", "patience_exhausted"):
                    print(f"    epoch {d.epoch:2d}  {r}")


if __name__ == "__main__":
    main()
