"""The one door from a name or a file to a model: our DeiT registry first, then timm, then torchvision.

`create_model` builds a registered DeiT (optionally with weights), `build_model` any known name (teachers, CNN
baselines; never downloads), `load_trained_model` rebuilds whatever a checkpoint file or directory holds.
Reading and adapting the weights is `deit.models.checkpoint`'s; the names are `deit.models.registry`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.models import hf_convert
from deit.models.architecture import Architecture, architecture_of, closest_registered, overrides_for
from deit.models.checkpoint import Source, default_meta, load_pretrained, load_state_dict_strict, read_trained_weights
from deit.models.foreign import construct_foreign
from deit.models.kwargs_check import check_vit_kwargs
from deit.models.meta import CheckpointMeta
from deit.models.registry import get_model_spec, model_source, unknown_model_error
from deit.models.vit import VisionTransformer


def create_model(
    name: str,
    pretrained: bool | str | Path | None = None,
    num_classes: int = 1000,
    img_size: int | None = None,
    drop_path_rate: float = 0.0,
    in_chans: int = 3,
    **overrides: Any,
) -> VisionTransformer:
    """Build a registered model; `pretrained` is True (official weights), a file/directory path, or None.

    `overrides` replace constructor arguments (e.g. `depth=2`, `patch_size=4`) for small experiments.
    """
    spec = get_model_spec(name)
    kwargs = dict(spec.kwargs, num_classes=num_classes, drop_path_rate=drop_path_rate, in_chans=in_chans)
    if img_size is not None:
        kwargs["img_size"] = img_size
    kwargs.update(overrides)
    check_vit_kwargs(kwargs, where=f"model '{name}'")
    model = VisionTransformer(**kwargs)
    model.model_name = name  # type: ignore[assignment]
    if pretrained:
        load_pretrained(model, official_weights(name) if pretrained is True else pretrained)
    return model


def official_weights(name: str) -> Path:
    """The local copy of registered `name`'s official release file (downloaded once, hash-checked)."""
    from deit.models.download import fetch_checkpoint

    url = get_model_spec(name).url
    if not url:
        raise DeitError(f"model '{name}' has no official checkpoint; pass a file as pretrained=")
    return fetch_checkpoint(url, progress=True)


def build_model(
    name: str, *, num_classes: int, img_size: int | None = None, drop_path_rate: float = 0.0, **overrides: Any
) -> nn.Module:
    """A freshly initialised model called `name` with `num_classes` outputs (no weights are downloaded).

    `img_size` sets our DeiTs' input size; timm and torchvision models keep their own. `drop_path_rate` applies
    to ours and timm's; torchvision models have no stochastic depth, so it is ignored for them.
    """
    source = model_source(name)
    if source is None:
        raise unknown_model_error(name)
    if source == "deit":
        return create_model(
            name, num_classes=num_classes, img_size=img_size, drop_path_rate=drop_path_rate, **overrides
        )
    kwargs: dict[str, Any] = dict(overrides)
    if drop_path_rate and source == "timm":
        kwargs["drop_path_rate"] = drop_path_rate
    return construct_foreign(name, source=source, num_classes=num_classes, **kwargs)


# ---------------------------------------------------------------- rebuilding a trained model


def load_trained_model(
    path: Source,
    device: str | torch.device = "cpu",
    *,
    model_name: str | None = None,
    use_ema: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model saved at `path` and its meta (preprocessing, class names); the model is in eval mode.

    `path` is a `deit train` checkpoint, a safetensors export, an official/timm `.pth`/`.safetensors` (the model
    is named by `model_name` or read off the tensor shapes) or a Hugging Face directory. `use_ema` picks the EMA
    weights (`model_ema`) of a training checkpoint, ours or official `main.py`'s, and refuses a file without
    them; `overrides` (e.g. `num_heads=`) fix what weights alone cannot tell.
    """
    path = Path(path)
    source = str(path)
    state_dict, hf_config, meta = read_trained_weights(path, use_ema=use_ema)
    if meta is not None:
        model = _build_from_meta(meta, overrides=overrides)
    else:
        model, meta = _build_from_weights(
            state_dict, hf_config, source=source, model_name=model_name, overrides=overrides
        )
    load_state_dict_strict(model, state_dict, source=source)
    return model.to(device).eval(), meta


def _build_from_meta(meta: CheckpointMeta, *, overrides: dict[str, Any]) -> nn.Module:
    # The meta check made any img_size/num_classes inside model_kwargs equal to the meta's own fields: pass each
    # once. A timm/torchvision model is built from exactly the kwargs its meta-device skeleton was checked with.
    kwargs = {key: value for key, value in dict(meta.model_kwargs, **overrides).items() if key != "num_classes"}
    source = model_source(meta.model)
    if source != "deit":
        return construct_foreign(meta.model, source=source, num_classes=meta.num_classes, **kwargs)
    img_size = kwargs.pop("img_size", None) or meta.input_size
    return build_model(meta.model, num_classes=meta.num_classes, img_size=img_size, **kwargs)


def _build_from_weights(
    state_dict: dict[str, Tensor],
    hf_config: hf_convert.HfModelConfig | None,
    *,
    source: str,
    model_name: str | None,
    overrides: dict[str, Any],
) -> tuple[nn.Module, CheckpointMeta]:
    arch = architecture_of(state_dict, source=source)
    preprocessing: dict[str, Any] = {}
    class_names = None
    if hf_config is not None:
        arch = Architecture(**{**arch.__dict__, "num_heads": hf_config.num_heads})
        preprocessing, class_names = hf_config.preprocessing, hf_config.class_names
    elif "num_heads" in overrides:
        arch = Architecture(**{**arch.__dict__, "num_heads": int(overrides["num_heads"])})
    name = model_name or closest_registered(arch)
    model_kwargs = dict(overrides_for(name, arch, source=source), **overrides)
    model = create_model(name, num_classes=arch.num_classes, img_size=arch.img_size, **model_kwargs)
    meta = default_meta(
        name,
        img_size=arch.img_size,
        num_classes=arch.num_classes,
        model_kwargs=model_kwargs,
        class_names=class_names,
        source=source,
        **preprocessing,
    )
    return model, meta
