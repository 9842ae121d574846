"""Teacher weights: fetch (file or URL, cached), read safely, load with a clear class-count check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.io import load_torch_file

# torch.hub's convention: `name-<sha256 prefix>.ext` (the official teacher is regnety_160-a5fe3cd6.pth).
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def read_teacher_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """`(state_dict, meta)` from a local file or an http(s) URL; meta is `{}` unless a `deit` file has one."""
    path = fetch(checkpoint) if is_url(str(checkpoint)) else Path(checkpoint)
    if path.is_dir() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"
    if not path.is_file():
        raise DeitError(f"{path}: no such teacher checkpoint file")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    else:
        state, meta = _read_torch(path)
    return {_strip_wrapper_prefix(key): value for key, value in state.items()}, meta


def is_url(text: str) -> bool:
    """Whether `text` names an http(s) resource rather than a local path."""
    return urlparse(text).scheme in ("http", "https")


def fetch(url: str) -> Path:
    """The local copy of `url` in the torch hub cache, downloaded on first use (hash-checked when named so)."""
    filename = Path(urlparse(url).path).name
    if not filename:
        raise DeitError(f"{url}: the URL names no file")
    destination = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_IN_NAME.search(filename)
    try:  # torch writes to a temporary file and renames, so an interrupted download leaves no half file
        torch.hub.download_url_to_file(url, str(destination), hash_prefix=match.group(1) if match else None,
                                       progress=False)
    except Exception as error:  # URLError, HTTPError, hash mismatch (RuntimeError), OSError
        raise DeitError(f"{url}: download failed: {str(error).strip().splitlines()[0]}") from error
    return destination


def load_teacher_weights(model: nn.Module, state: dict[str, Tensor], *, label: str, num_classes: int) -> None:
    """Load `state` strictly; a classifier of another size becomes a one-line class-count error."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and value.shape != own[key].shape and _is_classifier(own[key], num_classes, value):
            raise DeitError(f"{label} predicts {value.shape[0]} classes but the data has {num_classes}; "
                            f"give a teacher trained on the same classes")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        parts = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
                 if keys]
        raise DeitError(f"{label}: the weights do not fit the model ({'; '.join(parts) or error})") from error


def class_count_of(model: nn.Module) -> int | None:
    """How many classes `model` predicts: its `num_classes`, else its last Linear layer's width."""
    count = getattr(model, "num_classes", None)
    if isinstance(count, int):
        return count
    last_linear = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
    return last_linear.out_features if last_linear is not None else None


def _is_classifier(own: Tensor, num_classes: int, theirs: Tensor) -> bool:
    # A head weight (C, D) or bias (C,) that differs only in C, the number of classes.
    return (own.dim() in (1, 2) and own.shape[0] == num_classes and theirs.dim() == own.dim()
            and theirs.shape[1:] == own.shape[1:])


def _read_torch(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    payload = load_torch_file(path)
    if not isinstance(payload, dict):
        raise DeitError(f"{path}: not a checkpoint (a {type(payload).__name__}, expected a dict of weights)")
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    for key in ("model", "state_dict"):  # `deit train` and official DeiT: 'model'; some others: 'state_dict'
        if isinstance(payload.get(key), dict):
            return payload[key], meta
    if payload and all(isinstance(value, Tensor) for value in payload.values()):
        return payload, meta
    raise DeitError(f"{path}: no weights found (expected a 'model' or 'state_dict' entry, or a plain state dict)")


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:
        raise DeitError(f"{path}: cannot be read as safetensors: {str(error).strip().splitlines()[0]}") from error
    try:
        meta = json.loads(header["deit"]) if "deit" in header else {}
    except json.JSONDecodeError as error:
        raise DeitError(f"{path}: the 'deit' metadata is not valid JSON") from error
    return state, meta if isinstance(meta, dict) else {}


def _strip_wrapper_prefix(key: str) -> str:
    # DistributedDataParallel and torch.compile save keys as module.x / _orig_mod.x.
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key
