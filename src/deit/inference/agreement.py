"""Top-1 agreement of a fast (quantized) runner with the fp32 model on a trained model's validation split.

A quantized model is only a fast path if it predicts what the fp32 model predicts: this is the figure
`deit export --quantize int8` and `deit bench --quantize int8` report (and export enforces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.models.meta import CheckpointMeta

DEFAULT_MIN_AGREEMENT = 0.995


@dataclass
class Agreement:
    """How often the fast runner's top-1 class is the fp32 model's, and both accuracies, on `images` images."""

    data_set: str
    images: int
    agreeing: int
    reference_correct: int
    candidate_correct: int

    @property
    def rate(self) -> float:
        """Fraction of images on which both predict the same class."""
        return self.agreeing / self.images if self.images else 0.0

    def summary(self) -> str:
        """One line: agreement, then the two top-1 accuracies."""
        return (
            f"top-1 agreement with fp32 on {self.data_set} validation: {100 * self.rate:.2f}% "
            f"({self.agreeing}/{self.images}); top-1 fp32 {100 * self.reference_correct / self.images:.2f}%, "
            f"fast path {100 * self.candidate_correct / self.images:.2f}%"
        )


def recorded_data(checkpoint: str | Path) -> tuple[str | None, str | None]:
    """(data set, data path) a `deit train` checkpoint was trained on, or Nones."""
    from deit.inference.record import training_record

    return training_record(checkpoint).data(None, None)


def validation_loader(
    meta: CheckpointMeta, data_set: str, data_path: str | None, *, batch_size: int = 64
) -> torch.utils.data.DataLoader:
    """The validation split of `data_set` with the checkpoint's own eval preprocessing, in order."""
    from deit.data import build_dataset
    from deit.inference.preprocess import EvalPreprocessing

    dataset = build_dataset(data_set, data_path, train=False, transform=EvalPreprocessing.from_meta(meta).transform())
    if len(dataset.classes) != meta.num_classes:
        raise DeitError(
            f"--data-set {data_set}: has {len(dataset.classes)} classes but the model predicts {meta.num_classes}"
        )
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def measure_agreement(
    model: nn.Module, candidate: Callable[[Tensor], Tensor], loader: Any, *, data_set: str
) -> Agreement:
    """Compare `candidate`'s top-1 with the eval-mode fp32 `model`'s over every batch of `loader`."""
    images = agreeing = reference_correct = candidate_correct = 0
    model.eval()
    with torch.inference_mode():
        for batch, labels in loader:
            reference = model(batch.float()).argmax(-1).cpu()
            predicted = candidate(batch.float()).argmax(-1).cpu()
            images += len(labels)
            agreeing += int((reference == predicted).sum())
            reference_correct += int((reference == labels).sum())
            candidate_correct += int((predicted == labels).sum())
    if images == 0:
        raise DeitError(f"--data-set {data_set}: the validation split is empty")
    return Agreement(data_set, images, agreeing, reference_correct, candidate_correct)


def checkpoint_agreement(
    model: nn.Module,
    meta: CheckpointMeta,
    candidate: Callable[[Tensor], Tensor],
    *,
    checkpoint: str | Path,
    data_set: str | None,
    data_path: str | None,
) -> Agreement | None:
    """Agreement on `data_set` (default: the one the checkpoint was trained on); None when neither is known."""
    recorded_set, recorded_path = recorded_data(checkpoint)
    data_set = data_set or recorded_set
    if not data_set:
        return None
    loader = validation_loader(meta, data_set, data_path or recorded_path)
    return measure_agreement(model, candidate, loader, data_set=data_set)


__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "Agreement",
    "checkpoint_agreement",
    "measure_agreement",
    "recorded_data",
    "validation_loader",
]
