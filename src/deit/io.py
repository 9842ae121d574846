"""File primitives every part shares: safe reading of checkpoints and crash-proof writing."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from deit.errors import DeitError
from deit.integrity import verify_zip_crc


def load_torch_file(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load` with `weights_only=True`: tensors and plain data only, a pickle payload never runs."""
    path = Path(path)
    if not path.is_file():
        raise DeitError(f"{path}: no such file")
    verify_zip_crc(path)
    try:
        with torch.serialization.safe_globals(_PLAIN_ARGUMENT_CONTAINERS):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            reason = "it contains pickled Python objects, which are refused (only tensors and plain data load)"
        raise DeitError(f"{path}: cannot be read as a checkpoint: {reason}") from error
    return _namespaces_as_dicts(payload)


# The official main.py saves its `args` as an argparse.Namespace: a bag of attributes that runs no code when
# unpickled (its contents still pass the weights-only checks). Nothing else beyond tensors and plain data loads.
_PLAIN_ARGUMENT_CONTAINERS = [argparse.Namespace]


def _namespaces_as_dicts(payload: Any) -> Any:
    """Top-level `argparse.Namespace` values (official `args`) as plain dicts, so readers see one shape."""
    if not isinstance(payload, dict):
        return payload
    return {key: vars(value) if isinstance(value, argparse.Namespace) else value for key, value in payload.items()}


def atomic_write(path: str | Path, write: Any) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp_name)
        with open(tmp_name, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp_name, user_file_mode())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_name, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through `atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def user_file_mode(*, directory: bool = False) -> int:
    """The mode `open()` (or `mkdir`) would give a new file (folder) under the current umask."""
    return (0o777 if directory else 0o666) & ~_current_umask()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN/inf float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """Standard JSON (RFC 8259): NaN/inf become null instead of Python's invalid bare `NaN`/`Infinity`."""
    return json.dumps(finite_or_null(value), allow_nan=False, **kwargs)
