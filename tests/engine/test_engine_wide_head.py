"""An official `--data-set IMNET` checkpoint trained on a 4-class folder: the official code always builds a
1000-class head. `deit eval`, `deit train --eval --resume` and `deit train --resume` take it and give the official
number (argmax over all 1000 outputs), saying in one line that the head is wider than the data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from timm.data import resolve_data_config
from timm.models.vision_transformer import VisionTransformer
from torchvision import datasets, transforms

from conftest import FAST, log_rows, run_cli
from image_folders import write_class_folders

# One head: what `deit eval` assumes for weights alone (the official args name only the full-size model).
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=1)
MODEL = [
    "--model",
    "deit_tiny_patch16_224",
    "--input-size",
    "32",
    "--model-kwargs",
    json.dumps({"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 1}),
]


@pytest.fixture(scope="module")
def official_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """(checkpoint, 4-class folder, the official top-1 on its val split): timm's ViT stands in for the official
    model; the official evaluation (ImageFolder, resize 32/0.875, centre crop, ImageNet normalisation, argmax
    over the whole head) is written out here as the reference."""
    root = tmp_path_factory.mktemp("wide")
    folder = write_class_folders(root / "data", classes=4, per_class=2, val_per_class=16)
    torch.manual_seed(0)
    model = VisionTransformer(**TINY, num_classes=1000, global_pool="token").eval()
    with torch.no_grad():  # the four data classes likely, and now and then one of the 996 others
        model.head.bias[:4] += 0.12  # about one standard deviation of these logits
    args = argparse.Namespace(model="deit_tiny_patch16_224", input_size=32, data_set="IMNET", data_path=str(folder))
    path = root / "official.pth"
    torch.save({"model": model.state_dict(), "args": args}, path)

    config = resolve_data_config({}, model=model)
    preprocess = transforms.Compose(
        [
            transforms.Resize(int(32 / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(config["mean"], config["std"]),
        ]
    )
    val = datasets.ImageFolder(str(folder / "val"), transform=preprocess)
    images = torch.stack([image for image, _ in val])
    labels = torch.tensor(val.targets)
    with torch.no_grad():
        predictions = model(images).argmax(1)
    assert (predictions >= 4).any() and (predictions < 4).any()  # both kinds of answer occur
    return path, folder, 100.0 * (predictions == labels).float().mean().item()


def test_deit_eval_gives_the_official_number(official_case, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, folder, official = official_case
    flags = ["--data-set", "IMNET", "--data-path", folder, "--num_workers", "0", "--device", "cpu"]
    with pytest.warns(UserWarning, match="its head predicts 1000 classes, the data has 4"):
        code, out, err = run_cli(["eval", "--checkpoint", path, *flags, "--output", tmp_path / "eval"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["acc1"] == pytest.approx(official, abs=1e-9) and 0 < official < 100
    assert len(metrics["confusion_matrix"]) == 5  # the 4 classes and one for the 996 others
    assert metrics["confusion_labels"][-1] == "(any of the other 996 outputs of the head)"
    assert metrics["class_names"] == [f"class_{k}" for k in range(4)]
    outside = sum(row[4] for row in metrics["confusion_matrix"])
    assert 0 < outside < 64 and sum(map(sum, metrics["confusion_matrix"])) == 64


def test_train_eval_resume_gives_the_official_number(official_case, capsys: pytest.CaptureFixture) -> None:
    path, folder, official = official_case
    argv = ["train", *MODEL, *FAST, "--data-path", folder, "--eval", "--resume", path]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "its head predicts 1000 classes, the data has 4" in out
    assert f"Accuracy of the network on the 64 test images: {official:.1f}%" in out


def test_training_resumes_with_the_wide_head(official_case, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, folder, _ = official_case
    run_dir = tmp_path / "run"
    argv = ["train", *MODEL, *FAST, "--data-path", folder, "--resume", path, "--epochs", "1", "--output_dir", run_dir]
    code, out, err = run_cli([*argv, "--batch-size", "8", "--mixup", "0", "--cutmix", "0"], capsys)
    assert code == 0, err
    saved = torch.load(run_dir / "checkpoint.pth", weights_only=True)
    assert saved["model"]["head.weight"].shape[0] == 1000 and len(log_rows(run_dir)) == 1
    code, out, err = run_cli(
        ["eval", "--checkpoint", run_dir / "checkpoint.pth", "--num_workers", "0", "--device", "cpu"], capsys
    )
    assert code == 0, err  # our own checkpoint of the wide head evaluates on its folder too
