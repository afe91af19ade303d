"""A policy written outside trainctl works like a built-in one, with no change to trainctl.

The policy is the README's example, ``examples/spike_guard.py`` (a loss-spike guard whose
decision declares the contract's fields in an order of its own). It is run through a
``Controller``, ``simulate``, a resume through JSON at every point, and a real PyTorch loop.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import trainctl
from trainctl.adapters.torch import TorchController

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from spike_guard import LossSpikeGuard, SpikeDecision

LOSSES = [1.0, 0.9, 0.85, 9.0, 0.8, 0.78, 0.75, 12.0, 0.7, 0.69, 30.0, 0.6]


def test_the_controller_reads_the_decision_by_field_name() -> None:
    # reason first, then lr_factor, then stop: a positional reader would take the reason for stop
    assert SpikeDecision._fields[:3] == ("reason", "lr_factor", "stop")
    ctl = trainctl.Controller(LossSpikeGuard(ratio=3.0, max_spikes=3), lr=0.1)
    rates, stops = [], []
    for loss in LOSSES:
        d = ctl.optimizer_step({"loss": loss})
        rates.append(d.lr)
        stops.append(d.stop)
    assert rates[:3] == [0.1, 0.1, 0.1]
    assert rates[3] == 0.05 and rates[7] == 0.025 and rates[10] == 0.0125
    assert stops.index(True) == 10 and all(stops[10:])  # the third spike stops, for good
    last = ctl.optimizer_step({"loss": 0.5})
    assert last.stop and last.detail("LossSpikeGuard(loss)").spikes == 3


def test_a_minimal_user_decision_asking_for_a_rate_is_not_read_as_a_stop() -> None:
    # the case that used to be misread: (lr, reason) read as (stop, ...)
    class Halve(NamedTuple):
        lr: float
        reason: str

    class FixedRate:
        label = "FixedRate"
        clocks = frozenset({"round"})

        def initial_state(self) -> None:
            return None

        def update(self, state: None, obs: trainctl.Observation) -> tuple[Halve, None]:
            return Halve(lr=0.5, reason="always 0.5"), None

        def state_to_dict(self, state: None) -> dict[str, Any]:
            return {}

        def state_from_dict(self, data: Any) -> None:
            return None

        def config_dict(self) -> dict[str, Any]:
            return {"type": "FixedRate"}

    d = trainctl.Controller(FixedRate(), lr=0.1).step({})
    assert not d.stop and d.lr == 0.5 and d.lr_changed
    assert d.reasons == (trainctl.Reason("FixedRate", "note", "always 0.5"),)


def test_simulate_runs_it_on_rounds() -> None:
    decisions = trainctl.simulate(
        LossSpikeGuard(ratio=3.0, max_spikes=2), [{"loss": v} for v in LOSSES], lr=1.0
    )
    assert len(decisions) == 8 and decisions[-1].stop
    assert [d.lr for d in decisions] == [1.0] * 3 + [0.5] * 4 + [0.25]
    assert [r.event for r in decisions[3].reasons] == ["spike"]


@pytest.mark.parametrize("split", range(len(LOSSES) + 1))
def test_resume_through_json_at_any_point_makes_the_same_decisions(split: int) -> None:
    def make() -> trainctl.Controller:
        return trainctl.Controller(
            LossSpikeGuard(ratio=3.0, max_spikes=3),
            trainctl.EarlyStopping(monitor="loss", patience=4),
            lr=0.1,
        )

    whole = make()
    expected = [whole.step({"loss": v}) for v in LOSSES]
    first = make()
    got = [first.step({"loss": v}) for v in LOSSES[:split]]
    second = make()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [second.step({"loss": v}) for v in LOSSES[split:]]
    assert [(d.stop, d.lr, d.explain()) for d in got] == [
        (d.stop, d.lr, d.explain()) for d in expected
    ]
    assert second.state_dict() == whole.state_dict()


def test_it_pickles_with_the_controller() -> None:
    ctl = trainctl.Controller(LossSpikeGuard(), lr=0.1)
    ctl.optimizer_step({"loss": 1.0})
    again = pickle.loads(pickle.dumps(ctl))
    assert again == ctl and again.policies[0] == LossSpikeGuard()


def test_it_drives_a_real_torch_loop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    ctl = trainctl.Controller(
        LossSpikeGuard(ratio=3.0, max_spikes=2),
        trainctl.CheckpointPolicy(every_n_steps=4, extension=".pt", filename="step{step}"),
        lr=0.2,
    )
    loop = TorchController(ctl, model, optimizer, store=tmp_path)
    seen = []
    for loss in LOSSES:
        d = loop.optimizer_step(torch.tensor(loss), metrics={"loss": loss})
        seen.append(optimizer.param_groups[0]["lr"])
        if d.stop:
            break
    assert seen == [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05]
    assert [e.name for e in loop.store.entries] == ["step4.pt", "step8.pt"]
    fresh = TorchController(
        trainctl.Controller(
            LossSpikeGuard(ratio=3.0, max_spikes=2),
            trainctl.CheckpointPolicy(every_n_steps=4, extension=".pt", filename="step{step}"),
            lr=0.2,
        ),
        torch.nn.Linear(3, 1),
        torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.2),
        store=tmp_path,
    )
    resumed = fresh.resume()
    assert resumed.checkpoint == "step8.pt" and resumed.stopped
    assert fresh.controller.states[0].spikes == 2
    assert fresh.optimizer.param_groups[0]["lr"] == 0.05
