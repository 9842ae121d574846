"""What an exported ONNX file needs to be used alone, in its `metadata_props`: class names, input size,
normalisation, the architecture and the sha256 of the checkpoint it came from. `deit predict` reads them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deit.errors import DeitError
from deit.integrity import source_sha256
from deit.models.meta import CheckpointMeta

_KEY = "deit"  # the whole meta as JSON: the one key our reader needs
_MAX_META_CHARS = 10_000_000  # an untrusted file's meta is bounded before it is parsed


def onnx_properties(meta: CheckpointMeta, checkpoint: str | Path) -> dict[str, str]:
    """The metadata properties of an export: readable keys for other tools, and our meta as one JSON value."""
    size = meta.input_size or 224
    return {
        _KEY: json.dumps(meta.to_dict()),
        "class_names": json.dumps(list(meta.labels())),
        "input_size": json.dumps([3, size, size]),
        "mean": json.dumps(list(meta.mean)),
        "std": json.dumps(list(meta.std)),
        "crop_pct": str(meta.crop_pct),
        "interpolation": meta.interpolation,
        "architecture": meta.model,
        "source_checkpoint": Path(checkpoint).name,
        "source_sha256": source_sha256(checkpoint),
        "output": "fused logits (softmax for probabilities)",
    }


def write_onnx_properties(path: Path, properties: dict[str, str]) -> None:
    """Set `properties` on the ONNX file at `path` (rewritten in place; it is still the unpublished export)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # weights over 2 GB stay in their side file
    del model.metadata_props[:]
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def read_onnx_meta(path: Path, session: Any) -> CheckpointMeta:
    """Our meta from an ONNX Runtime session's custom metadata; a file without it is refused in one line."""
    properties = session.get_modelmeta().custom_metadata_map
    raw = properties.get(_KEY)
    if raw is None:
        raise DeitError(
            f"{path}: carries no deit metadata (class names, input size, normalisation); export it "
            f"with `deit export --format onnx`"
        )
    if len(raw) > _MAX_META_CHARS:
        raise DeitError(f"{path}: its deit metadata is larger than {_MAX_META_CHARS} characters")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as error:
        raise DeitError(f"{path}: its deit metadata is not valid JSON") from error
    return CheckpointMeta.from_dict(data, source=str(path))


__all__ = ["onnx_properties", "read_onnx_meta", "write_onnx_properties"]
