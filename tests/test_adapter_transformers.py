"""The Hugging Face adapter, tested inside the real ``transformers.Trainer``.

A tiny randomly initialised ``PreTrainedModel`` trains on CPU; the evaluation metrics are
scripted (a callback placed first rewrites ``metrics`` in ``on_evaluate``, before every other
callback and the Trainer's ``_determine_best_metric`` read them), so plateaus, exact ties,
improvements within the threshold and NaN happen exactly where a test wants them.

- ``EarlyStoppingCallback`` parity: Hugging Face's class and ours run side by side in two
  Trainers with the same seeds; the stop step, the counter and ``state.best_metric`` after every
  evaluation and ``state.best_model_checkpoint`` must be equal, on scripted and random streams
  and across a resume (with and without ``restore_callback_states_from_checkpoint``).
- ``ControllerCallback``: the per-step rates of warmup + cosine + plateau equal a mirror
  ``Controller`` driven by hand; best-k + latest-n retention of the Trainer's folders; an
  interrupted run resumed with ``resume_from_checkpoint`` equals an uninterrupted one; the
  refusals; the example script.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import trainctl
from trainctl import schedules
from trainctl.effects import FreshRunError

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from _transformers_tiny import Boom, Crash, Recorder, Scripted, args_for, trainer_for  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import EarlyStoppingCallback as HFEarlyStoppingCallback  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from trainctl.adapters.torch import ScheduleLR  # noqa: E402
from trainctl.adapters.transformers import (  # noqa: E402
    BEST_WEIGHTS_FILE,
    ControlledLR,
    ControllerCallback,
    EarlyStoppingCallback,
    round_metrics,
)

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = math.nan, math.inf


@pytest.fixture(autouse=True, scope="module")
def _skip_long_lived_objects_in_gc() -> Any:
    """Accelerate runs ``gc.collect()`` at every ``train()``; with transformers imported that
    walks a huge object graph (half of a tiny run). What is alive now is long-lived (modules,
    classes): freeze it for this module's tests, so a collection visits what the tests create."""
    gc.freeze()
    yield
    gc.unfreeze()


def adamw_pair(lr: float) -> Any:
    """``optimizers=`` for ``trainer_for``: AdamW with the scheduler that leaves the rate alone."""
    return lambda model: ControllerCallback.optimizers(torch.optim.AdamW(model.parameters(), lr=lr))


