"""Runs examples/torch_loop.py's train() in a subprocess that can be SIGKILLed at a chosen point.

    python _torch_loop_worker.py DIR SUMMARY [--kill-step N] [--kill-save K] [--log]

``--kill-step N`` kills the process right after optimizer step N; ``--kill-save K`` kills it in
the middle of writing the K-th checkpoint file (half of the bytes written). Without either, it
trains (resuming from DIR if it holds a checkpoint) and writes a JSON summary to SUMMARY.
``--log`` also writes the example's decision log (``DIR/decisions.jsonl``); off by default, so
that DIR holds only the checkpoints and the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import torch
import torch_loop


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("summary")
    parser.add_argument("--kill-step", type=int, default=None)
    parser.add_argument("--kill-save", type=int, default=None)
    parser.add_argument("--log", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.kill_save is not None:
        real_save = torch.save
        calls = [0]

        def dying_save(obj: Any, f: Any, *a: Any, **kw: Any) -> None:
            calls[0] += 1
            if calls[0] == args.kill_save:
                import io

                buffer = io.BytesIO()
                real_save(obj, buffer)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                _die()
            real_save(obj, f, *a, **kw)

        torch.save = dying_save  # type: ignore[assignment]

    def after_step(step: int) -> None:
        if step == args.kill_step:
            _die()

    summary = torch_loop.train(args.directory, resume=True, out=lambda _: None,
                               after_step=after_step, log=args.log)
    Path(args.summary).write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
