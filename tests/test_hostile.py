"""Hostile input: what a careless or unlucky user tries, and the error (or the safe outcome) each
attack gets. Every case is named after the attack it tries.

Each refusal names the parameter (or the state field's path), the bound and the value; a call
that raises changes nothing, so the caller can fix the input and call again. The store's attacks
(two writers, a reader during a writer, corruption in place, raw OS errors) are in
``test_storage_*.py``; resuming through each adapter in their own modules.
"""

from __future__ import annotations

import collections
import json
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import trainctl
from trainctl import schedules as S


def _es(**kw: Any) -> trainctl.EarlyStopping:
    return trainctl.EarlyStopping("val_loss", **kw)


def _rl(**kw: Any) -> trainctl.ReduceLROnPlateau:
    return trainctl.ReduceLROnPlateau("val_loss", **kw)


def _ck(**kw: Any) -> trainctl.CheckpointPolicy:
    return trainctl.CheckpointPolicy(**kw)


def _ctl(**kw: Any) -> trainctl.Controller:
    return trainctl.Controller(**kw)


# -- configurations ---------------------------------------------------------------------------

CONFIG_ATTACKS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("truthy_string_check_finite", lambda: _es(check_finite="False"), TypeError,
     r"'check_finite' must be a bool, got str 'False'"),
    ("truthy_string_restore_best_weights", lambda: _es(restore_best_weights="no"), TypeError,
     r"'restore_best_weights' must be a bool, got str 'no'"),
    ("truthy_string_save_last", lambda: _ck(save_last="no"), TypeError,
     r"'save_last' must be a bool, got str 'no'"),
    ("truthy_int_strict", lambda: _es(strict=1), TypeError, r"'strict' must be a bool, got int 1"),
    ("bool_as_learning_rate", lambda: _ctl(lr=True), TypeError,
     r"'lr' must be a real number, got bool True"),
    ("string_min_delta", lambda: _es(min_delta="0.1"), TypeError,
     r"'min_delta' must be a real number, got str '0.1'"),
    ("string_factor", lambda: _rl(factor="0.5"), TypeError,
     r"'factor' must be a real number, got str '0.5'"),
    ("bool_factor", lambda: _rl(factor=True), TypeError,
     r"'factor' must be a real number, got bool True"),
    ("bool_in_min_lr_list", lambda: _rl(min_lr=[True]), TypeError,
     r"'min_lr\[0\]' must be a real number, got bool True"),
    ("string_in_min_lr_list", lambda: _rl(min_lr=[1, "a"]), TypeError,
     r"'min_lr\[1\]' must be a real number, got str 'a'"),
    ("string_baseline", lambda: _es(baseline="0.5"), TypeError,
     r"'baseline' must be a real number, got str '0.5'"),
    ("none_min_delta", lambda: _es(min_delta=None), TypeError,
     r"'min_delta' must be a real number, got NoneType None"),
    ("float_patience", lambda: _es(patience=2.5), TypeError,
     r"'patience' must be an int, got float 2.5"),
    ("bool_patience", lambda: _es(patience=True), TypeError,
     r"'patience' must be an int, got bool True"),
    ("negative_patience", lambda: _es(patience=-1), ValueError, r"'patience' must be >= 0, got -1"),
    ("negative_cooldown", lambda: _rl(cooldown=-2), ValueError,
     r"'cooldown' must be >= 0, got -2"),
    ("factor_of_one", lambda: _rl(factor=1.0), ValueError, r"'factor' must be < 1.0, got 1.0"),
    ("factor_of_zero_without_asking", lambda: _rl(factor=0.0), ValueError,
     r"'factor' must be > 0.0, got 0.0 \(pass allow_nonpositive_factor=True"),
    ("nan_factor", lambda: _rl(factor=math.nan), ValueError, r"'factor' must be finite, got nan"),
    ("negative_min_lr", lambda: _rl(min_lr=-1e-3), ValueError,
     r"'min_lr' must be >= 0.0, got -0.001"),
    ("negative_eps", lambda: _rl(eps=-1.0), ValueError, r"'eps' must be >= 0.0, got -1.0"),
    ("infinite_baseline", lambda: _es(baseline=math.inf), ValueError,
     r"'baseline' must be finite, got inf"),
    ("overflowing_min_delta", lambda: _es(min_delta=10**400), ValueError,
     r"'min_delta' must be a finite number, got 1000.*\(too large for a float\)"),
    ("overflowing_learning_rate", lambda: _ctl(lr=10**400), ValueError,
     r"'lr' must be a finite number, got 1000.*\(too large for a float\)"),
    ("nan_learning_rate", lambda: _ctl(lr=math.nan), ValueError, r"'lr' must be finite, got nan"),
    ("negative_learning_rate", lambda: _ctl(lr=-0.1), ValueError, r"'lr' must be >= 0, got -0.1"),
    ("empty_learning_rate_tuple", lambda: _ctl(lr=()), ValueError,
     r"'lr' must be a float or a non-empty sequence"),
    ("min_lr_array_of_the_wrong_length", lambda: _ctl(lr=(0.1, 0.2)).__class__(
        _rl(min_lr=np.array([0.0])), lr=(0.1, 0.2)), ValueError,
     r"'min_lr' has 1 values but the learning rate has 2 rates"),
    ("unknown_rules", lambda: _es(rules="tf"), ValueError,
     r"'rules' must be one of 'keras', 'lightning', 'huggingface', got 'tf'"),
    ("unknown_mode", lambda: _es(mode="up"), ValueError,
     r"'mode' must be one of 'min', 'max', 'auto', got 'up'"),
    ("unknown_direction_caught_at_construction", lambda: trainctl.EarlyStopping("val_widgets"),
     ValueError, r"cannot infer whether metric 'val_widgets'"),
    ("empty_monitor", lambda: trainctl.EarlyStopping(""), ValueError,
     r"'monitor' must be a non-empty str, got ''"),
    ("plateau_monitor_not_a_str", lambda: trainctl.ReduceLROnPlateau(monitor=3), ValueError,
     r"'monitor' must be a non-empty str, got 3"),
    ("nan_guard_empty_monitor", lambda: trainctl.TerminateOnNaN(""), ValueError,
     r"'monitor' must be a non-empty str, got ''"),
    ("stopping_threshold_above_divergence", lambda: _es(
        stopping_threshold=1.0, divergence_threshold=0.5, rules="lightning", mode="min"),
     ValueError, r"'stopping_threshold' \(1.0\) must be below 'divergence_threshold' \(0.5\)"),
    ("relative_min_delta_that_can_never_improve", lambda: _es(
        min_delta=1.0, threshold_mode="rel", mode="min"), ValueError,
     r"'min_delta' must be < 1 with threshold_mode='rel' and mode='min', got 1.0"),
    ("relative_threshold_of_two_on_a_plateau", lambda: _rl(
        min_delta=2.0, threshold_mode="rel", mode="min", rules="torch"), ValueError,
     r"'min_delta' must be < 1 with threshold_mode='rel'"),
    ("baseline_with_lightning_rules", lambda: _es(baseline=0.5, rules="lightning"), ValueError,
     r"'baseline' is a Keras rule"),
    ("checkpoint_trigger_that_never_fires", lambda: _ck(every_n_steps=0), ValueError,
     r"no trigger can fire: every_n_steps=0"),
    ("two_checkpoint_triggers", lambda: _ck(every_n_epochs=2, every_n_steps=5), ValueError,
     r"mutually exclusive trigger kinds; got every_n_epochs=2, every_n_steps=5"),
    ("checkpoint_template_named_like_a_temp_file", lambda: _ck(filename=".trainctl-tmp-{epoch}"),
     ValueError, r"must not start with '.trainctl-tmp-'"),
    ("checkpoint_template_named_like_the_manifest", lambda: _ck(
        filename="trainctl-manifest", extension=".json"), ValueError,
     r"reserved for the manifest"),
    ("checkpoint_template_named_like_the_lock", lambda: _ck(filename=".trainctl-lock"),
     ValueError, r"trainctl-lock"),
    ("checkpoint_template_of_300_bytes", lambda: _ck(filename="x" * 300 + "{epoch}"), ValueError,
     r"must be at most \d+ bytes long"),
    ("checkpoint_template_with_a_path", lambda: _ck(filename="../{epoch}"), ValueError,
     r"'filename' must not contain '/'"),
    ("save_top_k_without_monitor", lambda: _ck(save_top_k=3), ValueError,
     r"'save_top_k' must be -1, 0 or 1 without a monitor, got 3"),
    ("policy_class_instead_of_instance", lambda: trainctl.Controller(trainctl.EarlyStopping),
     TypeError, r"policy 0 is the class EarlyStopping, not an instance"),
    ("not_a_policy", lambda: trainctl.Controller(object()), TypeError,
     r"policy 0 \(object\) is not a trainctl policy: it has no 'label'"),
    ("schedule_class_instead_of_instance", lambda: _ctl(schedule=S.Schedule), TypeError,
     r"'schedule' must be a schedule instance, got the class Schedule"),
    ("a_function_as_schedule", lambda: _ctl(schedule=lambda t: 0.1), TypeError,
     r"'schedule' must be a trainctl schedule"),
    ("lr_conflicting_with_the_schedule", lambda: _ctl(lr=0.1, schedule=S.cosine(1e-3, 100)),
     ValueError, r"'lr' \(0.1\) conflicts with the schedule's base rate 0.001"),
    ("unknown_schedule_clock", lambda: _ctl(schedule_clock="epoch"), ValueError,
     r"'schedule_clock' must be one of 'optimizer_step', 'round', got 'epoch'"),
    ("constant_factor_above_one", lambda: S.constant_factor(0.1, factor=2), ValueError,
     r"'factor' must be <= 1.0, got 2.0"),
    ("warmup_stable_decay_floor_above_the_peak", lambda: S.warmup_stable_decay(
        0.1, 10, 10, stable_steps=10, min_lr_ratio=2), ValueError,
     r"'min_lr_ratio' must be <= 1.0, got 2.0"),
    ("warmup_stable_decay_negative_cycles", lambda: S.warmup_stable_decay(
        0.1, 10, 10, stable_steps=10, num_cycles=-3), ValueError,
     r"'num_cycles' must be > 0.0, got -3.0"),
    ("log_every_zero_steps", lambda: trainctl.DecisionLog("x.jsonl", steps=0), ValueError,
     r"'steps' must be a bool or an int >= 1, got 0"),
    ("warn_missing_as_string", lambda: _ctl(warn_missing="no"), TypeError,
     r"'warn_missing' must be a bool, got str 'no'"),
]


