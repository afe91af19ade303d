"""``trainctl inspect PATH``: why a run stopped, its best epoch, its checkpoints, where it resumes.

:func:`inspect_run` reads a run and returns plain data (JSON-safe: ``json.dumps`` writes it as it
is); :func:`render_report` turns that into the text ``trainctl inspect`` prints. ``PATH`` may be:

==============================  ==================================================================
PATH                            what is read
==============================  ==================================================================
a checkpoint store directory    its manifest (``trainctl-manifest.json``), through
                                ``CheckpointStore(PATH, read_only=True)``: the kept checkpoints
                                with their metrics, and the controller state saved with the
                                checkpoint a resume would load; any adapter's store (torch,
                                Keras, Lightning, a plain loop)
a ``.pt`` / ``.ckpt`` file      a checkpoint written by ``TorchController`` or Lightning's
                                ``ControllerCallback``: the controller state inside it (needs
                                torch, imported only then; read with ``weights_only=True``)
a decision log                  ``.jsonl`` (:class:`trainctl.DecisionLog`) or ``.csv``
``trainctl-manifest.json``      as its directory
a directory without manifest    the decision log in it, if there is one
==============================  ==================================================================

**Strictly read-only.** Nothing is written, created, renamed, locked or repaired: the store is a
read-only reader (an interrupted save is interpreted in memory, as the writer's next
``recover()`` would settle it, and reported in the notes), the decision log is read with
:func:`trainctl.read_log`, and a checkpoint file is only loaded.

**Decision log convention.** Beside a store (or a checkpoint file), a decision log is found in
the same directory, not below it: every ``*.jsonl`` file whose first line is a decision-log
header (``"format": "trainctl.decision-log"``) and every ``*.csv`` file whose first row starts
with a decision log's columns (``clock,round,epoch,optimizer_steps,stop,lr_changed``). Hidden
files (temporary files among them) are skipped. When there are several, the one whose header
describes the checkpoints' configuration is used (else the first by name); the others are named
in the notes. ``examples/torch_loop.py`` writes ``decisions.jsonl`` in its checkpoint directory.

**What is reported** (the keys of the returned dict):

- ``kind`` (``"store"``, ``"checkpoint"`` or ``"log"``), ``path``, ``source`` (a description);
- ``controller``: the policies' labels, the schedule and its clock, and ``rebuilt``: whether
  :meth:`trainctl.Controller.from_state_dict` could rebuild it (a policy type that is not
  registered or imported cannot be; everything else is then read from the raw state);
- ``progress``: rounds, the last epoch, optimizer steps and the rate(s) in force;
- ``stopped`` and ``stop``: ``epoch``, ``clock`` (``"round"``, ``"optimizer_step"``, or
  ``None`` when a state alone cannot tell), ``reasons`` (``source``, ``event``, ``message``) of
  the policies that stopped the run, and ``source`` (the checkpoint or log it was read from);
- ``best``: ``value`` and ``epoch`` of the best monitored value, the ``policy`` that tracks it
  (the first whose state has a ``best`` and a ``best_epoch``, e.g. :class:`trainctl.EarlyStopping`;
  else the checkpoint policy's best), its ``monitor``, ``checkpoint`` (the kept file of that
  epoch, or ``None``) and ``source``;
- ``kept``: the kept checkpoints in save order (from the manifest; for a single file, the
  checkpoint policy's record; for a log alone, its saves less its deletes), each with ``epoch``,
  ``score`` (the checkpoint policy's monitored value), ``metrics``, ``size`` and ``role``
  (``"best"``, ``"last"``, or ``"best weights"`` for the Keras adapter's ``trainctl-best``
  entry);
- ``resume``: ``checkpoint`` and ``path`` a resume would load, ``epoch`` (the first epoch it
  trains), ``epochs_done`` (:attr:`trainctl.effects.Resume.epoch`), ``optimizer_steps`` and
  ``stopped``, by the adapters' own rule (:meth:`trainctl.effects.EffectsRunner.latest` and
  :meth:`~trainctl.effects.EffectsRunner.where_to_start`, given the rebuilt controller, or
  one without policies that holds only the saved clocks when it cannot be rebuilt); ``None``
  for a log alone;
- ``log`` and ``rates``: the decision log used and the rate history (the rate of every param
  group after each round whose rate differed from the round before, and what changed it);
- ``notes``: anything odd (an interrupted save, dropped entries, a log that goes further than the
  latest checkpoint, a controller that could not be rebuilt).

Every epoch in the report counts from 1 (:func:`trainctl.epoch_number`), as file names' ``{epoch}``
and every message do; non-finite numbers are the strings ``"nan"``, ``"inf"``, ``"-inf"``. When
the log goes further than the latest checkpoint (a run killed between checkpoints), ``stop`` and
``best`` come from the log, and ``source`` in each says which.

A path that is none of the above raises :class:`InspectError`, one line naming the path and what
was expected.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ._controller import Controller
from ._decisions import epoch_after, epoch_number, number_text
from ._log import LOG_FORMAT, LogError, read_log
from ._names import DEFAULT_MANIFEST_NAME
from ._state import NONFINITE, StateError, encode_float
from .effects import BEST_WEIGHTS_ENTRY, EffectsRunner
from .storage import CheckpointStore, CheckpointStoreError

__all__ = ["EXPECTED", "InspectError", "find_logs", "inspect_run", "load_log", "render_report"]

#: What ``trainctl inspect`` accepts, for error messages.
EXPECTED = (
    "a checkpoint store directory (with trainctl-manifest.json), a .pt/.ckpt checkpoint written "
    "by a trainctl adapter, or a decision log (.jsonl/.csv)"
)

#: The first columns of a CSV decision log (``trainctl._log``'s table).
_CSV_COLUMNS = ("clock", "round", "epoch", "optimizer_steps", "stop", "lr_changed")
_RATE_EVENTS = frozenset({"reduced_lr", "at_min_lr"})
_STOP_EVENTS = frozenset(
    {"patience_exhausted", "non_finite", "stopping_threshold", "divergence_threshold"}
)
_QUIET_EVENTS = frozenset({"finite", "missing_metric"})
_TORCH_FORMAT = "trainctl.torch.checkpoint"  # trainctl.adapters.torch.CHECKPOINT_FORMAT
_CONTROLLER_FORMAT = "trainctl.Controller"


class InspectError(ValueError):
    """``trainctl inspect`` cannot read the path: one line naming it and what was expected."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


