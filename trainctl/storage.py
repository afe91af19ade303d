"""Crash-safe checkpoint files: atomic saves, a journaled manifest, and deletes that come last.

trainctl's policies only *name* file effects ("save as epoch013-0.2811.ckpt, delete
epoch007-0.3012.ckpt"). :class:`CheckpointStore` carries them out so that a crash at any instant
(process killed, power lost, disk full) leaves the last good checkpoint loadable and the manifest
truthful. It imports only the standard library; framework adapters hand it a function that writes
the payload (``torch.save``, Keras' ``model.save``, Lightning's ``trainer.save_checkpoint``)::

    with CheckpointStore("checkpoints") as store:  # close() releases the writer lock
        report = store.recover()             # once, on start: lock, load and reconcile
        store.save("epoch013.ckpt", lambda path: torch.save(model.state_dict(), path),
                   metrics={"val_loss": 0.2811}, state=controller.state_dict(),
                   delete=["epoch007.ckpt"])
        store.latest().name                  # 'epoch013.ckpt'
        store.load_state("epoch013.ckpt")    # the controller state saved with it

    reader = CheckpointStore("checkpoints", read_only=True)  # any other process, at any time
    reader.recover()                         # reads only: no lock, no repair, no writes
    reader.refresh()                         # later: see the writer's newer saves

Theory of operation
===================
The directory holds checkpoint files, one manifest (``trainctl-manifest.json``), the writer's lock
file (``.trainctl-lock``) and, only while a save is in flight, temporary files named
``.trainctl-tmp-<12 hex digits>-<final name>``. The manifest is the single source of truth.
Besides the kept checkpoints (save order, each with a sequence number, its size in bytes, a
checksum of its bytes, its metrics and the caller's state) it holds a tiny journal of the one
operation in flight: ``pending`` (a save whose file is complete but may not have reached its final
name yet, with the deletions it asked for) and ``trash`` (names already dropped from the list
whose files may still exist). Every manifest write is atomic (steps W1-W4 below), so at every
instant the manifest on disk is either the previous one or the next one, never a mix.

``recover()``, the writer's first call, takes the lock before it reads or repairs anything:

0. Open (creating it if needed) ``.trainctl-lock`` and take an exclusive ``flock`` on it without
   waiting; then write this process's pid and host name into it. If another process holds it,
   raise :class:`CheckpointStoreLockedError` naming the directory and that holder, having changed
   nothing. *Crash:* the operating system releases the lock with the process; the file stays.
   The file is never deleted: unlinking a lock file races with a process that has just opened it
   (both would then "hold" a lock, on different files).

``save(name, write, metrics=..., state=..., delete=...)`` does, in this order:

1. Check everything that needs no I/O (name, metrics, state, ``delete``; the target is not a
   directory). *Crash here:* nothing has changed.
2. ``write(temp)`` with ``temp = .trainctl-tmp-<token>-<name>`` in the same directory (the final
   name is the suffix, so Keras' ``.keras`` / ``.weights.h5`` checks pass). *Crash:* a stray
   temporary file, which no manifest mentions; ``recover()`` removes it. If ``write`` raises, the
   temporary file is removed at once and the manifest is untouched.
3. Open the temporary file, read it once computing its checksum, ``fsync`` it and record its
   size: the payload is now durable. *Crash:* as in 2.
4. Write the manifest with ``pending = {temp, new entry, deletions}`` (the intent). *Crash before
   W3:* old manifest, stray temp file, as in 2. *Crash after:* ``recover()`` sees the intent, finds
   ``temp`` still present, so the rename has not happened: it discards the intent (durably) and
   only then removes ``temp``. The previous file of the same name, if any, was never touched.
5. ``os.replace(temp, final)``, then ``fsync`` the directory. The rename is atomic: ``final`` is
   either the old complete file or the new complete file. *Crash after the rename:* ``recover()``
   sees the intent, finds ``temp`` gone and ``final`` present with the recorded size, and rolls the
   save forward: it is step 6 done late. This is why a completely renamed file is never an
   unrecorded "unknown file", and why an overwrite never leaves the old metrics beside new bytes.
   (The temporary file disappears only through this rename, or after the intent is durably
   discarded, which is what makes "temp gone" mean "renamed".)
6. Commit: write the manifest with the new entry appended (an overwritten name moves to the end
   with a new sequence number), the entries named in ``delete`` removed from the list and moved to
   ``trash``, and ``pending`` cleared. From here on the save has happened. *Crash:* either the
   intent (step 5's recovery) or the commit is on disk; both lead to the same state.
7. Delete: ``unlink`` every file in ``trash`` (only now, after the new file and the manifest that
   records it are durable), ``fsync`` the directory, write the manifest with ``trash`` empty.
   *Crash:* ``recover()`` unlinks whatever is left in ``trash`` (a missing file is fine) and clears
   it. The manifest never lists a file that has been deleted.

Atomic manifest write: W1 write the JSON to ``.trainctl-tmp-<token>-<manifest name>``, W2 flush
and ``fsync`` it, W3 ``os.replace`` it onto the manifest, W4 ``fsync`` the directory. A crash
before W3 leaves the old manifest and a stray temporary file; after W3, the new manifest.

``recover()`` (call it once before anything else; the constructor does no I/O) takes the lock
(step 0), reads the manifest, settles the journal (roll the pending save forward or back as above,
finish the trash), removes stray temporary files, drops listed entries whose file is missing, not
a regular file, or of the wrong size (each with a :class:`CheckpointStoreWarning` naming the file;
the file, if any, is left on disk), with ``verify=True`` also those whose checksum no longer
matches, writes the manifest if anything changed, and returns a :class:`RecoveryReport`. It deletes
only what the store itself creates: regular files whose name is exactly a temporary name
(``.trainctl-tmp-`` + 12 hex digits + ``-`` + a valid name). Anything else, a directory or a link
with that prefix included, is left alone and reported as an unknown file; recovery never removes
a directory.

Readers (``read_only=True``) never change the directory: no lock, no directory creation, no
temporary-file removal, no manifest write. Each ``recover()`` / ``refresh()`` R1 reads the
manifest, R2 checks the listed files and only then interprets a pending save in memory (``temp``
gone and ``final`` a regular file of the recorded size: counted as committed, as step 5's
recovery would; otherwise as not there), R3 reads the manifest again. If R3 differs from R1 the
writer moved on meanwhile and the reader starts over (a bounded number of times). R1 = R3 makes
the view consistent because the writer changes a file that a manifest refers to only after
writing a manifest that announces the change (the intent before the rename, the commit before the
deletes), except for the announced rename itself: a listed file that R2 saw already replaced by
it belongs to an entry which that rename, seen done a moment later, replaces in the view too.

Design choices
==============
* **One writer per directory, enforced.** Only one process (rank 0 in a distributed job) may write
  a given directory: ``recover()`` takes an advisory ``flock`` on ``.trainctl-lock`` (step 0) and
  holds it until :meth:`CheckpointStore.close` (also on leaving a ``with`` block, and when the
  store is garbage collected). A second writer gets :class:`CheckpointStoreLockedError` from its
  ``recover()`` before it touches anything (two unlocked writers would remove each other's
  temporary files and overwrite each other's manifests, silently losing saves). Store objects of
  one process share that process's lock on a directory (as when a resumed run re-opens it), so
  the lock keeps other processes out, not other objects; a ``CheckpointStore`` object is not
  thread-safe. A child made by ``fork`` does not inherit the right to write: its copy of the
  store refuses to save, and its own ``recover()`` gets :class:`CheckpointStoreLockedError` while
  the parent holds the lock. Do not delete the lock file while a writer runs (a new one would
  be a second, unheld lock). On Windows there is no ``flock`` and no locking; on a file system
  without lock support the store warns and works unlocked.
* **Readers** (``CheckpointStore(directory, read_only=True)``) may read at any time, beside a
  running writer, in a read-only directory or on a full disk: they only read (see above). A
  read-only store refuses ``save`` and ``delete`` with :class:`CheckpointStoreError`;
  ``protect``/``unprotect`` only change its memory. :meth:`CheckpointStore.refresh` re-reads the
  manifest for a long-lived reader.
* **Checksums.** Every entry records ``crc32:<8 hex digits>``, the CRC-32 (``zlib.crc32``) of its
  bytes, computed while step 3 reads the payload once before fsyncing it. CRC-32 is there to
  detect accidents (bit rot, a file rewritten in place, a tool that truncates and pads), not
  tampering, and it is the fastest checksum in the standard library (about four times faster than
  BLAKE2b), which matters for multi-gigabyte checkpoints saved every epoch. Sizes are checked by
  every ``recover()``; checksums only by :meth:`CheckpointStore.verify` and
  ``recover(verify=True)``, since that reads every file. Manifests of version 1 (no checksums)
  are still read; their entries have ``checksum=None`` and are checked by size only.
* **Unknown files** (files in the directory that the manifest does not list, e.g. the user's own
  files or checkpoints of an older run) are left alone and listed in
  :attr:`RecoveryReport.unknown_files`. They are never adopted and never deleted, even when named
  in ``delete`` (that name is skipped with a warning). A checkpoint that finished its rename but
  not its commit is not an unknown file: the journal names it and ``recover()`` adopts it.
* **Corrupt manifest** (not UTF-8, not JSON, wrong format or version, inconsistent, or a directory
  in its place): ``recover()`` raises :class:`CorruptManifestError` naming the file, because the
  manifest holds the controller states needed to resume and throwing them away silently is worse
  than stopping. ``recover(discard_corrupt_manifest=True)`` instead moves it aside to
  ``<manifest>.corrupt-<n>``, warns, and starts from an empty manifest (the checkpoint files
  become unknown files, untouched).
* **Protected names** (:meth:`CheckpointStore.protect`, e.g. the checkpoint training resumed
  from): a protected name in ``delete`` is dropped from the delete list with a warning, so its
  file stays on disk *and* in the manifest. Saving over a protected name is refused with
  ``ValueError`` before any I/O (``unprotect`` it first). Protection lives in memory only; the
  resuming process sets it again after ``recover()``.
* **Errors.** Operating-system errors never escape raw: they become a
  :class:`CheckpointStoreError` (the original exception is its ``__cause__``, its ``errno`` is
  :attr:`CheckpointStoreError.errno`) whose message and attributes name the file (``path``) and
  the step that failed (``stage``) and say what to do. Anything that fails during a save is raised
  as :class:`CheckpointSaveError`, which also says whether the checkpoint is recorded
  (``committed``: ``True`` recorded, ``False`` not recorded, ``None`` unknown until the store next
  settles its journal). Before raising, the store settles the journal as ``recover()`` would, so
  the last good checkpoint stays listed and loadable and no temporary file remains; if even that
  fails (the disk is still full), the store retries on its next use. A file that cannot be deleted
  is reported with a warning and left on disk as an unknown file; the save still succeeds.
* **Payloads are single regular files.** Writers that produce a directory are refused.
* Durability relies on ``fsync`` (on macOS that reaches the drive's cache, not the platter; on
  Windows directories cannot be fsynced and that step is skipped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as _errno
import itertools
import json
import math
import numbers
import os

# The writer lock's own file operations go through this name, not `os`: tests replace
# `storage.os` to count and fail the journal's operations, and a lock released by the garbage
# collector must never show up among those (or be failed by them).
import os as _lock_os
import re
import secrets
import shutil
import socket
import stat
import sys
import threading
import time
import types
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._names import (
    DEFAULT_MANIFEST_NAME,
    LOCK_NAME,
    TEMP_PREFIX,
    TEMP_TOKEN_HEX,
    check_checkpoint_name,
    name_problem,
)
from ._state import NONFINITE, encode_float

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DEFAULT_MANIFEST_NAME",
    "LOCK_NAME",
    "TEMP_PREFIX",
    "CheckpointCorruptError",
    "CheckpointEntry",
    "CheckpointSaveError",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointStoreLockedError",
    "CheckpointStoreWarning",
    "CorruptManifestError",
    "RecoveryReport",
    "atomic_write",
    "fsync_dir",
]


_FORMAT: Final = "trainctl-checkpoint-manifest"
_VERSION: Final = 2  # 2 added "checksum" to every entry
_READABLE_VERSIONS: Final = (1, 2)
_FLOAT_TAG: Final = "__trainctl_float__"  # how a non-finite float is spelled inside `state`
#: Deeper states are refused before any I/O: JSON encoding and decoding recurse once per level,
#: and a manifest must stay readable by a process whose stack is already in use.
_MAX_STATE_DEPTH: Final = 100
_CHECKSUM_RE: Final = re.compile(r"crc32:[0-9a-f]{8}")
_CHUNK: Final = 1 << 20  # bytes read at a time while checksumming
_TEMP_RE: Final = re.compile(
    re.escape(TEMP_PREFIX) + f"[0-9a-f]{{{TEMP_TOKEN_HEX}}}-(.+)", re.DOTALL
)
#: How often a reader re-reads a manifest that changed while it was checking the files.
_READ_ATTEMPTS: Final = 25
_O_BINARY: Final = getattr(os, "O_BINARY", 0)  # Windows: no newline translation in os.read/write
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_EDQUOT: Final = getattr(_errno, "EDQUOT", _errno.ENOSPC)
_NO_LOCK_SUPPORT: Final = frozenset(
    getattr(_errno, n) for n in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS") if hasattr(_errno, n)
)


# Public records and errors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointEntry:
    """One kept checkpoint, as the manifest records it.

    ``sequence`` increases with every save and is never reused, so entries sort in save order;
    ``size`` is the payload's size in bytes when it was saved (``recover()`` checks it);
    ``checksum`` is ``"crc32:<8 hex digits>"`` of those bytes (:meth:`CheckpointStore.verify`
    checks it), or ``None`` for an entry saved by a trainctl that recorded none (manifest
    version 1); ``metrics`` are the floats given to :meth:`CheckpointStore.save` (NaN and
    infinities included). The saved controller state is read with
    :meth:`CheckpointStore.load_state`.
    """

    name: str
    sequence: int
    size: int
    metrics: Mapping[str, float] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    checksum: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """What :meth:`CheckpointStore.recover` found and did.

    ``clean`` is true when there was nothing to repair (unknown files do not count: they are
    left alone on purpose). A read-only store repairs nothing: its report says how it interpreted
    the directory (``completed_save``/``discarded_save``/``dropped_entries`` describe its view;
    ``finished_deletes`` and ``removed_temp_files`` stay empty).
    """

    directory: Path
    manifest_found: bool
    #: Names kept after recovery, in save order.
    checkpoints: tuple[str, ...]
    #: An interrupted save whose file had reached its final name: recorded now.
    completed_save: str | None = None
    #: An interrupted save whose file had not reached its final name: discarded.
    discarded_save: str | None = None
    #: Deletions an interrupted save had recorded, carried out now.
    finished_deletes: tuple[str, ...] = ()
    #: Leftover temporary files, removed.
    removed_temp_files: tuple[str, ...] = ()
    #: Listed entries whose file was missing, not a regular file, of the wrong size or (with
    #: ``verify=True``) of the wrong checksum; dropped from the manifest (a file that exists is
    #: left on disk and appears in ``unknown_files``).
    dropped_entries: tuple[str, ...] = ()
    #: Files and directories the manifest does not know, left alone (names with the temporary
    #: prefix that are not files the store created included).
    unknown_files: tuple[str, ...] = ()
    #: Where a corrupt manifest was moved with ``discard_corrupt_manifest=True``.
    corrupt_manifest_moved_to: Path | None = None

    @property
    def clean(self) -> bool:
        return (
            self.completed_save is None
            and self.discarded_save is None
            and not self.finished_deletes
            and not self.removed_temp_files
            and not self.dropped_entries
            and self.corrupt_manifest_moved_to is None
        )


class CheckpointStoreError(Exception):
    """The checkpoint directory is not in a usable state (see the message for which file).

    ``path`` is the file or directory involved and ``stage`` the step that failed, where known;
    an underlying ``OSError`` is the ``__cause__`` (its errno is :attr:`errno`).
    """

    def __init__(
        self, message: str = "", *, path: Path | None = None, stage: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.stage = stage

    @property
    def errno(self) -> int | None:
        """The ``errno`` of the underlying ``OSError`` (e.g. ``errno.ENOSPC``), else ``None``."""
        cause = self.__cause__
        return cause.errno if isinstance(cause, OSError) else None


class CorruptManifestError(CheckpointStoreError):
    """The manifest file exists but cannot be trusted: not JSON, wrong format, inconsistent."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"checkpoint manifest {str(path)!r} is corrupt: {reason}. Fix or remove it, or call "
            "recover(discard_corrupt_manifest=True) to move it aside and start an empty manifest",
            path=path,
            stage="reading the manifest",
        )
        self.reason = reason


