"""``import trainctl`` and every core module import no ML framework (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
import trainctl
mods = [m.name for m in pkgutil.walk_packages(trainctl.__path__, "trainctl.")
        if ".adapters" not in m.name]
for m in mods:
    importlib.import_module(m)
heavy = ("torch", "keras", "lightning", "pytorch_lightning", "tensorflow", "jax", "matplotlib",
         "transformers", "accelerate", "tensorboard", "sklearn")
bad = sorted(k for k in sys.modules if k.split(".")[0] in heavy)
print(len(mods), ",".join(bad))
"""


def test_core_imports_no_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) >= 8, "the walk found too few modules to mean anything"
    assert out[1:] == [], f"the core imported {out[1:]}"


def test_public_api_is_flat_and_complete() -> None:
    import trainctl

    for name in trainctl.__all__:
        assert hasattr(trainctl, name), name
    assert {
        "Controller",
        "EarlyStopping",
        "ReduceLROnPlateau",
        "TerminateOnNaN",
        "simulate",
        "Decision",
        "Reason",
    } <= set(trainctl.__all__)
