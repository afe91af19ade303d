"""A checkpoint writer and a polling reader, as separate processes, for the multi-process tests of
``trainctl.storage`` (the writer lock and read-only stores)::

    python tests/_storage_rw_worker.py writer DIR --saves N [--prefix P] [--keep K]
                                       [--go] [--hold]
    python tests/_storage_rw_worker.py reader DIR --stop-file FILE

``writer`` opens a writable store and makes N saves. Op ``i`` saves ``<P>-<i>.bin`` (deleting
all but the newest K of those when ``--keep`` is given) or, with ``--keep``, every odd op
overwrites ``<P>-last.bin`` instead. Each payload names its op and file and ends with a SHA-256 of
the rest, so a reader can tell a complete file from a torn or foreign one. With ``--go`` it reads
one line from stdin before ``recover()`` (so two writers can be released together); it prints
``locked`` once ``recover()`` returned; with ``--hold`` it then reads one more line before saving.
It ends with one JSON line: the names whose save returned, the errors, the warnings. If another
process holds the lock it prints ``{"locked_out": message, "pid": ..., "hostname": ...}`` and
exits 3.

``reader`` opens a read-only store and polls it until FILE exists (alternating ``refresh()`` on
one long-lived store and ``recover()`` on a fresh one), checking every view, then prints one JSON
line: how many polls, the distinct newest ops it saw, the violations it found and its final view.
It prints ``ready`` after its first poll.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainctl.storage import (
    CheckpointStore,
    CheckpointStoreLockedError,
)


def payload(op: int, name: str) -> bytes:
    header = f"trainctl-rw-test op={op} name={name}\n".encode()
    body = header + hashlib.sha256(header).digest() * (20 + op % 13)
    return body + hashlib.sha256(body).hexdigest().encode()


def parse_payload(data: bytes) -> tuple[int, str]:
    """(op, name) of a payload; ValueError if it is torn or corrupt."""
    body, digest = data[:-64], data[-64:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise ValueError("payload checksum mismatch (torn or corrupt file)")
    fields = dict(item.split("=", 1) for item in body.split(b"\n", 1)[0].decode().split()[1:])
    return int(fields["op"]), fields["name"]


def run_writer(args: argparse.Namespace) -> int:
    if args.go:
        sys.stdin.readline()
    store = CheckpointStore(args.directory)
    try:
        store.recover()
    except CheckpointStoreLockedError as exc:
        print(json.dumps({"locked_out": str(exc), "pid": exc.pid, "hostname": exc.hostname}))
        return 3
    print("locked", flush=True)
    if args.hold:
        sys.stdin.readline()
    saved: list[str] = []
    errors: list[str] = []
    kept: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op in range(args.saves):
            if args.keep and op % 2 == 1:
                name, delete = f"{args.prefix}-last.bin", []
            else:
                name = f"{args.prefix}-{op:04d}.bin"
                kept.append(name)
                delete = kept[: -args.keep] if args.keep else []
                kept = kept[-args.keep :] if args.keep else kept
            data = payload(op, name)
            try:
                store.save(
                    name,
                    lambda path, data=data: path.write_bytes(data),
                    metrics={"op": op},
                    state={"op": op, "name": name},
                    delete=delete,
                )
            except Exception as exc:  # every failure is reported; the test expects none
                errors.append(f"op {op}: {type(exc).__name__}: {exc}")
            else:
                saved.append(name)
    store.close()
    messages = [str(w.message) for w in caught]
    print(json.dumps({"saved": saved, "errors": errors, "warnings": messages}))
    return 0


class Reader:
    """Checks each view of the directory a read-only store gives."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.violations: list[str] = []
        self.newest_ops: list[int] = []
        self.polls = 0
        self.vanished = 0  # listed files deleted by the writer before this reader opened them

    def check(self, store: CheckpointStore) -> None:
        self.polls += 1
        entries = store.entries
        ops = []
        for entry in entries:
            state = store.load_state(entry.name)
            op = int(entry.metrics["op"])
            if state != {"op": op, "name": entry.name}:
                self.violations.append(f"{entry.name}: state {state} does not match op {op}")
            ops.append(op)
            try:
                data = store.path(entry.name).read_bytes()
            except FileNotFoundError:
                self.vanished += 1  # deleted since the view was taken (a later save's delete)
                continue
            try:
                file_op, file_name = parse_payload(data)
            except ValueError as exc:
                self.violations.append(f"{entry.name}: {exc}")
                continue
            if file_name != entry.name:
                self.violations.append(f"{entry.name} holds the payload of {file_name}")
            elif entry.name.endswith("-last.bin"):
                if file_op < op:  # overwritten since: newer, never older
                    self.violations.append(f"{entry.name}: file op {file_op} older than {op}")
            elif file_op != op or len(data) != entry.size:
                self.violations.append(f"{entry.name}: file op {file_op}/{len(data)} bytes, "
                                       f"entry op {op}/{entry.size} bytes")
            elif f"crc32:{zlib.crc32(data):08x}" != entry.checksum:
                self.violations.append(f"{entry.name}: checksum differs from {entry.checksum}")
        if ops != sorted(ops):
            self.violations.append(f"entries out of save order: {ops}")
        if sum(not e.name.endswith("-last.bin") for e in entries) > 3:
            self.violations.append(f"more than 3 kept: {[e.name for e in entries]}")
        newest = max(ops, default=-1)
        if self.newest_ops and newest < self.newest_ops[-1]:
            self.violations.append(f"the view went back from op {self.newest_ops[-1]} to {newest}")
        if not self.newest_ops or newest != self.newest_ops[-1]:
            self.newest_ops.append(newest)


def run_reader(args: argparse.Namespace) -> int:
    reader = Reader(args.directory)
    warnings.simplefilter("error")  # a warning would mean the reader misread the directory
    store = CheckpointStore(args.directory, read_only=True)

    def poll(fresh: bool) -> None:
        nonlocal store
        try:
            if fresh:
                store = CheckpointStore(args.directory, read_only=True)
                store.recover()
            else:
                store.refresh()
            reader.check(store)
        except Exception as exc:
            reader.violations.append(f"poll {reader.polls}: {type(exc).__name__}: {exc}")

    poll(True)
    print("ready", flush=True)
    while not args.stop_file.exists():
        poll(reader.polls % 2 == 0)
    poll(False)  # the writer has finished: the final state
    print(json.dumps({
        "polls": reader.polls,
        "newest_ops": reader.newest_ops,
        "violations": reader.violations[:20],
        "vanished": reader.vanished,
        "final": [e.name for e in store.entries],
    }))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("writer", "reader"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--prefix", default="w")
    parser.add_argument("--keep", type=int, default=0)
    parser.add_argument("--go", action="store_true")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--stop-file", type=Path)
    args = parser.parse_args(argv)
    return run_writer(args) if args.role == "writer" else run_reader(args)


if __name__ == "__main__":
    sys.exit(main())
