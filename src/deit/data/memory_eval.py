"""The validation set of an in-memory run, transformed once and kept as one tensor.

Evaluation is deterministic (resize, centre crop, normalise), so the per-image transform's output for every
validation image is the same at every epoch: computed once, through the data set's own transform (so exactly the
per-image path's pixels), then each evaluation is slices of one tensor -- no PIL, no DataLoader, no collate per
epoch. Bounded: a set whose tensor would exceed `MAX_EVAL_BYTES` keeps the per-image DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

#: The largest validation tensor kept in memory (float32): CIFAR's 10,000 test images at 32 px take 123 MB.
MAX_EVAL_BYTES = 1 << 30
#: Images per evaluation forward pass: tiny models spend a small batch on per-operation overhead, not arithmetic.
EVAL_BATCH = 256


def eval_tensor_bytes(data_set: Dataset, input_size: int) -> int:
    """What `PreparedEvalSet` would hold for `data_set` at `input_size` (float32, 3 channels)."""
    return len(data_set) * 3 * input_size * input_size * 4  # type: ignore[arg-type]


class PreparedEvalSet:
    """(images, labels) batches of a deterministic data set, each image transformed once at construction."""

    def __init__(self, data_set: Dataset, *, batch_size: int, device: torch.device) -> None:
        count = len(data_set)  # type: ignore[arg-type]
        pairs = [data_set[index] for index in range(count)]
        self.images = torch.stack([image for image, _ in pairs]).to(device)
        self.labels = torch.as_tensor([int(label) for _, label in pairs], dtype=torch.long, device=device)
        self.batch_size = batch_size

    @property
    def megabytes(self) -> float:
        """Size of the kept image tensor."""
        return self.images.numel() * self.images.element_size() / 2**20

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
