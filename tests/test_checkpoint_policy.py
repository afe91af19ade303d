"""CheckpointPolicy: traces of every rule, names, bad input, state round trips, properties."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trainctl
from trainctl import Controller, MetricNotFoundError, Observation, SaveRequest, StateError
from trainctl._checkpoint import (
    CheckpointDecision,
    CheckpointPolicy,
    CheckpointState,
    KeptCheckpoint,
)
from trainctl._names import MAX_NAME_BYTES

NAN = math.nan


def details(ctl: Controller, metrics: Mapping[str, Any], **kw: Any) -> CheckpointDecision:
    d = ctl.step(metrics, **kw)
    out = d.details[0]
    assert isinstance(out, CheckpointDecision)
    return out


def trace(
    policy: CheckpointPolicy, values: Iterable[float | None], key: str = "val_loss"
) -> tuple[list[CheckpointDecision], Controller]:
    ctl = Controller(policy)
    out = []
    for v in values:
        out.append(details(ctl, {} if v is None else {key: v}))
    return out, ctl


def saved(decisions: Sequence[CheckpointDecision]) -> list[str | None]:
    return [None if d.save is None else d.save.name for d in decisions]


def kept_names(ctl: Controller) -> list[str]:
    return [c.name for c in ctl.states[0].kept]


def apply(directory: set[str], d: CheckpointDecision) -> None:
    """Carry a decision out on an in-memory directory, checking that every delete is real."""
    for req in (d.save, d.last):
        if req is not None:
            directory.add(req.name)
    for name in d.delete:
        assert name in directory, f"delete of {name!r}, which does not exist"
        assert d.save is None or name != d.save.name
        directory.remove(name)


def obs(
    clock: str = "round",
    metrics: Mapping[str, Any] | None = None,
    *,
    epoch: int = 0,
    steps: int = 0,
    time: float | None = None,
) -> Observation:
    return Observation(
        clock=clock,  # type: ignore[arg-type]
        metrics=metrics or {},
        epoch=epoch,
        round=epoch,
        optimizer_steps=steps,
        lr=None,
        time=time,
    )


# -- triggers -----------------------------------------------------------------------------------


def test_default_saves_every_epoch_with_one_based_names_and_keeps_all() -> None:
    decisions, ctl = trace(CheckpointPolicy(), [None] * 3)
    assert saved(decisions) == ["epoch001", "epoch002", "epoch003"]
    assert all(d.delete == () and not d.stop for d in decisions)
    assert kept_names(ctl) == ["epoch001", "epoch002", "epoch003"]
    assert CheckpointPolicy().clocks == frozenset({"round"})


def test_every_n_epochs_is_lightnings_rule() -> None:
    decisions, _ = trace(CheckpointPolicy(every_n_epochs=3), [None] * 7)
    # (epoch + 1) % 3 == 0: 0-based epochs 2 and 5
    assert saved(decisions) == [None, None, "epoch003", None, None, "epoch006", None]
    assert decisions[0].reason.event == "skip_save"
    assert decisions[0].reason.message == (
        "epoch 1 is not a multiple of every_n_epochs=3; nothing to do"
    )


def test_a_policy_whose_only_trigger_is_switched_off_is_refused() -> None:
    # Lightning accepts every_n_epochs=0 (or every_n_train_steps=0) alone and never saves
    with pytest.raises(ValueError, match=r"no trigger can fire: every_n_epochs=0"):
        CheckpointPolicy(every_n_epochs=0, save_last=True)
    with pytest.raises(ValueError, match=r"no trigger can fire: every_n_steps=0"):
        CheckpointPolicy(every_n_steps=0)
    with pytest.raises(ValueError, match=r"every_n_epochs=0, every_n_steps=0"):
        CheckpointPolicy(every_n_epochs=0, every_n_steps=0)


def test_every_n_steps_listens_to_optimizer_steps_only() -> None:
    policy = CheckpointPolicy(every_n_steps=3, filename="step{step:05d}")
    assert policy.clocks == frozenset({"optimizer_step"})
    ctl = Controller(policy)
    names = []
    for _ in range(7):
        d = ctl.optimizer_step({"loss": 1.0})
        names.append(None if d.save is None else d.save.name)
    assert names == [None, None, "step00003", None, None, "step00006", None]
    assert ctl.step({"loss": 1.0}).save is None  # rounds do not trigger step saving
    d7 = policy.update(policy.initial_state(), obs("optimizer_step", steps=7))[0]
    assert d7.reason.message == "step 7 is not a multiple of every_n_steps=3; nothing to do"


def test_every_seconds_uses_the_time_passed_in() -> None:
    policy = CheckpointPolicy(every_seconds=10.0, filename="t{step}")
    assert policy.clocks == frozenset({"optimizer_step"})
    ctl = Controller(policy)
    names = []
    for t in (3.0, 9.9, 10.0, 15.0, 19.99, 20.5, 31.0):
        d = ctl.optimizer_step({}, time=t)
        names.append(None if d.save is None else d.save.name)
    # saves when time - last_time >= 10; last_time moves to the trigger's time
    assert names == [None, None, "t3", None, None, "t6", "t7"]
    assert ctl.states[0].last_time == 31.0


def test_every_seconds_after_a_resume_counts_from_the_restarted_clock() -> None:
    # adapters measure time from the start of each fit; after a resume it starts at 0 again
    ctl = Controller(CheckpointPolicy(every_seconds=10.0, filename="t{step}"))
    for t in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0):
        ctl.optimizer_step({}, time=t)
    assert ctl.states[0].last_time == 30.0
    resumed = Controller(CheckpointPolicy(every_seconds=10.0, filename="t{step}"))
    resumed.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    names = []
    for t in (4.0, 9.0, 10.5, 16.0, 21.0):  # the new process's clock
        d = resumed.optimizer_step({}, time=t)
        names.append(None if d.save is None else d.save.name)
    # without the restart rule nothing would be saved until the new clock passed 40 s
    assert names == [None, None, "t9", None, "t11"]


def test_every_seconds_without_time_is_a_clear_error() -> None:
    ctl = Controller(CheckpointPolicy(every_seconds=5))
    with pytest.raises(ValueError) as err:
        ctl.optimizer_step({"loss": 1.0})
    assert str(err.value) == (
        "CheckpointPolicy(latest): every_seconds=5 needs the training time, but the observation "
        "has time=None; pass time=... to Controller.optimizer_step"
    )


def test_every_seconds_zero_saves_at_every_step() -> None:
    ctl = Controller(CheckpointPolicy(every_seconds=0, filename="s{step}"))
    assert [ctl.optimizer_step({}, time=float(t)).save for t in range(3)] == [
        SaveRequest("s1"),
        SaveRequest("s2"),
        SaveRequest("s3"),
    ]


def test_a_call_on_a_clock_the_policy_ignores_changes_nothing() -> None:
    policy = CheckpointPolicy()
    state = policy.initial_state()
    d, new = policy.update(state, obs("optimizer_step", steps=1))
    assert new is state and d.save is None
    assert d.reason.message == "this policy does not save on the 'optimizer_step' clock"


# -- save_best_only (Keras) ---------------------------------------------------------------------


def test_save_best_only_saves_strict_improvements_and_never_deletes() -> None:
    policy = CheckpointPolicy(
        "val_loss", save_best_only=True, filename="e{epoch:02d}-{val_loss:.2f}"
    )
    decisions, ctl = trace(policy, [0.5, 0.6, 0.5, 0.4, 0.4, 0.45, 0.3])
    assert saved(decisions) == ["e01-0.50", None, None, "e04-0.40", None, None, "e07-0.30"]
    assert [d.is_best for d in decisions] == [True, False, False, True, False, False, True]
    assert all(d.delete == () for d in decisions)
    assert kept_names(ctl) == ["e01-0.50", "e04-0.40", "e07-0.30"]
    assert decisions[0].reason.message == (
        "save e01-0.50 (val_loss 0.5, the first monitored value)"
    )
    assert decisions[2].reason.message == (
        "skip e03-0.50 (val_loss 0.5 did not improve on the best 0.5)"
    )
    assert decisions[3].save == SaveRequest("e04-0.40", True, 0.4)


def test_save_best_only_without_epoch_in_the_name_overwrites() -> None:
    policy = CheckpointPolicy("val_acc", save_best_only=True, filename="best", extension=".keras")
    decisions, ctl = trace(policy, [0.5, 0.7, 0.6, 0.8], key="val_acc")  # auto: max
    assert saved(decisions) == ["best.keras", "best.keras", None, "best.keras"]
    assert all(d.delete == () for d in decisions)
    assert kept_names(ctl) == ["best.keras"]
    assert ctl.states[0].kept[0].score == 0.8
    assert decisions[1].reason.message == (
        "save best.keras (val_acc 0.7 is the new best, previous 0.5; overwrites the checkpoint "
        "of epoch 1)"
    )


def test_initial_value_threshold_is_the_best_to_beat() -> None:
    policy = CheckpointPolicy(
        "val_loss", save_best_only=True, initial_value_threshold=0.45, filename="e{epoch}"
    )
    decisions, _ = trace(policy, [0.5, 0.45, 0.44, 0.46])
    assert saved(decisions) == [None, None, "e3", None]
    assert decisions[0].reason.message == (
        "skip e1 (val_loss 0.5 did not improve on the best 0.45)"
    )
    assert decisions[2].reason.message == (
        "save e3 (val_loss 0.44 improved on initial_value_threshold 0.45)"
    )


def test_save_best_only_keeps_keras_nan_rules() -> None:
    # Keras: the first value is always the best (NaN too); nothing improves on a NaN best
    policy = CheckpointPolicy("val_loss", save_best_only=True, filename="e{epoch}")
    decisions, _ = trace(policy, [NAN, 0.1, 0.05])
    assert saved(decisions) == ["e1", None, None]
    decisions, _ = trace(policy, [0.5, NAN, 0.4])
    assert saved(decisions) == ["e1", None, "e3"]


def test_save_best_only_saves_when_the_monitor_is_missing_as_keras_does() -> None:
    policy = CheckpointPolicy("val_loss", save_best_only=True, filename="e{epoch}")
    ctl = Controller(policy)
    with pytest.warns(UserWarning, match="'val_loss' not in metrics"):
        d = details(ctl, {"loss": 1.0})
    assert d.save == SaveRequest("e1", False, None)
    assert d.reason.event == "missing_metric"
    assert d.reason.message == (
        "save e1 ('val_loss' not in metrics (present: loss); saved anyway, as Keras does)"
    )
    assert ctl.states[0].best is None
    assert details(ctl, {"val_loss": 0.9}).save == SaveRequest("e2", True, 0.9)


# -- save_top_k (Lightning) ---------------------------------------------------------------------


def test_top_k_trace_and_reasons() -> None:
    policy = CheckpointPolicy(
        "val_loss", save_top_k=3, filename="epoch{epoch:03d}-{val_loss:.4f}", extension=".pt"
    )
    values = [0.40, 0.3012, 0.35, 0.36, 0.33, 0.5, 0.3012, 0.2811]
    decisions, ctl = trace(policy, values)
    assert saved(decisions) == [
        "epoch001-0.4000.pt", "epoch002-0.3012.pt", "epoch003-0.3500.pt", "epoch004-0.3600.pt",
        "epoch005-0.3300.pt", None, "epoch007-0.3012.pt", "epoch008-0.2811.pt",
    ]
    assert [d.delete for d in decisions] == [
        (), (), (), ("epoch001-0.4000.pt",), ("epoch004-0.3600.pt",), (),
        ("epoch003-0.3500.pt",), ("epoch005-0.3300.pt",),
    ]
    assert decisions[-1].reason.message == (
        "save epoch008-0.2811.pt (val_loss 0.2811 is the new best, previous 0.3012); "
        "delete epoch005-0.3300.pt (no longer in the best 3)"
    )
    assert decisions[3].reason.message == (
        "save epoch004-0.3600.pt (val_loss 0.36 enters the best 3, beating 0.4); "
        "delete epoch001-0.4000.pt (no longer in the best 3)"
    )
    assert decisions[5].reason.message == (
        "skip epoch006-0.5000.pt (val_loss 0.5 is not better than the worst of the best 3, 0.35)"
    )
    assert decisions[2].reason.message == (
        "save epoch003-0.3500.pt (val_loss 0.35: fewer than 3 in the best set)"
    )
    assert kept_names(ctl) == ["epoch002-0.3012.pt", "epoch007-0.3012.pt", "epoch008-0.2811.pt"]
    assert [d.is_best for d in decisions] == [True, True, False, False, False, False, False, True]


def test_top_k_ties_are_not_improvements_and_the_oldest_tied_worst_leaves() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=2, filename="e{epoch}")
    decisions, ctl = trace(policy, [1.0, 1.0, 1.0, 0.5, 0.7])
    assert saved(decisions) == ["e1", "e2", None, "e4", "e5"]
    assert [d.delete for d in decisions] == [(), (), (), ("e1",), ("e2",)]
    assert kept_names(ctl) == ["e4", "e5"]


def test_top_k_nan_ranks_worst_and_never_enters_a_full_set() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=2, filename="e{epoch}")
    decisions, ctl = trace(policy, [NAN, 0.5, NAN, 0.7, 0.6, NAN])
    assert saved(decisions) == ["e1", "e2", None, "e4", "e5", None]
    assert [d.delete for d in decisions] == [(), (), (), ("e1",), ("e4",), ()]
    assert kept_names(ctl) == ["e2", "e5"]
    assert decisions[0].is_best and decisions[1].is_best  # a number beats a NaN best


def test_top_k_in_max_mode() -> None:
    policy = CheckpointPolicy("val/acc", save_top_k=1, filename="e{epoch}-{val/acc:.2f}")
    assert policy.direction == "max"
    decisions, ctl = trace(policy, [0.5, 0.4, 0.6, 0.6], key="val/acc")
    assert saved(decisions) == ["e1-0.50", None, "e3-0.60", None]
    assert kept_names(ctl) == ["e3-0.60"]


def test_top_k_minus_one_keeps_everything_and_zero_keeps_nothing() -> None:
    decisions, ctl = trace(CheckpointPolicy("val_loss", save_top_k=-1), [0.3, 0.5, NAN])
    assert saved(decisions) == ["epoch001", "epoch002", "epoch003"]
    assert all(d.delete == () for d in decisions)
    decisions, ctl = trace(CheckpointPolicy("val_loss", save_top_k=0), [0.3, 0.2])
    assert saved(decisions) == [None, None]
    assert decisions[0].reason.message == "save_top_k=0 keeps none"
    assert kept_names(ctl) == []


def test_without_monitor_top_1_keeps_only_the_latest() -> None:
    decisions, _ = trace(CheckpointPolicy(save_top_k=1), [None] * 3)
    assert saved(decisions) == ["epoch001", "epoch002", "epoch003"]
    assert [d.delete for d in decisions] == [(), ("epoch001",), ("epoch002",)]
    assert decisions[1].reason.message == (
        "save epoch002 (the latest checkpoint (save_top_k=1 without a monitor)); "
        "delete epoch001 (superseded by the latest checkpoint)"
    )
    assert not any(d.is_best for d in decisions)


def test_missing_monitor_skips_the_save_and_the_controller_warns_once() -> None:
    ctl = Controller(CheckpointPolicy("val_loss", save_top_k=2, save_last=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d1 = details(ctl, {"loss": 1.0})
        d2 = details(ctl, {"loss": 1.0})
    assert len(caught) == 1 and "'val_loss' not in metrics" in str(caught[0].message)
    assert d1.save is None and d1.last == SaveRequest("last")
    assert d1.reason.event == "missing_metric"
    assert d1.reason.message == (
        "'val_loss' not in metrics (present: loss); nothing saved; write last"
    )
    assert d2.save is None
    assert details(ctl, {"val_loss": 0.5}).save == SaveRequest("epoch003", True, 0.5)


def test_strict_raises_naming_the_metric_and_present_keys() -> None:
    ctl = Controller(CheckpointPolicy("val_loss", save_top_k=1, strict=True))
    with pytest.raises(MetricNotFoundError) as err:
        ctl.step({"loss": 1.0, "acc": 0.5})
    assert str(err.value) == (
        "CheckpointPolicy(val_loss): metric 'val_loss' is not in this call's metrics; "
        "present: 'loss', 'acc'"
    )


def test_float32_precision_ranks_as_the_frameworks_compare() -> None:
    a = 0.1
    b = math.nextafter(0.1, 0.0)  # smaller in float64, equal in float32
    for precision, expected in (("float64", ["e1", "e2"]), ("float32", ["e1", None])):
        policy = CheckpointPolicy(
            "val_loss", save_top_k=1, filename="e{epoch}", precision=precision  # type: ignore[arg-type]
        )
        assert saved(trace(policy, [a, b])[0]) == expected


# -- save_last, keep_last_n, keep_every_n_epochs -------------------------------------------------


def test_save_last_is_written_at_every_trigger_and_never_deleted() -> None:
    policy = CheckpointPolicy(
        "val_loss", save_top_k=1, save_last=True, extension=".ckpt", every_n_epochs=2
    )
    decisions, _ = trace(policy, [0.5, 0.4, 0.6, 0.7, 0.3, 0.1])
    assert [d.last for d in decisions] == [
        None, SaveRequest("last.ckpt", False, 0.4), None, SaveRequest("last.ckpt", False, 0.7),
        None, SaveRequest("last.ckpt", False, 0.1),
    ]
    assert saved(decisions) == [None, "epoch002.ckpt", None, None, None, "epoch006.ckpt"]
    assert all("last.ckpt" not in d.delete for d in decisions)
    assert decisions[3].reason.message == (
        "skip epoch004.ckpt (val_loss 0.7 is not better than the worst of the best 1, 0.4); "
        "write last.ckpt"
    )
    d = trace(CheckpointPolicy(save_top_k=0, save_last=True), [None])[0][0]
    assert d.save is None and d.last == SaveRequest("last")
    assert d.reason.message == "save_top_k=0 keeps none; write last"


def test_keep_last_n_and_best_k_coexist() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=1, keep_last_n=2, filename="e{epoch}")
    decisions, ctl = trace(policy, [0.1, 0.5, 0.6, 0.7, 0.05])
    assert saved(decisions) == ["e1", "e2", "e3", "e4", "e5"]  # recent ones are always saved
    assert [d.delete for d in decisions] == [(), (), (), ("e2",), ("e1", "e3")]
    assert kept_names(ctl) == ["e4", "e5"]
    assert decisions[2].reason.message == "save e3 (one of the 2 most recent)"
    assert decisions[3].reason.message == (
        "save e4 (one of the 2 most recent); delete e2 (no longer among the 2 most recent)"
    )
    assert decisions[4].reason.message == (
        "save e5 (val_loss 0.05 is the new best, previous 0.1); "
        "delete e1 (no longer in the best 1); delete e3 (no longer among the 2 most recent)"
    )


def test_keep_last_n_alone_keeps_the_n_most_recent() -> None:
    decisions, ctl = trace(CheckpointPolicy(keep_last_n=2), [None] * 4)
    assert [d.delete for d in decisions] == [(), (), ("epoch001",), ("epoch002",)]
    assert kept_names(ctl) == ["epoch003", "epoch004"]


def test_an_entry_leaving_both_rules_at_once_says_so() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=1, keep_last_n=1, filename="e{epoch}")
    decisions, _ = trace(policy, [0.5, 0.4])
    assert decisions[1].reason.message == (
        "save e2 (val_loss 0.4 is the new best, previous 0.5); "
        "delete e1 (no longer in the best 1 nor among the 1 most recent)"
    )


def test_keep_every_n_epochs_is_never_deleted() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=1, keep_every_n_epochs=3, filename="e{epoch}")
    decisions, ctl = trace(policy, [0.5, 0.4, 0.9, 0.3, 0.2, 0.8, 0.1])
    # epoch 3 and 6 (1-based) are saved although they are not in the best 1, and stay
    assert saved(decisions) == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert decisions[2].reason.message == "save e3 (epoch 3 is a multiple of keep_every_n_epochs=3)"
    assert kept_names(ctl) == ["e3", "e6", "e7"]
    assert [d.delete for d in decisions] == [(), ("e1",), (), ("e2",), ("e4",), (), ("e5",)]


def test_keep_every_n_epochs_alone_saves_only_the_period() -> None:
    decisions, ctl = trace(CheckpointPolicy(keep_every_n_epochs=2, filename="e{epoch}"), [None] * 4)
    assert saved(decisions) == [None, "e2", None, "e4"]
    assert decisions[0].reason.message == (
        "skip e1 (epoch 1 is not a multiple of keep_every_n_epochs=2 and no other rule keeps it)"
    )
    assert kept_names(ctl) == ["e2", "e4"]


# -- names --------------------------------------------------------------------------------------


def test_metric_names_with_slashes_and_dots_are_looked_up_whole() -> None:
    policy = CheckpointPolicy(
        "val/loss", save_top_k=2, filename="{epoch}-{val/loss:.3f}-{val.acc:.2f}-{step}"
    )
    ctl = Controller(policy)
    for _ in range(5):
        ctl.optimizer_step()
    d = details(ctl, {"val/loss": 0.12345, "val.acc": 0.9})
    assert d.save == SaveRequest("1-0.123-0.90-5", True, 0.12345)


def test_format_name_directly_and_conversions() -> None:
    policy = CheckpointPolicy(filename="{epoch!s}-{loss!r}", extension=".bin")
    assert policy.format_name({"loss": 0.5}, epoch=4, step=0) == "5-0.5.bin"


def test_a_missing_name_field_names_the_field_and_the_present_keys() -> None:
    ctl = Controller(CheckpointPolicy(filename="e{epoch}-{val_acc:.2f}"))
    with pytest.raises(ValueError) as err:
        ctl.step({"loss": 1.0, "val_loss": 2.0})
    assert str(err.value) == (
        "'filename' field 'val_acc' is not in the metrics (present: 'loss', 'val_loss'); "
        "filename='e{epoch}-{val_acc:.2f}'"
    )


def test_a_name_field_that_is_not_a_number_is_rejected() -> None:
    policy = CheckpointPolicy(filename="{tag}")
    with pytest.raises(ValueError) as err:
        policy.format_name({"tag": "x"}, epoch=0, step=0)
    assert str(err.value) == (
        "'filename' field 'tag': metric 'tag' must be a number, got str 'x'; filename='{tag}'"
    )


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("e{epoch", "'filename' must be a valid format template (expected '}' before end of "
                    "string), got 'e{epoch'"),
        ("e}{epoch}", "'filename' must be a valid format template (Single '}' encountered in "
                      "format string), got 'e}{epoch}'"),
        ("{epoch!x}", "'filename' has the unknown conversion '!x' in field 'epoch', got "
                      "'{epoch!x}'"),
        ("{}", "'filename' fields must be named (epoch, step or a metric), got '{}'"),
        ("{0}", "'filename' fields must be named (epoch, step or a metric), got '{0}'"),
        ("{loss:{w}}", "'filename' must not nest fields in a format spec ('loss'), got "
                       "'{loss:{w}}'"),
        ("{loss:.2q}", "'filename' has an invalid format spec '.2q' for field 'loss' (Unknown "
                       "format code 'q' for object of type 'float'), got '{loss:.2q}'"),
        ("{epoch:.2s}", "'filename' has an invalid format spec '.2s' for field 'epoch' (Unknown "
                        "format code 's' for object of type 'int'), got '{epoch:.2s}'"),
        ("", "'filename' must not be empty, got ''"),
        ("ckpt/{epoch}", "'filename' must not contain '/', '\\' or NUL (checkpoints live in one "
                         "directory), got 'ckpt/{epoch}'"),
        ("/abs{epoch}", "'filename' must not contain '/', '\\' or NUL (checkpoints live in one "
                        "directory), got '/abs{epoch}'"),
        ("..\\{epoch}", "'filename' must not contain '/', '\\' or NUL (checkpoints live in one "
                        "directory), got '..\\\\{epoch}'"),
        ("../{epoch}", "'filename' must not contain '/', '\\' or NUL (checkpoints live in one "
                       "directory), got '../{epoch}'"),
        ("a\x00{epoch}", "'filename' must not contain '/', '\\' or NUL (checkpoints live in "
                         "one directory), got 'a\\x00{epoch}'"),
    ],
)
def test_bad_templates_are_rejected_at_construction(filename: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        CheckpointPolicy(filename=filename)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("filename", "extension", "name"),
    [
        ("..", "", "'..'"),
        (".", "", "'.'"),
        ("{loss:/>6.1f}", "", "'///1.0'"),
    ],
)
def test_templates_whose_names_would_escape_are_refused_at_construction(
    filename: str, extension: str, name: str
) -> None:
    # the store's name rule runs on the template's fixed parts when the policy is built
    with pytest.raises(ValueError, match=r"gives names such as " + name.replace(".", r"\.")):
        CheckpointPolicy(filename=filename, extension=extension)


def test_the_last_name_is_reserved() -> None:
    with pytest.raises(ValueError) as err:
        CheckpointPolicy(filename="last", save_last=True, extension=".pt")
    assert str(err.value) == "'filename' 'last' gives 'last.pt', the name save_last uses"
    policy = CheckpointPolicy(filename="last{tag:.0f}", save_last=True)
    assert policy.format_name({"tag": 1.0}, epoch=0, step=0) == "last1"


def test_the_extension_cannot_carry_a_path() -> None:
    with pytest.raises(ValueError) as err:
        CheckpointPolicy(extension="/x.pt")
    assert str(err.value) == "'extension' must not contain '/', '\\' or NUL, got '/x.pt'"


def test_two_saves_with_one_name_keep_one_entry() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=3, filename="{val_loss:.1f}")
    decisions, ctl = trace(policy, [0.51, 0.32, 0.49, 0.2])
    assert saved(decisions) == ["0.5", "0.3", "0.5", "0.2"]
    assert all(d.delete == () for d in decisions)
    assert kept_names(ctl) == ["0.3", "0.5", "0.2"]
    assert [c.score for c in ctl.states[0].kept] == [0.32, 0.49, 0.2]


# -- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"save_top_k": -2}, ValueError, "'save_top_k' must be >= -1, got -2"),
        ({"save_top_k": 1.0}, TypeError, "'save_top_k' must be an int, got float 1.0"),
        ({"every_n_epochs": -1}, ValueError, "'every_n_epochs' must be >= 0, got -1"),
        ({"every_n_steps": -5}, ValueError, "'every_n_steps' must be >= 0, got -5"),
        ({"every_seconds": -1.0}, ValueError, "'every_seconds' must be >= 0.0, got -1.0"),
        ({"every_seconds": math.inf}, ValueError, "'every_seconds' must be finite, got inf"),
        ({"keep_last_n": 0}, ValueError, "'keep_last_n' must be >= 1, got 0"),
        ({"keep_every_n_epochs": 0}, ValueError, "'keep_every_n_epochs' must be >= 1, got 0"),
        ({"mode": "up"}, ValueError, "'mode' must be one of 'min', 'max', 'auto', got 'up'"),
        ({"monitor": ""}, ValueError, "'monitor' must be None or a non-empty str, got ''"),
        ({"precision": "half"}, ValueError,
         "'precision' must be one of 'float64', 'float32', got 'half'"),
        ({"every_n_epochs": 2, "every_n_steps": 10}, ValueError,
         "every_n_epochs, every_n_steps and every_seconds are mutually exclusive trigger kinds; "
         "got every_n_epochs=2, every_n_steps=10"),
        ({"every_n_steps": 10, "every_seconds": 60.0}, ValueError,
         "every_n_epochs, every_n_steps and every_seconds are mutually exclusive trigger kinds; "
         "got every_n_steps=10, every_seconds=60.0"),
        ({"save_best_only": True}, ValueError,
         "'save_best_only' needs a monitor, got monitor=None"),
        ({"save_top_k": 2}, ValueError,
         "'save_top_k' must be -1, 0 or 1 without a monitor, got 2 (there is no quantity to rank "
         "by: set monitor, or use keep_last_n)"),
        ({"monitor": "val_loss", "save_best_only": True, "save_top_k": 2}, ValueError,
         "'save_best_only' (Keras: save improvements, never delete) cannot be combined with "
         "retention rules; got save_top_k=2"),
        ({"monitor": "val_loss", "save_best_only": True, "keep_last_n": 2}, ValueError,
         "'save_best_only' (Keras: save improvements, never delete) cannot be combined with "
         "retention rules; got keep_last_n=2"),
        ({"monitor": "val_loss", "initial_value_threshold": 0.5}, ValueError,
         "'initial_value_threshold' only applies with save_best_only=True, got "
         "initial_value_threshold=0.5"),
        ({"monitor": "throughput"}, ValueError,
         "cannot infer whether metric 'throughput' should be minimised or maximised from its "
         "name; pass mode='min' or mode='max'"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        CheckpointPolicy(**kwargs)
    assert str(err.value) == message


def test_trigger_resolution_follows_lightning() -> None:
    # nothing given: every epoch; a step or time trigger alone switches epoch saving off
    assert CheckpointPolicy().clocks == frozenset({"round"})
    assert CheckpointPolicy(every_n_steps=5).clocks == frozenset({"optimizer_step"})
    assert CheckpointPolicy(every_n_epochs=0, every_n_steps=5).clocks == frozenset(
        {"optimizer_step"}
    )


def test_repr_label_and_config() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=3, extension=".pt")
    assert repr(policy) == "CheckpointPolicy(monitor='val_loss', save_top_k=3, extension='.pt')"
    assert policy.label == "CheckpointPolicy(val_loss)"
    config = policy.config_dict()
    assert config["type"] == "CheckpointPolicy" and config["save_top_k"] == 3
    assert json.loads(json.dumps(config)) == config
    assert CheckpointPolicy().label == "CheckpointPolicy(latest)"


# -- state --------------------------------------------------------------------------------------


def test_state_round_trips_through_strict_json() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=3, filename="e{epoch}")
    _, ctl = trace(policy, [0.5, NAN, math.inf])
    state = ctl.states[0]
    data = json.loads(json.dumps(policy.state_to_dict(state), allow_nan=False))
    assert [c["score"] for c in data["kept"]] == [0.5, "nan", "inf"]
    back = policy.state_from_dict(data)
    assert policy.state_to_dict(back) == policy.state_to_dict(state)
    assert [c.name for c in back.kept] == ["e1", "e2", "e3"]
    assert back.best == 0.5 and back.saves == 3 and back.triggers == 3


def test_controller_state_dict_resumes_the_kept_set() -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=2, filename="e{epoch}")
    ctl = Controller(policy)
    for v in (0.5, 0.4, 0.45):
        ctl.step({"val_loss": v})
    other = Controller(policy)
    other.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    d = other.step({"val_loss": 0.1})
    assert d.save == SaveRequest("e4", True, 0.1) and d.delete == ("e3",)


def _good_state() -> dict[str, Any]:
    return {
        "kept": [{"name": "e1", "score": 0.5, "epoch": 0, "step": 3, "index": 0, "ranked": True}],
        "best": 0.5,
        "saves": 1,
        "triggers": 1,
        "last_save_step": 3,
        "last_time": None,
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("best"), "CheckpointPolicy(val_loss) state: missing 'best'"),
        (lambda d: d.update(extra=1), "CheckpointPolicy(val_loss) state: unexpected 'extra'"),
        (lambda d: d.update(saves=-1),
         "CheckpointPolicy(val_loss) state.saves: must be >= 0, got -1"),
        (lambda d: d.update(kept={}),
         "CheckpointPolicy(val_loss) state.kept: expected a list, got dict"),
        (lambda d: d["kept"][0].update(name="../x"),
         "CheckpointPolicy(val_loss) state.kept[0].name: a checkpoint name must not contain '/' "
         "or '\\' (checkpoints live in one directory), got '../x'"),
        (lambda d: d["kept"][0].update(name=3),
         "CheckpointPolicy(val_loss) state.kept[0].name: expected a string, got 3"),
        (lambda d: d["kept"][0].update(score="high"),
         "CheckpointPolicy(val_loss) state.kept[0].score: expected a number, got string 'high'"),
        (lambda d: d["kept"][0].update(index=1),
         "CheckpointPolicy(val_loss) state.kept[0].index: must increase in save order and be < "
         "saves=1, got 1"),
        (lambda d: d["kept"][0].update(ranked=1),
         "CheckpointPolicy(val_loss) state.kept[0].ranked: expected a bool, got 1"),
        (lambda d: d["kept"][0].update(epoch=1.5),
         "CheckpointPolicy(val_loss) state.kept[0].epoch: expected an int, got float 1.5"),
        (lambda d: d["kept"].append(dict(d["kept"][0], index=1)) or d.update(saves=2),
         "CheckpointPolicy(val_loss) state.kept[1].name: 'e1' is kept twice"),
        (lambda d: d.update(last_time="inf"),
         "CheckpointPolicy(val_loss) state.last_time: must be finite, got inf"),
        (lambda d: d.update(last_save_step=-2),
         "CheckpointPolicy(val_loss) state.last_save_step: must be >= 0, got -2"),
        (lambda d: d["kept"].__setitem__(0, "e1"),
         "CheckpointPolicy(val_loss) state.kept[0]: expected a dict, got str"),
    ],
)
def test_bad_state_names_the_field(mutate: Any, message: str) -> None:
    policy = CheckpointPolicy("val_loss", save_top_k=2)
    assert policy.state_from_dict(_good_state()) == CheckpointState(
        (KeptCheckpoint("e1", 0.5, 0, 3, 0, True),), 0.5, 1, 1, 3, None
    )
    data = _good_state()
    mutate(data)
    with pytest.raises(StateError) as err:
        policy.state_from_dict(data)
    assert str(err.value) == message


# -- properties ---------------------------------------------------------------------------------

VALUES = st.one_of(
    st.sampled_from([0.1, 0.2, 0.3, 0.5, NAN]),
    st.floats(min_value=-2, max_value=2, allow_nan=False).map(lambda x: round(x, 1)),
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    monitor = draw(st.sampled_from(["val_loss", None]))
    kwargs: dict[str, Any] = {"monitor": monitor, "save_last": draw(st.booleans())}
    if monitor is not None:
        kwargs["mode"] = draw(st.sampled_from(["min", "max"]))
        if draw(st.integers(0, 4)) == 0:
            kwargs["save_best_only"] = True
            kwargs["initial_value_threshold"] = draw(st.none() | st.just(0.25))
            return kwargs
        kwargs["save_top_k"] = draw(st.sampled_from([None, -1, 0, 1, 2, 3]))
    else:
        kwargs["save_top_k"] = draw(st.sampled_from([None, -1, 0, 1]))
    kwargs["keep_last_n"] = draw(st.sampled_from([None, 1, 2]))
    kwargs["keep_every_n_epochs"] = draw(st.sampled_from([None, 2, 3]))
    kwargs["every_n_epochs"] = draw(st.sampled_from([None, 1, 2]))
    return kwargs


def _run_rounds(
    policy: CheckpointPolicy, state: CheckpointState, values: Sequence[float], start: int
) -> tuple[list[CheckpointDecision], CheckpointState]:
    out = []
    for i, v in enumerate(values, start):
        d, state = policy.update(state, obs("round", {"val_loss": v}, epoch=i, steps=10 * i))
        out.append(d)
    return out, state


@given(
    kwargs=configs(),
    filename=st.sampled_from(["e{epoch}-{val_loss:.2f}", "{val_loss:.1f}", "b"]),
    values=st.lists(VALUES, min_size=1, max_size=14),
    cut=st.integers(0, 14),
)
@settings(max_examples=150)
def test_resume_from_json_at_any_round_is_exact(
    kwargs: dict[str, Any], filename: str, values: list[float], cut: int
) -> None:
    policy = CheckpointPolicy(filename=filename, **kwargs)
    whole, end_state = _run_rounds(policy, policy.initial_state(), values, 0)
    cut = min(cut, len(values))
    first, mid = _run_rounds(policy, policy.initial_state(), values[:cut], 0)
    data = json.loads(json.dumps(policy.state_to_dict(mid), allow_nan=False))
    fresh = CheckpointPolicy(filename=filename, **kwargs)
    rest, resumed = _run_rounds(fresh, fresh.state_from_dict(data), values[cut:], cut)

    def key(d: CheckpointDecision) -> tuple[Any, ...]:
        save = None if d.save is None else (d.save.name, d.save.is_best, repr(d.save.score))
        return (save, d.delete, d.is_best, d.last is None, d.reason.event, d.reason.message)

    assert [key(d) for d in first + rest] == [key(d) for d in whole]
    assert policy.state_to_dict(resumed) == policy.state_to_dict(end_state)


@given(kwargs=configs(), values=st.lists(VALUES, min_size=1, max_size=20))
@settings(max_examples=200)
def test_directory_stays_within_the_rules(kwargs: dict[str, Any], values: list[float]) -> None:
    policy = CheckpointPolicy(filename="e{epoch}", **kwargs)
    state = policy.initial_state()
    directory: set[str] = set()
    scores: dict[str, float] = {}
    k = kwargs.get("save_top_k")
    n = kwargs.get("keep_last_n")
    every = kwargs.get("keep_every_n_epochs")
    keeps_all = (
        kwargs.get("save_best_only") or k == -1 or (k is None and n is None and every is None)
    )
    sign = -1.0 if kwargs.get("mode") == "max" else 1.0
    best_name = None

    def rank(v: float) -> float:
        return math.inf if math.isnan(v) else sign * v

    for epoch, v in enumerate(values):
        d, state = policy.update(state, obs("round", {"val_loss": v}, epoch=epoch))
        apply(directory, d)
        if d.save is not None:
            scores[d.save.name] = v
        checkpoints = directory - {"last"}
        assert checkpoints == {c.name for c in state.kept}
        if not keeps_all:
            periodic = sum(1 for e in range(epoch + 1) if every and (e + 1) % every == 0)
            bound = max(k or 0, 0) + (n or 0) + periodic
            assert len(checkpoints) <= bound
        has_last = kwargs["save_last"] and state.triggers > 0
        assert len(directory) - len(checkpoints) == (1 if has_last else 0)
        if d.is_best and d.save is not None:
            best_name = d.save.name
        if kwargs.get("save_best_only"):
            # Keras' notion of the best: the last improvement, which is never deleted
            assert not scores or best_name in checkpoints
        elif kwargs.get("monitor") and scores and (keeps_all or (k or 0) >= 1):
            best = min(rank(s) for s in scores.values())
            assert min(rank(scores[c]) for c in checkpoints) == best


def test_policy_is_usable_next_to_other_policies() -> None:
    ctl = Controller(
        trainctl.EarlyStopping(monitor="val_loss", patience=1),
        CheckpointPolicy("val_loss", save_top_k=1, filename="e{epoch}"),
    )
    decisions = [ctl.step({"val_loss": v}) for v in (0.5, 0.4, 0.6, 0.7)]
    assert [d.save for d in decisions[:2]] == [
        SaveRequest("e1", True, 0.5),
        SaveRequest("e2", True, 0.4),
    ]
    assert decisions[1].delete == ("e1",)
    assert decisions[-1].stop


# -- the store's name rule, applied when the policy is built ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"filename": ".trainctl-tmp-{epoch}"}, "must not start with '.trainctl-tmp-'"),
        ({"filename": "x" * 300 + "{epoch}"}, f"must be at most {MAX_NAME_BYTES} bytes long"),
        ({"filename": "trainctl-manifest", "extension": ".json"}, "reserved for the manifest"),
        ({"filename": "trainctl-manifest.json.corrupt-{epoch}"}, "reserved for the manifest"),
        ({"filename": "{epoch}", "extension": ".trainctl-tmp-"}, None),  # a suffix is harmless
    ],
)
def test_a_template_the_store_would_refuse_is_refused_at_construction(
    kwargs: dict[str, Any], problem: str | None
) -> None:
    if problem is None:
        CheckpointPolicy(**kwargs)
        return
    with pytest.raises(ValueError, match=problem):
        CheckpointPolicy(**kwargs)


def test_a_formatted_name_the_store_would_refuse_records_nothing() -> None:
    # a metric that formats into a name too long for the file system: refused before the
    # policy records it as kept (a phantom best would block later real saves)
    digits = MAX_NAME_BYTES - 3  # the sample value 1.0 fits: "1." and the digits
    policy = CheckpointPolicy("val_loss", save_top_k=1, filename=f"{{val_loss:.{digits}f}}")
    ctl = Controller(policy)
    with pytest.raises(ValueError, match="must be at most"):
        ctl.step({"val_loss": 100.0})
    assert ctl.states[0] == policy.initial_state() and ctl.rounds == 0


def test_the_policy_and_the_store_accept_the_same_names(tmp_path: Path) -> None:
    from trainctl.storage import CheckpointStore

    store = CheckpointStore(tmp_path)
    store.recover()
    for name in ["e1.pt", "a" * MAX_NAME_BYTES, "ü" * (MAX_NAME_BYTES // 2), "x.trainctl-tmp-y"]:
        CheckpointPolicy(filename=name.replace("{", "{{"))
        store.save(name, lambda p: p.write_bytes(b"x"))
    for name in ["a" * (MAX_NAME_BYTES + 1), ".trainctl-tmp-x", "trainctl-manifest.json"]:
        with pytest.raises(ValueError):
            CheckpointPolicy(filename=name)
        with pytest.raises(ValueError):
            store.save(name, lambda p: p.write_bytes(b"x"))
