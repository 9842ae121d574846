"""Image folders on the in-memory path (`--data-loader auto|memory`): every image decoded once, up to a cap.

A folder (`deit.data.folder.FolderDataset`: IMNET, IMAGEFOLDER, INAT) has already skipped its bad files when it
was built; each remaining image is read through the data set's own safe loading (`first_decodable`: a file that
only fails at decode is logged and replaced by the next one, with that one's label, as the per-image path does)
and resized once: at `--input-size` <= 32 exactly as the per-image transform resizes (shorter side to the input
size, the training interpolation), held as one flat uint8 tensor of padded images of their own sizes
(`deit.data.memory.BatchAugment`); above, shrunk to the resized-crop store's bound
(`deit.data.memory_resized`). Either way each image keeps its aspect ratio.

Bounded: a folder whose decoded images would take more than the cap (`MAX_DECODED_BYTES`, `--memory-cap-gib`)
is refused in one line before decoding, from an estimate, or while decoding, from the bytes decoded so far;
`--data-loader auto` then runs the per-image path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from deit.errors import DeitError

#: The most uint8 bytes a folder may decode into by default (`--memory-cap-gib`); over it the run says so.
MAX_DECODED_BYTES = 2 << 30
_CHUNK = 1024


class StoreOverCap(DeitError):
    """A folder's decoded images outgrew the in-memory cap while decoding (the estimate let it start)."""


def is_folder(data_set: Any) -> bool:
    """Whether `data_set` is a class-folder data set of image files."""
    from deit.data.folder import FolderDataset

    return isinstance(data_set, FolderDataset)


def least_bytes(images: int, input_size: int, padding: int) -> int:
    """The fewest bytes `images` decoded images take (square ones; a wider or taller image takes more)."""
    return images * 3 * (input_size + 2 * padding) ** 2


def folder_refusal(images: int, input_size: int, least: int, *, limit: int | None = None) -> str | None:
    """Why a folder of `images` images, taking at least (about) `least` bytes decoded, is not decoded into
    memory (None: it is); `limit`: the cap (default `MAX_DECODED_BYTES`)."""
    limit = MAX_DECODED_BYTES if limit is None else limit
    if least > limit:
        return (
            f"{images} images decoded at --input-size {input_size} would take about {_size(least)}, "
            f"over the in-memory cap of {_size(limit)} (--memory-cap-gib raises it)"
        )
    return None


def decode_folder(
    data_set: Any,
    positions: list[int],
    resize: Callable[[Any], Tensor],
    *,
    input_size: int,
    padding: int,
    limit: int | None = None,
) -> tuple[list[Tensor], Tensor]:
    """(uint8 (3, H, W) images through `resize` -- from `deit.data.memory.decode` -- and int64 labels), for
    `positions` of `data_set`; `padding` sizes the check against `limit` (default `MAX_DECODED_BYTES`)."""
    limit = MAX_DECODED_BYTES if limit is None else limit

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
            if total > limit:
                raise StoreOverCap(
                    f"{data_set.root}'s images decoded at --input-size {input_size} take over {_size(limit)} "
                    f"(the in-memory cap, --memory-cap-gib; {_size(total)} after {len(images)} of "
                    f"{len(positions)} images)"
                )
    return images, torch.tensor(labels, dtype=torch.long)


def _size(nbytes: int) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.1f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KB"
