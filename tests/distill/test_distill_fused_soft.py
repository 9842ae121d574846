"""The shorter soft loss (distill/fused_soft.py) equals the literal one and the paper's formula, gradients included."""

from __future__ import annotations

import pytest
import torch
from timm.loss import LabelSmoothingCrossEntropy
from torch import nn

from deit.distill import DistillationLoss
from deit.distill.fused_soft import label_smoothing_of, smoothed_label_weights, soft_terms

B, C = 6, 7


class LiteralSmoothing(LabelSmoothingCrossEntropy):
    """timm's criterion under another type: DistillationLoss takes its literal path for it."""


def _logits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z_cls = (torch.randn(B, C, generator=generator) * 3).requires_grad_(True)
    z_dist = (torch.randn(B, C, generator=generator) * 3).requires_grad_(True)
    z_teacher = torch.randn(B, C, generator=generator) * 4
    labels = torch.randint(0, C, (B,), generator=generator)
    return z_cls, z_dist, z_teacher, labels


def _loss_and_grads(criterion: DistillationLoss, seed: int) -> tuple[torch.Tensor, ...]:
    z_cls, z_dist, z_teacher, labels = _logits(seed)
    images = torch.zeros(B, 3, 4, 4)  # unused: the teacher's logits are given
    loss = criterion(images, (z_cls, z_dist), labels, z_teacher)
    grads = torch.autograd.grad(loss, (z_cls, z_dist))
    terms = criterion.last_terms
    return loss.detach(), *grads, terms["base"], terms["distillation"]


@pytest.mark.parametrize("kl_reduction", ["official", "batchmean"])
@pytest.mark.parametrize("smoothing, alpha, tau", [(0.1, 0.7, 3.0), (0.0, 0.5, 1.0), (0.3, 0.2, 0.5)])
def test_shorter_soft_loss_equals_the_literal_one(kl_reduction, smoothing, alpha, tau):
    teacher = nn.Identity()  # never called: the logits come as from the teacher table
    settings = dict(distillation_type="soft", alpha=alpha, tau=tau, kl_reduction=kl_reduction)
    fused = DistillationLoss(LabelSmoothingCrossEntropy(smoothing), teacher, **settings)
    literal = DistillationLoss(LiteralSmoothing(smoothing), teacher, **settings)
    assert fused._smoothing == smoothing and literal._smoothing is None
    for seed in range(3):
        for ours, reference in zip(_loss_and_grads(fused, seed), _loss_and_grads(literal, seed)):
            torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_base_weights_are_the_smoothed_one_hot_rows_over_the_batch():
    labels = torch.tensor([2, 0, 2])
    weights = smoothed_label_weights(labels, 4, 0.2, torch.float32)
    expected = torch.full((3, 4), 0.05)
    expected[torch.arange(3), labels] += 0.8
    torch.testing.assert_close(weights, expected / 3)
    assert weights.sum().item() == pytest.approx(1.0)


def test_terms_match_the_paper_formula_written_out():
    z_cls, z_dist, z_teacher, labels = _logits(7)
    smoothing, tau = 0.1, 2.0
    base, distillation = soft_terms(z_cls, z_dist, labels, z_teacher, smoothing=smoothing, tau=tau, divisor=B)
    log_p = z_cls.double().log_softmax(-1)
    expected_base = -((1 - smoothing) * log_p[torch.arange(B), labels] + smoothing * log_p.mean(-1)).mean()
    p_t = (z_teacher.double() / tau).softmax(-1)
    expected_kl = (p_t * (p_t.log() - (z_dist.double() / tau).log_softmax(-1))).sum() * tau * tau / B
    assert base.item() == pytest.approx(expected_base.item(), rel=1e-5)
    assert distillation.item() == pytest.approx(expected_kl.item(), rel=1e-5)


def test_other_criteria_and_soft_labels_take_the_literal_path():
    from timm.loss import SoftTargetCrossEntropy

    assert label_smoothing_of(nn.CrossEntropyLoss(label_smoothing=0.1)) is None  # ignore_index needs the labels
    assert label_smoothing_of(SoftTargetCrossEntropy()) is None
    assert label_smoothing_of(LiteralSmoothing(0.1)) is None
    hard = DistillationLoss(LabelSmoothingCrossEntropy(0.1), nn.Identity(), "hard", 0.5, 1.0)
    assert hard._smoothing is None
    # Mixed (B, C) targets: timm's criterion cannot read them either; the literal path raises as before.
    fused = DistillationLoss(LabelSmoothingCrossEntropy(0.1), nn.Identity(), "soft", 0.5, 1.0)
    z_cls, z_dist, z_teacher, _ = _logits(1)
    with pytest.raises(RuntimeError):
        fused(torch.zeros(B, 3, 4, 4), (z_cls, z_dist), torch.full((B, C), 1.0 / C), z_teacher)
