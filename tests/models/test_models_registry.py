"""The registry: every named model has the official parameter count and trains (gradients reach everything)."""

from __future__ import annotations

import pytest
import torch

from deit.errors import DeitError
from deit.models import VisionTransformer, create_model, get_model_spec, list_models
from deit.models.factory import build_model
from deit.models.registry import aliases, check_model_name, model_source

ALL_NAMES = list_models()


def _distinct_at_low_resolution(names: list[str]) -> list[str]:
    # At a 32-pixel input the 224 and 384 variants are the same network: test each architecture once.
    seen: dict[str, str] = {}
    for name in names:
        kwargs = {k: v for k, v in get_model_spec(name).kwargs.items() if k != "img_size"}
        seen.setdefault(repr(sorted(kwargs.items())), name)
    return list(seen.values())


ARCHITECTURES = _distinct_at_low_resolution(ALL_NAMES)


def test_registry_holds_the_official_release() -> None:
    assert len(ALL_NAMES) == 15
    assert list_models("*distilled*") == [
        "deit_base_distilled_patch16_224",
        "deit_base_distilled_patch16_384",
        "deit_small_distilled_patch16_224",
        "deit_tiny_distilled_patch16_224",
    ]
    assert all(name.startswith("deit3_") for name in list_models("deit3_*"))
    assert len(list_models("deit3_*")) == 7


@pytest.mark.parametrize("name", ALL_NAMES)
def test_parameter_count_matches_the_release(name: str) -> None:
    # Build on the meta device: no memory, no init cost (and proof that construction needs no real tensors).
    with torch.device("meta"):
        model = create_model(name)
    assert model.cls_token.is_meta
    assert sum(p.numel() for p in model.parameters()) == get_model_spec(name).params


def test_every_architecture_is_exercised() -> None:
    assert len(ARCHITECTURES) == 10  # Ti/S/B plain and distilled, DeiT III S/M/B/L


# The widths from medium up take seconds each (real-size layers): slow tier; tiny and small stay in the fast one.
REAL_SIZE_SLOW = [
    name if "tiny" in name or "small" in name else pytest.param(name, marks=pytest.mark.slow) for name in ARCHITECTURES
]


@pytest.mark.parametrize("name", REAL_SIZE_SLOW)
def test_forward_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    spec = get_model_spec(name)
    # Real widths, two blocks, a 2x2 patch grid: every parameter kind, a fraction of the cost.
    model = create_model(name, img_size=32, depth=2, num_classes=7, drop_path_rate=0.1).train()
    images = torch.randn(2, 3, 32, 32)
    output = model(images)
    if spec.distilled:
        assert isinstance(output, tuple) and len(output) == 2
        loss = sum(part.square().mean() for part in output)
    else:
        assert output.shape == (2, 7)
        loss = output.square().mean()
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        # LayerScale's 1e-6 start and zero-initialised biases still get non-zero gradients somewhere.
        assert param.grad.abs().sum() > 0, param_name
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, 7)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(DeitError, match="did you mean deit_tiny_distilled_patch16_224"):
        create_model("deit_tiny_distiled_patch16_224")
    with pytest.raises(DeitError, match="did you mean .*deit3_small_patch16_224"):
        get_model_spec("deit3_smal_patch16_224")


def test_factory_unknown_name_is_one_line() -> None:
    with pytest.raises(DeitError) as caught:
        build_model("deit_tinny_patch16_224", num_classes=10)
    assert "\n" not in str(caught.value)
    assert "deit_tiny_patch16_224" in str(caught.value)


@pytest.mark.parametrize(
    "name, source",
    [
        ("deit_tiny_patch16_224", "deit"),
        ("vit_tiny_patch16_224", "timm"),
        ("resnet18", "timm"),
        ("regnet_y_400mf", "torchvision"),
        ("deit_tinny_patch16_224", None),
    ],
)
def test_model_source_searches_registry_then_timm_then_torchvision(name: str, source: str | None) -> None:
    assert model_source(name) == source


def test_check_model_name_names_the_flag_and_the_close_matches() -> None:
    check_model_name("resnet18", where="--teacher-model")  # known: no error
    with pytest.raises(DeitError, match=r"^--teacher-model resnet5O: unknown model; did you mean .*resnet50"):
        check_model_name("resnet5O", where="--teacher-model")


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_model("deit_tiny_patch16_224", img_size=30, patch_size=8, depth=1),
        lambda: VisionTransformer(img_size=30, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=2),
    ],
)
def test_an_image_that_cuts_into_no_whole_patches_is_refused(build) -> None:  # noqa: ANN001
    with pytest.raises(DeitError, match="img_size 30 is not divisible by the patch size 8; use a multiple of 8"):
        build()


@pytest.mark.parametrize(
    ("alias", "target"),
    [
        ("deit_small_patch16_LS", "deit3_small_patch16_224"),
        ("deit_medium_patch16_LS", "deit3_medium_patch16_224"),
        ("deit_base_patch16_LS", "deit3_base_patch16_224"),
        ("deit_large_patch16_LS", "deit3_large_patch16_224"),
    ],
)
def test_official_deit3_names_build_our_deit3(alias: str, target: str) -> None:
    assert aliases()[alias] == target and model_source(alias) == "deit"
    check_model_name(alias, where="--model")
    small = dict(img_size=48, depth=2, num_classes=7)
    torch.manual_seed(0)
    ours = create_model(alias, **small).eval()
    assert ours.patch_embed.proj.kernel_size == (16, 16) and ours.pos_embed.shape[1] == 9  # patches only
    # The official constructors start LayerScale at 1e-4 whatever the size (models_v2.vit_models init_scale).
    assert all(torch.all(block.ls1.gamma == 1e-4) for block in ours.blocks)
    with torch.device("meta"):
        assert sum(p.numel() for p in create_model(alias).parameters()) == get_model_spec(target).params
    import timm

    reference = timm.create_model(target, pretrained=False, **small).eval()  # timm's port of the official models
    reference.load_state_dict(ours.state_dict(), strict=True)
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=1e-5, atol=1e-5)


def test_official_names_without_a_deit3_of_ours_stay_unknown() -> None:
    for name in ("deit_tiny_patch16_LS", "deit_huge_patch14_LS"):
        with pytest.raises(DeitError, match="unknown model"):
            create_model(name)
    assert not set(aliases()) & set(list_models())  # `deit models` lists each architecture once
