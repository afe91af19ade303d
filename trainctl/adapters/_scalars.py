"""trainctl's decisions as flat ``{name: float}`` scalars, for the frameworks' loggers.

The one rule every adapter uses to show its decisions where users already look (Keras' epoch
``logs`` and so History, ``CSVLogger`` and ``TensorBoard``; Lightning's loggers; a torch
``SummaryWriter``). Standard library and the core only: no framework is imported here. The
learning rate is not among these keys: each adapter names it as its framework does (Keras
``learning_rate``, Lightning ``lr-SGD``, torch ``lr/pg0``).

Keys
----
=================================  ============================================================
key                                value
=================================  ============================================================
``trainctl/stop``                  1.0 if a decision said stop, else 0.0
``trainctl/<label>/<field>``       each numeric field of a policy's latest decision: numbers as
                                   they are, bools as 1.0 / 0.0, an unset optional number
                                   (``best`` before the first monitored value) as NaN. E.g.
                                   ``trainctl/EarlyStopping(val_loss)/wait``, ``.../best``,
                                   ``.../best_epoch`` (0-based), ``.../improved``;
                                   ``trainctl/ReduceLROnPlateau(val_loss)/cooldown_counter``,
                                   ``.../reduced``; ``trainctl/CheckpointPolicy(val_loss)/is_best``
``trainctl/events/<event>``        how many reasons carried ``<event>``; one key for every
                                   event of :data:`trainctl.EVENTS` but ``finite`` (a NaN
                                   guard's "checked, fine", on every check), 0.0 when it did
                                   not happen
=================================  ============================================================

``<label>`` is the policy's label (``Controller.labels``); a label that two policies share gets
``#2``, ``#3``, ... on its second and later policy. A policy's numeric fields are those its
decision type declares as ``int``, ``float``, ``bool`` or an optional one of them (a NamedTuple,
dataclass or attrs class with type hints); for a decision without declared types (a mapping, a
plain object) the fields whose value is a number, a bool or ``None``.

Stable columns
--------------
Keras' ``CSVLogger`` fixes its columns from the first epoch's keys, and History keeps one list per
key, so the same keys must be there from the first log on: the event keys always are (0.0), and
:class:`ScalarTally` keeps every policy's fields from its latest decision, so a policy that made
no decision since the last log (a step policy at a round, the policies of a stopped controller)
still has its keys, with the values it last reported. An event outside :data:`trainctl.EVENTS`
(a policy of your own) gets its key when it first happens and keeps it from then on.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from .. import EVENTS, Decision
from .._decisions import plain_fields, reasons_of

__all__ = [
    "EVENTS_PREFIX",
    "EVENT_KEYS",
    "PREFIX",
    "STOP_KEY",
    "ScalarTally",
    "decision_scalars",
    "is_trainctl_key",
    "merge_scalars",
]

#: every key of these scalars starts with it
PREFIX = "trainctl/"
STOP_KEY = PREFIX + "stop"
EVENTS_PREFIX = PREFIX + "events/"
#: the events that always have a key (counted, 0.0 when absent), in sorted order
EVENT_KEYS: tuple[str, ...] = tuple(sorted(EVENTS - {"finite"}))


def is_trainctl_key(key: object) -> bool:
    """Whether ``key`` is one of these scalars (the adapters keep them out of the metrics they
    hand to a controller)."""
    return isinstance(key, str) and key.startswith(PREFIX)


def merge_scalars(target: dict[str, Any], scalars: Mapping[str, float]) -> None:
    """Add one source's ``scalars`` to ``target``, which may hold another trainctl source's
    already (several Keras callbacks write into one epoch's logs): ``trainctl/stop`` is 1.0 if
    any source says so, the event counts add up, and a policy whose keys another source wrote
    (two callbacks with the same label) takes the next free ``<label>#2``, ``#3``, ... Without
    such a collision this is ``target.update(scalars)``."""
    renamed: dict[str, str] = {}
    for key, value in scalars.items():
        if key == STOP_KEY:
            target[key] = max(float(target.get(key, 0.0)), value)
        elif key.startswith(EVENTS_PREFIX):
            target[key] = float(target.get(key, 0.0)) + value
        else:
            label, field = key[len(PREFIX):].rsplit("/", 1)
            free = renamed.get(label)
            if free is None:
                free, n = label, 1
                while f"{PREFIX}{free}/{field}" in target:
                    n += 1
                    free = f"{label}#{n}"
                renamed[label] = free
            target[f"{PREFIX}{free}/{field}"] = value


def decision_scalars(decision: Decision) -> dict[str, float]:
    """The scalars of one decision (see the module docstring): ``trainctl/stop``, every
    policy's numeric fields and the count of every event."""
    tally = ScalarTally()
    tally.add(decision)
    return tally.scalars()


class ScalarTally:
    """The scalars of the decisions taken between two logs (an epoch's optimizer steps and its
    round, say).

    :meth:`add` each decision as it is taken; :meth:`scalars` gives, and starts counting afresh:

    - ``trainctl/stop``: 1.0 if any decision since the last call said stop;
    - ``trainctl/<label>/<field>``: each policy's fields from its latest decision (kept across
      calls: a policy keeps its keys when it made no decision since);
    - ``trainctl/events/<event>``: the events of the decisions since the last call, counted.
      A stopped controller repeats the decision that stopped it at every later call; a repeat
      is not counted again (the event happened once).
    """

    _fields: dict[str, dict[str, float]]
    _counts: Counter[str]
    _seen_events: set[str]
    _stop: bool
    _stopped_by: tuple[Any, ...]

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new run)."""
        self._fields = {}  # key -> that policy's scalars, from its latest decision
        self._counts = Counter()
        self._seen_events = set()  # events outside EVENT_KEYS that happened: keys from then on
        self._stop = False
        self._stopped_by = ()  # the details of the latest decision that stopped

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScalarTally):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def add(self, decision: Decision) -> None:
        """Take ``decision`` into account."""
        if not isinstance(decision, Decision):
            raise TypeError(
                f"'decision' must be a trainctl.Decision, got {type(decision).__name__}"
            )
        if decision.stop:
            self._stop = True
        repeats = self._stopped_by
        for key, label, detail in _keyed(decision):
            self._fields[key] = _policy_scalars(key, detail)
            if any(detail is d for d in repeats):
                continue
            for reason in reasons_of(detail, label):
                self._counts[reason.event] += 1
        if decision.stop:
            self._stopped_by = decision.details

    def scalars(self) -> dict[str, float]:
        """The scalars since the last call (see the class docstring); counting starts afresh."""
        out: dict[str, float] = {STOP_KEY: 1.0 if self._stop else 0.0}
        for fields in self._fields.values():
            out.update(fields)
        counts = self._counts
        self._seen_events.update(e for e in counts if e != "finite")
        for event in (*EVENT_KEYS, *sorted(self._seen_events - set(EVENT_KEYS))):
            out[EVENTS_PREFIX + event] = float(counts.get(event, 0))
        self._counts = Counter()
        self._stop = False
        return out


def _keyed(decision: Decision) -> Iterator[tuple[str, str, Any]]:
    """``(key, label, detail)`` for each policy decision; a repeated label gets ``#2``, ..."""
    labels = decision.labels or ("",) * len(decision.details)
    seen: Counter[str] = Counter()
    for label, detail in zip(labels, decision.details, strict=True):
        seen[label] += 1
        n = seen[label]
        yield (label if n == 1 else f"{label}#{n}"), label, detail


