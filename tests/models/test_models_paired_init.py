"""A plain and a distilled DeiT built from the same seed start equal on every parameter they share."""

from __future__ import annotations

import pytest
import torch

from deit.models import create_model

KWARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 10}


def _built(name: str, seed: int, **kwargs: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create_model(name, **{**KWARGS, **kwargs}).state_dict()


@pytest.mark.parametrize("seed", [0, 7])
def test_the_distilled_model_shares_the_plain_models_initial_weights(seed: int) -> None:
    plain = _built("deit_tiny_patch16_224", seed)
    distilled = _built("deit_tiny_distilled_patch16_224", seed)
    assert set(plain) < set(distilled)
    for name, value in plain.items():
        if name == "pos_embed":  # rows: class, (distillation), patches
            torch.testing.assert_close(distilled[name][:, :1], value[:, :1], rtol=0, atol=0)
            torch.testing.assert_close(distilled[name][:, 2:], value[:, 1:], rtol=0, atol=0)
        else:
            torch.testing.assert_close(distilled[name], value, rtol=0, atol=0, msg=name)
    # The distillation-only parts are drawn (not left at zero) from the same truncated normal, std 0.02.
    for part in (distilled["dist_token"], distilled["pos_embed"][:, 1], distilled["head_dist.weight"]):
        assert 0.01 < part.std() < 0.03
    assert distilled["head_dist.bias"].abs().max() == 0
    assert not torch.equal(distilled["dist_token"], distilled["cls_token"])
    assert not torch.equal(distilled["head_dist.weight"], distilled["head.weight"])
    # Another seed draws other weights.
    assert not torch.equal(
        _built("deit_tiny_patch16_224", seed + 1)["blocks.0.attn.qkv.weight"], plain["blocks.0.attn.qkv.weight"]
    )


def test_positions_over_the_patches_only_are_shared_whole() -> None:
    plain = _built("deit_tiny_patch16_224", 3, pos_embed_over_prefix=False)
    distilled = _built("deit_tiny_distilled_patch16_224", 3, pos_embed_over_prefix=False)
    assert plain["pos_embed"].shape == distilled["pos_embed"].shape
    for name, value in plain.items():
        torch.testing.assert_close(distilled[name], value, rtol=0, atol=0, msg=name)
