"""Crash-safe checkpoint files: atomic saves, a journaled manifest, and deletes that come last.

trainctl's policies only *name* file effects ("save as epoch013-0.2811.ckpt, delete
epoch007-0.3012.ckpt"). :class:`CheckpointStore` carries them out so that a crash at any instant
(process killed, power lost, disk full) leaves the last good checkpoint loadable and the manifest
truthful. It imports only the standard library; framework adapters hand it a function that writes
the payload (``torch.save``, Keras' ``model.save``, Lightning's ``trainer.save_checkpoint``)::

    store = CheckpointStore("checkpoints")
    report = store.recover()                 # once, on start: load and reconcile the manifest
    store.save("epoch013.ckpt", lambda path: torch.save(model.state_dict(), path),
               metrics={"val_loss": 0.2811}, state=controller.state_dict(),
               delete=["epoch007.ckpt"])
    store.latest().name                      # 'epoch013.ckpt'
    store.load_state("epoch013.ckpt")        # the controller state saved with it

Theory of operation
===================
The directory holds checkpoint files, one manifest (``trainctl-manifest.json``) and, only while a
save is in flight, temporary files whose names start with ``.trainctl-tmp-``. The manifest is the
single source of truth. Besides the kept checkpoints (save order, each with a sequence number, its
size in bytes, its metrics and the caller's state) it holds a tiny journal of the one operation in
flight: ``pending`` (a save whose file is complete but may not have reached its final name yet,
with the deletions it asked for) and ``trash`` (names already dropped from the list whose files may
still exist). Every manifest write is atomic (steps W1-W4 below), so at every instant the manifest
on disk is either the previous one or the next one, never a mix.

``save(name, write, metrics=..., state=..., delete=...)`` does, in this order:

1. Check everything that needs no I/O (name, metrics, state, ``delete``; the target is not a
   directory). *Crash here:* nothing has changed.
2. ``write(temp)`` with ``temp = .trainctl-tmp-<token>-<name>`` in the same directory (the final
   name is the suffix, so Keras' ``.keras`` / ``.weights.h5`` checks pass). *Crash:* a stray
   temporary file, which no manifest mentions; ``recover()`` removes it. If ``write`` raises, the
   temporary file is removed at once and the manifest is untouched.
3. Open the temporary file, ``fsync`` it and record its size: the payload is now durable.
   *Crash:* as in 2.
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

``recover()`` (call it once before anything else; the constructor does no I/O) reads the manifest,
settles the journal (roll the pending save forward or back as above, finish the trash), removes
stray temporary files, drops listed entries whose file is missing, not a regular file, or of the
wrong size (each with a :class:`CheckpointStoreWarning` naming the file; the file, if any, is left
on disk), writes the manifest if anything changed, and returns a :class:`RecoveryReport`.

Design choices
==============
* **Unknown files** (files in the directory that the manifest does not list, e.g. the user's own
  files or checkpoints of an older run) are left alone and listed in
  :attr:`RecoveryReport.unknown_files`. They are never adopted and never deleted, even when named
  in ``delete`` (that name is skipped with a warning). A checkpoint that finished its rename but
  not its commit is not an unknown file: the journal names it and ``recover()`` adopts it.
* **Corrupt manifest** (not UTF-8, not JSON, wrong format or version, or inconsistent):
  ``recover()`` raises :class:`CorruptManifestError` naming the file, because the manifest holds
  the controller states needed to resume and throwing them away silently is worse than stopping.
  ``recover(discard_corrupt_manifest=True)`` instead moves it aside to
  ``<manifest>.corrupt-<n>``, warns, and starts from an empty manifest (the checkpoint files
  become unknown files, untouched).
* **Protected names** (:meth:`CheckpointStore.protect`, e.g. the checkpoint training resumed
  from): a protected name in ``delete`` is dropped from the delete list with a warning, so its
  file stays on disk *and* in the manifest. Saving over a protected name is refused with
  ``ValueError`` before any I/O (``unprotect`` it first). Protection lives in memory only; the
  resuming process sets it again after ``recover()``.
* **Errors.** Anything that fails during a save is raised as :class:`CheckpointSaveError` (the
  original exception is its ``__cause__``) naming the checkpoint, the file and the step that
  failed, and saying whether the checkpoint was recorded anyway (``committed``). Before raising,
  the store settles the journal as ``recover()`` would, so the last good checkpoint stays listed
  and loadable and no temporary file remains; if even that fails (the disk is still full), the
  store retries on its next use. A file that cannot be deleted is reported with a warning and
  left on disk as an unknown file; the save still succeeds.
* **Payloads are single regular files.** Writers that produce a directory are refused.
* **One writer per directory.** Only one process (rank 0 in a distributed job) may write a given
  directory, and a ``CheckpointStore`` object is not thread-safe. There is no locking: two writers
  would remove each other's temporary files in ``recover()``. Readers in other processes may read
  the manifest at any time (it is replaced atomically).
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
import secrets
import shutil
import stat
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._names import (
    DEFAULT_MANIFEST_NAME,
    TEMP_PREFIX,
    TEMP_TOKEN_HEX,
    check_checkpoint_name,
)
from ._state import NONFINITE, encode_float

__all__ = [
    "DEFAULT_MANIFEST_NAME",
    "TEMP_PREFIX",
    "CheckpointEntry",
    "CheckpointSaveError",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointStoreWarning",
    "CorruptManifestError",
    "RecoveryReport",
]


_FORMAT: Final = "trainctl-checkpoint-manifest"
_VERSION: Final = 1
_FLOAT_TAG: Final = "__trainctl_float__"  # how a non-finite float is spelled inside `state`


# Public records and errors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointEntry:
    """One kept checkpoint, as the manifest records it.

    ``sequence`` increases with every save and is never reused, so entries sort in save order;
    ``size`` is the payload's size in bytes when it was saved (``recover()`` checks it);
    ``metrics`` are the floats given to :meth:`CheckpointStore.save` (NaN and infinities
    included). The saved controller state is read with :meth:`CheckpointStore.load_state`.
    """

    name: str
    sequence: int
    size: int
    metrics: Mapping[str, float] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """What :meth:`CheckpointStore.recover` found and did.

    ``clean`` is true when there was nothing to repair (unknown files do not count: they are
    left alone on purpose).
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
    #: Listed entries whose file was missing, not a regular file, or of the wrong size; dropped
    #: from the manifest (a file that exists is left on disk and appears in ``unknown_files``).
    dropped_entries: tuple[str, ...] = ()
    #: Files the manifest does not know, left alone.
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
    """The checkpoint directory is not in a usable state (see the message for which file)."""


