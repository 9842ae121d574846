"""SYNTHETIC: generated images for smoke tests and benchmarks; no files, no downloads.

Each class has its own base colour; every image is that colour plus per-pixel noise, drawn from a generator
seeded by (seed, split, index). So the data set is deterministic, costs no memory, and is learnable: a model
that trains correctly rises well above chance within an epoch or two, which a smoke test can check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

SYNTHETIC_TRAIN_SIZE = 512
SYNTHETIC_VAL_SIZE = 128
SYNTHETIC_NUM_CLASSES = 10
SYNTHETIC_IMAGE_SIZE = 64
_NOISE = 48


class SyntheticDataset(Dataset):
    """`num_samples` generated RGB images of `image_size`², labels cycling through `num_classes`."""

    def __init__(
        self,
        *,
        train: bool,
        transform: Callable | None = None,
        num_samples: int | None = None,
        num_classes: int = SYNTHETIC_NUM_CLASSES,
        image_size: int = SYNTHETIC_IMAGE_SIZE,
        seed: int = 0,
    ) -> None:
        self.num_samples = (
            num_samples if num_samples is not None else (SYNTHETIC_TRAIN_SIZE if train else SYNTHETIC_VAL_SIZE)
        )
        self.image_size = image_size
        self.transform = transform
        self.classes = [f"class_{index}" for index in range(num_classes)]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.targets = [index % num_classes for index in range(self.num_samples)]
        self.skipped: list[tuple[str, str]] = []
        self._split_seed = (seed, 0 if train else 1)
        palette_rng = np.random.default_rng(seed)
        self._palette = palette_rng.integers(_NOISE, 256 - _NOISE, size=(num_classes, 3))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        target = self.targets[index]
        rng = np.random.default_rng((*self._split_seed, index))
        noise = rng.integers(-_NOISE, _NOISE + 1, size=(self.image_size, self.image_size, 3))
        pixels = np.clip(self._palette[target] + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if self.transform is not None:
            image = self.transform(image)
        return image, target
