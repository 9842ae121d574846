"""Augmentations: timm's RandAugment made safe on Pillow 13, and DeiT III's 3-Augment.

The posterize trap. timm's `rand-m9-mstd0.5-inc1` draws each op's magnitude from N(9, 0.5) and clamps it to
[0, 10]. `PosterizeIncreasing` maps magnitude m to `4 - int(m / 10 * 4)` bits to keep, so a draw of 10 or more
(about 2.3% of draws) asks to keep 0 bits. Pillow up to 12 answered `ImageOps.posterize(img, 0)` with a black
image; Pillow 13 raises `ValueError: bits must be between or equal to 1 and 8`, which ends the epoch (roughly
one image in 700 with the paper's recipe). The same 0-bit level occurs in timm's AutoAugment and AugMix
policies. `make_posterize_safe` swaps those ops' function for `posterize_any_bits`, which keeps Pillow 12's
answer (0 bits -> black), so the augmentation distribution stays the one DeiT was trained with.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageFilter, ImageOps
from timm.data.auto_augment import AugmentOp


def posterize_any_bits(image: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize op for any bit count: >= 8 keeps the image, <= 0 gives black (as Pillow <= 12 did)."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return image.point(lambda _value: 0)
    return ImageOps.posterize(image, int(bits_to_keep))


def make_posterize_safe(transform: Any) -> int:
    """Re-point every timm posterize op inside `transform` (Compose, RandAugment, AutoAugment, AugMix) to
    `posterize_any_bits`; return how many ops were changed."""
    return sum(1 for op in _augment_ops(transform) if _patch(op))


def _patch(op: AugmentOp) -> bool:
    if not op.name.startswith("Posterize"):
        return False
    op.aug_fn = posterize_any_bits
    return True


def _augment_ops(node: Any, depth: int = 0):
    if depth > 6:
        return
    if isinstance(node, AugmentOp):
        yield node
        return
    if isinstance(node, (list, tuple)):
        for child in node:
            yield from _augment_ops(child, depth + 1)
        return
    # Compose.transforms, RandAugment.ops, AugMixAugment.ops, AutoAugment.policy (a list of op lists)
    for attribute in ("transforms", "ops", "policy"):
        children = getattr(node, attribute, None)
        if isinstance(children, (list, tuple)):
            yield from _augment_ops(children, depth + 1)


class RandomGaussianBlur:
    """PIL Gaussian blur, radius uniform in [radius_min, radius_max] (DeiT III's 3-Augment blur; torchvision's
    GaussianBlur works on a fixed kernel size instead)."""

    def __init__(self, radius_min: float = 0.1, radius_max: float = 2.0) -> None:
        self.radius_min, self.radius_max = radius_min, radius_max

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(radius=[{self.radius_min}, {self.radius_max}])"