class CorruptManifestError(CheckpointStoreError):
    """The manifest file exists but cannot be trusted: not JSON, wrong format, inconsistent."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"checkpoint manifest {str(path)!r} is corrupt: {reason}. Fix or remove it, or call "
            "recover(discard_corrupt_manifest=True) to move it aside and start an empty manifest"
        )
        self.path = path
        self.reason = reason


class CheckpointSaveError(CheckpointStoreError):
    """A save failed; the original exception is ``__cause__``.

    ``stage`` names the step that failed (see the module docstring), ``path`` the file involved,
    and ``committed`` says whether the new checkpoint is known to be recorded in the manifest
    nonetheless (for example when only the final clean-up failed, or the rename took effect
    before the error). In every case the previously kept
    checkpoints are still listed and loadable.
    """

    def __init__(self, message: str, *, name: str, path: Path, stage: str, committed: bool) -> None:
        super().__init__(message)
        self.name = name
        self.path = path
        self.stage = stage
        self.committed = committed

    @property
    def errno(self) -> int | None:
        """The ``errno`` of the underlying ``OSError`` (e.g. ``errno.ENOSPC``), else ``None``."""
        cause = self.__cause__
        return cause.errno if isinstance(cause, OSError) else None


class CheckpointStoreWarning(UserWarning):
    """Something was skipped or repaired; the message names the file."""


# Names ----------------------------------------------------------------------------------------


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


def _encode_state(value: object, where: str) -> Any:
    """Plain JSON data, with non-finite floats tagged so the manifest stays strict JSON."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else {_FLOAT_TAG: encode_float(f)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} keys must be str (JSON objects), got {type(key).__name__} {key!r}"
                )
            if key == _FLOAT_TAG:
                raise ValueError(f"{where} must not use the reserved key {_FLOAT_TAG!r}")
            out[key] = _encode_state(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode_state(item, f"{where}[{i}]") for i, item in enumerate(value)]
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


