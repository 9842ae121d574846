"""Random erasing on whole batches: timm's own `RandomErasing`, its draws made repeatable per batch.

The per-image path applies `timm.data.random_erasing.RandomErasing(reprob, mode=remode, max_count=recount)`
after Normalize, one image at a time (built by timm's `create_transform`, `deit.data.transforms`). timm's class
also takes a (B, C, H, W) batch and erases each sample independently with the same draws, so the in-memory path
calls that very object on its normalised batch: same probability, area and aspect bounds, count and fill.

timm draws from Python's global `random` and the device's default torch generator. Those streams depend on
everything else the process did, so each batch reseeds both from a seed the loader derives from its
(seed, epoch, rank) generator, and puts the global states back afterwards: a resumed epoch erases exactly what
the uninterrupted one did, and the rest of the run's random streams are left as they were.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor


class BatchErasing:
    """timm's `RandomErasing` (probability, mode, max count as the per-image path) on a batch, seeded per call."""

    def __init__(self, probability: float, mode: str, count: int, device: torch.device) -> None:
        from timm.data.random_erasing import RandomErasing

        self.device = torch.device(device)
        self.erase = RandomErasing(probability, mode=mode, max_count=count, device=str(self.device))

    def __call__(self, batch: Tensor, seed: int) -> Tensor:
        """Erase `batch` (B, C, H, W) in place with timm's draws seeded by `seed`; the global RNGs are untouched."""
        python_state = random.getstate()
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                random.seed(seed)
                torch.default_generator.manual_seed(seed)
                if cuda:
                    torch.cuda.default_generators[cuda[0]].manual_seed(seed)
                return self.erase(batch)
        finally:
            random.setstate(python_state)

    def __repr__(self) -> str:
        return f"BatchErasing({self.erase!r})"
