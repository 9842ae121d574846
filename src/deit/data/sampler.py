"""Repeated augmentation (Hoffer et al. 2020; DeiT Section 6): each image appears `num_repeats` times per epoch,
the copies spread over the processes so each is augmented differently.

As the official `RASampler`: shuffle the indices (seeded by seed + epoch, the same on every replica), repeat
each one `num_repeats` times in place, pad by wrapping to a multiple of the replica count, and give replica `r`
every `num_replicas`-th index starting at `r`. An epoch then stops after `len(dataset) // 256 * 256 /
num_replicas` samples per replica (rounded down), so it costs about what one plain pass would. Data sets smaller
than 256 images (where the official rounding would give an empty epoch) use `ceil(len(dataset) / num_replicas)`.
"""

from __future__ import annotations

import math
from typing import Iterator, Sized

import torch
from torch.utils.data import Sampler

from deit.errors import DeitError

_ROUND = 256


class RepeatAugSampler(Sampler[int]):
    """Repeated-augmentation sampler for one replica of `num_replicas` (works with a single process too)."""

    def __init__(self, dataset: Sized, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 num_repeats: int = 3, seed: int = 0) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise DeitError(f"RepeatAugSampler: rank {rank} is not in [0, {num_replicas}) replicas")
        if num_repeats < 1:
            raise DeitError(f"--repeated-aug: num_repeats {num_repeats} must be at least 1")
        self.dataset_size = len(dataset)
        if self.dataset_size == 0:
            raise DeitError("RepeatAugSampler: the data set is empty")
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.num_repeats, self.seed = shuffle, num_repeats, seed
        self.epoch = 0
        self.num_samples = math.ceil(self.dataset_size * num_repeats / num_replicas)
        self.total_size = self.num_samples * num_replicas
        if self.dataset_size >= _ROUND:
            self.num_selected_samples = self.dataset_size // _ROUND * _ROUND // num_replicas
        else:
            self.num_selected_samples = math.ceil(self.dataset_size / num_replicas)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator)
        else:
            order = torch.arange(self.dataset_size)
        repeated = order.repeat_interleave(self.num_repeats)
        if len(repeated) < self.total_size:
            repeats_needed = math.ceil(self.total_size / len(repeated))
            repeated = repeated.repeat(repeats_needed)
        mine = repeated[:self.total_size][self.rank:self.total_size:self.num_replicas]
        return iter(mine[:self.num_selected_samples].tolist())

    def __len__(self) -> int:
        return self.num_selected_samples

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (call before each epoch, on every replica, with the same value)."""
        self.epoch = epoch
