"""Every model-file flag refuses a FIFO (or device) in one line instead of hanging; eval names an empty split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deit.cli import main
from tiny_checkpoints import CLASS_NAMES, write_image

TINY_TRAIN = [
    "train",
    "--model",
    "deit_tiny_patch16_224",
    "--model-kwargs",
    '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
    "--input-size",
    "32",
    "--epochs",
    "1",
    "--num_workers",
    "0",
    "--data-set",
    "DIGITS",
]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it for reading blocks forever."""
    os.mkfifo(tmp_path / "pipe.pth")
    return tmp_path / "pipe.pth"


@pytest.mark.timeout(120)  # without the check, each of these blocks in open() until the timeout fails it
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["predict", "--checkpoint", "{fifo}", "{image}"], "--checkpoint"),
        (["eval", "--checkpoint", "{fifo}", "--data-set", "DIGITS", "--num_workers", "0"], "--checkpoint"),
        (["export", "--checkpoint", "{fifo}", "--format", "safetensors", "--output", "{out}"], "--checkpoint"),
        (
            ["eval", "--checkpoint", "{checkpoint}", "--data-set", "DIGITS", "--teacher-path", "{fifo}"],
            "--teacher-path",
        ),
        ([*TINY_TRAIN, "--finetune", "{fifo}"], "--finetune"),
        ([*TINY_TRAIN, "--resume", "{fifo}"], "--resume"),
        (
            [*TINY_TRAIN, "--distillation-type", "hard", "--teacher-model", "resnet18", "--teacher-path", "{fifo}"],
            "--teacher-path",
        ),
    ],
)
def test_a_fifo_is_refused_in_one_line_naming_the_flag(
    fifo: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, argv: list[str], flag: str
) -> None:
    names = {
        "fifo": fifo,
        "image": write_image(tmp_path / "a.png", seed=0),
        "out": tmp_path / "out.safetensors",
        "checkpoint": tiny_checkpoint,
    }
    for key, value in names.items():
        argv = [part.replace(f"{{{key}}}", str(value)) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deit: error: {flag} {fifo}: is a FIFO (named pipe), not a regular file") and "\n" not in err


def test_a_device_is_no_checkpoint(capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", "--checkpoint", "/dev/zero", "x.png"]) == 2
    assert "--checkpoint /dev/zero: is a device, not a regular file" in capsys.readouterr().err


def _empty_hf_validation(root: Path) -> str:
    import datasets

    datasets.disable_progress_bars()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)})
    image = {"bytes": write_image(root.parent / "a.png", seed=2).read_bytes(), "path": None}
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"image": [image], "label": [0]}, features=features),
            "validation": datasets.Dataset.from_dict({"image": [], "label": []}, features=features),
        }
    ).save_to_disk(str(root))
    return str(root)


def _empty_shard_validation(root: Path) -> str:
    root.mkdir()
    (root / "index.json").write_text(json.dumps({"classes": CLASS_NAMES, "splits": {"val": {"shards": []}}}))
    return str(root)


@pytest.mark.parametrize(
    ("data_set", "make", "message"),
    [
        ("HF", _empty_hf_validation, "d[validation]: the split is empty (0 rows)"),
        ("WDS", _empty_shard_validation, "--data-set WDS: the validation split is empty"),
    ],
)
def test_eval_on_an_empty_validation_split_is_one_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, data_set: str, make, message: str
) -> None:
    data = make(tmp_path / "d")
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data-set",
                data_set,
                "--data-path",
                data,
                "--num_workers",
                "0",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("deit: error: ") and err.endswith(message) and "\n" not in err
