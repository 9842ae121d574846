"""`--data-set HF`: save_to_disk folders and parquet files built locally with `datasets`; no hub access."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import datasets  # noqa: E402

from deit.cli import main  # noqa: E402
from deit.data import build_dataset  # noqa: E402
from deit.errors import DeitError  # noqa: E402

NAMES = ["cat", "dog", "fox"]


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _split(count: int, offset: int) -> datasets.Dataset:
    features = datasets.Features({"img": datasets.Image(), "animal": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict(
        {
            "img": [{"bytes": _png(offset + i), "path": None} for i in range(count)],
            "animal": [i % 3 for i in range(count)],
        },
        features=features,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict (train 24, validation 6) with columns `img` and `animal`, saved with save_to_disk."""
    root = tmp_path_factory.mktemp("hf") / "disk"
    datasets.DatasetDict({"train": _split(24, 0), "validation": _split(6, 100)}).save_to_disk(str(root))
    return root


OPTIONS = {"image_column": "img", "label_column": "animal"}


def test_save_to_disk_splits_and_class_names(saved: Path) -> None:
    train = build_dataset("HF", str(saved), train=True, transform=None, options=OPTIONS)
    val = build_dataset("HF", str(saved), train=False, transform=None, options=OPTIONS)
    assert (len(train), len(val), train.classes, val.classes) == (24, 6, NAMES, NAMES)
    image, label = train[4]
    assert image.mode == "RGB" and image.size == (24, 20) and label == 1


def test_parquet_files_by_split_name(tmp_path: Path) -> None:
    _split(9, 0).to_parquet(str(tmp_path / "train-00000.parquet"))
    _split(3, 50).to_parquet(str(tmp_path / "validation-00000.parquet"))
    train = build_dataset("HF", str(tmp_path), train=True, transform=None, options=OPTIONS)
    assert len(train) == 9 and train.classes == NAMES and train[2][1] == 2


def test_wrong_column_or_split_is_named(saved: Path) -> None:
    with pytest.raises(DeitError, match="--hf-image-column image: no such column"):
        build_dataset("HF", str(saved), train=True, transform=None, options={"label_column": "animal"})
    with pytest.raises(DeitError, match="no split 'test'"):
        build_dataset("HF", str(saved), train=False, transform=None, options=dict(OPTIONS, val_split="test"))


def test_a_bad_record_is_skipped_and_named(tmp_path: Path) -> None:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    rows = {"image": [{"bytes": _png(1), "path": None}, {"bytes": b"junk", "path": None}], "label": [0, 1]}
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "validation": datasets.Dataset.from_dict(rows, features=features),
        }
    ).save_to_disk(str(tmp_path / "d"))
    dataset = build_dataset("HF", str(tmp_path / "d"), train=True, transform=None, report_dir=str(tmp_path))
    assert dataset[1][1] == 0  # the next good record stands in
    assert "[train][1]" in (tmp_path / "skipped_files.txt").read_text()


@pytest.mark.slow
def test_deit_train_from_a_hf_dataset(saved: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    code = main(
        [
            "train",
            "--data-set",
            "HF",
            "--data-path",
            str(saved),
            "--hf-image-column",
            "img",
            "--hf-label-column",
            "animal",
            "--model",
            "deit_tiny_distilled_patch16_224",
            "--model-kwargs",
            '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
            "--input-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--num_workers",
            "0",
            "--warmup-epochs",
            "0",
            "--log-format",
            "plain",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.txt").read_text().splitlines()] == [0, 1]
