"""The writer lock of trainctl.storage: one writing process per checkpoint directory.

Two processes that both wrote one directory used to report every save as successful while the
manifest silently lost some of them (each replaced the other's manifest and removed the other's
temporary files). Now ``recover()`` takes an advisory lock on ``.trainctl-lock`` and the second
writer fails before touching anything, naming the directory and the holder.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import trainctl.storage as storage
from trainctl._names import name_problem
from trainctl.storage import (
    DEFAULT_MANIFEST_NAME,
    LOCK_NAME,
    CheckpointStore,
    CheckpointStoreError,
    CheckpointStoreLockedError,
    CheckpointStoreWarning,
    CorruptManifestError,
)

fcntl = pytest.importorskip("fcntl", reason="the writer lock uses flock (not on Windows)")

WORKER = Path(__file__).with_name("_storage_rw_worker.py")


def writer(data: bytes) -> Any:
    return lambda path: path.write_bytes(data)


def open_store(directory: Path) -> CheckpointStore:
    store = CheckpointStore(directory)
    store.recover()
    return store


def lock_is_held(directory: Path) -> bool:
    """Whether some open file holds the directory's lock (a new open file conflicts with it even
    inside this process: flock locks belong to open files, not processes)."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def listed(directory: Path) -> list[str]:
    """The names the manifest lists, read without the lock (a read-only store)."""
    reader = CheckpointStore(directory, read_only=True)
    reader.recover()
    return [e.name for e in reader.entries]


def start_writer(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), "writer", str(directory), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """Wait for a worker; its exit code and its last output line (JSON)."""
    out, err = proc.communicate(timeout=timeout)
    lines = out.splitlines()
    assert lines, err
    result: dict[str, Any] = json.loads(lines[-1])
    return proc.returncode, result


def run_writer(directory: Path, *args: str) -> tuple[int, dict[str, Any]]:
    return finish(start_writer(directory, *args))


# In one process ----------------------------------------------------------------------------------


