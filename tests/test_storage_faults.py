"""Crash and fault injection for trainctl.storage.

Every file operation of a save (and of a delete) is made to fail in turn, before and after it
takes effect, three ways: an ``OSError`` (the store must report it and repair itself in-process),
a simulated crash (an exception the store does not handle, after which only a fresh store in a
"new process" may touch the directory), and a disk that stays full. Then a real worker process is
SIGKILLed at exact file operations and at random times. After each, a fresh ``recover()`` must see
a directory equal to the manifest, every listed payload complete, and exactly the state from just
before or just after the interrupted operation.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import trainctl.storage as storage
from trainctl.storage import (
    DEFAULT_MANIFEST_NAME,
    LOCK_NAME,
    TEMP_PREFIX,
    CheckpointSaveError,
    CheckpointStore,
    CheckpointStoreError,
    CheckpointStoreWarning,
    RecoveryReport,
)

WORKER_PATH = Path(__file__).with_name("_storage_worker.py")
_spec = importlib.util.spec_from_file_location("_storage_worker", WORKER_PATH)
assert _spec is not None and _spec.loader is not None
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


# Interposing on the store's file operations ----------------------------------------------------


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this point runs in this 'process'."""


@dataclass
class Fault:
    """Fail the ``index``-th file operation, ``before`` it runs or ``after`` it took effect."""

    index: int
    phase: str
    make: Callable[[str, str], BaseException]
    persistent: tuple[str, ...] = ()  # once fired, keep failing every operation of these kinds
    fired: bool = False


class Interposer:
    """Counts the store's file operations (and payload writes) and injects one fault."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.fault = fault
        self.count = 0
        self.log: list[tuple[str, str]] = []

    def hook(self, op: str, target: str, phase: str) -> None:
        fault = self.fault
        hit = fault is not None and (
            self.count == fault.index or (fault.fired and op in fault.persistent)
        )
        if phase == "before":
            if hit and fault is not None and fault.phase == "before":
                fault.fired = True
                self.log.append((op, target))
                self.count += 1
                raise fault.make(op, target)
            return
        self.log.append((op, target))
        self.count += 1
        if hit and fault is not None and fault.phase == "after":
            fault.fired = True
            raise fault.make(op, target)


@contextmanager
def interposed(monkeypatch: pytest.MonkeyPatch, interposer: Interposer) -> Iterator[Interposer]:
    with monkeypatch.context() as m:
        m.setattr(storage, "os", worker.InterposedOS(interposer.hook))
        yield interposer


def normalized(target: str, directory: Path) -> str:
    """Stable spelling of an operation's target: no random tokens, no temporary paths."""
    target = re.sub(re.escape(TEMP_PREFIX) + r"[0-9a-f]{12}-", TEMP_PREFIX + "*-", target)
    return re.sub(rf"(^|:){re.escape(directory.name)}$", r"\1<dir>", target)


# Scenarios: a directory with four checkpoints, then one operation ------------------------------


def data(name: str, version: int) -> bytes:
    return f"{name} v{version}|".encode() * (50 + 10 * version)


def payload_writer(
    name: str, version: int, hook: Callable[[str, str, str], None] | None
) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if hook:
            hook("payload", name, "before")
        with open(path, "wb") as f:
            f.write(data(name, version))
        if hook:
            hook("payload", name, "after")

    return write


BEFORE = [("ckpt-0", 0), ("ckpt-1", 0), ("ckpt-2", 0), ("last", 0)]


def setup(directory: Path) -> None:
    store = CheckpointStore(directory)
    store.recover()
    for name, version in BEFORE:
        store.save(name, payload_writer(name, version, None), state={"version": version})


Action = Callable[[CheckpointStore, Callable[[str, str, str], None] | None], object]


@dataclass(frozen=True)
class Scenario:
    action: Action
    after: list[tuple[str, int]]
    commit_point: tuple[str, str]  # the operation that makes the outcome "after"
    victims: tuple[str, ...]


