"""The data-efficiency options of `deit train`: `--train-subset` and `--distillation-kl-reduction`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import FAST, TINY_STUDENT, run_cli
from deit.cli import build_parser
from deit.engine import make_config
from deit.engine.builders import build_criterion
from deit.engine.config import TrainConfig, config_from_args
from deit.io import load_torch_file


@pytest.mark.slow
def test_train_subset_is_announced_recorded_and_trained_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--output_dir",
            tmp_path,
            "--distillation-type",
            "labels",
            "--train-subset",
            "0.1",
            "--train-subset-seed",
            "2",
        ],
        capsys,
    )
    assert code == 0, out
    # 10% of DIGITS' 1,437 training images, said before the first epoch
    first_lines = out.split("epoch 1/1")[0]
    assert "144 train (stratified subset of 1437, --train-subset 0.1, seed 2) / 360 val" in first_lines
    args = load_torch_file(tmp_path / "checkpoint.pth")["args"]
    assert args["train_subset"] == 0.1 and args["train_subset_seed"] == 2
    assert "train_subset: 0.1" in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("value", ["0", "2.5"])
def test_bad_train_subset_is_one_line(value: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["train", *TINY_STUDENT, *FAST, "--train-subset", value], capsys)
    assert code == 2 and f"--train-subset {value}" in err and len(err.strip().splitlines()) == 1


def _parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser("train").parse_args(["train", *argv]))


class _FixedTeacher(nn.Module):
    """A teacher whose logits are a fixed function of the image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :10] * 3.0


@pytest.mark.parametrize("flag_value", ["official", "batchmean"])
def test_kl_reduction_flag_reaches_the_loss(flag_value: str) -> None:
    config = _parse(
        [
            "--distillation-type",
            "soft",
            "--distillation-kl-reduction",
            flag_value,
            "--distillation-tau",
            "3",
            "--mixup",
            "0",
            "--cutmix",
            "0",
        ]
    )
    assert config.distillation_kl_reduction == flag_value
    assert make_config().distillation_kl_reduction == "official"  # the released code's scaling stays the default
    criterion = build_criterion(config, _FixedTeacher(), mixup_active=False)
    assert criterion.kl_reduction == flag_value
    torch.manual_seed(0)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    outputs = (torch.randn(4, 10), torch.randn(4, 10))
    criterion(images, outputs, labels)
    official = build_criterion(
        make_config(distillation_type="soft", distillation_tau=3.0, mixup=0, cutmix=0),
        _FixedTeacher(),
        mixup_active=False,
    )
    official(images, outputs, labels)
    ratio = criterion.last_terms["distillation"] / official.last_terms["distillation"]
    # batch-mean KL is `classes` (10) times the official term; official is itself
    assert float(ratio) == pytest.approx(10.0 if flag_value == "batchmean" else 1.0, rel=1e-5)
