"""The transformer's building blocks: patch embedding, attention, MLP, LayerScale, stochastic depth, block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deit.errors import DeitError
from deit.models.kwargs_check import check_patch_grid

#: Inputs up to this many pixels (64 x 64) are projected as one matmul when training on CPU (`PatchEmbed`).
SMALL_INPUT_PIXELS = 64 * 64


def dropout(rate: float) -> nn.Module:
    """`nn.Dropout(rate)`, or `nn.Identity()` at rate 0: at the demo's size a call that does nothing still costs
    ~3% of a training step (12 of them per step, measured interleaved)."""
    return nn.Dropout(rate) if rate > 0 else nn.Identity()


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each one to `embed_dim`."""

    def __init__(self, *, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        check_patch_grid(img_size, patch_size, where="PatchEmbed")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images to (B, num_patches, embed_dim) tokens."""
        height, width = images.shape[-2:]
        if height != self.img_size or width != self.img_size:
            raise DeitError(
                f"input is {height}x{width} but the model was built for {self.img_size}x{self.img_size}; "
                "build it with img_size=... (position embeddings are resampled on load)"
            )
        if self._as_matmul(images):
            return self.forward_as_matmul(images)
        return self.proj(images).flatten(2).transpose(1, 2)

    def forward_as_matmul(self, images: Tensor) -> Tensor:
        """The same projection written as patches @ weight: the patch grid cut out by a reshape, then one matmul."""
        batch, channels, height, width = images.shape
        size = self.patch_size
        rows, columns = height // size, width // size
        patches = images.reshape(batch, channels, rows, size, columns, size).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(batch, rows * columns, channels * size * size)
        weight = self.proj.weight
        return F.linear(patches, weight.reshape(weight.shape[0], -1), self.proj.bias)

    def _as_matmul(self, images: Tensor) -> bool:
        # Training on CPU at small inputs (the demo's 32 px): oneDNN's convolution costs ~0.2 ms more per step
        # than one matmul, mostly in its weight gradient, ~5% of the demo student's whole step (measured
        # interleaved in one process). From 224 px oneDNN is faster (fwd + bwd 71 vs 102 ms, deit_tiny at batch
        # 64), and in inference it is never slower: those keep the convolution, as do exports and compiles.
        return (
            images.device.type == "cpu"
            and images.shape[-1] * images.shape[-2] <= SMALL_INPUT_PIXELS
            and torch.is_grad_enabled()
            and self.proj.weight.requires_grad
            and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling()
        )


class Attention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention (flash / memory-efficient kernels)."""

    def __init__(
        self, dim: int, *, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise DeitError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = dropout(proj_drop)

    def _split_heads(self, tokens: Tensor, batch: int, length: int) -> tuple[Tensor, Tensor, Tensor]:
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(self, tokens: Tensor, batch: int | None = None, length: int | None = None) -> Tensor:
        """(B, N, D) to (B, N, D); or (B·N, D) rows of `batch` sequences of `length` tokens to (B·N, D) rows."""
        if batch is None or length is None:
            batch, length, _ = tokens.shape
        query, key, value = self._split_heads(tokens, batch, length)
        dropout = self.attn_drop if self.training else 0.0
        mixed = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        return self.proj_drop(self.proj(mixed.transpose(1, 2).reshape(tokens.shape)))

    def forward_prefix(self, tokens: Tensor, prefix: int) -> Tensor:
        """The output for the first `prefix` tokens only, each attending over all: (B, N, D) to (B, prefix, D).

        Keys and values are needed for every token, queries (and all that follows) only for the prefix: the
        query rows of the qkv weight are applied to the prefix tokens alone.
        """
        batch, length, dim = tokens.shape
        weight, bias = self.qkv.weight, self.qkv.bias
        query = F.linear(tokens[:, :prefix], weight[:dim], None if bias is None else bias[:dim])
        key_value = F.linear(tokens, weight[dim:], None if bias is None else bias[dim:])
        query = query.reshape(batch, prefix, self.num_heads, self.head_dim).transpose(1, 2)
        key, value = key_value.reshape(batch, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout = self.attn_drop if self.training else 0.0
        mixed = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        return self.proj_drop(self.proj(mixed.transpose(1, 2).reshape(batch, prefix, dim)))

    def attention_probs(self, tokens: Tensor) -> Tensor:
        """The (B, heads, N, N) attention weights, computed explicitly (SDPA does not return them)."""
        query, key, _ = self._split_heads(tokens, tokens.shape[0], tokens.shape[1])
        return (query @ key.transpose(-2, -1) * self.scale).softmax(dim=-1)


class Mlp(nn.Module):
    """Two-layer feed-forward network with GELU."""

    def __init__(self, dim: int, *, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = dropout(drop)

    def forward(self, tokens: Tensor) -> Tensor:
        """(..., D) to (..., D): (B, N, D) tokens, or the (B·N, D) rows a training block passes."""
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(tokens)))))


