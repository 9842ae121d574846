"""build_base_criterion picks the paper's base loss for each recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from deit.distill import build_base_criterion
from deit.errors import DeitError


def test_each_recipe_gets_its_criterion():
    assert isinstance(build_base_criterion(mixup_active=True, smoothing=0.1), SoftTargetCrossEntropy)
    assert isinstance(build_base_criterion(mixup_active=False, smoothing=0.1), LabelSmoothingCrossEntropy)
    assert type(build_base_criterion(mixup_active=False, smoothing=0.0)) is nn.CrossEntropyLoss
    assert isinstance(build_base_criterion(mixup_active=True, bce_loss=True), BinaryCrossEntropy)


def test_label_smoothing_value_reaches_the_loss():
    logits, labels = torch.randn(5, 4), torch.randint(0, 4, (5,))
    criterion = build_base_criterion(mixup_active=False, smoothing=0.2)
    log_p = F.log_softmax(logits, -1)
    expected = (0.8 * -log_p.gather(1, labels[:, None]).squeeze(1) + 0.2 * -log_p.mean(-1)).mean()
    assert criterion(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_bce_accepts_hard_and_soft_targets():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    criterion = build_base_criterion(mixup_active=False, smoothing=0.0, bce_loss=True)
    one_hot = F.one_hot(labels, 3).float()
    expected = F.binary_cross_entropy_with_logits(logits, one_hot)
    assert criterion(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert criterion(logits, one_hot).item() == pytest.approx(expected.item(), rel=1e-6)
    thresholded = build_base_criterion(mixup_active=True, bce_loss=True, bce_target_thresh=0.2)
    soft = torch.tensor([[0.7, 0.3, 0.0]] * 4)
    assert thresholded(logits, soft).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, (soft > 0.2).float()).item(), rel=1e-6
    )


def test_bad_values_are_user_errors():
    with pytest.raises(DeitError, match="smoothing"):
        build_base_criterion(mixup_active=False, smoothing=1.0)
    with pytest.raises(DeitError, match="bce"):
        build_base_criterion(mixup_active=False, bce_target_thresh=0.5)
