"""Teacher weights: fetch (file or URL, cached), read safely with their meta, load with a class-count check.

Reading, unwrapping and downloading are the checkpoint module's (`deit.models.checkpoint`, `.download`); what
is added here is the meta a teacher needs (its normalisation, input size, class count) from the same single read,
and a class-count mismatch reported as such rather than as a mis-shaped head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import Tensor, nn

from deit.errors import DeitError
from deit.io import load_torch_file
from deit.models.checkpoint import extract_state_dict, load_state_dict_strict, read_state_dict
from deit.models.download import fetch_checkpoint


def read_teacher_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """`(state_dict, meta)` from a local file, directory or http(s) URL; meta is `{}` unless the file has one."""
    path = fetch_checkpoint(str(checkpoint)) if is_url(str(checkpoint)) else Path(checkpoint)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():  # a Hugging Face directory: weights, no deit meta
            return read_state_dict(path), {}
        path = path / "model.safetensors"
    if not path.is_file():
        raise DeitError(f"{path}: no such teacher checkpoint file")
    payload, meta = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    return extract_state_dict(payload, source=str(path)), meta


def is_url(text: str) -> bool:
    """Whether `text` names an http(s) resource rather than a local path."""
    return urlparse(text).scheme in ("http", "https")


def load_teacher_weights(model: nn.Module, state: dict[str, Tensor], *, label: str, num_classes: int) -> None:
    """Load `state` strictly; a classifier of another size becomes a one-line class-count error."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and value.shape != own[key].shape and _is_classifier(own[key], num_classes, value):
            raise DeitError(f"{label} predicts {value.shape[0]} classes but the data has {num_classes}; "
                            f"give a teacher trained on the same classes")
    load_state_dict_strict(model, state, source=label)


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


def _read_torch(path: Path) -> tuple[Any, dict[str, Any]]:
    payload = load_torch_file(path)
    meta = payload.get("meta") if isinstance(payload, dict) else None
    return payload, meta if isinstance(meta, dict) else {}


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path), device="cpu")
    except Exception as error:  # SafetensorError, OSError, ValueError ...
        raise DeitError(f"{path}: cannot be read as safetensors: {str(error).strip().splitlines()[0]}") from error
    try:
        meta = json.loads(header["deit"]) if "deit" in header else {}
    except json.JSONDecodeError as error:
        raise DeitError(f"{path}: its 'deit' metadata is not valid JSON") from error
    return state, meta if isinstance(meta, dict) else {}