class CheckpointStoreLockedError(CheckpointStoreError):
    """Another process holds the directory's writer lock (see "One writer per directory").

    ``directory`` is the checkpoint directory, ``path`` its lock file, ``pid`` and ``hostname``
    the holder as its lock file records them (``None`` where it has not written them yet).
    """

    def __init__(
        self, directory: Path, lock_path: Path, *, pid: int | None, hostname: str | None
    ) -> None:
        if pid is None and hostname is None:
            holder = "another process (it has not recorded its pid yet)"
        else:
            holder = "process " + (str(pid) if pid is not None else "<unknown pid>")
            holder += f" on host {hostname!r}" if hostname is not None else ""
        super().__init__(
            f"checkpoint directory {str(directory)!r} is locked by another writer: {holder} holds "
            f"{str(lock_path)!r}. Only one process may write a checkpoint directory (rank 0 in a "
            "distributed job). Stop that process or let it finish (its lock is released when it "
            "calls close() or exits), write to another directory, or open this one with "
            "CheckpointStore(..., read_only=True) to read it while it is written",
            path=lock_path,
            stage="taking the writer lock in",
        )
        self.directory = directory
        self.pid = pid
        self.hostname = hostname


class CheckpointCorruptError(CheckpointStoreError):
    """A checkpoint file no longer holds the bytes its entry recorded (checksum or size differ).

    ``name`` is the checkpoint, ``path`` its file, ``recorded`` and ``actual`` the checksums
    (``actual`` is ``None`` when the file could not be read as a regular file).
    """

    def __init__(
        self, path: Path, *, name: str, recorded: str | None, actual: str | None, reason: str
    ) -> None:
        super().__init__(
            f"checkpoint file {str(path)!r} is corrupt: {reason} (recorded checksum {recorded}, "
            f"actual {actual}). Do not resume from it: restore it from a copy, or resume from an "
            "older checkpoint (recover(verify=True) drops corrupt entries from the manifest and "
            "leaves their files on disk)",
            path=path,
            stage="verifying",
        )
        self.name = name
        self.recorded = recorded
        self.actual = actual


