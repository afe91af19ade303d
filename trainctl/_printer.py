"""A per-round console printer: one line per evaluation round, and the reasons that matter.

``Controller(..., log=trainctl.Printer())`` (or ``verbose=True``) prints what the demo prints::

    epoch      loss  val_loss  val_acc        lr  decision
        1    0.4162    0.6266   0.7710  3.00e-02  improved, save
        ...
        8    0.4768    0.5996   0.7340  3.00e-01  no_improvement, reduced_lr, save
           -> ReduceLROnPlateau(val_loss): val_loss = 0.599559: no improvement on 0.54321 ...

Rules:

- **One line per round.** ``epoch`` counts from 1 (:func:`trainctl.epoch_text`'s rule, as file
  names and Keras' progress bar do); then each number among the first round's metrics (a metric
  first seen later is not added: the columns stay put), the rate each param group trained at
  when the round was taken, before the round's own decision (``lr``, or ``lr/pg0``, ``lr/pg1``,
  ...: what Keras records as ``logs["learning_rate"]``; a cut shows on the next row and in its
  ``->`` line) and the round's events (``finite`` and ``missing_metric``, which change nothing,
  are left out).
- **The reasons that matter**, each on its own ``->`` line under its round: a rate cut, a stop
  and its cause, a non-finite value, the floor reached (``NOTABLE``). An optimizer step is
  printed only when it has one of these (a NaN loss that stops training mid-epoch).
- **The end.** :meth:`trainctl.Controller.finish`'s decision prints its reasons (the restored
  best).
- ``every=n`` prints every ``n``-th round, and every round with a notable reason.
- ``out`` is where lines go (``print`` by default). With ``rich`` installed and ``style="auto"``
  (the default) and no ``out``, lines go through a ``rich`` console with the events coloured;
  ``style="plain"`` never uses it. ``rich`` is never required.

A printer is a decision sink like :class:`trainctl.DecisionLog`: pass both as
``log=[DecisionLog(...), Printer()]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._decisions import Decision, epoch_number
from ._monitor import number_metrics
from ._validation import check_bool, check_int, check_one_of

__all__ = ["NOTABLE", "Printer"]

#: the events whose messages get a line of their own
NOTABLE = frozenset(
    {
        "reduced_lr",
        "at_min_lr",
        "patience_exhausted",
        "non_finite",
        "stopping_threshold",
        "divergence_threshold",
        "restore_best",
        "already_stopped",
    }
)
_QUIET = frozenset({"finite", "missing_metric"})
_COLOURS = {
    "improved": "green",
    "reduced_lr": "yellow",
    "at_min_lr": "yellow",
    "patience_exhausted": "bold red",
    "non_finite": "bold red",
    "stopping_threshold": "bold red",
    "divergence_threshold": "bold red",
    "restore_best": "cyan",
    "save": "blue",
}


def _number(value: float, width: int) -> str:
    """A table cell: four decimals for ordinary magnitudes, else scientific notation."""
    if not math.isfinite(value):
        return f"{value!s:>{width}}"  # nan, inf, -inf
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:>{width}.4f}"
    return f"{value:>{width}.2e}"


class Printer:
    """Print one line per round and the reasons that matter (see the module docstring).

    Args:
        out: a function taking each line (``print`` when ``None``).
        every: print every ``every``-th round (and every round with a notable reason).
        style: ``"auto"`` (``rich`` if installed and ``out`` is ``None``), ``"plain"`` or
            ``"rich"`` (to the terminal, ``out`` must be ``None``; raises ``ImportError`` naming
            the package if it is not installed).
        reasons: print the ``->`` lines of the notable reasons.
    """

    def __init__(
        self,
        out: Callable[[str], object] | None = None,
        *,
        every: int = 1,
        style: Literal["auto", "plain", "rich"] = "auto",
        reasons: bool = True,
    ) -> None:
        if out is not None and not callable(out):
            raise TypeError(f"'out' must be callable (e.g. print), got {type(out).__name__}")
        every = check_int("every", every)
        if every < 1:
            raise ValueError(f"'every' must be >= 1, got {every}")
        check_one_of("style", style, ("auto", "plain", "rich"))
        if style == "rich" and out is not None:
            raise ValueError(
                "Printer(style='rich') prints to the terminal through rich; 'out' must be None, "
                f"got {out!r} (use style='plain' to send lines to a function)"
            )
        self.every = every
        self.reasons = check_bool("reasons", reasons)
        self.style = style
        self._out = out
        self._console: Any = None
        if style == "rich" or (style == "auto" and out is None):
            try:
                from rich.console import Console
            except ImportError:
                if style == "rich":
                    raise ImportError(
                        "Printer(style='rich') needs the 'rich' package: pip install rich"
                    ) from None
            else:
                self._console = Console(highlight=False, soft_wrap=True)
        self._columns: tuple[str, ...] | None = None
        self._groups = 0
        self._rate: float | tuple[float, ...] | None = None  # in force before the next round

    def __call__(self, decision: Decision) -> None:
        """Print ``decision`` (a controller calls this with each decision it takes)."""
        clock = decision.clock
        if clock == "optimizer_step" and not decision.stop:
            self._rate = decision.lr  # the per-step path: nothing to print
            return
        notable = [r for r in decision.reasons if r.event in NOTABLE]
        if clock == "round":
            if self._columns is None:
                self._header(decision)
            if notable or decision.round % self.every == 0:
                self._emit(self._row(decision), decision.events)
            self._rate = decision.lr
        if self.reasons:
            for reason in notable:
                self._emit(f"{'':>7}-> {reason}", (reason.event,))

    def start(self, description: Mapping[str, Any]) -> None:
        """A new controller starts (a decision sink's hook): the header prints again."""
        self._columns, self._rate = None, None

    def rewind(self, rounds: int, optimizer_steps: int) -> None:
        """A resumed run (a decision sink's hook): the rate in force is the loaded state's,
        known from the next decision."""
        self._rate = None

    # -- layout -----------------------------------------------------------------------------

    def _header(self, decision: Decision) -> None:
        self._columns = tuple(number_metrics(decision.metrics))
        lr = decision.lr
        self._groups = 0 if lr is None else (len(lr) if isinstance(lr, tuple) else 1)
        names = ["epoch", *self._columns]
        if self._groups == 1:
            names.append("lr")
        else:
            names.extend(f"lr/pg{i}" for i in range(self._groups))
        cells = [f"{'epoch':>5}"] + [f"{n:>{max(9, len(n))}}" for n in names[1:]]
        self._emit("  ".join([*cells, "decision"]), ())

    def _row(self, decision: Decision) -> str:
        assert self._columns is not None
        epoch = decision.epoch if decision.epoch is not None else decision.round - 1
        cells = [f"{epoch_number(epoch):>5}"]
        numbers = number_metrics(decision.metrics)
        for name in self._columns:
            width = max(9, len(name))
            value = numbers.get(name)
            cells.append(f"{'':>{width}}" if value is None else _number(float(value), width))
        lr = self._rate if self._rate is not None else decision.lr
        rates = () if lr is None else (lr if isinstance(lr, tuple) else (lr,))
        for i in range(self._groups):
            width = 9 if self._groups == 1 else max(9, len(f"lr/pg{i}"))
            cells.append(f"{rates[i]:>{width}.2e}" if i < len(rates) else f"{'':>{width}}")
        events = sorted({e for e in decision.events if e not in _QUIET})
        return "  ".join([*cells, ", ".join(events)])

    def _emit(self, line: str, events: tuple[str, ...]) -> None:
        if self._console is not None:
            from rich.text import Text

            text = Text(line)
            for event in events:
                colour = _COLOURS.get(event)
                if colour is not None:
                    text.highlight_words([event], colour)
            self._console.print(text)
        elif self._out is not None:
            self._out(line)
        else:
            print(line)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_console"] = None  # a console holds a stream; rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.style == "rich" or (self.style == "auto" and self._out is None):
            try:
                from rich.console import Console
            except ImportError:
                return
            self._console = Console(highlight=False, soft_wrap=True)
