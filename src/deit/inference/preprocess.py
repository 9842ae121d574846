"""A trained model's own evaluation preprocessing (from its checkpoint meta), and loading it for inference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from deit.models.meta import CheckpointMeta


@dataclass(frozen=True)
class EvalPreprocessing:
    """What the model saw at evaluation: resize to `input_size / crop_pct`, center crop, normalise."""

    input_size: int
    crop_pct: float = CheckpointMeta.crop_pct  # the schema's defaults, for a meta that lacks them
    interpolation: str = CheckpointMeta.interpolation
    mean: tuple[float, ...] = CheckpointMeta.mean
    std: tuple[float, ...] = CheckpointMeta.std

    @classmethod
    def from_meta(cls, meta: CheckpointMeta, model: Any = None) -> EvalPreprocessing:
        """Read it from checkpoint meta; a meta without an input size falls back to the model's."""
        input_size = meta.input_size or getattr(model, "img_size", None) or 224
        return cls(
            input_size=int(input_size),
            crop_pct=meta.crop_pct,
            interpolation=meta.interpolation,
            mean=tuple(float(v) for v in meta.mean),
            std=tuple(float(v) for v in meta.std),
        )

    def transform(self) -> Callable[[Image.Image], Tensor]:
        """PIL image to a normalised (3, input_size, input_size) tensor: the transform training evaluated with."""
        from deit.data import build_transform

        return build_transform(
            False,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
            eval_crop_ratio=self.crop_pct,
        )

    def denormalize(self, images: Tensor) -> Tensor:
        """Undo the normalisation of (B, 3, H, W) images, clamped to [0, 1], for display."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)


def load_inference_model(
    checkpoint: str | Path, device: str | torch.device | None = None
) -> tuple[torch.nn.Module, CheckpointMeta, torch.device]:
    """The trained model in eval mode on `device`, its meta, and the resolved device."""
    from deit.io import require_regular_file
    from deit.models.factory import load_trained_model

    path = require_regular_file(checkpoint, flag="--checkpoint", allow_directory=True)
    from deit.perf import resolve_device

    resolved = resolve_device(device)
    model, meta = load_trained_model(path, resolved)
    return model.eval(), meta, resolved
