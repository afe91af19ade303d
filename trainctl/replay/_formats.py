"""Reading logged runs: Keras, Lightning, Hugging Face, TensorBoard and trainctl's own log.

Theory of operation
-------------------
:func:`read_run` decides the format from the path and the first bytes, then reads the file into
one :class:`~trainctl.replay.Run`: a metric dict per evaluation round, in order, with the round's
0-based epoch and optimizer steps where the file says.

Each format, how it is recognised, what makes a round, and where the epoch and the steps come
from:

**Keras** ``CSVLogger`` (a ``.csv`` with an ``epoch`` column and no ``step`` column). A round
is one row, one epoch. ``NA`` or an empty cell: the metric was not logged that epoch (Keras
writes ``NA`` under ``validation_freq``). Epoch: the ``epoch`` column (0-based). Steps: unknown.

**Lightning** ``CSVLogger`` (a ``.csv`` with ``epoch`` and ``step`` columns, or a directory
holding ``metrics.csv``). A round is an epoch: Lightning writes step rows, validation rows and
the epoch-end row separately, each filling some columns; every row of one epoch is merged into
one round, a later row's value replacing an earlier one's, so a metric logged on several rows
of the epoch (``train_loss_step``) keeps its last value, and a validation that runs several
times per epoch keeps its last result. A row without an epoch belongs to the epoch of the row
before it; an epoch smaller than the one before is an error (two runs appended to one file).
Epoch: the ``epoch`` column. Steps: one more than the largest ``step`` among the epoch's rows
(Lightning writes the 0-based index of the last optimizer step).

**Hugging Face** ``trainer_state.json`` (a ``.json`` with ``log_history``, or a directory
holding it). A round is a ``log_history`` entry with an ``eval_`` key; the training entries
logged since the previous evaluation add their ``loss``, ``learning_rate`` and ``grad_norm``
(the last one wins), so that PQ finds the training loss beside ``eval_loss``; the final
summary (``train_runtime``) is not a round. Epoch: ``ceil(epoch) - 1`` of the entry's
fractional epoch (an evaluation at ``epoch=1.0`` closes epoch 0). Steps: ``step``.

**TensorBoard** event files (``tfevents`` in the name, or a directory of them, searched
recursively). A round is a step: every scalar logged at one step, over all the event files; a
file in a subdirectory prefixes its tags with the subdirectory's path (``validation/epoch_loss``
from Keras' callback, ``lr_head/lr`` from ``add_scalars``); a tag logged twice at one step keeps
the later write. Scalars written as 0-d tensors (TF2 summaries) count too. Epoch: unknown.
Steps: the step.

**trainctl** ``DecisionLog`` (a ``.jsonl``, or a ``.csv`` with ``clock`` and ``round``
columns). A round is a ``"round"`` record: its ``metrics`` (``"nan"``, ``"inf"``, ``"-inf"``
decoded). Epoch: ``epoch``. Steps: ``optimizer_steps``.

A file that cannot be read raises :class:`RunFormatError` naming the file, the line and the
column (the cell's column number and name for CSV, the character for JSON); a CSV line torn by a
crash (fewer cells than the header) is such an error too. TensorBoard is read with
``tensorboard``'s ``EventAccumulator`` (the ``tensorboard`` extra), imported only here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .._log import LogError, read_log
from ._run import Run

__all__ = ["FORMATS", "RunFormatError", "detect_format", "read_run"]

Format = Literal["keras", "lightning", "huggingface", "tensorboard", "trainctl"]
FORMATS: tuple[str, ...] = ("keras", "lightning", "huggingface", "tensorboard", "trainctl")

_MISSING = frozenset({"", "NA", "N/A", "None", "none", "null"})
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "NaN": math.nan,
              "Infinity": math.inf, "-Infinity": -math.inf}


class RunFormatError(ValueError):
    """A logged run cannot be read: the message names the file, and the line and column.

    Attributes:
        path: the file.
        line: the 1-based line, or ``None``.
        column: the 1-based column (a CSV cell's number, a JSON character), or ``None``.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, *, line: int | None = None,
                 column: int | None = None, column_name: str | None = None) -> None:
        where = repr(str(path))
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column}"
            if column_name is not None:
                where += f" ({column_name!r})"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.column = column


# -- detection ----------------------------------------------------------------------------------


def _is_events(path: Path) -> bool:
    return "tfevents" in path.name