@pytest.mark.parametrize(
    ("attack", "error", "message"),
    [(a, e, m) for _, a, e, m in CONFIG_ATTACKS],
    ids=[name for name, *_ in CONFIG_ATTACKS],
)
def test_configuration_attacks_are_refused_naming_what_and_why(
    attack: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        attack()


def test_numpy_typed_configurations_are_stored_as_plain_python_numbers() -> None:
    es = trainctl.EarlyStopping("val_loss", patience=np.int64(3), min_delta=np.float32(0.5),
                                restore_best_weights=np.bool_(True))
    assert type(es.patience) is int and type(es.min_delta) is float
    assert type(es.restore_best_weights) is bool
    ctl = trainctl.Controller(es, _rl(min_lr=np.array([0.0, 1e-4])), lr=np.array([0.1, 0.2]))
    assert json.loads(json.dumps(ctl.state_dict())) == ctl.state_dict()
    assert ctl.lr == (0.1, 0.2) and type(ctl.lr[0]) is float


# -- calls ------------------------------------------------------------------------------------


def _plateau_ctl() -> trainctl.Controller:
    return trainctl.Controller(_es(patience=2), _rl(patience=1), lr=0.1)


CALL_ATTACKS: list[tuple[str, Callable[[trainctl.Controller], Any], type[Exception], str]] = [
    ("metrics_as_a_list", lambda c: c.step([("val_loss", 1.0)]), TypeError,
     r"'metrics' must be a mapping of name -> number, got list"),
    ("metrics_as_a_string_to_optimizer_step", lambda c: c.optimizer_step("x"), TypeError,
     r"'metrics' must be a mapping of name -> number, got str 'x' \(in optimizer_step\(\)\)"),
    ("string_metric", lambda c: c.step({"val_loss": "0.5"}), TypeError,
     r"metric 'val_loss' must be a number, got str '0.5'"),
    ("none_metric", lambda c: c.step({"val_loss": None}), TypeError,
     r"metric 'val_loss' must be a number, got NoneType None"),
    ("bool_metric", lambda c: c.step({"val_loss": True}), TypeError,
     r"metric 'val_loss' must be a number, got bool True"),
    ("overflowing_metric", lambda c: c.step({"val_loss": 10**400}), ValueError,
     r"metric 'val_loss' is too large for a float"),
    ("array_metric", lambda c: c.step({"val_loss": np.ones(3)}), TypeError,
     r"metric 'val_loss' must be a number or a one-element array, got ndarray of shape \(3,\)"),
    ("negative_epoch", lambda c: c.step({"val_loss": 1.0}, epoch=-1), ValueError,
     r"'epoch' must be >= 0, got -1"),
    ("float_epoch", lambda c: c.step({"val_loss": 1.0}, epoch=2.0), TypeError,
     r"'epoch' must be an int, got float 2.0"),
    ("infinite_time", lambda c: c.step({"val_loss": 1.0}, time=math.inf), ValueError,
     r"'time' must be finite, got inf"),
    ("nan_time", lambda c: c.optimizer_step(time=math.nan), ValueError,
     r"'time' must be finite, got nan"),
    ("string_time", lambda c: c.optimizer_step(time="10"), TypeError,
     r"'time' must be a real number, got str '10'"),
    ("reported_rate_of_the_wrong_shape", lambda c: c.step({"val_loss": 1.0}, lr=(0.1, 0.2)),
     ValueError, r"'lr' has 2 values but the controller manages a single rate"),
    ("reported_nan_rate", lambda c: c.step({"val_loss": 1.0}, lr=math.nan), ValueError,
     r"'lr' must be finite, got nan"),
]


@pytest.mark.parametrize(
    ("attack", "error", "message"),
    [(a, e, m) for _, a, e, m in CALL_ATTACKS],
    ids=[name for name, *_ in CALL_ATTACKS],
)
def test_call_attacks_are_refused_and_change_nothing(
    attack: Callable[[trainctl.Controller], Any], error: type[Exception], message: str
) -> None:
    ctl = _plateau_ctl()
    ctl.step({"val_loss": 1.0})
    before = ctl.state_dict()
    with pytest.raises(error, match=message):
        attack(ctl)
    assert ctl.state_dict() == before


def test_numpy_typed_call_arguments_are_accepted() -> None:
    ctl = trainctl.Controller(_ck(every_seconds=5.0, filename="s{step}"))
    assert ctl.step({}, epoch=np.int64(3)).epoch == 3
    assert ctl.optimizer_step(time=np.float32(10)).save is not None  # time is time, not None


def test_a_metric_that_only_one_policy_refuses_moves_no_clock_and_no_state() -> None:
    # the second policy raises: patience must not count a round that did not happen
    ctl = trainctl.Controller(_es(patience=2), trainctl.TerminateOnNaN("loss"), lr=0.1)
    ctl.step({"val_loss": 1.0, "loss": 1.0})
    for _ in range(3):
        with pytest.raises(TypeError, match="metric 'loss'"):
            ctl.step({"val_loss": 2.0, "loss": "bad"})
    assert ctl.rounds == 1 and ctl.states[0].wait == 0
    d = ctl.step({"val_loss": 2.0, "loss": 1.0})
    assert not d.stop and ctl.states[0].wait == 1  # one real bad round, not four


def test_a_schedule_that_raises_moves_no_clock() -> None:
    ctl = trainctl.Controller(schedule=S.lambda_lr(0.1, _one_minus_t))
    assert ctl.optimizer_step().lr == 0.0  # 0.1 * (1 - 1)
    with pytest.raises(ValueError, match=r"gives the rate -0.1 at step 2; a learning rate must"):
        ctl.optimizer_step()
    assert ctl.optimizer_steps == 1 and ctl.lr == 0.0


def _one_minus_t(t: int) -> float:
    return 1.0 - t


def _nan_after_one(t: int) -> float:
    return math.nan if t else 1.0


def test_a_nan_rate_from_a_schedule_never_reaches_an_optimizer() -> None:
    torch = pytest.importorskip("torch")
    from trainctl.adapters.torch import ScheduleLR, TorchController

    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TorchController(trainctl.Controller(schedule=S.lambda_lr(0.1, _nan_after_one)),
                           model, opt)
    with pytest.raises(ValueError, match="gives the rate nan at step 1"):
        loop.optimizer_step()
    assert opt.param_groups[0]["lr"] == 0.1
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = ScheduleLR(other, S.lambda_lr(0.1, _nan_after_one))
    other.step()
    with pytest.raises(ValueError, match="gives the rate nan at step 1"):
        sched.step()
    assert other.param_groups[0]["lr"] == 0.1


def test_a_defaultdict_of_metrics_is_read_never_written() -> None:
    metrics: dict[str, float] = collections.defaultdict(float)
    metrics["loss"] = 1.0
    ctl = trainctl.Controller(_es(patience=0), warn_missing=False)
    assert not any(ctl.step(metrics).stop for _ in range(3))
    assert dict(metrics) == {"loss": 1.0}


def test_two_threads_on_one_controller_are_refused_not_lost() -> None:
    ctl = trainctl.Controller(_es(patience=10**9))
    errors: list[BaseException] = []
    done = [0, 0]

    def worker(i: int) -> None:
        for _ in range(20_000):
            try:
                ctl.step({"val_loss": 1.0})
                done[i] += 1
            except RuntimeError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every call either counted or was refused: no update was silently lost
    assert ctl.rounds == sum(done) and ctl.states[0].wait == sum(done) - 1
    assert all("belongs to one thread" in str(e) for e in errors)


def test_two_policies_asking_to_save_in_one_call_name_both() -> None:
    ctl = trainctl.Controller(_ck(filename="a{epoch}"), _ck(filename="b{epoch}"))
    with pytest.raises(ValueError, match=r"CheckpointPolicy\(latest\) and CheckpointPolicy\("
                                         r"latest\) both ask for a 'save'"):
        ctl.step({})


def test_a_lambda_schedule_is_refused_when_saving_not_when_resuming() -> None:
    ctl = trainctl.Controller(schedule=S.lambda_lr(0.1, lambda t: 0.5))
    ctl.optimizer_step()
    with pytest.raises(ValueError, match=r"lambda or a closure.*define it at module level"):
        ctl.state_dict()
    named = trainctl.Controller(schedule=S.lambda_lr(0.1, _one_minus_t))
    state = json.loads(json.dumps(named.state_dict()))
    assert "test_hostile._one_minus_t" in state["schedule"] and "0x" not in state["schedule"]
    trainctl.Controller(schedule=S.lambda_lr(0.1, _one_minus_t)).load_state_dict(state)


# -- states -----------------------------------------------------------------------------------


def _state() -> dict[str, Any]:
    ctl = trainctl.Controller(_es(patience=3), _rl(patience=1), schedule=S.cosine(0.1, 100),
                              lr=(0.1, 0.05))
    ctl.step({"val_loss": 1.0})
    state: dict[str, Any] = json.loads(json.dumps(ctl.state_dict()))
    return state


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split("/")]
        target: Any = state
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return edit


