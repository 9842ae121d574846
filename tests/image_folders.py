"""Class-folder image data sets for tests: `root/{train,val}/<class>/<index>.<format>` of random pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_class_folders(
    root: Path,
    *,
    classes: int,
    per_class: int,
    val_per_class: int = 2,
    shape: tuple[int, int] = (40, 48),
    formats: tuple[str, ...] = ("png",),
    mark_class: bool = False,
    seed: int = 0,
    class_prefix: str = "class_",
) -> Path:
    """Every image different; `formats` cycle over the index; `mark_class` saturates channel `label`, so a
    model has something to learn."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label in range(classes):
            folder = root / split / f"{class_prefix}{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
                if mark_class:
                    pixels[..., label] = 255
                Image.fromarray(pixels).save(folder / f"{index}.{formats[index % len(formats)]}")
    return root
