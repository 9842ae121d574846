"""The in-memory, batched training path: a small data set decoded once into one uint8 tensor, augmented per batch.

For the small-input recipe (`--input-size` <= 32: resize to the input size, a random crop with 4 pixels of zero
padding, a horizontal flip, normalisation -- `deit.data.transforms`) every image is resized once, padded once and
kept as one (N, 3, S + 8, S + 8) uint8 tensor on the training device. A batch is then one gather (each sample's
crop window), one flip and one normalisation on the whole batch: no PIL, no DataLoader, no collate, and on a GPU
no host-to-device copy per step.

Same distribution as the per-image transform: torchvision's `RandomCrop(padding=4)` draws the offsets uniformly
in [0, 8] and the flip with probability `hflip`; so do these draws. Same order rules as the per-image path: the
indices come from the same sampler (DistributedSampler or repeated augmentation: seed + epoch, rank sharding), and
the augmentation draws from a generator seeded by (seed, epoch, rank), so an epoch repeats exactly on resume.

Each sample's view is one of a finite set -- crop offset (81 at padding 4) x flip -- and is known by its index,
which is what makes the teacher table exact (`deit.distill.teacher_table`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from deit.data.transforms import SMALL_INPUT, augment_policy_set

PADDING = 4  # the official small-image crop's padding (transforms.py)


def memory_refusal(
    *,
    data_set: Dataset,
    input_size: int,
    aa: str | None,
    color_jitter: float | None,
    reprob: float,
    three_augment: bool,
    iterable: bool,
) -> str | None:
    """Why the in-memory path cannot reproduce this recipe (None: it can)."""
    if iterable or not hasattr(_base_dataset(data_set)[0], "images"):
        return "the data set is not held as an array of images (only DIGITS and CIFAR are)"
    if input_size > SMALL_INPUT:
        return f"--input-size {input_size} uses RandomResizedCrop, which the in-memory path does not batch yet"
    if three_augment:
        return "--three-augment (grayscale/solarize/blur) is per-image"
    if augment_policy_set(aa):
        return f"--aa {aa} (RandAugment) is per-image"
    if color_jitter:
        return f"--color-jitter {color_jitter} is per-image"
    if reprob:
        return f"--reprob {reprob} (random erasing) is not batched yet"
    return None


def _base_dataset(data_set: Dataset) -> tuple[Any, list[int]]:
    """(the array-backed data set under any Subset wrappers, the positions of `data_set`'s items in it)."""
    indices = list(range(len(data_set)))  # type: ignore[arg-type]
    while isinstance(data_set, Subset):
        indices = [int(data_set.indices[i]) for i in indices]
        data_set = data_set.dataset
    return data_set, indices


def decode(data_set: Dataset, input_size: int, interpolation: str = "bicubic") -> tuple[Tensor, Tensor]:
    """(uint8 images (N, 3, S, S) resized as the per-image transform does, int64 labels (N,)), on the CPU."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from deit.data.transforms import _interpolation_mode

    base, positions = _base_dataset(data_set)
    resize = T.Compose([T.Resize(input_size, _interpolation_mode(interpolation, "bicubic")), T.PILToTensor()])

    def decoded(array: np.ndarray) -> Tensor:
        if array.ndim == 2:  # grayscale (DIGITS): resized once, not three times -- each channel resizes alone
            return resize(Image.fromarray(array)).expand(3, -1, -1)
        return resize(Image.fromarray(array).convert("RGB"))

    images = torch.stack([decoded(np.asarray(base.images[i])) for i in positions])
    labels = torch.tensor([int(base.targets[i]) for i in positions], dtype=torch.long)
    return images, labels


@dataclass(frozen=True)
class ViewSet:
    """The finite set of training views: crop offsets (dy, dx) in [0, 2·padding] and, with `hflip` > 0, a flip."""

    size: int
    padding: int = PADDING
    hflip: float = 0.0

    @property
    def offsets(self) -> int:
        """Crop offsets per axis."""
        return 2 * self.padding + 1

    @property
    def count(self) -> int:
        """Distinct views of one image: offsets² x (2 with a flip)."""
        return self.offsets**2 * (2 if self.hflip > 0 else 1)

    def describe(self) -> str:
        """A stable text for cache keys and messages."""
        return f"crop{self.size}-pad{self.padding}-flip{self.hflip:g}"


class BatchAugment:
    """Crop, flip and normalise whole batches of a padded uint8 image tensor; views are addressed by index."""

    def __init__(self, images: Tensor, views: ViewSet, mean: Sequence[float], std: Sequence[float]) -> None:
        p = views.padding
        padded = F.pad(images, (p, p, p, p))  # zero fill, as RandomCrop(padding=4)
        self.padded = padded
        self.views = views
        device = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        width, size = padded.shape[-1], views.size
        span = torch.arange(size, device=device)
        # A crop is a fixed grid of flat positions shifted by dy·width + dx (columns reversed when flipped):
        # one row of this (views, S·S) table per view, so a batch is one gather, no PIL.
        grid = span[:, None] * width + span[None, :]
        mirrored = span[:, None] * width + span.flip(0)[None, :]
        dy, dx, flip = self.split_view(torch.arange(views.count, device=device))
        shift = (dy * width + dx)[:, None]
        self._view_grids = torch.where(flip[:, None], mirrored.view(1, -1), grid.view(1, -1)) + shift

    def __call__(self, indices: Tensor, view: Tensor) -> Tensor:
        """Normalised float images (B, C, S, S) for `indices` at view numbers `view` (see `split_view`)."""
        source = self.padded[indices].flatten(2)
        channels, size = source.shape[1], self.views.size
        grid = self._view_grids[view][:, None, :].expand(-1, channels, -1)
        crops = source.gather(2, grid).view(-1, channels, size, size)
        # ToTensor then Normalize, in the same order of float operations as the per-image transform.
        return (crops.float().div_(255.0) - self.mean).div_(self.std)

    def split_view(self, view: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """View number -> (dy, dx, flip): v = (flip · offsets + dy) · offsets + dx."""
        n = self.views.offsets
        return (view // n) % n, view % n, view >= n * n

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        """`count` view numbers with the per-image transform's distribution (uniform offsets, flip w.p. hflip)."""
        n = self.views.offsets
        dy = torch.randint(0, n, (count,), generator=generator)
        dx = torch.randint(0, n, (count,), generator=generator)
        flip = torch.rand(count, generator=generator) < self.views.hflip
        return (flip.long() * n + dy) * n + dx


class MemoryLoader:
    """An epoch of (images, labels[, teacher logits]) batches from a `BatchAugment`, in the sampler's order.

    Also the run's sampler: `set_epoch` reseeds both the order and the augmentation.
    """

    def __init__(
        self,
        augment: BatchAugment,
        labels: Tensor,
        sampler: Any,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        teacher_table: Tensor | None = None,
    ) -> None:
        self.augment, self.labels, self.sampler = augment, labels.to(augment.padded.device), sampler
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.teacher_table = teacher_table
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and augmentation the next iteration draws."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # drop_last, as the per-image loader

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.augment.padded.device
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1009 + self.rank)
        views = self.augment.draw(len(order), generator)
        order, views = order.to(device), views.to(device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices, view = order[start : start + self.batch_size], views[start : start + self.batch_size]
            batch = (self.augment(indices, view), self.labels[indices])
            if self.teacher_table is not None:
                batch += (self.teacher_table[indices, view].float(),)
            yield batch
