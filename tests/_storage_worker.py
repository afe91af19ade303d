"""A training run in miniature, for the SIGKILL tests of ``trainctl.storage``.

It performs a fixed sequence of checkpoint saves and can kill itself at an exact file operation::

    python tests/_storage_worker.py DIR [--steps N] [--keep K] [--kill-at I --phase before|after]
                                        [--chunk-delay SECONDS] [--log FILE] [--count]

Step ``i`` makes two saves (two "ops"): ``ckpt-<i>.bin`` with keep-last-K deletions, then
``last.bin`` (overwritten every step, like Lightning's ``save_last``). Op ``j`` has a payload that
encodes ``j``, its step and its name, followed by a SHA-256 of everything before it, so a reader
can tell a complete payload from a torn one. The retention rule is pure, like trainctl's policies:
its state (the kept names) is saved with each checkpoint, and a resumed run continues from the
state of the newest kept checkpoint. After each save returns, the op number is appended to the
log file (so the test knows which saves completed). "recovered" is printed to stderr once the
store is open, so a test can time a random kill from the start of the run.

``--kill-at I`` sends SIGKILL to this process right before (``--phase before``) or right after
(``--phase after``) the I-th file operation, counting the store's ``os.open``/``write``/``fsync``/
``close``/``replace``/``unlink`` calls and every payload chunk, from the start of the run.
``--count`` prints the number of such operations in the whole run (as JSON) and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainctl.storage as storage

Hook = Callable[[str, str, str], None]  # (op, target, phase) with phase "before" or "after"

CHUNK = 4096


class InterposedOS:
    """Stands in for the ``os`` module inside ``trainctl.storage``.

    It calls ``hook(op, target, phase)`` before and after each file operation the store performs
    (``target`` is the file's base name, or ``fd:<name>`` for calls on a descriptor) and passes
    everything else through to the real ``os``.
    """

    def __init__(self, hook: Hook) -> None:
        self._hook = hook
        self._fd_names: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _around(self, op: str, target: str, call: Callable[[], Any]) -> Any:
        self._hook(op, target, "before")
        result = call()
        self._hook(op, target, "after")
        return result

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        name = os.path.basename(os.fspath(path))

        def call() -> int:
            fd = os.open(path, flags, mode)
            self._fd_names[fd] = name
            return fd

        result: int = self._around("open", name, call)
        return result

    def write(self, fd: int, data: Any) -> int:
        result: int = self._around("write", self._fd(fd), lambda: os.write(fd, data))
        return result

    def fsync(self, fd: int) -> None:
        self._around("fsync", self._fd(fd), lambda: os.fsync(fd))

    def close(self, fd: int) -> None:
        self._around("close", self._fd(fd), lambda: os.close(fd))

    def replace(self, src: Any, dst: Any) -> None:
        target = f"{os.path.basename(os.fspath(src))}->{os.path.basename(os.fspath(dst))}"
        self._around("replace", target, lambda: os.replace(src, dst))

    def unlink(self, path: Any) -> None:
        self._around("unlink", os.path.basename(os.fspath(path)), lambda: os.unlink(path))

    def _fd(self, fd: int) -> str:
        return f"fd:{self._fd_names.get(fd, '?')}"


def payload(op: int, step: int, name: str) -> bytes:
    """The bytes of op ``op``: a header, deterministic filler of varying size, a SHA-256."""
    header = f"trainctl-kill-test op={op} step={step} name={name}\n".encode()
    filler = hashlib.sha256(header).digest() * (200 + 97 * (op % 7))
    body = header + filler
    return body + hashlib.sha256(body).hexdigest().encode()


def parse_payload(data: bytes) -> dict[str, Any]:
    """Decode a payload; raise ValueError if it is torn or corrupt."""
    body, digest = data[:-64], data[-64:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise ValueError("payload checksum mismatch (torn or corrupt file)")
    fields = dict(item.split("=", 1) for item in body.split(b"\n", 1)[0].decode().split()[1:])
    return {"op": int(fields["op"]), "step": int(fields["step"]), "name": fields["name"]}


def plan(steps: int) -> list[tuple[int, str]]:
    """The op sequence: (step, name) for op j."""
    ops = []
    for step in range(steps):
        ops.append((step, f"ckpt-{step:03d}.bin"))
        ops.append((step, "last.bin"))
    return ops


def run(
    directory: Path,
    *,
    steps: int,
    keep: int,
    hook: Hook | None = None,
    chunk_delay: float = 0.0,
    log: Path | None = None,
    announce: bool = False,
) -> None:
    """Recover the store in ``directory`` and carry the run to its end."""
    noop: Hook = lambda op, target, phase: None  # noqa: E731
    call_hook = hook or noop
    if hook is not None:
        setattr(storage, "os", InterposedOS(hook))  # noqa: B010 (stand in for os, see above)
    store = storage.CheckpointStore(directory)
    store.recover()
    if announce:
        print("recovered", file=sys.stderr, flush=True)
    newest = store.latest()
    state: dict[str, Any] = store.load_state(newest.name) if newest else {"next_op": 0, "kept": []}
    for op, (step, name) in enumerate(plan(steps)):
        if op < state["next_op"]:
            continue
        kept = list(state["kept"])
        delete: list[str] = []
        if name.startswith("ckpt-"):
            kept.append(name)
            delete, kept = kept[:-keep], kept[-keep:]
        data = payload(op, step, name)

        def write(path: Path, data: bytes = data, name: str = name) -> None:
            with open(path, "wb") as f:
                for start in range(0, len(data), CHUNK):
                    call_hook("payload", name, "before")
                    f.write(data[start : start + CHUNK])
                    f.flush()  # so a kill mid-write leaves a torn temporary file behind
                    call_hook("payload", name, "after")
                    if chunk_delay:
                        time.sleep(chunk_delay)

        state = {"next_op": op + 1, "kept": kept}
        store.save(name, write, metrics={"op": float(op)}, state=state, delete=delete)
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{op}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--phase", choices=("before", "after"), default="before")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--count", action="store_true")
    args = parser.parse_args(argv)

    counter = 0

    def hook(op: str, target: str, phase: str) -> None:
        nonlocal counter
        if phase == "before" and args.kill_at == counter and args.phase == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if phase == "after":
            if args.kill_at == counter and args.phase == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            counter += 1

    use_hook = args.count or args.kill_at is not None
    run(
        args.directory,
        steps=args.steps,
        keep=args.keep,
        hook=hook if use_hook else None,
        chunk_delay=args.chunk_delay,
        log=args.log,
        announce=True,
    )
    if args.count:
        print(json.dumps({"operations": counter}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
