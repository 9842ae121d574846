"""`deit export --format hf`: a checkpoint to a Hugging Face `save_pretrained` directory.

A distilled student becomes `DeiTForImageClassificationWithTeacher`, a plain DeiT `ViTForImageClassification`
(transformers' DeiT classes always add a distillation token). DeiT III (LayerScale, position embedding over the
patches only) has no transformers class with the same forward pass and is refused. The preprocessing goes to
`preprocessor_config.json` as a `BitImageProcessor` (shortest-edge bicubic resize, center crop, rescale,
normalise: our evaluation transform), the class names to `id2label`, and the training record to README.md.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deit.errors import DeitError
from deit.export.export_output import ExportRefused
from deit.export.model_card import DEFAULT_LICENSE, model_card
from deit.inference.preprocess import EvalPreprocessing, load_inference_model
from deit.models.hf_convert import to_hf_state_dict

HF_EXTRA_HINT = "install transformers: pip install 'deit[hf]'"


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """transformers' tqdm bars off for the block ("Writing model shards", "Loading weights" would leak into the
    export's output), then back as they were."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def hf_config_dict(model: nn.Module, class_names: list[str]) -> dict[str, Any]:
    """The transformers `config.json` fields that rebuild `model` (a DeiT or ViT classifier)."""
    from deit.models.vit import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ExportRefused(
            f"--format hf: {type(model).__name__} is not a DeiT/ViT model; export it with --format safetensors or onnx"
        )
    if not model.pos_embed_over_prefix or any(not isinstance(b.ls1, nn.Identity) for b in model.blocks):
        raise ExportRefused(
            "--format hf: DeiT III (LayerScale, position embedding over the patches only) has no "
            "matching transformers class; use --format timm, safetensors or onnx"
        )
    block = model.blocks[0]
    return {
        "model_type": "deit" if model.distilled else "vit",
        "architectures": ["DeiTForImageClassificationWithTeacher" if model.distilled else "ViTForImageClassification"],
        "hidden_size": model.embed_dim,
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": block.attn.num_heads,
        "intermediate_size": block.mlp.fc1.out_features,
        "hidden_act": "gelu",
        "layer_norm_eps": model.norm.eps,
        "qkv_bias": block.attn.qkv.bias is not None,
        "image_size": model.img_size,
        "patch_size": model.patch_size,
        "num_channels": model.patch_embed.proj.in_channels,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "id2label": {str(i): name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
    }


def processor_config(preprocessing: EvalPreprocessing) -> dict[str, Any]:
    """`preprocessor_config.json` for our evaluation transform (resize shorter side, center crop, normalise)."""
    if preprocessing.interpolation != "bicubic":
        raise DeitError(f"--format hf: interpolation {preprocessing.interpolation!r} is not supported (bicubic)")
    return {
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": int(preprocessing.input_size / preprocessing.crop_pct)},
        "resample": 3,  # PIL bicubic, as torchvision's Resize(bicubic) on a PIL image
        "do_center_crop": True,
        "crop_size": {"height": preprocessing.input_size, "width": preprocessing.input_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(preprocessing.mean),
        "image_std": list(preprocessing.std),
    }


def export_hf(
    checkpoint: str | Path, output: str | Path, *, license: str = DEFAULT_LICENSE, crop_pct: float | None = None
) -> tuple[Path, float, int]:
    """Write the directory; returns it, max |logits diff| of transformers' reload vs ours, the input size."""
    try:
        import transformers
    except ImportError as error:
        raise DeitError(f"--format hf needs transformers: {HF_EXTRA_HINT}") from error
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DeitError(f"--output {output}: is a file; --format hf writes a folder")
    model, meta, _ = load_inference_model(checkpoint, "cpu", crop_pct=crop_pct)
    model = model.float()
    class_names = meta.labels(model.num_classes)
    config_dict = hf_config_dict(model, class_names)
    config_class = transformers.DeiTConfig if model.distilled else transformers.ViTConfig
    hf_class = getattr(transformers, config_dict["architectures"][0])
    config = config_class(**{k: v for k, v in config_dict.items() if k not in ("model_type", "architectures")})
    config.architectures = config_dict["architectures"]
    hf_model = hf_class(config).eval()
    hf_model.load_state_dict(to_hf_state_dict(model.state_dict(), list(hf_model.state_dict()), source=str(checkpoint)))
    output.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        hf_model.save_pretrained(output, safe_serialization=True)
    preprocessing = EvalPreprocessing.from_meta(meta, model)
    (output / "preprocessor_config.json").write_text(json.dumps(processor_config(preprocessing), indent=2) + "\n")
    (output / "README.md").write_text(model_card(checkpoint, meta, fmt="hf", license=license), encoding="utf-8")
    return output, _reload_diff(output, model, hf_class), model.img_size


def _reload_diff(output: Path, model: nn.Module, hf_class: type) -> float:
    with quiet_progress_bars():
        reloaded = hf_class.from_pretrained(output).eval()
    images = torch.randn(2, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return float((reloaded(pixel_values=images).logits - model(images)).abs().max())


__all__ = ["export_hf", "hf_config_dict", "processor_config"]
