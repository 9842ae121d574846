"""A checkpoint's `deit` meta is untrusted input: checked against the tensors actually present, before any model
is built (so `depth: 5000` over a 2-block file fails in milliseconds, not after gigabytes), and never a download."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from deit.errors import DeitError
from deit.models.architecture import _DEFAULTS, architecture_of
from deit.models.kwargs_check import check_no_download_keys, check_vit_kwargs
from deit.models.model_cost import check_model_cost, vit_cost
from deit.models.registry import get_model_spec, model_source

_MIN_CROP_PCT = 0.05  # below this the eval resize (input / crop_pct) asks for a gigantic image


def validate_meta(meta: dict[str, Any], state_dict: dict[str, Tensor], *, source: str) -> None:
    """Refuse meta whose types, ranges or architecture disagree with `state_dict`; names the file and the key."""
    check_meta_fields(meta, source=source)
    kind = model_source(meta["model"])
    if kind == "deit":
        _check_against_tensors(
            meta, meta["model"], meta.get("model_kwargs") or {}, state_dict, where=f"{source}: meta", source=source
        )
    elif kind is None:
        raise DeitError(f"{source}: meta 'model' names '{meta['model']}', which neither deit, timm nor torchvision has")
    else:  # every architecture a file names is checked, ours or another library's
        from deit.models.foreign import check_foreign_meta

        check_foreign_meta(meta, state_dict, source=source, kind=kind)


def check_meta_fields(meta: dict[str, Any], *, source: str) -> None:
    """Refuse meta whose keys have the wrong type or range (no tensors needed); names the file and the key."""
    where = f"{source}: meta"
    model = meta.get("model")
    if not isinstance(model, str) or not model:
        raise DeitError(f"{where} 'model' must be a model name, got {model!r}")
    num_classes = meta.get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 0 <= num_classes <= 1_000_000:
        raise DeitError(f"{where} 'num_classes' must be a whole number in [0, 1000000], got {num_classes!r}")
    kwargs = meta.get("model_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise DeitError(f"{where} 'model_kwargs' must be a mapping, got {type(kwargs).__name__}")
    check_no_download_keys(kwargs, where=f"{where} 'model_kwargs'")
    _check_preprocessing(meta, num_classes, where)
    _check_builder_keys(meta, kwargs, where)
    for key, kind in (("interpolation", str), ("distilled", bool), ("deit_version", str)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise DeitError(f"{where} '{key}' must be a {kind.__name__}, got {meta[key]!r}")


# Keys the builder sets from the meta's own fields: inside `model_kwargs` they may only repeat those fields.
_BUILDER_KEYS = {"num_classes": "num_classes", "img_size": "input_size"}


def _check_builder_keys(meta: dict[str, Any], kwargs: dict[str, Any], where: str) -> None:
    for key, field in _BUILDER_KEYS.items():
        if key in kwargs and meta.get(field) is not None and kwargs[key] != meta[field]:
            raise DeitError(
                f"{where} 'model_kwargs' sets {key}={kwargs[key]!r}, but its '{field}' is {meta[field]!r}; "
                f"the file is inconsistent"
            )


def _check_preprocessing(meta: dict[str, Any], num_classes: int, where: str) -> None:
    if meta.get("input_size") is not None:
        size = meta["input_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096:
            raise DeitError(f"{where} 'input_size' must be a whole number in [1, 4096], got {size!r}")
    crop = meta.get("crop_pct")
    if crop is not None and not (_number(crop) and _MIN_CROP_PCT <= crop <= 1.0):
        raise DeitError(f"{where} 'crop_pct' must be a number in [{_MIN_CROP_PCT}, 1], got {crop!r}")
    for key in ("mean", "std"):
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, (list, tuple))
            and len(value) in (1, 3)
            and all(_number(v) for v in value)
            and (key == "mean" or all(v > 0 for v in value))
        ):
            raise DeitError(
                f"{where} '{key}' must be 1 or 3 {'positive ' if key == 'std' else ''}numbers, got {value!r}"
            )
    names = meta.get("class_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) in (0, num_classes)
    ):
        raise DeitError(
            f"{where} 'class_names' must be a list of {num_classes} strings, got "
            f"{type(names).__name__}{f' of {len(names)}' if isinstance(names, list) else ''}"
        )


def _check_against_tensors(
    meta: dict[str, Any], model: str, kwargs: dict[str, Any], state_dict: dict[str, Tensor], *, where: str, source: str
) -> None:
    spec = get_model_spec(model)
    config = {**_DEFAULTS, **spec.kwargs, **kwargs, "num_classes": meta["num_classes"]}
    if meta.get("input_size") is not None:
        config["img_size"] = meta["input_size"]
    config.setdefault("img_size", spec.img_size)
    arch = architecture_of(state_dict, source=source)
    observed = {
        "embed_dim": arch.embed_dim,
        "depth": arch.depth,
        "patch_size": arch.patch_size,
        "in_chans": arch.in_chans,
        "distilled": arch.distilled,
        "img_size": arch.img_size,
        "pos_embed_over_prefix": arch.pos_embed_over_prefix,
        "mlp_ratio": arch.mlp_ratio,
    }
    if arch.num_classes or "head.weight" in state_dict:
        observed["num_classes"] = arch.num_classes
    for key, seen in observed.items():
        claimed = config.get(key)
        same = (
            math.isclose(claimed, seen, rel_tol=1e-3)
            if key == "mlp_ratio" and _number(claimed)
            else claimed == seen and type(claimed) is type(seen)
        )
        if not same:
            raise DeitError(
                f"{where} says {key}={claimed!r}, but its tensors are of a model with {key}={seen!r}; "
                f"the file is inconsistent"
            )
    # What the tensors cannot tell (heads, drop rates, ...) is still bounded and typed.
    check_vit_kwargs(config, where=f"{where} 'model_kwargs'")
    check_model_cost(
        *vit_cost(
            **{key: config[key] for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "img_size", "patch_size")},
            in_chans=config["in_chans"],
            num_classes=config["num_classes"],
            prefix_tokens=2 if config["distilled"] else 1,
        ),
        where=source,
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
