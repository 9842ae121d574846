"""The base criterion: what the class token is trained against (the true, possibly mixed, labels)."""

from __future__ import annotations

from torch import nn

from deit.errors import DeitError


def build_base_criterion(
    *, mixup_active: bool, smoothing: float = 0.1, bce_loss: bool = False, bce_target_thresh: float | None = None
) -> nn.Module:
    """The paper's base loss: soft-target CE under mixup, label-smoothed CE, plain CE, or BCE (DeiT III)."""
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if not 0.0 <= smoothing < 1.0:
        raise DeitError(f"--smoothing must be in [0, 1), got {smoothing}")
    if bce_loss:
        # Under mixup the targets arrive already smoothed and mixed: smoothing again would count it twice.
        return BinaryCrossEntropy(smoothing=0.0 if mixup_active else smoothing, target_threshold=bce_target_thresh)
    if bce_target_thresh is not None:
        raise DeitError("--bce-target-thresh needs --bce-loss")
    if mixup_active:
        # Mixup/CutMix turn labels into (B, C) distributions that already carry the smoothing.
        return SoftTargetCrossEntropy()
    if smoothing > 0.0:
        return LabelSmoothingCrossEntropy(smoothing=smoothing)
    return nn.CrossEntropyLoss()
