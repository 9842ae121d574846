"""Random erasing on the in-memory path draws what the per-image transform draws: the same share of samples
erased, rectangles within timm's area bounds, the same sizes on average, and repeatably per seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data.batch_erasing import BatchErasing
from deit.data.digits import DIGITS_MEAN, DIGITS_STD
from deit.data.memory import BatchAugment, ViewSet
from deit.data.transforms import build_transform

SIZE = 32
REPROB = 0.4
SAMPLES = 1200


def _erased_areas(clean: torch.Tensor, erased: torch.Tensor) -> list[int]:
    """Per sample: 0 when untouched, else the erased rectangle's area (asserted to be one rectangle)."""
    areas = []
    for before, after in zip(clean, erased):
        mask = (before != after).any(0)
        if not mask.any():
            areas.append(0)
            continue
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = (int(rows[-1]) - int(rows[0]) + 1) * (int(columns[-1]) - int(columns[0]) + 1)
        assert int(mask.sum()) == box, "erased pixels that are not one rectangle"
        areas.append(box)
    return areas


def _per_image_areas(pictures: list[Image.Image], remode: str) -> list[int]:
    transform = build_transform(
        True,
        input_size=SIZE,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        color_jitter=None,
        auto_augment="none",
        reprob=REPROB,
        remode=remode,
        hflip=0.0,
    )
    erasing = transform.transforms[-1]
    assert type(erasing).__name__ == "RandomErasing" and erasing.probability == REPROB and erasing.mode == remode
    before_erasing = type(transform)(transform.transforms[:-1])
    torch.manual_seed(0)
    areas = []
    for index in range(SAMPLES):
        clean = before_erasing(pictures[index % len(pictures)])
        areas += _erased_areas(clean[None], erasing(clean.clone())[None])
    return areas


@pytest.mark.parametrize("remode", ["pixel", "const"])
def test_the_batch_is_erased_as_the_per_image_transform_erases(remode: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 255, (8, SIZE, SIZE, 3), dtype=np.uint8)  # no pixel normalises to exactly 0
    pictures = [Image.fromarray(image) for image in pixels]
    per_image = np.array(_per_image_areas(pictures, remode))
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    augment = BatchAugment(images, ViewSet(SIZE), DIGITS_MEAN, DIGITS_STD)
    erasing = BatchErasing(REPROB, remode, 1, torch.device("cpu"))
    indices = torch.arange(SAMPLES) % len(pixels)
    views = augment.draw(SAMPLES, torch.Generator().manual_seed(1))
    batched = []
    for start in range(0, SAMPLES, 100):  # a batch at a time, as the loader does
        clean = augment(indices[start : start + 100], views[start : start + 100])
        batched += _erased_areas(clean, erasing(clean.clone(), seed=start))
    batched = np.array(batched)
    area = SIZE * SIZE
    for areas in (per_image, batched):
        share = float((areas > 0).mean())
        assert abs(share - REPROB) < 0.05, share  # ~ 3.5 standard deviations at 1,200 samples
        erased = areas[areas > 0] / area
        # timm's bounds (min_area 0.02, max_area 1/3), widened only by its rounding of height and width.
        assert erased.min() >= 0.02 * 0.5 and erased.max() <= 1 / 3 * 1.25
    per_image_mean, batched_mean = (a[a > 0].mean() / area for a in (per_image, batched))
    assert abs(per_image_mean - batched_mean) < 0.03, (per_image_mean, batched_mean)
    assert 0.12 < batched_mean < 0.22  # uniform in [0.02, 1/3]: mean ~0.18


def test_the_same_seed_erases_the_same_pixels_and_another_seed_others() -> None:
    erasing = BatchErasing(1.0, "pixel", 3, torch.device("cpu"))
    batch = torch.zeros(6, 3, 16, 16)
    first, again, other = (erasing(batch.clone(), seed) for seed in (7, 7, 8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert bool((first != 0).flatten(1).any(1).all())  # probability 1: every sample erased
    const = BatchErasing(1.0, "const", 1, torch.device("cpu"))(torch.ones(4, 3, 16, 16), 0)
    assert bool((const == 0).flatten(1).any(1).all())  # const mode fills with zeros
