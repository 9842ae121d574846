"""Hugging Face `save_pretrained` directories load into our models with the same logits as transformers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import transformers

from deit.errors import DeitError
from deit.models import create_model
from deit.models.checkpoint import read_state_dict
from deit.models.factory import load_trained_model

CLASS_NAMES = ["cat", "dog", "bird", "fish"]
# layer_norm_eps 1e-6 is what DeiT was trained with (and what our model uses); transformers' default is 1e-12.
HF_SMALL = dict(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=192,
    image_size=32,
    patch_size=8,
    layer_norm_eps=1e-6,
    id2label=dict(enumerate(CLASS_NAMES)),
)
OUR_SMALL = dict(num_classes=4, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3)
CASES = [
    ("DeiTConfig", "DeiTForImageClassificationWithTeacher", "deit_tiny_distilled_patch16_224"),
    ("ViTConfig", "ViTForImageClassification", "deit_tiny_patch16_224"),
]


def _save_hf(tmp_path: Path, config_class: str, model_class: str, **config: object) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    hf_model = getattr(transformers, model_class)(getattr(transformers, config_class)(**{**HF_SMALL, **config}))
    directory = tmp_path / model_class
    hf_model.save_pretrained(directory)
    return directory, hf_model.eval()


def _hf_logits(hf_model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(pixel_values=images).logits


@pytest.mark.parametrize(("config_class", "model_class", "name"), CASES)
def test_hf_directory_loads_through_create_model(
    tmp_path: Path, config_class: str, model_class: str, name: str
) -> None:
    directory, hf_model = _save_hf(tmp_path, config_class, model_class)
    images = torch.randn(3, 3, 32, 32)
    model = create_model(name, pretrained=directory, **OUR_SMALL).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), _hf_logits(hf_model, images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("config_class", "model_class", "name"), CASES)
def test_hf_directory_rebuilds_with_meta(tmp_path: Path, config_class: str, model_class: str, name: str) -> None:
    directory, hf_model = _save_hf(tmp_path, config_class, model_class)
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "do_center_crop": True,
                "size": {"shortest_edge": 40},
                "crop_size": {"height": 32, "width": 32},
            }
        )
    )
    model, meta = load_trained_model(directory)
    assert meta.model == name
    assert meta.input_size == 32 and meta.num_classes == 4
    assert list(meta.class_names) == CLASS_NAMES
    assert meta.mean == (0.5, 0.5, 0.5) and meta.crop_pct == pytest.approx(0.8)
    assert meta.distilled == (model_class == "DeiTForImageClassificationWithTeacher")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), _hf_logits(hf_model, images), rtol=1e-5, atol=1e-5)
    # The meta alone rebuilds the same network (what `deit eval`/`predict` rely on).
    rebuilt = create_model(meta.model, num_classes=meta.num_classes, img_size=meta.input_size, **meta.model_kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_distilled_hf_heads_map_to_cls_and_dist(tmp_path: Path) -> None:
    directory, hf_model = _save_hf(tmp_path, *CASES[0][:2])
    images = torch.randn(2, 3, 32, 32)
    model = create_model(CASES[0][2], pretrained=directory, **OUR_SMALL).train()
    with torch.no_grad():
        cls_logits, dist_logits = model(images)
        hf_out = hf_model(pixel_values=images)
    torch.testing.assert_close(cls_logits, hf_out.cls_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dist_logits, hf_out.distillation_logits, rtol=1e-5, atol=1e-5)


def test_hf_checkpoint_resamples_and_drops_heads(tmp_path: Path) -> None:
    directory, _ = _save_hf(tmp_path, *CASES[1][:2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_model(
            "deit_tiny_patch16_224", pretrained=directory, **dict(OUR_SMALL, num_classes=9, img_size=48)
        )
    assert any("heads are dropped" in str(w.message) for w in caught)
    assert model.pos_embed.shape == (1, 1 + 36, 48)
    assert model.head.out_features == 9


def test_pickled_bin_in_hf_directory_is_refused_and_python_files_are_ignored(tmp_path: Path, hostile_payload) -> None:
    directory, hf_model = _save_hf(tmp_path, *CASES[1][:2])
    marker = tmp_path / "code_ran"
    # A modeling file that would leave a marker if anything imported it (trust_remote_code style).
    (directory / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    (directory / "config.json").write_text(json.dumps(config))
    model, _ = load_trained_model(directory)  # safetensors weights: loads, the .py file is never run
    assert not marker.exists()

    (directory / "model.safetensors").unlink()
    torch.save({"payload": hostile_payload(marker)}, directory / "pytorch_model.bin")
    with pytest.raises(DeitError) as caught:
        load_trained_model(directory)
    message = str(caught.value)
    assert "pytorch_model.bin" in message and "pickled" in message and "\n" not in message
    with pytest.raises(DeitError):
        create_model("deit_tiny_patch16_224", pretrained=directory, **OUR_SMALL)
    assert not marker.exists()


def test_plain_tensor_pytorch_model_bin_is_accepted(tmp_path: Path) -> None:
    directory, hf_model = _save_hf(tmp_path, *CASES[0][:2])
    from safetensors.torch import load_file

    tensors = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    torch.save(tensors, directory / "pytorch_model.bin")
    model, meta = load_trained_model(directory)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), _hf_logits(hf_model, images), rtol=1e-5, atol=1e-5)


def test_unsupported_hf_architecture_is_named(tmp_path: Path) -> None:
    directory, _ = _save_hf(tmp_path, "DeiTConfig", "DeiTForImageClassification")
    with pytest.raises(DeitError, match="DeiTForImageClassification'? is not supported"):
        read_state_dict(directory)


def test_shard_index_cannot_point_outside_the_directory(tmp_path: Path) -> None:
    directory, _ = _save_hf(tmp_path, *CASES[1][:2])
    (directory / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"vit.layernorm.weight": "../elsewhere.safetensors"}})
    )
    with pytest.raises(DeitError, match="is not a file in"):
        read_state_dict(directory)


def test_garbled_config_json_is_named(tmp_path: Path) -> None:
    directory, _ = _save_hf(tmp_path, *CASES[1][:2])
    (directory / "config.json").write_text("{ not json")
    with pytest.raises(DeitError, match=r"config\.json: cannot be read as JSON"):
        load_trained_model(directory)
    (directory / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"]}))
    with pytest.raises(DeitError, match=r"config\.json: missing or invalid field 'hidden_size'"):
        load_trained_model(directory)
