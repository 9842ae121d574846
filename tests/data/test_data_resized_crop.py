"""Batched RandomResizedCrop: torchvision's box distribution, torchvision's pixels (both forms), the store's
normalisation, and loader epochs that repeat on resume and split over ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from deit.data.memory import MemoryLoader
from deit.data.memory_resized import CropSettings, ResizedCropAugment
from deit.data.resized_crop import draw_boxes, resized_crops

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.parametrize(
    ("height", "width", "scale", "ratio"), [(48, 64, (0.08, 1.0), (3 / 4, 4 / 3)), (64, 64, (0.35, 1.0), (0.5, 2.0))]
)
def test_ten_thousand_boxes_follow_torchvisions_get_params(height: int, width: int, scale: tuple, ratio: tuple) -> None:
    count = 10_000
    ours = draw_boxes(
        torch.full((count,), height), torch.full((count,), width), scale, ratio, torch.Generator().manual_seed(0)
    ).numpy()
    torch.manual_seed(1)
    image = torch.zeros(3, height, width)
    theirs = np.array([RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(count)])
    # Critical value of the two-sample KS test at alpha = 0.001 for n = m = 10,000: 1.949 * sqrt(2 / 10,000).
    critical = 1.949 * np.sqrt(2 / count)
    for name, pick in (
        ("area", lambda boxes: boxes[:, 2] * boxes[:, 3] / (height * width)),
        ("aspect", lambda boxes: boxes[:, 3] / boxes[:, 2]),
        ("top", lambda boxes: boxes[:, 0] / (height - boxes[:, 2] + 1)),
        ("left", lambda boxes: boxes[:, 1] / (width - boxes[:, 3] + 1)),
    ):
        assert _ks_statistic(pick(ours), pick(theirs)) < critical, name
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    assert (ours[:, 2:] > 0).all()


def test_when_no_box_fits_the_fallback_is_torchvisions_centred_crop() -> None:
    # A 10 x 100 strip with square boxes of at least 90% of its area: no try fits.
    ours = draw_boxes(torch.tensor([10, 100]), torch.tensor([100, 10]), (0.9, 1.0), (1.0, 1.0), torch.Generator())
    theirs = [
        RandomResizedCrop.get_params(torch.zeros(3, h, w), [0.9, 1.0], [1.0, 1.0]) for h, w in ((10, 100), (100, 10))
    ]
    assert ours.tolist() == [list(box) for box in theirs]


@pytest.mark.parametrize("batched", [False, True])
def test_pixels_equal_torchvisions_resized_crop_of_the_stored_image(batched: bool) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 40, 52), dtype=torch.uint8)
    indices = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    # Down- and upscaling, thin boxes, the whole image, a one-pixel box.
    boxes = torch.tensor(
        [
            [0, 0, 40, 52],
            [5, 7, 20, 13],
            [1, 2, 39, 10],
            [0, 30, 8, 22],
            [12, 3, 1, 1],
            [3, 3, 24, 24],
            [0, 0, 33, 50],
            [30, 40, 10, 12],
        ]
    )
    flips = torch.tensor([False, True, False, True, False, True, True, False])
    bicubic = torch.tensor([True, True, False, False, True, False, True, False])
    for size in (24, 32):
        crops = resized_crops(images, indices, boxes, flips, bicubic, size, batched=batched)
        assert crops.dtype == torch.uint8 and crops.shape == (8, 3, size, size)
        for sample, (top, left, height, width) in enumerate(boxes.tolist()):
            mode = InterpolationMode.BICUBIC if bicubic[sample] else InterpolationMode.BILINEAR
            expected = TF.resized_crop(
                images[indices[sample]], top, left, height, width, [size, size], mode, antialias=True
            )
            expected = expected.flip(-1) if flips[sample] else expected
            assert (crops[sample].int() - expected.int()).abs().max() <= 1, (size, sample)


def test_the_augment_normalises_as_to_tensor_and_normalize_within_each_images_own_size() -> None:
    torch.manual_seed(0)
    images = [torch.randint(0, 256, shape, dtype=torch.uint8) for shape in ((3, 30, 44), (3, 50, 20), (3, 24, 24))]
    augment = ResizedCropAugment(images, CropSettings(16, scale=(0.2, 1.0), hflip=0.5), MEAN, STD)
    assert augment.pixels.shape == (3, 3, 50, 44) and augment.nbytes == 3 * 3 * 50 * 44
    indices = torch.arange(3).repeat(400)
    views = augment.draw(len(indices), torch.Generator().manual_seed(0), indices)
    assert views.shape == (1200, 6)
    heights, widths = torch.tensor([30, 50, 24])[indices], torch.tensor([44, 20, 24])[indices]
    assert bool((views[:, 0] + views[:, 2] <= heights).all() and (views[:, 1] + views[:, 3] <= widths).all())
    assert abs(float(views[:, 4].float().mean()) - 0.5) < 0.06 and bool(views[:, 5].all())  # bicubic
    batch = augment(indices[:6], views[:6])
    for sample in range(6):
        top, left, height, width, flip, _ = views[sample].tolist()
        crop = TF.resized_crop(images[sample % 3], top, left, height, width, [16, 16], InterpolationMode.BICUBIC)
        crop = crop.flip(-1) if flip else crop
        expected = TF.normalize(TF.to_dtype(crop, torch.float32, scale=True), MEAN, STD)
        assert torch.allclose(batch[sample], expected, atol=1e-6)
    random = ResizedCropAugment(images, CropSettings(16, interpolation="random"), MEAN, STD)
    share = float(
        random.draw(1000, torch.Generator().manual_seed(1), torch.zeros(1000, dtype=torch.long))[:, 5].float().mean()
    )
    assert 0.4 < share < 0.6  # timm's 'random': bilinear or bicubic per crop


def _loader(rank: int = 0, world: int = 1) -> MemoryLoader:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8)
    augment = ResizedCropAugment(images, CropSettings(16, scale=(0.35, 1.0)), MEAN, STD)
    data = torch.utils.data.TensorDataset(torch.zeros(12))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=3)
    return MemoryLoader(augment, torch.arange(12) % 3, sampler, batch_size=2, seed=3, rank=rank)


def test_a_resumed_epoch_repeats_its_batches_and_ranks_see_disjoint_samples() -> None:
    first = _loader()
    first.set_epoch(0)
    first.set_epoch(2)
    epoch_two = [batch for batch in first]
    resumed = _loader()  # a new process resuming at epoch 2
    resumed.set_epoch(2)
    assert all(torch.equal(a, b) for before, after in zip(epoch_two, resumed) for a, b in zip(before, after))
    first.set_epoch(3)
    assert not torch.equal(next(iter(first))[0], epoch_two[0][0])
    seen = []
    for rank in range(2):
        loader = _loader(rank, 2)
        loader.set_epoch(1)
        seen.append(set(loader.sampler))
        assert len(list(loader)) == 3
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 12
