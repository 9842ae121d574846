"""`deit export --format timm`: a checkpoint to `model.safetensors` + a timm `config.json` in one folder.

Our state_dict keys are timm's (the checkpoint contract), so the weights are written as they are; `config.json`
is timm's Hub layout (`architecture`, `model_args`, `pretrained_cfg` with class count, mean/std, crop), so both
`timm.create_model("local-dir:DIR", pretrained=True)` and `timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=DIR/model.safetensors, ...), **model_args)` load it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from deit.errors import DeitError
from deit.export.model_card import DEFAULT_LICENSE, model_card
from deit.inference.preprocess import EvalPreprocessing, load_inference_model
from deit.io import dumps_strict
from deit.models.meta import CheckpointMeta


def timm_model_args(meta: CheckpointMeta, preprocessing: EvalPreprocessing) -> dict[str, Any]:
    """The `timm.create_model` keyword arguments that rebuild the checkpoint's architecture."""
    from deit.models.registry import is_registered

    args = dict(meta.model_kwargs)
    if is_registered(meta.model):
        args["img_size"] = preprocessing.input_size
    return args


def timm_config(meta: CheckpointMeta, num_features: int, preprocessing: EvalPreprocessing) -> dict[str, Any]:
    """timm's Hub `config.json`: architecture, model_args and the pretrained config of the evaluation transform."""
    size = preprocessing.input_size
    pretrained_cfg = {
        "num_classes": meta.num_classes,
        "input_size": [3, size, size],
        "interpolation": "bicubic",
        "crop_pct": preprocessing.crop_pct,
        "crop_mode": "center",
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "first_conv": "patch_embed.proj",
        "classifier": ["head", "head_dist"] if meta.distilled else "head",
    }
    return {
        "architecture": meta.model,
        "num_classes": meta.num_classes,
        "num_features": num_features,
        "model_args": timm_model_args(meta, preprocessing),
        "pretrained_cfg": pretrained_cfg,
        "label_names": list(meta.class_names),
    }


def export_timm(
    checkpoint: str | Path, output: str | Path, *, license: str = DEFAULT_LICENSE, crop_pct: float | None = None
) -> tuple[Path, float, int]:
    """Write the folder; returns it, max |logits diff| of timm's reload vs ours, the input size."""
    import timm

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DeitError(f"--output {output}: is a file; --format timm writes a folder")
    model, meta, _ = load_inference_model(checkpoint, "cpu", crop_pct=crop_pct)
    model = model.float()
    if not timm.is_model(meta.model):
        raise DeitError(f"--format timm: {meta.model!r} is not a timm model name; use --format safetensors")
    preprocessing = EvalPreprocessing.from_meta(meta, model)
    config = timm_config(meta, int(getattr(model, "embed_dim", 0) or getattr(model, "num_features", 0)), preprocessing)
    output.mkdir(parents=True, exist_ok=True)
    # Our meta rides in the safetensors header (timm ignores it): `deit predict`/`eval` on this folder then get
    # the heads, class names and preprocessing of the source instead of guessing them from the shapes.
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(output / "model.safetensors"),
        metadata={"format": "pt", "deit": dumps_strict(meta.to_dict())},
    )
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (output / "README.md").write_text(model_card(checkpoint, meta, fmt="timm", license=license), encoding="utf-8")
    reloaded = timm.create_model(f"local-dir:{output}", pretrained=True).eval()
    images = torch.randn(
        2, 3, preprocessing.input_size, preprocessing.input_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        return output, float((reloaded(images) - model(images)).abs().max()), preprocessing.input_size


__all__ = ["export_timm", "timm_config", "timm_model_args"]