def by_step(values: list[float], every: int = 1) -> Any:
    """The value of the evaluation at ``global_step`` (evaluations every ``every`` steps)."""
    return lambda step: values[step // every - 1]


# -- EarlyStoppingCallback: a drop-in for Hugging Face's --------------------------------------


class Probe(TrainerCallback):
    """After each evaluation (read at the next step's begin and at the end, once the Trainer's
    ``_determine_best_metric`` has run): the early-stopping counter, ``state.best_metric`` and
    ``state.best_model_checkpoint``. The callback is looked up in the Trainer each time, since
    ``restore_callback_states_from_checkpoint`` replaces it with a new instance."""

    def __init__(self) -> None:
        self.trainer: Any = None
        self.rows: list[tuple[int, int, float | None, str | None]] = []
        self.core_best: list[tuple[float | None, float | None]] = []
        self._seen = -1

    def _record(self, state: Any) -> None:
        if state.global_step == self._seen:
            return
        self._seen = state.global_step
        es = next(c for c in self.trainer.callback_handler.callbacks
                  if isinstance(c, HFEarlyStoppingCallback))
        ckpt = state.best_model_checkpoint
        self.rows.append((state.global_step, es.early_stopping_patience_counter,
                          state.best_metric, None if ckpt is None else Path(ckpt).name))
        if isinstance(es, EarlyStoppingCallback):  # the core moved its best as the Trainer did
            self.core_best.append((es.core_state.best, state.best_metric))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._seen = state.global_step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._record(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._record(state)


def run_early_stopping(
    directory: Path,
    cls: type[HFEarlyStoppingCallback],
    values: list[float],
    *,
    metric: str = "loss",
    patience: int = 1,
    threshold: float = 0.0,
    save: bool = False,
    crash_after: int | None = None,
    resume: bool = False,
    restore_states: bool = False,
) -> tuple[Any, Probe, Any]:
    es = cls(early_stopping_patience=patience, early_stopping_threshold=threshold)
    probe = Probe()
    callbacks: list[TrainerCallback] = [
        Scripted(by_step=by_step(values), key=f"eval_{metric}"), es, probe
    ]
    if crash_after is not None:
        callbacks.append(Crash(crash_after))
    args = args_for(
        directory, max_steps=len(values), metric_for_best_model=metric,
        save_strategy="steps" if save else "no", save_steps=1, load_best_model_at_end=save,
        restore_callback_states_from_checkpoint=restore_states,
    )
    trainer = trainer_for(args, callbacks)
    probe.trainer = trainer
    if crash_after is None:
        trainer.train(resume_from_checkpoint=True if resume else None)
    else:
        with pytest.raises(Boom):
            trainer.train()
    return trainer, probe, es


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (in nested tuples/lists)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def assert_parity(tmp: Path, values: list[float], **kw: Any) -> tuple[Probe, Any]:
    hf_trainer, hf_probe, _ = run_early_stopping(tmp / "hf", HFEarlyStoppingCallback, values, **kw)
    tc_trainer, tc_probe, ours = run_early_stopping(tmp / "tc", EarlyStoppingCallback, values,
                                                    **kw)
    context = f"values={values} {kw}"
    assert tc_trainer.state.global_step == hf_trainer.state.global_step, context  # stop step
    assert same(tc_probe.rows, hf_probe.rows), f"{context}\n{tc_probe.rows}\n{hf_probe.rows}"
    assert same(tc_trainer.state.best_metric, hf_trainer.state.best_metric), context
    # the copy of state.best_metric into the core before each check changed nothing: the
    # core's huggingface rule moves best exactly as the Trainer's _determine_best_metric does
    assert all(same(core, trainer) for core, trainer in tc_probe.core_best), context
    return tc_probe, ours


SCRIPTED = {
    # name: (metric, values, patience, threshold)
    "plateau": ("loss", [1.0, 0.8, 0.8, 0.79, 0.8, 0.81, 0.8, 0.8], 2, 0.0),
    "exact ties": ("loss", [0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4], 3, 0.0),
    # each improvement (0.03) is within the threshold but moves the Trainer's best_metric, so the
    # counter never resets (a rule that moved best only beyond the threshold would reset at 0.94)
    "within threshold": ("loss", [1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.82, 0.79], 3, 0.05),
    "nan": ("loss", [NAN, 1.0, NAN, 0.9, NAN, NAN, 0.95, 0.5], 3, 0.0),
    "accuracy, greater is better": ("accuracy", [0.5, 0.6, 0.6, 0.65, 0.64, 0.66, 0.66, 0.66],
                                    2, 0.01),
    "inf first, negative threshold": ("loss", [INF, 2.0, 2.0, 1.5, 1.5, 1.45, 1.4, 1.4],
                                      2, -0.1),
    "patience 0": ("loss", [1.0, 0.9, 0.8, 0.7], 0, 0.0),
}


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_early_stopping_parity_on_scripted_streams(tmp_path: Path, name: str) -> None:
    metric, values, patience, threshold = SCRIPTED[name]
    probe, ours = assert_parity(tmp_path, values, metric=metric, patience=patience,
                                threshold=threshold, save=True)
    assert probe.rows and probe.rows[-1][3] is not None  # best_model_checkpoint compared
    decision = ours.last_decision
    assert decision is not None and decision.explain()
    assert ours.early_stopping_patience_counter == ours.controller.states[0].wait


def test_early_stopping_parity_on_random_streams(tmp_path: Path) -> None:
    rng = np.random.default_rng(2024)
    stops = 0
    for i in range(36):
        walk = 1.0 + np.cumsum(rng.choice([-0.1, -0.05, -0.02, 0.0, 0.0, 0.03, 0.05], size=12))
        values = [float(round(v, 2)) for v in walk]  # rounding makes exact ties
        values = [NAN if rng.random() < 0.08 else v for v in values]
        metric = str(rng.choice(["loss", "accuracy"]))
        if metric == "accuracy":
            values = [-v for v in values]
        probe, _ = assert_parity(
            tmp_path / str(i), values, metric=metric, patience=int(rng.integers(1, 7)),
            threshold=float(rng.choice([0.0, 0.02, 0.05, -0.05])),
        )
        stops += probe.rows[-1][0] < len(values)
    assert 0 < stops < 36, stops  # the streams exercise both outcomes


@pytest.mark.parametrize("restore_states", [False, True])
def test_early_stopping_parity_across_a_resume(tmp_path: Path, restore_states: bool) -> None:
    # counter 4 when the run dies after step 6: Hugging Face restores it only with
    # restore_callback_states_from_checkpoint=True (then it stops at step 7), otherwise it
    # starts from 0 against the restored state.best_metric (then it runs to the end)
    values = [1.0, 0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.85, 0.9, 0.9, 0.9, 0.9]
    rows = {}
    for cls, label in ((HFEarlyStoppingCallback, "hf"), (EarlyStoppingCallback, "tc")):
        kw: dict[str, Any] = {"patience": 5, "save": True, "restore_states": restore_states}
        run_early_stopping(tmp_path / label, cls, values, crash_after=6, **kw)
        trainer, probe, _ = run_early_stopping(tmp_path / label, cls, values, resume=True, **kw)
        rows[label] = (trainer.state.global_step, probe.rows, trainer.state.best_metric)
    assert same(rows["tc"], rows["hf"])
    assert rows["tc"][0] == (7 if restore_states else len(values))


def test_early_stopping_is_the_huggingface_class() -> None:
    ours, theirs = EarlyStoppingCallback(3, 0.5), HFEarlyStoppingCallback(3, 0.5)
    assert isinstance(ours, HFEarlyStoppingCallback)
    assert type(ours).__name__ == type(theirs).__name__  # the stateful_callbacks key
    signature = inspect.signature(EarlyStoppingCallback.__init__).parameters
    original = inspect.signature(HFEarlyStoppingCallback.__init__).parameters
    assert [(p.name, p.default) for p in signature.values()] == [
        (p.name, p.default) for p in original.values()
    ]
    assert ours.state() == theirs.state()
    # the counter is the core state's wait, both ways
    ours.early_stopping_patience_counter = 2
    theirs.early_stopping_patience_counter = 2
    assert ours.controller.states[0].wait == 2 and ours.state() == theirs.state()
    ours.controller.replace_state(0, ours.controller.states[0]._replace(wait=1))
    assert ours.early_stopping_patience_counter == 1
    # a state exported by either class loads into the other
    loaded = EarlyStoppingCallback.from_state(theirs.state())
    assert loaded.early_stopping_patience_counter == 2 and loaded.core_state.wait == 2
    assert HFEarlyStoppingCallback.from_state(loaded.state()).early_stopping_patience_counter == 2
    # attribute changes reach the core (as the Trainer's from_state path assigns them)
    ours.early_stopping_patience = 7
    assert ours.policy.patience == 7 and ours.early_stopping_patience_counter == 1


def test_early_stopping_refuses_what_huggingface_mishandles() -> None:
    with pytest.raises(ValueError, match="'early_stopping_patience' must be >= 0, got -1"):
        EarlyStoppingCallback(-1)
    with pytest.raises((TypeError, ValueError), match="'early_stopping_threshold'"):
        EarlyStoppingCallback(1, None)


def _messages(callback: Any, hook: str, *args: Any, **kwargs: Any) -> tuple[list[str], str]:
    """The warnings the callback logs through Hugging Face's logger, and what it raises."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.trainer_callback")
    logger.addHandler(handler)
    transformers.utils.logging.set_verbosity_warning()
    raised = ""
    try:
        getattr(callback, hook)(*args, **kwargs)
    except AssertionError as exc:
        raised = str(exc)
    finally:
        transformers.utils.logging.set_verbosity_error()
        logger.removeHandler(handler)
    return records, raised


def test_early_stopping_messages_are_huggingface_s() -> None:
    control = transformers.TrainerControl()
    state = transformers.TrainerState()
    cases = [
        ("on_train_begin", SimpleNamespace(load_best_model_at_end=False,
                                           metric_for_best_model=None, eval_strategy="steps")),
        ("on_train_begin", SimpleNamespace(load_best_model_at_end=True,
                                           metric_for_best_model="loss", eval_strategy="no")),
    ]
    for hook, args in cases:
        got = _messages(EarlyStoppingCallback(), hook, args, state, control)
        want = _messages(HFEarlyStoppingCallback(), hook, args, state, control)
        assert got == want and got[1]
    args = SimpleNamespace(metric_for_best_model="accuracy", greater_is_better=True)
    got = _messages(EarlyStoppingCallback(), "on_evaluate", args, state, control,
                    metrics={"eval_loss": 1.0})
    want = _messages(HFEarlyStoppingCallback(), "on_evaluate", args, state, control,
                     metrics={"eval_loss": 1.0})
    assert got == want and "eval_accuracy" in got[0][0]


# -- ControllerCallback ---------------------------------------------------------------------------


def test_round_metrics_add_the_names_without_eval_prefix() -> None:
    assert round_metrics({"eval_loss": 0.5, "eval_acc": 0.9, "epoch": 2.0}) == {
        "eval_loss": 0.5, "eval_acc": 0.9, "epoch": 2.0, "loss": 0.5, "acc": 0.9,
    }
    # a real key is never shadowed by an alias
    assert round_metrics({"eval_loss": 0.5, "loss": 0.7})["loss"] == 0.7


def plateau_schedule_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau("eval_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping("loss", patience=4),  # "loss" is eval_loss, as in HF
        schedule=schedules.warmup(schedules.cosine(1e-2, total_steps=40), warmup_steps=5),
    )


def test_warmup_cosine_plateau_rates_equal_a_mirror_controller(tmp_path: Path) -> None:
    losses = [1.0, 0.8, 0.7, 0.7, 0.72, 0.6, 0.6, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67]
    value = by_step(losses, every=2)
    callback, recorder = ControllerCallback(plateau_schedule_controller()), Recorder()
    args = args_for(tmp_path, max_steps=28, eval_steps=2, logging_strategy="steps",
                    logging_steps=1)
    trainer = trainer_for(args, [Scripted(by_step=value), callback, recorder],
                          optimizers=adamw_pair(1e-2))
    trainer.train()

    mirror, expected, stops = plateau_schedule_controller(), [], []
    for step in range(1, 29):
        expected.append((step, (mirror.lr,)))
        mirror.optimizer_step()
        if step % 2 == 0:
            d = mirror.step({"eval_loss": value(step), "loss": value(step)}, lr=mirror.lr)
            stops.append(d.stop)
            if d.stop:
                break
    assert recorder.rates == expected
    assert trainer.state.global_step == expected[-1][0] < 28  # early stopping ended it
    assert [d.stop for d in callback.decisions] == stops
    events = {r.event for d in callback.decisions for r in d.reasons}
    assert {"reduced_lr", "patience_exhausted"} <= events  # the plateau acted on the schedule
    assert expected[0][1] < expected[4][1]  # warmup
    # ControlledLR.get_last_lr makes the Trainer log trainctl's rate for each step
    logged = {h["step"]: h["learning_rate"] for h in trainer.state.log_history
              if "learning_rate" in h}
    assert logged == {step: rates[0] for step, rates in expected}
    assert callback.last_decision is callback.decisions[-1]
    assert "patience" in callback.last_decision.explain()


class SkipSteps(TrainerCallback):
    """Marks chosen optimizer steps as skipped, as mixed precision does on an overflow."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                      **kwargs: Any) -> None:
        optimizer._is_overflow = False

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                          **kwargs: Any) -> None:
        optimizer._is_overflow = state.global_step + 1 in self.steps


def test_steps_skipped_by_mixed_precision_are_not_counted(tmp_path: Path) -> None:
    schedule = schedules.warmup(schedules.constant(1e-2), warmup_steps=6)
    callback, recorder = ControllerCallback(trainctl.Controller(schedule=schedule)), Recorder()
    trainer = trainer_for(args_for(tmp_path, max_steps=8, eval_strategy="no"),
                          [SkipSteps({3, 4}), callback, recorder], optimizers=adamw_pair(1e-2))
    trainer.train()
    assert callback.controller.optimizer_steps == 6 == trainer.state.global_step - 2
    ticks = [0, 1, 2, 2, 2, 3, 4, 5]  # the schedule's step before each optimizer step
    assert recorder.rates == [(i + 1, (schedule(t),)) for i, t in enumerate(ticks)]


def test_a_trainer_scheduler_that_changes_the_rate_is_refused(tmp_path: Path) -> None:
    for ctl in (
        plateau_schedule_controller(),
        trainctl.Controller(trainctl.ReduceLROnPlateau("eval_loss", patience=1)),
    ):
        trainer = trainer_for(args_for(tmp_path, max_steps=2), [ControllerCallback(ctl)])
        with pytest.raises(ValueError, match=r"LambdaLR \(lr_scheduler_type='linear'.*"
                                             r"ControllerCallback\.optimizers"):
            trainer.train()
    # a trainctl schedule as the Trainer's scheduler: fine while the controller owns no rate...
    schedule = schedules.warmup(schedules.cosine(1e-2, total_steps=6), warmup_steps=2)

    def schedule_lr(model: Any) -> Any:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return opt, ScheduleLR(opt, schedule)

    recorder = Recorder()
    only_stopping = ControllerCallback(trainctl.Controller(trainctl.EarlyStopping("eval_loss")))
    trainer = trainer_for(args_for(tmp_path, max_steps=6), [only_stopping, recorder],
                          optimizers=schedule_lr)
    trainer.train()
    assert recorder.rates == [(s, (schedule(s - 1),)) for s in range(1, 7)]
    # ... and refused when it does
    owning = ControllerCallback(trainctl.Controller(trainctl.ReduceLROnPlateau("eval_loss")))
    trainer = trainer_for(args_for(tmp_path, max_steps=2), [owning], optimizers=schedule_lr)
    with pytest.raises(ValueError, match="ScheduleLR"):
        trainer.train()
    assert isinstance(ControllerCallback.optimizers(torch.optim.SGD([torch.zeros(1)], lr=0.1))[1],
                      ControlledLR)


def test_trainer_saving_arguments_that_fight_a_checkpoint_policy_are_refused(
    tmp_path: Path,
) -> None:
    ctl = trainctl.Controller(trainctl.CheckpointPolicy("eval_loss", save_top_k=1))
    for overrides, message in (
        ({"save_strategy": "steps"}, "save_strategy must be 'no', got 'steps'"),
        ({"save_total_limit": 2}, "save_total_limit must be None, got 2"),
        ({"eval_on_start": True}, "eval_on_start must be False, got True"),
    ):
        trainer = trainer_for(args_for(tmp_path, max_steps=2, **overrides),
                              [ControllerCallback(ctl)])
        with pytest.raises(ValueError, match=message):
            trainer.train()


def retention_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.EarlyStopping("eval_loss", patience=100, restore_best_weights=True),
        trainctl.CheckpointPolicy("eval_loss", save_top_k=2, keep_last_n=1,
                                  filename="checkpoint-{step}"),
    )


