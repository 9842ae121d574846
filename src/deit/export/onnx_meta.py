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
    """Our meta from an ONNX Runtime session's custom metadata, checked against the session's graph; a file without
    it, or whose graph disagrees with it, is refused in one line."""
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
    meta = CheckpointMeta.from_dict(data, source=str(path))
    check_graph_matches_meta(path, session, meta)  # before any image runs: the metadata is untrusted
    return meta


def check_graph_matches_meta(path: Path, session: Any, meta: CheckpointMeta) -> None:
    """Refuse, before any image is run, a graph whose input shape, output rank or class count is not what the
    metadata says (a symbolic dimension agrees with anything); one line lists every disagreement."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    problems = []
    if len(inputs) != 1 or not outputs:
        problems.append(f"{len(inputs)} inputs and {len(outputs)} outputs (an image classifier has 1 and 1)")
    else:
        image, logits = list(inputs[0].shape or []), list(outputs[0].shape or [])
        size = meta.input_size
        channels = meta.model_kwargs.get("in_chans", len(meta.mean) if len(meta.mean) > 1 else 3)
        if len(image) != 4:
            problems.append(f"input of rank {len(image)} {_shape(image)} (images are (batch, channels, size, size))")
        elif not _agrees(image[1], channels) or not (
            size is None or _agrees(image[2], size) and _agrees(image[3], size)
        ):
            problems.append(f"input {_shape(image)}, its metadata (batch, {channels}, {size}, {size})")
        if len(logits) != 2:
            problems.append(f"output of rank {len(logits)} {_shape(logits)} (class scores are (batch, classes))")
        elif not _agrees(logits[1], meta.num_classes):
            problems.append(f"output {_shape(logits)}, its metadata {meta.num_classes} classes")
    if problems:
        raise DeitError(f"{path}: its graph and its deit metadata disagree: graph {'; graph '.join(problems)}")


def _agrees(dimension: Any, expected: int) -> bool:
    return not isinstance(dimension, int) or dimension == expected  # a named (symbolic) dimension takes any size


def _shape(dimensions: list[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "?" for d in dimensions) + ")"


__all__ = ["check_graph_matches_meta", "onnx_properties", "read_onnx_meta", "write_onnx_properties"]
