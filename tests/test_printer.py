"""trainctl.Printer: the demo's per-round table for any controller, and the sinks of ``log=``."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest

import trainctl
from trainctl import Controller, DecisionLog, Printer, read_log

VAL = [1.0, 0.9, 0.95, 0.97, 0.99, 0.98, 1.2]


def _controller(log: object = None, **kw: object) -> Controller:
    return Controller(
        trainctl.ReduceLROnPlateau("val_loss", patience=1, factor=0.5),
        trainctl.EarlyStopping("val_loss", patience=3, restore_best_weights=True),
        lr=0.1,
        log=log,
        **kw,  # type: ignore[arg-type]
    )


def _run(ctl: Controller, values: list[float] = VAL) -> None:
    for v in values:
        if ctl.step({"loss": v * 0.8, "val_loss": v}).stop:
            break
    ctl.finish()


def test_one_row_per_round_counted_from_one_with_the_rate_trained_at() -> None:
    lines: list[str] = []
    _run(_controller(Printer(lines.append, style="plain")))
    assert lines[0].split() == ["epoch", "loss", "val_loss", "lr", "decision"]
    rows = [line.split(None, 4) for line in lines[1:] if not line.lstrip().startswith("->")]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]  # stopped after the 5th epoch
    assert [float(r[2]) for r in rows] == VAL[:5]
    # the rate each epoch trained at: the cut decided at epoch 3 shows from epoch 4 on
    assert [float(r[3]) for r in rows] == [0.1, 0.1, 0.1, 0.05, 0.025]
    assert rows[2][4] == "no_improvement, reduced_lr"
    notes = [line.strip() for line in lines if line.lstrip().startswith("->")]
    assert notes[0] == (
        "-> ReduceLROnPlateau(val_loss): val_loss = 0.95: no improvement on 0.9 for 1 round "
        "(patience 1); lr 0.1 -> 0.05"
    )
    # the stop names the best epoch as the table does, and the end names the restored best
    assert "best 0.9 at epoch 2; stopping" in notes[-2]
    assert notes[-1].endswith("training ended; restore the weights of epoch 2 (val_loss = 0.9)")


def test_every_n_rounds_and_every_notable_one() -> None:
    lines: list[str] = []
    _run(_controller(Printer(lines.append, every=2, style="plain", reasons=False)))
    epochs = [int(line.split()[0]) for line in lines[1:]]
    assert epochs == [2, 3, 4, 5]  # 1 is skipped; 3 and 5 have a rate cut or the stop


def test_a_non_finite_step_prints_its_reason_and_quiet_steps_print_nothing() -> None:
    lines: list[str] = []
    ctl = Controller(trainctl.TerminateOnNaN(), lr=0.1, log=Printer(lines.append, style="plain"))
    for loss in (0.5, 0.4):
        assert not ctl.optimizer_step({"loss": loss}).stop
    assert lines == []
    assert ctl.optimizer_step({"loss": math.nan}).stop
    assert len(lines) == 1 and "TerminateOnNaN(loss)" in lines[0] and "nan" in lines[0]


def test_columns_stay_put_and_missing_values_are_blank() -> None:
    lines: list[str] = []
    ctl = Controller(trainctl.EarlyStopping("val_loss", patience=5), log=Printer(
        lines.append, style="plain"))
    ctl.step({"val_loss": 1.0, "acc": 0.5})
    ctl.step({"val_loss": 0.9, "extra": 3.0})  # acc missing, extra never a column
    ctl.step({"val_loss": math.inf, "acc": 0.7})
    assert lines[0].split() == ["epoch", "val_loss", "acc", "decision"]
    assert lines[2].split() == ["2", "0.9000", "improved"]
    assert lines[3].split()[:3] == ["3", "inf", "0.7000"]


def test_several_param_groups_get_a_column_each() -> None:
    lines: list[str] = []
    ctl = Controller(trainctl.ReduceLROnPlateau("val_loss", patience=0), lr=(0.1, 0.01),
                     log=Printer(lines.append, style="plain"))
    ctl.step({"val_loss": 1.0})
    ctl.step({"val_loss": 2.0})
    ctl.step({"val_loss": 3.0})
    assert lines[0].split() == ["epoch", "val_loss", "lr/pg0", "lr/pg1", "decision"]
    third = next(line for line in lines if line.split()[0] == "3").split()
    assert third[2:4] == ["1.00e-02", "1.00e-03"]


def test_log_takes_several_sinks_and_a_resume_rewinds_them(tmp_path: Path) -> None:
    lines: list[str] = []
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    ctl = _controller([log, Printer(lines.append, style="plain")])
    ctl.step({"val_loss": 1.0})
    saved = ctl.state_dict()
    ctl.step({"val_loss": 0.5})
    ctl.load_state_dict(saved)  # a resume: the file log drops the second round
    assert [r["round"] for r in read_log(path)] == [1]
    ctl.step({"val_loss": 0.7})
    log.close()
    assert [r["metrics"]["val_loss"] for r in read_log(path)] == [1.0, 0.7]
    assert [line.split()[0] for line in lines] == ["epoch", "1", "2", "2"]


def test_verbose_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    _run(_controller(verbose=True))
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["epoch", "loss", "val_loss", "lr", "decision"]
    assert "restore the weights of epoch 2" in out


def test_rich_styles_events_only_when_asked_for() -> None:
    pytest.importorskip("rich")
    printer = Printer(style="rich")
    import io

    from rich.console import Console

    printer._console = Console(file=io.StringIO(), force_terminal=True, highlight=False)
    _run(_controller(printer))
    text = printer._console.file.getvalue()
    assert "\x1b[" in text and "reduced_lr" in text  # coloured events


def test_a_controller_with_a_printer_pickles(tmp_path: Path) -> None:
    ctl = _controller([Printer(print, style="plain")])
    ctl.step({"val_loss": 1.0})
    copy = pickle.loads(pickle.dumps(ctl))
    assert copy.state_dict() == ctl.state_dict()


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Printer(every=0), ValueError, r"'every' must be >= 1, got 0"),
        (lambda: Printer(style="fancy"), ValueError, r"'style' must be one of .*'fancy'"),
        (lambda: Printer(out=3), TypeError, r"'out' must be callable .*int"),
        (lambda: Printer(print, style="rich"), ValueError, r"'out' must be None"),
        (lambda: Printer(reasons="no"), TypeError, r"'reasons' must be a bool"),
        (lambda: _controller([print, 3]), TypeError, r"'log'\[1\] must be .*got int"),
        (lambda: _controller(3), TypeError, r"'log' must be .*got int"),
        (lambda: _controller(verbose="yes"), TypeError, r"'verbose' must be a bool"),
    ],
)
def test_bad_input(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
