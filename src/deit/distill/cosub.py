"""Co-training of two sub-models (`--cosub`; Touvron et al. 2022), as the official DeiT III engine computes it.

The (mixed) batch goes through the network twice in one forward, as a batch of 2B images. Stochastic depth drops
residual branches per image, so each copy runs through a different random sub-network: two sub-models of one
model. Each learns from the labels y and from the other's prediction, taken as a fixed target:

    L = ¼ · [BCE(z₁, y) + BCE(z₂, y) + BCE(z₁, σ(z₂)) + BCE(z₂, σ(z₁))]     σ(·) detached: no gradient through it

BCE is the mean binary cross-entropy over batch and classes (torch's `BCEWithLogitsLoss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deit.errors import DeitError


class CosubLoss(nn.Module):
    """L = ¼·[BCE(z₁,y) + BCE(z₂,y) + BCE(z₁,σ(z₂)) + BCE(z₂,σ(z₁))] over a doubled batch (module docstring)."""

    doubles_batch = True  # the training step feeds every image twice (engine/step.py)

    def __init__(self, *, smoothing: float = 0.0, target_threshold: float | None = None) -> None:
        super().__init__()
        self.smoothing = smoothing  # only for class-index labels; mixed targets arrive already smoothed
        self.target_threshold = target_threshold  # --bce-loss: a mixed target above it becomes 1, as official
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, inputs: Tensor, outputs: Tensor | tuple[Tensor, Tensor], targets: Tensor) -> Tensor:
        """The loss of one step; `outputs` are the logits of the doubled batch, `targets` those of one copy."""
        if isinstance(outputs, (tuple, list)):
            raise DeitError(
                "--cosub trains a model with one head (as the official code); this model also has a "
                "distillation head: use a model without a distillation token"
            )
        first, second = outputs.chunk(2)
        targets = self._dense_targets(targets, first.shape[-1]).to(first.dtype)
        bce = F.binary_cross_entropy_with_logits
        # The four quarters added one by one, in the official order: the same float sum, bit for bit.
        loss = 0.25 * bce(first, targets)
        loss = loss + 0.25 * bce(second, targets)
        labels = loss.detach()
        loss = loss + 0.25 * bce(first, second.detach().sigmoid())
        loss = loss + 0.25 * bce(second, first.detach().sigmoid())
        self.last_terms = {"labels": labels, "mutual": loss.detach() - labels}
        return loss

    def _dense_targets(self, targets: Tensor, num_classes: int) -> Tensor:
        """(B, C) targets: class indices become (smoothed) one-hot rows, as timm's mixup would have made them."""
        if targets.ndim == 1:
            off = self.smoothing / num_classes
            dense = torch.full((targets.shape[0], num_classes), off, device=targets.device)
            targets = dense.scatter_(1, targets.long()[:, None], 1.0 - self.smoothing + off)
        if self.target_threshold is not None:
            targets = targets.gt(self.target_threshold).to(targets.dtype)
        return targets

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, target_threshold={self.target_threshold}"