STATE_ATTACKS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("lr_as_the_string_nan", _set("lr", "nan"), r"lr: a learning rate must be a finite"),
    ("lr_as_the_string_inf", _set("lr", ["inf", 0.1]), r"lr\[0\]: a learning rate must be"),
    ("negative_lr", _set("lr", [-1, 0.1]), r"lr\[0\]: a learning rate must be a finite number"),
    ("lr_of_the_wrong_length", _set("lr", [0.1]), r"lr: the state's learning rate"),
    ("negative_rounds", _set("rounds", -3), r"rounds: must be >= 0, got -3"),
    ("negative_optimizer_steps", _set("optimizer_steps", -1), r"optimizer_steps: must be >= 0"),
    ("negative_epoch", _set("epoch", -1), r"epoch: must be >= 0, got -1"),
    ("float_rounds", _set("rounds", 1.5), r"rounds: expected an int >= 0, got float 1.5"),
    ("bool_rounds", _set("rounds", True), r"rounds: expected an int >= 0, got bool True"),
    ("lr_scale_of_the_wrong_length", _set("lr_scale", [1.0]), r"lr_scale: expected 2 scales"),
    ("lr_scale_with_nan", _set("lr_scale", ["nan", 1.0]), r"lr_scale\[0\]: a scale must be"),
    ("lr_scale_negative", _set("lr_scale", [1.0, -1.0]), r"lr_scale\[1\]: a scale must be"),
    ("lr_scale_with_null", _set("lr_scale", [None, 1.0]), r"lr_scale\[0\]: a scale must be"),
    ("lr_scale_null", _set("lr_scale", None), r"lr_scale: expected a list of 2 scales"),
    ("version_true", _set("version", True), r"version: controller state version True"),
    ("version_99", _set("version", 99), r"version: controller state version 99"),
    ("format_of_another_library", _set("format", "keras"), r"not a trainctl controller state"),
    ("stopped_as_string", _set("stopped", "yes"), r"stopped: expected a bool, got 'yes'"),
    ("negative_wait", _set("policies/0/state/wait", -1),
     r"EarlyStopping\(val_loss\) state\.wait: must be >= 0, got -1"),
    ("string_best", _set("policies/0/state/best", "low"), r"state\.best: expected a number"),
    ("stop_event_without_stop", _set("policies/0/state/stop_event", "patience_exhausted"),
     r"'stopped_epoch' and 'stop_event' must both be set or both be null"),
    ("negative_cooldown_counter", _set("policies/1/state/cooldown_counter", -2),
     r"ReduceLROnPlateau\(val_loss\) state\.cooldown_counter: must be >= 0, got -2"),
    ("another_policys_config", _set("policies/0/config/patience", 7),
     r"policies\[0\] EarlyStopping\(val_loss\): the state comes from another configuration"),
    ("a_policy_missing", lambda s: s["policies"].pop(), r"policies: the state holds 1 policies"),
    ("another_schedule", _set("schedule", "cosine(lr=0.2, total_steps=100, final_lr=0.0)"),
     r"schedule: the state was saved with schedule"),
    ("stop_details_that_are_garbage", _set("stop_details", [{"policy": 9}]),
     r"stop_details\[0\]: expected \{'policy', 'fields', 'reason'\}"),
]