def _event_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and _is_events(p))


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format of ``path`` (see the module docstring), or :class:`RunFormatError`."""
    p = Path(path)
    if not p.exists():
        raise RunFormatError(p, "no such file or directory")
    if p.is_dir():
        if (p / "trainer_state.json").is_file():
            return "huggingface"
        if (p / "metrics.csv").is_file():
            return "lightning"
        if _event_files(p):
            return "tensorboard"
        raise RunFormatError(
            p, "a directory holding no trainer_state.json, metrics.csv or TensorBoard event "
            "files"
        )
    if _is_events(p):
        return "tensorboard"
    suffix = p.suffix.lower()
    if suffix == ".csv":
        header = _csv_header(p)
        if "clock" in header and "round" in header:
            return "trainctl"
        if "epoch" in header and "step" in header:
            return "lightning"
        if "epoch" in header:
            return "keras"
        raise RunFormatError(
            p, f"a CSV file with neither an 'epoch' nor a 'clock' column (header: "
            f"{', '.join(header) or 'empty'}): not a Keras, Lightning or trainctl log", line=1,
        )
    head = _head(p)
    if suffix == ".jsonl" or head.startswith('{"clock"'):
        return "trainctl"
    if suffix == ".json" or head.startswith("{"):
        return "huggingface"
    raise RunFormatError(
        p, "unknown format: expected a Keras or Lightning CSV, a trainer_state.json, TensorBoard "
        "event files or a trainctl decision log (.jsonl)"
    )


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(64).decode("utf-8", errors="replace").lstrip()


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_run(path: str | os.PathLike[str], *, format: Format | None = None) -> Run:
    """Read one logged run (see the module docstring for the formats and their rules).

    Args:
        path: a file, or a directory holding ``trainer_state.json``, ``metrics.csv`` or
            TensorBoard event files.
        format: ``"keras"``, ``"lightning"``, ``"huggingface"``, ``"tensorboard"`` or
            ``"trainctl"``; ``None`` detects it.

    Raises:
        RunFormatError: the file is not what its format expects (naming the line and column).
    """
    p = Path(path)
    fmt = detect_format(p) if format is None else format
    if fmt not in FORMATS:
        raise ValueError(f"'format' must be one of {', '.join(map(repr, FORMATS))}, got {fmt!r}")
    if fmt == "keras":
        return _read_keras(p)
    if fmt == "lightning":
        return _read_lightning(p / "metrics.csv" if p.is_dir() else p)
    if fmt == "huggingface":
        return _read_huggingface(p / "trainer_state.json" if p.is_dir() else p)
    if fmt == "tensorboard":
        return _read_tensorboard(p)
    return _read_trainctl(p)


# -- CSV ------------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line, header, cells) for each data row; a row of another width is an error."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise RunFormatError(path, "empty file: no header")
            for cells in reader:
                line = reader.line_num
                if not cells:
                    continue
                if len(cells) != len(header):
                    torn = " (a line torn by an interrupted write?)" if len(cells) < len(
                        header) else ""
                    raise RunFormatError(
                        path, f"{len(cells)} cells but the header has {len(header)}{torn}",
                        line=line, column=min(len(cells), len(header)) + 1,
                    )
                yield line, header, cells
    except UnicodeDecodeError as exc:
        raise RunFormatError(path, f"not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise RunFormatError(path, f"not valid CSV ({exc})") from None


def _number(path: Path, text: str, line: int, column: int, name: str) -> float | None:
    text = text.strip()
    if text in _MISSING:
        return None
    if text in _NONFINITE:
        return _NONFINITE[text]
    try:
        return float(text)
    except ValueError:
        raise RunFormatError(path, f"expected a number, got {text!r}", line=line, column=column,
                             column_name=name) from None


def _integer(path: Path, text: str, line: int, column: int, name: str) -> int | None:
    value = _number(path, text, line, column, name)
    if value is None:
        return None
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise RunFormatError(path, f"expected an integer >= 0, got {text!r}", line=line,
                             column=column, column_name=name)
    return int(value)


def _read_keras(path: Path) -> Run:
    rounds: list[dict[str, Any]] = []
    epochs: list[int | None] = []
    for line, header, cells in _csv_rows(path):
        metrics: dict[str, Any] = {}
        epoch: int | None = None
        for column, (name, text) in enumerate(zip(header, cells, strict=True), 1):
            if name == "epoch":
                epoch = _integer(path, text, line, column, name)
                continue
            value = _number(path, text, line, column, name)
            if value is not None:
                metrics[name] = value
        rounds.append(metrics)
        epochs.append(epoch)
    if "epoch" not in _csv_header(path):
        raise RunFormatError(path, "no 'epoch' column: not a Keras CSVLogger file", line=1)
    return Run(source=str(path), rounds=rounds, epochs=epochs, steps=[None] * len(rounds))


def _read_lightning(path: Path) -> Run:
    merged: dict[int, dict[str, Any]] = {}
    steps: dict[int, int | None] = {}
    current: int | None = None
    for line, header, cells in _csv_rows(path):
        if "epoch" not in header or "step" not in header:
            raise RunFormatError(path, "a Lightning metrics.csv has 'epoch' and 'step' columns",
                                 line=1)
        row: dict[str, Any] = {}
        epoch: int | None = None
        step: int | None = None
        for column, (name, text) in enumerate(zip(header, cells, strict=True), 1):
            if name == "epoch":
                epoch = _integer(path, text, line, column, name)
            elif name == "step":
                step = _integer(path, text, line, column, name)
            else:
                value = _number(path, text, line, column, name)
                if value is not None:
                    row[name] = value
        if epoch is None:
            epoch = current if current is not None else 0
        if current is not None and epoch < current:
            raise RunFormatError(
                path, f"epoch {epoch} after epoch {current}: rows must come in epoch order "
                "(a log of two runs appended?)", line=line, column=header.index("epoch") + 1,
                column_name="epoch",
            )
        current = epoch
        merged.setdefault(epoch, {}).update(row)
        if step is not None:  # Lightning's step is the 0-based index of the last step taken
            previous = steps.get(epoch)
            steps[epoch] = step + 1 if previous is None else max(previous, step + 1)
        else:
            steps.setdefault(epoch, None)
    order = sorted(merged)
    return Run(source=str(path), rounds=[merged[e] for e in order], epochs=order,
               steps=[steps.get(e) for e in order])


# -- JSON -----------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunFormatError(path, f"not UTF-8 text ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFormatError(path, f"not valid JSON ({exc.msg})", line=exc.lineno,
                             column=exc.colno) from None


def _locate(path: Path, needle: str, index: int) -> tuple[int | None, int | None]:
    """The line and column of the ``index``-th ``log_history`` entry's ``needle`` (best effort,
    for messages)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None, None
    start = text.find('"log_history"')
    if start < 0:
        return None, None
    pos = start
    for _ in range(index + 1):
        pos = text.find("{", pos + 1)
        if pos < 0:
            return None, None
    hit = text.find(needle, pos)
    if hit < 0:
        hit = pos
    line = text.count("\n", 0, hit) + 1
    column = hit - (text.rfind("\n", 0, hit) + 1) + 1
    return line, column


