"""The two graph shapes the int8 ONNX path needs: attention exported with separate q/k/v products (the layout ONNX
Runtime's attention fusion recognises, so it can become one int8 `QAttention` node), and `SkipLayerNormalization`
split back into Add + LayerNormalization after fusion (its CPU kernel measured ~3x slower than the pair on an AVX2
EPYC, see benchmarks/BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import functools
import math

from torch import Tensor, nn

from deit.models.layers import Attention


class SeparateQKVAttention(nn.Module):
    """`Attention` with the packed qkv product split in three and softmax(q·kᵀ/√d)·v written out (same maths)."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        dim = attention.qkv.in_features
        self.num_heads, self.head_dim = attention.num_heads, attention.head_dim
        has_bias = attention.qkv.bias is not None
        self.query, self.key, self.value = (nn.Linear(dim, dim, bias=has_bias) for _ in range(3))
        for index, linear in enumerate((self.query, self.key, self.value)):
            rows = slice(index * dim, (index + 1) * dim)
            linear.weight.data = attention.qkv.weight.data[rows].clone()
            if has_bias:
                linear.bias.data = attention.qkv.bias.data[rows].clone()
        self.proj = attention.proj

    def _heads(self, tokens: Tensor) -> Tensor:
        batch, length, _ = tokens.shape
        return tokens.reshape(batch, length, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, N, D) to (B, N, D), eval only (no attention dropout)."""
        batch, length, dim = tokens.shape
        query, value = self._heads(self.query(tokens)), self._heads(self.value(tokens))
        key = self._heads(self.key(tokens)).transpose(-1, -2)
        # Division by a constant after the product: the order the fusion pattern expects.
        probs = ((query @ key) / math.sqrt(self.head_dim)).softmax(dim=-1)
        return self.proj((probs @ value).permute(0, 2, 1, 3).reshape(batch, length, dim))


def with_separate_qkv(model: nn.Module) -> nn.Module:
    """A copy of `model` whose `Attention` modules are `SeparateQKVAttention` (the original is left untouched)."""
    copied = copy.deepcopy(model).eval()
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Attention):
                setattr(parent, name, SeparateQKVAttention(child))
    for block in getattr(copied, "blocks", []):
        # onnxruntime fuses (and quantizes) self-attention only in the whole-sequence pattern with its residual
        # add, so the exported last block runs whole and is cut after; the fused int8 node is the faster one.
        block.forward_prefix = functools.partial(_whole_block_then_prefix, block)
    return copied


def _whole_block_then_prefix(block: nn.Module, tokens: Tensor, prefix: int) -> Tensor:
    return block(tokens)[:, :prefix]


def unfuse_skip_layer_norm(graph: object) -> int:
    """Replace every SkipLayerNormalization node of an `onnx.GraphProto` by (bias) Add, Add, LayerNormalization.

    Returns how many were replaced. The fused node's optional outputs (mean, inverse std) are never read by the
    graphs this project exports; its fourth output, the residual sum, is kept under its name.
    """
    from onnx import helper

    nodes, replaced = [], 0
    for node in graph.node:  # type: ignore[attr-defined]
        if node.op_type != "SkipLayerNormalization":
            nodes.append(node)
            continue
        replaced += 1
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        hidden, skip, gamma, beta = node.input[:4]
        outputs = [*node.output, "", "", ""]
        if any(outputs[1:3]):
            raise ValueError(f"{node.name}: mean/inverse-std outputs are used; cannot unfuse")
        total = outputs[3] or f"{node.name}_sum"
        if len(node.input) > 4 and node.input[4]:
            nodes.append(
                helper.make_node("Add", [hidden, node.input[4]], [f"{node.name}_biased"], name=f"{node.name}_bias")
            )
            hidden = f"{node.name}_biased"
        nodes.append(helper.make_node("Add", [hidden, skip], [total], name=f"{node.name}_residual"))
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [total, gamma, beta],
                [outputs[0]],
                name=f"{node.name}_norm",
                axis=-1,
                epsilon=epsilon,
            )
        )
    del graph.node[:]  # type: ignore[attr-defined]
    graph.node.extend(nodes)  # type: ignore[attr-defined]
    return replaced


__all__ = ["SeparateQKVAttention", "unfuse_skip_layer_norm", "with_separate_qkv"]
