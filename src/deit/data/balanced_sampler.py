"""Class-balanced sampling (`--class-balanced`): every class drawn equally often, whatever its image count.

Each epoch draws as many indices as the data set has images, with replacement, each image with probability
1 / (its class's count): rare classes are repeated, common ones subsampled. The draw is seeded by seed + epoch
and the same on every process; process `r` takes every `num_replicas`-th index from `r`, so ranks never overlap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from deit.errors import DeitError


class ClassBalancedSampler(Sampler[int]):
    """Seeded, epoch-varying draws that give each class the same expected number of samples per epoch."""

    def __init__(self, labels: list[int], *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if not labels:
            raise DeitError("--class-balanced: the training split is empty")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise DeitError(f"--class-balanced: rank {rank} is not in [0, {num_replicas}) replicas")
        counts = Counter(labels)
        self.weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(labels) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Draw the given epoch's indices next (as DistributedSampler)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(
            self.weights, self.num_samples * self.num_replicas, replacement=True, generator=generator
        )
        return iter(drawn[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
