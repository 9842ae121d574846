"""DistillationLoss against hand-written versions of the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deit import create_model
from deit.distill import DistillationLoss, FrozenTeacher, build_base_criterion
from deit.errors import DeitError

B, C, SIDE = 6, 7, 8


def make_teacher() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, C))


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, SIDE, SIDE, generator=generator)
    z_cls = torch.randn(B, C, generator=generator) * 3
    z_dist = torch.randn(B, C, generator=generator) * 3
    labels = torch.randint(0, C, (B,), generator=generator)
    return images, z_cls, z_dist, labels


def log_probabilities(logits: torch.Tensor) -> list[list[float]]:
    """log softmax, element by element in float64 (no torch softmax)."""
    rows = []
    for row in logits.double().tolist():
        top = max(row)
        log_norm = top + math.log(sum(math.exp(v - top) for v in row))
        rows.append([v - log_norm for v in row])
    return rows


def cross_entropy(logits: torch.Tensor, targets: list[int]) -> float:
    rows = log_probabilities(logits)
    return -sum(row[t] for row, t in zip(rows, targets)) / len(rows)


def soft_term(z_dist: torch.Tensor, z_t: torch.Tensor, tau: float, divisor: int) -> float:
    """τ² Σ_b Σ_c p_t (log p_t − log p_s) / divisor, with p = softmax(z / τ)."""
    log_s, log_t = log_probabilities(z_dist / tau), log_probabilities(z_t / tau)
    kl = sum(math.exp(lt) * (lt - ls) for row_s, row_t in zip(log_s, log_t) for ls, lt in zip(row_s, row_t))
    return tau * tau * kl / divisor


@pytest.mark.parametrize("kl_reduction,divisor", [("official", B * C), ("batchmean", B)])
@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_distillation_matches_the_formula(kl_reduction, divisor, tau):
    images, z_cls, z_dist, labels = batch()
    teacher = make_teacher()
    z_t = teacher(images).detach()
    alpha = 0.3
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", alpha, tau, kl_reduction=kl_reduction)
    loss = criterion(images, (z_cls, z_dist), labels)
    base = cross_entropy(z_cls, labels.tolist())
    distillation = soft_term(z_dist, z_t, tau, divisor)
    assert loss.item() == pytest.approx((1 - alpha) * base + alpha * distillation, rel=1e-5)
    assert criterion.last_terms["base"].item() == pytest.approx(base, rel=1e-5)
    assert criterion.last_terms["distillation"].item() == pytest.approx(distillation, rel=1e-5)
    assert not criterion.last_terms["base"].requires_grad


def test_soft_reductions_differ_by_the_class_count():
    images, z_cls, z_dist, labels = batch(3)
    teacher = make_teacher()
    terms = {}
    for reduction in ("official", "batchmean"):
        criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 1.0, 2.0, kl_reduction=reduction)
        criterion(images, (z_cls, z_dist), labels)
        terms[reduction] = criterion.last_terms["distillation"].item()
    assert terms["batchmean"] == pytest.approx(terms["official"] * C, rel=1e-5)


def test_hard_distillation_matches_the_formula():
    images, z_cls, z_dist, labels = batch(1)
    teacher = make_teacher()
    teacher_labels = [max(range(C), key=row.__getitem__) for row in teacher(images).tolist()]
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "hard", 0.5, 10.0)  # τ plays no part
    loss = criterion(images, (z_cls, z_dist), labels)
    expected = 0.5 * cross_entropy(z_cls, labels.tolist()) + 0.5 * cross_entropy(z_dist, teacher_labels)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("distillation_type", ["soft", "hard"])
def test_alpha_limits(distillation_type):
    images, z_cls, z_dist, labels = batch(2)
    teacher = make_teacher()
    only_base = DistillationLoss(nn.CrossEntropyLoss(), teacher, distillation_type, 0.0, 2.0)
    only_teacher = DistillationLoss(nn.CrossEntropyLoss(), teacher, distillation_type, 1.0, 2.0)
    assert only_base(images, (z_cls, z_dist), labels).item() == pytest.approx(
        cross_entropy(z_cls, labels.tolist()), rel=1e-5
    )
    loss = only_teacher(images, (z_cls, z_dist), labels)
    assert loss.item() == pytest.approx(only_teacher.last_terms["distillation"].item(), rel=1e-6)
    assert loss.item() != pytest.approx(only_teacher.last_terms["base"].item(), rel=1e-3)


def test_mixed_soft_targets_and_the_teacher_sees_the_mixed_images():
    from timm.data import Mixup

    torch.manual_seed(0)
    images, z_cls, z_dist, labels = batch(4)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=C)
    mixed_images, targets = mixup(images.clone(), labels)
    assert targets.shape == (B, C) and not torch.equal(mixed_images, images)
    teacher = make_teacher()
    z_t = teacher(mixed_images).detach()
    criterion = DistillationLoss(build_base_criterion(mixup_active=True), teacher, "soft", 0.5, 2.0)
    loss = criterion(mixed_images, (z_cls, z_dist), targets)
    log_p = log_probabilities(z_cls)
    base = -sum(t * lp for row_t, row_p in zip(targets.tolist(), log_p) for t, lp in zip(row_t, row_p)) / B
    assert loss.item() == pytest.approx(0.5 * base + 0.5 * soft_term(z_dist, z_t, 2.0, B * C), rel=1e-5)


def test_none_is_the_official_class_head_loss_even_for_a_distilled_student():
    images, z_cls, z_dist, labels = batch(5)
    criterion = DistillationLoss(nn.CrossEntropyLoss(), None, "none", 0.5, 1.0)
    z_cls.requires_grad_(True)
    z_dist.requires_grad_(True)
    loss = criterion(images, (z_cls, z_dist), labels)
    assert loss.item() == pytest.approx(cross_entropy(z_cls, labels.tolist()), rel=1e-6)
    loss.backward()
    assert z_dist.grad is None and z_cls.grad is not None  # the distillation head receives nothing
    single = criterion(images, z_cls, labels)
    assert single.item() == pytest.approx(cross_entropy(z_cls, labels.tolist()), rel=1e-6)


def test_two_class_token_control_averages_both_heads_on_the_labels():
    images, z_cls, z_dist, labels = batch(5)
    criterion = DistillationLoss(nn.CrossEntropyLoss(), None, "labels", 0.5, 1.0)
    loss = criterion(images, (z_cls, z_dist), labels)
    expected = 0.5 * (cross_entropy(z_cls, labels.tolist()) + cross_entropy(z_dist, labels.tolist()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert criterion.last_terms["distillation"].item() == pytest.approx(
        cross_entropy(z_dist, labels.tolist()), rel=1e-5
    )
    with pytest.raises(DeitError, match="distillation token"):
        criterion(images, z_cls, labels)


def test_none_ignores_a_given_teacher():
    images, z_cls, z_dist, labels = batch(6)
    calls = []
    teacher = make_teacher()
    teacher.register_forward_hook(lambda *_: calls.append(1))
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "none", 0.5, 1.0)
    criterion(images, z_cls, labels)
    assert calls == [] and criterion.teacher is None


def test_a_student_without_distillation_token_is_distilled_on_its_class_token():
    images, z_cls, _, labels = batch(7)
    teacher = make_teacher()
    teacher_labels = teacher(images).argmax(-1).tolist()
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "hard", 0.25, 1.0)
    expected = 0.75 * cross_entropy(z_cls, labels.tolist()) + 0.25 * cross_entropy(z_cls, teacher_labels)
    assert criterion(images, z_cls, labels).item() == pytest.approx(expected, rel=1e-5)


def tiny_student() -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "deit_tiny_distilled_patch16_224", img_size=16, patch_size=8, depth=1, embed_dim=16, num_heads=2, num_classes=C
    )


@pytest.mark.parametrize("alpha,silent_head,live_head", [(1.0, "head", "head_dist"), (0.0, "head_dist", "head")])
def test_gradients_reach_the_distillation_head_only_through_the_distillation_term(alpha, silent_head, live_head):
    student = tiny_student().train()
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, C))
    images, labels = torch.randn(4, 3, 16, 16), torch.randint(0, C, (4,))
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "hard", alpha, 1.0)
    criterion(images, student(images), labels).backward()
    silent, live = getattr(student, silent_head).weight.grad, getattr(student, live_head).weight.grad
    assert silent is None or torch.count_nonzero(silent) == 0
    assert live is not None and live.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_a_plain_teacher_module_is_frozen_by_the_loss():
    teacher = make_teacher()
    criterion = DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 0.5, 1.0)
    assert isinstance(criterion.teacher, FrozenTeacher)
    nn.ModuleList([criterion]).train()
    assert not criterion.teacher.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_bad_settings_are_user_errors():
    teacher = make_teacher()
    with pytest.raises(DeitError, match="distillation-type"):
        DistillationLoss(nn.CrossEntropyLoss(), teacher, "medium", 0.5, 1.0)
    with pytest.raises(DeitError, match="kl_reduction"):
        DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 0.5, 1.0, kl_reduction="mean")
    with pytest.raises(DeitError, match="alpha"):
        DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 1.5, 1.0)
    with pytest.raises(DeitError, match="tau"):
        DistillationLoss(nn.CrossEntropyLoss(), teacher, "soft", 0.5, 0.0)
    with pytest.raises(DeitError, match="teacher"):
        DistillationLoss(nn.CrossEntropyLoss(), None, "hard", 0.5, 1.0)


def test_teacher_with_another_class_count_is_refused_at_the_loss():
    images, z_cls, z_dist, labels = batch(8)
    criterion = DistillationLoss(
        nn.CrossEntropyLoss(), nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, C + 2)), "soft", 0.5, 1.0
    )
    with pytest.raises(DeitError, match=f"{C + 2} classes"):
        criterion(images, (z_cls, z_dist), labels)
