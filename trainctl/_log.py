"""The decision log: every decision a controller takes, on disk, where users already look.

``Controller(..., log=DecisionLog("run/decisions.jsonl"))`` appends one record per evaluation
round (and, if asked, per optimizer step) and one at :meth:`Controller.finish`; every adapter
runs a Controller, so every adapter writes it. A record is :meth:`Decision.to_dict` (the clocks,
the metrics, the rate in force for each param group after plateau cuts, the events and the
rendered messages, each policy's own numbers), one JSON object per line.

Theory of operation
-------------------
- **Append-only, crash-safe.** Each record is one line, written whole and flushed. A crash can
  only tear the last line; :func:`read_log` skips a torn last line with a warning and never
  fails on it. A torn line in the middle (a damaged file) is an error naming the file and the
  line.
- **Resume.** When the controller loads a state (a resumed run), the log drops every record
  after the point the state was saved at (by rounds and optimizer steps) and the ``end``
  record, rewriting the file atomically (temporary file, fsync, rename). The records the
  resumed run appends then make the log equal to an uninterrupted run's.
- **Optimizer steps.** Off by default (``steps=False``). ``steps=True`` records every step;
  ``steps=n`` every ``n``-th, plus any step that stops training or writes a checkpoint. Step
  records are buffered and reach the file with the next round, stop, checkpoint or end record
  (or when the buffer fills): a crash can lose only records after the last checkpoint, which a
  resume drops anyway.
- **Header.** The first line describes the controller (its policies' configurations, schedule
  and base rate), so a log can be read on its own (``trainctl inspect``, ``trainctl replay``).
- **CSV.** A path ending in ``.csv`` (or ``format="csv"``) writes a table instead: clocks,
  ``stop``, one ``lr/pg<i>`` column per param group, ``events`` and ``messages`` (joined with
  ``"; "``), the checkpoint written, then one column per metric. A metric seen for the first
  time later in the run widens the table (the file is rewritten with the new column).

Format ``trainctl.decision-log``, version 1::

    {"clock": "header", "format": "trainctl.decision-log", "version": 1, "controller": {...}}
    {"clock": "round", "round": 1, "epoch": 0, "optimizer_steps": 32, "metrics": {...},
     "lr": [0.001], "events": ["improved"], "reasons": [...], "policies": {...}, ...}
    ...
    {"clock": "end", ...}
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from ._decisions import Decision
from .storage import atomic_write

__all__ = ["LOG_FORMAT", "DecisionLog", "LogError", "read_log"]

LOG_FORMAT = "trainctl.decision-log"
LOG_VERSION = 1
_BASE_COLUMNS = ("clock", "round", "epoch", "optimizer_steps", "stop", "lr_changed")


class LogError(ValueError):
    """A decision log cannot be read: not a log, another version, or a damaged line."""


class DecisionLog:
    """An append-only log of a controller's decisions (see the module docstring).

    Args:
        path: the file (created with its directory); ``.csv`` writes a table.
        steps: ``False`` (rounds only), ``True`` (every optimizer step too) or an int ``n``
            (every ``n``-th step, and every step that stops or saves).
        format: ``"jsonl"`` or ``"csv"``; ``None`` decides from the suffix.

    Attach it with ``Controller(..., log=...)``. It holds an open file: :meth:`close` it (or use
    ``with``) when the run is over; a pickled copy reopens the file when it next writes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        steps: bool | int = False,
        format: Literal["jsonl", "csv"] | None = None,  # the natural name
    ) -> None:
        self.path = Path(path)
        if isinstance(steps, bool):
            self._every = 1 if steps else 0
        elif isinstance(steps, int) and steps >= 1:
            self._every = steps
        else:
            raise ValueError(f"'steps' must be a bool or an int >= 1, got {steps!r}")
        fmt = format or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"'format' must be 'jsonl' or 'csv', got {format!r}")
        self.format: Literal["jsonl", "csv"] = "csv" if fmt == "csv" else "jsonl"
        self._file: io.TextIOWrapper | None = None
        self._header: dict[str, Any] | None = None
        self._columns: list[str] = []

    # -- writing ----------------------------------------------------------------------------------

    def start(self, description: Mapping[str, Any]) -> None:
        """Write the header describing the controller, unless the file already has records
        (a resumed run appends to its log)."""
        self._header = {
            "clock": "header", "format": LOG_FORMAT, "version": LOG_VERSION,
            "controller": dict(description),
        }
        if self.path.exists() and self.path.stat().st_size > 0:
            return
        self._rewrite([])

    def write(self, decision: Decision) -> None:
        """Append the record of ``decision`` (optimizer steps as ``steps`` says)."""
        if decision.clock == "optimizer_step":
            every = self._every
            if not every:
                return
            loud = decision.stop or decision.save is not None or decision.last is not None
            if not loud:
                if decision.optimizer_steps % every:
                    return
                # a quiet step: buffered, flushed with the next round, stop, save or end
                # record (a crash loses only records after the last checkpoint, which a resume
                # drops anyway)
                self._append(decision.to_dict(), flush=False)
                return
        self._append(decision.to_dict())

    __call__ = write

    def rewind(self, rounds: int, optimizer_steps: int) -> None:
        """Drop the records after ``rounds`` rounds and ``optimizer_steps`` optimizer steps, and
        any ``end`` record: the run resumes from there (see the module docstring)."""
        if not self.path.exists():
            return
        if self.format == "csv":
            self.close()
            rows = [
                row for row in _csv_rows(self.path)
                if (row.get("clock") == "round" and int(row.get("round") or 0) <= rounds)
                or (row.get("clock") == "optimizer_step"
                    and int(row.get("optimizer_steps") or 0) <= optimizer_steps)
            ]
            self._widen_rows(rows)
            return
        kept = [
            r for r in read_log(self.path, include_header=True)
            if r.get("clock") == "header"
            or (r.get("clock") == "round" and r.get("round", 0) <= rounds)
            or (r.get("clock") == "optimizer_step" and r.get("optimizer_steps", 0)
                <= optimizer_steps)
        ]
        header = [r for r in kept if r.get("clock") == "header"]
        body = [r for r in kept if r.get("clock") != "header"]
        if header:
            self._header = header[0]
        self._rewrite(body)

    def close(self) -> None:
        """Flush, fsync and close the file (writing again reopens it)."""
        f, self._file = self._file, None
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["_file"] = None  # a copy reopens the file when it next writes
        return out

    def __repr__(self) -> str:
        return f"DecisionLog({str(self.path)!r}, format={self.format!r})"

    # -- the file ---------------------------------------------------------------------------------

    def _open(self) -> io.TextIOWrapper:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.format == "csv" and not self._columns and self.path.exists():
                with open(self.path, newline="", encoding="utf-8") as f:
                    self._columns = next(csv.reader(f), [])
            self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        return self._file

    def _append(self, record: dict[str, Any], *, flush: bool = True) -> None:
        if self.format == "csv":
            row = _csv_row(record)
            if any(k not in self._columns for k in row):
                self._widen([row])
                return
            line = _csv_line(self._columns, row)
        else:
            line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        f = self._open()
        f.write(line)
        if flush:
            f.flush()

    def _rewrite(self, body: list[dict[str, Any]]) -> None:
        """Replace the log with header + ``body``, atomically."""
        self.close()
        if self.format == "csv":
            self._widen_rows([_csv_row(r) for r in body])
            return
        records = ([self._header] if self._header else []) + body
        text = "".join(
            json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in records
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda temp: temp.write_text(text, encoding="utf-8"))

    def _widen(self, new_rows: list[dict[str, Any]]) -> None:
        rows = list(_csv_rows(self.path)) if self.path.exists() else []
        self.close()
        self._widen_rows(rows + new_rows)

    def _widen_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the table, atomically, with ``rows`` and every column they use."""
        columns = self._columns = _columns_for(rows)
        text = _csv_line(columns, {c: c for c in columns}) + "".join(
            _csv_line(columns, row) for row in rows
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda temp: temp.write_text(text, encoding="utf-8"))


# -- reading --------------------------------------------------------------------------------------


def read_log(path: str | os.PathLike[str], *, include_header: bool = False) -> list[dict[str, Any]]:
    """The records of a decision log (JSON Lines), oldest first.

    A torn last line (a crash while writing it) is skipped with a warning; any other line that is
    not a JSON object raises :class:`LogError` naming the file and the line. The header (the
    controller's description) is left out unless ``include_header``. A CSV log reads as rows
    (dicts of strings).
    """
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return list(_csv_rows(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LogError(f"{str(p)!r} is not a decision log (not UTF-8: {exc})") from None
    lines = text.split("\n")
    torn_last = not text.endswith("\n")
    out: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if torn_last and number == len(lines):
                warnings.warn(
                    f"{str(p)!r}: line {number} is incomplete (the run was interrupted while "
                    "writing it); it is ignored",
                    UserWarning,
                    stacklevel=2,
                )
                break
            raise LogError(f"{str(p)!r} line {number}: not a decision-log record ({exc})") from None
        if record.get("clock") == "header":
            if record.get("format") != LOG_FORMAT:
                raise LogError(
                    f"{str(p)!r} line {number}: not a trainctl decision log "
                    f"(format {record.get('format')!r})"
                )
            if record.get("version") != LOG_VERSION:
                raise LogError(
                    f"{str(p)!r}: decision-log version {record.get('version')!r} is not "
                    f"supported (this trainctl reads version {LOG_VERSION})"
                )
            if not include_header:
                continue
        out.append(record)
    return out


def _csv_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {k: record.get(k) for k in _BASE_COLUMNS}
    for i, lr in enumerate(record.get("lr") or ()):
        row[f"lr/pg{i}"] = lr
    row["events"] = "; ".join(record.get("events", ()))
    row["messages"] = "; ".join(
        f"{r['source']}: {r['message']}" for r in record.get("reasons", ())
    )
    save = record.get("save")
    row["save"] = "" if save is None else save["name"]
    row["delete"] = "; ".join(record.get("delete", ()))
    for key, value in (record.get("metrics") or {}).items():
        row[key] = value
    return row


def _columns_for(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = list(_BASE_COLUMNS)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def _csv_line(columns: list[str], row: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        ["" if row.get(c) is None else row.get(c) for c in columns]
    )
    return buffer.getvalue()


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)
