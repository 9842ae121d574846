"""Patch embedding: the matmul form used for small inputs in CPU training equals the convolution."""

from __future__ import annotations

import pytest
import torch

from deit import create_model
from deit.models.layers import SMALL_INPUT_PIXELS, PatchEmbed


def _embed(img_size: int, patch_size: int) -> PatchEmbed:
    torch.manual_seed(0)
    return PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=3, embed_dim=24)


@pytest.mark.parametrize("img_size, patch_size", [(32, 8), (24, 4), (64, 16)])
def test_matmul_form_equals_the_convolution_with_gradients(img_size, patch_size):
    embed = _embed(img_size, patch_size)
    images = torch.randn(5, 3, img_size, img_size, requires_grad=True)
    direction = torch.randn(5, (img_size // patch_size) ** 2, 24)
    results = []
    for forward in (embed.forward_as_matmul, lambda x: embed.proj(x).flatten(2).transpose(1, 2)):
        tokens = forward(images)
        grads = torch.autograd.grad((tokens * direction).sum(), (images, embed.proj.weight, embed.proj.bias))
        results.append((tokens, *grads))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_the_matmul_form_is_taken_only_when_training_small_inputs_on_cpu():
    small = torch.randn(2, 3, 32, 32)
    assert _embed(32, 8)._as_matmul(small)
    with torch.no_grad():
        assert not _embed(32, 8)._as_matmul(small)  # inference: the convolution is as fast or faster
    large = _embed(96, 16)
    assert 96 * 96 > SMALL_INPUT_PIXELS and not large._as_matmul(torch.randn(1, 3, 96, 96))
    frozen = _embed(32, 8)
    frozen.proj.weight.requires_grad_(False)
    assert not frozen._as_matmul(small)


def test_a_training_step_through_the_model_is_unchanged():
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=5)
    images = torch.randn(3, 3, 32, 32)
    grads = []
    for use_matmul in (True, False):
        model.patch_embed._as_matmul = lambda images, use=use_matmul: use  # type: ignore[method-assign]
        model.zero_grad(set_to_none=True)
        cls_logits, dist_logits = model(images)
        (cls_logits.sum() + 2 * dist_logits.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
