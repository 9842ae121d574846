"""`--data-set HF` labels are checked before a model is built: bounded class count, no gaps, bad rows skipped."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import datasets  # noqa: E402

datasets.disable_progress_bars()  # its bars go to stderr, where the one-line errors are checked

from deit.cli import main  # noqa: E402
from deit.data import build_dataset  # noqa: E402
from deit.errors import DeitError  # noqa: E402

OPTIONS = {"image_column": "img", "label_column": "animal"}
TINY = [
    "--model",
    "deit_tiny_patch16_224",
    "--model-kwargs",
    '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
    "--input-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--num_workers",
    "0",
    "--log-format",
    "plain",
    "--data-set",
    "HF",
    "--hf-image-column",
    "img",
    "--hf-label-column",
    "animal",
]


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def save(root: Path, train: list[int], validation: list[int] | None = None, names: list[str] | None = None) -> str:
    """A save_to_disk DatasetDict with integer (or, given `names`, ClassLabel) labels; returns its path."""
    label = datasets.ClassLabel(names=names) if names else datasets.Value("int64")
    features = datasets.Features({"img": datasets.Image(), "animal": label})

    def split(labels: list[int], offset: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"img": [{"bytes": _png(offset + i), "path": None} for i in range(len(labels))], "animal": labels},
            features=features,
        )

    validation = [0, 1, 2] if validation is None else validation
    datasets.DatasetDict({"train": split(train, 0), "validation": split(validation, 100)}).save_to_disk(str(root))
    return str(root)


def test_a_huge_label_is_refused_before_any_model(tmp_path: Path) -> None:
    # 300,000 stays affordable if the bound were missing (a head that size still builds): the check must refuse.
    data = save(tmp_path / "d", [0, 1, 2, 300_000])
    with pytest.raises(
        DeitError,
        match=r"\[train\]: label 300,000 in column 'animal' would make 300,001 classes, "
        r"more than --max-classes 100,000",
    ):
        build_dataset("HF", data, train=True, transform=None, options=OPTIONS)


def test_deit_train_refuses_label_1e9_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = save(tmp_path / "d", [0, 1, 2, 10**9])
    assert main(["train", *TINY, "--data-path", data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deit: error: ") and "1,000,000,001 classes" in err and "\n" not in err


def test_max_classes_raises_the_bound_and_a_gap_is_still_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = save(tmp_path / "d", [0, 1, 2, 20])
    assert main(["train", *TINY, "--data-path", data, "--max-classes", "10"]) == 2
    assert "more than --max-classes 10" in capsys.readouterr().err
    assert main(["train", *TINY, "--data-path", data, "--max-classes", "100"]) == 2
    assert "labels run 0..20 but 17 of those classes never occur (first: 3, 4, 5, 6, 7)" in capsys.readouterr().err


def test_out_of_range_rows_are_skipped_and_named(tmp_path: Path) -> None:
    data = save(tmp_path / "d", [0, -1, 1, 2, 1], validation=[0, 7, 2])
    train = build_dataset("HF", data, train=True, transform=None, options=OPTIONS, report_dir=str(tmp_path))
    val = build_dataset("HF", data, train=False, transform=None, options=OPTIONS, report_dir=str(tmp_path))
    assert (len(train), len(val)) == (4, 2)
    assert [train[i][1] for i in range(4)] == [0, 1, 2, 1] and [val[i][1] for i in range(2)] == [0, 2]
    report = (tmp_path / "skipped_files.txt").read_text()
    assert "d[train][1]\tlabel -1 outside the 3 classes 0..2" in report
    assert "d[validation][1]\tlabel 7 outside the 3 classes 0..2" in report


def test_a_declared_class_list_bounds_every_label(tmp_path: Path) -> None:
    data = save(tmp_path / "d", [0, 1, 1], names=["cat", "dog", "fox"])
    train = build_dataset("HF", data, train=True, transform=None, options=OPTIONS)
    assert train.classes == ["cat", "dog", "fox"] and len(train) == 3  # fox declared, never seen: allowed


@pytest.mark.parametrize(
    ("train", "validation", "message"),
    [
        ([], [0, 1], r"d\[train\]: the split is empty \(0 rows\)"),
        ([0, 1, 1], [], r"d\[validation\]: the split is empty \(0 rows\)"),
        ([0, 1, 1], [-1, 5], r"d\[validation\]: no usable rows \(all 2 labels are outside the 2 classes\)"),
    ],
)
def test_an_empty_split_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, train: list[int], validation: list[int], message: str
) -> None:
    data = save(tmp_path / "d", train, validation)
    assert main(["train", *TINY, "--data-path", data]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err
