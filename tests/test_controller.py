"""The Controller: two clocks, merged decisions, state_dict / load_state_dict, simulate."""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest

import trainctl
from trainctl import (
    CheckpointPolicy,
    Controller,
    EarlyStopping,
    ReduceLROnPlateau,
    StateError,
    TerminateOnNaN,
    simulate,
)


def make() -> Controller:
    return Controller(
        TerminateOnNaN(),
        ReduceLROnPlateau(patience=1, factor=0.5, cooldown=1),
        EarlyStopping(patience=3, restore_best_weights=True),
        lr=0.1,
    )


def test_two_clocks_count_separately() -> None:
    ctl = make()
    for _ in range(5):
        d = ctl.optimizer_step({"loss": 0.3})
        assert d.clock == "optimizer_step" and not d.stop
    d = ctl.step({"val_loss": 1.0, "loss": 0.3})
    assert (d.clock, d.round, d.optimizer_steps, d.epoch) == ("round", 1, 5, 0)
    assert (ctl.rounds, ctl.optimizer_steps) == (1, 5)
    assert ctl.step({"val_loss": 1.0}, epoch=7).epoch == 7


def test_optimizer_step_nan_stops_everything() -> None:
    ctl = make()
    ctl.optimizer_step({"loss": 0.3})
    d = ctl.optimizer_step({"loss": math.nan})
    assert d.stop and "optimizer step 2" in d.explain()
    assert ctl.step({"val_loss": 0.1}).stop  # final, on the other clock too
    assert ctl.optimizer_step({"loss": 0.1}).stop


def test_merged_decision_carries_every_reason_in_policy_order() -> None:
    d = make().step({"val_loss": 1.0, "loss": 0.5})
    assert [r.source for r in d.reasons] == [
        "TerminateOnNaN(loss)",
        "ReduceLROnPlateau(val_loss)",
        "EarlyStopping(val_loss)",
    ]
    assert d.snapshot_best and not d.stop and d.lr == 0.1 and not d.lr_changed
    assert len(d.explain().splitlines()) == 3


def test_lr_changes_are_reported() -> None:
    ctl = make()
    ctl.step({"val_loss": 1.0})
    d = ctl.step({"val_loss": 1.0})
    assert d.lr == 0.05 and d.lr_changed and ctl.lr == 0.05


def test_state_dict_is_strict_json_and_resumes_exactly() -> None:
    stream = [{"val_loss": v, "loss": v} for v in [1.0, 0.9, 0.95, math.nan, 0.97, 0.96, 0.99]]
    full = make()
    expected = [full.step(m) for m in stream]
    for cut in range(len(stream) + 1):
        first = make()
        for m in stream[:cut]:
            first.step(m)
        text = json.dumps(first.state_dict(), allow_nan=False)
        resumed = make()
        resumed.load_state_dict(json.loads(text))
        got = [resumed.step(m) for m in stream[cut:]]
        assert [(d.stop, d.lr, d.reasons) for d in got] == [
            (d.stop, d.lr, d.reasons) for d in expected[cut:]
        ]


def test_load_rejects_other_configuration_naming_the_difference() -> None:
    state = make().state_dict()
    other = Controller(
        TerminateOnNaN(),
        ReduceLROnPlateau(patience=5, factor=0.5, cooldown=1),
        EarlyStopping(patience=3, restore_best_weights=True),
        lr=0.1,
    )
    with pytest.raises(
        StateError,
        match=r"policies\[1\] ReduceLROnPlateau\(val_loss\).*'patience' "
        r"was 1, is 5",
    ):
        other.load_state_dict(state)
    other.load_state_dict(state, strict=False)  # a deliberate change of settings


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(format="keras"), "not a trainctl controller state"),
        (lambda s: s.update(version=99), "version 99 is not supported"),
        (lambda s: s["policies"].pop(), "holds 2 policies but this controller has 3"),
        (
            lambda s: s["policies"][2]["state"].update(wait=-1),
            r"EarlyStopping\(val_loss\) state\.wait: must be >= 0, got -1",
        ),
        (lambda s: s["policies"][2]["state"].pop("best"), "missing 'best'"),
        (lambda s: s["policies"][2]["state"].update(best="high"), "expected a number"),
        (lambda s: s.update(lr=[0.1, 0.2]), "does not fit"),
    ],
)
def test_load_rejects_bad_states(mutate: object, message: str) -> None:
    state = make().state_dict()
    mutate(state)  # type: ignore[operator]
    ctl = make()
    before = ctl.state_dict()
    with pytest.raises(StateError, match=message):
        ctl.load_state_dict(state)
    assert ctl.state_dict() == before  # nothing changed


def test_kind_mismatch_is_named() -> None:
    state = Controller(EarlyStopping()).state_dict()
    with pytest.raises(
        StateError, match="policy 0 is a ReduceLROnPlateau but the state holds a EarlyStopping"
    ):
        Controller(ReduceLROnPlateau(), lr=0.1).load_state_dict(state)