def checkpoint_folders(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.startswith("checkpoint-")}


def test_best_k_and_latest_n_retention_and_the_restored_best(tmp_path: Path) -> None:
    losses = [0.9, 0.7, 0.8, 0.5, 0.6, 0.65, 0.55, 0.7, 0.75, 0.8]
    value = by_step(losses, every=2)
    callback = ControllerCallback(retention_controller())
    # the Trainer's default (linear) scheduler is fine: this controller owns no rate
    trainer = trainer_for(args_for(tmp_path, max_steps=20, eval_steps=2),
                          [Scripted(by_step=value), callback])
    trainer.train()

    steps = [2 * (i + 1) for i in range(len(losses))]
    best_two = sorted(steps, key=value)[:2]
    expected = {f"checkpoint-{s}" for s in [*best_two, steps[-1]]}
    assert checkpoint_folders(tmp_path) == expected == set(callback.folders.values())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".trainctl")]
    for folder in expected:  # every checkpoint carries the best weights and the state
        assert (tmp_path / folder / BEST_WEIGHTS_FILE).is_file()
    state = json.loads((tmp_path / f"checkpoint-{steps[-1]}" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"][callback.state_key]["folders"] == callback.folders
    # restore_best put back the weights of the best round: those the Trainer saved there
    best = tmp_path / f"checkpoint-{best_two[0]}" / "model.safetensors"
    saved = load_file(best)
    model = trainer.model.state_dict()
    assert saved.keys() == model.keys()
    assert all(torch.equal(saved[k], model[k]) for k in saved)

    # a fresh run into this directory is refused; overwrite=True writes beside the folders
    fresh = trainer_for(args_for(tmp_path, max_steps=2, eval_steps=2),
                        [ControllerCallback(retention_controller())])
    with pytest.raises(FreshRunError, match=r"checkpoint-\d+.*resume_from_checkpoint=True"):
        fresh.train()
    overwrite = ControllerCallback(retention_controller(), overwrite=True)
    trainer_for(args_for(tmp_path, max_steps=2, eval_steps=2), [overwrite]).train()
    assert checkpoint_folders(tmp_path) == expected | {"checkpoint-2"}
    assert overwrite.folders == {"checkpoint-2": "checkpoint-2"}


class SaveAt(TrainerCallback):
    """Placed after the ControllerCallback: asks the Trainer for a save at chosen steps."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step in self.steps:
            control.should_save = True


def test_the_trainer_s_own_saves_carry_the_controller_state(tmp_path: Path) -> None:
    # no CheckpointPolicy: the Trainer saves every 3 steps by itself, and a callback placed
    # after ours asks for one more at step 5 (no evaluation there: ours exported its state at
    # step 4, so it patches the trainer_state.json of checkpoint-5)
    ctl = trainctl.Controller(
        trainctl.EarlyStopping("eval_loss", patience=100, restore_best_weights=True),
        schedule=schedules.cosine(1e-2, total_steps=8),
    )
    callback = ControllerCallback(ctl)
    args = args_for(tmp_path, max_steps=6, eval_steps=2, save_strategy="steps", save_steps=3)
    trainer_for(args, [Scripted(by_step=lambda step: 1.0 / step), callback, SaveAt({5})],
                optimizers=adamw_pair(1e-2)).train()
    assert checkpoint_folders(tmp_path) == {"checkpoint-3", "checkpoint-5", "checkpoint-6"}
    for step in (3, 5, 6):
        folder = tmp_path / f"checkpoint-{step}"
        state = json.loads((folder / "trainer_state.json").read_text())
        saved = state["stateful_callbacks"][callback.state_key]["controller"]
        assert saved["optimizer_steps"] == step and saved["rounds"] == step // 2
        assert (folder / BEST_WEIGHTS_FILE).is_file()


def resume_controller() -> trainctl.Controller:
    return trainctl.Controller(
        trainctl.ReduceLROnPlateau("eval_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping("eval_loss", patience=4, restore_best_weights=True),
        trainctl.CheckpointPolicy("eval_loss", save_top_k=2, save_last=True,
                                  filename="checkpoint-{step}"),
        schedule=schedules.warmup(schedules.cosine(1e-2, total_steps=24), warmup_steps=4),
    )


def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    losses = [1.0, 0.8, 0.85, 0.7, 0.72, 0.74, 0.6, 0.65, 0.66, 0.67, 0.68, 0.69]
    value = by_step(losses, every=2)

    def run(directory: Path, crash_after: int | None = None, resume: bool = False,
            **overrides: Any) -> tuple[ControllerCallback, Recorder]:
        callback, recorder = ControllerCallback(resume_controller()), Recorder()
        callbacks: list[TrainerCallback] = [Scripted(by_step=value), callback, recorder]
        if crash_after is not None:
            callbacks.append(Crash(crash_after))
        args = args_for(directory, max_steps=24, eval_steps=2, **overrides)
        trainer = trainer_for(args, callbacks, optimizers=adamw_pair(1e-2))
        if crash_after is None:
            trainer.train(resume_from_checkpoint=True if resume else None)
        else:
            with pytest.raises(Boom):
                trainer.train()
        return callback, recorder

    whole, whole_rates = run(tmp_path / "whole")
    # dies after step 11: the last checkpoint is step 10's, step 11 is trained again
    _, first_rates = run(tmp_path / "split", crash_after=11)
    where = ControllerCallback(resume_controller()).resume(tmp_path / "split")
    assert where.checkpoint == "checkpoint-10" and where.optimizer_steps == 10
    assert not where.stopped
    # the flag only makes the Trainer log that it ignores trainctl's entry: state loads anyway
    resumed, second_rates = run(tmp_path / "split", resume=True,
                                restore_callback_states_from_checkpoint=True)

    rates = dict(first_rates.rates)
    rates.update(second_rates.rates)  # steps 11.. again
    assert sorted(rates.items()) == whole_rates.rates
    assert second_rates.rates[0][0] == 11
    assert resumed.controller.state_dict() == whole.controller.state_dict()
    assert resumed.controller.stopped  # early stopping ended both, at the same round
    assert resumed.folders == whole.folders
    assert checkpoint_folders(tmp_path / "split") == checkpoint_folders(tmp_path / "whole")
    explained = [d.explain() for d in whole.decisions]
    assert [d.explain() for d in resumed.decisions] == explained[5:]  # the rounds after step 10
    best, other = resumed.runner.best_weights, whole.runner.best_weights
    assert best is not None and best.keys() == other.keys()
    assert all(torch.equal(best[k], other[k]) for k in best)


def test_the_core_does_not_import_transformers() -> None:
    code = "import sys, trainctl, trainctl.adapters; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_the_example_trains_is_interrupted_and_resumes(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, 'examples'); import transformers_trainer as ex; "
        f"ex.main({str(tmp_path)!r}, interrupt_after=10); ex.main({str(tmp_path)!r})"
    )
    env = {**os.environ, "TRAINCTL_EXAMPLE_FAST": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "fresh start" in out and "interrupted after step 10" in out
    assert "resuming from checkpoint-8" in out  # evaluations every 4 steps: 4, 8
    assert "EarlyStopping(eval_loss)" in out and "CheckpointPolicy(eval_loss)" in out
    kept = [line for line in out.splitlines() if line.startswith("kept:")]
    assert len(kept) == 1
    folders = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert str(folders) in kept[0]
