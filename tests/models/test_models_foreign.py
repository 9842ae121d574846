"""Every architecture a file names is checked, ours or timm's: bounded cost, typed settings, the tensors' shapes,
builder keys once; nothing is built before the checks pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import deit
from deit.cli import main
from deit.errors import DeitError
from deit.models.factory import load_trained_model
from deit.models.model_cost import set_max_model_bytes, vit_cost
from tiny_checkpoints import write_image

_TIMM = "vit_tiny_patch16_224"
_TIMM_KWARGS = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32}


def _timm_file(path: Path, model_kwargs: dict, *, model: str = _TIMM, state: dict | None = None) -> Path:
    if state is None:
        torch.manual_seed(0)
        state = timm.create_model(_TIMM, pretrained=False, num_classes=3, **_TIMM_KWARGS).state_dict()
    meta = {"model": model, "num_classes": 3, "input_size": 32, "model_kwargs": model_kwargs}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"deit": json.dumps(meta)})
    return path


def _no_real_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any timm model is built off the meta device (the checks must refuse first)."""
    real = timm.create_model

    def guarded(*args: object, **kwargs: object) -> torch.nn.Module:
        if torch.empty(0).device.type != "meta":
            pytest.fail("a model was built for real")
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", guarded)


def test_a_consistent_timm_file_loads_with_builder_keys_in_its_kwargs(tmp_path: Path) -> None:
    path = _timm_file(tmp_path / "ok.safetensors", dict(_TIMM_KWARGS, num_classes=3))
    model, meta = load_trained_model(path)
    assert meta.model == _TIMM and model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_an_oversized_timm_architecture_is_refused_by_arithmetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = _timm_file(tmp_path / "big.safetensors", {"depth": 200, "embed_dim": 8192, "num_heads": 2})
    _no_real_build(monkeypatch)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("built, even on the meta device"))
    image = write_image(tmp_path / "a.png", seed=0)
    assert main(["predict", "--checkpoint", str(path), str(image), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "big.safetensors" in err and "--max-model-gb" in err and "GB cap" in err


def test_the_cap_is_stated_and_raised_by_a_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _timm_file(tmp_path / "m.safetensors", dict(_TIMM_KWARGS))
    image = write_image(tmp_path / "a.png", seed=0)
    try:
        set_max_model_bytes(1000)  # below this tiny model: refused, on the skeleton's exact parameter count
        with pytest.raises(DeitError, match="over the 1e-06 GB cap"):
            load_trained_model(path)
    finally:
        set_max_model_bytes(None)
    assert main(["predict", "--checkpoint", str(path), str(image), "--workers", "0", "--max-model-gb", "1"]) == 0


def test_vit_cost_matches_the_real_parameter_count() -> None:
    model = deit.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=3)
    parameters, activations = vit_cost(
        embed_dim=192, depth=2, num_heads=3, mlp_ratio=4.0, img_size=32, patch_size=8, num_classes=3
    )
    assert parameters == pytest.approx(sum(p.numel() for p in model.parameters()), rel=0.01)
    assert activations > 0


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (_TIMM, {"depth": 1, "embed_dim": 8192, "num_heads": 3}, "AssertionError: dim should be divisible"),
        ("resnet18", {"drop_rate": "abc"}, "'drop_rate' must be a number in [0, 1)"),
        ("resnet18", {"global_pool": ["x"]}, "'global_pool' must be a name"),
        ("resnet18", {"layers": {"a": 1}}, "'layers' must be a number"),
        ("convnext_tiny", {"depths": [60000] * 4}, "'depths' asks for 240000 blocks in all, over the 256"),
        (_TIMM, {**_TIMM_KWARGS, "depth": 2}, "missing key(s) blocks.1"),  # settings against the tensors
        (_TIMM, {**_TIMM_KWARGS, "embed_dim": 64}, "mis-shaped"),
        ("no_such_model_anywhere", {}, "neither deit, timm nor torchvision"),
        (_TIMM, {**_TIMM_KWARGS, "img_size": 64}, "img_size=64, but its 'input_size' is 32"),
        (_TIMM, {**_TIMM_KWARGS, "num_classes": 5}, "num_classes=5, but its 'num_classes' is 3"),
    ],
)
def test_a_bad_foreign_architecture_is_one_line_before_any_real_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, kwargs: dict, message: str
) -> None:
    path = _timm_file(tmp_path / "m.safetensors", kwargs, model=model)
    _no_real_build(monkeypatch)
    with pytest.raises(DeitError) as error:
        load_trained_model(path)
    assert message in str(error.value) and "m.safetensors" in str(error.value) and "\n" not in str(error.value)


def test_img_size_inside_our_models_kwargs_is_passed_once(tmp_path: Path) -> None:
    model = deit.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    meta = {
        "model": "deit_tiny_patch16_224",
        "num_classes": 3,
        "input_size": 32,
        "model_kwargs": {"patch_size": 8, "depth": 1, "img_size": 32, "num_classes": 3},
    }
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), {"deit": json.dumps(meta)})
    rebuilt, _ = load_trained_model(path)
    assert rebuilt.patch_embed.img_size == 32


def test_meta_that_is_not_a_mapping_is_refused_not_guessed(tmp_path: Path) -> None:
    model = deit.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    for bad in ("not a dict", [1, 2], 7):
        path = tmp_path / "c.pth"
        torch.save({"model": model.state_dict(), "meta": bad}, path)
        with pytest.raises(DeitError, match=f"c.pth: its 'meta' is a {type(bad).__name__}, not the mapping"):
            load_trained_model(path)
