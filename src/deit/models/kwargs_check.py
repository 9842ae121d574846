"""Constructor arguments of our VisionTransformer, checked before any allocation: known keys, types and bounds.

Bounds keep a typo (or a hostile file) from asking for a model that exhausts the machine before it fails.
"""

from __future__ import annotations

import math
from typing import Any

from deit.errors import DeitError

INTEGER_BOUNDS = {
    "img_size": (1, 4096),
    "patch_size": (1, 512),
    "in_chans": (1, 64),
    "num_classes": (0, 1_000_000),
    "embed_dim": (1, 8192),
    "depth": (1, 256),
    "num_heads": (1, 512),
}
FRACTION_KEYS = ("drop_rate", "attn_drop_rate", "drop_path_rate")  # [0, 1): 1 drops everything and gives NaN
_BOOLEANS = ("qkv_bias", "distilled", "pos_embed_over_prefix")
_MAX_MLP_RATIO = 64.0
# Keys that would make a constructor fetch weights from the network (timm / torchvision spellings).
DOWNLOAD_KEYS = (
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "pretrained_strict",
    "checkpoint_path",
    "weights",
    "weights_backbone",
    "progress",
    "cache_dir",
)


def check_vit_kwargs(kwargs: dict[str, Any], *, where: str) -> None:
    """Refuse unknown keys, wrong types and out-of-range values; `where` names the file or flag at fault."""
    for key, value in kwargs.items():
        if key in INTEGER_BOUNDS or key in FRACTION_KEYS:
            check_common_key(key, value, where=where)
        elif key in _BOOLEANS:
            if not isinstance(value, bool):
                raise DeitError(f"{where}: '{key}' must be true or false, got {value!r}")
        elif key == "mlp_ratio":
            if not _number(value) or not 0.0 < value <= _MAX_MLP_RATIO:
                raise DeitError(f"{where}: 'mlp_ratio' must be a number in (0, {_MAX_MLP_RATIO:g}], got {value!r}")
        elif key == "layer_scale_init":
            if value is not None and not (_number(value) and value > 0):
                raise DeitError(f"{where}: 'layer_scale_init' must be null or a positive number, got {value!r}")
        else:
            raise DeitError(f"{where}: unknown model argument '{key}'")
    image, patch = kwargs.get("img_size"), kwargs.get("patch_size")
    if isinstance(image, int) and isinstance(patch, int):
        check_patch_grid(image, patch, where=where)
    dim, heads = kwargs.get("embed_dim"), kwargs.get("num_heads")
    if isinstance(dim, int) and isinstance(heads, int) and dim % heads:
        raise DeitError(f"{where}: embed_dim {dim} is not divisible by num_heads {heads}")
    if "mlp_ratio" in kwargs and isinstance(dim, int) and int(dim * kwargs["mlp_ratio"]) < 1:
        raise DeitError(f"{where}: mlp_ratio {kwargs['mlp_ratio']} gives an MLP of no units at embed_dim {dim}")


def check_common_key(key: str, value: Any, *, where: str) -> None:
    """A size (`INTEGER_BOUNDS`) or a drop rate (`FRACTION_KEYS`, any `*drop_rate`) within its bounds; timm's
    ViTs share these names, so a file naming one of theirs is held to the same bounds as ours."""
    if key in INTEGER_BOUNDS:
        low, high = INTEGER_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DeitError(f"{where}: '{key}' must be a whole number in [{low}, {high}], got {value!r}")
    elif not _number(value) or not 0.0 <= value < 1.0:
        raise DeitError(f"{where}: '{key}' must be a number in [0, 1), got {value!r}")


def check_patch_grid(img_size: int, patch_size: int, *, where: str) -> None:
    """An image must cut into whole patches: refuse an `img_size` that `patch_size` does not divide."""
    if patch_size <= 0 or img_size % patch_size:
        raise DeitError(
            f"{where}: img_size {img_size} is not divisible by the patch size {patch_size}; "
            f"use a multiple of {patch_size}"
        )


def check_no_download_keys(kwargs: dict[str, Any], *, where: str) -> None:
    """Refuse arguments that would make a model constructor download weights."""
    for key in DOWNLOAD_KEYS:
        if key in kwargs:
            raise DeitError(
                f"{where}: '{key}' is refused (nothing read from a file or a kwargs mapping may "
                f"trigger a download; load weights with --finetune or --resume)"
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
