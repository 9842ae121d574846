"""DIGITS-CANVAS: the embedded digits, each enlarged ×2 and placed at its own random position on a 32×32 canvas.

A harder, still offline variant of DIGITS for data-efficiency experiments: a digit (8×8, enlarged to 16×16)
may sit anywhere in the frame, so a model must recognise it at every position. A convnet's translation
equivariance gives it that for free; a small ViT must learn it from its images, which is the regime where the
paper's thesis (a convnet teacher hands its inductive bias to the transformer) has something to hand over.

The split is DIGITS' own (1,437 train / 360 val, the same images); each image's position is drawn once from a
fixed seed and its index in scikit-learn's 1,797 digits, so every run, process and machine sees the same canvas.
Normalise with `DIGITS_CANVAS_MEAN` / `DIGITS_CANVAS_STD` (the training split's own statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from deit.data.digits import DigitsDataset, _load_digits_uint8, _split_indices

CANVAS_SIZE = 32
DIGIT_SCALE = 2  # 8x8 -> 16x16: a digit spans half the canvas' side, anywhere in it
CANVAS_PLACEMENT_SEED = 0
#: Mean and std of the training split's canvas pixels in [0, 1] (the same for the three channels).
DIGITS_CANVAS_MEAN = (0.0764, 0.0764, 0.0764)
DIGITS_CANVAS_STD = (0.2298, 0.2298, 0.2298)


class DigitsCanvasDataset(DigitsDataset):
    """The training or validation split of DIGITS-CANVAS, as (PIL RGB 32x32, label) pairs."""

    def __init__(self, *, train: bool, transform: Callable | None = None) -> None:
        super().__init__(train=train, transform=transform)
        _, labels = _load_digits_uint8()
        train_indices, val_indices = _split_indices(tuple(labels.tolist()))
        self.images = _canvases()[train_indices if train else val_indices]


@lru_cache(maxsize=1)
def _canvases() -> np.ndarray:
    """All 1,797 digits on their canvases, (N, 32, 32) uint8, positions drawn from the fixed seed."""
    images, _ = _load_digits_uint8()
    digit = images.shape[-1] * DIGIT_SCALE
    offsets = np.random.default_rng(CANVAS_PLACEMENT_SEED).integers(0, CANVAS_SIZE - digit + 1, size=(len(images), 2))
    # Nearest-neighbour enlargement: the strokes stay sharp blocks, as a bigger pen would draw them.
    enlarged = images.repeat(DIGIT_SCALE, axis=1).repeat(DIGIT_SCALE, axis=2)
    canvases = np.zeros((len(images), CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    for canvas, image, (top, left) in zip(canvases, enlarged, offsets):
        canvas[top : top + digit, left : left + digit] = image
    return canvases
