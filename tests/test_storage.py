"""Unit and property tests of trainctl.storage (crash-safety tests: test_storage_faults.py)."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainctl.storage as storage
from trainctl.storage import (
    DEFAULT_MANIFEST_NAME,
    LOCK_NAME,
    TEMP_PREFIX,
    CheckpointSaveError,
    CheckpointStore,
    CheckpointStoreError,
    CheckpointStoreWarning,
    CorruptManifestError,
)

# Helpers -------------------------------------------------------------------------------------


def writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return write


def open_store(directory: Path, **kwargs: Any) -> CheckpointStore:
    store = CheckpointStore(directory, **kwargs)
    store.recover()
    return store


def files_in(directory: Path) -> set[str]:
    """The checkpoint files (and anything else) beside the manifest and the writer's lock file."""
    return set(os.listdir(directory)) - {DEFAULT_MANIFEST_NAME, LOCK_NAME}


def listing(directory: Path) -> list[str]:
    """Everything in ``directory`` but the lock file, which a writer's recover() creates."""
    return sorted(set(os.listdir(directory)) - {LOCK_NAME})


def strict_json(path: Path) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {token} in {path}")

    return json.loads(path.read_text("utf-8"), parse_constant=refuse)


def assert_consistent(directory: Path) -> CheckpointStore:
    """A fresh store agrees with the directory without repairing anything."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = CheckpointStore(directory)
        report = fresh.recover()
    assert report.clean, report
    assert report.unknown_files == ()
    assert files_in(directory) == {e.name for e in fresh.entries}
    for entry in fresh.entries:
        assert fresh.path(entry.name).stat().st_size == entry.size
    return fresh


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return open_store(tmp_path / "ckpt")


# Construction and recovery of a fresh directory ----------------------------------------------


def test_constructor_does_no_io(tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_recover_creates_the_directory_and_reports_a_fresh_store(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "a" / "b")
    report = store.recover()
    assert (tmp_path / "a" / "b").is_dir()
    assert report.manifest_found is False
    assert report.checkpoints == ()
    assert report.clean
    assert len(store) == 0
    assert store.latest() is None
    assert store.entries == ()


def test_recover_without_create_refuses_a_missing_directory(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "missing", create=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        store.recover()


def test_using_the_store_before_recover_is_an_api_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(RuntimeError, match=r"call recover\(\)"):
        store.save("a.ckpt", writer(b"x"))
    with pytest.raises(RuntimeError, match=r"call recover\(\)"):
        _ = store.entries
    assert os.listdir(tmp_path) == []


def test_repr_mentions_directory_and_count(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"))
    assert repr(store) == f"CheckpointStore({str(store.directory)!r}, 1 kept)"


# Saving ----------------------------------------------------------------------------------------


def test_save_writes_payload_and_lists_it(store: CheckpointStore) -> None:
    path = store.save("epoch001.ckpt", writer(b"payload-1"), metrics={"val_loss": 0.5})
    assert path == store.directory / "epoch001.ckpt"
    assert path.read_bytes() == b"payload-1"
    assert "epoch001.ckpt" in store
    assert "other" not in store
    assert 3 not in store  # not a str: simply not contained
    assert len(store) == 1
    entry = store.get("epoch001.ckpt")
    assert entry.name == "epoch001.ckpt"
    assert entry.size == len(b"payload-1")
    assert dict(entry.metrics) == {"val_loss": 0.5}
    assert store.latest() == entry
    assert store.path("epoch001.ckpt") == path
    assert files_in(store.directory) == {"epoch001.ckpt"}


def test_writer_gets_a_temporary_path_in_the_directory_that_keeps_the_suffix(
    store: CheckpointStore,
) -> None:
    seen: list[Path] = []

    def write(path: Path) -> None:
        seen.append(path)
        assert isinstance(path, Path)
        assert not (store.directory / "model.weights.h5").exists()
        path.write_bytes(b"w")

    store.save("model.weights.h5", write)
    (temp,) = seen
    assert temp.parent == store.directory
    assert temp.name.startswith(TEMP_PREFIX)
    assert temp.name.endswith("-model.weights.h5")
    assert not temp.exists()


def test_entries_are_in_save_order_with_increasing_sequence(store: CheckpointStore) -> None:
    for name in ["c", "a", "b"]:
        store.save(name, writer(name.encode()))
    assert [e.name for e in store.entries] == ["c", "a", "b"]
    sequences = [e.sequence for e in store.entries]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert store.latest() is not None and store.latest().name == "b"  # type: ignore[union-attr]


def test_sequence_numbers_are_never_reused(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"))
    store.save("b", writer(b"2"), delete=["a"])
    first_b = store.get("b").sequence
    store.save("a", writer(b"3"), delete=["b"])
    assert store.get("a").sequence > first_b


def test_overwrite_replaces_content_and_moves_entry_to_the_end(store: CheckpointStore) -> None:
    store.save("last.ckpt", writer(b"old"), metrics={"step": 1})
    store.save("epoch1.ckpt", writer(b"e1"))
    old_sequence = store.get("last.ckpt").sequence
    store.save("last.ckpt", writer(b"newer"), metrics={"step": 2}, state={"step": 2})
    assert [e.name for e in store.entries] == ["epoch1.ckpt", "last.ckpt"]
    entry = store.get("last.ckpt")
    assert entry.sequence > old_sequence
    assert entry.size == 5
    assert dict(entry.metrics) == {"step": 2.0}
    assert store.load_state("last.ckpt") == {"step": 2}
    assert store.path("last.ckpt").read_bytes() == b"newer"
    assert_consistent(store.directory)


def test_metrics_and_state_round_trip_through_strict_json(store: CheckpointStore) -> None:
    state = {
        "best": math.inf,
        "worst": -math.inf,
        "last": math.nan,
        "history": (1, 2.5, None, True, "x"),
        "nested": {"wait": 3, "values": [math.inf]},
    }
    metrics = {"loss": math.nan, "acc": math.inf, "lr": -math.inf, "epoch": 3}
    store.save("a", writer(b"1"), metrics=metrics, state=state)
    doc = strict_json(store.manifest_path)  # NaN/Infinity tokens would fail here
    assert doc["checkpoints"][0]["metrics"] == {
        "loss": "nan",
        "acc": "inf",
        "lr": "-inf",
        "epoch": 3.0,
    }
    fresh = open_store(store.directory)
    got = fresh.get("a").metrics
    assert math.isnan(got["loss"]) and got["acc"] == math.inf and got["lr"] == -math.inf
    assert got["epoch"] == 3.0 and isinstance(got["epoch"], float)
    loaded = fresh.load_state("a")
    assert loaded["best"] == math.inf and loaded["worst"] == -math.inf
    assert math.isnan(loaded["last"])
    assert loaded["history"] == [1, 2.5, None, True, "x"]  # tuples come back as lists
    assert loaded["nested"] == {"wait": 3, "values": [math.inf]}


def test_load_state_returns_a_fresh_copy_and_none_without_state(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"), state={"kept": ["x"]})
    store.save("b", writer(b"2"))
    first = store.load_state("a")
    first["kept"].append("mutated")
    assert store.load_state("a") == {"kept": ["x"]}
    assert store.load_state("b") is None


def test_entries_are_immutable(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"), metrics={"loss": 1.0})
    entry = store.get("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.metrics["loss"] = 2.0  # type: ignore[index]
    assert hash(entry) == hash(store.get("a"))


def test_unknown_names_raise_key_error_naming_them(store: CheckpointStore) -> None:
    for method in (store.get, store.path, store.load_state, store.protect):
        with pytest.raises(KeyError, match="nope"):
            method("nope")


# Deleting --------------------------------------------------------------------------------------


def test_delete_happens_after_the_new_checkpoint_and_manifest_are_durable(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save("a", writer(b"1"))
    store.save("b", writer(b"2"))
    unlinked: list[str] = []
    real_unlink = os.unlink

    def checking_unlink(path: Any) -> None:
        name = os.path.basename(os.fspath(path))
        if not name.startswith(TEMP_PREFIX):
            # by now the new file and a manifest that lists it (and not the victim) are on disk
            assert (store.directory / "c").read_bytes() == b"3"
            listed = [c["name"] for c in strict_json(store.manifest_path)["checkpoints"]]
            assert listed == ["b", "c"]
            unlinked.append(name)
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", checking_unlink)
    store.save("c", writer(b"3"), delete=["a"])
    monkeypatch.undo()
    assert unlinked == ["a"]
    assert [e.name for e in store.entries] == ["b", "c"]
    assert files_in(store.directory) == {"b", "c"}
    assert strict_json(store.manifest_path)["trash"] == []
    assert_consistent(store.directory)


def test_delete_skips_unlisted_names_with_a_warning_and_leaves_the_file(
    store: CheckpointStore,
) -> None:
    (store.directory / "users-notes.txt").write_text("mine")
    with pytest.warns(CheckpointStoreWarning, match="users-notes.txt"):
        store.save("a", writer(b"1"), delete=["users-notes.txt"])
    assert (store.directory / "users-notes.txt").read_text() == "mine"
    assert [e.name for e in store.entries] == ["a"]


def test_delete_refuses_the_name_being_saved(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"))
    with pytest.raises(ValueError, match="'a'"):
        store.save("a", writer(b"2"), delete=["a"])
    assert store.path("a").read_bytes() == b"1"


def test_delete_must_be_an_iterable_of_names_not_a_str(store: CheckpointStore) -> None:
    with pytest.raises(TypeError, match="delete"):
        store.save("a", writer(b"1"), delete="old")
    with pytest.raises(TypeError, match="names"):
        store.delete("old")


def test_duplicate_names_in_delete_are_deleted_once(store: CheckpointStore) -> None:
    store.save("a", writer(b"1"))
    store.save("b", writer(b"2"), delete=["a", "a"])
    assert [e.name for e in store.entries] == ["b"]


def test_delete_method_removes_listed_checkpoints(store: CheckpointStore) -> None:
    for name in "abc":
        store.save(name, writer(name.encode()))
    assert store.delete(["a", "c"]) == ("a", "c")
    assert [e.name for e in store.entries] == ["b"]
    assert files_in(store.directory) == {"b"}
    assert store.delete([]) == ()
    assert_consistent(store.directory)


def test_protected_checkpoint_is_not_deleted_and_stays_listed(store: CheckpointStore) -> None:
    store.save("resumed.ckpt", writer(b"r"))
    store.save("other.ckpt", writer(b"o"))
    store.protect("resumed.ckpt")
    assert store.protected == frozenset({"resumed.ckpt"})
    with pytest.warns(CheckpointStoreWarning, match="protected checkpoint .*resumed.ckpt"):
        store.save("new.ckpt", writer(b"n"), delete=["resumed.ckpt", "other.ckpt"])
    assert [e.name for e in store.entries] == ["resumed.ckpt", "new.ckpt"]
    assert store.path("resumed.ckpt").read_bytes() == b"r"
    with pytest.warns(CheckpointStoreWarning, match="protected"):
        assert store.delete(["resumed.ckpt"]) == ()
    assert_consistent(store.directory)


def test_protected_checkpoint_cannot_be_overwritten_until_unprotected(
    store: CheckpointStore,
) -> None:
    store.save("last.ckpt", writer(b"resume-point"))
    store.protect("last.ckpt")
    called: list[Path] = []
    with pytest.raises(ValueError, match=r"unprotect\('last.ckpt'\)"):
        store.save("last.ckpt", called.append)
    assert called == []
    store.unprotect("last.ckpt")
    store.save("last.ckpt", writer(b"new"))
    assert store.path("last.ckpt").read_bytes() == b"new"


# Argument checking (before any I/O) ------------------------------------------------------------


BAD_NAMES = [
    "",
    "/etc/passwd",
    "sub/dir.ckpt",
    "..",
    ".",
    "../escape.ckpt",
    "a\\b.ckpt",
    "nul\x00byte",
    TEMP_PREFIX + "x",
    "x" * 300,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_leave_the_directory_are_refused(
    store: CheckpointStore, name: str
) -> None:
    called: list[Path] = []
    with pytest.raises(ValueError) as info:
        store.save(name, called.append)
    assert repr(name)[:60].rstrip("'") in str(info.value)
    assert called == []
    assert listing(store.directory) == []


@pytest.mark.parametrize(
    "name",
    [DEFAULT_MANIFEST_NAME, DEFAULT_MANIFEST_NAME.upper(), DEFAULT_MANIFEST_NAME + ".corrupt-1"],
)
def test_manifest_names_are_reserved(store: CheckpointStore, name: str) -> None:
    with pytest.raises(ValueError, match="reserved for the manifest"):
        store.save(name, writer(b"x"))


def test_custom_manifest_name_is_used_and_reserved(tmp_path: Path) -> None:
    store = open_store(tmp_path, manifest_name="index.json")
    store.save("a", writer(b"1"))
    assert (tmp_path / "index.json").is_file()
    with pytest.raises(ValueError, match="reserved"):
        store.save("index.json", writer(b"x"))
    with pytest.raises(ValueError, match="manifest_name"):
        CheckpointStore(tmp_path, manifest_name="../index.json")


def test_non_str_names_are_type_errors(store: CheckpointStore) -> None:
    with pytest.raises(TypeError, match="checkpoint name must be a str"):
        store.save(Path("a"), writer(b"x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name in 'delete'"):
        store.save("a", writer(b"x"), delete=[1])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"loss": "0.3"}, r"'metrics\['loss'\]' must be a real number"),
        ({"loss": True}, r"'metrics\['loss'\]' must be a real number"),
        ({1: 0.3}, "'metrics' keys must be str"),
        ([("loss", 0.3)], "'metrics' must be a mapping"),
    ],
)
def test_bad_metrics_are_refused_before_io(
    store: CheckpointStore, metrics: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        store.save("a", writer(b"x"), metrics=metrics)
    assert listing(store.directory) == []


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        ({"s": {1, 2}}, TypeError, r"'state'\['s'\] must be plain JSON data"),
        ({"s": {1: "a"}}, TypeError, r"'state'\['s'\] keys must be str"),
        ({"s": [object()]}, TypeError, r"'state'\['s'\]\[0\] must be plain JSON"),
        ({"__trainctl_float__": "nan"}, ValueError, "reserved key"),
        ([1, 2], TypeError, "'state' must be a mapping or None"),
    ],
)
def test_bad_state_is_refused_before_io(
    store: CheckpointStore, state: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.save("a", writer(b"x"), state=state)
    assert listing(store.directory) == []


# Failures of the writer and of the target ------------------------------------------------------


def test_writer_exception_leaves_no_temp_file_and_manifest_untouched(
    store: CheckpointStore,
) -> None:
    store.save("good", writer(b"good"))
    before = store.manifest_path.read_bytes()

    def failing(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file")

    with pytest.raises(CheckpointSaveError) as info:
        store.save("bad", failing)
    err = info.value
    assert isinstance(err.__cause__, RuntimeError)
    assert err.name == "bad" and err.stage == "writing the payload to" and not err.committed
    assert "PytorchStreamWriter" in str(err) and TEMP_PREFIX in str(err)
    assert err.errno is None
    assert files_in(store.directory) == {"good"}
    assert store.manifest_path.read_bytes() == before
    assert [e.name for e in store.entries] == ["good"]


def test_writer_disk_full_names_the_file_and_errno(store: CheckpointStore) -> None:
    store.save("good", writer(b"good"))

    def full(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with pytest.raises(CheckpointSaveError, match="No space left on device") as info:
        store.save("epoch2.ckpt", full)
    assert info.value.errno == errno.ENOSPC
    assert "epoch2.ckpt" in str(info.value)
    assert files_in(store.directory) == {"good"}
    assert store.path("good").read_bytes() == b"good"


def test_writer_interrupt_propagates_unwrapped_and_cleans_up(store: CheckpointStore) -> None:
    def interrupted(path: Path) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.save("a", interrupted)
    assert listing(store.directory) == []
    store.save("a", writer(b"1"))
    assert [e.name for e in store.entries] == ["a"]


def test_writer_that_writes_nothing_is_an_error(store: CheckpointStore) -> None:
    with pytest.raises(CheckpointSaveError, match="did not create"):
        store.save("a", lambda path: None)
    assert listing(store.directory) == []


def test_writer_that_makes_a_directory_is_refused_and_cleaned(store: CheckpointStore) -> None:
    def make_dir(path: Path) -> None:
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"x")

    with pytest.raises(CheckpointSaveError, match="one regular file"):
        store.save("model", make_dir)
    assert listing(store.directory) == []


def test_directory_at_target_path_is_a_clear_error(store: CheckpointStore) -> None:
    store.save("good", writer(b"good"))
    (store.directory / "epoch3.ckpt").mkdir()
    called: list[Path] = []
    with pytest.raises(CheckpointSaveError, match="directory") as info:
        store.save("epoch3.ckpt", called.append)
    assert info.value.errno == errno.EISDIR
    assert str(store.directory / "epoch3.ckpt") in str(info.value)
    assert called == []
    assert [e.name for e in store.entries] == ["good"]
    assert not any(n.startswith(TEMP_PREFIX) for n in os.listdir(store.directory))


# Errors name the path and the stage instead of escaping raw ----------------------------------


def test_a_directory_in_place_of_the_manifest_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / DEFAULT_MANIFEST_NAME
    manifest.mkdir()
    (manifest / "inside.txt").write_text("mine")
    for read_only in (False, True):
        with pytest.raises(CorruptManifestError, match="is a directory, not a file") as info:
            CheckpointStore(tmp_path, read_only=read_only).recover()
        assert info.value.path == manifest and info.value.stage == "reading the manifest"
        assert str(manifest) in str(info.value)
        assert "discard_corrupt_manifest=True" in str(info.value)  # what to do
    with pytest.warns(CheckpointStoreWarning, match="directory"):
        report = CheckpointStore(tmp_path).recover(discard_corrupt_manifest=True)
    assert report.corrupt_manifest_moved_to is not None
    assert (report.corrupt_manifest_moved_to / "inside.txt").read_text() == "mine"  # moved, kept


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_a_file_in_place_of_the_checkpoint_directory_is_a_clear_error(
    tmp_path: Path, read_only: bool
) -> None:
    path = tmp_path / "ckpt"
    path.write_text("not a directory")
    with pytest.raises(CheckpointStoreError) as info:
        CheckpointStore(path, read_only=read_only).recover()
    err = info.value
    assert err.path == path and err.stage == "opening the checkpoint directory"
    assert f"{str(path)!r} exists but is not a directory" in str(err)
    assert "choose another directory" in str(err)
    assert path.read_text() == "not a directory"


def test_a_file_in_the_way_of_creating_the_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "ckpt"
    with pytest.raises(CheckpointStoreError) as info:
        CheckpointStore(target).recover()
    assert info.value.errno == errno.ENOTDIR and isinstance(info.value.__cause__, OSError)
    assert info.value.path == target and str(target) in str(info.value)
    assert info.value.stage == "opening the checkpoint directory"


def _nested(levels: int) -> dict[str, Any]:
    state: dict[str, Any] = {"leaf": 1.0}
    for _ in range(levels - 1):
        state = {"x": state}
    return state


@pytest.mark.parametrize(
    "state",
    [_nested(5000), _nested(101), {"x": [[[[]]]] * 2, "deep": [_nested(100)]}],
    ids=["5000 levels", "101 levels", "lists"],
)
def test_deeply_nested_state_is_a_save_error_before_any_io(
    store: CheckpointStore, state: dict[str, Any]
) -> None:
    called: list[Path] = []
    with pytest.raises(CheckpointSaveError) as info:
        store.save("a.ckpt", called.append, state=state)
    err = info.value
    final = store.directory / "a.ckpt"
    assert err.stage == "checking the state for" and err.path == final
    assert err.committed is False and err.name == "a.ckpt"
    assert str(final) in str(err) and "nested more than 100 levels" in str(err)
    assert "flatter state" in str(err)  # what to do
    assert called == [] and listing(store.directory) == []


def test_a_state_that_contains_itself_is_a_save_error(store: CheckpointStore) -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(CheckpointSaveError, match="contains itself"):
        store.save("a.ckpt", writer(b"1"), state=looped)


def test_a_state_nested_100_levels_is_saved_and_read_back(store: CheckpointStore) -> None:
    store.save("a.ckpt", writer(b"1"), state=_nested(100))
    assert open_store(store.directory).load_state("a.ckpt") == _nested(100)


# Recovery ----------------------------------------------------------------------------------------


def test_recover_deletes_only_temporary_files_it_created_never_a_directory(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    user_dir = tmp_path / f"{TEMP_PREFIX}my-data"
    user_dir.mkdir()
    (user_dir / "important.txt").write_text("keep me")
    look_alike = tmp_path / f"{TEMP_PREFIX}0123456789ab-b"  # the exact pattern, but a directory
    look_alike.mkdir()
    (look_alike / "x").write_text("keep")
    (tmp_path / "target.txt").write_text("keep")
    link = tmp_path / f"{TEMP_PREFIX}0123456789ac-c"
    link.symlink_to(tmp_path / "target.txt")
    not_ours = [  # names a store never makes
        f"{TEMP_PREFIX}notes.txt",
        f"{TEMP_PREFIX}abc-d",  # too few hex digits
        f"{TEMP_PREFIX}0123456789AB-e",  # upper case
        f"{TEMP_PREFIX}0123456789ab-",  # no name
    ]
    for name in not_ours:
        (tmp_path / name).write_text("keep")
    stray = tmp_path / f"{TEMP_PREFIX}0123456789ad-f"  # what a crashed save leaves
    stray.write_bytes(b"torn")
    report = CheckpointStore(tmp_path).recover()
    assert report.removed_temp_files == (stray.name,) and not stray.exists()
    assert set(report.unknown_files) == {
        user_dir.name, look_alike.name, link.name, "target.txt", *not_ours
    }
    assert (user_dir / "important.txt").read_text() == "keep me"
    assert (look_alike / "x").read_text() == "keep"
    assert link.is_symlink() and (tmp_path / "target.txt").read_text() == "keep"
    assert all((tmp_path / name).read_text() == "keep" for name in not_ours)
    assert CheckpointStore(tmp_path).recover().removed_temp_files == ()  # stable




def test_recover_removes_leftover_temporary_files(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    (tmp_path / f"{TEMP_PREFIX}deadbeef0000-b").write_bytes(b"torn")
    (tmp_path / f"{TEMP_PREFIX}deadbeef0001-{DEFAULT_MANIFEST_NAME}").write_bytes(b"{")
    report = CheckpointStore(tmp_path).recover()
    assert set(report.removed_temp_files) == {
        f"{TEMP_PREFIX}deadbeef0000-b",
        f"{TEMP_PREFIX}deadbeef0001-{DEFAULT_MANIFEST_NAME}",
    }
    assert not report.clean
    assert files_in(tmp_path) == {"a"}


def test_recover_drops_missing_files_with_a_warning_naming_them(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    store.save("b", writer(b"2"))
    (tmp_path / "a").unlink()
    fresh = CheckpointStore(tmp_path)
    with pytest.warns(CheckpointStoreWarning, match=r"'.*/a' is missing"):
        report = fresh.recover()
    assert report.dropped_entries == ("a",)
    assert report.checkpoints == ("b",)
    assert [e.name for e in fresh.entries] == ["b"]
    assert [c["name"] for c in strict_json(fresh.manifest_path)["checkpoints"]] == ["b"]
    assert_consistent(tmp_path)


def test_recover_drops_truncated_files_but_leaves_them_on_disk(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"12345"))
    store.save("b", writer(b"2"))
    (tmp_path / "a").write_bytes(b"12")
    with pytest.warns(CheckpointStoreWarning, match="has 2 bytes, the manifest recorded 5"):
        report = CheckpointStore(tmp_path).recover()
    assert report.dropped_entries == ("a",)
    assert report.unknown_files == ("a",)
    assert (tmp_path / "a").read_bytes() == b"12"


def test_recover_drops_entries_replaced_by_directories(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    (tmp_path / "a").unlink()
    (tmp_path / "a").mkdir()
    with pytest.warns(CheckpointStoreWarning, match="not a regular file"):
        report = CheckpointStore(tmp_path).recover()
    assert report.checkpoints == ()


def test_recover_reports_unknown_files_and_leaves_them_alone(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    (tmp_path / "old-run.ckpt").write_bytes(b"mine")
    (tmp_path / "subdir").mkdir()
    report = CheckpointStore(tmp_path).recover()
    assert report.unknown_files == ("old-run.ckpt", "subdir")
    assert report.clean
    assert (tmp_path / "old-run.ckpt").read_bytes() == b"mine"


def test_recover_twice_is_a_no_op(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"), state={"x": 1})
    before = store.manifest_path.read_bytes()
    for _ in range(2):
        report = store.recover()
        assert report.clean and report.checkpoints == ("a",) and report.manifest_found
    assert store.manifest_path.read_bytes() == before


def test_recover_forgets_protection_of_vanished_names(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    store.protect("a")
    (tmp_path / "a").unlink()
    with pytest.warns(CheckpointStoreWarning):
        store.recover()
    assert store.protected == frozenset()


def _valid_doc(tmp_path: Path) -> dict[str, Any]:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"), metrics={"loss": 1.0}, state={"x": 1})
    store.save("b", writer(b"2"))
    doc: dict[str, Any] = strict_json(store.manifest_path)
    return doc


CORRUPTIONS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("wrong format", lambda d: {**d, "format": "something-else"}),
    ("future version", lambda d: {**d, "version": 99}),
    ("missing key", lambda d: {k: v for k, v in d.items() if k != "trash"}),
    ("top level list", lambda d: [d]),
    ("duplicate name", lambda d: {**d, "checkpoints": d["checkpoints"] + d["checkpoints"][:1]}),
    ("bad sequence", lambda d: {**d, "next_sequence": 0}),
    (
        "bad metric string",
        lambda d: {**d, "checkpoints": [{**d["checkpoints"][0], "metrics": {"loss": "low"}}]},
    ),
    (
        "escaping name",
        lambda d: {**d, "checkpoints": [{**d["checkpoints"][0], "name": "../a"}]},
    ),
    ("name in trash and listed", lambda d: {**d, "trash": ["a"]}),
    ("bad pending", lambda d: {**d, "pending": {"temp": "x", "checkpoint": {}, "delete": []}}),
]


@pytest.mark.parametrize(("label", "corrupt"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_structurally_corrupt_manifest_raises_naming_the_file(
    tmp_path: Path, label: str, corrupt: Callable[[dict[str, Any]], Any]
) -> None:
    doc = _valid_doc(tmp_path)
    manifest = tmp_path / DEFAULT_MANIFEST_NAME
    manifest.write_text(json.dumps(corrupt(doc)))
    with pytest.raises(CorruptManifestError) as info:
        CheckpointStore(tmp_path).recover()
    assert str(manifest) in str(info.value)
    assert info.value.path == manifest
    assert isinstance(info.value, CheckpointStoreError)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"format": ', "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"", "not JSON"),
        (b'{"version": NaN}', "NaN"),
    ],
)
def test_unparsable_manifest_raises_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / DEFAULT_MANIFEST_NAME).write_bytes(content)
    with pytest.raises(CorruptManifestError, match=reason) as info:
        CheckpointStore(tmp_path).recover()
    assert str(tmp_path / DEFAULT_MANIFEST_NAME) in str(info.value)
    assert (tmp_path / DEFAULT_MANIFEST_NAME).read_bytes() == content  # left for a human


def test_discarding_a_corrupt_manifest_moves_it_aside_and_starts_empty(tmp_path: Path) -> None:
    _valid_doc(tmp_path)
    manifest = tmp_path / DEFAULT_MANIFEST_NAME
    for n in (1, 2):
        manifest.write_bytes(b"not json")
        store = CheckpointStore(tmp_path)
        with pytest.warns(CheckpointStoreWarning, match=f"corrupt-{n}"):
            report = store.recover(discard_corrupt_manifest=True)
        aside = tmp_path / f"{DEFAULT_MANIFEST_NAME}.corrupt-{n}"
        assert report.corrupt_manifest_moved_to == aside
        assert aside.read_bytes() == b"not json"
        assert len(store) == 0 and not report.clean
        assert {"a", "b"} <= set(report.unknown_files)
        assert strict_json(manifest)["checkpoints"] == []
    assert (tmp_path / "a").read_bytes() == b"1"  # nothing deleted


def test_manifest_read_error_is_a_store_error_naming_the_file_and_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _valid_doc(tmp_path)
    real_open = open

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(file).endswith(DEFAULT_MANIFEST_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(CheckpointStoreError, match=DEFAULT_MANIFEST_NAME) as info:
        CheckpointStore(tmp_path).recover()
    err = info.value
    assert isinstance(err.__cause__, PermissionError) and err.errno == errno.EACCES
    assert err.stage == "reading the manifest" and err.path == tmp_path / DEFAULT_MANIFEST_NAME
    assert "reading the manifest" in str(err) and "read_only=True" in str(err)  # what to do


def test_module_imports_only_the_standard_library() -> None:
    """storage, and the two sibling modules it may import, use only the standard library."""
    import ast
    import sys

    package = Path(storage.__file__).parent
    siblings = {"_names", "_state"}
    pending, checked, imported = ["storage"], set(), set()
    while pending:
        module = pending.pop()
        if module in checked:
            continue
        checked.add(module)
        tree = ast.parse((package / f"{module}.py").read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 and node.module in siblings, (module, ast.unparse(node))
                pending.append(node.module)
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert checked <= {"storage", *siblings}


# Property test: a retention rule against an in-memory model --------------------------------------

KEEP = 3

Op = tuple[str, int]
ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 1)),  # 1: also a new "best"
        st.tuples(st.just("overwrite"), st.integers(0, 10)),
        st.tuples(st.just("delete"), st.integers(0, 10)),
        st.tuples(st.just("protect"), st.integers(0, 10)),
        st.tuples(st.just("unprotect"), st.integers(0, 10)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=40,
)


class Model:
    """What the directory should hold: names in save order with their payloads and states."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}  # name -> (payload, step in its state)
        self.protected: set[str] = set()
        self.step = 0

    def saved(self, name: str, data: bytes, deleted: list[str] = []) -> None:  # noqa: B006
        self.files.pop(name, None)  # an overwrite moves to the end
        self.files[name] = (data, self.step)
        for victim in deleted:
            if victim not in self.protected:
                del self.files[victim]


