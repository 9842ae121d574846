"""Named configurations (deit_*, deit3_*, the official DeiT III names as aliases) as data, and the one
model-name lookup (with close matches).

Nothing here builds a model: `deit.models.factory` turns a name into one.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from deit.errors import DeitError

# timm.data.IMAGENET_DEFAULT_MEAN/STD (a test holds them equal), written out here because importing timm at
# `import deit` more than doubled its wall time (6-9 s -> 14-19 s, shared 2-core EPYC): the one copy in deit.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its constructor arguments and what the official release says about it."""

    name: str
    kwargs: dict[str, Any]
    top1: float | None = None  # official ImageNet-1k top-1
    params: int | None = None  # official parameter count (1000 classes)
    url: str | None = None  # official release checkpoint
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def img_size(self) -> int:
        """The native input resolution."""
        return int(self.kwargs.get("img_size", 224))

    @property
    def distilled(self) -> bool:
        """Whether the model carries a distillation token and head."""
        return bool(self.kwargs.get("distilled", False))


_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "medium": dict(embed_dim=512, depth=12, num_heads=8),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}
_DEIT_URL = "https://dl.fbaipublicfiles.com/deit/"
_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a named configuration to the registry."""
    _REGISTRY[spec.name] = spec
    return spec


def _deit(size: str, img_size: int, distilled: bool, top1: float, params: int, checkpoint_file: str) -> None:
    name = f"deit_{size}_{'distilled_' if distilled else ''}patch16_{img_size}"
    kwargs = dict(_SIZES[size], patch_size=16, img_size=img_size, distilled=distilled)
    crop_pct = 1.0 if img_size == 384 else 0.875
    register(ModelSpec(name, kwargs, top1=top1, params=params, url=_DEIT_URL + checkpoint_file, crop_pct=crop_pct))


def _deit3(size: str, img_size: int, top1: float, params: int, layer_scale_init: float, checkpoint_file: str) -> None:
    kwargs = dict(
        _SIZES[size], patch_size=16, img_size=img_size, layer_scale_init=layer_scale_init, pos_embed_over_prefix=False
    )
    crop_pct = 1.0 if img_size == 384 else 0.875
    register(
        ModelSpec(
            f"deit3_{size}_patch16_{img_size}",
            kwargs,
            top1=top1,
            params=params,
            url=_DEIT_URL + checkpoint_file,
            crop_pct=crop_pct,
        )
    )


_deit("tiny", 224, False, 72.2, 5_717_416, "deit_tiny_patch16_224-a1311bcf.pth")
_deit("small", 224, False, 79.9, 22_050_664, "deit_small_patch16_224-cd65a155.pth")
_deit("base", 224, False, 81.8, 86_567_656, "deit_base_patch16_224-b5f2ef4d.pth")
_deit("base", 384, False, 82.9, 86_859_496, "deit_base_patch16_384-8de9b5d1.pth")
_deit("tiny", 224, True, 74.5, 5_910_800, "deit_tiny_distilled_patch16_224-b40b3cf7.pth")
_deit("small", 224, True, 81.2, 22_436_432, "deit_small_distilled_patch16_224-649709d9.pth")
_deit("base", 224, True, 83.4, 87_338_192, "deit_base_distilled_patch16_224-df68dfff.pth")
_deit("base", 384, True, 85.2, 87_630_032, "deit_base_distilled_patch16_384-d0272ac0.pth")
# DeiT III, ImageNet-1k training; LayerScale starts at 1e-4 for the smaller, 1e-6 for the larger models.
_deit3("small", 224, 81.4, 22_059_496, 1e-4, "deit_3_small_224_1k.pth")
_deit3("small", 384, 83.4, 22_205_416, 1e-4, "deit_3_small_384_1k.pth")
_deit3("medium", 224, 83.0, 38_849_512, 1e-4, "deit_3_medium_224_1k.pth")
_deit3("base", 224, 83.8, 86_585_320, 1e-6, "deit_3_base_224_1k.pth")
_deit3("base", 384, 85.0, 86_877_160, 1e-6, "deit_3_base_384_1k.pth")
_deit3("large", 224, 84.9, 304_374_760, 1e-6, "deit_3_large_224_1k.pth")
_deit3("large", 384, 85.8, 304_763_880, 1e-6, "deit_3_large_384_1k.pth")


# The official DeiT III names (facebookresearch/deit models_v2.py, used by its README's commands), as aliases of
# ours: the same layers and state-dict keys; the size comes from `img_size` (`--input-size`) as there. Its
# constructors start every LayerScale at 1e-4 (`vit_models(init_scale=1e-4)`), so the alias does too. Its tiny,
# huge and giant variants have no DeiT III of ours and stay unknown names.
_OFFICIAL_DEIT3_ALIASES = {
    f"deit_{size}_patch16_LS": f"deit3_{size}_patch16_224" for size in ("small", "medium", "base", "large")
}
_ALIASES: dict[str, ModelSpec] = {
    alias: ModelSpec(
        alias,
        dict(_REGISTRY[target].kwargs, layer_scale_init=1e-4),
        top1=_REGISTRY[target].top1,
        params=_REGISTRY[target].params,
        url=_REGISTRY[target].url,
        crop_pct=_REGISTRY[target].crop_pct,
        extra={"alias_of": target},
    )
    for alias, target in _OFFICIAL_DEIT3_ALIASES.items()
}


def aliases() -> dict[str, str]:
    """Official names accepted in place of ours (`deit_small_patch16_LS` -> `deit3_small_patch16_224`)."""
    return dict(_OFFICIAL_DEIT3_ALIASES)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style pattern (`*distilled*`)."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_spec(name: str) -> ModelSpec:
    """The registered spec for `name`; an unknown name gets an error listing the close matches."""
    if name in _ALIASES:
        return _ALIASES[name]
    if name not in _REGISTRY:
        raise unknown_model_error(name, registered_only=True)
    return _REGISTRY[name]


def is_registered(name: str) -> bool:
    """Whether `name` is one of our DeiT models (as opposed to a timm/torchvision CNN, say)."""
    return name in _REGISTRY or name in _ALIASES


def model_source(name: str) -> str | None:
    """Who provides `name`: "deit" (this registry), "timm" or "torchvision", searched in that order; else None."""
    if is_registered(name):
        return "deit"
    import timm

    if timm.is_model(name):
        return "timm"
    import torchvision

    return "torchvision" if name in torchvision.models.list_models() else None


def check_model_name(name: str, *, where: str) -> None:
    """Refuse a name that neither this registry, timm nor torchvision provides; `where` names the flag."""
    if model_source(name) is None:
        raise unknown_model_error(name, where=where)


def unknown_model_error(name: str, *, where: str | None = None, registered_only: bool = False) -> DeitError:
    """The one-line error for an unknown model name, listing the closest known names."""
    import difflib

    candidates = list(_REGISTRY) + list(_ALIASES)
    if not registered_only:
        import timm
        import torchvision

        candidates = list(dict.fromkeys(candidates + timm.list_models() + torchvision.models.list_models()))
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else "; see `deit models`" + ("" if registered_only else " or timm.list_models()")
    )
    return DeitError((f"{where} {name}: unknown model" if where else f"unknown model '{name}'") + hint)
