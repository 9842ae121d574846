"""CheckpointMeta: the one schema of a checkpoint's `deit` meta; the on-disk dict stays as before."""

from __future__ import annotations

import pytest
import timm.data

from deit.errors import DeitError
from deit.models.meta import CheckpointMeta
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD

# The layout `deit train` has written since the first release (docs/checkpoints.md): files on disk keep it.
WRITTEN = {
    "model": "deit_tiny_patch16_224",
    "model_kwargs": {"depth": 2},
    "input_size": 32,
    "num_classes": 2,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "crop_pct": 0.9,
    "interpolation": "bilinear",
    "class_names": ["cat", "dog"],
    "distilled": False,
    "deit_version": "0.1.0",
}


def test_round_trip_keeps_the_on_disk_layout_and_unknown_keys() -> None:
    meta = CheckpointMeta.from_dict({**WRITTEN, "note": "from a newer deit"}, source="run/checkpoint.pth")
    assert meta.class_names == ("cat", "dog") and meta.crop_pct == 0.9 and meta.interpolation == "bilinear"
    assert meta.to_dict() == {**WRITTEN, "note": "from a newer deit"}
    assert CheckpointMeta.from_dict(meta.to_dict(), source="x") == meta


def test_older_meta_without_preprocessing_gets_the_papers_defaults() -> None:
    meta = CheckpointMeta.from_dict({"model": "deit_tiny_patch16_224", "num_classes": 3}, source="old.pth")
    assert (meta.input_size, meta.crop_pct, meta.interpolation) == (None, 0.875, "bicubic")
    assert meta.mean == IMAGENET_MEAN and meta.std == IMAGENET_STD and meta.model_kwargs == {}
    assert meta.labels() == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"num_classes": None}, "num_classes"),
        ({"crop_pct": 7}, "crop_pct"),
        ({"interpolation": 3}, "interpolation"),
        ({"mean": "red"}, "mean"),
        ({"class_names": ["only one"]}, "class_names"),
        ({"distilled": "yes"}, "distilled"),
    ],
)
def test_bad_values_name_the_file_and_the_key(change: dict, key: str) -> None:
    with pytest.raises(DeitError, match=rf"^bad\.pth: meta '{key}' "):
        CheckpointMeta.from_dict({**WRITTEN, **change}, source="bad.pth")


def test_labels_fall_back_to_indices_when_the_count_differs() -> None:
    meta = CheckpointMeta.from_dict(WRITTEN, source="x")
    assert meta.labels() == ["cat", "dog"] and meta.labels(3) == ["0", "1", "2"]


def test_imagenet_constants_are_timms() -> None:
    assert IMAGENET_MEAN == timm.data.IMAGENET_DEFAULT_MEAN and IMAGENET_STD == timm.data.IMAGENET_DEFAULT_STD
