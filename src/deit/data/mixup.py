"""Mixup / CutMix on a batch, with label smoothing folded into the soft targets (timm's `Mixup`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deit.errors import DeitError


def build_mixup(
    *,
    mixup: float,
    cutmix: float,
    cutmix_minmax: Sequence[float] | None = None,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
    label_smoothing: float = 0.1,
    num_classes: int,
) -> Callable | None:
    """timm's `Mixup(images, labels) -> (mixed images, soft targets)`, or None when mixup and cutmix are off.

    The paper's setting is mixup 0.8, cutmix 1.0, switch_prob 0.5, mode 'batch', smoothing 0.1. In 'batch' and
    'pair' modes the batch size must be even (use `drop_last=True` for training)."""
    if mixup < 0 or cutmix < 0:
        raise DeitError(f"--mixup {mixup} / --cutmix {cutmix}: must not be negative")
    if not (mixup > 0 or cutmix > 0 or cutmix_minmax is not None):
        return None
    for flag, value in (("--mixup-prob", prob), ("--mixup-switch-prob", switch_prob), ("--smoothing", label_smoothing)):
        if not 0.0 <= value <= 1.0:
            raise DeitError(f"{flag} {value}: must be in [0, 1]")
    if mode not in ("batch", "pair", "elem"):
        raise DeitError(f"--mixup-mode {mode!r}: choose batch, pair or elem")
    if num_classes < 1:
        raise DeitError(f"mixup needs the number of classes, got {num_classes}")
    if cutmix_minmax is not None and (len(cutmix_minmax) != 2 or not 0 < cutmix_minmax[0] < cutmix_minmax[1] <= 1):
        raise DeitError(f"--cutmix-minmax {list(cutmix_minmax)}: expected two ratios 0 < min < max <= 1")
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        cutmix_minmax=cutmix_minmax,
        prob=prob,
        switch_prob=switch_prob,
        mode=mode,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
