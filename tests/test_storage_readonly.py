"""Read-only checkpoint stores: reading a directory never changes it.

Reading used to need ``recover()``, which removes temporary files and can discard a pending save:
one process polling ``recover(); latest()`` made most of another process's saves fail. A store
opened with ``read_only=True`` only reads: no lock, no repair, no directory creation, no write of
any kind, so it works beside a running writer, in a read-only directory and on a full disk.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import json
import os
import stat
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import trainctl.storage as storage
from trainctl.storage import (
    DEFAULT_MANIFEST_NAME,
    LOCK_NAME,
    TEMP_PREFIX,
    CheckpointStore,
    CheckpointStoreError,
    CorruptManifestError,
)

WORKER = Path(__file__).with_name("_storage_rw_worker.py")


def writer(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


def open_store(directory: Path) -> CheckpointStore:
    store = CheckpointStore(directory)
    store.recover()
    return store


def crc(data: bytes) -> str:
    return f"crc32:{zlib.crc32(data):08x}"


class Crash(BaseException):
    """The writer process dies here."""


class CrashAtPayloadRename:
    """Stands in for ``os`` in the store: the payload's rename kills the process, after or
    before it takes effect; everything else is the real ``os``."""

    def __init__(self, renamed: bool) -> None:
        self.renamed = renamed

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        if os.path.basename(os.fspath(dst)) == DEFAULT_MANIFEST_NAME:
            os.replace(src, dst)
            return
        if self.renamed:
            os.replace(src, dst)
        raise Crash


def interrupted_save(directory: Path, monkeypatch: pytest.MonkeyPatch, *, renamed: bool) -> None:
    """``a`` and ``b`` saved, then the save of ``c`` (deleting ``a``) died at its rename: the
    manifest holds the intent; ``c``'s temporary file is still there unless ``renamed``."""
    store = open_store(directory)
    store.save("a", writer(b"aaaa"), state={"n": 1})
    store.save("b", writer(b"bb"), state={"n": 2})
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(storage, "os", CrashAtPayloadRename(renamed))
        store.save("c", writer(b"ccc"), state={"n": 3}, delete=["a"])
    store.close()  # the process died: the operating system released its lock
    pending = json.loads((directory / DEFAULT_MANIFEST_NAME).read_text())["pending"]
    assert pending["checkpoint"]["name"] == "c"
    assert (directory / pending["temp"]).exists() != renamed


def snapshot(directory: Path) -> dict[str, Any]:
    """Everything a write could change: names, types, bytes, modification times."""
    out: dict[str, Any] = {".": os.stat(directory).st_mtime_ns}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        data = (directory / name).read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[name] = (st.st_mode, st.st_mtime_ns, data)
    return out


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextmanager
def writes_fail(
    monkeypatch: pytest.MonkeyPatch, err: int, *, only_space: bool = False
) -> Iterator[list[str]]:
    """Make every way of changing the disk fail with ``err``, as a read-only directory (EACCES,
    EROFS) or a full disk (ENOSPC, ``only_space``: only what needs new space) would, even for
    root. Yields the attempts made."""
    attempts: list[str] = []
    real_open, real_builtin_open = os.open, builtins.open

    def refuse(what: str, target: Any) -> OSError:
        attempts.append(f"{what} {target}")
        return OSError(err, os.strerror(err), str(target))

    def guarded_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        # a full disk still opens existing files for writing; it cannot make new ones
        needs_space = flags & os.O_CREAT and not os.path.lexists(path)
        if flags & _WRITE_FLAGS and (needs_space or not only_space):
            raise refuse("open for writing", path)
        return real_open(path, flags, mode, **kwargs)

    def guarded_builtin_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if set(mode) & set("wax+"):
            raise refuse(f"open({mode!r})", file)
        return real_builtin_open(file, mode, *args, **kwargs)

    def refusing(what: str) -> Callable[..., Any]:
        def call(target: Any = None, *args: Any, **kwargs: Any) -> Any:
            raise refuse(what, target)

        return call

    with monkeypatch.context() as m:
        m.setattr(os, "open", guarded_open)
        m.setattr(builtins, "open", guarded_builtin_open)
        denied = ["write", "pwrite", "mkdir", "makedirs"]
        if not only_space:
            denied += ["ftruncate", "truncate", "replace", "rename", "unlink", "remove", "rmdir"]
            denied += ["fsync"]
        for name in denied:
            m.setattr(os, name, refusing(name))
        if hasattr(storage, "fcntl") and not only_space:  # a reader takes no lock
            m.setattr(storage.fcntl, "flock", refusing("flock"))
        yield attempts


def names(store: CheckpointStore) -> list[str]:
    return [e.name for e in store.entries]


# Interpreting a directory without changing it ---------------------------------------------------


