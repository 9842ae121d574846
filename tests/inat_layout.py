"""A tiny iNaturalist tree in the official JSON layout (`train<year>.json`, `val<year>.json`, `categories.json`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# Four species in two genera of one kingdom; the training annotations first meet category 2, then 0, 3, 1.
CATEGORIES = [
    {
        "id": k,
        "name": f"species_{k}",
        "genus": f"genus_{k // 2}",
        "family": "family_0",
        "order": "order_0",
        "class": "class_0",
        "phylum": "phylum_0",
        "kingdom": "Plantae",
        "supercategory": "Plants",
    }
    for k in range(4)
]
TRAIN_CATEGORY_ORDER = [2, 0, 3, 1, 2, 0, 3, 1]
VAL_CATEGORY_ORDER = [1, 3, 0, 2]


def write_inat_layout(
    root: Path,
    *,
    year: int = 2019,
    flattened: bool = False,
    shape: tuple[int, int] = (40, 48),
    mark_class: bool = False,
) -> Path:
    """Images at `file_name` (`train_val<year>/Plants/<category>/<n>.jpg`, as the archives extract), or with
    `flattened` where the official reader opens them (the supercategory folder dropped)."""
    rng = np.random.default_rng(year)
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories.json").write_text(json.dumps(CATEGORIES))
    image_id = 0
    for split, order in (("train", TRAIN_CATEGORY_ORDER), ("val", VAL_CATEGORY_ORDER)):
        images, annotations = [], []
        for category in order:
            file_name = f"train_val{year}/Plants/{category}/{split}_{image_id}.jpg"
            on_disk = root / (f"train_val{year}/{category}/{split}_{image_id}.jpg" if flattened else file_name)
            on_disk.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
            if mark_class:
                pixels[..., category % 3] = 255
            Image.fromarray(pixels).save(on_disk)
            images.append({"id": image_id, "file_name": file_name, "width": shape[1], "height": shape[0]})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category})
            image_id += 1
        (root / f"{split}{year}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
        )
    return root
