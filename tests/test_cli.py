"""The ``trainctl`` command line: help texts, ``inspect``, ``plot``, errors, and the acceptance
test of issue 14: ``examples/torch_loop.py`` killed mid-run and resumed, then ``trainctl inspect
DIR`` names the stop and the best epoch as the file names number them, and the resumed run's
decision log equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_inspect import BEST_EPOCH, STOP_EPOCH, plain_run

from trainctl import read_log
from trainctl.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_torch_loop_worker.py"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_help_is_plain_text() -> None:
    for args in ([], ["inspect"], ["plot"], ["demo"]):
        proc = cli(*args, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "``" not in proc.stdout and ":class:" not in proc.stdout, args
        assert proc.stdout.startswith("usage: trainctl"), args
    top = cli("--help").stdout
    assert all(name in top for name in ("demo", "inspect", "plot"))
    assert "trainctl-manifest.json" in cli("inspect", "--help").stdout
    assert "trainctl[plot]" in cli("plot", "--help").stdout


def test_the_installed_script_runs() -> None:
    script = Path(sys.executable).parent / "trainctl"
    if not script.exists():
        pytest.skip("trainctl is not installed as a script in this environment")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "inspect" in proc.stdout


def test_inspect_prints_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain_run(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"stopped at epoch {STOP_EPOCH}: EarlyStopping(val_loss): " in text
    assert f"at epoch {BEST_EPOCH} (EarlyStopping(val_loss)); checkpoint epoch007-0.69.bin" in text
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stop"]["epoch"] == STOP_EPOCH and data["best"]["epoch"] == BEST_EPOCH
    assert data["kept"][0]["name"] == "epoch004-0.70.bin"
    assert data["resume"]["checkpoint"] == "last.bin"


def test_bad_paths_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path / "missing", tmp_path / "notes.txt", tmp_path):
        proc = cli("inspect", str(path))
        assert proc.returncode == 2, path
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("trainctl inspect: error: ") and str(path) in lines[0]
        assert "expected a checkpoint store directory" in lines[0]
    proc = cli("plot", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out.png"))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("trainctl plot: error: ")
    assert not (tmp_path / "out.png").exists()


def test_plot_writes_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    plain_run(tmp_path)
    out = tmp_path / "run.png"
    assert main(["plot", str(tmp_path / "decisions.jsonl"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_run(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(tmp_path / "decisions.jsonl"), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pip install trainctl[plot]" in err


# -- issue 14's acceptance test: the example, killed and resumed ---------------------------------


def _drop_wall_clock(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without fields that depend on when they were written (the decision log has
    none today: this keeps the comparison honest if one is added)."""
    return [{k: v for k, v in r.items() if k not in ("time", "wall_time")} for r in records]


def test_the_example_killed_and_resumed_is_inspected_with_file_numbering(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    whole, split = tmp_path / "whole", tmp_path / "split"
    run = [sys.executable, str(WORKER)]
    # the uninterrupted run and the run killed mid-epoch (during the plateau phase), side by side
    uninterrupted = subprocess.Popen([*run, str(whole), str(tmp_path / "whole.json"), "--log"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    killed = subprocess.run([*run, str(split), str(tmp_path / "unused.json"), "--log",
                             "--kill-step", "305"], capture_output=True, text=True, timeout=240,
                            cwd=ROOT)
    assert uninterrupted.wait(timeout=240) == 0, uninterrupted.stderr
    assert killed.returncode == -9, killed.stderr
    cut = read_log(split / "decisions.jsonl")
    assert cut and cut[-1]["clock"] == "round" and not any(r["stop"] for r in cut)
    resumed = subprocess.run([*run, str(split), str(tmp_path / "split.json"), "--log"],
                             capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr

    # the resumed run's log is the uninterrupted run's, record for record
    full = read_log(whole / "decisions.jsonl", include_header=True)
    again = read_log(split / "decisions.jsonl", include_header=True)
    assert _drop_wall_clock(again) == _drop_wall_clock(full)
    assert full[-1]["clock"] == "end"

    proc = cli("inspect", str(split))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    stop = next(r for r in full if r.get("stop"))
    stop_epoch = stop["epoch"] + 1  # the log's data fields are 0-based, like Keras'
    reason = next(r for r in stop["reasons"] if r["event"] == "patience_exhausted")
    assert f"stopped at epoch {stop_epoch}: EarlyStopping(val_loss): {reason['message']}" in text
    data = json.loads(cli("inspect", str(split), "--json").stdout)
    best = data["best"]
    # the best epoch is numbered as the best file's name numbers it, and as the message does
    assert best["checkpoint"] == f"epoch{best['epoch']:03d}-{best['value']:.4f}.pt"
    assert (split / best["checkpoint"]).is_file()
    assert f"best {best['value']:.6g} at epoch {best['epoch']}" in reason["message"]
    assert f"best: val_loss {best['value']:.6g} at epoch {best['epoch']}" in text
    kept = [k["name"] for k in data["kept"]]
    assert kept == json.loads((tmp_path / "whole.json").read_text())["kept"]
    assert data["resume"]["checkpoint"] == "last.pt" and data["resume"]["stopped"] is True
    assert data["log"] == str(split / "decisions.jsonl")
    rounds = [r for r in full if r["clock"] == "round"]
    changed = [r for i, r in enumerate(rounds) if i == 0 or r["lr"] != rounds[i - 1]["lr"]]
    assert [(r["epoch"], r["lr"]) for r in data["rates"]] == [
        (r["epoch"] + 1, r["lr"]) for r in changed
    ]
    assert data["stop"]["epoch"] == stop_epoch and data["notes"] == []
