"""Checkpoint retention: when to save, what to call it, and which checkpoints to keep.

Theory of operation
-------------------
:class:`CheckpointPolicy` only *names* file effects; a file layer (``trainctl.storage``) writes and
deletes. Each call is one observation on one clock. A call that is not a **trigger** changes
nothing. Exactly one kind of trigger is active (as in Lightning):

==========================  ===============  ==================================================
trigger                     clock            fires when
==========================  ===============  ==================================================
``every_n_epochs=n``        round            ``(epoch + 1) % n == 0``
``every_n_steps=n``         optimizer_step   ``optimizer_steps % n == 0``
``every_seconds=t``         optimizer_step   ``time - last_time >= t`` (``last_time`` starts at 0
                                             and moves to ``time`` at every such trigger; a
                                             ``time`` below ``last_time`` is a restarted clock,
                                             e.g. after a resume: ``time >= t``)
==========================  ===============  ==================================================

If none of the three is given, ``every_n_epochs`` is 1 (Lightning's and Keras' default); a value
of 0 (or ``None`` beside another trigger) switches epoch saving off.

At a trigger with monitored value ``v`` the policy forms the checkpoint's name from ``filename``
and decides, in this order:

1. ``monitor`` set but absent: ``strict`` -> :class:`MetricNotFoundError`; with
   ``save_best_only`` -> save anyway, unranked (Keras warns and saves); otherwise nothing is saved.
   Either way the event is ``missing_metric`` (the Controller warns once).
2. Whether to save (the *gate*):

   - ``save_best_only`` (Keras): iff ``v`` improves on the best so far (the first value always
     does, NaN included, unless ``initial_value_threshold`` is the starting best). Nothing is ever
     deleted.
   - otherwise: iff some retention rule would keep the new checkpoint:

     =========================  ==============================================================
     rule                       keeps
     =========================  ==============================================================
     keep everything            ``save_top_k=-1``, or no retention rule at all (Keras' default)
     ``save_top_k=k``           the best ``k`` (Lightning): a new checkpoint enters if fewer
                                than ``k`` are in the best set or it is *strictly* better than
                                the worst of them, which then leaves the set; NaN ranks worst,
                                so it enters only a set that is not full; among tied worst the
                                oldest leaves. Without a monitor, ``k=1`` keeps the latest.
     ``keep_last_n=n``          the ``n`` most recent saves (orbax: best-k and latest-n coexist)
     ``keep_every_n_epochs=n``  checkpoints whose 1-based epoch is a multiple of ``n`` (orbax
                                keep_period)
     =========================  ==============================================================

3. Save: a kept checkpoint with the same name is replaced (the file is overwritten, never
   deleted). Then every kept checkpoint that no rule keeps any more is deleted, after the save.
4. ``save_last``: at every trigger, also write ``last{extension}`` (overwritten each time).

Names: ``filename`` is a ``str.format`` template whose fields are ``epoch`` (1-based, as Keras
writes it), ``step`` (optimizer steps so far) and metric names, looked up whole: ``{val/loss:.3f}``
and ``{val.acc:.2f}`` read the metrics ``"val/loss"`` and ``"val.acc"`` (no attribute or index
semantics). A name that would leave the checkpoint directory is an error.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import attrs

from ._config import Configured
from ._decisions import Reason, SaveRequest, epoch_number, number_text
from ._monitor import Direction, Monitor, coerce_metric, present_keys
from ._names import name_problem
from ._numbers import to_float32
from ._policy import Clock, Observation
from ._state import (
    StateError,
    decode_float,
    decode_int,
    decode_optional_int,
    encode_float,
    require_keys,
)
from ._validation import (
    boolean,
    finite,
    ge,
    integer,
    one_of,
    optional,
    optional_metric_name,
    plain,
)

__all__ = ["CheckpointDecision", "CheckpointPolicy", "CheckpointState", "KeptCheckpoint"]

_g = number_text
_lazy = Reason.lazy


# -- value types --------------------------------------------------------------------------------


class KeptCheckpoint(NamedTuple):
    """One checkpoint the policy keeps.

    Attributes:
        name: file name inside the checkpoint directory.
        score: the monitored value it was saved with (``None`` without one).
        epoch: the 0-based epoch of the observation that saved it.
        step: optimizer steps completed when it was saved.
        order: its place in save order (0 for the first save of the run).
        ranked: whether it is in the best-``save_top_k`` set.
    """

    name: str
    score: float | None
    epoch: int
    step: int
    order: int
    ranked: bool = False


class CheckpointState(NamedTuple):
    """Plain-data state of :class:`CheckpointPolicy`.

    Attributes:
        kept: the checkpoints kept, in save order.
        best: the best monitored value saved so far (``None`` before one).
        saves: checkpoints saved so far (the next ``order``).
        triggers: triggers fired so far.
        last_save_step: optimizer steps at the last save, or ``None``.
        last_time: the ``time`` of the last ``every_seconds`` trigger, or ``None`` (= 0).
    """

    kept: tuple[KeptCheckpoint, ...] = ()
    best: float | None = None
    saves: int = 0
    triggers: int = 0
    last_save_step: int | None = None
    last_time: float | None = None


class CheckpointDecision(NamedTuple):
    """What :class:`CheckpointPolicy` decided on one call.

    Attributes:
        stop: always ``False`` (a checkpoint policy never stops training).
        save: the checkpoint to write now, or ``None``.
        delete: names to remove now, after ``save`` (and ``last``) are durable.
        is_best: ``save`` is the new best by the monitor.
        last: the rolling ``last{extension}`` checkpoint to (over)write now, or ``None``.
        reason: why.
    """

    stop: bool
    save: SaveRequest | None
    delete: tuple[str, ...]
    is_best: bool
    last: SaveRequest | None
    reason: Reason


# -- names --------------------------------------------------------------------------------------

_RESERVED_FIELDS = ("epoch", "step")
_CONVERSIONS: dict[str | None, Callable[[Any], Any]] = {
    None: lambda x: x,
    "s": str,
    "r": repr,
    "a": ascii,
}

Template = tuple[tuple[str, str | None, str, str | None], ...]


def _parse_template(filename: object) -> Template:
    if not isinstance(filename, str):
        raise TypeError(f"'filename' must be a str, got {type(filename).__name__} {filename!r}")
    if not filename:
        raise ValueError("'filename' must not be empty, got ''")
    try:
        parts = list(string.Formatter().parse(filename))
    except ValueError as exc:
        raise ValueError(
            f"'filename' must be a valid format template ({exc}), got {filename!r}"
        ) from None
    out = []
    for literal, field, spec, conversion in parts:
        if any(c in literal for c in ("/", "\\", "\x00")):
            raise ValueError(
                "'filename' must not contain '/', '\\' or NUL (checkpoints live in one "
                f"directory), got {filename!r}"
            )
        if field is not None:
            if field == "" or field.isdigit():
                raise ValueError(
                    f"'filename' fields must be named (epoch, step or a metric), got {filename!r}"
                )
            if conversion not in _CONVERSIONS:
                raise ValueError(
                    f"'filename' has the unknown conversion '!{conversion}' in field {field!r}, "
                    f"got {filename!r}"
                )
            if "{" in (spec or ""):
                raise ValueError(
                    f"'filename' must not nest fields in a format spec ({field!r}), "
                    f"got {filename!r}"
                )
            sample: Any = 1 if field in _RESERVED_FIELDS else 1.0
            try:
                format(_CONVERSIONS[conversion](sample), spec or "")
            except ValueError as exc:
                raise ValueError(
                    f"'filename' has an invalid format spec {spec!r} for field {field!r} ({exc}), "
                    f"got {filename!r}"
                ) from None
        out.append((literal, field, spec or "", conversion))
    return tuple(out)


def _format_template(
    template: Template, metrics: Mapping[str, Any], *, epoch: int, step: int, sample: bool = False
) -> str:
    """Fill ``template`` (see :func:`_parse_template`); ``sample``: every metric reads 1.0."""
    out = []
    for literal, field, spec, conversion in template:
        out.append(literal)
        if field is None:
            continue
        value: Any
        if field == "epoch":
            value = epoch_number(epoch)  # file names count as every text does
        elif field == "step":
            value = step
        elif sample:
            value = 1.0
        else:
            raw = metrics.get(field, _ABSENT)
            if raw is _ABSENT:
                raise ValueError(
                    f"'filename' field {field!r} is not in the metrics (present: "
                    f"{', '.join(map(repr, metrics)) or 'none'})"
                )
            try:
                value = raw if raw.__class__ is float else coerce_metric(field, raw)
            except TypeError as exc:
                raise ValueError(f"'filename' field {field!r}: {exc}") from None
        try:
            out.append(format(_CONVERSIONS[conversion](value), spec))
        except ValueError as exc:
            raise ValueError(
                f"'filename' field {field!r} cannot format {value!r} with {spec!r} ({exc})"
            ) from None
    return "".join(out)


_ABSENT: Any = object()


def _check_extension(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"'extension' must be a str, got {type(value).__name__} {value!r}")
    if "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"'extension' must not contain '/', '\\' or NUL, got {value!r}")


# -- messages (rendered only when read) ---------------------------------------------------------


def _m_idle_epoch(epoch1: int, n: int) -> str:
    if n == 0:
        return f"epoch {epoch1}: epoch saving is off (every_n_epochs=0)"
    return f"epoch {epoch1} is not a multiple of every_n_epochs={n}; nothing to do"


def _m_idle_step(step: int, n: int) -> str:
    return f"step {step} is not a multiple of every_n_steps={n}; nothing to do"


def _m_idle_time(elapsed: float, interval: float) -> str:
    return f"{elapsed:.6g} s since the last save trigger < every_seconds={interval:g}"


def _m_idle_clock(clock: str) -> str:
    return f"this policy does not save on the {clock!r} clock"


def _m_missing(monitor: str, keys: str, last: str | None) -> str:
    tail = f"; write {last}" if last else ""
    return f"{monitor!r} not in metrics (present: {keys}); nothing saved{tail}"


def _why(kind: str, monitor: str | None, v: float | None, a: Any, b: Any) -> str:
    if kind == "first":
        return f"{monitor} {_g(v)}, the first monitored value"
    if kind == "threshold":
        return f"{monitor} {_g(v)} improved on initial_value_threshold {_g(a)}"
    if kind == "new_best":
        return f"{monitor} {_g(v)} is the new best, previous {_g(a)}"
    if kind == "missing_saved":
        return (
            f"{monitor!r} not in metrics (present: {a}); saved anyway, as Keras does"
        )
    if kind == "fewer":
        return f"{monitor} {_g(v)}: fewer than {a} in the best set"
    if kind == "enters":
        return f"{monitor} {_g(v)} enters the best {a}, beating {_g(b)}"
    if kind == "latest":
        return "the latest checkpoint (save_top_k=1 without a monitor)"
    if kind == "recent":
        return f"one of the {a} most recent"
    if kind == "every":
        return f"epoch {a} is a multiple of keep_every_n_epochs={b}"
    if kind == "no_rule":
        return f"epoch {a} is not a multiple of keep_every_n_epochs={b} and no other rule keeps it"
    if kind == "all":
        return "every checkpoint is kept"
    if kind == "not_best":
        return f"{monitor} {_g(v)} did not improve on the best {_g(a)}"
    if kind == "not_top":
        return f"{monitor} {_g(v)} is not better than the worst of the best {a}, {_g(b)}"
    if kind == "top0":
        return "save_top_k=0 keeps none"
    return kind


def _m_trigger(
    name: str,
    saved: bool,
    why: tuple[str, str | None, float | None, Any, Any],
    overwritten: int | None,
    deletes: tuple[tuple[str, str], ...],
    last: str | None,
) -> str:
    text = _why(*why)
    if overwritten is not None:
        text += f"; overwrites the checkpoint of epoch {overwritten + 1}"
    parts = [f"{'save' if saved else 'skip'} {name} ({text})"]
    parts.extend(f"delete {n} ({because})" for n, because in deletes)
    if last:
        parts.append(f"write {last}")
    return "; ".join(parts)


def _m_skip_last(last: str) -> str:
    return f"save_top_k=0 keeps none; write {last}"


# -- the policy ---------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class CheckpointPolicy(Configured):
    """Decide when to save a checkpoint, how to name it, and which ones to keep.

    Pure: the decision names the files (``decision.save``, ``decision.last``,
    ``decision.delete``); nothing is written or read. See the module docstring for the rules.

    Args:
        monitor: metric that ranks checkpoints, or ``None`` (then only recency counts).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (inferred from ``monitor``'s name).
        filename: name template, e.g. ``"epoch{epoch:03d}-{val_loss:.4f}"``: ``{epoch}`` is
            1-based, ``{step}`` counts optimizer steps, other fields read metrics by their whole
            name (``{val/loss:.3f}`` works).
        save_best_only: Keras: save only when ``monitor`` improves on the best so far; never
            delete (a name without ``{epoch}`` is overwritten instead).
        save_top_k: Lightning: ``-1`` keep all, ``0`` none, ``k`` the best ``k``; ``None``: no
            best-k rule.
        save_last: also write ``last{extension}`` at every trigger (never deleted).
        every_n_epochs: save when ``(epoch + 1) % n == 0``; 0 disables; ``None``: 1 unless
            ``every_n_steps`` or ``every_seconds`` is given.
        every_n_steps: save when ``optimizer_steps % n == 0`` (Keras integer ``save_freq``).
        every_seconds: save when ``obs.time`` has advanced this much since the last such trigger.
        keep_last_n: also keep the ``n`` most recent checkpoints.
        keep_every_n_epochs: never delete checkpoints whose 1-based epoch is a multiple of this.
        initial_value_threshold: with ``save_best_only``: the best to beat before the first save.
        extension: appended to every name (``".pt"``, ``".keras"``, ``".weights.h5"``).
        strict: raise :class:`MetricNotFoundError` when ``monitor`` is absent at a trigger.
        precision: ``"float64"``, or ``"float32"`` to rank as Keras and Lightning compare.

    ===========================  ===========================  ==================================
    this class                   Keras ``ModelCheckpoint``    Lightning ``ModelCheckpoint``
    ===========================  ===========================  ==================================
    monitor                      monitor ("val_loss")         monitor (None)
    mode                         mode ("auto")                mode ("min")
    filename + extension         filepath (``{epoch}``        filename + ``.ckpt`` (``{epoch}``
                                 1-based, ``{batch}``)        0-based; auto_insert_metric_name)
    save_best_only               save_best_only               —
    save_top_k                   — (never deletes)            save_top_k (1)
    save_last                    —                            save_last (``"link"``: —)
    every_n_epochs=1             save_freq="epoch"            every_n_epochs
    every_n_steps                save_freq=<int>              every_n_train_steps
    every_seconds                —                            train_time_interval
    keep_last_n                  —                            — (orbax: best-k and latest-n)
    keep_every_n_epochs          —                            — (orbax keep_period)
    initial_value_threshold      initial_value_threshold      —
    strict                       — (warns, saves)             — (raises once validation ran)
    precision="float32"          float32 ``ops.less``         float32 tensors
    ===========================  ===========================  ==================================

    Where the frameworks differ, or this class differs from them:

    - Lightning avoids name clashes with a ``-vN`` suffix; here a clash overwrites: the new
      checkpoint replaces the old one in the kept set (use ``{epoch}`` or ``{step}`` in names
      that must stay apart).
    - ``save_last`` writes ``last`` at every trigger; Lightning 2.6 refreshes it only when a
      top-k checkpoint was written at the same step (and once more at the end of training).
    - A missing monitor: Keras saves anyway under ``save_best_only`` (so does this class);
      Lightning defers a step-triggered save to the next validation, this class skips it.
    - NaN: Keras' first value is the best even if NaN (then nothing improves on it), which
      ``save_best_only`` keeps; Lightning ranks NaN worst, which ``save_top_k`` keeps.
    - Keras formats ``{epoch}`` 1-based and Lightning 0-based; ``{epoch}`` here is 1-based and
      ``KeptCheckpoint.epoch`` is the 0-based index.

    >>> import trainctl
    >>> policy = trainctl.CheckpointPolicy(
    ...     monitor="val_loss", save_top_k=2, filename="epoch{epoch:03d}-{val_loss:.2f}",
    ...     extension=".pt",
    ... )
    >>> ctl = trainctl.Controller(policy)
    >>> for loss in (0.5, 0.4, 0.45, 0.3):
    ...     d = ctl.step({"val_loss": loss})
    >>> d.save.name, d.delete
    ('epoch004-0.30.pt', ('epoch003-0.45.pt',))
    >>> for clause in d.details[0].reason.message.split("; "):
    ...     print(clause)
    save epoch004-0.30.pt (val_loss 0.3 is the new best, previous 0.4)
    delete epoch003-0.45.pt (no longer in the best 2)
    >>> [c.name for c in ctl.states[0].kept]
    ['epoch002-0.40.pt', 'epoch004-0.30.pt']
    """

    monitor: str | None = attrs.field(default=None, validator=optional_metric_name)
    mode: Literal["min", "max", "auto"] = attrs.field(
        default="auto", kw_only=True, validator=one_of("min", "max", "auto")
    )
    filename: str = attrs.field(default="epoch{epoch:03d}", kw_only=True)
    save_best_only: bool = attrs.field(
        default=False, kw_only=True, converter=plain, validator=boolean
    )
    save_top_k: int | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(integer, ge(-1))
    )
    save_last: bool = attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)
    every_n_epochs: int | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(integer, ge(0))
    )
    every_n_steps: int | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(integer, ge(0))
    )
    every_seconds: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite, ge(0.0))
    )
    keep_last_n: int | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(integer, ge(1))
    )
    keep_every_n_epochs: int | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(integer, ge(1))
    )
    initial_value_threshold: float | None = attrs.field(
        default=None, kw_only=True, converter=plain, validator=optional(finite)
    )
    extension: str = attrs.field(default="", kw_only=True, validator=_check_extension)
    strict: bool = attrs.field(default=False, kw_only=True, converter=plain, validator=boolean)
    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", kw_only=True, validator=one_of("float64", "float32")
    )
    direction: Direction | None = attrs.field(init=False)
    monitoring: Monitor | None = attrs.field(init=False, repr=False, eq=False)
    """The :class:`~trainctl.Monitor` that ranks checkpoints (``None`` without a monitor)."""
    _template: Template = attrs.field(init=False, repr=False, eq=False)
    _label: str = attrs.field(init=False, repr=False, eq=False)
    _clocks: frozenset[Clock] = attrs.field(init=False, repr=False, eq=False)
    _epoch_n: int = attrs.field(init=False, repr=False, eq=False)
    _step_n: int = attrs.field(init=False, repr=False, eq=False)
    _keep_all: bool = attrs.field(init=False, repr=False, eq=False)
    _last_name: str | None = attrs.field(init=False, repr=False, eq=False)

    warn_if_missing: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        set_attr = object.__setattr__
        set_attr(self, "_template", _parse_template(self.filename))
        # triggers: Lightning's resolution (nothing given -> every epoch; else unset means off)
        epochs, steps, seconds = self.every_n_epochs, self.every_n_steps, self.every_seconds
        if epochs is None and steps is None and seconds is None:
            epochs = 1
        given = [
            f"{name}={value!r}"
            for name, value, on in (
                ("every_n_epochs", epochs, bool(epochs)),
                ("every_n_steps", steps, bool(steps)),
                ("every_seconds", seconds, seconds is not None),
            )
            if on
        ]
        if len(given) > 1:
            raise ValueError(
                "every_n_epochs, every_n_steps and every_seconds are mutually exclusive trigger "
                f"kinds; got {', '.join(given)}"
            )
        if not given and (steps is not None or epochs is not None):
            raise ValueError(
                "no trigger can fire: "
                + ", ".join(
                    f"{name}={value!r}"
                    for name, value in (("every_n_epochs", self.every_n_epochs),
                                        ("every_n_steps", steps))
                    if value is not None
                )
                + " (0 switches a trigger off); give every_n_epochs, every_n_steps or "
                "every_seconds a positive value"
            )
        set_attr(self, "_epoch_n", epochs or 0)
        set_attr(self, "_step_n", steps or 0)
        step_clock = bool(steps) or seconds is not None
        set_attr(self, "_clocks", frozenset({"optimizer_step" if step_clock else "round"}))
        # what to keep
        k = self.save_top_k
        if self.monitor is None:
            if self.save_best_only:
                raise ValueError("'save_best_only' needs a monitor, got monitor=None")
            if k is not None and k not in (-1, 0, 1):
                raise ValueError(
                    f"'save_top_k' must be -1, 0 or 1 without a monitor, got {k} (there is no "
                    "quantity to rank by: set monitor, or use keep_last_n)"
                )
        if self.save_best_only:
            clash = [
                f"{name}={value!r}"
                for name, value in (
                    ("save_top_k", k),
                    ("keep_last_n", self.keep_last_n),
                    ("keep_every_n_epochs", self.keep_every_n_epochs),
                )
                if value is not None
            ]
            if clash:
                raise ValueError(
                    "'save_best_only' (Keras: save improvements, never delete) cannot be combined "
                    f"with retention rules; got {', '.join(clash)}"
                )
        elif self.initial_value_threshold is not None:
            raise ValueError(
                "'initial_value_threshold' only applies with save_best_only=True, got "
                f"initial_value_threshold={self.initial_value_threshold!r}"
            )
        keep_all = (
            self.save_best_only
            or k == -1
            or (k is None and self.keep_last_n is None and self.keep_every_n_epochs is None)
        )
        set_attr(self, "_keep_all", keep_all)
        last = f"last{self.extension}" if self.save_last else None
        problem = None if last is None else name_problem(last)
        if problem is not None:
            raise ValueError(
                f"the save_last name {last!r} {problem} (extension={self.extension!r})"
            )
        set_attr(self, "_last_name", last)
        # the store's name rule, on the template's fixed parts: a name that could never be
        # written is refused now, not at the first save in the middle of training
        sample = _format_template(
            self._template, {}, epoch=0, step=0, sample=True
        ) + self.extension
        problem = name_problem(sample)
        if problem is not None:
            raise ValueError(
                f"'filename' {self.filename!r} with extension {self.extension!r} gives names such "
                f"as {sample!r}, and a checkpoint name {problem}"
            )
        if (
            last is not None
            and all(f is None for _, f, _, _ in self._template)
            and self.filename + self.extension == last
        ):
            raise ValueError(
                f"'filename' {self.filename!r} gives {last!r}, the name save_last uses"
            )
        # monitor
        label = f"CheckpointPolicy({self.monitor or 'latest'})"
        monitoring = None
        if self.monitor is not None:
            monitoring = Monitor(
                self.monitor, mode=self.mode, precision=self.precision, strict=self.strict
            )
        set_attr(self, "direction", None if monitoring is None else monitoring.direction)
        set_attr(self, "monitoring", monitoring)
        set_attr(self, "_label", label)


    @property
    def label(self) -> str:
        """How reasons name this policy, e.g. ``"CheckpointPolicy(val_loss)"``."""
        return self._label

    @property
    def clocks(self) -> frozenset[Clock]:
        """``{"round"}`` for epoch triggers, ``{"optimizer_step"}`` for step and time triggers."""
        return self._clocks

    # -- names ----------------------------------------------------------------------------------

    def format_name(
        self, metrics: Mapping[str, Any], *, epoch: int, step: int
    ) -> str:
        """The file name for a checkpoint at 0-based ``epoch`` after ``step`` optimizer steps.

        Raises ``ValueError`` naming the field if a metric the template needs is absent or not
        a number, and naming the result if it would leave the checkpoint directory.
        """
        try:
            body = _format_template(self._template, metrics, epoch=epoch, step=step)
        except ValueError as exc:
            raise ValueError(f"{exc}; filename={self.filename!r}") from None
        name = body + self.extension
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(f"checkpoint name {name!r} {problem} (filename={self.filename!r})")
        if name == self._last_name:
            raise ValueError(f"checkpoint name {name!r} is the name save_last uses")
        return name

    # -- ranking --------------------------------------------------------------------------------

    def _rank(self, score: float | None) -> float:
        """The value a checkpoint is ranked by: NaN and ``None`` rank worst (Lightning)."""
        worst = math.inf if self.direction != "max" else -math.inf
        if score is None or score != score:
            return worst
        return to_float32(score) if self.precision == "float32" else score

    def _better(self, a: float | None, b: float | None) -> bool:
        monitoring = self.monitoring
        assert monitoring is not None
        return bool(monitoring.improves(self._rank(a), self._rank(b)))

    def _worst_ranked(self, ranked: list[KeptCheckpoint]) -> KeptCheckpoint:
        if self.direction is None:  # no monitor: the oldest goes first
            return min(ranked, key=lambda c: c.order)
        sign = -1.0 if self.direction == "max" else 1.0
        # the worst score; among ties the oldest (Lightning: max() keeps the first inserted)
        return max(ranked, key=lambda c: (sign * self._rank(c.score), -c.order))

    # -- transition -----------------------------------------------------------------------------

    def initial_state(self) -> CheckpointState:
        return CheckpointState()

    def update(
        self, state: CheckpointState, obs: Observation
    ) -> tuple[CheckpointDecision, CheckpointState]:
        """One call on a clock (see the module docstring for the rules)."""
        clock = obs.clock
        label = self._label
        if clock not in self._clocks:
            return self._idle(_lazy(label, "skip_save", _m_idle_clock, clock)), state
        last_time = state.last_time
        if clock == "round":
            n = self._epoch_n
            if not n or (obs.epoch + 1) % n:
                return self._idle(_lazy(label, "skip_save", _m_idle_epoch, obs.epoch + 1, n)), state
        elif self._step_n:
            n = self._step_n
            if obs.optimizer_steps % n:
                return self._idle(
                    _lazy(label, "skip_save", _m_idle_step, obs.optimizer_steps, n)
                ), state
        else:
            interval = self.every_seconds
            assert interval is not None
            now = obs.time
            if now is None or isinstance(now, bool) or not isinstance(now, (int, float)):
                raise ValueError(
                    f"{label}: every_seconds={interval:g} needs the training time, but the "
                    f"observation has time={now!r}; pass time=... to Controller.optimizer_step"
                )
            # a time below the last trigger's means the clock restarted (a resumed run whose
            # adapter counts from 0 again): count from that restart, as Lightning's timer does
            since = last_time or 0.0
            elapsed = now - since if now >= since else now
            if not elapsed >= interval:
                return self._idle(_lazy(label, "skip_save", _m_idle_time, elapsed, interval)), state
            last_time = float(now)
        return self._trigger(state, obs, last_time)

    def _idle(self, reason: Reason) -> CheckpointDecision:
        return _decision(reason=reason)

    def _trigger(
        self, state: CheckpointState, obs: Observation, last_time: float | None
    ) -> tuple[CheckpointDecision, CheckpointState]:
        label = self._label
        monitor = self.monitor
        metrics = obs.metrics
        triggers = state.triggers + 1
        last_name = self._last_name
        v: float | None = None
        missing = False
        monitoring = self.monitoring
        if monitoring is not None:
            v = monitoring.read(metrics, label)  # strict: raises naming the keys present
            missing = v is None
        last = None if last_name is None else SaveRequest(name=last_name, is_best=False, score=v)
        if missing:
            assert monitor is not None
            if not self.save_best_only:
                new = state._replace(triggers=triggers, last_time=last_time)
                reason = _lazy(label, "missing_metric", _m_missing, monitor,
                               present_keys(metrics), last_name)
                return _decision(last=last, reason=reason), new
        if self.save_top_k == 0 and not self._keep_all and not (
            self.keep_last_n or self.keep_every_n_epochs
        ):
            # nothing can ever be kept: no name needed (and none formatted)
            new = state._replace(triggers=triggers, last_time=last_time)
            if last_name is None:
                reason = _lazy(label, "skip_save", _why, "top0", None, None, None, None)
            else:
                reason = _lazy(label, "skip_save", _m_skip_last, last_name)
            return _decision(last=last, reason=reason), new

        epoch, step = obs.epoch, obs.optimizer_steps
        name = self.format_name(metrics, epoch=epoch, step=step)
        kept = state.kept
        best = state.best
        k = self.save_top_k
        evict: KeptCheckpoint | None = None
        enters = False
        is_best = False
        why: tuple[str, str | None, float | None, Any, Any]

        if self.save_best_only:
            threshold = self.initial_value_threshold
            ref = best if best is not None else threshold
            if missing:
                save = True
                why = ("missing_saved", monitor, None, present_keys(metrics), None)
            else:
                assert monitoring is not None and v is not None
                if ref is None:
                    save = True
                    why = ("first", monitor, v, None, None)
                elif monitoring.improves(v, ref):
                    save = True
                    why = (
                        ("new_best", monitor, v, best, None)
                        if best is not None
                        else ("threshold", monitor, v, threshold, None)
                    )
                else:
                    save = False
                    why = ("not_best", monitor, v, ref, None)
                is_best = save
        else:
            if k is not None and k != 0:
                ranked = [c for c in kept if c.ranked]
                if k == -1 or len(ranked) < k:
                    enters = True
                    if k == -1:
                        why = ("all", None, None, None, None)
                    elif monitor is None:
                        why = ("latest", None, None, None, None)
                    else:
                        why = ("fewer", monitor, v, k, None)
                else:
                    worst = self._worst_ranked(ranked)
                    if monitor is None:
                        enters, evict = True, worst
                        why = ("latest", None, None, None, None)
                    elif self._better(v, worst.score):
                        enters, evict = True, worst
                        why = ("enters", monitor, v, k, worst.score)
                    else:
                        why = ("not_top", monitor, v, k, worst.score)
            elif k == 0:
                why = ("top0", None, None, None, None)
            else:
                why = ("all", None, None, None, None)
            every = self.keep_every_n_epochs
            on_period = bool(every) and (epoch + 1) % every == 0  # type: ignore[operator]
            save = self._keep_all or enters or bool(self.keep_last_n) or on_period
            if not save and why[0] in ("all", "top0") and every:
                why = ("no_rule", None, None, epoch + 1, every)
            if save and not enters and not self._keep_all:
                why = (
                    ("recent", None, None, self.keep_last_n, None)
                    if self.keep_last_n
                    else ("every", None, None, epoch + 1, every)
                )
            if save and monitor is not None and v is not None and (
                best is None or self._better(v, best)
            ):
                is_best = True
                if best is not None:
                    why = ("new_best", monitor, v, best, None)
                elif why[0] in ("fewer", "all"):
                    why = ("first", monitor, v, None, None)

        if not save:
            new = state._replace(triggers=triggers, last_time=last_time)
            reason = _lazy(label, "skip_save", _m_trigger, name, False, why, None, (), last_name)
            return _decision(last=last, reason=reason), new

        index = state.saves
        entry = KeptCheckpoint(
            name=name, score=v, epoch=epoch, step=step, order=index, ranked=enters
        )
        overwritten: int | None = None
        pool: list[KeptCheckpoint] = []
        for c in kept:
            if c.name == name:
                overwritten = c.epoch
                continue
            if evict is not None and c.order == evict.order:
                c = c._replace(ranked=False)
            pool.append(c)
        pool.append(entry)
        deletes: list[tuple[str, str]] = []
        if not self._keep_all:
            recent_n = self.keep_last_n or 0
            recent = {c.order for c in pool[-recent_n:]} if recent_n else set()
            was_recent = (
                {c.order for c in kept[-recent_n:]} if recent_n else set()
            )
            every = self.keep_every_n_epochs
            survivors = []
            for c in pool:
                if c.ranked or c.order in recent or (every and (c.epoch + 1) % every == 0):
                    survivors.append(c)
                    continue
                deletes.append((c.name, self._release_reason(c, evict, was_recent)))
            pool = survivors
        if is_best:
            best = v
        new = CheckpointState(
            kept=tuple(pool), best=best, saves=index + 1, triggers=triggers,
            last_save_step=step, last_time=last_time,
        )
        delete = tuple(n for n, _ in deletes)
        # a Keras-style save without the monitor still says missing_metric: the Controller warns
        event = "missing_metric" if missing else "save"
        reason = _lazy(label, event, _m_trigger, name, True, why, overwritten, tuple(deletes),
                       last_name)
        save_request = SaveRequest(name=name, is_best=is_best, score=v)
        return _decision(save=save_request, delete=delete, is_best=is_best, last=last,
                         reason=reason), new

    def _release_reason(
        self, c: KeptCheckpoint, evict: KeptCheckpoint | None, was_recent: set[int]
    ) -> str:
        evicted = evict is not None and c.order == evict.order
        recent = f"among the {self.keep_last_n} most recent"
        if evicted and self.monitor is None:
            top = "superseded by the latest checkpoint"
            return f"{top}, no longer {recent}" if c.order in was_recent else top
        if evicted:
            top = f"no longer in the best {self.save_top_k}"
            return f"{top} nor {recent}" if c.order in was_recent else top
        return f"no longer {recent}" if c.order in was_recent else "kept by no rule"

    # -- state ----------------------------------------------------------------------------------

    def state_to_dict(self, state: CheckpointState) -> dict[str, Any]:
        """``state`` as strict-JSON plain data (see :meth:`state_from_dict`)."""
        return {
            "kept": [
                {
                    "name": c.name,
                    "score": encode_float(c.score),
                    "epoch": c.epoch,
                    "step": c.step,
                    "index": c.order,
                    "ranked": c.ranked,
                }
                for c in state.kept
            ],
            "best": encode_float(state.best),
            "saves": state.saves,
            "triggers": state.triggers,
            "last_save_step": state.last_save_step,
            "last_time": encode_float(state.last_time),
        }

    def state_from_dict(self, data: Mapping[str, Any]) -> CheckpointState:
        """Inverse of :meth:`state_to_dict`; :class:`StateError` names any field that is off."""
        where = f"{self._label} state"
        d = require_keys(
            data, ("kept", "best", "saves", "triggers", "last_save_step", "last_time"),
            where=where,
        )
        saves = _non_negative(d["saves"], f"{where}.saves")
        triggers = _non_negative(d["triggers"], f"{where}.triggers")
        raw_kept = d["kept"]
        if not isinstance(raw_kept, list):
            raise StateError(f"{where}.kept: expected a list, got {type(raw_kept).__name__}")
        kept = []
        names: set[str] = set()
        previous = -1
        for i, item in enumerate(raw_kept):
            at = f"{where}.kept[{i}]"
            e = require_keys(item, ("name", "score", "epoch", "step", "index", "ranked"), where=at)
            name = e["name"]
            if not isinstance(name, str):
                raise StateError(f"{at}.name: expected a string, got {name!r}")
            problem = name_problem(name)
            if problem is not None:
                raise StateError(f"{at}.name: a checkpoint name {problem}, got {name!r}")
            if name in names:
                raise StateError(f"{at}.name: {name!r} is kept twice")
            names.add(name)
            index = _non_negative(e["index"], f"{at}.index")
            if index <= previous or index >= saves:
                raise StateError(
                    f"{at}.index: must increase in save order and be < saves={saves}, got {index}"
                )
            previous = index
            ranked = e["ranked"]
            if not isinstance(ranked, bool):
                raise StateError(f"{at}.ranked: expected a bool, got {ranked!r}")
            kept.append(
                KeptCheckpoint(
                    name=name,
                    score=decode_float(e["score"], where=f"{at}.score"),
                    epoch=_non_negative(e["epoch"], f"{at}.epoch"),
                    step=_non_negative(e["step"], f"{at}.step"),
                    order=index,
                    ranked=ranked,
                )
            )
        last_save_step = decode_optional_int(d["last_save_step"], where=f"{where}.last_save_step")
        if last_save_step is not None and last_save_step < 0:
            raise StateError(f"{where}.last_save_step: must be >= 0, got {last_save_step}")
        last_time = decode_float(d["last_time"], where=f"{where}.last_time")
        if last_time is not None and not math.isfinite(last_time):
            raise StateError(f"{where}.last_time: must be finite, got {last_time!r}")
        return CheckpointState(
            kept=tuple(kept),
            best=decode_float(d["best"], where=f"{where}.best"),
            saves=saves,
            triggers=triggers,
            last_save_step=last_save_step,
            last_time=last_time,
        )


def _decision(
    *,
    reason: Reason,
    save: SaveRequest | None = None,
    delete: tuple[str, ...] = (),
    is_best: bool = False,
    last: SaveRequest | None = None,
) -> CheckpointDecision:
    return CheckpointDecision(
        stop=False, save=save, delete=delete, is_best=is_best, last=last, reason=reason
    )


def _non_negative(value: object, where: str) -> int:
    n = decode_int(value, where=where)
    if n < 0:
        raise StateError(f"{where}: must be >= 0, got {n}")
    return n
