"""Same weights, same logits as timm (the reference implementation), loading in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from deit.models import create_model
from deit.models.factory import load_trained_model

SMALL = dict(img_size=32, patch_size=8, depth=2, num_classes=10)
CASES = [
    ("deit_tiny_distilled_patch16_224", SMALL),
    ("deit_small_patch16_224", SMALL),
    ("deit3_small_patch16_224", SMALL),
    ("deit3_medium_patch16_224", dict(SMALL, img_size=48)),
]


def _timm_model(name: str, **kwargs: object) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False, **kwargs)
    if hasattr(model, "set_distilled_training"):
        model.set_distilled_training(True)  # timm returns the two heads apart in training mode only when asked
    return model


def _assert_same_outputs(ours: torch.nn.Module, reference: torch.nn.Module, images: torch.Tensor) -> None:
    for training in (False, True):
        ours.train(training)
        reference.train(training)
        with torch.no_grad():
            got, want = ours(images), reference(images)
        if isinstance(want, tuple):
            assert isinstance(got, tuple) and len(got) == len(want)
            for got_part, want_part in zip(got, want):
                torch.testing.assert_close(got_part, want_part, rtol=1e-5, atol=1e-5)
        else:
            assert torch.is_tensor(got)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_timm_weights_load_strictly_into_ours(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    reference = _timm_model(name, **kwargs)
    ours = create_model(name, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    _assert_same_outputs(ours, reference, torch.randn(3, 3, kwargs["img_size"], kwargs["img_size"]))


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_our_weights_load_strictly_into_timm(name: str, kwargs: dict) -> None:
    torch.manual_seed(1)
    ours = create_model(name, **kwargs)
    reference = _timm_model(name, **kwargs)
    reference.load_state_dict(ours.state_dict(), strict=True)
    _assert_same_outputs(ours, reference, torch.randn(3, 3, kwargs["img_size"], kwargs["img_size"]))


@pytest.mark.slow
def test_real_size_distilled_tiny_matches_timm(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = _timm_model("deit_tiny_distilled_patch16_224")
    # The official release wraps the weights as {'model': ...}; read it back through the file path.
    torch.save({"model": reference.state_dict()}, tmp_path / "deit_tiny_distilled.pth")
    ours = create_model("deit_tiny_distilled_patch16_224", pretrained=tmp_path / "deit_tiny_distilled.pth")
    _assert_same_outputs(ours, reference, torch.randn(2, 3, 224, 224))
    rebuilt, meta = load_trained_model(tmp_path / "deit_tiny_distilled.pth")
    assert meta.model == "deit_tiny_distilled_patch16_224" and meta.model_kwargs == {}
    assert len(meta.class_names) == 1000 and meta.class_names[0] != "class_0"  # ImageNet names
    reference.load_state_dict(rebuilt.state_dict(), strict=True)
    _assert_same_outputs(rebuilt, reference, torch.randn(2, 3, 224, 224))


def test_official_deit3_layer_scale_names_are_mapped(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = _timm_model("deit3_small_patch16_224", **SMALL).eval()
    # Official DeiT III files name LayerScale `blocks.N.gamma_1` / `gamma_2` (timm: `ls1.gamma` / `ls2.gamma`).
    official = {
        key.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2"): value
        for key, value in reference.state_dict().items()
    }
    assert "blocks.0.gamma_1" in official and "blocks.1.gamma_2" in official
    torch.save({"model": official, "epoch": 799}, tmp_path / "deit_3_small_224_1k.pth")
    ours = create_model("deit3_small_patch16_224", pretrained=tmp_path / "deit_3_small_224_1k.pth", **SMALL)
    _assert_same_outputs(ours, reference, torch.randn(2, 3, 32, 32))
    rebuilt, meta = load_trained_model(tmp_path / "deit_3_small_224_1k.pth")
    assert meta.model == "deit3_small_patch16_224"
    _assert_same_outputs(rebuilt, reference, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", ["deit3_small_patch16_224", "deit_small_patch16_LS"])
def test_official_deit3_state_dict_loads_through_plain_load_state_dict(name: str) -> None:
    torch.manual_seed(4)
    reference = _timm_model("deit3_small_patch16_224", **SMALL).eval()
    official = {
        key.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2"): value
        for key, value in reference.state_dict().items()
    }
    ours = create_model(name, **SMALL)
    assert ours.load_state_dict(official, strict=True)  # no missing or unexpected key
    assert torch.equal(ours.blocks[1].ls2.gamma, official["blocks.1.gamma_2"])
    assert "blocks.0.ls1.gamma" in ours.state_dict() and "blocks.0.gamma_1" in official  # saving keeps our names
    _assert_same_outputs(ours, reference, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_parameters_are_registered_in_timms_order(name: str, kwargs: dict) -> None:
    # Optimizer state is saved by parameter position: the same order is what lets checkpoints resume both ways.
    ours = [(key, tuple(p.shape)) for key, p in create_model(name, **kwargs).named_parameters()]
    reference = [(key, tuple(p.shape)) for key, p in _timm_model(name, **kwargs).named_parameters()]
    assert ours == reference
