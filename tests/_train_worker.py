"""A training run under a Controller whose checkpoints go through CheckpointStore.

Used by tests/test_resume_kill.py: ``python _train_worker.py DIR [--kill-round R --kill-at P]``
trains (deterministic metrics, no framework), saves what the CheckpointPolicy decides, and, on
start, resumes from the newest checkpoint in the manifest, as a user's script would. With
``--kill-round`` it SIGKILLs itself at round R at point P. It prints the final outcome as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import trainctl

ROUNDS = 30
POINTS = ("after_step", "after_save", "after_last", "after_delete")


def metrics(epoch: int) -> dict[str, float]:
    # descent, a plateau with exact ties, then overfitting
    base = 1.0 / (1.0 + 0.3 * epoch) + (0.004 * (epoch - 18) ** 2 if epoch > 18 else 0.0)
    wobble = round(0.03 * math.sin(1.7 * epoch), 3)
    return {"val_loss": round(base + wobble, 4), "loss": round(base, 4)}


def build() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau(monitor="val_loss", patience=2, factor=0.5),
        trainctl.EarlyStopping(monitor="val_loss", patience=8),
        trainctl.CheckpointPolicy(
            monitor="val_loss", filename="epoch{epoch:03d}-{val_loss:.4f}", save_top_k=2,
            keep_last_n=1, save_last=True, extension=".ckpt",
        ),
        lr=0.1,
    )


def kill(at: str, want: str | None) -> None:
    if at == want:
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--kill-round", type=int, default=-1)
    parser.add_argument("--kill-at", choices=POINTS, default=None)
    args = parser.parse_args()
    store = trainctl.CheckpointStore(args.directory)
    store.recover()
    ctl = build()
    latest = store.latest()
    if latest is not None:
        ctl.load_state_dict(store.load_state(latest.name))
        if latest.name != "last.ckpt":  # the rolling "last" is overwritten by design
            store.protect(latest.name)
    log_path = Path(args.directory).parent / "decisions.jsonl"
    with log_path.open("a") as log:
        while not ctl.stopped and ctl.rounds < ROUNDS:
            epoch = ctl.rounds
            m = metrics(epoch)
            d = ctl.step(m)
            # log the decision when it is made: a kill after its checkpoint is durable must not
            # lose it (the resumed run starts after that checkpoint and does not redo the round)
            entry: list[Any] = [epoch, d.stop, d.lr, [r.event for r in d.reasons],
                                None if d.save is None else d.save.name, list(d.delete)]
            log.write(json.dumps(entry) + "\n")
            log.flush()
            want = args.kill_at if epoch == args.kill_round else None
            kill("after_step", want)
            state = ctl.state_dict()

            def write(path: Path, epoch: int = epoch) -> None:
                path.write_text(json.dumps({"epoch": epoch, "weights": [epoch * 0.5]}))

            # the deletes go with the round's FIRST durable write: the state saved with it already
            # assumes they are gone, so a crash before a second write must not leave them behind
            pending = tuple(n for n in d.delete if n in store)
            if d.save is not None:
                store.save(d.save.name, write, metrics=m, state=state, delete=pending)
                pending = ()
                kill("after_save", want)
            if d.last is not None:
                store.save(d.last.name, write, metrics=m, state=state, delete=pending)
                pending = ()
                kill("after_last", want)
            if pending:
                store.delete(pending)
            kill("after_delete", want)
    kept = [k.name for k in ctl.states[2].kept]
    files = sorted(p.name for p in Path(args.directory).iterdir())
    print(json.dumps({"kept": kept, "files": files, "state": ctl.state_dict(),
                      "protected": sorted(store.protected)}))


if __name__ == "__main__":
    main()