@pytest.mark.parametrize(
    ("edit", "message"),
    [(e, m) for _, e, m in STATE_ATTACKS],
    ids=[name for name, *_ in STATE_ATTACKS],
)
def test_hand_edited_states_are_refused_naming_the_field_and_change_nothing(
    edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    state = _state()
    edit(state)
    ctl = trainctl.Controller(_es(patience=3), _rl(patience=1), schedule=S.cosine(0.1, 100),
                              lr=(0.1, 0.05))
    before = ctl.state_dict()
    with pytest.raises(trainctl.StateError, match=message):
        ctl.load_state_dict(state)
    assert ctl.state_dict() == before


# -- resuming ---------------------------------------------------------------------------------


def test_a_rate_read_back_from_the_optimizer_is_state_not_configuration() -> None:
    ctl = trainctl.Controller(_es(patience=3), _ck(monitor="val_loss", save_top_k=1))
    ctl.step({"val_loss": 1.0}, lr=0.1)  # an adapter reported the optimizer's rate
    fresh = trainctl.Controller(_es(patience=3), _ck(monitor="val_loss", save_top_k=1))
    fresh.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert fresh.lr == 0.1 and fresh.state_dict() == ctl.state_dict()


def test_a_stopped_controller_keeps_its_details_through_a_resume() -> None:
    ctl = trainctl.Controller(_es(patience=1, restore_best_weights=True))
    for v in (1.0, 0.5, 0.9):
        d = ctl.step({"val_loss": v})
    assert d.stop
    fresh = trainctl.Controller(_es(patience=1, restore_best_weights=True))
    fresh.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    later = fresh.step({"val_loss": 0.1})
    assert later.stop and later.details[0].best == 0.5 and later.details[0].best_epoch == 1
    assert later.explain() == ctl.step({"val_loss": 0.1}).explain()