def _name_from_json(value: object, where: str) -> str:
    _require(isinstance(value, str), f"{where} is not a string")
    try:
        return check_checkpoint_name(where, value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _record_from_json(value: object, where: str) -> _Record:
    _require(isinstance(value, dict), f"{where} is not an object")
    assert isinstance(value, dict)
    _require(
        set(value) == {"name", "sequence", "size", "metrics", "state"},
        f"{where} has keys {sorted(value)}, expected name, sequence, size, metrics, state",
    )
    name = _name_from_json(value["name"], f"{where}.name")
    sequence, size, raw_metrics = value["sequence"], value["size"], value["metrics"]
    _require(_is_int(sequence) and sequence >= 0, f"{where}.sequence is not an int >= 0")
    _require(_is_int(size) and size >= 0, f"{where}.size is not an int >= 0")
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
        name=name, sequence=sequence, size=size, metrics=types.MappingProxyType(metrics)
    )
    return _Record(entry, state)


def _manifest_from_json(doc: object) -> _Manifest:
    _require(isinstance(doc, dict), "the top level is not a JSON object")
    assert isinstance(doc, dict)
    _require(doc.get("format") == _FORMAT, f"'format' is {doc.get('format')!r}, not {_FORMAT!r}")
    _require(
        doc.get("version") == _VERSION,
        f"'version' is {doc.get('version')!r}; this trainctl reads version {_VERSION}",
    )
    expected = {"format", "version", "next_sequence", "checkpoints", "pending", "trash"}
    _require(set(doc) == expected, f"keys are {sorted(doc)}, expected {sorted(expected)}")
    next_sequence, raw_records, raw_trash = doc["next_sequence"], doc["checkpoints"], doc["trash"]
    _require(_is_int(next_sequence) and next_sequence >= 0, "'next_sequence' is not an int >= 0")
    _require(isinstance(raw_records, list), "'checkpoints' is not a list")
    _require(isinstance(raw_trash, list), "'trash' is not a list")
    records = tuple(_record_from_json(r, f"checkpoints[{i}]") for i, r in enumerate(raw_records))
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
            isinstance(temp, str)
            and temp.startswith(TEMP_PREFIX)
            and "/" not in temp
            and "\\" not in temp
            and "\x00" not in temp,
            "'pending.temp' is not a temporary file name",
        )
        record = _record_from_json(raw_pending["checkpoint"], "pending.checkpoint")
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


def _fsync_file(path: Path) -> int:
    """fsync a file someone else wrote; return its size."""
    # Windows only fsyncs handles opened for writing; POSIX is happy with read-only.
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
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


