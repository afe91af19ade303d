"""Decisions made visible: Decision.to_dict, the decision log, rebuilding a controller from its
state, and the expression parser that never evaluates."""

from __future__ import annotations

import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

import trainctl
from trainctl import DecisionLog, read_log
from trainctl import schedules as S


def make(log: Any = None) -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.TerminateOnNaN(),
        trainctl.ReduceLROnPlateau(patience=1, factor=0.5, min_delta=0.0),
        trainctl.EarlyStopping(patience=3, restore_best_weights=True),
        trainctl.CheckpointPolicy("val_loss", save_top_k=1, filename="e{epoch}"),
        schedule=S.warmup(S.cosine(0.1, 100), 5),
        lr=(0.1, 0.01),
        log=log,
    )


STREAM = [1.0, 0.9, 0.9, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89]


def run(ctl: trainctl.Controller, values: list[float], steps: int = 3) -> list[trainctl.Decision]:
    out = []
    for v in values:
        for _ in range(steps):
            ctl.optimizer_step({"loss": v})
        out.append(ctl.step({"val_loss": v, "loss": v, "note": "text"}))
    return out


def test_to_dict_is_plain_json_with_messages_rates_and_each_policys_numbers() -> None:
    d = run(make(), STREAM[:4])[-1]
    data = d.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["clock"] == "round" and data["round"] == 4 and data["epoch"] == 3
    assert data["metrics"] == {"val_loss": 0.9, "loss": 0.9}  # the string is left out
    assert isinstance(data["lr"], list) and len(data["lr"]) == 2 and data["lr_changed"]
    assert data["events"] == [r.event for r in d.reasons]
    assert data["reasons"][1]["source"] == "ReduceLROnPlateau(val_loss)"
    assert data["reasons"][1]["message"] == d.reasons[1].message
    assert data["policies"]["EarlyStopping(val_loss)"]["best"] == 0.9
    assert data["policies"]["EarlyStopping(val_loss)"]["wait"] == 2
    nan = trainctl.Controller(trainctl.TerminateOnNaN()).step({"loss": math.nan}).to_dict()
    assert nan["metrics"] == {"loss": "nan"} and nan["stop"]


def test_the_log_records_every_round_and_the_end(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "run" / "log.jsonl")
    ctl = make(log)
    decisions = run(ctl, STREAM)
    ctl.finish()
    log.close()
    records = read_log(log.path, include_header=True)
    header, *rounds, end = records
    assert header["format"] == "trainctl.decision-log" and header["version"] == 1
    assert header["controller"] == ctl.describe()
    assert [r["clock"] for r in rounds] == ["round"] * len(decisions) and end["clock"] == "end"
    assert rounds == [json.loads(json.dumps(d.to_dict())) for d in decisions]
    assert [r["lr"] for r in rounds] == [list(d.lr) for d in decisions]  # type: ignore[arg-type]


def test_optimizer_steps_are_off_by_default_or_thinned(tmp_path: Path) -> None:
    every = DecisionLog(tmp_path / "every.jsonl", steps=True)
    thinned = DecisionLog(tmp_path / "thinned.jsonl", steps=4)
    for log in (every, thinned):
        run(make(log), STREAM[:4])
        log.close()
    steps = [r for r in read_log(every.path) if r["clock"] == "optimizer_step"]
    assert [r["optimizer_steps"] for r in steps] == list(range(1, 13))
    thin = [r["optimizer_steps"] for r in read_log(thinned.path) if r["clock"] != "round"]
    assert thin == [4, 8, 12]
    with pytest.raises(ValueError, match="'steps' must be a bool or an int >= 1, got 0"):
        DecisionLog(tmp_path / "x.jsonl", steps=0)


