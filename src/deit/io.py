"""File primitives every part shares: safe reading of checkpoints and crash-proof writing."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch

from deit.errors import DeitError
from deit.integrity import verify_zip_crc


def require_regular_file(path: str | Path, *, flag: str | None = None, allow_directory: bool = False) -> Path:
    """`path` when it is a regular file (or, with `allow_directory`, a folder); else a one-line `DeitError`.

    Checked with `stat` before anything opens it: opening a FIFO with no writer blocks forever, and a device
    reads without end, so a path that is neither must be refused, not read.
    """
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise DeitError(f"{where}: no such file") from error
    except OSError as error:  # a symlink loop, a permission problem, a name too long ...
        raise DeitError(f"{where}: cannot be read ({error.strerror or error})") from error
    if stat.S_ISREG(mode) or (allow_directory and stat.S_ISDIR(mode)):
        return path
    kind = (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a plain file"
    )
    raise DeitError(f"{where}: is {kind}, not a regular file{' or folder' if allow_directory else ''}")


#: The largest text file read whole (a `--config`, a class list): far above any real one.
MAX_TEXT_BYTES = 10_000_000


def read_text_file(path: str | Path, *, flag: str | None = None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file we did not write, whole; a non-file, an oversize or bytes that are not UTF-8 are one line
    naming it (and `flag`), never a `UnicodeDecodeError` without the file's name."""
    path = require_regular_file(path, flag=flag)
    where = f"{flag} {path}" if flag else str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DeitError(f"{where}: {size:,} bytes, over the {max_bytes:,} accepted for this text file")
        data = path.read_bytes()
    except OSError as error:
        raise DeitError(f"{where}: cannot be read ({error.strerror or error})") from error
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DeitError(
            f"{where}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); save it as UTF-8"
        ) from error


#: The largest JSON file read from a data set (`index.json` ...): the safetensors bound on checkpoint meta.
MAX_JSON_BYTES = 100_000_000
#: The deepest nesting accepted in such a file (ours are 4 deep; Python's parser gives up near 1,000).
MAX_JSON_DEPTH = 32


def read_json_bounded(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON file we did not write, refusing (one line naming it) a non-file, an oversize or a deep one."""
    path = require_regular_file(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise DeitError(f"{path}: {size:,} bytes, over the {max_bytes:,} accepted for this JSON file")
    try:
        value = json.loads(path.read_bytes())
    except RecursionError as error:
        raise DeitError(f"{path}: JSON nested deeper than {max_depth} levels") from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DeitError(f"{path}: not valid JSON ({str(error).splitlines()[0]})") from error
    if _json_depth(value) > max_depth:
        raise DeitError(f"{path}: JSON nested deeper than {max_depth} levels")
    return value


def _json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (a deep value must not overflow the stack here either)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_torch_file(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load` with `weights_only=True`: tensors and plain data only, a pickle payload never runs."""
    path = require_regular_file(path)
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
    return (0o777 if directory else 0o666) & ~current_umask()


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then put back)."""
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