def _temp_name(final_name: str) -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(TEMP_TOKEN_HEX // 2)}-{final_name}"


def _remove_quietly(path: Path) -> bool:
    """Remove a temporary file (or a directory a writer made); True if nothing is left."""
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# The store ------------------------------------------------------------------------------------


class CheckpointStore:
    """Checkpoint files in one directory, saved atomically and listed in a JSON manifest.

    Args:
        directory: where the checkpoints and the manifest live (created by ``recover()`` if
            missing and ``create`` is true).
        manifest_name: the manifest's file name inside ``directory``; it cannot be used as a
            checkpoint name.
        create: whether ``recover()`` may create ``directory``.

    The constructor does no I/O. Call :meth:`recover` once before anything else. Only one process
    may write a directory (see the module docstring); the object is not thread-safe.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        manifest_name: str = DEFAULT_MANIFEST_NAME,
        create: bool = True,
    ) -> None:
        self._directory = Path(directory)
        self._manifest_name = check_checkpoint_name(
            "'manifest_name'", manifest_name, manifest_name=None
        )
        self._manifest_path = self._directory / manifest_name
        self._create = bool(create)
        self._manifest: _Manifest | None = None  # None until recover()
        self._stale = False  # a failed operation left the in-memory view unsure; re-read first
        self._protected: set[str] = set()

    def __repr__(self) -> str:
        count = "not recovered" if self._manifest is None else f"{len(self._manifest.records)} kept"
        return f"CheckpointStore({str(self._directory)!r}, {count})"

    # -- reading ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def manifest_path(self) -> Path:
        return self._manifest_path

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

    def protect(self, name: str) -> None:
        """Never delete ``name`` (e.g. the checkpoint training resumed from) in this process.

        A protected name in ``delete`` is skipped with a warning; saving over it is refused.
        ``KeyError`` if ``name`` is not listed.
        """
        self._protected.add(self._record(name).entry.name)

    def unprotect(self, name: str) -> None:
        """Undo :meth:`protect` (no error if ``name`` was not protected)."""
        self._protected.discard(name)

    def _ready(self) -> _Manifest:
        if self._manifest is None:
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
                    "call recover()"
                ) from exc
        assert self._manifest is not None
        return self._manifest

    def _record(self, name: str) -> _Record:
        record = self._ready().find(name) if isinstance(name, str) else None
        if record is None:
            raise KeyError(f"no checkpoint named {name!r} in {str(self._manifest_path)!r}")
        return record

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
        controller's ``state_dict()``) are stored in the manifest beside the entry. Saving an
        existing name replaces it atomically; the entry moves to the end of :attr:`entries` (an
        unlisted file of that name is replaced too: the caller asked for that name).
        Names in ``delete`` that are protected or not listed are skipped with a
        :class:`CheckpointStoreWarning`. Returns the checkpoint's final path.

        Raises ``ValueError``/``TypeError`` for bad arguments (before any I/O) and
        :class:`CheckpointSaveError` when the save fails; see the module docstring.
        """
        manifest = self._ready()
        name = check_checkpoint_name(
            "checkpoint name", name, manifest_name=self._manifest_name
        )
        if name in self._protected:
            raise ValueError(
                f"checkpoint {name!r} is protected and cannot be overwritten; call "
                f"unprotect({name!r}) first or save under another name"
            )
        encoded_metrics = _encode_metrics(metrics)
        if state is not None and not isinstance(state, Mapping):
            raise TypeError(f"'state' must be a mapping or None, got {type(state).__name__}")
        encoded_state = _encode_state(state, "'state'")
        if isinstance(delete, str):
            raise TypeError(f"'delete' must be an iterable of names, not the str {delete!r}")
        to_delete = self._deletable(delete, saving=name)

        final = self._directory / name
        temp = self._directory / _temp_name(name)

        def fail(
            stage: str, exc: BaseException, committed: bool, path: Path, repair: str = ""
        ) -> CheckpointSaveError:
            if repair:
                outcome = (
                    f"repairing the manifest also failed ({repair}); the interrupted save is "
                    "finished or undone when the store is next used (or by recover()); the "
                    "previously kept checkpoints are still on disk"
                )
            elif committed:
                outcome = "the checkpoint was recorded nonetheless"
            else:
                outcome = "nothing was recorded; the previously kept checkpoints are intact"
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
            stage = "fsyncing the payload"
            size = _fsync_file(temp)
        except BaseException as exc:
            _remove_quietly(temp)
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
        )
        pending = _Pending(temp.name, _Record(entry, encoded_state), to_delete)
        intent = _Manifest(manifest.records, manifest.next_sequence + 1, pending, manifest.trash)

        # Steps 4-7: a durable manifest may refer to `temp`; on failure settle the journal.
        stage, where = "recording the intent in", self._manifest_path
        try:
            self._write_manifest(intent)
            stage, where = "renaming the payload to", final
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
            else:
                repair = ""
            # Whatever manifest was last read or written says whether the save is recorded.
            current = self._manifest.find(name) if self._manifest is not None else None
            committed = current is not None and current.entry.sequence == entry.sequence
            raise fail(stage, exc, committed, where, repair) from exc
        except BaseException:
            self._stale = True  # e.g. KeyboardInterrupt: settle on next use, like after a crash
            raise
        return final

    def delete(self, names: Iterable[str]) -> tuple[str, ...]:
        """Delete kept checkpoints outside a save; returns the names actually deleted.

        Protected and unlisted names are skipped with a :class:`CheckpointStoreWarning`. The
        names leave the manifest (durably) before their files are unlinked.
        """
        manifest = self._ready()
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
            raise CheckpointStoreError(
                f"deleting {list(to_delete)} in {str(self._directory)!r} failed: {_describe(exc)}"
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
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._manifest_path)
        except BaseException:
            _remove_quietly(temp)
            raise
        self._manifest = manifest  # the new manifest is the one on disk, even if W4 fails
        _fsync_dir(self._directory)

    def _read_manifest(self) -> _Manifest | None:
        """The manifest on disk; ``None`` if there is none. Raises CorruptManifestError."""
        try:
            with open(self._manifest_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
            return _manifest_from_json(doc)
        except UnicodeDecodeError as exc:
            raise CorruptManifestError(self._manifest_path, f"not UTF-8 ({exc})") from None
        except json.JSONDecodeError as exc:
            raise CorruptManifestError(self._manifest_path, f"not JSON ({exc})") from None
        except (_Invalid, ValueError, RecursionError) as exc:
            raise CorruptManifestError(self._manifest_path, str(exc)) from None

    def _resolve_pending(self, manifest: _Manifest) -> tuple[str | None, str | None]:
        """Roll an interrupted save forward or back; returns (completed, discarded) names."""
        pending = manifest.pending
        if pending is None:
            return None, None
        temp = self._directory / pending.temp
        final = self._directory / pending.record.entry.name
        if os.path.lexists(temp):
            # The rename never happened: discard the intent durably, only then remove the file.
            self._write_manifest(dataclasses.replace(manifest, pending=None))
            _remove_quietly(temp)
            return None, pending.record.entry.name
        try:
            st = os.lstat(final)
            renamed = stat.S_ISREG(st.st_mode) and st.st_size == pending.record.entry.size
        except FileNotFoundError:
            renamed = False
        if renamed:
            self._write_manifest(manifest.committed())
            return pending.record.entry.name, None
        # Neither file matches (something outside the store removed them): forget the intent.
        warnings.warn(
            f"an interrupted save of {str(final)!r} left neither its temporary file nor a "
            "matching final file; it is forgotten",
            CheckpointStoreWarning,
            stacklevel=4,
        )
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
        keep = {manifest.pending.temp} if manifest.pending is not None else set()
        removed = []
        for name in sorted(os.listdir(self._directory)):
            if name.startswith(TEMP_PREFIX) and name not in keep:
                if not _remove_quietly(self._directory / name):
                    warnings.warn(
                        f"could not remove temporary file {str(self._directory / name)!r}",
                        CheckpointStoreWarning,
                        stacklevel=4,
                    )
                    continue
                removed.append(name)
        return tuple(removed)

    def _settle(self) -> tuple[str | None, str | None, tuple[str, ...], tuple[str, ...], bool]:
        """Re-read the manifest and finish or undo whatever operation was interrupted.

        Returns (completed save, discarded save, finished deletes, removed temps, manifest found).
        """
        manifest = self._read_manifest()
        found = manifest is not None
        self._manifest = manifest if manifest is not None else _Manifest()
        completed, discarded = self._resolve_pending(self._manifest)
        finished = self._empty_trash()
        removed = self._remove_stray_temps(self._manifest)
        self._stale = False
        return completed, discarded, finished, removed, found

    # -- recovery --------------------------------------------------------------------------------

    def recover(self, *, discard_corrupt_manifest: bool = False) -> RecoveryReport:
        """Load the manifest and make it agree with the directory; call once on start.

        Settles an interrupted save or delete, removes leftover temporary files, and drops
        listed entries whose file is missing or has the wrong size (with a warning naming it).
        Unknown files are reported, never touched. A corrupt manifest raises
        :class:`CorruptManifestError`, unless ``discard_corrupt_manifest`` is true: then it is
        moved to ``<manifest>.corrupt-<n>`` with a warning and an empty manifest is started.
        """
        self._manifest = None  # unusable until this recovery succeeds
        try:
            return self._recover(discard_corrupt_manifest)
        except BaseException:
            self._manifest = None
            raise

    def _recover(self, discard_corrupt_manifest: bool) -> RecoveryReport:
        if self._create:
            os.makedirs(self._directory, exist_ok=True)
        elif not os.path.isdir(self._directory):
            raise FileNotFoundError(
                _errno.ENOENT, "checkpoint directory does not exist", str(self._directory)
            )
        moved_to = None
        try:
            completed, discarded, finished, removed, found = self._settle()
        except CorruptManifestError as exc:
            if not discard_corrupt_manifest:
                raise
            moved_to = self._move_aside()
            warnings.warn(
                f"{exc.reason}: moved the corrupt manifest {str(self._manifest_path)!r} to "
                f"{str(moved_to)!r} and started an empty one; its checkpoints are now unknown "
                "files",
                CheckpointStoreWarning,
                stacklevel=3,
            )
            self._write_manifest(_Manifest())
            completed, discarded, finished, removed, found = self._settle()
            found = True

        manifest = self._manifest
        assert manifest is not None
        kept, dropped = [], []
        for record in manifest.records:
            path = self._directory / record.entry.name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                problem = "is missing"
            else:
                if not stat.S_ISREG(st.st_mode):
                    problem = "is not a regular file"
                elif st.st_size != record.entry.size:
                    problem = f"has {st.st_size} bytes, the manifest recorded {record.entry.size}"
                else:
                    kept.append(record)
                    continue
            dropped.append(record.entry.name)
            warnings.warn(
                f"checkpoint file {str(path)!r} {problem}; dropping it from the manifest",
                CheckpointStoreWarning,
                stacklevel=3,
            )
        if dropped:
            self._write_manifest(dataclasses.replace(manifest, records=tuple(kept)))
        names = {r.entry.name for r in kept}
        unknown = tuple(
            n
            for n in sorted(os.listdir(self._directory))
            if n != self._manifest_name and n not in names and not n.startswith(TEMP_PREFIX)
        )
        self._protected &= names
        return RecoveryReport(
            directory=self._directory,
            manifest_found=found,
            checkpoints=tuple(r.entry.name for r in kept),
            completed_save=completed,
            discarded_save=discarded,
            finished_deletes=finished,
            removed_temp_files=removed,
            dropped_entries=tuple(dropped),
            unknown_files=unknown,
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


def _decode_metric(value: float | str) -> float:
    return NONFINITE[value] if isinstance(value, str) else value


def _reject_constant(token: str) -> Any:
    raise _Invalid(f"contains the non-standard JSON constant {token}")
