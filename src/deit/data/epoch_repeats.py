"""`--epoch-repeats N`: one training epoch passes over the data N times, each pass in its own order.

A small training subset (72 images at 5% of DIGITS) makes an epoch a handful of steps, so a schedule counted in
epochs pays the per-epoch work (a checkpoint, a log row, an evaluation) hundreds of times. Repeating the subset
inside an epoch keeps a size's epoch about as long as the full set's: the same number of checkpoints and
evaluations at every size, the same optimisation steps. Pass `r` of epoch `e` is the wrapped sampler's epoch
`e * N + r`, so each pass is a fresh shuffle drawn from the seed and the epoch alone, and a resume repeats it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from deit.errors import DeitError


class EpochRepeatSampler:
    """`sampler`'s order `repeats` times per epoch (a different shuffle each pass); with 1, `sampler` as it is."""

    def __init__(self, sampler: Any, repeats: int) -> None:
        if repeats < 1:
            raise DeitError(f"--epoch-repeats {repeats}: must be at least 1")
        self.sampler, self.repeats, self.epoch = sampler, repeats, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose passes the next iteration draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler) * self.repeats

    def __iter__(self) -> Iterator[int]:
        for index in range(self.repeats):
            self.sampler.set_epoch(self.epoch * self.repeats + index)
            yield from iter(self.sampler)