class CheckpointSaveError(CheckpointStoreError):
    """A save failed; the original exception is ``__cause__``.

    ``stage`` names the step that failed (see the module docstring), ``path`` the file involved,
    and ``committed`` whether the new checkpoint is recorded in the manifest nonetheless:

    * ``True``: recorded (only the final clean-up failed, or the store rolled the interrupted save
      forward before raising); :meth:`CheckpointStore.latest` lists it.
    * ``False``: not recorded, and it never will be: the payload had not reached its final name
      (a recovery discards it) or the store already discarded it.
    * ``None``: unknown. The payload may have reached its final name but the store could not
      confirm or record that (e.g. the disk stayed full while it repaired the manifest). The next
      use of the store, or ``recover()``, records it if its file is complete and discards it
      otherwise; read :attr:`CheckpointStore.entries` afterwards to know.

    In every case the previously kept checkpoints are still listed and loadable.
    """

    def __init__(
        self, message: str, *, name: str, path: Path, stage: str, committed: bool | None
    ) -> None:
        super().__init__(message, path=path, stage=stage)
        self.name = name
        self.committed = committed


class CheckpointStoreWarning(UserWarning):
    """Something was skipped or repaired; the message names the file."""


# JSON encoding: strict JSON (no NaN/Infinity tokens), exact round trip --------------------------


def _encode_metrics(metrics: Mapping[str, object] | None) -> dict[str, float | str]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"'metrics' must be a mapping of str to float, got {type(metrics).__name__}"
        )
    out: dict[str, float | str] = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"'metrics' keys must be str, got {type(key).__name__} {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"'metrics[{key!r}]' must be a real number, got {type(value).__name__} {value!r}"
            )
        out[key] = encode_float(float(value))
    return out


class _StateTooDeep(ValueError):
    """Internal: the state nests deeper than _MAX_STATE_DEPTH (or contains itself)."""


def _encode_state(value: object, where: str, depth: int = 0) -> Any:
    """Plain JSON data, with non-finite floats tagged so the manifest stays strict JSON."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else {_FLOAT_TAG: encode_float(f)}
    if depth >= _MAX_STATE_DEPTH:
        raise _StateTooDeep(where)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} keys must be str (JSON objects), got {type(key).__name__} {key!r}"
                )
            if key == _FLOAT_TAG:
                raise ValueError(f"{where} must not use the reserved key {_FLOAT_TAG!r}")
            out[key] = _encode_state(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_encode_state(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise TypeError(
        f"{where} must be plain JSON data (None, bool, int, float, str, list, tuple, dict with "
        f"str keys), got {type(value).__name__} {value!r:.80}"
    )


def _decode_state(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _FLOAT_TAG in value:
            return NONFINITE[value[_FLOAT_TAG]]
        return {key: _decode_state(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_state(item) for item in value]
    return value


# The manifest as a value ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    entry: CheckpointEntry
    state: Any  # encoded JSON, never mutated


@dataclass(frozen=True, slots=True)
class _Pending:
    temp: str
    record: _Record
    delete: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Manifest:
    records: tuple[_Record, ...] = ()
    next_sequence: int = 0
    pending: _Pending | None = None
    trash: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(r.entry.name for r in self.records)

    def find(self, name: str) -> _Record | None:
        for record in self.records:
            if record.entry.name == name:
                return record
        return None

    def committed(self) -> _Manifest:
        """The pending save rolled forward: its entry appended, its deletions moved to trash."""
        assert self.pending is not None
        new = self.pending.record
        gone = {new.entry.name, *self.pending.delete}
        records = (*(r for r in self.records if r.entry.name not in gone), new)
        trash = self.trash + tuple(d for d in self.pending.delete if d not in self.trash)
        return _Manifest(records, self.next_sequence, None, trash)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "next_sequence": self.next_sequence,
            "checkpoints": [_record_to_json(r) for r in self.records],
            "pending": None
            if self.pending is None
            else {
                "temp": self.pending.temp,
                "checkpoint": _record_to_json(self.pending.record),
                "delete": list(self.pending.delete),
            },
            "trash": list(self.trash),
        }


def _record_to_json(record: _Record) -> dict[str, Any]:
    e = record.entry
    return {
        "name": e.name,
        "sequence": e.sequence,
        "size": e.size,
        "checksum": e.checksum,
        "metrics": {k: encode_float(v) for k, v in e.metrics.items()},
        "state": record.state,
    }


class _Invalid(Exception):
    """Internal: why a manifest document is rejected."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Invalid(reason)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_temp_name(name: str) -> bool:
    """Whether ``name`` is exactly a name :func:`_temp_name` makes (prefix, 12 hex, -, a name)."""
    match = _TEMP_RE.fullmatch(name)
    return match is not None and name_problem(match.group(1), manifest_name=None) is None


