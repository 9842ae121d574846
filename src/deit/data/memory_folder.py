"""Image folders on the in-memory path, opt-in (`--data-loader memory`): every image decoded once, up to a limit.

A folder (`deit.data.folder.FolderDataset`: IMNET, IMAGEFOLDER, INAT) has already skipped its bad files when it
was built; each remaining image is read through the data set's own safe loading (`first_decodable`: a file that
only fails at decode is logged and replaced by the next one, with that one's label, as the per-image path does)
and resized exactly as the per-image transform resizes (shorter side to `--input-size`, the training
interpolation). The images keep their aspect ratio, so they are held as one flat uint8 tensor of padded images
of their own sizes (`deit.data.memory.BatchAugment`).

Opt-in only: decoding a whole folder up front is a cost `auto` does not impose (its line says what `memory`
would hold), and the decoded size is bounded by `MAX_DECODED_BYTES`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from deit.errors import DeitError

#: The most uint8 bytes (padded images) a folder may decode into; over it the run says so and stops.
MAX_DECODED_BYTES = 2 << 30
_CHUNK = 1024


def is_folder(data_set: Any) -> bool:
    """Whether `data_set` is a class-folder data set of image files."""
    from deit.data.folder import FolderDataset

    return isinstance(data_set, FolderDataset)


def least_bytes(images: int, input_size: int, padding: int) -> int:
    """The fewest bytes `images` decoded images take (square ones; a wider or taller image takes more)."""
    return images * 3 * (input_size + 2 * padding) ** 2


def folder_refusal(images: int, input_size: int, padding: int, *, opt_in: bool) -> str | None:
    """Why a folder of `images` images is not decoded into memory (None: it is)."""
    least = least_bytes(images, input_size, padding)
    if least > MAX_DECODED_BYTES:
        return (
            f"{images} images decoded at --input-size {input_size} would take at least {_size(least)}, "
            f"over the in-memory limit of {_size(MAX_DECODED_BYTES)}"
        )
    if not opt_in:
        return (
            f"an image folder is decoded into memory only when asked: --data-loader memory decodes a folder "
            f"this size once ({images} images, at least {_size(least)})"
        )
    return None


def decode_folder(
    data_set: Any, positions: list[int], resize: Callable[[Any], Tensor], *, input_size: int, padding: int
) -> tuple[list[Tensor], Tensor]:
    """(uint8 (3, H, W) images through `resize` -- the per-image transform's, from `deit.data.memory.decode` --
    and int64 labels), for `positions` of `data_set`; `input_size` and `padding` size the limit check."""

    def load(position: int) -> tuple[Tensor, int]:
        candidate, image = data_set.first_decodable(position)
        return resize(image), int(data_set.samples[candidate][1])

    images: list[Tensor] = []
    labels: list[int] = []
    total = 0
    # Decoding is mostly in Pillow, which releases the GIL, so threads overlap it.
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deit-decode") as pool:
        for start in range(0, len(positions), _CHUNK):
            for image, label in pool.map(load, positions[start : start + _CHUNK]):
                images.append(image)
                labels.append(label)
                total += image.shape[0] * (image.shape[1] + 2 * padding) * (image.shape[2] + 2 * padding)
            if total > MAX_DECODED_BYTES:
                raise DeitError(
                    f"--data-loader memory: {data_set.root}'s images decoded at --input-size {input_size} take "
                    f"over {_size(MAX_DECODED_BYTES)} (the in-memory limit; {_size(total)} after "
                    f"{len(images)} of {len(positions)} images); use --data-loader torch"
                )
    return images, torch.tensor(labels, dtype=torch.long)


def _size(nbytes: int) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.1f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KB"
