"""A probe of the checkpoint directory's writer lock, for the adapters' tests."""

from __future__ import annotations

import fcntl
from pathlib import Path

from trainctl.storage import LOCK_NAME


def lock_is_free(directory: Path) -> bool:
    """Whether another process could take the directory's writer lock now (a new open file
    description conflicts with a held ``flock`` even within this process)."""
    with open(directory / LOCK_NAME, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return True