def test_stopped_state_survives_resume() -> None:
    ctl = make()
    ctl.optimizer_step({"loss": math.inf})
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    d = resumed.step({"val_loss": 0.1})
    assert d.stop and "inf" in d.explain()


def test_simulate_clones_and_never_advances_the_controller() -> None:
    ctl = make()
    ctl.step({"val_loss": 1.0})
    before = ctl.state_dict()
    out = simulate(ctl, [{"val_loss": 2.0}] * 10)
    assert out[-1].stop and len(out) == 3
    assert ctl.state_dict() == before
    assert len(simulate(ctl, [{"val_loss": 2.0}] * 10, until_stop=False)) == 10


def test_decisions_pickle_and_compare() -> None:
    d = make().step({"val_loss": 1.0})
    again = pickle.loads(pickle.dumps(d))
    assert again == d and again.explain() == d.explain()


def test_bad_arguments() -> None:
    with pytest.raises(
        TypeError,
        match=r"policy 0 is the class EarlyStopping, not an instance: write EarlyStopping\(",
    ):
        Controller(EarlyStopping)
    with pytest.raises(TypeError, match="'metrics' must be a mapping"):
        make().step([("val_loss", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'epoch' must be >= 0, got -1"):
        make().step({"val_loss": 1.0}, epoch=-1)
    with pytest.raises(ValueError, match="'lr' must be finite, got nan"):
        Controller(lr=math.nan)
    with pytest.raises(ValueError, match="'lr' must be a float or a non-empty sequence"):
        Controller(lr=())
    with pytest.raises(TypeError, match="'lr\\[1\\]' must be a real number, got str"):
        Controller(lr=(0.1, "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'schedule_clock' must be one of"):
        Controller(schedule_clock="epoch")  # type: ignore[arg-type]


def test_statistics_and_reset() -> None:
    ctl = make()
    ctl.step({"val_loss": 1.0})
    stats = ctl.statistics()
    assert stats.rounds == 1 and stats.lr == 0.1 and not stats.stopped
    assert stats.policy_states[2].best == 1.0
    ctl.reset()
    assert ctl.rounds == 0 and ctl.states[2].best is None


def test_reported_lr_must_match_the_param_groups() -> None:
    ctl = Controller(ReduceLROnPlateau(), lr=(0.1, 0.01))
    with pytest.raises(ValueError, match="'lr' has 3 values but the controller manages 2 rates"):
        ctl.step({"val_loss": 1.0}, lr=(0.1, 0.01, 0.001))
    with pytest.raises(ValueError, match="'lr' has a single rate but the controller manages 2"):
        ctl.step({"val_loss": 1.0}, lr=0.1)


def test_optimizer_step_epoch_is_validated_and_used() -> None:
    ctl = make()
    with pytest.raises(ValueError, match="'epoch' must be >= 0, got -3"):
        ctl.optimizer_step({"loss": 0.1}, epoch=-3)
    saver = Controller(CheckpointPolicy(every_n_steps=1, filename="e{epoch}-s{step}"))
    assert saver.optimizer_step().save.name == "e1-s1"  # type: ignore[union-attr]
    saver.step({})  # epoch 0 ends: later steps belong to epoch 1 ({epoch} is 1-based)
    assert saver.optimizer_step().save.name == "e2-s2"  # type: ignore[union-attr]
    assert saver.optimizer_step(epoch=7).save.name == "e8-s3"  # type: ignore[union-attr]


def test_the_by_name_constructors_build_exactly_the_fields() -> None:
    """The hot paths build decisions, states and observations by field name through plain
    functions; each lists its type's fields, so a field added to a type cannot shift."""
    import inspect

    from trainctl import _early_stopping, _plateau
    from trainctl._decisions import make_decision
    from trainctl._policy import make_observation

    def kw_names(fn: Any) -> list[str]:
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        return [p.name for p in params]

    for maker, cls in (
        (make_decision, trainctl.Decision), (make_observation, trainctl.Observation)
    ):
        fields = list(cls._fields)
        assert kw_names(maker) == fields
        built = maker(**{f: i for i, f in enumerate(fields)})
        assert type(built) is cls and all(getattr(built, f) == i for i, f in enumerate(fields))
    for module, decision_cls, state_cls in (
        (_early_stopping, trainctl.EarlyStoppingDecision, trainctl.EarlyStoppingState),
        (_plateau, trainctl.PlateauDecision, trainctl.PlateauState),
    ):
        names = kw_names(module._outcome)
        assert set(names) >= (set(decision_cls._fields) - {"reduced"}) | set(state_cls._fields)
        values = {n: f"<{n}>" for n in names}
        decision, state = module._outcome(**values)
        assert type(decision) is decision_cls and type(state) is state_cls
        for f in state_cls._fields:
            assert getattr(state, f) == f"<{f}>"
        for f in decision_cls._fields:
            if f in values:
                assert getattr(decision, f) == f"<{f}>", f
