"""VisionTransformer with a class token, an optional distillation token, and the DeiT III options."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deit.models.layers import Block, PatchEmbed, dropout


class VisionTransformer(nn.Module):
    """ViT/DeiT. Tokens are `[cls, dist, patches]`; a distilled model has a second head on the dist token.

    A distilled model returns `(cls_logits, dist_logits)` in training mode and their average in eval mode.
    `pos_embed_over_prefix=False` is DeiT III: the position embedding covers the patches only.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        distilled: bool = False,
        layer_scale_init: float | None = None,
        pos_embed_over_prefix: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.distilled = distilled
        self.num_prefix_tokens = 2 if distilled else 1
        self.pos_embed_over_prefix = pos_embed_over_prefix

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        # Registration order is the official/timm one (cls_token, pos_embed, dist_token): optimizer state in a
        # checkpoint is matched to parameters by position, so this order is part of the checkpoint format.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos_len = self.patch_embed.num_patches + (self.num_prefix_tokens if pos_embed_over_prefix else 0)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_len, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.pos_drop = dropout(drop_rate)

        # Stochastic depth grows linearly with depth, as in the paper.
        drop_path_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *[
                Block(
                    embed_dim,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rate,
                    layer_scale_init=layer_scale_init,
                )
                for rate in drop_path_rates
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = dropout(drop_rate)
        self.head = self._new_head(num_classes)
        self.head_dist = None
        if distilled:
            with torch.random.fork_rng(devices=[]):  # drawn again, last, by _init_weights: the stream stays shared
                self.head_dist = self._new_head(num_classes)
        self._init_weights()

    @property
    def img_size(self) -> int:
        """The square input resolution the model was built for."""
        return self.patch_embed.img_size

    @property
    def patch_size(self) -> int:
        """The side of one square patch, in pixels."""
        return self.patch_embed.patch_size

    def _new_head(self, num_classes: int) -> nn.Module:
        head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        _init_module(head)
        return head

    def _init_weights(self) -> None:
        # The distillation-only parameters (the distillation token, its position, its head) draw last, so a plain
        # and a distilled model built from the same seed start equal on everything they share: a paired
        # comparison (`deit demo`) then differs only in what distillation adds. A plain model draws as before.
        with torch.no_grad():
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            split = self.distilled and self.pos_embed_over_prefix  # rows: class, distillation, patches
            if split:
                shared = nn.init.trunc_normal_(torch.empty_like(self.pos_embed[:, 1:]), std=0.02)
                self.pos_embed[:, :1] = shared[:, :1]
                self.pos_embed[:, 2:] = shared[:, 1:]
            else:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
            for module in self.modules():
                if module is not self.head_dist:
                    _init_module(module)
            if self.dist_token is not None:
                nn.init.trunc_normal_(self.dist_token, std=0.02)
                if split:
                    nn.init.trunc_normal_(self.pos_embed[:, 1:2], std=0.02)
            if self.head_dist is not None:
                _init_module(self.head_dist)

    def no_weight_decay(self) -> set[str]:
        """Parameters excluded from weight decay (the engine also excludes norms and biases)."""
        return {"pos_embed", "cls_token", "dist_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer grouping (stem, blocks, final norm), which `--layer-decay` uses to give each block its lr."""
        return {
            "stem": r"^cls_token|^dist_token|^pos_embed|^patch_embed",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    def get_classifier(self) -> nn.Module | tuple[nn.Module, nn.Module]:
        """The class head, or `(head, head_dist)` for a distilled model."""
        return (self.head, self.head_dist) if self.distilled else self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head(s) with freshly initialised ones for `num_classes` (0: features only)."""
        self.num_classes = num_classes
        device = self.cls_token.device
        self.head = self._new_head(num_classes).to(device)
        if self.distilled:
            self.head_dist = self._new_head(num_classes).to(device)

    def prefix_tokens(self, batch_size: int) -> list[Tensor]:
        """The learned `[cls]` or `[cls, dist]` tokens, each expanded to the batch."""
        tokens = [self.cls_token] + ([self.dist_token] if self.distilled else [])
        return [token.expand(batch_size, -1, -1) for token in tokens]

    def embed(self, images: Tensor) -> Tensor:
        """Images to the token sequence entering the first block: prefix + patches + position embedding."""
        patches = self.patch_embed(images)
        # One concatenation of [cls, (dist,) patches]: at the demo's size every operator, forward and backward,
        # costs about as much in dispatch as in arithmetic.
        prefix = [token.to(patches.dtype) for token in self.prefix_tokens(patches.shape[0])]
        if self.pos_embed_over_prefix:
            tokens = torch.cat([*prefix, patches], dim=1) + self.pos_embed
        else:
            tokens = torch.cat([*prefix, patches + self.pos_embed], dim=1)
        return self.pos_drop(tokens)

    def forward_features(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images to normalised (B, prefix + patches, D) tokens."""
        return self.norm(self.blocks(self.embed(images)))

    def forward_prefix_features(self, images: Tensor) -> Tensor:
        """Normalised prefix tokens (B, 1 or 2, D) after the last block: what the heads read, computed cheaply.

        Equal to `forward_features(images)[:, :prefix]`, but the last block computes keys and values for every
        token and everything else for the prefix only (`Block.forward_prefix`): no work is spent on patch
        outputs that no head reads, in the forward pass and the backward pass alike.
        """
        tokens = self.embed(images)
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            tokens = block.forward_prefix(tokens, self.num_prefix_tokens) if index == last else block(tokens)
        return self.norm(tokens[:, : self.num_prefix_tokens])

    def forward_intermediates(self, images: Tensor) -> list[Tensor]:
        """The token sequence after each block (the last one also through the final norm)."""
        tokens = self.embed(images)
        outputs = []
        for block in self.blocks:
            tokens = block(tokens)
            outputs.append(tokens)
        outputs[-1] = self.norm(outputs[-1])
        return outputs

    def attention_maps(self, images: Tensor) -> list[Tensor]:
        """Each block's (B, heads, N, N) attention weights, for analysis; no gradient tricks, eval use."""
        tokens = self.embed(images)
        maps = []
        for block in self.blocks:
            maps.append(block.attn.attention_probs(block.norm1(tokens)))
            tokens = block(tokens)
        return maps

    def head_logits(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        """Both heads' logits from `forward_features` (or `forward_prefix_features`) output: `(cls, dist or None)`."""
        cls_logits = self.head(self.head_drop(features[:, 0]))
        if not self.distilled:
            return cls_logits, None
        return cls_logits, self.head_dist(self.head_drop(features[:, 1]))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Features to logits; distilled: a tuple in training mode, the fused average in eval mode."""
        if pre_logits:
            pooled = features[:, 0]
            return (pooled + features[:, 1]) / 2 if self.distilled else pooled
        cls_logits, dist_logits = self.head_logits(features)
        if dist_logits is None:
            return cls_logits
        if self.training and not torch.jit.is_scripting():
            return cls_logits, dist_logits
        return (cls_logits + dist_logits) / 2

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Images to logits (see forward_head for the distilled contract)."""
        return self.forward_head(self.forward_prefix_features(images))


def _init_module(module: nn.Module) -> None:
    """The official initialisation of one layer: truncated-normal linear weights (std 0.02), zero biases, unit
    layer norms; other modules are left as built."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
