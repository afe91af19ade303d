"""A policy written outside trainctl: a loss-spike guard.

Large models sometimes see the training loss jump by an order of magnitude for a few steps
(a bad batch, an optimizer blow-up). This guard watches the loss on every call that carries it,
keeps an exponential moving average, and when the loss exceeds ``ratio`` times that average it
asks for the learning rate to be cut by ``factor``; after ``max_spikes`` spikes it stops training.

It follows trainctl's policy contract (``trainctl.Policy`` and the optional hooks documented in
``trainctl._policy``) and nothing else: a frozen configuration, a plain-data state, a pure
``update``. Its decision is a NamedTuple whose fields are in an order of its own; the Controller
reads them by name. Use it like a built-in policy::

    ctl = trainctl.Controller(LossSpikeGuard(ratio=3.0), trainctl.EarlyStopping(patience=5),
                              lr=1e-3)
    decision = ctl.optimizer_step({"loss": loss})   # or ctl.step(...) at each round

Run this file to see it react to a spiky stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs

import trainctl


class SpikeState(NamedTuple):
    mean: float | None = None  # the loss's exponential moving average (None before the first)
    spikes: int = 0  # spikes seen so far


class SpikeDecision(NamedTuple):
    # the contract's fields, in an order of this policy's own choosing
    reason: trainctl.Reason
    lr_factor: float | None = None
    stop: bool = False
    spikes: int = 0  # the policy's own field: users read it as decision.detail(label).spikes


@attrs.frozen
class LossSpikeGuard:
    """Cut the learning rate when the loss spikes above ``ratio`` times its running mean.

    Args:
        monitor: the loss to watch (on every call that carries it).
        ratio: a value above ``ratio * mean`` is a spike (> 1).
        decay: the moving average's decay (``mean = decay * mean + (1 - decay) * loss``).
        factor: the rate is multiplied by this at each spike (0 < factor < 1).
        max_spikes: stop training at this many spikes.
    """

    monitor: str = "loss"
    ratio: float = attrs.field(default=3.0, validator=attrs.validators.gt(1.0))
    decay: float = attrs.field(default=0.9, validator=[attrs.validators.ge(0.0),
                                                        attrs.validators.lt(1.0)])
    factor: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0.0),
                                                         attrs.validators.lt(1.0)])
    max_spikes: int = attrs.field(default=3, validator=attrs.validators.ge(1))

    clocks = frozenset({"round", "optimizer_step"})
    warn_if_missing = False  # per-step metrics often carry no loss: not worth a warning

    @property
    def label(self) -> str:
        return f"LossSpikeGuard({self.monitor})"

    def initial_state(self) -> SpikeState:
        return SpikeState()

    def update(self, state: SpikeState, obs: trainctl.Observation) -> tuple[SpikeDecision, Any]:
        value = trainctl.read_metric(obs.metrics, self.monitor)
        if value is None or not math.isfinite(value):
            why = trainctl.Reason(self.label, "note", f"no finite {self.monitor}: nothing to do")
            return SpikeDecision(reason=why, spikes=state.spikes), state
        mean = state.mean
        if mean is not None and value > self.ratio * mean:
            spikes = state.spikes + 1
            stop = spikes >= self.max_spikes
            why = trainctl.Reason(
                self.label,
                "spike",
                f"{self.monitor} = {value:.4g} is above {self.ratio:g} x its mean {mean:.4g} "
                f"(spike {spikes}/{self.max_spikes}); "
                + ("stopping" if stop else f"lr x {self.factor:g}"),
            )
            # the spike does not enter the average: it would hide the next one
            return (
                SpikeDecision(reason=why, lr_factor=self.factor, stop=stop, spikes=spikes),
                SpikeState(mean=mean, spikes=spikes),
            )
        new_mean = value if mean is None else self.decay * mean + (1 - self.decay) * value
        why = trainctl.Reason(
            self.label, "note", f"{self.monitor} = {value:.4g}, mean {new_mean:.4g}"
        )
        return SpikeDecision(reason=why, spikes=state.spikes), SpikeState(new_mean, state.spikes)

    def state_to_dict(self, state: SpikeState) -> dict[str, Any]:
        return {"mean": state.mean, "spikes": state.spikes}

    def state_from_dict(self, data: Mapping[str, Any]) -> SpikeState:
        if not isinstance(data, Mapping) or set(data) != {"mean", "spikes"}:
            raise trainctl.StateError(f"{self.label} state: expected mean and spikes, got {data!r}")
        mean, spikes = data["mean"], data["spikes"]
        if mean is not None and not isinstance(mean, (int, float)):
            raise trainctl.StateError(f"{self.label} state.mean: expected a number, got {mean!r}")
        if type(spikes) is not int or spikes < 0:
            raise trainctl.StateError(
                f"{self.label} state.spikes: expected an int >= 0, got {spikes!r}"
            )
        return SpikeState(None if mean is None else float(mean), spikes)

    def config_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **attrs.asdict(self)}


def main() -> None:
    ctl = trainctl.Controller(LossSpikeGuard(ratio=3.0, max_spikes=2), lr=0.1)
    losses = [1.0, 0.9, 0.85, 9.0, 0.8, 0.78, 0.75, 12.0, 0.7]
    for step, loss in enumerate(losses, 1):
        d = ctl.optimizer_step({"loss": loss})
        print(f"step {step}: loss {loss:5.2f}  lr {d.lr:.4f}  {d.explain()}")
        if d.stop:
            break


if __name__ == "__main__":
    main()