@pytest.mark.parametrize("renamed", [True, False], ids=["renamed", "not-renamed"])
@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES])
def test_a_reader_interprets_an_interrupted_save_in_memory_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renamed: bool, err: int
) -> None:
    interrupted_save(tmp_path, monkeypatch, renamed=renamed)
    expected = ["b", "c"] if renamed else ["a", "b"]
    before = snapshot(tmp_path)
    with writes_fail(monkeypatch, err) as attempts, warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = CheckpointStore(tmp_path, read_only=True)
        report = reader.recover()
        # every read works and agrees
        assert names(reader) == expected and report.checkpoints == tuple(expected)
        assert len(reader) == 2 and ("c" in reader) == renamed and ("a" in reader) != renamed
        assert (report.completed_save, report.discarded_save) == (
            ("c", None) if renamed else (None, "c")
        )
        assert report.removed_temp_files == () and report.finished_deletes == ()
        assert report.unknown_files == ()  # the writer's temp file and victim are not unknown
        latest = reader.latest()
        assert latest is not None and latest.name == expected[-1]
        assert reader.load_state(latest.name) == {"n": 3 if renamed else 2}
        assert reader.get("b").checksum == crc(b"bb") and reader.path("b").read_bytes() == b"bb"
        assert reader.verify(latest.name) is True
        reader.refresh()
        assert names(reader) == expected
        reader.protect("b")  # in memory only
        assert reader.protected == frozenset({"b"})
        assert attempts == []
    assert snapshot(tmp_path) == before
    # the writer's recovery, which does write, reaches the same state
    store = open_store(tmp_path)
    assert names(store) == expected
    store.close()


def test_a_reader_in_a_directory_without_write_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ckpt"
    interrupted_save(directory, monkeypatch, renamed=True)
    os.chmod(directory, 0o555)
    try:
        if os.access(directory, os.W_OK):
            pytest.skip(
                "chmod does not stop this user (root) from writing; "
                "test_a_reader_interprets_an_interrupted_save_in_memory_and_writes_nothing "
                "denies the writes instead"
            )
        before = snapshot(directory)
        reader = CheckpointStore(directory, read_only=True)
        assert reader.recover().completed_save == "c"
        assert names(reader) == ["b", "c"]
        # the writer cannot repair it, and says so clearly
        with pytest.raises(CheckpointStoreError, match="read_only=True") as info:
            CheckpointStore(directory).recover()
        assert info.value.errno in (errno.EACCES, errno.EPERM)
        assert snapshot(directory) == before
    finally:
        os.chmod(directory, 0o755)


def test_a_writer_in_a_read_only_directory_fails_naming_the_stage_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted_save(tmp_path, monkeypatch, renamed=True)
    with writes_fail(monkeypatch, errno.EROFS):
        store = CheckpointStore(tmp_path)
        with pytest.raises(CheckpointStoreError) as info:
            store.recover()
    err = info.value
    assert err.errno == errno.EROFS and isinstance(err.__cause__, OSError)
    assert err.stage == "taking the writer lock in" and err.path == tmp_path / LOCK_NAME
    assert str(tmp_path / LOCK_NAME) in str(err) and "read_only=True" in str(err)
    with pytest.raises(RuntimeError, match=r"call recover\(\)"):
        store.latest()


def test_a_reader_works_on_a_full_disk_where_the_writer_cannot_even_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted_save(tmp_path, monkeypatch, renamed=True)
    with writes_fail(monkeypatch, errno.ENOSPC, only_space=True) as attempts:
        store = CheckpointStore(tmp_path)
        with pytest.raises(CheckpointStoreError, match="free disk space") as info:
            store.recover()  # rolling the save forward needs a manifest write
        assert info.value.errno == errno.ENOSPC
        assert str(tmp_path / DEFAULT_MANIFEST_NAME) in str(info.value)
        with pytest.raises(RuntimeError, match=r"call recover\(\)"):
            store.latest()
        attempts.clear()
        reader = CheckpointStore(tmp_path, read_only=True)
        reader.recover()
        latest = reader.latest()
        assert latest is not None and latest.name == "c" and reader.load_state("c") == {"n": 3}
        assert attempts == []
    store.recover()  # space is back: the writer rolls it forward to the same state
    assert names(store) == names(reader) == ["b", "c"]
    store.close()


def test_a_reader_creates_nothing_and_takes_no_lock(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="read-only store never creates it"):
        CheckpointStore(missing, read_only=True).recover()
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    reader = CheckpointStore(empty, read_only=True)
    report = reader.recover()
    assert not report.manifest_found and report.clean
    assert len(reader) == 0 and reader.latest() is None and reader.entries == ()
    assert os.listdir(empty) == []  # no manifest, no lock file
    # a writer holding the lock does not stop a reader
    store = open_store(empty)
    store.save("a", writer(b"1"))
    reader.refresh()
    assert names(reader) == ["a"]
    assert repr(reader) == f"CheckpointStore({str(empty)!r}, 1 kept, read-only)"
    store.close()


