"""Models this registry does not define (timm's, torchvision's): one constructor, and the check a file that names
one must pass before it is built for real.

A file's meta may name any timm or torchvision model with any settings. Before anything is allocated, the
settings are typed and bounded, their cost estimated (`deit.models.model_cost`), then the model is built on the
`meta` device (shapes only, no memory) and its parameter count and every tensor's shape compared with the file's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.models.kwargs_check import FRACTION_KEYS, INTEGER_BOUNDS, check_common_key
from deit.models.model_cost import check_model_cost, vit_cost
from deit.models.state_fit import check_key_names, check_shapes

_MAX_WHOLE = 65_536  # any other whole-number setting (stage widths, window sizes ...)
_MAX_TEXT = 200
_MAX_ITEMS = 64  # per-stage lists (depths=[3, 3, 27, 3])
_MAX_BLOCKS = INTEGER_BOUNDS["depth"][1]  # blocks in all: what the meta-device skeleton costs grows with them
_BLOCK_COUNT_WORDS = ("depth", "layers", "blocks")  # `depths=[3, 3, 27, 3]`, `num_blocks`, `layers=[2, 2, 2, 2]`
_TEXT_KEYS = ("global_pool", "act_layer", "norm_layer", "block_fn", "class_token", "pos_embed")


def construct_foreign(name: str, *, source: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """A freshly initialised timm or torchvision model (never downloads: `pretrained`/`weights` are off)."""
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def check_foreign_kwargs(kwargs: Mapping[str, Any], *, where: str) -> None:
    """Plain, bounded values only: the usual ViT keys within our own bounds, any other number or list bounded."""
    for key, value in kwargs.items():
        if key in INTEGER_BOUNDS or key in FRACTION_KEYS or key.endswith("drop_rate"):
            check_common_key(key, value, where=where)
        elif key in _TEXT_KEYS:
            if not (value is None or isinstance(value, (str, bool))) or len(str(value)) > _MAX_TEXT:
                raise DeitError(f"{where}: '{key}' must be a name (text), got {value!r}")
        elif isinstance(value, (list, tuple)):
            if len(value) > _MAX_ITEMS or not all(_plain_scalar(item) for item in value):
                raise DeitError(f"{where}: '{key}' must be a list of at most {_MAX_ITEMS} plain values, got {value!r}")
        elif not _plain_scalar(value):
            raise DeitError(f"{where}: '{key}' must be a number, true/false, text or null, got {value!r}")
        if any(word in key for word in _BLOCK_COUNT_WORDS):
            counts = value if isinstance(value, (list, tuple)) else [value]
            total = sum(count for count in counts if isinstance(count, int) and not isinstance(count, bool))
            if total > _MAX_BLOCKS:
                raise DeitError(f"{where}: '{key}' asks for {total} blocks in all, over the {_MAX_BLOCKS} accepted")


def check_foreign_meta(meta: Mapping[str, Any], state_dict: Mapping[str, Tensor], *, source: str, kind: str) -> None:
    """Refuse a timm/torchvision architecture that is mistyped, too large, or not the one the tensors hold."""
    where = f"{source}: meta"
    kwargs = dict(meta.get("model_kwargs") or {})
    check_foreign_kwargs(kwargs, where=f"{where} 'model_kwargs'")
    kwargs.pop("num_classes", None)  # equal to the meta's own (meta_check): passed once, as the reader will
    if "embed_dim" in kwargs and "depth" in kwargs:  # a ViT: its cost is arithmetic, checked before any build
        check_model_cost(
            *vit_cost(
                embed_dim=kwargs["embed_dim"],
                depth=kwargs["depth"],
                num_heads=kwargs.get("num_heads") or 1,
                mlp_ratio=kwargs.get("mlp_ratio") or 4.0,
                img_size=kwargs.get("img_size") or meta.get("input_size") or 224,
                patch_size=kwargs.get("patch_size") or 16,
                num_classes=meta["num_classes"],
            ),
            where=source,
        )
    skeleton = _skeleton(meta["model"], kind, meta["num_classes"], kwargs, where=where)
    check_model_cost(sum(p.numel() for p in skeleton.parameters()), _activation_bytes(skeleton), where=source)
    target = skeleton.state_dict()
    context = f"{source} (its meta names {meta['model']}{' ' + str(kwargs) if kwargs else ''}, its tensors another)"
    check_key_names(state_dict, target, optional=set(), source=context)
    check_shapes(state_dict, target, source=context)


def _skeleton(name: str, kind: str, num_classes: int, kwargs: dict[str, Any], *, where: str) -> nn.Module:
    """`name` built on the meta device: every shape, no memory; a constructor's refusal becomes one line."""
    try:
        with torch.device("meta"):
            return construct_foreign(name, source=kind, num_classes=num_classes, **kwargs)
    except Exception as error:  # noqa: BLE001 - third-party constructors raise anything on bad settings
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise DeitError(
            f"{where} 'model_kwargs' {kwargs} do not build {kind} model '{name}': {type(error).__name__}"
            f"{': ' + reason if reason else ''}"
        ) from error


def _activation_bytes(skeleton: nn.Module) -> int:
    # A token model's widest activations; a CNN's are bounded by the input size, already capped at 4096 px.
    pos_embed = getattr(skeleton, "pos_embed", None)
    width = getattr(skeleton, "embed_dim", None)
    if not isinstance(pos_embed, Tensor) or not isinstance(width, int) or pos_embed.dim() < 2:
        return 0
    tokens = int(pos_embed.shape[-2])
    return 4 * tokens * width * 6 + 4 * tokens * tokens


def _plain_scalar(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) <= _MAX_WHOLE
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= _MAX_WHOLE
    return isinstance(value, str) and len(value) <= _MAX_TEXT
