"""The in-memory batched path against the per-image transform it replaces: every batched view is one the
per-image transform can produce (pixel for pixel), the views are drawn with its distribution, and epochs are
seeded, resumable and sharded as the DataLoader path's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from deit.data.digits import DIGITS_MEAN, DIGITS_STD, DigitsDataset
from deit.data.memory import BatchAugment, MemoryLoader, ViewSet, decode, memory_refusal
from deit.data.subset import stratified_subset
from deit.data.transforms import build_transform


class NoiseImages(torch.utils.data.Dataset):
    """Array-backed like DIGITS and CIFAR, with random pixels so that no two crop views coincide."""

    def __init__(self, count: int = 6, side: int = 8, seed: int = 0) -> None:
        self.images = np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), dtype=np.uint8)
        self.targets = [index % 3 for index in range(count)]
        self.classes = ["a", "b", "c"]

    def __len__(self) -> int:
        return len(self.targets)


def _paper_train_transform(hflip: float):
    return build_transform(
        True,
        input_size=16,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        color_jitter=None,
        auto_augment="none",
        reprob=0.0,
        hflip=hflip,
    )


@pytest.mark.parametrize("hflip", [0.0, 0.5])
def test_every_per_image_draw_is_one_batched_view_and_the_views_are_drawn_alike(hflip: float) -> None:
    from PIL import Image

    data = NoiseImages()
    images, _ = decode(data, 16)
    views = ViewSet(size=16, hflip=hflip)
    augment = BatchAugment(images, views, DIGITS_MEAN, DIGITS_STD)
    every_view = augment(torch.zeros(views.count, dtype=torch.long), torch.arange(views.count))
    transform = _paper_train_transform(hflip)
    torch.manual_seed(0)
    picture = Image.fromarray(data.images[0]).convert("RGB")
    found = []
    for _ in range(400):
        sample = transform(picture)
        error = (every_view - sample).abs().flatten(1).amax(1)
        assert float(error.min()) < 1e-5, "a per-image crop that no batched view reproduces"
        found.append(int(error.argmin()))
    per_image = np.bincount(found, minlength=views.count)
    batched = np.bincount(augment.draw(400, torch.Generator().manual_seed(1)).numpy(), minlength=views.count)
    dy, dx, flip = augment.split_view(torch.tensor(found))
    for draws in (per_image, batched):
        assert draws.sum() == 400
    # Same distribution: uniform offsets in [0, 8] on both axes, flip rate hflip (loose bounds, 400 draws).
    for values in (dy, dx):
        counts = np.bincount(values.numpy(), minlength=9)
        assert counts.min() > 15 and counts.max() < 75
    assert abs(float(flip.float().mean()) - hflip) < 0.08
    many = augment.draw(20_000, torch.Generator().manual_seed(2))
    dy2, dx2, flip2 = augment.split_view(many)
    for values in (dy2, dx2):
        frequencies = np.bincount(values.numpy(), minlength=9) / 20_000
        assert np.abs(frequencies - 1 / 9).max() < 0.012
    assert abs(float(flip2.float().mean()) - hflip) < 0.015


def test_decode_matches_the_per_image_resize_on_digits_subsets() -> None:
    from PIL import Image
    from torchvision import transforms as T

    subset = stratified_subset(DigitsDataset(train=True), 0.1, 0)
    images, labels = decode(subset, 32)
    assert images.shape == (len(subset), 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == list(subset.targets)
    resize = T.Compose([T.Resize(32, T.InterpolationMode.BICUBIC), T.PILToTensor()])
    base = subset.dataset
    for position in (0, 7, len(subset) - 1):
        original = Image.fromarray(base.images[subset.indices[position]]).convert("RGB")
        assert torch.equal(images[position], resize(original))


def _loader(data, *, seed: int = 0, rank: int = 0, replicas: int = 1, batch: int = 4) -> MemoryLoader:
    images, labels = decode(data, 8)
    sampler = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
    augment = BatchAugment(images, ViewSet(size=8, hflip=0.5), DIGITS_MEAN, DIGITS_STD)
    return MemoryLoader(augment, labels, sampler, batch_size=batch, seed=seed, rank=rank)


def _epoch(loader: MemoryLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_epochs_repeat_exactly_differ_between_epochs_and_seeds_and_drop_the_last_batch() -> None:
    data = NoiseImages(count=10)
    first, again = _epoch(_loader(data), 3), _epoch(_loader(data), 3)  # a fresh loader: as after a resume
    assert len(first) == 2  # 10 images, batch 4, drop_last
    for (a, y), (b, z) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(y, z)
    other_epoch, other_seed = _epoch(_loader(data), 4), _epoch(_loader(data, seed=1), 3)
    assert not torch.equal(first[0][0], other_epoch[0][0]) and not torch.equal(first[0][0], other_seed[0][0])
    labels = torch.tensor(data.targets)
    assert all(y.dtype == torch.long and set(y.tolist()) <= set(labels.tolist()) for _, y in first)


def test_two_ranks_share_an_epoch_without_overlap_as_the_distributed_sampler() -> None:
    data = NoiseImages(count=8)
    seen = []
    for rank in range(2):
        loader = _loader(data, rank=rank, replicas=2, batch=2)
        loader.set_epoch(0)
        order = list(iter(loader.sampler))
        seen += order
        labels = torch.cat([y for _, y in loader])
        assert labels.tolist() == [data.targets[i] for i in order]
    assert sorted(seen) == list(range(8))


def test_what_cannot_be_batched_is_refused_with_the_flag_named() -> None:
    common = dict(
        data_set=NoiseImages(),
        input_size=32,
        aa="none",
        color_jitter=None,
        three_augment=False,
        iterable=False,
    )
    assert memory_refusal(**common) is None
    assert "--aa rand-m9" in memory_refusal(**{**common, "aa": "rand-m9-mstd0.5-inc1"})
    assert memory_refusal(**{**common, "input_size": 64}) is None  # RandomResizedCrop, batched
    assert "--src" in memory_refusal(**{**common, "input_size": 64, "simple_random_crop": True})
    assert "--train-interpolation lanczos" in memory_refusal(**{**common, "input_size": 64, "interpolation": "lanczos"})
    assert "--color-jitter" in memory_refusal(**{**common, "color_jitter": 0.3})
    assert "--three-augment" in memory_refusal(**{**common, "three_augment": True})
    assert "array of images" in memory_refusal(
        **{**common, "data_set": torch.utils.data.TensorDataset(torch.zeros(2, 3))}
    )
    assert "array of images" in memory_refusal(**{**common, "iterable": True})


def test_epochs_with_random_erasing_repeat_exactly_and_leave_the_global_random_streams_alone() -> None:
    import random

    from deit.data.batch_erasing import BatchErasing

    data = NoiseImages(count=12)

    def erasing_loader() -> MemoryLoader:
        loader = _loader(data)
        loader.erasing = BatchErasing(0.5, "pixel", 1, torch.device("cpu"))
        return loader

    random.seed(5)
    torch.manual_seed(5)
    python_before, torch_before = random.getstate(), torch.get_rng_state()
    first = _epoch(erasing_loader(), 2)
    assert random.getstate() == python_before and torch.equal(torch.get_rng_state(), torch_before)
    random.seed(6)  # other draws in between (a resumed process starts elsewhere) change nothing
    torch.manual_seed(6)
    again = _epoch(erasing_loader(), 2)
    plain = _epoch(_loader(data), 2)
    erased = 0
    for (a, y), (b, z), (c, w) in zip(first, again, plain):
        assert torch.equal(a, b) and torch.equal(y, z) and torch.equal(y, w)
        changed = (a != c).flatten(1).any(1)  # same crops, some samples erased
        erased += int(changed.sum())
    assert 0 < erased < 12
    assert not torch.equal(torch.cat([a for a, _ in first]), torch.cat([a for a, _ in _epoch(erasing_loader(), 3)]))


def test_pixels_normalised_once_equal_the_per_batch_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    import deit.data.memory as memory

    images, _ = decode(NoiseImages(count=9), 16)
    views = ViewSet(size=16, hflip=0.5)
    cached = BatchAugment(images, views, DIGITS_MEAN, DIGITS_STD)
    monkeypatch.setattr(memory, "NORMALISED_CACHE_BYTES", 0)  # a set too large for the float copy
    per_batch = BatchAugment(images, views, DIGITS_MEAN, DIGITS_STD)
    assert cached._normalised is not None and per_batch._normalised is None
    generator = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 9, (40,), generator=generator)
    view = cached.draw(40, generator)
    assert torch.equal(cached(indices, view), per_batch(indices, view))  # bit for bit: same operations per pixel