SCENARIOS: dict[str, Scenario] = {
    "save+delete": Scenario(
        lambda s, h: s.save(
            "ckpt-3", payload_writer("ckpt-3", 1, h), state={"version": 1}, delete=["ckpt-0"]
        ),
        [("ckpt-1", 0), ("ckpt-2", 0), ("last", 0), ("ckpt-3", 1)],
        ("replace", f"{TEMP_PREFIX}*-ckpt-3->ckpt-3"),
        ("ckpt-0",),
    ),
    "overwrite+delete": Scenario(
        lambda s, h: s.save(
            "last", payload_writer("last", 1, h), state={"version": 1}, delete=["ckpt-0"]
        ),
        [("ckpt-1", 0), ("ckpt-2", 0), ("last", 1)],
        ("replace", f"{TEMP_PREFIX}*-last->last"),
        ("ckpt-0",),
    ),
    "delete": Scenario(
        lambda s, h: s.delete(["ckpt-1", "ckpt-2"]),
        [("ckpt-0", 0), ("last", 0)],
        ("replace", f"{TEMP_PREFIX}*-{DEFAULT_MANIFEST_NAME}->{DEFAULT_MANIFEST_NAME}"),
        ("ckpt-1", "ckpt-2"),
    ),
}


def record_operations(scenario: Scenario, directory: Path) -> list[tuple[str, str]]:
    """Run a scenario without faults and list its file operations."""
    setup(directory)
    store = CheckpointStore(directory)
    store.recover()
    interposer = Interposer()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(storage, "os", worker.InterposedOS(interposer.hook))
        scenario.action(store, interposer.hook)
    return [(op, normalized(target, directory)) for op, target in interposer.log]


def _operations() -> dict[str, list[tuple[str, str]]]:
    import tempfile

    out = {}
    for key, scenario in SCENARIOS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out[key] = record_operations(scenario, Path(tmp))
    return out


OPERATIONS = _operations()
CASES = [
    pytest.param(key, index, phase, id=f"{key}-{index:02d}-{phase}-{op}:{target}")
    for key, ops in OPERATIONS.items()
    for index, (op, target) in enumerate(ops)
    for phase in ("before", "after")
]


def expected_outcome(key: str, index: int, phase: str) -> list[tuple[str, int]]:
    """Before the commit point's rename takes effect: the old state; from then on: the new."""
    scenario = SCENARIOS[key]
    commit = OPERATIONS[key].index(scenario.commit_point)
    done = index > commit or (index == commit and phase == "after")
    return scenario.after if done else BEFORE


def test_a_save_performs_the_documented_operations_in_order() -> None:
    """The module docstring's steps, as file operations (a missing fsync would show here)."""
    tmp_ckpt, tmp_manifest = f"{TEMP_PREFIX}*-ckpt-3", f"{TEMP_PREFIX}*-{DEFAULT_MANIFEST_NAME}"

    def fsync(target: str) -> list[tuple[str, str]]:
        return [("open", target), ("fsync", f"fd:{target}"), ("close", f"fd:{target}")]

    def manifest_write() -> list[tuple[str, str]]:  # W1-W4
        return [
            ("open", tmp_manifest),
            ("write", f"fd:{tmp_manifest}"),
            ("fsync", f"fd:{tmp_manifest}"),
            ("close", f"fd:{tmp_manifest}"),
            ("replace", f"{tmp_manifest}->{DEFAULT_MANIFEST_NAME}"),
            *fsync("<dir>"),
        ]

    assert OPERATIONS["save+delete"] == [
        ("payload", "ckpt-3"),  # 2. the caller writes the temporary file
        *fsync(tmp_ckpt),  # 3. made durable
        *manifest_write(),  # 4. the intent
        ("replace", f"{tmp_ckpt}->ckpt-3"),  # 5. rename into place
        *fsync("<dir>"),
        *manifest_write(),  # 6. commit: entry added, victim moved to trash
        ("unlink", "ckpt-0"),  # 7. only now delete
        *fsync("<dir>"),
        *manifest_write(),  # trash cleared
    ]


