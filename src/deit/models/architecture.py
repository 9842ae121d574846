"""Read a network's shape off its weights (or a Hugging Face config) and name the registered model it matches."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from deit.errors import DeitError
from deit.models.registry import ModelSpec, get_model_spec, is_registered, list_models

# Constructor defaults that registry specs leave implicit.
_DEFAULTS: dict[str, Any] = dict(
    mlp_ratio=4.0, in_chans=3, distilled=False, layer_scale_init=None, pos_embed_over_prefix=True
)
_DEFAULT_LAYER_SCALE = 1e-4  # any non-zero value builds the LayerScale modules; the weights overwrite it


@dataclass(frozen=True)
class Architecture:
    """The constructor-level facts of a ViT/DeiT; `num_heads` is None when the weights cannot tell."""

    embed_dim: int
    depth: int
    num_heads: int | None
    mlp_ratio: float
    patch_size: int
    img_size: int
    in_chans: int
    distilled: bool
    layer_scale: bool
    pos_embed_over_prefix: bool
    num_classes: int


def architecture_of(state_dict: dict[str, Tensor], *, source: str) -> Architecture:
    """The architecture that `state_dict` (our key names) was saved from."""
    for required in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if required not in state_dict:
            raise DeitError(
                f"{source}: not a DeiT/ViT state dict (no '{required}'); pass model_name=... "
                "or use a `deit train` checkpoint"
            )
    embed_dim = int(state_dict["cls_token"].shape[-1])
    projection = state_dict["patch_embed.proj.weight"]
    distilled = "dist_token" in state_dict
    num_prefix = 2 if distilled else 1
    pos_length = int(state_dict["pos_embed"].shape[1])
    # DeiT III's position embedding covers the patches only, so its length is a perfect square.
    pos_embed_over_prefix = not _is_square(pos_length)
    num_patches = pos_length - (num_prefix if pos_embed_over_prefix else 0)
    if not _is_square(num_patches):
        raise DeitError(f"{source}: pos_embed has {pos_length} rows, which is no square grid of patches")
    head = state_dict.get("head.weight")
    return Architecture(
        embed_dim=embed_dim,
        depth=1 + max(int(m.group(1)) for key in state_dict if (m := re.match(r"blocks\.(\d+)\.", key))),
        num_heads=None,
        mlp_ratio=int(state_dict["blocks.0.mlp.fc1.weight"].shape[0]) / embed_dim,
        patch_size=int(projection.shape[-1]),
        img_size=math.isqrt(num_patches) * int(projection.shape[-1]),
        in_chans=int(projection.shape[1]),
        distilled=distilled,
        layer_scale="blocks.0.ls1.gamma" in state_dict,
        pos_embed_over_prefix=pos_embed_over_prefix,
        num_classes=int(head.shape[0]) if head is not None else 0,
    )


def closest_registered(arch: Architecture) -> str:
    """The registered name whose family (distilled / DeiT III) and size fit `arch` best."""

    def distance(spec: ModelSpec) -> tuple[Any, ...]:
        kwargs = spec.kwargs
        return (
            kwargs.get("distilled", False) != arch.distilled,
            bool(kwargs.get("layer_scale_init")) != arch.layer_scale,
            kwargs.get("pos_embed_over_prefix", True) != arch.pos_embed_over_prefix,
            kwargs["embed_dim"] != arch.embed_dim,
            kwargs["depth"] != arch.depth,
            abs(kwargs["embed_dim"] - arch.embed_dim),
            spec.img_size != arch.img_size,
            spec.name,
        )

    return min((get_model_spec(name) for name in list_models()), key=distance).name


def overrides_for(name: str, arch: Architecture, *, source: str) -> dict[str, Any]:
    """Constructor overrides that make registered `name` build exactly `arch` (img_size/num_classes aside)."""
    if not is_registered(name):
        raise DeitError(
            f"{source}: model '{name}' is not a registered DeiT model; weights without `deit` "
            "metadata can only be matched to one (see `deit models`)"
        )
    spec = get_model_spec(name)
    wanted: dict[str, Any] = dict(
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads or _guess_heads(spec, arch, source),
        mlp_ratio=arch.mlp_ratio,
        patch_size=arch.patch_size,
        in_chans=arch.in_chans,
        distilled=arch.distilled,
        pos_embed_over_prefix=arch.pos_embed_over_prefix,
    )
    overrides = {key: value for key, value in wanted.items() if spec.kwargs.get(key, _DEFAULTS.get(key)) != value}
    if bool(spec.kwargs.get("layer_scale_init")) != arch.layer_scale:
        overrides["layer_scale_init"] = _DEFAULT_LAYER_SCALE if arch.layer_scale else None
    return overrides


def _guess_heads(spec: ModelSpec, arch: Architecture, source: str) -> int:
    if spec.kwargs["embed_dim"] == arch.embed_dim:
        return int(spec.kwargs["num_heads"])
    # Every DeiT size uses 64-dimensional heads; a custom width cannot be read off the weights.
    heads = max(1, arch.embed_dim // 64)
    warnings.warn(
        f"{source}: the number of attention heads is not stored in the weights; assuming {heads} "
        "(pass num_heads=... if it differs)",
        stacklevel=4,
    )
    return heads


def _is_square(number: int) -> bool:
    return number > 0 and math.isqrt(number) ** 2 == number
