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


def with_crop_ratio(meta: CheckpointMeta, crop_pct: float | None) -> CheckpointMeta:
    """`meta` with its evaluation crop ratio replaced by `crop_pct` (`--eval-crop-ratio`; None: as recorded)."""
    import dataclasses

    from deit.errors import DeitError

    if crop_pct is None:
        return meta
    if not 0.0 < crop_pct <= 1.0:
        raise DeitError(f"--eval-crop-ratio {crop_pct}: must be in (0, 1]")
    return dataclasses.replace(meta, crop_pct=float(crop_pct))


def load_inference_model(
    checkpoint: str | Path, device: str | torch.device | None = None, *, crop_pct: float | None = None
) -> tuple[torch.nn.Module, CheckpointMeta, torch.device]:
    """The trained model in eval mode on `device`, its meta (`crop_pct`: the evaluation crop ratio to use
    instead of the recorded one), and the resolved device."""
    from deit.io import require_regular_file
    from deit.models.factory import load_trained_model

    path = require_regular_file(checkpoint, flag="--checkpoint", allow_directory=True)
    from deit.perf import resolve_device

    resolved = resolve_device(device)
    model, meta = load_trained_model(path, resolved)
    return model.eval(), with_crop_ratio(meta, crop_pct), resolved
