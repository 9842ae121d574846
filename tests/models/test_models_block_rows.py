"""Training blocks run on (B·N, D) rows: the same outputs and gradients as the (B, N, D) formula."""

from __future__ import annotations

import pytest
import torch

from deit.models.layers import Block


def _three_d(block: Block, tokens: torch.Tensor) -> torch.Tensor:
    """The block's formula on (B, N, D) tokens, every module called as inference calls it."""
    tokens = tokens + block.drop_path1(block.ls1(block.attn(block.norm1(tokens))))
    return tokens + block.drop_path2(block.ls2(block.mlp(block.norm2(tokens))))


def _outputs_and_grads(block: Block, forward, tokens: torch.Tensor) -> list[torch.Tensor]:
    block.zero_grad(set_to_none=True)
    tokens = tokens.clone().requires_grad_(True)
    out = forward(tokens)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return [out.detach(), tokens.grad] + [p.grad for p in block.parameters()]


@pytest.mark.parametrize("layer_scale", [None, 0.1])
def test_rows_equal_the_three_d_formula(layer_scale, monkeypatch):
    torch.manual_seed(0)
    block = Block(16, num_heads=2, layer_scale_init=layer_scale).train()
    tokens = torch.randn(3, 5, 16)
    taken = []
    original = Block._forward_rows
    monkeypatch.setattr(Block, "_forward_rows", lambda self, t: taken.append(1) or original(self, t))
    ours = _outputs_and_grads(block, block, tokens)
    reference = _outputs_and_grads(block, lambda t: _three_d(block, t), tokens)
    assert taken, "the rows path was not taken in training"
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_prefix_rows_equal_the_whole_block_cut():
    torch.manual_seed(1)
    block = Block(16, num_heads=4).train()
    tokens = torch.randn(2, 7, 16)
    ours = _outputs_and_grads(block, lambda t: block.forward_prefix(t, 2), tokens)
    reference = _outputs_and_grads(block, lambda t: _three_d(block, t)[:, :2], tokens)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_drop_path_and_inference_keep_the_three_d_layout(monkeypatch):
    monkeypatch.setattr(Block, "_forward_rows", lambda self, t: pytest.fail("rows path taken"))
    tokens = torch.randn(2, 5, 16)
    Block(16, num_heads=2, drop_path=0.2).train()(tokens)  # per-sample masks need (B, N, D)
    block = Block(16, num_heads=2).train()
    with torch.no_grad():
        block(tokens)
    block.eval()(tokens)