def recovered_state(directory: Path, *, unknown_ok: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Recover with a fresh store (a new process) and check it against the directory."""
    store = CheckpointStore(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing listed may have gone missing
        report = store.recover()
    names = [e.name for e in store.entries]
    on_disk = set(os.listdir(directory)) - {DEFAULT_MANIFEST_NAME, LOCK_NAME}
    assert not any(n.startswith(TEMP_PREFIX) for n in on_disk), on_disk
    assert on_disk - set(unknown_ok) == set(names), (on_disk, names)
    assert set(report.unknown_files) <= set(unknown_ok)
    manifest = json.loads((directory / DEFAULT_MANIFEST_NAME).read_text())
    assert [c["name"] for c in manifest["checkpoints"]] == names
    assert manifest["pending"] is None and manifest["trash"] == []
    state = []
    for entry in store.entries:
        content = store.path(entry.name).read_bytes()
        version = store.load_state(entry.name)["version"]
        assert content == data(entry.name, version), f"{entry.name} is not complete"
        assert entry.size == len(content)
        state.append((entry.name, version))
    # the store is usable afterwards
    store.save("extra", payload_writer("extra", 9, None), state={"version": 9})
    assert store.path("extra").read_bytes() == data("extra", 9)
    return state


# Simulated crashes at every operation -----------------------------------------------------------


@pytest.mark.parametrize(("key", "index", "phase"), CASES)
def test_crash_at_any_operation_recovers_to_before_or_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, index: int, phase: str
) -> None:
    scenario = SCENARIOS[key]
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    fault = Fault(index, phase, lambda op, target: SimulatedCrash(f"{op} {target}"))
    with interposed(monkeypatch, Interposer(fault)) as interposer, pytest.raises(SimulatedCrash):
        scenario.action(store, interposer.hook)
    expected = expected_outcome(key, index, phase)
    assert recovered_state(tmp_path) == expected
    if expected == BEFORE:  # resuming redoes the operation and reaches the same end state
        store = CheckpointStore(tmp_path)
        store.recover()
        scenario.action(store, None)
        redone = [(e.name, store.load_state(e.name)["version"]) for e in store.entries]
        assert [item for item in redone if item[0] != "extra"] == scenario.after


@pytest.mark.timeout(120)
def test_crash_during_recovery_is_recovered_by_the_next_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash a save at each point, then crash the recovery at each of its points, recover again."""
    checked = 0
    for key in ("save+delete", "overwrite+delete"):
        scenario = SCENARIOS[key]
        for index in range(len(OPERATIONS[key])):
            for phase in ("after",):  # "before" op i is "after" op i - 1
                case = tmp_path / f"{key}-{index}-{phase}"
                setup(case)
                store = CheckpointStore(case)
                store.recover()
                crash = Fault(index, phase, lambda op, target: SimulatedCrash())
                with (
                    interposed(monkeypatch, Interposer(crash)) as ip,
                    pytest.raises(SimulatedCrash),
                ):
                    scenario.action(store, ip.hook)
                snapshot = {p.name: p.read_bytes() for p in case.iterdir()}
                # how many file operations does this recovery perform?
                counter = Interposer()
                with interposed(monkeypatch, counter):
                    CheckpointStore(case).recover()
                for recovery_index in range(counter.count):
                    for p in case.iterdir():  # restore the directory as the crash left it
                        p.unlink()
                    for name, content in snapshot.items():
                        (case / name).write_bytes(content)
                    second = Fault(recovery_index, "after", lambda op, t: SimulatedCrash())
                    with interposed(monkeypatch, Interposer(second)), pytest.raises(SimulatedCrash):
                        CheckpointStore(case).recover()
                    assert recovered_state(case) == expected_outcome(key, index, phase)
                    checked += 1
    assert checked > 50  # the recoveries had real work to do


def test_a_failed_recovery_leaves_the_store_unusable_until_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    commit = OPERATIONS["save+delete"].index(SCENARIOS["save+delete"].commit_point)
    crash = Fault(commit, "after", lambda op, target: SimulatedCrash())
    with interposed(monkeypatch, Interposer(crash)) as ip, pytest.raises(SimulatedCrash):
        SCENARIOS["save+delete"].action(store, ip.hook)
    fresh = CheckpointStore(tmp_path)
    failing = Fault(0, "before", lambda op, target: OSError(errno.EIO, "injected"))
    with (
        interposed(monkeypatch, Interposer(failing)),
        pytest.raises(CheckpointStoreError, match="injected") as info,
    ):
        fresh.recover()  # rolling the interrupted save forward needs a manifest write
    # the OS error is the cause; the message names the stage and the manifest
    assert info.value.errno == errno.EIO and isinstance(info.value.__cause__, OSError)
    assert info.value.stage == "settling the interrupted save of 'ckpt-3' recorded in"
    assert str(tmp_path / DEFAULT_MANIFEST_NAME) in str(info.value)
    with pytest.raises(RuntimeError, match=r"call recover\(\)"):
        fresh.save("x", payload_writer("x", 0, None))
    report = fresh.recover()
    assert report.completed_save == "ckpt-3" and report.finished_deletes == ("ckpt-0",)
    assert recovered_state(tmp_path) == SCENARIOS["save+delete"].after


# Reported I/O errors at every operation ---------------------------------------------------------


@pytest.mark.parametrize(("key", "index", "phase"), CASES)
def test_io_error_at_any_operation_is_reported_and_repaired_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, index: int, phase: str
) -> None:
    scenario = SCENARIOS[key]
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    op, target = OPERATIONS[key][index]
    fault = Fault(index, phase, lambda op, target: OSError(errno.EIO, "injected I/O error"))
    expected = expected_outcome(key, index, phase)
    victim_unlink = op == "unlink" and target in scenario.victims
    with interposed(monkeypatch, Interposer(fault)) as interposer:
        if victim_unlink:
            # The checkpoint is saved; an old file that cannot be deleted only warns.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                scenario.action(store, interposer.hook)
            messages = [str(w.message) for w in caught]
            if phase == "before":
                assert any("could not delete" in m and target in m for m in messages), messages
            else:
                assert messages == []  # it is gone after all
        else:
            with pytest.raises(CheckpointStoreError) as info:
                scenario.action(store, interposer.hook)
            err = info.value
            assert isinstance(err.__cause__, OSError) and "injected I/O error" in str(err)
            if isinstance(err, CheckpointSaveError):
                assert err.errno == errno.EIO
                assert err.committed == (expected == scenario.after)
                assert str(err.path) in str(err)
    # The store repaired itself before reporting: its view matches the disk, no temp files left.
    unknown = (target,) if victim_unlink and phase == "before" else ()
    in_process = [(e.name, store.load_state(e.name)["version"]) for e in store.entries]
    assert in_process == expected
    assert recovered_state(tmp_path, unknown_ok=unknown) == expected


