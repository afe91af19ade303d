"""Checkpoint file names: the one rule that the retention policy and the store both apply.

A checkpoint lives as one file directly inside its directory. The policy checks the fixed parts of
its name template when it is built and every formatted name before it records anything; the store
checks every name it is asked to write or delete. Both call :func:`name_problem`, so a name the
policy accepts is a name the store accepts (except for a store whose manifest has a custom name,
which the store adds to the reserved names). Standard library only.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "DEFAULT_MANIFEST_NAME",
    "LOCK_NAME",
    "MAX_NAME_BYTES",
    "TEMP_PREFIX",
    "check_checkpoint_name",
    "name_problem",
]

DEFAULT_MANIFEST_NAME: Final = "trainctl-manifest.json"
#: Every temporary file the store creates starts with this prefix; checkpoint names may not.
TEMP_PREFIX: Final = ".trainctl-tmp-"
#: The writer's lock file inside every checkpoint directory (see ``trainctl.storage``); it is
#: never a checkpoint, whatever the manifest's name.
LOCK_NAME: Final = ".trainctl-lock"
#: Characters of random hex in a temporary name (``.trainctl-tmp-<hex>-<name>``).
TEMP_TOKEN_HEX: Final = 12
_NAME_MAX: Final = 255  # bytes in one file name on common file systems
#: The longest checkpoint name in bytes: its temporary name must still fit in 255 bytes.
MAX_NAME_BYTES: Final = _NAME_MAX - len(TEMP_PREFIX) - TEMP_TOKEN_HEX - 1


def name_problem(name: str, *, manifest_name: str | None = DEFAULT_MANIFEST_NAME) -> str | None:
    """Why ``name`` cannot be a checkpoint file name, or ``None`` if it can.

    Refused: empty names, NUL, ``/`` or ``\\`` (no paths), ``.`` and ``..``, names starting with
    the store's temporary prefix, the store's lock file :data:`LOCK_NAME` (compared without case,
    as a case-insensitive file system would), names longer than :data:`MAX_NAME_BYTES` bytes, the
    manifest's own name (and the names corrupt manifests are moved to), and on Windows ``:`` or a
    trailing space or dot. ``manifest_name=None`` checks the manifest's own name.
    """
    if not name:
        return "must not be empty"
    if "\x00" in name:
        return "must not contain NUL"
    if "/" in name or "\\" in name:
        return "must not contain '/' or '\\' (checkpoints live in one directory)"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if os.name == "nt" and (":" in name or name.endswith((" ", "."))):
        return "must not contain ':' or end with a space or a dot on Windows"
    if name.startswith(TEMP_PREFIX):
        return f"must not start with {TEMP_PREFIX!r} (reserved for temporary files)"
    if name.casefold() == LOCK_NAME.casefold():
        return f"is reserved for the store's lock file {LOCK_NAME!r}"
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_BYTES} bytes long"
    if manifest_name is not None:
        folded, manifest = name.casefold(), manifest_name.casefold()
        if folded == manifest or folded.startswith(manifest + ".corrupt-"):
            return f"is reserved for the manifest {manifest_name!r}"
    return None


def check_checkpoint_name(
    what: str, name: object, *, manifest_name: str | None = DEFAULT_MANIFEST_NAME
) -> str:
    """Return ``name`` if it is a valid checkpoint name; else raise naming ``what`` and the name.

    ``TypeError`` for a non-string, ``ValueError`` (``"<what> must not ..., got '<name>'"``)
    otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__} {name!r}")
    problem = name_problem(name, manifest_name=manifest_name)
    if problem is not None:
        raise ValueError(f"{what} {problem}, got {name!r}")
    return name