class LayerScale(nn.Module):
    """Per-channel learnable residual scale (DeiT III / CaiT), started small so deep nets train stably."""

    def __init__(self, dim: int, *, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, tokens: Tensor) -> Tensor:
        """Scale each channel by gamma."""
        return tokens * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample, rescaling the kept ones."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, tokens: Tensor) -> Tensor:
        """Identity at eval time or with drop_prob 0."""
        if self.drop_prob == 0.0 or not self.training:
            return tokens
        keep_prob = 1.0 - self.drop_prob
        mask_shape = (tokens.shape[0],) + (1,) * (tokens.ndim - 1)
        mask = tokens.new_empty(mask_shape).bernoulli_(keep_prob)
        return tokens * mask / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)), optional LayerScale."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.ls1 = LayerScale(dim, init_value=layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_dim=int(dim * mlp_ratio), drop=proj_drop)
        self.ls2 = LayerScale(dim, init_value=layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # Official DeiT III checkpoints name LayerScale `gamma_1`/`gamma_2`: renamed on load (timm does it in its
        # checkpoint filter), so plain `load_state_dict` takes them; saving keeps the `ls1.gamma` contract.
        for branch in (1, 2):
            official = f"{prefix}gamma_{branch}"
            if official in state_dict and isinstance(getattr(self, f"ls{branch}"), LayerScale):
                state_dict[f"{prefix}ls{branch}.gamma"] = state_dict.pop(official)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, N, D) to (B, N, D)."""
        if self._trains_on_rows():
            return self._forward_rows(tokens)
        tokens = tokens + self.drop_path1(self.ls1(self.attn(self.norm1(tokens))))
        return tokens + self.drop_path2(self.ls2(self.mlp(self.norm2(tokens))))

    def _forward_rows(self, tokens: Tensor) -> Tensor:
        """The same block on the (B·N, D) rows: every linear layer gets a 2-D input, so neither it nor its
        backward reshapes (2 view operators and 2 autograd nodes fewer per layer; ~3% of the demo's step,
        measured interleaved). Training only: inference and exports keep (B, N, D); in training, a forward
        hook on `attn` or `mlp` sees the rows."""
        batch, length, dim = tokens.shape
        rows = tokens.reshape(batch * length, dim)
        rows = rows + self.drop_path1(self.ls1(self.attn(self.norm1(rows), batch, length)))
        rows = rows + self.drop_path2(self.ls2(self.mlp(self.norm2(rows))))
        return rows.view(batch, length, dim)

    def _trains_on_rows(self) -> bool:
        # Training with gradients, and no stochastic depth: it draws per sample, so its mask needs (B, N, D).
        drops_paths = isinstance(self.drop_path1, DropPath) or isinstance(self.drop_path2, DropPath)
        return self.training and torch.is_grad_enabled() and not drops_paths

    def forward_prefix(self, tokens: Tensor, prefix: int) -> Tensor:
        """`self(tokens)[:, :prefix]` at a fraction of the cost: only the prefix tokens' outputs are computed.

        A token's output depends on its own query and every token's key and value, so a last block whose patch
        outputs nobody reads (the heads read the class and distillation tokens) needs the full sequence only
        for keys and values; the rest -- queries, attention, projection, MLP -- runs on the prefix alone.
        """
        kept = tokens[:, :prefix] + self.drop_path1(self.ls1(self.attn.forward_prefix(self.norm1(tokens), prefix)))
        if self._trains_on_rows():
            batch, _, dim = kept.shape  # the MLP on 2-D rows, as `_forward_rows`
            rows = kept.reshape(batch * prefix, dim)
            return (rows + self.drop_path2(self.ls2(self.mlp(self.norm2(rows))))).view(batch, prefix, dim)
        return kept + self.drop_path2(self.ls2(self.mlp(self.norm2(kept))))