def test_step_records_are_on_disk_once_a_round_or_a_checkpoint_follows(tmp_path: Path) -> None:
    """Step records may wait in a buffer, but never past the next round or checkpoint: a crash
    (no close()) keeps every record a resume would keep."""
    log = DecisionLog(tmp_path / "steps.jsonl", steps=True)
    ctl = make(log)
    run(ctl, STREAM[:2])  # 2 rounds, 3 steps each; the file is read without closing the log
    on_disk = [(r["clock"], r["optimizer_steps"]) for r in read_log(log.path)]
    assert on_disk == [("optimizer_step", 1), ("optimizer_step", 2), ("optimizer_step", 3),
                       ("round", 3), ("optimizer_step", 4), ("optimizer_step", 5),
                       ("optimizer_step", 6), ("round", 6)]
    saving = DecisionLog(tmp_path / "saving.jsonl", steps=True)
    ctl = trainctl.Controller(
        trainctl.CheckpointPolicy(every_n_steps=2), lr=0.1, log=saving
    )
    for _ in range(5):
        ctl.optimizer_step({"loss": 0.5})
    assert 4 in [r["optimizer_steps"] for r in read_log(saving.path)]  # the last save
    log.close()
    saving.close()


def test_a_resumed_run_rewrites_its_log_to_equal_an_uninterrupted_one(tmp_path: Path) -> None:
    whole_log = DecisionLog(tmp_path / "whole.jsonl")
    whole = make(whole_log)
    run(whole, STREAM)
    whole.finish()
    whole_log.close()
    # the interrupted run logged two rounds past its last saved state, then died
    log = DecisionLog(tmp_path / "parts.jsonl")
    first = make(log)
    run(first, STREAM[:4])
    saved = json.loads(json.dumps(first.state_dict()))
    run(first, STREAM[4:6])
    log.close()
    resumed_log = DecisionLog(tmp_path / "parts.jsonl")
    resumed = make(resumed_log)
    resumed.load_state_dict(saved)  # rewinds the log to round 4
    run(resumed, STREAM[4:])
    resumed.finish()
    resumed_log.close()
    assert read_log(resumed_log.path, include_header=True) == read_log(
        whole_log.path, include_header=True
    )


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "log.jsonl")
    run(make(log), STREAM[:3])
    log.close()
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"clock": "round", "round": 4, "metr')  # killed mid-write
    with pytest.warns(UserWarning, match="line 5 is incomplete"):
        records = read_log(log.path)
    assert [r["round"] for r in records] == [1, 2, 3]
    # a damaged line in the middle is an error naming the file and the line
    lines = log.path.read_text().splitlines()
    lines[2] = "garbage"
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(trainctl.LogError, match=r"log\.jsonl' line 3"):
        read_log(log.path)