def _json_number(path: Path, value: Any, index: int, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        line, column = _locate(path, f'"{key}"', index)
        raise RunFormatError(
            path, f"log_history[{index}][{key!r}]: expected a number, got "
            f"{type(value).__name__} {value!r:.40}", line=line, column=column,
        )
    if isinstance(value, str):
        if value in _NONFINITE:
            return _NONFINITE[value]
        line, column = _locate(path, f'"{key}"', index)
        raise RunFormatError(
            path, f"log_history[{index}][{key!r}]: expected a number, got {value!r:.40}",
            line=line, column=column,
        )
    return float(value)


_TRAIN_KEYS = ("loss", "learning_rate", "grad_norm")


def _read_huggingface(path: Path) -> Run:
    state = _load_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise RunFormatError(
            path, "no 'log_history' list: not a Hugging Face trainer_state.json", line=1,
            column=1,
        )
    rounds: list[dict[str, Any]] = []
    epochs: list[int | None] = []
    steps: list[int | None] = []
    pending: dict[str, float] = {}
    for index, entry in enumerate(state["log_history"]):
        if not isinstance(entry, dict):
            line, column = _locate(path, "{", index)
            raise RunFormatError(path, f"log_history[{index}] is not an object", line=line,
                                 column=column)
        if "train_runtime" in entry:
            continue  # the end-of-training summary
        if not any(isinstance(k, str) and k.startswith("eval_") for k in entry):
            for key in _TRAIN_KEYS:
                if key in entry:
                    value = _json_number(path, entry[key], index, key)
                    if value is not None:
                        pending[key] = value
            continue
        metrics: dict[str, Any] = dict(pending)
        pending = {}
        for key, value in entry.items():
            if key in ("step", "epoch"):
                continue
            number = _json_number(path, value, index, key)
            if number is not None:
                metrics[key] = number
        epoch = entry.get("epoch")
        epoch_value = _json_number(path, epoch, index, "epoch") if epoch is not None else None
        epochs.append(
            None if epoch_value is None or not math.isfinite(epoch_value)
            else max(0, math.ceil(epoch_value) - 1)
        )
        step = entry.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            line, column = _locate(path, '"step"', index)
            raise RunFormatError(path, f"log_history[{index}]['step']: expected an integer, got "
                                 f"{step!r:.40}", line=line, column=column)
        steps.append(step)
        rounds.append(metrics)
    return Run(source=str(path), rounds=rounds, epochs=epochs, steps=steps)


def _read_trainctl(path: Path) -> Run:
    try:
        records = read_log(path)
    except LogError as exc:  # "'path' line N: what (json's 'line 1 column C')"
        text = str(exc)
        line = re.search(r"' line (\d+): ", text)
        column = re.search(r"column (\d+)", text)
        raise RunFormatError(
            path, text.split(": ", 1)[-1], line=int(line.group(1)) if line else None,
            column=int(column.group(1)) if line and column else None,
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunFormatError(path, f"cannot be read ({exc})") from None
    csv_log = path.suffix.lower() == ".csv"
    rounds: list[dict[str, Any]] = []
    epochs: list[int | None] = []
    steps: list[int | None] = []
    header = _csv_header(path) if csv_log else []
    for number, record in enumerate(records, 2 if csv_log else 1):
        if record.get("clock") != "round":
            continue
        if csv_log:
            metrics = _csv_log_metrics(path, header, record, number)
            epoch = _integer(path, record.get("epoch") or "", number,
                             header.index("epoch") + 1, "epoch")
            step = _integer(path, record.get("optimizer_steps") or "", number,
                            header.index("optimizer_steps") + 1, "optimizer_steps")
        else:
            raw = record.get("metrics")
            if not isinstance(raw, dict):
                raise RunFormatError(path, f"round {record.get('round')!r} has no 'metrics' "
                                     "object")
            metrics = {}
            for key, value in raw.items():
                if isinstance(value, str) and value in _NONFINITE:
                    metrics[key] = _NONFINITE[value]
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[key] = float(value)
                else:
                    raise RunFormatError(path, f"round {record.get('round')!r}: metric {key!r} "
                                         f"is not a number: {value!r:.40}")
            epoch = record.get("epoch")
            step = record.get("optimizer_steps")
        rounds.append(metrics)
        epochs.append(epoch if isinstance(epoch, int) else None)
        steps.append(step if isinstance(step, int) else None)
    return Run(source=str(path), rounds=rounds, epochs=epochs, steps=steps)


_CSV_LOG_FIXED = frozenset({"clock", "round", "epoch", "optimizer_steps", "stop", "lr_changed",
                            "events", "messages", "save", "delete"})


def _csv_log_metrics(path: Path, header: list[str], record: dict[str, Any],
                     line: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for column, name in enumerate(header, 1):
        if name in _CSV_LOG_FIXED or name.startswith("lr/pg"):
            continue
        value = _number(path, record.get(name) or "", line, column, name)
        if value is not None:
            metrics[name] = value
    return metrics


# -- TensorBoard ----------------------------------------------------------------------------------


def _read_tensorboard(path: Path) -> Run:
    try:
        from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
            EventAccumulator,
        )
    except ImportError as exc:
        raise ImportError(
            "reading TensorBoard event files needs tensorboard: pip install trainctl[tensorboard]"
        ) from exc
    files = [path] if path.is_file() else _event_files(path)
    if not files:
        raise RunFormatError(path, "no TensorBoard event files (events.out.tfevents.*)")
    root = path if path.is_dir() else path.parent
    by_step: dict[int, dict[str, tuple[float, float]]] = {}
    found = 0
    for file in files:
        accumulator = EventAccumulator(str(file), size_guidance={"scalars": 0, "tensors": 0})
        try:
            accumulator.Reload()
        except Exception as exc:  # tensorboard raises its own DataLossError and friends
            raise RunFormatError(file, f"cannot be read as TensorBoard events ({exc})") from None
        prefix = file.parent.relative_to(root).as_posix()
        tags = accumulator.Tags()
        for tag in tags.get("scalars", []):
            name = tag if prefix in ("", ".") else f"{prefix}/{tag}"
            for event in accumulator.Scalars(tag):
                found += 1
                slot = by_step.setdefault(int(event.step), {})
                old = slot.get(name)
                if old is None or event.wall_time >= old[0]:
                    slot[name] = (event.wall_time, float(event.value))
        for tag in tags.get("tensors", []):
            name = tag if prefix in ("", ".") else f"{prefix}/{tag}"
            for event in accumulator.Tensors(tag):
                value = _scalar_tensor(event.tensor_proto)
                if value is None:
                    continue
                found += 1
                slot = by_step.setdefault(int(event.step), {})
                old = slot.get(name)
                if old is None or event.wall_time >= old[0]:
                    slot[name] = (event.wall_time, value)
    if not found:
        raise RunFormatError(path, "the event files hold no scalar values")
    order = sorted(by_step)
    rounds = [{k: v for k, (_, v) in sorted(by_step[s].items())} for s in order]
    return Run(source=str(path), rounds=rounds, epochs=[None] * len(order), steps=order)


def _scalar_tensor(proto: Any) -> float | None:
    """A 0-d float tensor's value (TF2 summaries write scalars as tensors), else ``None``."""
    from tensorboard.util import tensor_util  # type: ignore[import-untyped]

    array = tensor_util.make_ndarray(proto)
    if array.ndim != 0 or array.dtype.kind not in "fiu":
        return None
    return float(array)
