"""Shared fixtures (tests/conftest.py loads them): a tiny trained-model checkpoint and a folder of small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deit
from deit.models.meta import CheckpointMeta

TINY_MODEL = "deit_tiny_distilled_patch16_224"
TINY_OVERRIDES = {"patch_size": 8, "depth": 2}
TINY_SIZE = 32
CLASS_NAMES = ["apple", "banana", "cherry"]


def save_tiny_checkpoint(path: Path, *, distilled: bool = True, seed: int = 0) -> Path:
    """A `checkpoint.pth` in the documented training format, holding a tiny randomly initialised model."""
    torch.manual_seed(seed)
    name = TINY_MODEL if distilled else "deit_tiny_patch16_224"
    model = deit.create_model(name, img_size=TINY_SIZE, num_classes=len(CLASS_NAMES), **TINY_OVERRIDES)
    meta = CheckpointMeta(
        model=name,
        model_kwargs=dict(TINY_OVERRIDES),
        input_size=TINY_SIZE,
        num_classes=len(CLASS_NAMES),
        class_names=tuple(CLASS_NAMES),
        distilled=distilled,
        deit_version=deit.__version__,
    )
    torch.save({"model": model.state_dict(), "epoch": 0, "args": {"model": name}, "meta": meta.to_dict()}, path)
    return path


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    """A small random RGB image, saved in the format the suffix names."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distilled tiny model's training checkpoint (3 named classes, 32 px input)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pth")


@pytest.fixture(scope="session")
def tiny_plain_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-distilled tiny model's training checkpoint."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_plain") / "checkpoint.pth", distilled=False)


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder data set `<root>/{train,val}/<class>/<n>.png|jpg`, two images per class and split."""
    root = tmp_path_factory.mktemp("images")
    for split_index, split in enumerate(("train", "val")):
        for class_index, name in enumerate(CLASS_NAMES):
            (root / split / name).mkdir(parents=True)
            seed = 10 * split_index + 2 * class_index
            write_image(root / split / name / "0.png", seed=seed)
            write_image(root / split / name / "1.jpg", seed=seed + 1)
    return root
