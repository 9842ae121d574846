"""The in-memory path at any input size: images decoded once into a bounded uint8 store, and the per-image
transform's RandomResizedCrop, flip and normalisation drawn and applied per batch.

The store keeps every image at most `input_size / STORE_CROP_FRACTION` on its shorter side (73 px for 64,
256 for 224: the evaluation resize's size, what FFCV's `max_resolution` does for ImageNet), shrunk once with
Pillow's bicubic filter; smaller images are kept as they are. They sit in one zero-padded (N, 3, H, W) uint8
canvas with each image's own height and width, on the training device when it fits. A batch is one box draw
(`deit.data.resized_crop.draw_boxes`: `RandomResizedCrop.get_params`' distribution, `--scale`, `--ratio`), the
crops resized as torchvision resizes a uint8 tensor (`--train-interpolation` bicubic, bilinear or random), a
flip with probability `--hflip`, and `ToTensor` + `Normalize` on the batch.

What differs from the per-image path is the source of the crop: the stored image, not the file at full size,
so a crop that keeps little of a large image is upsampled from fewer pixels. The views are boxes, not a finite
set, so there is no teacher table on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from deit.data.resized_crop import draw_boxes, resized_crops

#: The store keeps an image's shorter side at most input_size / this (the paper's evaluation crop ratio).
STORE_CROP_FRACTION = 0.875
#: `--train-interpolation` values the batched crop reproduces (timm's 'random': bilinear or bicubic per crop).
INTERPOLATIONS = ("bicubic", "bilinear", "random")


def store_side(input_size: int) -> int:
    """The largest shorter side an image keeps in the store at `input_size`."""
    return round(input_size / STORE_CROP_FRACTION)


def store_bytes(images: int, input_size: int) -> int:
    """About what `images` images take in the store at `input_size` (square ones at the store's side)."""
    return images * 3 * store_side(input_size) ** 2


@dataclass(frozen=True)
class CropSettings:
    """The training crop the store is augmented with: output side, area and aspect ranges, filter, flip."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    hflip: float = 0.5

    def describe(self) -> str:
        """A line-sized description for the run's first lines."""
        return (
            f"RandomResizedCrop {self.size} (scale {self.scale[0]:g}-{self.scale[1]:g}, ratio "
            f"{self.ratio[0]:.3g}-{self.ratio[1]:.3g}, {self.interpolation}), flip p={self.hflip:g}"
        )


def canvas(images: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(uint8 (N, C, H, W) zero-padded canvas, heights (N,), widths (N,)) of images (C, H_i, W_i)."""
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    held = torch.zeros(len(images), images[0].shape[0], int(heights.max()), int(widths.max()), dtype=torch.uint8)
    for slot, image in zip(held, images):
        slot[:, : image.shape[-2], : image.shape[-1]] = image
    return held, heights, widths


class ResizedCropAugment:
    """RandomResizedCrop, flip and normalisation of whole batches of stored uint8 images; views are boxes.

    `images`: a (N, C, H, W) tensor or a list of (C, H_i, W_i) tensors; `device`: where to hold them (default:
    where they are). The `MemoryLoader` interface of `deit.data.memory.BatchAugment`: `draw`, a call, `count`.
    """

    square = False  # no finite view set: the teacher table does not apply

    def __init__(
        self,
        images: Tensor | Sequence[Tensor],
        crop: CropSettings,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str | None = None,
    ) -> None:
        if crop.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {crop.interpolation!r}: one of {', '.join(INTERPOLATIONS)}")
        if isinstance(images, Tensor):
            held = images
            self.heights = torch.full((len(images),), images.shape[-2])
            self.widths = torch.full((len(images),), images.shape[-1])
        else:
            held, self.heights, self.widths = canvas(images)
        self.pixels = held.to(device) if device is not None else held
        self.views = crop
        device = self.pixels.device
        # ToTensor + Normalize as one multiply and one subtract: (x / 255 - mean) / std, rounded differently
        # by at most a few float32 ulps (the stored image already differs from the file at full size).
        std_ = torch.tensor(std, dtype=torch.float64)
        self.scale = (1 / (255 * std_)).float().view(1, -1, 1, 1).to(device)
        self.shift = (torch.tensor(mean, dtype=torch.float64) / std_).float().view(1, -1, 1, 1).to(device)

    @property
    def device(self) -> torch.device:
        """Where the images are held."""
        return self.pixels.device

    @property
    def count(self) -> int:
        """Number of images."""
        return len(self.pixels)

    @property
    def nbytes(self) -> int:
        """Bytes of uint8 pixels held (the canvas's padding included)."""
        return self.pixels.numel()

    def draw(self, count: int, generator: torch.Generator, indices: Tensor | None = None) -> Tensor:
        """(count, 6) int64 views of images `indices`: box (top, left, height, width), flip, bicubic."""
        if indices is None:
            raise ValueError("draw() needs the indices the views are for (each image has its own size)")
        indices = indices.cpu()
        crop = self.views
        boxes = draw_boxes(self.heights[indices], self.widths[indices], crop.scale, crop.ratio, generator)
        flip = torch.rand(count, generator=generator) < crop.hflip
        if crop.interpolation == "random":
            bicubic = torch.rand(count, generator=generator) < 0.5
        else:
            bicubic = torch.full((count,), crop.interpolation == "bicubic")
        return torch.cat([boxes, flip[:, None].long(), bicubic[:, None].long()], 1)

    def __call__(self, indices: Tensor, view: Tensor) -> Tensor:
        """Normalised float images (B, C, size, size) of `indices` at `view`s (see `draw`)."""
        view = view.to(self.device)
        crops = resized_crops(
            self.pixels, indices.to(self.device), view[:, :4], view[:, 4].bool(), view[:, 5].bool(), self.views.size
        )
        return crops.float().mul_(self.scale).sub_(self.shift)