def _name_from_json(value: object, where: str) -> str:
    _require(isinstance(value, str), f"{where} is not a string")
    try:
        return check_checkpoint_name(where, value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _record_from_json(value: object, where: str, version: int) -> _Record:
    _require(isinstance(value, dict), f"{where} is not an object")
    assert isinstance(value, dict)
    keys = ["name", "sequence", "size", "metrics", "state"]
    if version >= 2:
        keys.insert(3, "checksum")
    _require(
        set(value) == set(keys),
        f"{where} has keys {sorted(value)}, expected {', '.join(keys)}",
    )
    name = _name_from_json(value["name"], f"{where}.name")
    sequence, size, raw_metrics = value["sequence"], value["size"], value["metrics"]
    _require(_is_int(sequence) and sequence >= 0, f"{where}.sequence is not an int >= 0")
    _require(_is_int(size) and size >= 0, f"{where}.size is not an int >= 0")
    checksum = value.get("checksum")
    _require(
        checksum is None or (isinstance(checksum, str) and bool(_CHECKSUM_RE.fullmatch(checksum))),
        f"{where}.checksum is neither null nor 'crc32:' followed by 8 lowercase hex digits",
    )
    _require(isinstance(raw_metrics, dict), f"{where}.metrics is not an object")
    metrics: dict[str, float] = {}
    for key, item in raw_metrics.items():
        if isinstance(item, str):
            _require(item in NONFINITE, f"{where}.metrics[{key!r}] is the string {item!r}")
            metrics[key] = NONFINITE[item]
        else:
            _require(
                isinstance(item, (int, float)) and not isinstance(item, bool),
                f"{where}.metrics[{key!r}] is not a number",
            )
            metrics[key] = float(item)
    state = value["state"]
    _require(state is None or isinstance(state, dict), f"{where}.state is not an object or null")
    try:
        _decode_state(state)
    except (KeyError, TypeError):
        raise _Invalid(f"{where}.state has a malformed {_FLOAT_TAG!r} value") from None
    entry = CheckpointEntry(
        name=name,
        sequence=sequence,
        size=size,
        metrics=types.MappingProxyType(metrics),
        checksum=checksum,
    )
    return _Record(entry, state)


def _manifest_from_json(doc: object) -> _Manifest:
    _require(isinstance(doc, dict), "the top level is not a JSON object")
    assert isinstance(doc, dict)
    _require(doc.get("format") == _FORMAT, f"'format' is {doc.get('format')!r}, not {_FORMAT!r}")
    version = doc.get("version")
    _require(
        _is_int(version) and version in _READABLE_VERSIONS,
        f"'version' is {version!r}; this trainctl reads versions "
        f"{' and '.join(map(str, _READABLE_VERSIONS))} (a newer trainctl may have written it)",
    )
    assert isinstance(version, int)
    expected = {"format", "version", "next_sequence", "checkpoints", "pending", "trash"}
    _require(set(doc) == expected, f"keys are {sorted(doc)}, expected {sorted(expected)}")
    next_sequence, raw_records, raw_trash = doc["next_sequence"], doc["checkpoints"], doc["trash"]
    _require(_is_int(next_sequence) and next_sequence >= 0, "'next_sequence' is not an int >= 0")
    _require(isinstance(raw_records, list), "'checkpoints' is not a list")
    _require(isinstance(raw_trash, list), "'trash' is not a list")
    records = tuple(
        _record_from_json(r, f"checkpoints[{i}]", version) for i, r in enumerate(raw_records)
    )
    names = [r.entry.name for r in records]
    _require(len(set(names)) == len(names), "a checkpoint name is listed twice")
    sequences = [r.entry.sequence for r in records]
    _require(
        all(a < b for a, b in itertools.pairwise(sequences))
        and all(s < next_sequence for s in sequences),
        "checkpoint sequence numbers are not increasing and below 'next_sequence'",
    )
    trash = tuple(_name_from_json(t, f"trash[{i}]") for i, t in enumerate(raw_trash))
    _require(not set(trash) & set(names), "a name is both listed and in 'trash'")
    pending = None
    raw_pending = doc["pending"]
    if raw_pending is not None:
        _require(isinstance(raw_pending, dict), "'pending' is not an object or null")
        _require(
            set(raw_pending) == {"temp", "checkpoint", "delete"},
            "'pending' must have the keys temp, checkpoint, delete",
        )
        temp = raw_pending["temp"]
        _require(
            isinstance(temp, str) and _is_temp_name(temp),
            "'pending.temp' is not a temporary file name",
        )
        record = _record_from_json(raw_pending["checkpoint"], "pending.checkpoint", version)
        raw_delete = raw_pending["delete"]
        _require(isinstance(raw_delete, list), "'pending.delete' is not a list")
        delete = tuple(_name_from_json(d, f"pending.delete[{i}]") for i, d in enumerate(raw_delete))
        _require(
            record.entry.sequence < next_sequence
            and all(record.entry.sequence > s for s in sequences),
            "'pending.checkpoint.sequence' is out of order",
        )
        _require(record.entry.name not in delete, "'pending' deletes the checkpoint it saves")
        pending = _Pending(temp, record, delete)
    return _Manifest(records, next_sequence, pending, trash)


# Low-level file operations (all through `os`, so tests can interpose on them) ------------------


def _checksum_fd(fd: int) -> tuple[int, str]:
    """Read ``fd`` to its end once; return (bytes read, ``"crc32:<hex>"``)."""
    crc, size = 0, 0
    while chunk := os.read(fd, _CHUNK):
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    return size, f"crc32:{crc:08x}"


def _fsync_file(path: Path) -> tuple[int, str]:
    """Checksum and fsync a file someone else wrote; return its size and checksum."""
    # Windows only fsyncs handles opened for writing; POSIX is happy with read-only.
    fd = os.open(path, (os.O_RDWR if os.name == "nt" else os.O_RDONLY) | _O_BINARY)
    try:
        size, checksum = _checksum_fd(fd)
        os.fsync(fd)
        if os.fstat(fd).st_size != size:
            raise ValueError(
                "the payload changed size while it was being read back: write() must finish "
                "writing the file before it returns"
            )
        return size, checksum
    finally:
        os.close(fd)


def _checksum_file(path: Path) -> tuple[int, str]:
    fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW)
    try:
        return _checksum_fd(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (a rename, a new file) durable (no-op on Windows)."""
    _fsync_dir(Path(path))


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Replace the file ``path`` so that a crash leaves the old file or the new one, never a mix:
    ``write(temp)`` to a temporary name in the same directory (it ends with ``path``'s name, so
    suffix checks pass), fsync it, ``os.replace`` it onto ``path``, fsync the directory. The
    manifest's own steps W1-W4, for files that are not checkpoints (a decision log, a file
    beside a framework's checkpoint). If ``write`` raises, the temporary file is removed and
    ``path`` is untouched."""
    target = Path(path)
    temp = target.with_name(_temp_name(target.name))
    try:
        write(temp)
        fd = os.open(temp, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        _discard_own_temp(temp)
        raise
    _fsync_dir(target.parent)


def _temp_name(final_name: str) -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(TEMP_TOKEN_HEX // 2)}-{final_name}"


def _discard_own_temp(path: Path) -> bool:
    """Remove the temporary path a save just gave ``write()`` (which may have made a directory
    there, which is refused); True if nothing is left. Only for paths this process generated."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return not os.path.lexists(path)
    return True


def _remove_temp_file(path: Path) -> bool:
    """Recovery's removal: unlink ``path`` only if it is a regular file (what the store creates);
    True if it was removed or is gone. Directories and links are never touched."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return not os.path.lexists(path)
    return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _advice(exc: OSError, retry: str) -> str:
    """What to do about ``exc``, ending with how to try again."""
    if exc.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        return (
            "check the permissions of the directory and its files (a process that only reads "
            f"checkpoints should use CheckpointStore(..., read_only=True), which never writes); "
            f"then {retry}"
        )
    if exc.errno in (_errno.ENOSPC, _EDQUOT):
        return f"free disk space, then {retry}; the kept checkpoints are untouched"
    return f"fix the cause, then {retry}"


# The writer lock (step 0) ------------------------------------------------------------------------


@dataclass(eq=False)
class _Lock:
    """A directory's writer lock as this process holds it, shared by its store objects."""

    key: tuple[int, int]  # the directory's (st_dev, st_ino): one lock however it is spelled
    fd: int | None  # None where locking is unavailable (Windows, file systems without locks)
    pid: int
    users: int = 1


_LOCKS: dict[tuple[int, int], _Lock] = {}
# Reentrant: a store's __del__ may run (garbage collection) while this thread holds it.
_LOCKS_GUARD = threading.RLock()


def _forget_locks_in_child() -> None:
    """After ``fork``: the child closes its copies of the lock descriptors (the parent's lock
    stays: it belongs to the parent's descriptor as well) and holds nothing. Otherwise a child
    outliving its parent would keep the directory locked, and could write as if it held it."""
    global _LOCKS_GUARD
    _LOCKS_GUARD = threading.RLock()  # another thread may have held it at the fork
    for lock in _LOCKS.values():
        if lock.fd is not None:
            with contextlib.suppress(OSError):
                _lock_os.close(lock.fd)
    _LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _holds(lock: _Lock | None) -> bool:
    """Whether ``lock`` is a live lock of this very process (not one inherited through fork)."""
    return lock is not None and lock.pid == _lock_os.getpid() and _LOCKS.get(lock.key) is lock


def _try_flock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another open file holds it."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """The pid and host name the holder wrote into the lock file, where readable."""
    try:
        raw = _lock_os.pread(fd, 4096, 0)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, AttributeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    pid, host = doc.get("pid"), doc.get("hostname")
    return (pid if _is_int(pid) else None), (host if isinstance(host, str) else None)


def _write_holder(fd: int) -> None:
    """Record who holds the lock, for the error a second writer gets. Best effort: a writer on
    a full disk may still recover, so a failure here is ignored."""
    doc = {"pid": _lock_os.getpid(), "hostname": socket.gethostname()}
    data = json.dumps(doc).encode("utf-8") + b"\n"
    with contextlib.suppress(OSError, AttributeError):
        _lock_os.ftruncate(fd, 0)
        _lock_os.pwrite(fd, data, 0)


def _acquire_lock(directory: Path) -> _Lock:
    st = _lock_os.stat(directory)
    key = (st.st_dev, st.st_ino)
    with _LOCKS_GUARD:
        held = _LOCKS.get(key)
        if held is not None:
            held.users += 1
            return held
        path = directory / LOCK_NAME
        flags = _lock_os.O_RDWR | _lock_os.O_CREAT | _O_BINARY | _O_NOFOLLOW
        fd = _lock_os.open(path, flags, 0o644)
        kept: int | None = fd
        try:
            if not _try_flock(fd):
                pid, host = _read_holder(fd)
                raise CheckpointStoreLockedError(directory, path, pid=pid, hostname=host)
            _write_holder(fd)
        except OSError as exc:
            _lock_os.close(fd)
            if exc.errno not in _NO_LOCK_SUPPORT:
                raise
            warnings.warn(
                f"the file system of {str(directory)!r} does not support file locks "
                f"({_describe(exc)}); writing it without the writer lock: make sure no other "
                "process writes this directory",
                CheckpointStoreWarning,
                stacklevel=4,
            )
            kept = None
        except BaseException:
            _lock_os.close(fd)
            raise
        lock = _Lock(key, kept, _lock_os.getpid())
        _LOCKS[key] = lock
        return lock


def _release_lock(lock: _Lock) -> None:
    with _LOCKS_GUARD:
        if not _holds(lock):
            return  # released already, or inherited through fork (the child closed its copy)
        lock.users -= 1
        if lock.users:
            return
        del _LOCKS[lock.key]
        if lock.fd is not None:
            _lock_os.close(lock.fd)  # closing the only descriptor releases the flock


# The store ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _View:
    """A reader's consistent interpretation of the directory (see R1-R3)."""

    manifest: _Manifest
    found: bool
    completed: str | None
    discarded: str | None
    dropped: tuple[str, ...]  # listed entries whose file does not match
    warnings: tuple[str, ...]  # why, and a forgotten interrupted save
    unknown: tuple[str, ...]


class CheckpointStore:
    """Checkpoint files in one directory, saved atomically and listed in a JSON manifest.

    Args:
        directory: where the checkpoints and the manifest live (created by ``recover()`` if
            missing and ``create`` is true).
        manifest_name: the manifest's file name inside ``directory``; it cannot be used as a
            checkpoint name.
        create: whether ``recover()`` may create ``directory``.
        read_only: open the store as a reader: it never changes the directory (no lock, no
            repairs, no directory creation), refuses ``save``/``delete``, and may run beside the
            writer (see the module docstring).

    The constructor does no I/O. Call :meth:`recover` once before anything else; for a writer it
    takes the directory's writer lock, which :meth:`close` (or leaving a ``with`` block) releases.
    Only one process may write a directory; the object is not thread-safe.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        manifest_name: str = DEFAULT_MANIFEST_NAME,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self._lock: _Lock | None = None  # first, so that __del__ works whatever fails below
        self._directory = Path(directory)
        self._manifest_name = check_checkpoint_name(
            "'manifest_name'", manifest_name, manifest_name=None
        )
        self._manifest_path = self._directory / manifest_name
        self._create = bool(create)
        self._read_only = bool(read_only)
        self._manifest: _Manifest | None = None  # None until recover()
        self._closed = False
        self._stale = False  # a failed operation left the in-memory view unsure; re-read first
        self._protected: set[str] = set()

    def __repr__(self) -> str:
        if self._manifest is None:
            count = "closed" if self._closed else "not recovered"
        else:
            count = f"{len(self._manifest.records)} kept"
        mode = ", read-only" if self._read_only else ""
        return f"CheckpointStore({str(self._directory)!r}, {count}{mode})"

    # -- opening and closing ---------------------------------------------------------------------

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the writer lock; the store is unusable until :meth:`recover` is called again.

        Calling it twice is fine. A store that is garbage collected releases its lock too, but
        only ``close()`` (or a ``with`` block) says when.
        """
        self._manifest = None
        self._closed = True
        lock, self._lock = self._lock, None
        if lock is not None:
            _release_lock(lock)

    def __del__(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            self._lock = None
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to do
                _release_lock(lock)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def manifest_path(self) -> Path:
        return self._manifest_path

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def entries(self) -> tuple[CheckpointEntry, ...]:
        """The kept checkpoints, oldest save first."""
        return tuple(r.entry for r in self._ready().records)

    @property
    def protected(self) -> frozenset[str]:
        return frozenset(self._protected)

    def __len__(self) -> int:
        return len(self._ready().records)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._ready().find(name) is not None

    def latest(self) -> CheckpointEntry | None:
        """The most recently saved kept checkpoint, or ``None`` if there is none."""
        records = self._ready().records
        return records[-1].entry if records else None

    def get(self, name: str) -> CheckpointEntry:
        """The entry for ``name``; ``KeyError`` if the manifest does not list it."""
        return self._record(name).entry

    def path(self, name: str) -> Path:
        """The file of the kept checkpoint ``name`` (``KeyError`` if it is not listed)."""
        return self._directory / self._record(name).entry.name

    def load_state(self, name: str) -> Any:
        """The ``state`` saved with ``name`` (a fresh copy), or ``None`` if none was given.

        It is the JSON round trip of what was passed: tuples come back as lists; NaN and
        infinities come back as floats.
        """
        return _decode_state(self._record(name).state)

    def verify(self, name: str) -> bool:
        """Re-read the file of ``name`` and compare it with its entry's size and checksum.

        Returns ``True`` when it matches, ``False`` when the entry has no checksum to compare
        (saved by a trainctl that recorded none; its size did match). Raises
        :class:`CheckpointCorruptError` naming the file and both checksums when it does not
        match (or the file is missing or not a regular file), ``KeyError`` if ``name`` is not
        listed, :class:`CheckpointStoreError` if the file cannot be read. Reads the whole file.

        A read-only store judges by the current manifest: on a mismatch it refreshes its view
        first, since the writer may have replaced the file (a new save of that name) meanwhile.
        """
        for _ in range(3 if self._read_only else 1):
            entry = self._record(name).entry
            problem = self._file_problem(entry, verify=True, retry="call verify() again")
            if problem is None:
                return entry.checksum is not None
            if not self._read_only:
                break
            self.refresh()
            if self._record(name).entry.sequence == entry.sequence:
                break  # the manifest still records those bytes: the file really changed
        assert problem is not None
        reason, actual = problem
        raise CheckpointCorruptError(
            self._directory / entry.name,
            name=entry.name,
            recorded=entry.checksum,
            actual=actual,
            reason=reason,
        )

    def protect(self, name: str) -> None:
        """Never delete ``name`` (e.g. the checkpoint training resumed from) in this process.

        A protected name in ``delete`` is skipped with a warning; saving over it is refused.
        ``KeyError`` if ``name`` is not listed.
        """
        self._protected.add(self._record(name).entry.name)

    def unprotect(self, name: str) -> None:
        """Undo :meth:`protect` (no error if ``name`` was not protected)."""
        self._protected.discard(name)

    def refresh(self) -> None:
        """Re-read the manifest, for a long-lived reader to see the writer's newer saves.

        For a read-only store it is :meth:`recover` without the report (it may be called instead
        of it); on failure the previous view is kept. A writer's view *is* the manifest, so for
        a writer it only settles a failed operation, like any other use.
        """
        if not self._read_only:
            self._ready()
            return
        self._check_directory(create=False)
        self._apply_view(self._read_view(verify=False))

    def _ready(self) -> _Manifest:
        if self._manifest is None:
            if self._closed:
                raise RuntimeError(
                    f"CheckpointStore({str(self._directory)!r}) is closed; call recover() to "
                    "open it again"
                )
            raise RuntimeError(
                f"CheckpointStore({str(self._directory)!r}): call recover() before using the "
                "store; it reads the manifest and repairs what a crash left behind"
            )
        if self._stale:
            try:
                self._settle()
            except Exception as exc:
                raise CheckpointStoreError(
                    f"the state of {str(self._manifest_path)!r} is unknown after a failed "
                    f"operation, and re-reading it failed ({_describe(exc)}); fix the cause and "
                    "call recover()",
                    path=self._manifest_path,
                    stage="settling a failed operation recorded in",
                ) from exc
        assert self._manifest is not None
        return self._manifest

    def _writable(self, operation: str) -> _Manifest:
        """The manifest, for an operation that changes the directory; refuse if we may not."""
        if self._read_only:
            raise CheckpointStoreError(
                f"cannot {operation}: CheckpointStore({str(self._directory)!r}) is read-only and "
                "never changes the directory. Write through the process that opened it with "
                "read_only=False (one writer per directory)",
                path=self._directory,
                stage=operation,
            )
        if self._manifest is not None and not _holds(self._lock):
            lock = self._lock
            raise CheckpointStoreError(
                f"cannot {operation}: the writer lock of {str(self._directory)!r} was taken by "
                f"process {lock.pid if lock else '?'}, not by this process "
                f"({_lock_os.getpid()}); a store inherited through fork may not write. Call "
                "recover() in this process to take the lock",
                path=self._directory / LOCK_NAME,
                stage=operation,
            )
        return self._ready()

    def _record(self, name: str) -> _Record:
        record = self._ready().find(name) if isinstance(name, str) else None
        if record is None:
            raise KeyError(f"no checkpoint named {name!r} in {str(self._manifest_path)!r}")
        return record

    @contextlib.contextmanager
    def _stage(self, stage: str, path: Path, retry: str = "call recover() again") -> Iterator[None]:
        """Turn an ``OSError`` raised inside into a CheckpointStoreError naming stage and path."""
        try:
            yield
        except OSError as exc:
            raise CheckpointStoreError(
                f"{stage} {str(path)!r} failed: {_describe(exc)}; {_advice(exc, retry)}",
                path=path,
                stage=stage,
            ) from exc

    # -- saving ----------------------------------------------------------------------------------

    def save(
        self,
        name: str,
        write: Callable[[Path], object],
        *,
        metrics: Mapping[str, float] | None = None,
        state: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
    ) -> Path:
        """Save a checkpoint atomically, record it, then delete the checkpoints in ``delete``.

        ``write(path)`` must write the whole payload to ``path`` (a temporary file in the
        directory whose name ends with ``name``, so suffix checks pass) as one regular file.
        ``metrics`` (floats; NaN and infinities allowed) and ``state`` (plain JSON data, e.g. the
        controller's ``state_dict()``, nested at most 100 levels) are stored in the manifest
        beside the entry. Saving an existing name replaces it atomically; the entry moves to the
        end of :attr:`entries` (an unlisted file of that name is replaced too: the caller asked
        for that name). Names in ``delete`` that are protected or not listed are skipped with a
        :class:`CheckpointStoreWarning`. Returns the checkpoint's final path.

        Raises ``ValueError``/``TypeError`` for bad arguments (before any I/O),
        :class:`CheckpointStoreError` for a read-only store, and :class:`CheckpointSaveError`
        when the save fails (a state nested too deeply included, before any I/O); see the module
        docstring.
        """
        manifest = self._writable("save")
        name = check_checkpoint_name(
            "checkpoint name", name, manifest_name=self._manifest_name
        )
        if name in self._protected:
            raise ValueError(
                f"checkpoint {name!r} is protected and cannot be overwritten; call "
                f"unprotect({name!r}) first or save under another name"
            )
        final = self._directory / name
        encoded_metrics = _encode_metrics(metrics)
        if state is not None and not isinstance(state, Mapping):
            raise TypeError(f"'state' must be a mapping or None, got {type(state).__name__}")
        try:
            encoded_state = _encode_state(state, "'state'")
        except (_StateTooDeep, RecursionError) as exc:
            at = f" (at {str(exc)[:200]})" if isinstance(exc, _StateTooDeep) else ""
            raise CheckpointSaveError(
                f"saving checkpoint {name!r} failed while checking the state for "
                f"{str(final)!r}: 'state' is nested more than {_MAX_STATE_DEPTH} levels deep or "
                f"contains itself{at}; nothing was written. Save a flatter state (e.g. lists "
                "of records instead of nested dicts)",
                name=name,
                path=final,
                stage="checking the state for",
                committed=False,
            ) from exc
        if isinstance(delete, str):
            raise TypeError(f"'delete' must be an iterable of names, not the str {delete!r}")
        to_delete = self._deletable(delete, saving=name)

        temp = self._directory / _temp_name(name)

        def fail(
            stage: str, exc: BaseException, committed: bool | None, path: Path, repair: str = ""
        ) -> CheckpointSaveError:
            if committed is None:
                outcome = (
                    "it is unknown whether the checkpoint is recorded: its file may have reached "
                    f"its final name, and repairing the manifest failed ({repair}); the next use "
                    "of this store (or recover()) records it if its file is complete and "
                    "discards it otherwise; the previously kept checkpoints are still on disk"
                )
            elif committed:
                outcome = "the checkpoint was recorded nonetheless"
                if repair:
                    outcome += (
                        f"; finishing the clean-up also failed ({repair}) and is retried when "
                        "the store is next used"
                    )
            elif repair:
                outcome = (
                    "the checkpoint was not recorded; repairing the manifest also failed "
                    f"({repair}); the interrupted save is undone when the store is next used "
                    "(or by recover()); the previously kept checkpoints are still on disk"
                )
            else:
                outcome = "nothing was recorded; the previously kept checkpoints are intact"
            if isinstance(exc, OSError):
                outcome += f"; {_advice(exc, 'save again')}"
            return CheckpointSaveError(
                f"saving checkpoint {name!r} failed while {stage} {str(path)!r}: "
                f"{_describe(exc)}; {outcome}",
                name=name,
                path=path,
                stage=stage,
                committed=committed,
            )

        # Steps 1-3: nothing durable refers to `temp`, so on failure just remove it.
        stage, where = "checking the target", final
        try:
            if os.path.isdir(final):
                raise IsADirectoryError(_errno.EISDIR, "a directory is in the way", str(final))
            stage, where = "writing the payload to", temp
            write(temp)
            stage = "checking the payload in"
            if not os.path.lexists(temp):
                raise FileNotFoundError(
                    _errno.ENOENT, "write() did not create the file it was given", str(temp)
                )
            if not stat.S_ISREG(os.lstat(temp).st_mode):
                raise ValueError("write() must create one regular file at the path it is given")
            stage = "checksumming and fsyncing the payload"
            size, checksum = _fsync_file(temp)
        except BaseException as exc:
            _discard_own_temp(temp)
            if isinstance(exc, Exception):
                raise fail(stage, exc, False, where) from exc
            raise

        entry = CheckpointEntry(
            name=name,
            sequence=manifest.next_sequence,
            size=size,
            metrics=types.MappingProxyType(
                {k: _decode_metric(v) for k, v in encoded_metrics.items()}
            ),
            checksum=checksum,
        )
        pending = _Pending(temp.name, _Record(entry, encoded_state), to_delete)
        intent = _Manifest(manifest.records, manifest.next_sequence + 1, pending, manifest.trash)

        # Steps 4-7: a durable manifest may refer to `temp`; on failure settle the journal.
        stage, where = "recording the intent in", self._manifest_path
        renaming = False  # whether os.replace(temp, final) may have taken effect
        try:
            self._write_manifest(intent)
            stage, where = "renaming the payload to", final
            renaming = True
            os.replace(temp, final)
            stage, where = "fsyncing the directory", self._directory
            _fsync_dir(self._directory)
            stage, where = "recording the checkpoint in", self._manifest_path
            self._write_manifest(intent.committed())
            stage = "deleting old checkpoints listed in"
            self._empty_trash()
        except Exception as exc:
            self._stale = True
            try:
                self._settle()
            except Exception as settle_exc:
                repair = _describe(settle_exc)
                committed = self._commit_status(entry, temp, renaming)
            else:
                repair = ""  # settled: the manifest just read or written is the truth
                committed = self._lists(entry)
            raise fail(stage, exc, committed, where, repair) from exc
        except BaseException:
            self._stale = True  # e.g. KeyboardInterrupt: settle on next use, like after a crash
            raise
        return final

    def _lists(self, entry: CheckpointEntry) -> bool:
        """Whether the manifest last read or written records this very save of ``entry``."""
        current = self._manifest.find(entry.name) if self._manifest is not None else None
        return current is not None and current.entry.sequence == entry.sequence

    def _commit_status(self, entry: CheckpointEntry, temp: Path, renaming: bool) -> bool | None:
        """Whether a save is recorded when settling its failure failed too (see
        :class:`CheckpointSaveError`)."""
        if self._lists(entry):
            return True  # this process replaced the manifest with one that records it
        if not renaming or os.path.lexists(temp):
            # The payload never reached its final name: whatever manifest is on disk, every
            # recovery discards the save (a pending intent whose temp file exists is undone).
            return False
        # The rename may have happened and only a recovery that can write will record it.
        return None

    def delete(self, names: Iterable[str]) -> tuple[str, ...]:
        """Delete kept checkpoints outside a save; returns the names actually deleted.

        Protected and unlisted names are skipped with a :class:`CheckpointStoreWarning`. The
        names leave the manifest (durably) before their files are unlinked. A read-only store
        raises :class:`CheckpointStoreError`.
        """
        manifest = self._writable("delete")
        if isinstance(names, str):
            raise TypeError(f"'names' must be an iterable of names, not the str {names!r}")
        to_delete = self._deletable(names, saving=None)
        if not to_delete:
            return ()
        gone = set(to_delete)
        after = _Manifest(
            tuple(r for r in manifest.records if r.entry.name not in gone),
            manifest.next_sequence,
            None,
            manifest.trash + to_delete,
        )
        try:
            self._write_manifest(after)
            self._empty_trash()
        except Exception as exc:
            self._stale = True
            with contextlib.suppress(Exception):  # _ready() retries and reports on next use
                self._settle()
            advice = _advice(exc, "delete again") if isinstance(exc, OSError) else ""
            raise CheckpointStoreError(
                f"deleting {list(to_delete)} in {str(self._directory)!r} failed: "
                f"{_describe(exc)}; {advice or 'fix the cause and delete again'}",
                path=self._manifest_path,
                stage="deleting checkpoints listed in",
            ) from exc
        except BaseException:
            self._stale = True
            raise
        return to_delete

    def _deletable(self, names: Iterable[str], *, saving: str | None) -> tuple[str, ...]:
        manifest = self._ready()
        out: list[str] = []
        for raw in names:
            name = check_checkpoint_name(
                "name in 'delete'", raw, manifest_name=self._manifest_name
            )
            if name == saving:
                raise ValueError(f"checkpoint {name!r} cannot be saved and deleted in one call")
            if name in out:
                continue
            if name in self._protected:
                warnings.warn(
                    f"not deleting protected checkpoint {str(self._directory / name)!r}; it stays "
                    "on disk and in the manifest",
                    CheckpointStoreWarning,
                    stacklevel=3,
                )
                continue
            if manifest.find(name) is None:
                warnings.warn(
                    f"not deleting {str(self._directory / name)!r}: the manifest does not list it "
                    "(unknown files are left alone)",
                    CheckpointStoreWarning,
                    stacklevel=3,
                )
                continue
            out.append(name)
        return tuple(out)

    # -- the journal -----------------------------------------------------------------------------

    def _write_manifest(self, manifest: _Manifest) -> None:
        """Steps W1-W4: write, fsync, replace, fsync the directory. Updates the in-memory view."""
        data = json.dumps(manifest.to_json(), allow_nan=False, indent=1).encode("utf-8") + b"\n"
        temp = self._directory / _temp_name(self._manifest_name)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._manifest_path)
        except BaseException:
            _remove_temp_file(temp)
            raise
        self._manifest = manifest  # the new manifest is the one on disk, even if W4 fails
        _fsync_dir(self._directory)

    def _read_manifest_bytes(self) -> bytes | None:
        """The manifest's bytes; ``None`` if there is none. Raises OSError (or
        CorruptManifestError when a directory is in its place)."""
        try:
            with open(self._manifest_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CorruptManifestError(
                self._manifest_path, "it is a directory, not a file"
            ) from None

    def _parse_manifest(self, raw: bytes) -> _Manifest:
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
            return _manifest_from_json(doc)
        except UnicodeDecodeError as exc:
            raise CorruptManifestError(self._manifest_path, f"not UTF-8 ({exc})") from None
        except json.JSONDecodeError as exc:
            raise CorruptManifestError(self._manifest_path, f"not JSON ({exc})") from None
        except (_Invalid, ValueError, RecursionError) as exc:
            raise CorruptManifestError(self._manifest_path, str(exc)) from None

    def _read_manifest(self) -> _Manifest | None:
        """The manifest on disk; ``None`` if there is none. Raises CorruptManifestError."""
        with self._stage("reading the manifest", self._manifest_path):
            raw = self._read_manifest_bytes()
        return None if raw is None else self._parse_manifest(raw)

    def _pending_outcome(self, pending: _Pending) -> str:
        """Where an interrupted save got to: "not renamed" (its temp file is still there),
        "renamed" (temp gone, final file of the recorded size), or "lost" (neither)."""
        if os.path.lexists(self._directory / pending.temp):
            return "not renamed"
        try:
            st = os.lstat(self._directory / pending.record.entry.name)
        except FileNotFoundError:
            return "lost"
        if stat.S_ISREG(st.st_mode) and st.st_size == pending.record.entry.size:
            return "renamed"
        return "lost"

    def _lost_pending_message(self, pending: _Pending) -> str:
        return (
            f"an interrupted save of {str(self._directory / pending.record.entry.name)!r} left "
            "neither its temporary file nor a matching final file; it is forgotten"
        )

    def _resolve_pending(self, manifest: _Manifest) -> tuple[str | None, str | None]:
        """Roll an interrupted save forward or back; returns (completed, discarded) names."""
        pending = manifest.pending
        if pending is None:
            return None, None
        outcome = self._pending_outcome(pending)
        if outcome == "not renamed":
            # The rename never happened: discard the intent durably, only then remove the file.
            self._write_manifest(dataclasses.replace(manifest, pending=None))
            _remove_temp_file(self._directory / pending.temp)
            return None, pending.record.entry.name
        if outcome == "renamed":
            self._write_manifest(manifest.committed())
            return pending.record.entry.name, None
        # Neither file matches (something outside the store removed them): forget the intent.
        warnings.warn(self._lost_pending_message(pending), CheckpointStoreWarning, stacklevel=4)
        self._write_manifest(dataclasses.replace(manifest, pending=None))
        return None, pending.record.entry.name

    def _empty_trash(self) -> tuple[str, ...]:
        """Step 7: unlink the files in trash, fsync the directory, clear trash in the manifest."""
        manifest = self._manifest
        assert manifest is not None
        if not manifest.trash:
            return ()
        for name in manifest.trash:
            path = self._directory / name
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if os.path.lexists(path):
                    warnings.warn(
                        f"could not delete old checkpoint {str(path)!r} ({_describe(exc)}); it is "
                        "no longer in the manifest and is left on disk as an unknown file",
                        CheckpointStoreWarning,
                        stacklevel=3,
                    )
        _fsync_dir(self._directory)
        self._write_manifest(dataclasses.replace(manifest, trash=()))
        return manifest.trash

    def _remove_stray_temps(self, manifest: _Manifest) -> tuple[str, ...]:
        """Remove the temporary files no manifest refers to: only regular files with exactly a
        temporary name, which only a store creates (and, holding the lock, only this one)."""
        keep = {manifest.pending.temp} if manifest.pending is not None else set()
        removed = []
        for name in sorted(os.listdir(self._directory)):
            if name in keep or not _is_temp_name(name):
                continue
            path = self._directory / name
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # not something the store made: left alone, an unknown file
            except FileNotFoundError:
                continue
            if not _remove_temp_file(path):
                warnings.warn(
                    f"could not remove temporary file {str(path)!r}",
                    CheckpointStoreWarning,
                    stacklevel=4,
                )
                continue
            removed.append(name)
        return tuple(removed)

    def _settle(self) -> tuple[str | None, str | None, tuple[str, ...], tuple[str, ...], bool]:
        """Re-read the manifest and finish or undo whatever operation was interrupted.

        Returns (completed save, discarded save, finished deletes, removed temps, manifest found).
        Raises CheckpointStoreError (stage and path named) or CorruptManifestError.
        """
        manifest = self._read_manifest()
        found = manifest is not None
        self._manifest = manifest if manifest is not None else _Manifest()
        pending = self._manifest.pending
        if pending is not None:
            what = f"settling the interrupted save of {pending.record.entry.name!r} recorded in"
            with self._stage(what, self._manifest_path):
                completed, discarded = self._resolve_pending(self._manifest)
        else:
            completed, discarded = None, None
        with self._stage("finishing the deletions recorded in", self._manifest_path):
            finished = self._empty_trash()
        with self._stage("removing temporary files from", self._directory):
            removed = self._remove_stray_temps(self._manifest)
        self._stale = False
        return completed, discarded, finished, removed, found

    # -- checking files --------------------------------------------------------------------------

    def _file_problem(
        self, entry: CheckpointEntry, *, verify: bool, retry: str = "call recover() again"
    ) -> tuple[str, str | None] | None:
        """Why the file of ``entry`` does not match it (and its actual checksum if read), or
        ``None``. Checks type and size; with ``verify`` also the checksum (reading the file)."""
        path = self._directory / entry.name
        with self._stage("checking", path, retry):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return "is missing", None
            if not stat.S_ISREG(st.st_mode):
                return "is not a regular file", None
            if st.st_size != entry.size:
                return f"has {st.st_size} bytes, the manifest recorded {entry.size}", None
            if not verify or entry.checksum is None:
                return None
        with self._stage("verifying", path, retry):
            size, actual = _checksum_file(path)
        if size != entry.size:
            return f"has {size} bytes, the manifest recorded {entry.size}", actual
        if actual != entry.checksum:
            return (
                f"has checksum {actual}, the manifest recorded {entry.checksum} (its bytes "
                "changed after it was saved)"
            ), actual
        return None

    def _check_records(
        self, records: Iterable[_Record], verify: bool
    ) -> tuple[list[_Record], list[tuple[str, str]]]:
        """The records whose file matches, and (name, warning) for the others."""
        kept: list[_Record] = []
        problems: list[tuple[str, str]] = []
        for record in records:
            problem = self._file_problem(record.entry, verify=verify)
            if problem is None:
                kept.append(record)
                continue
            message = self._dropped_message(record.entry.name, problem[0])
            problems.append((record.entry.name, message))
        return kept, problems

    def _dropped_message(self, name: str, reason: str) -> str:
        path = self._directory / name
        return f"checkpoint file {str(path)!r} {reason}; dropping it from the manifest"

    def _unknown_files(self, known: Iterable[str]) -> tuple[str, ...]:
        """Entries of the directory that are neither listed (``known``), the manifest, the lock,
        nor a temporary file the store made."""
        skip = {*known, self._manifest_name, LOCK_NAME}
        out = []
        with self._stage("listing", self._directory):
            for name in sorted(os.listdir(self._directory)):
                if name in skip:
                    continue
                if _is_temp_name(name):
                    try:
                        if stat.S_ISREG(os.lstat(self._directory / name).st_mode):
                            continue
                    except FileNotFoundError:
                        continue  # a writer's temporary file, gone since the listing
                out.append(name)
        return tuple(out)

    # -- recovery --------------------------------------------------------------------------------

    def recover(
        self, *, discard_corrupt_manifest: bool = False, verify: bool = False
    ) -> RecoveryReport:
        """Load the manifest and make it agree with the directory; call once on start.

        A writer first takes the directory's writer lock (:class:`CheckpointStoreLockedError` if
        another process holds it) and keeps it until :meth:`close`. Then it settles an
        interrupted save or delete, removes leftover temporary files, and drops listed entries
        whose file is missing or has the wrong size (with a warning naming it); with ``verify``
        it also reads every listed file and drops those whose checksum no longer matches (slow
        for large files). Unknown files are reported, never touched. A corrupt manifest raises
        :class:`CorruptManifestError`, unless ``discard_corrupt_manifest`` is true: then it is
        moved to ``<manifest>.corrupt-<n>`` with a warning and an empty manifest is started.

        A read-only store does all of this in memory only (see the module docstring) and cannot
        discard a corrupt manifest. Failures raise :class:`CheckpointStoreError` naming the
        stage and the file; after one the store is unusable (and a writer's lock released) until
        a recovery succeeds.
        """
        self._manifest = None  # unusable until this recovery succeeds
        self._closed = False
        try:
            if self._read_only:
                if discard_corrupt_manifest:
                    raise CheckpointStoreError(
                        f"CheckpointStore({str(self._directory)!r}) is read-only and cannot move "
                        f"a corrupt manifest aside; recover(discard_corrupt_manifest=True) must "
                        "be called by the writer",
                        path=self._manifest_path,
                        stage="moving the corrupt manifest aside",
                    )
                self._check_directory(create=False)
                return self._apply_view(self._read_view(verify))
            return self._recover(discard_corrupt_manifest, verify)
        except BaseException:
            self._manifest = None
            lock, self._lock = self._lock, None
            if lock is not None:  # usable and locked go together: let another writer in
                _release_lock(lock)
            raise

    def _check_directory(self, *, create: bool) -> None:
        """The directory exists (created if ``create``) and is a directory."""
        directory = self._directory
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            if not create:
                how = "a read-only store never creates it" if self._read_only else "create=False"
                raise FileNotFoundError(
                    _errno.ENOENT, f"checkpoint directory does not exist ({how})", str(directory)
                ) from None
            with self._stage("creating the checkpoint directory", directory):
                os.makedirs(directory, exist_ok=True)
                st = os.stat(directory)
        except OSError as exc:
            raise CheckpointStoreError(
                f"opening the checkpoint directory {str(directory)!r} failed: {_describe(exc)}; "
                f"{_advice(exc, 'call recover() again')}",
                path=directory,
                stage="opening the checkpoint directory",
            ) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise CheckpointStoreError(
                f"the checkpoint directory {str(directory)!r} exists but is not a directory; "
                "move that file away or choose another directory, then call recover() again",
                path=directory,
                stage="opening the checkpoint directory",
            )

    def _recover(self, discard_corrupt_manifest: bool, verify: bool) -> RecoveryReport:
        self._check_directory(create=self._create)
        if not _holds(self._lock):
            self._lock = None  # a lock inherited through fork is not ours
            with self._stage("taking the writer lock in", self._directory / LOCK_NAME):
                self._lock = _acquire_lock(self._directory)
        moved_to = None
        try:
            completed, discarded, finished, removed, found = self._settle()
        except CorruptManifestError as exc:
            if not discard_corrupt_manifest:
                raise
            with self._stage("moving aside the corrupt manifest", self._manifest_path):
                moved_to = self._move_aside()
            warnings.warn(
                f"{exc.reason}: moved the corrupt manifest {str(self._manifest_path)!r} to "
                f"{str(moved_to)!r} and started an empty one; its checkpoints are now unknown "
                "files",
                CheckpointStoreWarning,
                stacklevel=3,
            )
            with self._stage("starting an empty manifest in", self._manifest_path):
                self._write_manifest(_Manifest())
            completed, discarded, finished, removed, found = self._settle()
            found = True

        manifest = self._manifest
        assert manifest is not None
        kept, problems = self._check_records(manifest.records, verify)
        for _, message in problems:
            warnings.warn(message, CheckpointStoreWarning, stacklevel=3)
        if problems:
            with self._stage("recording the dropped entries in", self._manifest_path):
                self._write_manifest(dataclasses.replace(manifest, records=tuple(kept)))
        names = [r.entry.name for r in kept]
        self._protected &= set(names)
        return RecoveryReport(
            directory=self._directory,
            manifest_found=found,
            checkpoints=tuple(names),
            completed_save=completed,
            discarded_save=discarded,
            finished_deletes=finished,
            removed_temp_files=removed,
            dropped_entries=tuple(name for name, _ in problems),
            unknown_files=self._unknown_files(names),
            corrupt_manifest_moved_to=moved_to,
        )

    def _move_aside(self) -> Path:
        n = 1
        while os.path.lexists(
            aside := self._manifest_path.with_name(f"{self._manifest_name}.corrupt-{n}")
        ):
            n += 1
        os.replace(self._manifest_path, aside)
        _fsync_dir(self._directory)
        return aside

    # -- reading without writing (read_only=True) ------------------------------------------------

    def _read_view(self, verify: bool) -> _View:
        """R1-R3 of the module docstring: a consistent view of the directory, changing nothing."""
        for attempt in range(_READ_ATTEMPTS):
            with self._stage("reading the manifest", self._manifest_path):
                raw = self._read_manifest_bytes()
            manifest = _Manifest() if raw is None else self._parse_manifest(raw)
            # The listed files first, the pending save second. The one change the writer may
            # make to them under an unchanged manifest is the pending rename; checked in this
            # order, a file seen already replaced by it belongs to an entry that the rename (seen
            # done a moment later) replaces in this view anyway.
            found = {
                r.entry.sequence: self._file_problem(r.entry, verify=verify)
                for r in manifest.records
            }
            completed = discarded = None
            messages: list[str] = []
            pending = manifest.pending
            if pending is not None:
                with self._stage("checking the interrupted save in", self._directory):
                    outcome = self._pending_outcome(pending)
                if outcome == "renamed":
                    manifest, completed = manifest.committed(), pending.record.entry.name
                    found[pending.record.entry.sequence] = self._file_problem(
                        pending.record.entry, verify=verify
                    )
                else:
                    manifest = dataclasses.replace(manifest, pending=None)
                    discarded = pending.record.entry.name
                    if outcome == "lost":
                        messages.append(self._lost_pending_message(pending))
            kept: list[_Record] = []
            problems: list[str] = []  # names of the records in this view whose file is wrong
            for record in manifest.records:
                problem = found[record.entry.sequence]
                if problem is None:
                    kept.append(record)
                else:
                    problems.append(record.entry.name)
                    messages.append(self._dropped_message(record.entry.name, problem[0]))
            names = [r.entry.name for r in kept]
            # Files of the writer's operation in flight are its own, not unknown files.
            in_flight = list(manifest.trash)
            if pending is not None:
                in_flight.append(pending.record.entry.name)
            unknown = self._unknown_files([*names, *in_flight])
            with self._stage("reading the manifest", self._manifest_path):
                again = self._read_manifest_bytes()
            if again == raw:
                return _View(
                    dataclasses.replace(manifest, records=tuple(kept)),
                    raw is not None,
                    completed,
                    discarded,
                    tuple(problems),
                    tuple(messages),
                    unknown,
                )
            time.sleep(min(0.001 * 2**attempt, 0.05))  # the writer moved on: look again
        raise CheckpointStoreError(
            f"reading the manifest {str(self._manifest_path)!r} failed: it changed "
            f"{_READ_ATTEMPTS} times while this reader checked the files (a writer is saving "
            "faster than it can read); call refresh() or recover() again",
            path=self._manifest_path,
            stage="reading the manifest",
        )

    def _apply_view(self, view: _View) -> RecoveryReport:
        for message in view.warnings:
            warnings.warn(message, CheckpointStoreWarning, stacklevel=4)
        self._manifest = view.manifest
        self._closed = False
        names = view.manifest.names()
        self._protected &= set(names)
        return RecoveryReport(
            directory=self._directory,
            manifest_found=view.found,
            checkpoints=names,
            completed_save=view.completed,
            discarded_save=view.discarded,
            dropped_entries=view.dropped,
            unknown_files=view.unknown,
        )


def _decode_metric(value: float | str) -> float:
    return NONFINITE[value] if isinstance(value, str) else value


def _reject_constant(token: str) -> Any:
    raise _Invalid(f"contains the non-standard JSON constant {token}")
