"""Is a file what it claims to be: zip CRCs, our own content hash of the weights, finite values."""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deit.errors import DeitError, short_list

DIGEST_KEY = "model_sha256"  # where `deit train` checkpoints record `tensor_digest(checkpoint["model"])`


def verify_zip_crc(path: str | Path) -> None:
    """Refuse a torch zip checkpoint whose stored CRC32s do not match its bytes (torch's reader does not check)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format has no CRCs; torch.load judges it
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise DeitError(f"{path}: damaged zip container ({error})") from error
    if bad is not None:
        raise DeitError(
            f"{path}: damaged: the checksum of its entry '{bad}' does not match (corrupted bytes); use another copy"
        )


def source_sha256(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint file (what `sha256sum` prints); for a folder, of its files' names and digests."""
    path = Path(checkpoint)
    if path.is_file():
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}\0{source_sha256(file)}\n".encode())
    return digest.hexdigest()


def tensor_digest(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of `state_dict`'s tensors, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        # The array itself (buffer protocol), not `.tobytes()`: the same bytes without a second copy of the model.
        digest.update(value.reshape(-1).view(torch.uint8).numpy() if value.numel() else b"")
    return digest.hexdigest()


def verify_digest(state_dict: Mapping[str, Tensor], expected: Any, *, source: str) -> None:
    """Refuse weights whose digest differs from the one recorded when they were saved (absent: nothing to check)."""
    if expected is None:
        return
    if not isinstance(expected, str) or tensor_digest(state_dict) != expected:
        raise DeitError(f"{source}: damaged: its weights do not match the content hash recorded when it was saved")


def check_finite(state_dict: Mapping[str, Any], *, source: str) -> None:
    """Refuse weights holding NaN or infinity (they only ever produce NaN outputs)."""
    bad = [
        key
        for key, value in state_dict.items()
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise DeitError(
            f"{source}: non-finite weights (NaN or inf) in {short_list(bad)}; this model cannot "
            f"produce meaningful outputs (a diverged run? use an earlier checkpoint)"
        )


def looks_like_safetensors(path: str | Path) -> bool:
    """Whether `path` starts like a safetensors file (8-byte header length, then a JSON object), whatever its name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000


def check_finite_metrics(metrics: dict[str, Any], *, source: str) -> None:
    """Refuse an evaluation whose loss is NaN/inf: accuracies over NaN logits mean nothing."""
    loss = metrics.get("loss")
    if isinstance(loss, float) and not math.isfinite(loss):
        raise DeitError(
            f"{source}: the evaluation loss is {loss} (the model's outputs are not finite); the "
            f"accuracies are meaningless"
        )