# -- the entry point ------------------------------------------------------------------------------


def inspect_run(path: str | Path) -> dict[str, Any]:
    """Read the run at ``path`` without changing anything; see the module docstring for what
    ``path`` may be and what the returned dict holds. Raises :class:`InspectError`."""
    p = Path(path)
    try:
        if p.is_dir():
            if (p / DEFAULT_MANIFEST_NAME).is_file():
                return _inspect_store(p)
            logs = find_logs(p)
            if logs:
                report = _inspect_log(logs[0])
                report["notes"].extend(f"another decision log here: {other}" for other in logs[1:])
                report["notes"].append(
                    f"no {DEFAULT_MANIFEST_NAME} here: no checkpoint save was completed in this "
                    "directory; the kept checkpoints are the ones the log asked for"
                )
                return report
            raise InspectError(
                p, f"{str(p)!r} is a directory without a {DEFAULT_MANIFEST_NAME} or a decision "
                f"log; expected {EXPECTED}"
            )
        if p.is_file():
            if p.name == DEFAULT_MANIFEST_NAME:
                return _inspect_store(p.parent)
            if p.suffix.lower() in (".jsonl", ".csv"):
                return _inspect_log(p)
            if _looks_like_torch(p):
                return _inspect_file(p)
            raise InspectError(
                p, f"{str(p)!r} is not something trainctl inspect reads; expected {EXPECTED}"
            )
        if p.exists():
            raise InspectError(p, f"{str(p)!r} is not a file or a directory; expected {EXPECTED}")
        raise InspectError(p, f"{str(p)!r} does not exist; expected {EXPECTED}")
    except InspectError:
        raise
    except (OSError, CheckpointStoreError, LogError, UnicodeDecodeError) as exc:
        text = " ".join(str(exc).split())
        raise InspectError(p, f"{str(p)!r} cannot be read: {text}") from exc