# A disk that fills up and stays full ------------------------------------------------------------

WRITE_CASES = [
    pytest.param(key, index, id=f"{key}-{index:02d}-{target}")
    for key, ops in OPERATIONS.items()
    for index, (op, target) in enumerate(ops)
    if op in ("write", "payload")
]


@pytest.mark.parametrize(("key", "index"), WRITE_CASES)
def test_disk_full_from_any_write_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, index: int
) -> None:
    scenario = SCENARIOS[key]
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    full = Fault(
        index,
        "before",
        lambda op, target: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        persistent=("write", "payload"),
    )
    with interposed(monkeypatch, Interposer(full)) as interposer:
        with pytest.raises(CheckpointStoreError, match="No space left on device"):
            scenario.action(store, interposer.hook)
        # While the disk is full, the store either knows its state or refuses to guess.
        try:
            in_process = [e.name for e in store.entries]
        except CheckpointStoreError as exc:
            assert "call recover()" in str(exc)
            in_process = None
        # Checkpoints the operation did not touch are intact on disk the whole time.
        untouched = {n for n, _ in BEFORE} & {n for n, _ in scenario.after}
        for name in untouched - {"last"}:
            assert (tmp_path / name).read_bytes() == data(name, 0)
    # Space is freed: both the old store object and a new process agree on a consistent state.
    expected = expected_outcome(key, index, "before")
    if in_process is not None:
        assert in_process == [n for n, _ in expected]
    assert [(e.name, store.load_state(e.name)["version"]) for e in store.entries] == expected
    assert recovered_state(tmp_path) == expected


