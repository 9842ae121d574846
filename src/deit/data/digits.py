"""DIGITS: scikit-learn's bundled 8x8 handwritten digits, the offline data set for demos and smoke tests.

1,797 grayscale images (pixel values 0..16, ten classes '0'..'9') ship inside scikit-learn, so nothing is
downloaded. The split is fixed: a stratified 80/20 split with seed 0 gives 1,437 training and 360 validation
images (35-37 per class). Pixels are scaled to 0..255 and served as 8x8 PIL RGB images; the transform upsamples
them to the model's input size (e.g. 32).

Normalise DIGITS with `DIGITS_MEAN` / `DIGITS_STD` (the training split's own statistics), not ImageNet's: the
images are mostly black background with white strokes, far from ImageNet's colour statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

DIGITS_SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 0.2
#: Mean and std of the training split's pixels in [0, 1] (the same for the three channels).
DIGITS_MEAN = (0.3054, 0.3054, 0.3054)
DIGITS_STD = (0.3760, 0.3760, 0.3760)


class DigitsDataset(Dataset):
    """The training or validation split of scikit-learn's digits, as (PIL RGB 8x8, label) pairs."""

    def __init__(self, *, train: bool, transform: Callable | None = None) -> None:
        images, labels = _load_digits_uint8()
        train_indices, val_indices = _split_indices(tuple(labels.tolist()))
        chosen = train_indices if train else val_indices
        self.images = images[chosen]
        self.targets = [int(label) for label in labels[chosen]]
        self.transform = transform
        self.classes = [str(digit) for digit in range(10)]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


@lru_cache(maxsize=1)
def _load_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


@lru_cache(maxsize=1)
def _split_indices(labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    train_indices, val_indices = train_test_split(
        indices, test_size=DIGITS_VAL_FRACTION, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    return np.sort(train_indices), np.sort(val_indices)
