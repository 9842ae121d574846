"""The last block computes only the prefix tokens the heads read: same logits and gradients as the full sequence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deit import create_model

SMALL = dict(img_size=32, patch_size=8, num_classes=10)


def _full_sequence_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor | tuple:
    """What `forward` returned before the shortcut: every token through every block, then the heads."""
    return model.forward_head(model.forward_features(images))


def _loss(outputs: torch.Tensor | tuple) -> torch.Tensor:
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return sum((logits * torch.linspace(-1, 1, logits.shape[-1])).sum() for logits in outputs)


def _gradients(model: nn.Module, forward, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, list]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    outputs = forward(images)
    _loss(outputs).backward()
    flat = torch.cat([o.flatten() for o in (outputs if isinstance(outputs, tuple) else (outputs,))])
    return flat.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("deit_tiny_patch16_224", dict(depth=2)),
        ("deit_tiny_distilled_patch16_224", dict(depth=3)),
        ("deit_tiny_distilled_patch16_224", dict(depth=1)),
        ("deit3_small_patch16_224", dict(depth=2)),  # LayerScale, position embedding over the patches only
        ("deit_tiny_distilled_patch16_224", dict(depth=2, drop_path_rate=0.5)),  # per-sample draws, same order
    ],
)
def test_prefix_forward_equals_the_full_sequence_in_outputs_and_gradients(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL, **kwargs).train()
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected, expected_grads = _gradients(model, lambda x: _full_sequence_logits(model, x), images, seed=5)
    got, got_grads = _gradients(model, model, images, seed=5)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got_grads, expected_grads))
    # every parameter still learns: the patch tokens' keys and values in the last block reach the loss
    assert all(g.abs().sum() > 0 for g in got_grads)


def test_prefix_features_are_the_full_features_prefix_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch16_224", **SMALL, depth=2).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        full, prefix = model.forward_features(images), model.forward_prefix_features(images)
        fused = model(images)
    assert prefix.shape == (4, 2, model.embed_dim) and full.shape[1] == 2 + model.patch_embed.num_patches
    assert torch.allclose(prefix, full[:, :2], atol=1e-5)
    assert torch.allclose(fused, _full_sequence_logits(model, images), atol=1e-5)


def test_the_last_block_does_less_work() -> None:
    """The patch tokens skip the last block's queries, attention, projection and MLP: fewer multiply-adds."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("deit_tiny_distilled_patch16_224", **SMALL, depth=2).eval()
    images = torch.randn(2, 3, 32, 32)
    counts = []
    for forward in (lambda x: _full_sequence_logits(model, x), model):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            forward(images)
        counts.append(counter.get_total_flops())
    full, prefix = counts
    assert prefix < 0.75 * full  # of two blocks, the last one's work is ~85% gone (18 tokens, 2 read)