def _policy_scalars(key: str, detail: Any) -> dict[str, float]:
    declared = _numeric_fields(type(detail))
    out: dict[str, float] = {}
    for name in plain_fields(detail):  # the core's rule: the policy's own plain fields
        if declared is not None and name not in declared:
            continue
        raw = detail[name] if isinstance(detail, Mapping) else getattr(detail, name)
        value = _number(raw)
        if value is not None:
            out[f"{PREFIX}{key}/{name}"] = value
    return out


def _number(raw: Any) -> float | None:
    """A field's value as a float (``None`` -> NaN); ``None`` if it is not a number."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, numbers.Real):
        return float(raw)
    return None


_NUMERIC_TYPES = (bool, int, float)
_DECLARED: dict[type, frozenset[str] | None] = {}


def _numeric_fields(cls: type) -> frozenset[str] | None:
    """The fields ``cls`` declares as a number, a bool or an optional one (``None``: the type
    declares no fields with type hints; the values decide)."""
    try:
        return _DECLARED[cls]
    except KeyError:
        pass
    hints: dict[str, Any] = {}
    if cls not in (dict, object) and not issubclass(cls, Mapping):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # hints that cannot be resolved: fall back to the values
            hints = {}
    found = (
        frozenset(name for name, hint in hints.items() if _is_numeric(hint)) if hints else None
    )
    _DECLARED[cls] = found
    return found


def _is_numeric(hint: Any) -> bool:
    if hint in _NUMERIC_TYPES:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return bool(args) and all(a in _NUMERIC_TYPES for a in args)
    return False