def test_a_reader_refuses_to_save_or_delete(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    store.close()
    before = snapshot(tmp_path)
    reader = CheckpointStore(tmp_path, read_only=True)
    called: list[Path] = []
    with pytest.raises(CheckpointStoreError, match="read-only"):
        reader.save("b", called.append)  # even before recover()
    reader.recover()
    with pytest.raises(CheckpointStoreError, match=r"cannot save: .* is read-only") as info:
        reader.save("b", called.append)
    assert "read_only=False" in str(info.value) and info.value.path == tmp_path
    with pytest.raises(CheckpointStoreError, match=r"cannot delete: .* is read-only"):
        reader.delete(["a"])
    with pytest.raises(CheckpointStoreError, match="read-only and cannot move"):
        reader.recover(discard_corrupt_manifest=True)
    assert called == [] and snapshot(tmp_path) == before
    assert reader.read_only and not store.read_only


def test_refresh_shows_newer_saves_and_keeps_the_last_view_when_it_fails(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    reader = CheckpointStore(tmp_path, read_only=True)
    reader.refresh()  # may replace recover() for a reader
    reader.protect("a")
    store.save("b", writer(b"2"), delete=["a"])
    assert names(reader) == ["a"]  # a snapshot until refreshed
    reader.refresh()
    assert names(reader) == ["b"] and reader.protected == frozenset()
    (tmp_path / DEFAULT_MANIFEST_NAME).write_bytes(b"{")  # someone breaks the manifest
    with pytest.raises(CorruptManifestError):
        reader.refresh()
    assert names(reader) == ["b"]
    store.close()


def test_a_reader_rereads_a_manifest_that_changed_while_it_checked_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    old = store.manifest_path.read_bytes()
    store.save("b", writer(b"2"), delete=["a"])
    new = store.manifest_path.read_bytes()
    store.close()
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    reads = iter([old, new, new, new])  # the writer saved between the first two reads
    monkeypatch.setattr(CheckpointStore, "_read_manifest_bytes", lambda self: next(reads))
    reader = CheckpointStore(tmp_path, read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "a is missing" would be a misreading of the old manifest
        reader.recover()
    assert names(reader) == ["b"]
    # a manifest that never holds still for a whole check is an error, not a guess
    flipping = itertools.cycle([old, new])
    monkeypatch.setattr(CheckpointStore, "_read_manifest_bytes", lambda self: next(flipping))
    with warnings.catch_warnings(), pytest.raises(CheckpointStoreError, match="changed") as info:
        warnings.simplefilter("ignore")
        reader.refresh()
    assert info.value.stage == "reading the manifest" and "refresh()" in str(info.value)
    assert names(reader) == ["b"]


def test_a_reader_reports_user_files_but_not_the_writers_own(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / f"{TEMP_PREFIX}data").mkdir()  # a user's directory with the store's prefix
    (tmp_path / f"{TEMP_PREFIX}0123456789ab-b").write_bytes(b"half")  # a save in flight
    reader = CheckpointStore(tmp_path, read_only=True)
    assert reader.recover().unknown_files == (f"{TEMP_PREFIX}data", "notes.txt")
    store.close()


def test_a_reader_verifies_against_the_current_manifest(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("last", writer(b"v1"))
    reader = CheckpointStore(tmp_path, read_only=True)
    reader.recover()
    store.save("last", writer(b"version 2"))  # replaced since the reader's view
    assert reader.verify("last") is True  # not a false alarm: the reader refreshed
    assert reader.get("last").checksum == crc(b"version 2")
    store.save("gone", writer(b"x"))
    reader.refresh()
    store.delete(["gone"])
    with pytest.raises(KeyError, match="gone"):  # deleted since: no longer listed
        reader.verify("gone")
    store.close()


# A reader process beside a writer process -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_reader_polling_beside_a_writer_never_breaks_it(tmp_path: Path) -> None:
    directory, stop = tmp_path / "ckpt", tmp_path / "stop"
    directory.mkdir()
    reader = subprocess.Popen(
        [sys.executable, str(WORKER), "reader", str(directory), "--stop-file", str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        wrote = subprocess.run(
            [sys.executable, str(WORKER), "writer", str(directory), "--saves", "300", "--keep",
             "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    assert wrote.returncode == 0, wrote.stderr
    result = json.loads(wrote.stdout.splitlines()[-1])
    assert result["errors"] == [] and result["warnings"] == []  # every save succeeded
    assert len(result["saved"]) == 300
    seen = json.loads(out.splitlines()[-1])
    assert seen["violations"] == [], seen["violations"]  # every view was consistent
    # it really read while the writer ran, and saw it progress
    assert seen["polls"] >= 20 and len(seen["newest_ops"]) >= 10, seen
    assert seen["final"] == ["w-0294.bin", "w-0296.bin", "w-0298.bin", "w-last.bin"]
    final = CheckpointStore(directory, read_only=True)
    final.recover()
    assert names(final) == seen["final"] and final.get("w-last.bin").metrics["op"] == 299