def test_the_log_can_be_a_csv_table_that_widens_for_new_metrics(tmp_path: Path) -> None:
    import csv

    log = DecisionLog(tmp_path / "log.csv")
    ctl = make(log)
    run(ctl, STREAM[:2])
    ctl.step({"val_loss": 0.5, "val_acc": 0.9})  # a metric seen for the first time
    log.close()
    with open(log.path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[-1]["val_acc"] == "0.9" and rows[0]["val_acc"] == ""
    assert rows[0]["lr/pg0"] and rows[0]["lr/pg1"] and "improved" in rows[0]["events"]
    assert "EarlyStopping(val_loss):" in rows[0]["messages"]


def test_a_log_pickles_and_reopens(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "log.jsonl")
    ctl = make(log)
    run(ctl, STREAM[:2])
    again = pickle.loads(pickle.dumps(ctl))
    run(again, STREAM[2:3])
    again._log.close()  # type: ignore[union-attr]
    log.close()
    assert [r["round"] for r in read_log(log.path)] == [1, 2, 3]


def test_a_controller_is_rebuilt_from_its_state_alone() -> None:
    ctl = make()
    run(ctl, STREAM[:5])
    state = json.loads(json.dumps(ctl.state_dict()))
    again = trainctl.Controller.from_state_dict(state)
    assert again == ctl and again.schedule == ctl.schedule and again.base_lr == (0.1, 0.01)
    assert run(again, STREAM[5:]) == run(ctl, STREAM[5:])


def _halve(t: int) -> float:
    return 0.5 ** (t // 10)


def test_user_functions_and_policies_are_found_by_name_or_refused_clearly() -> None:
    ctl = trainctl.Controller(schedule=S.lambda_lr(0.1, _halve))
    again = trainctl.Controller.from_state_dict(ctl.state_dict())
    assert again.schedule == ctl.schedule  # found in this (already imported) module
    state = ctl.state_dict()
    state["schedule"] = "lambda_lr(lr=0.1, fn=not_imported_pkg.fn, vectorized=False)"
    with pytest.raises(trainctl.StateError, match=r"not_imported_pkg\.fn.*import its module"):
        trainctl.Controller.from_state_dict(state)
    state = trainctl.Controller(trainctl.EarlyStopping()).state_dict()
    state["policies"][0]["config"]["type"] = "MyPolicy"
    with pytest.raises(trainctl.StateError, match=r"'MyPolicy' is not known.*register_policy"):
        trainctl.Controller.from_state_dict(state)
    with pytest.raises(ValueError, match="is a lambda or a closure"):
        trainctl.Controller(schedule=S.lambda_lr(0.1, lambda t: 1.0)).state_dict()


def test_a_registered_user_policy_is_rebuilt() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from spike_guard import LossSpikeGuard

    trainctl.register_policy(LossSpikeGuard)
    ctl = trainctl.Controller(LossSpikeGuard(ratio=4.0), lr=0.1)
    ctl.optimizer_step({"loss": 1.0})
    again = trainctl.Controller.from_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert again == ctl and again.policies[0].ratio == 4.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('echo hacked')", "is not a factory that may be called"),
        ("EarlyStopping(patience=open('x'))", "is not a factory"),
        ("EarlyStopping(patience=1 + 1)", "is not a literal"),
        ("EarlyStopping(**{'patience': 3})", r"\* and \*\* arguments are not accepted"),
        ("EarlyStopping(patience=-1)", "'patience' must be >= 0, got -1"),
        ("patience=3", "is not an expression"),
        ("3", "is not a call"),
        ("os.system", "is not a call"),
    ],
)
def test_the_parser_evaluates_nothing(text: str, problem: str) -> None:
    with pytest.raises(trainctl.ExpressionError, match=problem):
        trainctl.parse_call(text)


def test_the_parser_builds_policies_and_schedules() -> None:
    assert trainctl.parse_call(
        "EarlyStopping(monitor='val_loss', patience=5, min_delta=-0.5, rules='lightning')"
    ) == trainctl.EarlyStopping(patience=5, min_delta=-0.5, rules="lightning")
    with pytest.raises(trainctl.ExpressionError, match="'baseline' must be finite, got -inf"):
        trainctl.parse_call("EarlyStopping(baseline=-inf)")
    assert trainctl.parse_call("ReduceLROnPlateau(min_lr=(0.1, 0.2))") == (
        trainctl.ReduceLROnPlateau(min_lr=(0.1, 0.2))
    )
    s = S.warmup(S.cosine(0.1, total_steps=900), warmup_steps=100)
    assert trainctl.parse_call(repr(s)) == s
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainctl.parse_call("EarlyStopping( patience = 2 )").patience == 2


def test_a_resume_that_finds_nothing_starts_the_log_over(tmp_path: Path) -> None:
    """A run killed before its first checkpoint left records; the next run resumes nothing, so
    its log must not continue those (every adapter's resume() goes through the runner)."""
    torch = pytest.importorskip("torch")
    from trainctl.adapters.torch import TorchController

    def loop() -> tuple[TorchController, DecisionLog]:
        log = DecisionLog(tmp_path / "decisions.jsonl")
        net = torch.nn.Linear(2, 1)
        ctl = trainctl.Controller(trainctl.EarlyStopping(patience=3), lr=0.1, log=log)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        return TorchController(ctl, net, opt, store=tmp_path / "ckpt"), log

    first, log = loop()
    for v in STREAM[:3]:
        first.step({"val_loss": v})
    log.close()
    assert len(read_log(log.path)) == 3
    second, log = loop()
    assert second.resume().fresh
    assert read_log(log.path) == []  # the header alone
    second.step({"val_loss": 1.0})
    log.close()
    assert [r["round"] for r in read_log(log.path)] == [1]