def test_the_lock_file_name_is_reserved(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    before = (tmp_path / LOCK_NAME).read_bytes()
    for name in (LOCK_NAME, LOCK_NAME.upper()):  # .TRAINCTL-LOCK is the same file on macOS
        with pytest.raises(ValueError, match="reserved for the store's lock file"):
            store.save(name, writer(b"x"))
        with pytest.raises(ValueError, match="reserved for the store's lock file"):
            store.delete([name])
    # the policy applies the same rule, and no manifest may take the name either
    assert name_problem(LOCK_NAME) is not None
    with pytest.raises(ValueError, match="manifest_name"):
        CheckpointStore(tmp_path, manifest_name=LOCK_NAME)
    assert (tmp_path / LOCK_NAME).read_bytes() == before


def test_recover_takes_the_lock_naming_the_holder_and_close_releases_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()  # the constructor does no I/O
    store.recover()
    assert lock_is_held(tmp_path)
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder == {"pid": os.getpid(), "hostname": socket.gethostname()}
    store.save("a", writer(b"1"))
    store.close()
    assert not lock_is_held(tmp_path)
    with pytest.raises(RuntimeError, match=r"closed; call recover\(\)"):
        store.latest()
    with pytest.raises(RuntimeError, match="closed"):
        store.save("b", writer(b"2"))
    assert repr(store) == f"CheckpointStore({str(tmp_path)!r}, closed)"
    store.close()  # a second close is harmless
    store.recover()  # reopening takes the lock again
    assert lock_is_held(tmp_path) and [e.name for e in store.entries] == ["a"]
    store.close()


def test_a_with_block_releases_the_lock_even_when_it_raises(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), CheckpointStore(tmp_path) as store:
        store.recover()
        store.save("a", writer(b"1"))
        assert lock_is_held(tmp_path)
        _ = 1 / 0
    assert not lock_is_held(tmp_path)
    with CheckpointStore(tmp_path) as again:
        assert again.recover().checkpoints == ("a",)


def test_a_garbage_collected_store_releases_the_lock(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert lock_is_held(tmp_path)
    del store
    gc.collect()
    assert not lock_is_held(tmp_path)


def test_store_objects_of_one_process_share_its_lock(tmp_path: Path) -> None:
    """A resumed run may open the directory again in the same process: that is one writer."""
    first = open_store(tmp_path)
    first.save("a", writer(b"1"))
    second = CheckpointStore(f"{tmp_path}{os.sep}.")  # the same directory, spelled differently
    assert second.recover().checkpoints == ("a",)
    first.close()
    assert lock_is_held(tmp_path)  # still held for `second`
    second.save("b", writer(b"2"))
    second.close()
    assert not lock_is_held(tmp_path)


def test_a_failed_recovery_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_MANIFEST_NAME).write_bytes(b"not json")
    store = CheckpointStore(tmp_path)
    with pytest.raises(CorruptManifestError):
        store.recover()
    assert not lock_is_held(tmp_path)  # an unusable store does not keep other writers out


def test_a_file_system_without_locks_warns_and_works_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(storage.fcntl, "flock", unsupported)
    store = CheckpointStore(tmp_path)
    with pytest.warns(CheckpointStoreWarning, match=f"{tmp_path}.*does not support file locks"):
        store.recover()
    store.save("a", writer(b"1"))
    assert [e.name for e in store.entries] == ["a"]
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_may_not_write_with_its_parents_lock(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a", writer(b"1"))
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 10
        try:
            try:
                store.save("b", writer(b"2"))
            except CheckpointStoreError as exc:
                code = 0 if "fork" in str(exc) and "recover()" in str(exc) else 11
            latest = store.latest()
            if code == 0 and (latest is None or latest.name != "a"):
                code = 12  # reading is still fine
            try:
                CheckpointStore(tmp_path).recover()  # taking the lock itself: the parent has it
            except CheckpointStoreLockedError as exc:
                code = code if exc.pid == os.getppid() else 13
            else:
                code = 14
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lock_is_held(tmp_path)  # the child closed only its copy of the descriptor
    store.save("b", writer(b"2"))
    assert [e.name for e in store.entries] == ["a", "b"]
    store.close()


# Real processes ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_second_process_fails_clearly_and_writes_after_the_first_closes(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("mine", writer(b"1"))
    code, out = run_writer(tmp_path, "--saves", "3", "--prefix", "other")
    assert code == 3, out
    message = out["locked_out"]
    # the directory, the holder, and what to do
    assert f"checkpoint directory {str(tmp_path)!r} is locked by another writer" in message
    assert f"process {os.getpid()} on host {socket.gethostname()!r}" in message
    assert "read_only=True" in message and "close()" in message
    assert (out["pid"], out["hostname"]) == (os.getpid(), socket.gethostname())
    assert [e.name for e in store.entries] == ["mine"]  # it changed nothing
    store.close()
    code, out = run_writer(tmp_path, "--saves", "3", "--prefix", "other")
    assert code == 0 and out["errors"] == [] and out["warnings"] == []
    assert listed(tmp_path) == ["mine", "other-0000.bin", "other-0001.bin", "other-0002.bin"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_two_writers_at_once_the_second_fails_and_sequential_writers_work(tmp_path: Path) -> None:
    first = start_writer(tmp_path, "--saves", "150", "--prefix", "a", "--hold")
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline() == "locked\n"
    code, second = run_writer(tmp_path, "--saves", "150", "--prefix", "b")
    assert code == 3 and second["pid"] == first.pid
    assert f"process {first.pid} " in second["locked_out"]
    first.stdin.write("\n")  # now let the holder save
    first.stdin.flush()
    code, done_a = finish(first)
    assert code == 0 and done_a["errors"] == [] and len(done_a["saved"]) == 150
    assert listed(tmp_path) == done_a["saved"]
    code, done_b = run_writer(tmp_path, "--saves", "150", "--prefix", "b")  # after the first
    assert code == 0 and done_b["errors"] == [] and len(done_b["saved"]) == 150
    assert listed(tmp_path) == done_a["saved"] + done_b["saved"]  # all 300, in save order


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_writers_released_together_never_lose_a_save_they_reported(tmp_path: Path) -> None:
    """The reported bug: 2 x 150 saves "succeeded", the manifest listed 170."""
    procs = [start_writer(tmp_path, "--saves", "150", "--prefix", p, "--go") for p in "ab"]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [finish(proc) for proc in procs]
    reported = [name for _, r in results for name in r.get("saved", [])]
    assert sorted(listed(tmp_path)) == sorted(reported)  # every reported save is listed
    for code, result in results:
        if "locked_out" in result:  # lost the race for the lock: failed before saving anything
            assert code == 3 and "is locked by another writer" in result["locked_out"]
        else:
            assert code == 0 and result["errors"] == [] and len(result["saved"]) == 150
    assert len(reported) in (150, 300)  # one locked out, or the second came after the first


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    proc = start_writer(tmp_path, "--saves", "5", "--hold")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    assert lock_is_held(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not lock_is_held(tmp_path)  # the operating system released it with the process
    store = open_store(tmp_path)  # the resumed run takes it
    store.save("a", writer(b"1"))
    store.close()
