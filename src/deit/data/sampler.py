"""Repeated augmentation (Hoffer et al. 2020; DeiT Section 6): each image appears `num_repeats` times per epoch,
the copies spread over the processes so each is augmented differently.

timm's `RepeatAugSampler` is the official `RASampler` (shuffle seeded by the epoch, the same on every replica;
each index repeated `num_repeats` times in place; padded by wrapping to a multiple of the replica count; replica
`r` takes every `num_replicas`-th index from `r`; an epoch stops after `len(dataset) // 256 * 256 / num_replicas`
samples per replica, or `ceil(len(dataset) / num_replicas)` below 256 images). This adds the run's seed and
one-line errors for bad arguments.
"""

from __future__ import annotations

from collections.abc import Sized

from timm.data.distributed_sampler import RepeatAugSampler as _TimmRepeatAugSampler

from deit.errors import DeitError


class RepeatAugSampler(_TimmRepeatAugSampler):
    """Repeated-augmentation sampler for one replica of `num_replicas` (works with a single process too)."""

    def __init__(
        self,
        dataset: Sized,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        num_repeats: int = 3,
        seed: int = 0,
    ) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise DeitError(f"RepeatAugSampler: rank {rank} is not in [0, {num_replicas}) replicas")
        if num_repeats < 1:
            raise DeitError(f"--repeated-aug: num_repeats {num_repeats} must be at least 1")
        if len(dataset) == 0:
            raise DeitError("RepeatAugSampler: the data set is empty")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, num_repeats=num_repeats)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (call before each epoch, on every replica, with the same value)."""
        # timm (as the official sampler) seeds the shuffle with its `epoch` alone: offset it by the run's seed so
        # `--seed` varies the order too; seed 0 is the official order, and a resumed epoch draws the same order.
        super().set_epoch(self.seed + epoch)