def check_against_model(store: CheckpointStore, model: Model) -> None:
    names = [e.name for e in store.entries]
    assert names == list(model.files)
    assert files_in(store.directory) == set(model.files)
    if store.manifest_path.exists():  # a store that never saved has not written one yet
        on_disk = strict_json(store.manifest_path)
        assert [c["name"] for c in on_disk["checkpoints"]] == names
        assert on_disk["pending"] is None and on_disk["trash"] == []
    else:
        assert names == []
    for name, (data, step) in model.files.items():
        assert store.path(name).read_bytes() == data
        assert store.get(name).size == len(data)
        assert store.load_state(name) == {"step": step}


def run_operation(store: CheckpointStore, model: Model, kind: str, arg: int) -> CheckpointStore:
    existing = list(model.files)
    target = existing[arg % len(existing)] if existing else None
    if kind == "step":
        model.step += 1
        name = f"epoch{model.step:03d}.ckpt"
        epochs = [n for n in model.files if n.startswith("epoch")] + [name]
        victims = epochs[:-KEEP]  # keep-last-3; "best.ckpt" is pinned (never in the list)
        data = f"{name}:{model.step}".encode()
        store.save(name, writer(data), state={"step": model.step}, delete=victims)
        model.saved(name, data, victims)
        if arg:  # a new best: overwrite the pinned file
            data = f"best:{model.step}".encode() * (model.step % 3 + 1)
            if "best.ckpt" in model.protected:
                with pytest.raises(ValueError, match="protected"):
                    store.save("best.ckpt", writer(data), state={"step": model.step})
            else:
                store.save("best.ckpt", writer(data), state={"step": model.step})
                model.saved("best.ckpt", data)
    elif kind == "overwrite" and target is not None and target not in model.protected:
        data = model.files[target][0] + b"+"
        store.save(target, writer(data), state={"step": model.step})
        model.saved(target, data)
    elif kind == "delete" and target is not None:
        deleted = store.delete([target])
        if target in model.protected:
            assert deleted == ()
        else:
            assert deleted == (target,)
            del model.files[target]
    elif kind == "protect" and target is not None:
        store.protect(target)
        model.protected.add(target)
    elif kind == "unprotect" and target is not None:
        store.unprotect(target)
        model.protected.discard(target)
    elif kind == "reopen":  # a new process: protection is per process
        store = CheckpointStore(store.directory)
        report = store.recover()
        assert report.clean and report.unknown_files == ()
        model.protected.clear()
    return store


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_random_operations_keep_disk_manifest_and_model_equal(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointStoreWarning)  # protected deletes warn
        store = open_store(Path(tmp))
        model = Model()
        for kind, arg in ops:
            store = run_operation(store, model, kind, arg)
            check_against_model(store, model)