def test_permission_denied_on_rename_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    index = OPERATIONS["overwrite+delete"].index(SCENARIOS["overwrite+delete"].commit_point)
    denied = Fault(
        index,
        "before",
        lambda op, target: PermissionError(errno.EACCES, "Permission denied", target),
    )
    with (
        interposed(monkeypatch, Interposer(denied)) as interposer,
        pytest.raises(CheckpointSaveError, match="Permission denied") as info,
    ):
        SCENARIOS["overwrite+delete"].action(store, interposer.hook)
    assert info.value.errno == errno.EACCES
    assert info.value.stage == "renaming the payload to"
    assert info.value.path == tmp_path / "last"
    assert not info.value.committed
    assert store.path("last").read_bytes() == data("last", 0)
    assert recovered_state(tmp_path) == BEFORE


# CheckpointSaveError.committed: True, False or None ---------------------------------------------

_TMP_MANIFEST_WRITE = ("write", f"fd:{TEMP_PREFIX}*-{DEFAULT_MANIFEST_NAME}")
_SAVE_OPS = OPERATIONS["save+delete"]
_RENAME = _SAVE_OPS.index(SCENARIOS["save+delete"].commit_point)
_INTENT_WRITE = _SAVE_OPS.index(_TMP_MANIFEST_WRITE)
_TRASH_CLEARING_WRITE = len(_SAVE_OPS) - 1 - _SAVE_OPS[::-1].index(_TMP_MANIFEST_WRITE)


@pytest.mark.parametrize(
    ("index", "phase", "committed", "says"),
    [
        (_INTENT_WRITE, "before", False, "nothing was recorded"),
        (_RENAME, "before", False, "the checkpoint was not recorded; repairing the manifest"),
        (_RENAME, "after", None, "it is unknown whether the checkpoint is recorded"),
        (_TRASH_CLEARING_WRITE, "before", True, "the checkpoint was recorded nonetheless"),
    ],
    ids=["intent-not-written", "rename-failed", "renamed-commit-unconfirmed", "committed"],
)
def test_committed_tells_the_truth_while_the_disk_stays_full(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    index: int,
    phase: str,
    committed: bool | None,
    says: str,
) -> None:
    """From the failing operation on, every write fails (the disk is full), so the store cannot
    repair its journal before raising; ``committed`` must still match what recovery does later."""
    scenario = SCENARIOS["save+delete"]
    setup(tmp_path)
    store = CheckpointStore(tmp_path)
    store.recover()
    full = Fault(
        index,
        phase,
        lambda op, target: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        persistent=("write",),
    )
    with (
        interposed(monkeypatch, Interposer(full)) as interposer,
        pytest.raises(CheckpointSaveError) as info,
    ):
        scenario.action(store, interposer.hook)
    err = info.value
    assert err.committed is committed
    assert says in str(err) and "free disk space" in str(err)
    # Space is back: recovery records the save exactly when `committed` did not say False (None:
    # the rename had happened, so it is rolled forward).
    expected = BEFORE if committed is False else scenario.after
    assert [(e.name, store.load_state(e.name)["version"]) for e in store.entries] == expected
    assert recovered_state(tmp_path) == expected


# SIGKILL of a real process ----------------------------------------------------------------------

STEPS, KEEP = 6, 3
KILL_POINTS = 24
RANDOM_KILLS = 8


