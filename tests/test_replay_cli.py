"""``trainctl replay``: the subcommand's parser and handler, called as functions and through a
real argparse parser built in a fresh ``python -c`` process."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import pytest

import trainctl
from trainctl.replay import read_run, sweep
from trainctl.replay._cli import add_parser, parse_grid, run

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainctl")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _keras_log(path: Path, values: list[float]) -> Path:
    lines = ["epoch,loss,val_loss"] + [f"{i},{1.0 / (i + 1)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_grid() -> None:
    assert parse_grid(["patience=2,5,10", "min_delta=0,1e-3", "mode=min,max",
                       "baseline=None,0.5", "restore_best_weights=True,False"]) == {
        "patience": [2, 5, 10], "min_delta": [0, 0.001], "mode": ["min", "max"],
        "baseline": [None, 0.5], "restore_best_weights": [True, False]}
    with pytest.raises(ValueError, match="expected NAME=V1,V2"):
        parse_grid(["patience"])
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["patience=1", "patience=2"])
    with pytest.raises(ValueError, match="a grid value must be"):
        parse_grid(["patience={1}"])


def test_replay_prints_the_table_and_writes_csv_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    logs = [_keras_log(tmp_path / f"run{i}.csv", [1.0, 0.8, 0.85, 0.7 + i / 10, 0.9, 0.95, 1.0])
            for i in range(3)]
    args = _parser().parse_args([
        "replay", *map(str, logs), "--policy", "EarlyStopping(monitor='val_loss')",
        "--grid", "patience=1,2,10", "--grid", "min_delta=0,1e-3",
        "--csv", str(tmp_path / "runs.csv"), "--plot", str(tmp_path / "p.png"),
        "--summary-csv", str(tmp_path / "summary.csv"),
    ])
    assert args.handler is run
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "EarlyStopping() on 3 runs, 6 configurations" in out
    assert "patience=10, min_delta=0.001" in out and "rel.regret" in out
    expected = sweep(trainctl.EarlyStopping(), {"patience": [1, 2, 10], "min_delta": [0, 1e-3]},
                     [read_run(p) for p in logs])
    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["stop_round"]) for r in rows] == expected.stop_round.ravel().tolist()
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "summary.csv").read_text().startswith("patience,min_delta,runs")


def test_replay_errors_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _keras_log(tmp_path / "run.csv", [1.0, 0.9])
    parser = _parser()
    for argv, message in [
        (["--policy", "__import__('os')"], "is not a factory"),
        (["--policy", "EarlyStopping(patience=-1)"], "'patience' must be >= 0, got -1"),
        (["--policy", "EarlyStopping()", "--grid", "patiense=1"], "'patiense' is not an argument"),
        (["--policy", "ReduceLROnPlateau()"], "needs the starting learning rate"),
        (["--policy", "EarlyStopping()", str(tmp_path / "nope.csv")], "no such file"),
    ]:
        logs = [] if any(a.endswith(".csv") for a in argv) else [str(log)]
        assert run(parser.parse_args(["replay", *logs, *argv])) == 2
        assert message in capsys.readouterr().err


def test_replay_the_corpus_with_prechelt_criteria(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["replay", "--corpus", "--policy", "GL(restore_best_weights=True)",
                                 "--grid", "alpha=1,5"])
    assert run(args) == 0
    assert "GL(restore_best_weights=True) on 192 runs, 2 configurations" in (
        capsys.readouterr().out)


def test_argparse_parser_in_a_fresh_process(tmp_path: Path) -> None:
    log = _keras_log(tmp_path / "run.csv", [1.0, 0.8, 0.9, 0.95, 0.97])
    script = (
        "import argparse, sys\n"
        "from trainctl.replay._cli import add_parser\n"
        "p = argparse.ArgumentParser(prog='trainctl')\n"
        "add_parser(p.add_subparsers(dest='command', required=True))\n"
        "args = p.parse_args(sys.argv[1:])\n"
        "sys.exit(args.handler(args))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "replay", str(log), "--policy",
         "EarlyStopping(monitor='val_loss')", "--grid", "patience=1,3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "patience=1" in done.stdout and "patience=3" in done.stdout
    helped = subprocess.run([sys.executable, "-c", script, "replay", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--grid NAME=V1,V2,..." in helped.stdout
