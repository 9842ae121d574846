"""`deit export --format hf|timm`: transformers and timm reload a trained tiny student with our logits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deit.cli import main
from deit.errors import DeitError
from deit.inference.preprocess import EvalPreprocessing
from deit.models.factory import load_trained_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KWARGS = '{"depth": 2, "patch_size": 4}'


def _train(out: Path, model: str) -> Path:
    torch.set_num_threads(1)
    code = main(
        [
            "train",
            "--model",
            model,
            "--model-kwargs",
            KWARGS,
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--max-steps-per-epoch",
            "2",
            "--num_workers",
            "0",
            "--device",
            "cpu",
            "--log-format",
            "plain",
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    return out / "checkpoint.pth"


@pytest.fixture(scope="module", params=["deit_tiny_distilled_patch16_224", "deit_tiny_patch16_224"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student trained two steps on DIGITS: distilled and plain."""
    return _train(tmp_path_factory.mktemp("run"), request.param)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    # (width, height) pairs whose center-crop margins are even: see the odd-margin test below
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in [(32, 32), (50, 64), (77, 100), (41, 41), (120, 90)]
    ]


@pytest.mark.slow
def test_transformers_reproduces_our_logits_and_preprocessing(trained: Path, tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    assert main(["export", "--checkpoint", str(trained), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    ours, meta = load_trained_model(trained)
    theirs = AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    expected = "DeiTForImageClassificationWithTeacher" if ours.distilled else "ViTForImageClassification"
    assert type(theirs).__name__ == expected
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["layer_norm_eps"] == 1e-6 and config["id2label"]["3"] == meta.class_names[3]
    transform = EvalPreprocessing.from_meta(meta, ours).transform()
    pil_processor = AutoImageProcessor.from_pretrained(tmp_path / "hf", backend="pil")
    default_processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    ours_batch = torch.stack([transform(image) for image in _images()])
    pil_batch = pil_processor(_images(), return_tensors="pt")["pixel_values"]
    assert (pil_batch - ours_batch).abs().max() <= 1e-5
    # torchvision's tensor bicubic resize (transformers' default backend) rounds some pixels one 8-bit level off
    one_level = 1 / 255 / min(meta.std)
    assert (default_processor(_images(), return_tensors="pt")["pixel_values"] - ours_batch).abs().max() <= (
        one_level + 1e-5
    )
    with torch.inference_mode():
        diff = (theirs(pixel_values=pil_batch).logits - ours(ours_batch)).abs().max()
    assert diff <= 1e-4
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "DIGITS" in card and "best top-1" in card and "teacher" in card


@pytest.mark.slow
def test_timm_loads_the_export_with_classes_mean_std_and_crop(trained: Path, tmp_path: Path) -> None:
    import timm

    assert main(["export", "--checkpoint", str(trained), "--format", "timm", "--output", str(tmp_path / "t")]) == 0
    ours, meta = load_trained_model(trained)
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    overlay = dict(config["pretrained_cfg"], file=str(tmp_path / "t" / "model.safetensors"))
    model = timm.create_model(
        meta.model, pretrained=True, pretrained_cfg_overlay=overlay, **config["model_args"]
    ).eval()
    assert model.num_classes == 10
    data_config = timm.data.resolve_data_config(model=model)
    assert list(data_config["mean"]) == list(meta.mean) and data_config["crop_pct"] == meta.crop_pct
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (model(images) - ours(images)).abs().max() <= 1e-4


def test_an_odd_center_crop_margin_shifts_transformers_by_one_pixel(tmp_path: Path) -> None:
    """Why 1e-5 holds only for even margins: torchvision rounds the crop offset half-to-even, transformers floors."""
    from deit.export.hf_format import processor_config

    preprocessing = EvalPreprocessing(input_size=32)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor_config(preprocessing)))
    from transformers import AutoImageProcessor

    pil_processor = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (36, 47, 3), dtype=np.uint8))  # margin 15
    theirs = pil_processor(image, return_tensors="pt")["pixel_values"][0]
    ours = preprocessing.transform()(image)
    assert (theirs - ours).abs().max() > 0.1  # torchvision crops from column round(7.5) = 8, transformers from 7
    assert (theirs[..., 1:] - ours[..., :-1]).abs().max() <= 1e-5


def _saved(tmp_path: Path, name: str, model: torch.nn.Module, **kwargs: object) -> Path:
    """`model` saved with the meta `deit train` writes, without training it."""
    from deit.models.meta import CheckpointMeta

    meta = CheckpointMeta(
        model=name,
        model_kwargs=dict(kwargs),
        input_size=32,
        num_classes=3,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        crop_pct=1.0,
        class_names=("a", "b", "c"),
    )
    path = tmp_path / f"{name}.pth"
    torch.save({"model": model.state_dict(), "epoch": 0, "args": {}, "meta": meta.to_dict()}, path)
    return path


def test_deit3_is_refused_by_name(tmp_path: Path) -> None:
    import deit
    from deit.export.hf_format import hf_config_dict

    model = deit.create_model("deit3_small_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    with pytest.raises(DeitError, match="DeiT III"):
        hf_config_dict(model, ["a", "b", "c"])


def test_deit3_exports_to_timm(tmp_path: Path) -> None:
    import deit
    from deit.export.timm_format import export_timm

    model = deit.create_model("deit3_small_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    _, diff, _ = export_timm(
        _saved(tmp_path, "deit3_small_patch16_224", model, patch_size=8, depth=1), tmp_path / "out"
    )
    assert diff <= 1e-4
    assert json.loads((tmp_path / "out" / "config.json").read_text())["pretrained_cfg"]["crop_pct"] == 1.0


def test_a_model_hf_cannot_hold_is_refused_without_the_keep_failed_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import timm

    import deit

    cnn = _saved(tmp_path, "resnet10t", timm.create_model("resnet10t", num_classes=3))
    deit3 = deit.create_model("deit3_small_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    deit3_path = _saved(tmp_path, "deit3_small_patch16_224", deit3, patch_size=8, depth=1)
    for path, reason in ((cnn, "ResNet is not a DeiT/ViT model"), (deit3_path, "DeiT III")):
        code = main(["export", "--checkpoint", str(path), "--format", "hf", "--output", str(tmp_path / "hf")])
        err = capsys.readouterr().err
        assert code == 2 and reason in err and "keep-failed" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "hf").exists()


def test_the_hf_export_prints_no_progress_bars(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import deit

    model = deit.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)
    path = _saved(tmp_path, "deit_tiny_patch16_224", model, patch_size=8, depth=1)
    assert main(["export", "--checkpoint", str(path), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.out and captured.err == ""  # no "Writing model shards" / "Loading weights" bars