def run_worker(
    directory: Path, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(WORKER_PATH),
            str(directory),
            "--steps",
            str(STEPS),
            "--keep",
            str(KEEP),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def final_state(directory: Path) -> list[tuple[str, bytes]]:
    store = CheckpointStore(directory)
    store.recover()
    return [(e.name, store.path(e.name).read_bytes()) for e in store.entries]


def check_killed_run(directory: Path, log: Path) -> RecoveryReport:
    """The recovered directory is consistent and as new as the log says it should be."""
    store = CheckpointStore(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointStoreWarning)
        report = store.recover()
    assert report.unknown_files == ()
    names = [e.name for e in store.entries]
    assert set(os.listdir(directory)) - {DEFAULT_MANIFEST_NAME, LOCK_NAME} == set(names)
    ops = []
    for entry in store.entries:
        content = store.path(entry.name).read_bytes()
        assert len(content) == entry.size
        info = worker.parse_payload(content)  # raises on a torn file
        assert info["name"] == entry.name
        assert entry.metrics["op"] == info["op"]
        assert store.load_state(entry.name)["next_op"] == info["op"] + 1
        ops.append(info["op"])
    assert ops == sorted(ops)  # save order is op order
    assert sum(n.startswith("ckpt-") for n in names) <= KEEP  # interrupted deletes were finished
    lines = log.read_text().split() if log.exists() else []
    completed = int(lines[-1]) if lines else -1
    newest = ops[-1] if ops else -1
    assert newest in (completed, completed + 1), (newest, completed)
    return report


@pytest.mark.timeout(120)
def test_sigkill_at_exact_operations_and_random_times(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    counted = run_worker(reference, "--count")
    assert counted.returncode == 0, counted.stderr
    total = json.loads(counted.stdout)["operations"]
    expected = final_state(reference)
    assert [n for n, _ in expected] == ["ckpt-003.bin", "ckpt-004.bin", "ckpt-005.bin", "last.bin"]

    rng = random.Random(20240611)
    exact = [0, *sorted(rng.sample(range(1, total - 1), KILL_POINTS - 2)), total - 1]
    cases: list[tuple[str, list[str], float | None]] = [
        (f"op{i}-{phase}", ["--kill-at", str(i), "--phase", phase], None)
        for i in exact
        for phase in [rng.choice(("before", "after"))]
    ]
    cases += [
        (f"random{k}", ["--chunk-delay", "0.005"], rng.uniform(0.0, 0.25))
        for k in range(RANDOM_KILLS)
    ]

    def one(case: tuple[str, list[str], float | None]) -> str:
        label, args, delay = case
        directory, log = tmp_path / label, tmp_path / f"{label}.log"
        if delay is None:
            killed = run_worker(directory, *args, "--log", str(log))
            assert killed.returncode == -signal.SIGKILL, (label, killed.stderr)
        else:
            cmd = [
                sys.executable,
                str(WORKER_PATH),
                str(directory),
                "--steps",
                str(STEPS),
                "--keep",
                str(KEEP),
                *args,
                "--log",
                str(log),
            ]
            with subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            ) as proc:
                assert proc.stderr is not None
                assert proc.stderr.readline() == "recovered\n"  # imports done, the run begins
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                if proc.wait(timeout=30) == -signal.SIGKILL:
                    label += "-killed"
        if directory.exists():
            report = check_killed_run(directory, log)
            if not report.clean:
                label += "-repaired"
        resumed = run_worker(directory)  # a new process resumes and runs to the end
        assert resumed.returncode == 0, (label, resumed.stderr)
        assert final_state(directory) == expected, label
        return label

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(one, cases))
    assert len(done) == KILL_POINTS + RANDOM_KILLS
    # most random-time kills must land inside the run (the rest finished first: fine, but rare)
    assert sum("-killed" in label for label in done) >= RANDOM_KILLS // 2, done
    # and the exact kill points left recovery real work (temp files, half-done saves, deletes)
    assert sum(label.endswith("-repaired") for label in done) >= KILL_POINTS // 2, done
