"""The evaluation crop ratio: recorded in the checkpoint, honoured by `deit eval`, `predict` and the exports,
and overridden by their `--eval-crop-ratio`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deit.cli import main
from deit.models.meta import CheckpointMeta
from tiny_checkpoints import save_tiny_checkpoint


@pytest.fixture(scope="module")
def half_crop_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint, recording an evaluation crop ratio of 0.5."""
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("half") / "checkpoint.pth")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["meta"] = {**checkpoint["meta"], "crop_pct": 0.5}
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_the_flag_is_in_each_commands_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--eval-crop-ratio RATIO" in capsys.readouterr().out


def _probabilities(checkpoint: Path, image: Path, capsys: pytest.CaptureFixture, *flags: str) -> list[float]:
    assert main(["predict", "--checkpoint", str(checkpoint), str(image), "--json", "--topk", "3", *flags]) == 0
    [record] = json.loads(capsys.readouterr().out)
    return [entry["probability"] for entry in sorted(record["topk"], key=lambda entry: entry["class"])]


def test_predict_uses_the_recorded_ratio_unless_overridden(
    half_crop_checkpoint: Path, image_dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    image = image_dataset / "val" / "banana" / "0.png"
    recorded = _probabilities(half_crop_checkpoint, image, capsys)
    assert recorded == _probabilities(half_crop_checkpoint, image, capsys, "--eval-crop-ratio", "0.5")
    assert recorded != _probabilities(half_crop_checkpoint, image, capsys, "--eval-crop-ratio", "1.0")
    assert main(["predict", "--checkpoint", str(half_crop_checkpoint), str(image), "--eval-crop-ratio", "0"]) == 2
    assert "--eval-crop-ratio" in capsys.readouterr().err


def test_eval_builds_its_transform_with_the_recorded_or_given_ratio(
    half_crop_checkpoint: Path, image_dataset: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deit.inference import evaluation

    seen: list[float] = []
    original = evaluation._eval_transform

    def spy(meta: CheckpointMeta, model: torch.nn.Module, **kwargs: bool) -> object:
        seen.append(meta.crop_pct)
        return original(meta, model, **kwargs)

    monkeypatch.setattr(evaluation, "_eval_transform", spy)
    common = ["eval", "--checkpoint", str(half_crop_checkpoint), "--data-set", "IMAGEFOLDER"]
    common += ["--data-path", str(image_dataset), "--num-workers", "0", "--device", "cpu", "--worst", "0"]
    assert main(common) == 0
    assert main([*common, "--eval-crop-ratio", "0.9"]) == 0
    assert seen == [0.5, 0.9]
    capsys.readouterr()


def test_exports_write_the_recorded_or_given_ratio(half_crop_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("timm")
    from deit.export.exporter import export

    export(half_crop_checkpoint, "timm", tmp_path / "recorded")
    export(half_crop_checkpoint, "timm", tmp_path / "given", eval_crop_ratio=0.95)
    for folder, ratio in (("recorded", 0.5), ("given", 0.95)):
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert config["pretrained_cfg"]["crop_pct"] == ratio
