"""The in-memory, batched training path: a data set decoded once into one uint8 tensor, augmented per batch.

Above 32 px the training crop is RandomResizedCrop, batched by `deit.data.memory_resized`; this module holds
the choice (`memory_refusal`), the decoding (`decode`) and the loader, and the small-input recipe's crop:

For the small-input recipe (`--input-size` <= 32: resize to the input size, a random crop with 4 pixels of zero
padding, a horizontal flip, normalisation, random erasing -- `deit.data.transforms`) every image is resized once,
padded once and kept in one uint8 tensor on the training device. A batch is then one gather (each sample's crop
window, flipped or not), one normalisation and timm's random erasing on the whole batch
(`deit.data.batch_erasing`): no PIL, no DataLoader, no collate, and on a GPU no host-to-device copy per step.

Array-backed data sets (DIGITS, CIFAR) are square and held as (N, 3, S + 8, S + 8); image folders
(`deit.data.memory_folder`, bounded by a cap) keep each image's aspect ratio after the shorter-side resize,
as the per-image transform does, so their crop may move further along the long side.

Same distribution as the per-image transform: torchvision's `RandomCrop(padding=4)` draws the offsets uniformly
over what the padded image allows ([0, 8] on a square one) and the flip with probability `hflip`; so do these
draws. Same order rules as the per-image path: the indices come from the same sampler (DistributedSampler or
repeated augmentation: seed + epoch, rank sharding), and the augmentation and erasing draw from a generator
seeded by (seed, epoch, rank), so an epoch repeats exactly on resume.

On square images each sample's view is one of a finite set -- crop offset (81 at padding 4) x flip -- and is
known by its index, which is what makes the teacher table exact (`deit.distill.teacher_table`); random erasing
and images of other shapes end that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from deit.data.batch_erasing import BatchErasing
from deit.data.memory_folder import decode_folder, folder_refusal, is_folder, least_bytes
from deit.data.memory_resized import INTERPOLATIONS, store_bytes, store_side
from deit.data.transforms import SMALL_INPUT, augment_policy_set

PADDING = 4  # the official small-image crop's padding (transforms.py)


def memory_refusal(
    *,
    data_set: Dataset,
    input_size: int,
    aa: str | None,
    color_jitter: float | None,
    three_augment: bool,
    iterable: bool,
    interpolation: str = "bicubic",
    simple_random_crop: bool = False,
    limit: int | None = None,
) -> str | None:
    """Why the in-memory path cannot reproduce this recipe (None: it can); `limit`: the store's cap in bytes
    (default `deit.data.memory_folder.MAX_DECODED_BYTES`, `--memory-cap-gib`)."""
    base, positions = (None, []) if iterable else _base_dataset(data_set)
    folder = is_folder(base)
    if iterable or not (folder or hasattr(base, "images")):
        return "the data set is not held as an array of images (only DIGITS, CIFAR and image folders are)"
    if input_size > SMALL_INPUT and simple_random_crop:
        return "--src (the simple random crop) is per-image"
    if input_size > SMALL_INPUT and interpolation not in INTERPOLATIONS:
        return f"--train-interpolation {interpolation} is per-image (batched: {', '.join(INTERPOLATIONS)})"
    if three_augment:
        return "--three-augment (grayscale/solarize/blur) is per-image"
    if augment_policy_set(aa):
        return f"--aa {aa} (RandAugment) is per-image"
    if color_jitter:
        return f"--color-jitter {color_jitter} is per-image"
    if folder:
        return folder_refusal(len(positions), input_size, _least_bytes(len(positions), input_size), limit=limit)
    return None


def _least_bytes(images: int, input_size: int) -> int:
    """What `images` decoded images take at least (padded crop) or about (the resized-crop store)."""
    return least_bytes(images, input_size, PADDING) if input_size <= SMALL_INPUT else store_bytes(images, input_size)


def _base_dataset(data_set: Dataset) -> tuple[Any, list[int]]:
    """(the array-backed data set under any Subset wrappers, the positions of `data_set`'s items in it)."""
    indices = list(range(len(data_set)))  # type: ignore[arg-type]
    while isinstance(data_set, Subset):
        indices = [int(data_set.indices[i]) for i in indices]
        data_set = data_set.dataset
    return data_set, indices


def decode(
    data_set: Dataset, input_size: int, interpolation: str = "bicubic", *, limit: int | None = None
) -> tuple[Tensor | list[Tensor], Tensor]:
    """(uint8 images, int64 labels (N,)), on the CPU: at `input_size` <= 32 resized as the per-image transform
    does (one (N, 3, S, S) tensor for an array-backed data set, a list of (3, H, W) tensors for a folder, aspect
    ratio kept); above, as the resized-crop store keeps them (`deit.data.memory_resized`: shorter side at most
    `store_side`). `limit`: a folder's cap in bytes."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from deit.data.transforms import _interpolation_mode

    base, positions = _base_dataset(data_set)
    if input_size <= SMALL_INPUT:
        # The per-image transform's resize (shorter side to the input size), once per image, to a uint8 tensor.
        resize = T.Compose([T.Resize(input_size, _interpolation_mode(interpolation, "bicubic")), T.PILToTensor()])
    else:
        resize = _shrink_to(store_side(input_size))
    padding = PADDING if input_size <= SMALL_INPUT else 0
    if is_folder(base):
        return decode_folder(base, positions, resize, input_size=input_size, padding=padding, limit=limit)

    def decoded(array: np.ndarray) -> Tensor:
        if array.ndim == 2:  # grayscale (DIGITS): resized once, not three times -- each channel resizes alone
            return resize(Image.fromarray(array)).expand(3, -1, -1)
        return resize(Image.fromarray(array).convert("RGB"))

    images = torch.stack([decoded(np.asarray(base.images[i])) for i in positions])
    labels = torch.tensor([int(base.targets[i]) for i in positions], dtype=torch.long)
    return images, labels


def _shrink_to(side: int) -> Any:
    """PIL image -> uint8 tensor, its shorter side shrunk to `side` (Pillow's bicubic) when longer."""
    from torchvision import transforms as T

    shrink, to_tensor = T.Resize(side, T.InterpolationMode.BICUBIC), T.PILToTensor()

    def resize(image: Any) -> Tensor:
        return to_tensor(shrink(image) if min(image.size) > side else image)

    return resize


@dataclass(frozen=True)
class ViewSet:
    """The finite set of training views: crop offsets (dy, dx) in [0, 2·padding] and, with `hflip` > 0, a flip.

    Finite and the same for every image when the images are square after the resize (DIGITS, CIFAR, a folder of
    square images); a wider or taller image has more offsets along its long side (`BatchAugment.square`).
    """

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


#: Sets whose pixels as float32 fit in this many bytes are normalised once, not per batch (`BatchAugment`).
NORMALISED_CACHE_BYTES = 256 * 2**20


class BatchAugment:
    """Crop, flip and normalise whole batches of padded uint8 images held in one flat tensor; views by index.

    `images`: one (N, 3, H, W) tensor, or a list of (3, H_i, W_i) tensors when the sizes differ (a folder's
    images resized on their shorter side keep their aspect ratio, as in the per-image transform); `device`: where to
    hold them (default: where they are), padded on the CPU first so a folder's images cross once, as one tensor.
    """

    def __init__(
        self,
        images: Tensor | Sequence[Tensor],
        views: ViewSet,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str | None = None,
    ) -> None:
        p, size = views.padding, views.size
        if isinstance(images, Tensor):
            padded = F.pad(images, (p, p, p, p))  # zero fill, as RandomCrop(padding=4)
            count, channels, height, width = padded.shape
            self.pixels = padded.flatten()
            heights, widths = torch.full((count,), height), torch.full((count,), width)
        else:
            shapes = [(image.shape[-2] + 2 * p, image.shape[-1] + 2 * p) for image in images]
            self.pixels = torch.cat([F.pad(image, (p, p, p, p)).flatten() for image in images])
            channels = images[0].shape[0]
            heights = torch.tensor([h for h, _ in shapes])
            widths = torch.tensor([w for _, w in shapes])
        if int(heights.min()) < size or int(widths.min()) < size:
            raise ValueError(f"images smaller than the {size}-pixel crop")
        self.views, self.channels = views, channels
        self.pixels = self.pixels.to(device) if device is not None else self.pixels
        device = self.pixels.device
        areas = heights * widths
        self.starts = (torch.cumsum(areas * channels, 0) - areas * channels).to(device)
        self.heights, self.widths = heights.to(device), widths.to(device)
        # Offsets each image allows along each axis, kept on the CPU where the views are drawn.
        self._row_offsets, self._col_offsets = heights - size + 1, widths - size + 1
        self.row_offsets, self.col_offsets = int(self._row_offsets.max()), int(self._col_offsets.max())
        #: Every image allows exactly the `ViewSet`'s views, so a view number means the same crop for each.
        self.square = bool((self._row_offsets == views.offsets).all() and (self._col_offsets == views.offsets).all())
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._span = torch.arange(size, device=device)
        self._channel = torch.arange(channels, device=device)
        self._view_grids: Tensor | None = None
        if bool((heights == heights[0]).all() and (widths == widths[0]).all()):
            # A crop is a fixed grid of flat positions shifted by dy·width + dx (columns reversed when flipped):
            # one row of this (views, S·S) table per view number.
            every = torch.arange(2 * self.row_offsets * self.col_offsets, device=device)
            columns, rows = self._crop_axes(*self.split_view(every))
            self._view_grids = ((rows * int(widths[0]))[:, :, None] + columns[:, None, :]).flatten(1)
        self._normalised: Tensor | None = None
        if self._view_grids is not None and self.pixels.numel() * 4 <= NORMALISED_CACHE_BYTES:
            # Small sets (DIGITS: 28 MB) keep their pixels normalised once, so a batch is one index and one
            # gather: the same float operations per pixel, in the same order, as `_normalise` on each batch.
            self._normalised = self._normalise(self.pixels.view(len(self.starts), channels, -1, 1)).flatten(2)

    def _crop_axes(self, dy: Tensor, dx: Tensor, flip: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) columns and rows of each crop in its padded image; columns reversed when flipped."""
        span = self._span
        columns = torch.where(flip[:, None], span.flip(0)[None, :], span[None, :]) + dx[:, None]
        return columns, span[None, :] + dy[:, None]

    @property
    def device(self) -> torch.device:
        """Where the images are held."""
        return self.pixels.device

    @property
    def count(self) -> int:
        """Number of images."""
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        """Bytes of uint8 pixels held (padding included)."""
        return self.pixels.numel()

    def __call__(self, indices: Tensor, view: Tensor) -> Tensor:
        """Normalised float images (B, C, S, S) for `indices` at view numbers `view` (see `split_view`)."""
        size = self.views.size
        if self._view_grids is not None:  # one shape: a batch is one copy and one gather from the table
            grid = self._view_grids[view][:, None, :].expand(-1, self.channels, -1)
            if self._normalised is not None:
                return self._normalised[indices].gather(2, grid).view(-1, self.channels, size, size)
            source = self.pixels.view(self.count, self.channels, -1)[indices]
            crops = source.gather(2, grid).view(-1, self.channels, size, size)
        else:  # several shapes: each sample's positions from its own image's start, height and width
            dy, dx, flip = self.split_view(view)
            columns, rows = self._crop_axes(dy, dx, flip)
            width, area = self.widths[indices], self.heights[indices] * self.widths[indices]
            index = (
                self.starts[indices][:, None, None, None]
                + self._channel[None, :, None, None] * area[:, None, None, None]
                + (rows * width[:, None])[:, None, :, None]
                + columns[:, None, None, :]
            )
            crops = self.pixels[index]
        return self._normalise(crops)

    def _normalise(self, crops: Tensor) -> Tensor:
        """uint8 (B, C, H, W) to float: ToTensor then Normalize, in the per-image transform's order of operations."""
        return (crops.float().div_(255.0) - self.mean).div_(self.std)

    def split_view(self, view: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """View number -> (dy, dx, flip): v = (flip · rows + dy) · columns + dx, rows/columns the most offsets
        any image allows (both 2·padding + 1 for square images, as `ViewSet`)."""
        rows, columns = self.row_offsets, self.col_offsets
        return (view // columns) % rows, view % columns, view >= rows * columns

    def draw(self, count: int, generator: torch.Generator, indices: Tensor | None = None) -> Tensor:
        """`count` view numbers for images `indices` with the per-image transform's distribution: offsets
        uniform over what each image allows, flip w.p. hflip (`indices` needed only when the images differ)."""
        rows, columns = self.row_offsets, self.col_offsets
        if self.square:
            dy = torch.randint(0, rows, (count,), generator=generator)
            dx = torch.randint(0, columns, (count,), generator=generator)
        else:
            if indices is None:
                raise ValueError("images of several sizes: draw() needs the indices the views are for")
            indices = indices.cpu()
            dy = (torch.rand(count, generator=generator, dtype=torch.float64) * self._row_offsets[indices]).long()
            dx = (torch.rand(count, generator=generator, dtype=torch.float64) * self._col_offsets[indices]).long()
        flip = torch.rand(count, generator=generator) < self.views.hflip
        return (flip.long() * rows + dy) * columns + dx


class MemoryLoader:
    """An epoch of (images, labels[, teacher logits]) batches from a `BatchAugment`, in the sampler's order.

    Also the run's sampler: `set_epoch` reseeds the order, the augmentation and the random erasing.
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
        erasing: BatchErasing | None = None,
    ) -> None:
        self.augment, self.labels, self.sampler = augment, labels.to(augment.device), sampler
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.teacher_table, self.erasing = teacher_table, erasing
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and augmentation the next iteration draws."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # drop_last, as the per-image loader

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.augment.device
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1009 + self.rank)
        views = self.augment.draw(len(order), generator, order)
        # Drawn after the views, so the views of a run without erasing are what they always were.
        erase_seeds = torch.randint(0, 2**62, (len(self),), generator=generator).tolist() if self.erasing else []
        order, views = order.to(device), views.to(device)
        for step, start in enumerate(range(0, len(self) * self.batch_size, self.batch_size)):
            indices, view = order[start : start + self.batch_size], views[start : start + self.batch_size]
            images = self.augment(indices, view)
            if self.erasing is not None:
                images = self.erasing(images, erase_seeds[step])
            batch = (images, self.labels[indices])
            if self.teacher_table is not None:
                batch += (self.teacher_table[indices, view].float(),)
            yield batch
