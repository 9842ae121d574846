"""Hugging Face `save_pretrained` directories (DeiT with teacher, DeiT hosted as ViT) to our key names.

Only `config.json` and the weight files are read: no Python file in the directory is ever imported, and
pickled `pytorch_model.bin` payloads are refused (tensors only). `transformers` is not needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deit.errors import DeitError, short_list

# Architectures whose forward pass our VisionTransformer reproduces exactly.
SUPPORTED_ARCHITECTURES = {
    "DeiTForImageClassificationWithTeacher": True,  # distilled: (cls_head + dist_head) / 2
    "ViTForImageClassification": False,  # plain DeiT as hosted on the hub: one head on the class token
}

# Per-layer keys, in both the classic layout (`encoder.layer.N.attention.attention.query`) and the one some
# transformers 5.x modules use in memory (`layers.N.attention.q_proj`); `{q,k,v}` parts are fused into `qkv`.
_LAYER_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$"), "qkv:{1}"),
    (re.compile(r"layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$"), "qkv:{1}"),
    (re.compile(r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$"), "blocks.{0}.attn.proj.{1}"),
    (re.compile(r"layers\.(\d+)\.attention\.o_proj\.(weight|bias)$"), "blocks.{0}.attn.proj.{1}"),
    (re.compile(r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$"), "blocks.{0}.mlp.fc1.{1}"),
    (re.compile(r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$"), "blocks.{0}.mlp.fc2.{1}"),
    (re.compile(r"layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$"), "blocks.{0}.mlp.{1}.{2}"),
    (re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.(weight|bias)$"), "blocks.{0}.norm1.{1}"),
    (re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.(weight|bias)$"), "blocks.{0}.norm2.{1}"),
]
_FIXED_RULES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HEAD_RULES = {
    "classifier": "head",
    "cls_classifier": "head",
    "distillation_classifier": "head_dist",
}
_IGNORED = re.compile(r"^(?:deit\.|vit\.)?(?:pooler\.|embeddings\.mask_token$)")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def looks_like_hf_state_dict(state_dict: dict[str, Any]) -> bool:
    """Whether the keys follow the Hugging Face ViT/DeiT layout (`deit.embeddings.cls_token`, ...)."""
    return any(key.endswith("embeddings.cls_token") for key in state_dict)


def convert_hf_state_dict(state_dict: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
    """Rename Hugging Face ViT/DeiT keys to ours, fusing query/key/value into `qkv`; unknown keys are an error."""
    converted: dict[str, Tensor] = {}
    qkv_parts: dict[tuple[int, str], dict[int, Tensor]] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        if _IGNORED.match(key):
            continue
        if not _convert_layer_key(key, tensor, converted, qkv_parts):
            unknown.append(key)
    if unknown:
        raise DeitError(f"{source}: unrecognised Hugging Face key(s) {short_list(unknown)}")
    for (layer, kind), parts in sorted(qkv_parts.items()):
        if sorted(parts) != [0, 1, 2]:
            raise DeitError(f"{source}: layer {layer} lacks one of the query/key/value {kind}s")
        converted[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return converted


def _convert_layer_key(
    body: str, tensor: Tensor, converted: dict[str, Tensor], qkv_parts: dict[tuple[int, str], dict[int, Tensor]]
) -> bool:
    target = our_key_for(body)
    if target is None:
        return False
    key, part = target
    if part is None:
        converted[key] = tensor
    else:
        layer, kind = int(key.split(".")[1]), key.rpartition(".")[2]
        qkv_parts.setdefault((layer, kind), {})[part] = tensor
    return True


def our_key_for(hf_key: str) -> tuple[str, int | None] | None:
    """Our key for one Hugging Face key, and which third of `qkv` it is (query 0, key 1, value 2), or None."""
    head, _, suffix = hf_key.rpartition(".")
    if head in _HEAD_RULES:
        return f"{_HEAD_RULES[head]}.{suffix}", None
    body = re.sub(r"^(?:deit|vit)\.", "", hf_key)
    if body in _FIXED_RULES:
        return _FIXED_RULES[body], None
    for pattern, target in _LAYER_RULES:
        match = pattern.match(body)
        if match is None:
            continue
        groups = match.groups()
        if target.startswith("qkv:"):
            return f"blocks.{groups[0]}.attn.qkv.{groups[2]}", _QKV_ORDER[groups[1]]
        return target.format(*groups), None
    return None


def to_hf_state_dict(state_dict: dict[str, Tensor], hf_keys: list[str], *, source: str) -> dict[str, Tensor]:
    """Our weights under the Hugging Face names `hf_keys` (the same rules read backwards; `qkv` split in three)."""
    converted: dict[str, Tensor] = {}
    missing: list[str] = []
    for hf_key in hf_keys:
        target = our_key_for(hf_key)
        if target is None or target[0] not in state_dict:
            missing.append(hf_key)
            continue
        key, part = target
        tensor = state_dict[key]
        converted[hf_key] = tensor if part is None else tensor.chunk(3, dim=0)[part]
    if missing:
        raise DeitError(f"{source}: no weights for Hugging Face key(s) {short_list(missing)}")
    return {key: tensor.contiguous().clone() for key, tensor in converted.items()}


@dataclass
class HfModelConfig:
    """What a Hugging Face `config.json` (and `preprocessor_config.json`) says about the network."""

    distilled: bool
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int
    img_size: int
    in_chans: int
    num_classes: int
    class_names: list[str] | None
    preprocessing: dict[str, Any] = field(default_factory=dict)


def read_hf_config(directory: Path) -> HfModelConfig:
    """Parse and check `config.json`; architectures we cannot reproduce exactly are refused by name."""
    config = _read_json(directory / "config.json")
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else None
    if architecture not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        raise DeitError(
            f"{directory / 'config.json'}: architecture {architecture!r} is not supported (supported: {supported})"
        )
    try:
        embed_dim = int(config["hidden_size"])
        settings = dict(
            embed_dim=embed_dim,
            depth=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            mlp_ratio=int(config["intermediate_size"]) / embed_dim,
            patch_size=_square(config.get("patch_size", 16), "patch_size"),
            img_size=_square(config.get("image_size", 224), "image_size"),
            in_chans=int(config.get("num_channels", 3)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise DeitError(f"{directory / 'config.json'}: missing or invalid field {error}") from error
    if config.get("hidden_act", "gelu") != "gelu" or not config.get("qkv_bias", True):
        raise DeitError(
            f"{directory / 'config.json'}: hidden_act must be 'gelu' and qkv_bias true "
            f"(got {config.get('hidden_act')!r}, {config.get('qkv_bias')!r})"
        )
    class_names = _class_names(config.get("id2label"))
    num_classes = len(class_names) if class_names else int(config.get("num_labels", 0) or 0)
    return HfModelConfig(
        distilled=SUPPORTED_ARCHITECTURES[architecture],
        num_classes=num_classes,
        class_names=class_names,
        preprocessing=_read_preprocessing(directory),
        **settings,
    )


def hf_weight_files(directory: Path) -> list[Path]:
    """The weight file(s) of a `save_pretrained` directory: safetensors preferred, sharded indexes followed."""
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            return _shards(directory, index)
    raise DeitError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")


def _shards(directory: Path, index_name: str) -> list[Path]:
    weight_map = _read_json(directory / index_name).get("weight_map")
    if not isinstance(weight_map, dict):
        raise DeitError(f"{directory / index_name}: no weight_map")
    shards = []
    for name in dict.fromkeys(str(value) for value in weight_map.values()):
        # A shard must be a plain file name in this directory: no paths reaching elsewhere.
        if Path(name).name != name or name in ("", ".", ".."):
            raise DeitError(f"{directory / index_name}: shard {name!r} is not a file in {directory}")
        shards.append(directory / name)
    return shards


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DeitError(f"{path}: cannot be read as JSON: {str(error).splitlines()[0]}") from error
    if not isinstance(data, dict):
        raise DeitError(f"{path}: expected a JSON object")
    return data


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"{name} {value} is not square")
        value = value[0]
    return int(value)


def _class_names(id2label: Any) -> list[str] | None:
    if not isinstance(id2label, dict) or not id2label:
        return None
    labels = {int(index): str(label) for index, label in id2label.items()}
    if sorted(labels) != list(range(len(labels))):
        return None
    # transformers fills unnamed classes with LABEL_i; ours are class_i.
    return [re.sub(r"^LABEL_(\d+)$", r"class_\1", labels[index]) for index in range(len(labels))]


def _read_preprocessing(directory: Path) -> dict[str, Any]:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return {}
    config = _read_json(path)
    found: dict[str, Any] = {}
    for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
        values = config.get(theirs)
        if isinstance(values, list) and len(values) == 3:
            found[ours] = [float(v) for v in values]
    size, crop = _edge(config.get("size")), _edge(config.get("crop_size"))
    if config.get("do_center_crop") and size and crop:
        found["crop_pct"] = crop / size
    return found


def _edge(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        edge = value.get("shortest_edge", value.get("height"))
        return int(edge) if isinstance(edge, (int, float)) else None
    return None
