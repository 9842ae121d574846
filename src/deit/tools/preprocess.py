"""A trained model's own evaluation preprocessing (from its checkpoint meta), and loading it for inference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from deit.errors import DeitError
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class EvalPreprocessing:
    """What the model saw at evaluation: resize to `input_size / crop_pct`, center crop, normalise."""

    input_size: int
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_meta(cls, meta: dict[str, Any], model: Any = None) -> EvalPreprocessing:
        """Read it from checkpoint meta; missing keys fall back to the model's size and the paper's defaults."""
        input_size = meta.get("input_size") or getattr(model, "img_size", None) or 224
        return cls(
            input_size=int(input_size),
            crop_pct=float(meta.get("crop_pct") or 0.875),
            interpolation=str(meta.get("interpolation") or "bicubic"),
            mean=tuple(float(v) for v in (meta.get("mean") or IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in (meta.get("std") or IMAGENET_STD)),  # type: ignore[arg-type]
        )

    def transform(self) -> Callable[[Image.Image], Tensor]:
        """PIL image to a normalised (3, input_size, input_size) tensor: the transform training evaluated with."""
        from deit.data import build_transform

        return build_transform(False, input_size=self.input_size, mean=self.mean, std=self.std,
                               interpolation=self.interpolation, eval_crop_ratio=self.crop_pct)

    def denormalize(self, images: Tensor) -> Tensor:
        """Undo the normalisation of (B, 3, H, W) images, clamped to [0, 1], for display."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)


def class_names_from_meta(meta: dict[str, Any], num_classes: int) -> list[str]:
    """The checkpoint's class names, or the indices as strings when it has none (or a wrong count)."""
    names = meta.get("class_names")
    if names and len(names) == num_classes:
        return [str(name) for name in names]
    return [str(index) for index in range(num_classes)]


def load_inference_model(checkpoint: str | Path, device: str | torch.device | None = None
                         ) -> tuple[torch.nn.Module, dict[str, Any], torch.device]:
    """The trained model in eval mode on `device`, its meta, and the resolved device."""
    from deit.models.factory import load_trained_model

    path = Path(checkpoint)
    if not path.exists():
        raise DeitError(f"--checkpoint {path}: no such file or directory")
    from deit.perf import resolve_device

    resolved = resolve_device(device)
    model, meta = load_trained_model(path, resolved)
    return model.eval(), dict(meta or {}), resolved