def find_logs(directory: str | Path) -> list[Path]:
    """The decision logs directly inside ``directory``, by name (the convention in the module
    docstring); only each file's first line is read."""
    d = Path(directory)
    found = []
    for entry in sorted(d.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if _is_log_name(entry):
            found.append(entry)
    return found


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.readline(1 << 20)


def _is_jsonl_log(path: Path) -> bool:
    try:
        head = json.loads(_first_line(path))
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and head.get("clock") == "header" and (
        head.get("format") == LOG_FORMAT
    )


def _is_csv_log(path: Path) -> bool:
    try:
        row = next(csv.reader([_first_line(path)]), [])
    except (OSError, csv.Error):
        return False
    return tuple(row[: len(_CSV_COLUMNS)]) == _CSV_COLUMNS


def _looks_like_torch(path: Path) -> bool:
    """A torch file: a zip archive (torch >= 1.6) or a pickle, or a .pt/.ckpt/.pth name."""
    if path.suffix.lower() in (".pt", ".ckpt", ".pth"):
        return True
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic == b"PK\x03\x04" or magic[:1] == b"\x80"


# -- a report -------------------------------------------------------------------------------------


def _new_report(path: Path, kind: str, source: str) -> dict[str, Any]:
    return {
        "path": str(path),
        "kind": kind,
        "source": source,
        "controller": None,
        "progress": None,
        "stopped": None,
        "stop": None,
        "best": None,
        "kept": [],
        "resume": None,
        "log": None,
        "rates": None,
        "notes": [],
    }


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats as strings."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    """A float from the plain data of a state or a log (``"nan"`` etc. included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value in NONFINITE:
            return NONFINITE[value]
        with contextlib.suppress(ValueError):
            return float(value)
    return None


def _epoch(index: Any) -> int | None:
    return epoch_number(index) if isinstance(index, int) and not isinstance(index, bool) else None


# -- a controller state ---------------------------------------------------------------------------


class _SavedPolicy(NamedTuple):
    """One policy as a saved controller state records it: its configuration and its state."""

    config: Mapping[str, Any]
    state: Mapping[str, Any]


class _State:
    """A saved controller state, read raw; rebuilt into a Controller when that is possible."""

    def __init__(self, state: Mapping[str, Any], notes: list[str]) -> None:
        self.raw = state
        entries = state.get("policies")
        self.entries: list[Mapping[str, Any]] = [
            e for e in (entries if isinstance(entries, list) else []) if isinstance(e, Mapping)
        ]
        self.controller: Controller | None = None
        try:
            self.controller = Controller.from_state_dict(state)
        except Exception as exc:  # refused (StateError) or malformed: read the raw state
            notes.append(
                f"the controller could not be rebuilt from its saved state ({exc}); what follows "
                "is read from the raw state"
            )

    def configs(self) -> list[Mapping[str, Any]]:
        return [
            e["config"] if isinstance(e.get("config"), Mapping) else {} for e in self.entries
        ]

    def states(self) -> list[Mapping[str, Any]]:
        return [e["state"] if isinstance(e.get("state"), Mapping) else {} for e in self.entries]

    def labels(self) -> list[str]:
        if self.controller is not None:
            return list(self.controller.labels)
        return [_raw_label(c) for c in self.configs()]

    def describe(self) -> dict[str, Any]:
        return {
            "policies": self.labels(),
            "schedule": self.raw.get("schedule"),
            "schedule_clock": self.raw.get("schedule_clock"),
            "rebuilt": self.controller is not None,
        }

    def progress(self) -> dict[str, Any]:
        lr = self.raw.get("lr")
        return {
            "rounds": self.raw.get("rounds"),
            "epoch": _epoch(self.raw.get("epoch")),
            "optimizer_steps": self.raw.get("optimizer_steps"),
            "lr": None if lr is None else (lr if isinstance(lr, list) else [lr]),
        }

    def checkpoint_policy(self) -> _SavedPolicy | None:
        """The config and state of the first checkpoint policy (its state keeps ``kept``)."""
        for config, state in zip(self.configs(), self.states(), strict=True):
            if isinstance(state.get("kept"), list):
                return _SavedPolicy(config=config, state=state)
        return None

    def stop(self) -> dict[str, Any] | None:
        if self.raw.get("stopped") is not True:
            return None
        reasons: list[dict[str, str]] = []
        stoppers: list[int] = []
        details = self.raw.get("stop_details")
        if isinstance(details, list) and details:
            everything: list[dict[str, str]] = []
            for d in details:
                if not isinstance(d, Mapping):
                    continue
                mine = _reasons(d.get("reason"))
                everything.extend(mine)
                fields = d.get("fields")
                if isinstance(fields, Mapping) and fields.get("stop") is True:
                    reasons.extend(mine)
                    if isinstance(d.get("policy"), int):
                        stoppers.append(d["policy"])
            reasons = reasons or everything
        else:
            reasons = _reasons(self.raw.get("stop_reasons"))
            stopping = [r for r in reasons if r["event"] in _STOP_EVENTS]
            reasons = stopping or reasons
        reasons = [r for r in reasons if r["event"] not in _QUIET_EVENTS] or reasons
        epoch: Any = self.raw.get("epoch")
        clock = self._stop_clock(stoppers)
        if clock == "optimizer_step":  # the epoch in progress, after the last round's
            epoch = epoch_after(epoch if isinstance(epoch, int) else None)
        return {"epoch": _epoch(epoch), "clock": clock, "reasons": reasons}

    def _stop_clock(self, stoppers: list[int]) -> str | None:
        """The clock the stop came on, when the stopping policies listen to only one."""
        ctl = self.controller
        if ctl is None or not stoppers:
            return None
        clocks: set[str] = set()
        for i in stoppers:
            if 0 <= i < len(ctl.policies):
                clocks |= set(getattr(ctl.policies[i], "clocks", ()))
        return next(iter(clocks)) if len(clocks) == 1 else None

    def best(self) -> dict[str, Any] | None:
        labels, configs, states = self.labels(), self.configs(), self.states()
        for label, config, state in zip(labels, configs, states, strict=True):
            if "best" in state and isinstance(state.get("best_epoch"), int):
                return {
                    "policy": label,
                    "monitor": config.get("monitor"),
                    "value": state["best"],
                    "epoch": _epoch(state["best_epoch"]),
                }
        for label, config, state in zip(labels, configs, states, strict=True):
            value = _number(state.get("best"))
            if not isinstance(state.get("kept"), list) or value is None:
                continue
            for kept in state["kept"]:
                if isinstance(kept, Mapping) and _number(kept.get("score")) == value:
                    return {
                        "policy": label,
                        "monitor": config.get("monitor"),
                        "value": state["best"],
                        "epoch": _epoch(kept.get("epoch")),
                    }
        return None

    def kept_epochs(self) -> dict[str, tuple[int | None, Any]]:
        """The checkpoint policy's kept names -> (1-based epoch, score), as the file names
        count (a step-triggered save is named after the epoch in progress)."""
        found = self.checkpoint_policy()
        if found is None:
            return {}
        out = {}
        for kept in found.state.get("kept", []):
            if isinstance(kept, Mapping) and isinstance(kept.get("name"), str):
                out[kept["name"]] = (_epoch(kept.get("epoch")), kept.get("score"))
        return out


def _raw_label(config: Mapping[str, Any]) -> str:
    name = str(config.get("type", "?")).rsplit(".", 1)[-1]
    monitor = config.get("monitor")
    return f"{name}({monitor})" if monitor else name


def _reasons(raw: Any) -> list[dict[str, str]]:
    out = []
    for r in raw if isinstance(raw, list) else []:
        if isinstance(r, (list, tuple)) and len(r) == 3:
            source, event, message = r
            out.append({"source": str(source), "event": str(event), "message": str(message)})
    return out


def _progress_only(state: Mapping[str, Any]) -> Controller:
    """A controller without policies that holds only the saved clocks and stop flag, for the
    adapters' resume rule when the configuration cannot be rebuilt (the Controller checks the
    clocks as it loads them)."""
    bare = dict(state)
    bare.update(policies=[], schedule=None, base_lr=None, lr_scale=None, stop_details=None)
    ctl = Controller()
    ctl.load_state_dict(bare, strict=False)
    return ctl


class _InspectBackend:
    """The effects runner's backend for inspection: it names the best-weights entry (the Keras
    adapter's) and refuses every effect, since inspect changes nothing."""

    is_writer = False  # this process never writes the store

    def __init__(self, best_suffix: str = "") -> None:
        self.best_suffix = best_suffix

    def _refuse(self, what: str) -> RuntimeError:
        return RuntimeError(f"trainctl inspect is read-only: it never {what}")

    def read_lrs(self) -> tuple[float, ...] | None:
        return None

    def set_lrs(self, lrs: tuple[float, ...]) -> None:
        raise self._refuse("sets learning rates")

    def snapshot_weights(self) -> Any:
        raise self._refuse("copies weights")

    def restore_weights(self, snapshot: Any) -> None:
        raise self._refuse("restores weights")

    def make_checkpoint(self, *, controller_state: Mapping[str, Any], best_weights: Any) -> Any:
        raise self._refuse("builds checkpoints")

    def write_checkpoint(self, payload: Any, path: Path) -> None:
        raise self._refuse("writes checkpoints")

    def request_stop(self) -> None:
        raise self._refuse("stops training")


def _resume_record(
    runner: EffectsRunner, name: str | None, state: _State | None, path: Path | None
) -> dict[str, Any] | None:
    """The adapters' :meth:`EffectsRunner.where_to_start` for ``name``, as plain data."""
    if state is not None:
        if state.controller is not None:
            runner.controller = state.controller
        else:
            try:
                runner.controller = _progress_only(state.raw)
            except (StateError, TypeError, ValueError):
                return None
    start = runner.where_to_start(name)
    where = start.path if path is None else path
    return {
        "checkpoint": start.checkpoint,
        "path": None if where is None else str(where),
        "epoch": epoch_number(start.epoch),  # the first epoch the resumed run trains, 1-based
        "epochs_done": start.epoch,
        "optimizer_steps": start.optimizer_steps,
        "stopped": start.stopped,
    }


def _fill_from_state(report: dict[str, Any], state: _State, source: str) -> None:
    report["controller"] = state.describe()
    report["progress"] = state.progress()
    report["stopped"] = state.raw.get("stopped") is True
    stop = state.stop()
    if stop is not None:
        stop["source"] = source
    report["stop"] = stop
    best = state.best()
    if best is not None:
        best["source"] = source
        best["checkpoint"] = None
    report["best"] = best


def _kept_from_state(state: _State) -> list[dict[str, Any]]:
    found = state.checkpoint_policy()
    monitor = None if found is None else found.config.get("monitor")
    return [
        {"name": name, "epoch": epoch, "score": _plain(score), "monitor": monitor,
         "metrics": None, "size": None, "role": None}
        for name, (epoch, score) in state.kept_epochs().items()
    ]


def _mark_best(report: dict[str, Any]) -> None:
    """Mark the kept checkpoint of the best epoch (the rolling last and the best-weights entry
    keep their roles) and name it in ``best``."""
    for item in report["kept"]:
        if item["role"] == "best":
            item["role"] = None
    best = report.get("best")
    if best is None:
        return
    best["checkpoint"] = None
    for item in report["kept"]:
        if item["role"] is None and item["epoch"] == best["epoch"]:
            item["role"] = "best"
            best["checkpoint"] = item["name"]
            return


# -- a checkpoint store ---------------------------------------------------------------------------


def _inspect_store(directory: Path) -> dict[str, Any]:
    report = _new_report(directory, "store", f"checkpoint store {str(directory)!r}")
    notes: list[str] = report["notes"]
    store = CheckpointStore(directory, read_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recovery = store.recover()  # a reader: no lock, no repair, no write
        names = [e.name for e in store.entries]
        best_entries = [n for n in names if n.startswith(BEST_WEIGHTS_ENTRY)]
        suffix = best_entries[0][len(BEST_WEIGHTS_ENTRY):] if best_entries else ""
        runner = EffectsRunner(Controller(), _InspectBackend(suffix), store=store)
        name = runner.latest()  # the adapters' rule: the newest entry but the best weights
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in notes:
            notes.append(text)
    if recovery.completed_save is not None:
        notes.append(
            f"a save of {recovery.completed_save} was interrupted after its file was in place: "
            "counted as done (the writer's next recover() records it)"
        )
    if recovery.discarded_save is not None:
        notes.append(
            f"a save of {recovery.discarded_save} was interrupted before its file was in place: "
            "not counted (the writer's next recover() discards it)"
        )
    if recovery.unknown_files:
        shown = [n for n in recovery.unknown_files if not _is_log_name(directory / n)]
        if shown:
            notes.append("files the manifest does not list (left alone): " + ", ".join(shown))
    state: _State | None = None
    source = "no checkpoint"
    if name is not None:
        raw = store.load_state(name)
        if isinstance(raw, Mapping) and raw.get("format") == _CONTROLLER_FORMAT:
            state = _State(raw, notes)
            source = f"checkpoint {name}"
            _fill_from_state(report, state, source)
        else:
            notes.append(f"the latest checkpoint {name} holds no controller state")
    report["kept"] = _kept_from_store(store, state)
    report["source"] = (
        f"checkpoint store {str(directory)!r}, {len(report['kept'])} checkpoint(s) kept"
    )
    if name is not None and state is None:  # nothing says how far the run had come
        report["resume"] = {
            "checkpoint": name, "path": str(store.path(name)), "epoch": None,
            "epochs_done": None, "optimizer_steps": None, "stopped": None,
        }
    else:
        report["resume"] = _resume_record(runner, name, state, None)
    _mark_best(report)
    _attach_log(report, directory, state)
    return report


def _is_log_name(path: Path) -> bool:
    suffix = path.suffix.lower()
    return (suffix == ".jsonl" and _is_jsonl_log(path)) or (
        suffix == ".csv" and _is_csv_log(path)
    )


def _kept_from_store(store: CheckpointStore, latest: _State | None) -> list[dict[str, Any]]:
    """The manifest's entries in save order, with each one's epoch, score and role."""
    policy = None if latest is None else latest.checkpoint_policy()
    config: Mapping[str, Any] = {} if policy is None else policy.config
    monitor = config.get("monitor")
    last_name = f"last{config.get('extension', '')}" if config.get("save_last") else None
    by_policy = {} if latest is None else latest.kept_epochs()
    out = []
    for entry in store.entries:
        metrics = {k: encode_float(v) for k, v in entry.metrics.items()}
        role: str | None = None
        epoch: int | None = None
        if entry.name.startswith(BEST_WEIGHTS_ENTRY):
            role = "best weights"
            raw_epoch = entry.metrics.get("epoch")
            if raw_epoch is not None and math.isfinite(raw_epoch):
                epoch = epoch_number(int(raw_epoch))
            metrics = {}
        elif entry.name in by_policy:
            epoch = by_policy[entry.name][0]
        else:
            saved = store.load_state(entry.name)
            if isinstance(saved, Mapping):
                epoch = _epoch(saved.get("epoch"))
        if entry.name == last_name:
            role = "last"
        score = entry.metrics.get(monitor) if isinstance(monitor, str) else None
        out.append({
            "name": entry.name,
            "epoch": epoch,
            "score": encode_float(score),
            "monitor": monitor,
            "metrics": metrics,
            "size": entry.size,
            "role": role,
        })
    return out


# -- one checkpoint file --------------------------------------------------------------------------


def _inspect_file(path: Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise InspectError(
            path, f"{str(path)!r}: reading a checkpoint file needs torch (pip install "
            "trainctl[torch]); a checkpoint store directory or a decision log needs nothing"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on the pickle protocol and such
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file it cannot read
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InspectError(
            path, f"{str(path)!r} is not a checkpoint torch.load(weights_only=True) can read "
            f"({type(exc).__name__}: {first[:160]}); expected {EXPECTED}"
        ) from None
    report = _new_report(path, "checkpoint", "")
    notes: list[str] = report["notes"]
    raw, what = _controller_state_in(payload, notes)
    if raw is None:
        raise InspectError(
            path, f"{str(path)!r} holds no trainctl controller state (not written by "
            f"TorchController or Lightning's ControllerCallback); expected {EXPECTED}"
        )
    report["source"] = f"{what} {str(path)!r}"
    state = _State(raw, notes)
    _fill_from_state(report, state, f"checkpoint {path.name}")
    report["kept"] = _kept_from_state(state)
    if report["kept"]:
        notes.append(
            "kept checkpoints are the checkpoint policy's record at the time this file was "
            f"written; `trainctl inspect {str(path.parent)!r}` reads the store's manifest"
            if (path.parent / DEFAULT_MANIFEST_NAME).is_file() else
            "kept checkpoints are the checkpoint policy's record at the time this file was written"
        )
    runner = EffectsRunner(state.controller or Controller(), _InspectBackend(), store=None)
    report["resume"] = _resume_record(runner, path.name, state, path)
    _mark_best(report)
    _attach_log(report, path.parent, state)
    return report


def _controller_state_in(payload: Any, notes: list[str]) -> tuple[Mapping[str, Any] | None, str]:
    """The controller state inside a torch or Lightning checkpoint, and what kind it is."""
    if not isinstance(payload, Mapping):
        return None, ""
    if payload.get("format") == _TORCH_FORMAT:
        state = payload.get("controller")
        return (state if isinstance(state, Mapping) else None), "TorchController checkpoint"
    callbacks = payload.get("callbacks")
    if isinstance(callbacks, Mapping):
        found = [
            (str(key), value["controller"]) for key, value in callbacks.items()
            if isinstance(value, Mapping) and isinstance(value.get("controller"), Mapping)
            and value["controller"].get("format") == _CONTROLLER_FORMAT
        ]
        if found:
            (key, state), others = found[0], found[1:]
            if others:
                notes.append(
                    f"several controllers in this checkpoint; shown: {key}; also: "
                    + ", ".join(k for k, _ in others)
                )
            return state, f"Lightning checkpoint ({key})"
    return None, ""


# -- a decision log -------------------------------------------------------------------------------


def _inspect_log(path: Path) -> dict[str, Any]:
    report = _new_report(path, "log", f"decision log {str(path)!r}")
    header, records = _read_records(path, report["notes"])
    if header is None:
        report["notes"].append(
            "a CSV decision log holds no policy fields and no column for the rolling last "
            "checkpoint: the best and the last checkpoint are not known from it"
        )
    controller = header.get("controller") if header is not None else None
    if isinstance(controller, Mapping):
        report["controller"] = _describe_header(controller)
    _fill_from_log(report, path, header, records, replace=True)
    _mark_best(report)
    return report


def _describe_header(controller: Mapping[str, Any]) -> dict[str, Any]:
    policies = controller.get("policies")
    labels = [
        _label_from_config(c) for c in (policies if isinstance(policies, list) else [])
        if isinstance(c, Mapping)
    ]
    return {
        "policies": labels,
        "schedule": controller.get("schedule"),
        "schedule_clock": controller.get("schedule_clock"),
        "rebuilt": False,
    }


def _label_from_config(config: Mapping[str, Any]) -> str:
    """The policy's own label when its type is known, else ``Type(monitor)``."""
    from ._rebuild import policy_from_config

    try:
        return str(policy_from_config(config).label)
    except Exception:  # an unknown or changed policy type: the raw form
        return _raw_label(config)


def load_log(path: str | Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """A decision log (``.jsonl`` or ``.csv``) as ``(header, records, notes)``: the header
    (``None`` for a CSV log, which has none), the records in the JSON shape (a CSV row's numbers
    as floats, its events and reasons as lists; ``policies`` is ``None``), and the warnings
    reading it raised (a torn last line). :class:`InspectError` if it is not a decision log."""
    p = Path(path)
    notes: list[str] = []
    try:
        header, records = _read_records(p, notes)
    except InspectError:
        raise
    except (OSError, LogError, UnicodeDecodeError) as exc:
        text = " ".join(str(exc).split())
        raise InspectError(p, f"{str(p)!r} cannot be read: {text}") from exc
    return header, records, notes


def _read_records(
    path: Path, notes: list[str]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The header (``None`` for a CSV log) and the records of a decision log, normalized."""
    if path.suffix.lower() == ".csv":
        if not _is_csv_log(path):
            raise InspectError(
                path, f"{str(path)!r} is not a decision log (its first row is not "
                f"{','.join(_CSV_COLUMNS)},...); expected {EXPECTED}"
            )
        return None, [_from_csv(row) for row in read_log(path)]
    if not _is_jsonl_log(path):
        raise InspectError(
            path, f"{str(path)!r} is not a decision log (no {LOG_FORMAT!r} header on its first "
            f"line); expected {EXPECTED}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_log(path, include_header=True)
    notes.extend(" ".join(str(w.message).split()) for w in caught)
    header = records[0] if records and records[0].get("clock") == "header" else None
    return header, [r for r in records if r.get("clock") != "header"]


_SOURCE_SPLIT = re.compile(r"; (?=[A-Za-z_][\w.]*(?:\([^()]*\))?: )")


def _from_csv(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row in the shape of a JSON record (what the table holds of it)."""

    def integer(key: str) -> int | None:
        text = row.get(key) or ""
        return int(text) if text.strip().lstrip("-").isdigit() else None

    groups = sorted(
        (int(k[len("lr/pg"):]), k) for k in row if k.startswith("lr/pg") and k[5:].isdigit()
    )
    lr = [_plain(_number(row[k])) for _, k in groups if row.get(k)]
    events = [e for e in (row.get("events") or "").split("; ") if e]
    messages = [m for m in _SOURCE_SPLIT.split(row.get("messages") or "") if m]
    if len(messages) == len(events):
        reasons = [
            {"source": m.partition(": ")[0], "event": e, "message": m.partition(": ")[2]}
            for m, e in zip(messages, events, strict=True)
        ]
    else:
        reasons = [{"source": "", "event": ", ".join(events), "message": row.get("messages", "")}]
    skip = {*_CSV_COLUMNS, "events", "messages", "save", "delete"}
    metrics = {
        k: _plain(_number(v)) for k, v in row.items()
        if k not in skip and not k.startswith("lr/pg") and _number(v) is not None
    }
    save = row.get("save") or ""
    return {
        "clock": row.get("clock"),
        "round": integer("round"),
        "epoch": integer("epoch"),
        "optimizer_steps": integer("optimizer_steps"),
        "stop": row.get("stop") == "True",
        "lr": lr or None,
        "lr_changed": row.get("lr_changed") == "True",
        "events": events,
        "reasons": reasons,
        "save": {"name": save, "is_best": None, "score": None} if save else None,
        "last": None,
        "delete": [d for d in (row.get("delete") or "").split("; ") if d],
        "metrics": metrics,
        "policies": None,
    }


def _record_epoch(record: Mapping[str, Any]) -> int | None:
    """The 1-based epoch a record belongs to (an optimizer step: the epoch in progress)."""
    epoch = record.get("epoch")
    if record.get("clock") == "optimizer_step":
        return epoch_number(epoch_after(epoch if isinstance(epoch, int) else None))
    return _epoch(epoch)


def _fill_from_log(
    report: dict[str, Any],
    path: Path,
    header: Mapping[str, Any] | None,
    records: Sequence[Mapping[str, Any]],
    *,
    replace: bool,
) -> None:
    """Put what the log says into ``report``; ``replace`` lets it replace stop, best, progress
    and kept (a log alone, or a log that goes further than the latest checkpoint)."""
    report["log"] = str(path)
    controller = header.get("controller") if header is not None else None
    schedule = controller.get("schedule") if isinstance(controller, Mapping) else None
    report["rates"] = _rate_history(records, schedule is not None)
    if not replace:
        return
    source = f"decision log {path.name}"
    steps = [r for r in records if r.get("clock") in ("round", "optimizer_step")]
    rounds = [r for r in steps if r.get("clock") == "round"]
    last = steps[-1] if steps else None
    if last is not None:
        lr = last.get("lr")
        report["progress"] = {
            "rounds": last.get("round"),
            "epoch": _epoch(rounds[-1].get("epoch")) if rounds else None,
            "optimizer_steps": last.get("optimizer_steps"),
            "lr": lr,
        }
    stop = next((r for r in steps if r.get("stop")), None)
    report["stopped"] = stop is not None
    report["stop"] = None if stop is None else {
        "epoch": _record_epoch(stop),
        "clock": stop.get("clock"),
        "reasons": _stop_reasons(stop),
        "source": source,
    }
    report["best"] = _best_from_log(records, source)
    if report["kind"] == "log":
        report["kept"] = _kept_from_log(steps, controller)


def _stop_reasons(record: Mapping[str, Any]) -> list[dict[str, str]]:
    reasons = [dict(r) for r in record.get("reasons") or () if isinstance(r, Mapping)]
    policies = record.get("policies")
    if isinstance(policies, Mapping):
        stoppers = {k for k, v in policies.items() if isinstance(v, Mapping) and v.get("stop")}
        mine = [r for r in reasons if r.get("source") in stoppers]
        if mine:
            return mine
    stopping = [r for r in reasons if r.get("event") in _STOP_EVENTS]
    return stopping or [r for r in reasons if r.get("event") not in _QUIET_EVENTS] or reasons


def _best_from_log(records: Sequence[Mapping[str, Any]], source: str) -> dict[str, Any] | None:
    for record in reversed(records):
        policies = record.get("policies")
        if not isinstance(policies, Mapping):
            continue
        for label, fields in policies.items():
            if isinstance(fields, Mapping) and "best" in fields and isinstance(
                fields.get("best_epoch"), int
            ):
                monitor = re.fullmatch(r"[^()]*\((.*)\)", str(label))
                return {
                    "policy": label,
                    "monitor": None if monitor is None else monitor.group(1),
                    "value": fields["best"],
                    "epoch": _epoch(fields["best_epoch"]),
                    "source": source,
                    "checkpoint": None,
                }
    return None


def _kept_from_log(
    steps: Sequence[Mapping[str, Any]], controller: Any
) -> list[dict[str, Any]]:
    """The checkpoints the log says were written and not deleted since, in save order."""
    monitor = None
    if isinstance(controller, Mapping):
        for config in controller.get("policies") or ():
            if isinstance(config, Mapping) and config.get("type") == "CheckpointPolicy":
                monitor = config.get("monitor")
                break
    kept: dict[str, dict[str, Any]] = {}
    for record in steps:
        for key in ("save", "last"):
            request = record.get(key)
            if isinstance(request, Mapping) and request.get("name"):
                name = str(request["name"])
                kept.pop(name, None)  # an overwrite moves it to the end
                metrics = record.get("metrics") or {}
                score = request.get("score")
                if score is None and isinstance(monitor, str):
                    score = metrics.get(monitor)
                kept[name] = {
                    "name": name, "epoch": _record_epoch(record), "score": score,
                    "monitor": monitor, "metrics": dict(metrics), "size": None,
                    "role": "last" if key == "last" else None,
                }
        for name in record.get("delete") or ():
            kept.pop(str(name), None)
    return list(kept.values())


def _rate_history(records: Sequence[Mapping[str, Any]], scheduled: bool) -> list[dict[str, Any]]:
    """The rate of every group after each record whose rate differs from the record before."""
    out: list[dict[str, Any]] = []
    before: Any = None
    for record in records:
        if record.get("clock") not in ("round", "optimizer_step"):
            continue
        lr = record.get("lr")
        if lr is None or lr == before:
            continue
        causes = [
            f"{r.get('source')}: {r.get('event')}" for r in record.get("reasons") or ()
            if isinstance(r, Mapping) and r.get("event") in _RATE_EVENTS
        ]
        if before is None:
            cause = "start"
        elif causes:
            cause = "; ".join(causes)
        else:
            cause = "schedule" if scheduled else "set outside the controller"
        out.append({
            "clock": record.get("clock"),
            "round": record.get("round"),
            "epoch": _record_epoch(record),
            "optimizer_steps": record.get("optimizer_steps"),
            "lr": list(lr),
            "cause": cause,
        })
        before = lr
    return out


def _attach_log(report: dict[str, Any], directory: Path, state: _State | None) -> None:
    """Find the decision log beside a store or a checkpoint file and add what it says."""
    notes: list[str] = report["notes"]
    try:
        logs = find_logs(directory)
    except OSError:
        return
    if not logs:
        return
    chosen = logs[0]
    configs = None if state is None else [dict(c) for c in state.configs()]
    headers: dict[Path, Any] = {}
    if configs is not None:
        for log in logs:
            if log.suffix.lower() != ".jsonl":
                continue
            with contextlib.suppress(OSError, ValueError):
                head = json.loads(_first_line(log))
                headers[log] = head
                if (head.get("controller") or {}).get("policies") == configs:
                    chosen = log
                    break
    for other in logs:
        if other != chosen:
            notes.append(f"another decision log here, not used: {other.name}")
    head = headers.get(chosen)
    if configs is not None and head is not None and (
        (head.get("controller") or {}).get("policies") != configs
    ):
        notes.append(
            f"the decision log {chosen.name} describes another configuration than the "
            "checkpoints; its rate history is shown, nothing else is taken from it"
        )
        header, records = _read_records(chosen, notes)
        _fill_from_log(report, chosen, header, records, replace=False)
        return
    header, records = _read_records(chosen, notes)
    logged = [r for r in records if r.get("clock") == "round"]
    log_rounds = logged[-1].get("round", 0) if logged else 0
    saved_rounds = state.raw.get("rounds", 0) if state is not None else 0
    ahead = isinstance(log_rounds, int) and isinstance(saved_rounds, int) and (
        log_rounds > saved_rounds
    )
    if ahead and state is not None:
        notes.append(
            f"the decision log goes {log_rounds - saved_rounds} round(s) beyond the checkpoint "
            f"read (round {saved_rounds}); a resume from it trains them again. Stop and best "
            "are the log's"
        )
    _fill_from_log(report, chosen, header, records, replace=ahead or state is None)
    if ahead or state is None:
        _mark_best(report)


# -- text -----------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    number = _number(value)
    return "?" if number is None else number_text(number)


def _rates_text(lr: Any) -> str:
    if not isinstance(lr, list) or not lr:
        return "none"
    parts = []
    for x in lr:
        v = _number(x)
        parts.append("?" if v is None else f"{v:.4g}")
    return " ".join(parts) if len(parts) == 1 else "[" + ", ".join(parts) + "]"


def _epoch_text(epoch: Any) -> str:
    return "no epoch" if epoch is None else f"epoch {epoch}"


def render_report(report: Mapping[str, Any]) -> str:
    """The text ``trainctl inspect`` prints for a report of :func:`inspect_run`."""
    lines = [f"{report['source']}"]
    controller = report.get("controller")
    if controller:
        text = ", ".join(controller.get("policies") or []) or "no policies"
        if controller.get("schedule"):
            clock = str(controller.get("schedule_clock") or "").replace("_", " ")
            text += f"; schedule {controller['schedule']} (per {clock})"
        if controller.get("rebuilt") is False and report.get("kind") != "log":
            text += " [not rebuilt: read from the raw state]"
        lines.append(f"controller: {text}")
    progress = report.get("progress")
    if progress:
        last = _epoch_text(progress.get("epoch"))
        lines.append(
            f"progress: {progress.get('rounds')} round(s), last {last}, "
            f"{progress.get('optimizer_steps')} optimizer step(s); "
            f"lr {_rates_text(progress.get('lr'))}"
        )
    stop = report.get("stop")
    if stop:
        where = _epoch_text(stop.get("epoch"))
        head = {
            "round": f"stopped at {where}",
            "optimizer_step": f"stopped by an optimizer step in {where}",
        }.get(str(stop.get("clock")), f"stopped (last round: {where})")
        reasons = stop.get("reasons") or []
        if len(reasons) == 1:
            r = reasons[0]
            lines.append(f"{head}: {r['source']}: {r['message']}")
        else:
            lines.append(f"{head}:")
            lines.extend(f"  {r['source']}: {r['message']}" for r in reasons)
    elif report.get("stopped") is False:
        lines.append(
            "did not stop: no policy stopped the run (it ran to its end, was interrupted, or is "
            "still running)"
        )
    best = report.get("best")
    if best:
        what = best.get("monitor") or "best"
        text = f"best: {what} {_num(best.get('value'))} at {_epoch_text(best.get('epoch'))}"
        text += f" ({best.get('policy')})"
        if best.get("checkpoint"):
            text += f"; checkpoint {best['checkpoint']}"
        lines.append(text)
    kept = report.get("kept") or []
    if kept:
        where = {
            "store": "the manifest",
            "log": "asked for in the decision log, files not checked",
        }.get(str(report.get("kind")), "the checkpoint policy's state")
        lines.append(f"kept checkpoints ({where}; oldest save first):")
        width = max(len(k["name"]) for k in kept)
        for k in kept:
            cells = [f"  {k['name']:<{width}}", f"{_epoch_text(k.get('epoch')):>9}"]
            if k.get("monitor") and k.get("score") is not None:
                cells.append(f"{k['monitor']} {_num(k['score'])}")
            if k.get("role"):
                cells.append(f"[{k['role']}]")
            lines.append("  ".join(cells))
    elif report.get("kind") == "store":
        lines.append("kept checkpoints: none")
    resume = report.get("resume")
    if resume is not None:
        if resume.get("checkpoint") is None:
            lines.append("resume: nothing to load: a resumed run starts fresh at epoch 1")
        elif resume.get("epoch") is None:
            lines.append(
                f"resume: would load {resume['checkpoint']}; it holds no controller state, so "
                "where the run stood is not known"
            )
        elif resume.get("stopped"):
            lines.append(
                f"resume: would load {resume['checkpoint']}; the run had stopped: nothing is "
                "left to train"
            )
        else:
            lines.append(
                f"resume: would load {resume['checkpoint']} and continue at epoch "
                f"{resume['epoch']} ({resume['optimizer_steps']} optimizer steps done)"
            )
    rates = report.get("rates")
    if report.get("log"):
        lines.append(f"decision log: {report['log']}")
    if rates:
        lines.append("rate history (each group's lr after every round where it changed):")
        for r in rates:
            at = _epoch_text(r.get("epoch"))
            if r.get("clock") == "optimizer_step":
                at += f", step {r.get('optimizer_steps')}"
            lines.append(f"  {at:>9}  lr {_rates_text(r.get('lr'))}  {r.get('cause')}")
    elif report.get("kind") != "log" and not report.get("log"):
        lines.append("rate history: no decision log found beside the checkpoints")
    notes = report.get("notes") or []
    if notes:
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in notes)
    return "\n".join(lines)
