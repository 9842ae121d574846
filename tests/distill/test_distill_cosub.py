"""--cosub: the loss equals the official engine's formula on the same outputs, and the step doubles the batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deit.distill import CosubLoss
from deit.errors import DeitError


def official_cosub_loss(outputs: torch.Tensor, targets: torch.Tensor, *, bce_loss: bool = False) -> torch.Tensor:
    """The official engine.train_one_epoch under --cosub, written out independently as the reference."""
    criterion = torch.nn.BCEWithLogitsLoss()
    if bce_loss:
        targets = targets.gt(0.0).type(targets.dtype)
    halves = torch.split(outputs, outputs.shape[0] // 2, dim=0)
    loss = 0.25 * criterion(halves[0], targets)
    loss = loss + 0.25 * criterion(halves[1], targets)
    loss = loss + 0.25 * criterion(halves[0], halves[1].detach().sigmoid())
    return loss + 0.25 * criterion(halves[1], halves[0].detach().sigmoid())


def _mixed_targets(batch: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(batch, classes, generator=generator).softmax(-1)


@pytest.mark.parametrize("bce_loss", [False, True])
def test_loss_and_gradient_equal_the_official_formula(bce_loss: bool) -> None:
    for seed in range(20):  # bit for bit: the quarters are added in the official order
        generator = torch.Generator().manual_seed(seed)
        batch, classes = 2 + seed % 5 * 2, 10 + seed
        targets = _mixed_targets(batch, classes, generator)
        outputs = 3 * torch.randn(2 * batch, classes, generator=generator)
        ours_in, official_in = outputs.clone().requires_grad_(), outputs.clone().requires_grad_()
        ours = CosubLoss(target_threshold=0.0 if bce_loss else None)(torch.zeros(batch), ours_in, targets)
        official = official_cosub_loss(official_in, targets, bce_loss=bce_loss)
        assert torch.equal(ours, official), (seed, ours.item(), official.item())
        ours.backward()
        official.backward()
        assert torch.equal(ours_in.grad, official_in.grad)  # the detached sigmoid: no gradient through it


def test_class_indices_become_smoothed_one_hot_targets() -> None:
    outputs = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 4, 1])
    dense = torch.full((4, 5), 0.1 / 5)
    dense[torch.arange(4), labels] = 1 - 0.1 + 0.1 / 5
    ours = CosubLoss(smoothing=0.1)(torch.zeros(4), outputs, labels)
    assert torch.allclose(ours, official_cosub_loss(outputs, dense))


def test_a_distilled_model_is_refused_in_one_line() -> None:
    with pytest.raises(DeitError, match="--cosub trains a model with one head"):
        CosubLoss()(torch.zeros(2), (torch.zeros(4, 3), torch.zeros(4, 3)), torch.zeros(2, 3))


def test_the_step_feeds_each_image_twice_through_two_sub_models() -> None:
    """The official flow (mixup, batch doubled, one forward, split) gives the loss TrainStep computes."""
    from deit.engine.step import TrainStep
    from deit.models import create_model
    from deit.precision import Precision

    torch.manual_seed(0)
    # strong stochastic depth: the two copies of an image must come out different
    model = create_model(
        "deit_tiny_patch16_224",
        img_size=16,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=5,
        drop_path_rate=0.5,
    )
    images = torch.randn(4, 3, 16, 16)
    targets = _mixed_targets(4, 5, torch.Generator().manual_seed(2))
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    step = TrainStep(model, CosubLoss(), torch.optim.SGD(model.parameters(), lr=0.1), precision=Precision("fp32"))

    torch.manual_seed(7)
    ours = step.loss(images, targets)
    torch.manual_seed(7)
    outputs = model(torch.cat((images, images), dim=0))
    assert seen == [8, 8]
    assert torch.equal(ours, official_cosub_loss(outputs, targets))
    first, second = outputs.chunk(2)
    assert not torch.allclose(first, second)  # the same images through two different sub-models


def test_step_without_cosub_keeps_the_batch() -> None:
    from deit.engine.step import TrainStep
    from deit.precision import Precision

    model = nn.Linear(3, 2)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    step = TrainStep(
        model, lambda i, o, t: o.sum(), torch.optim.SGD(model.parameters(), lr=0.1), precision=Precision("fp32")
    )
    step.loss(torch.zeros(4, 3), torch.zeros(4))
    assert seen == [4]
