"""Shared set-up of the engine tests: one CPU thread (the machine is shared), tiny models, a trained teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deit.cli import main
from image_folders import write_class_folders

# A distilled DeiT small enough that an epoch of a few steps takes well under a second.
TINY_KWARGS = '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}'
TINY_STUDENT = ["--model", "deit_tiny_distilled_patch16_224", "--model-kwargs", TINY_KWARGS, "--input-size", "32"]
FAST = [
    "--batch-size",
    "16",
    "--num_workers",
    "0",
    "--device",
    "cpu",
    "--max-steps-per-epoch",
    "3",
    "--log-interval",
    "0",
    "--warmup-epochs",
    "0",
    "--log-format",
    "plain",
]


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # Two shared cores: intra-op threads fighting other processes make tiny models ~30x slower.
    torch.set_num_threads(1)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`deit <argv>` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def log_rows(run_dir: Path) -> list[dict]:
    """The JSON lines of a run's log.txt."""
    return [json.loads(line) for line in (run_dir / "log.txt").read_text().splitlines()]


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    """`root/train/class_k/*.png` and `root/val/...`: random pixels, each class its own saturated colour."""
    return write_class_folders(root, classes=classes, per_class=per_class, mark_class=True)


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN teacher trained by `deit train --model resnet10t` on DIGITS (1 short epoch)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher")
    code = main(
        [
            "train",
            "--model",
            "resnet10t",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--no-model-ema",
            "--output_dir",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    return out / "checkpoint.pth"
