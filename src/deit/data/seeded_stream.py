"""The seeded augmentation stream: every random draw of a training batch a pure function of where it is in the run.

The per-image path normally draws its augmentation from whatever state the loader's workers' random generators
are in, so the batches depend on the number of workers and on where a run was started. Here each sample's
draws (RandomResizedCrop, flip, RandAugment, random erasing: torch's, Python's and NumPy's global generators,
which torchvision and timm use) come from generators seeded by (seed, epoch, rank, position of the sample in
the rank's epoch), and mixup/cutmix's (NumPy's) from (seed, epoch, rank, step). The global states are put back
after each draw, so the rest of the process (dropout, drop path) sees the random stream it would have seen.

A stream that is a pure function of its inputs is what lets the teacher's outputs for a whole run be computed
once, ahead, and replayed by every student that draws the same stream (`deit teacher-labels`,
`deit.distill.teacher_labels`); and it is the same for 0, 1 or 8 workers and across a resume.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

#: Bumped whenever the mapping from (seed, epoch, rank, position) to draws changes: label files record it.
STREAM_VERSION = 1
_SAMPLE, _MIX = 0x5EED_0001, 0x5EED_0002  # keep a sample's draws and a batch's mixup draws apart


def stream_words(*key: int) -> np.ndarray:
    """Four 32-bit words hashed from `key` (integers, each taken modulo 2**64): BLAKE2b, a few microseconds."""
    packed = struct.pack(f"<{len(key)}Q", *(int(k) & (2**64 - 1) for k in key))
    return np.frombuffer(hashlib.blake2b(packed, digest_size=16).digest(), dtype="<u4")


@contextmanager
def seeded_globals(words: np.ndarray, *, numpy_only: bool = False, restore: bool = True) -> Iterator[None]:
    """Seed the CPU torch, Python and NumPy global generators from `words`; restore them on exit (`restore`).

    A loader worker's generators serve its samples alone, so it need not restore them: NumPy's state copy is
    most of the cost (~0.3 ms of ~0.4 ms per sample on a busy core)."""
    numpy_state = np.random.get_state() if restore else None
    python_state = None if numpy_only or not restore else random.getstate()
    torch_state = None if numpy_only or not restore else torch.random.get_rng_state()
    try:
        np.random.seed(words[2:4])
        if not numpy_only:
            seed = int(words[0]) | int(words[1]) << 32
            random.seed(seed)
            torch.default_generator.manual_seed(seed)  # the CPU generator only: CUDA's stays untouched
        yield
    finally:
        if numpy_state is not None:
            np.random.set_state(numpy_state)
        if python_state is not None:
            random.setstate(python_state)
        if torch_state is not None:
            torch.random.set_rng_state(torch_state)


def sample_words(seed: int, epoch: int, rank: int, position: int) -> np.ndarray:
    """The seed words of one sample: the `position`-th of rank `rank`'s epoch `epoch`."""
    return stream_words(_SAMPLE, seed, epoch, rank, position)


def mix_words(seed: int, epoch: int, rank: int, step: int) -> np.ndarray:
    """The seed words of one batch's mixup/cutmix draws."""
    return stream_words(_MIX, seed, epoch, rank, step)


class SeededSamples(Dataset):
    """A map-style data set indexed by `(index, words)`: item `index`, transformed under generators seeded by
    `words` (what `StreamSampler` yields)."""

    def __init__(self, data_set: Dataset) -> None:
        self.data_set = data_set

    def __len__(self) -> int:
        return len(self.data_set)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, np.ndarray]) -> Any:
        index, words = item
        with seeded_globals(words, restore=get_worker_info() is None):  # in the main process: put them back
            return self.data_set[index]


class StreamSampler(Sampler):
    """A sampler's order (its `set_epoch` reseeds it), each index paired with its sample's seed words; starts
    at `start` (a position in the epoch: a resume in the middle of an epoch)."""

    def __init__(self, sampler: Any, *, seed: int, rank: int) -> None:
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Draw epoch `epoch`'s order, from its `start`-th sample on."""
        self.epoch, self.start = epoch, start
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for position, index in enumerate(self.sampler):
            if position >= self.start:
                yield int(index), sample_words(self.seed, self.epoch, self.rank, position)


def seeded_mix(
    mixup_fn: Callable | None, images: torch.Tensor, targets: torch.Tensor, words: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup on a batch with its NumPy draws seeded by `words` (the batch unchanged without mixup)."""
    if mixup_fn is None:
        return images, targets
    with seeded_globals(words, numpy_only=True):
        return mixup_fn(images, targets)
