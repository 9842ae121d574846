"""iNaturalist 2018/2019 in the official JSON layout: the official numbering, category levels, hostile JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from deit.data import build_dataset, inat
from deit.data.folder import FolderDataset
from deit.errors import DeitError
from inat_layout import CATEGORIES, TRAIN_CATEGORY_ORDER, VAL_CATEGORY_ORDER, write_inat_layout


def _official_samples(root: Path, year: int, train: bool, category: str) -> tuple[list[str], list[tuple]]:
    # The official datasets.INatDataset, written out independently of the package: classes by first appearance
    # in the train annotations, the label parsed out of the path, the supercategory folder dropped.
    data = json.loads((root / f"{'train' if train else 'val'}{year}.json").read_text())
    categories = json.loads((root / "categories.json").read_text())
    targeter: dict[str, int] = {}
    for element in json.loads((root / f"train{year}.json").read_text())["annotations"]:
        targeter.setdefault(categories[int(element["category_id"])][category], len(targeter))
    samples = []
    for element in data["images"]:
        cut = element["file_name"].split("/")
        samples.append((os.path.join(root, cut[0], cut[2], cut[3]), targeter[categories[int(cut[2])][category]]))
    return list(targeter), samples


@pytest.mark.parametrize("category", ["name", "genus", "kingdom"])
@pytest.mark.parametrize("train", [True, False])
def test_labels_match_the_official_reader(tmp_path: Path, category: str, train: bool) -> None:
    root = write_inat_layout(tmp_path, flattened=True)  # the tree the official reader opens
    dataset = build_dataset("INAT19", str(root), train=train, transform=None, options={"inat_category": category})
    classes, samples = _official_samples(root, 2019, train, category)
    assert dataset.classes == classes and dataset.samples == samples
    assert len(classes) == {"name": 4, "genus": 2, "kingdom": 1}[category]
    image, label = dataset[0]
    assert image.size == (48, 40) and label == samples[0][1]


def test_the_archive_layout_is_read_where_file_name_says(tmp_path: Path) -> None:
    root = write_inat_layout(tmp_path, year=2018)
    dataset = build_dataset("INAT", str(root), train=False, transform=None, options={})
    assert isinstance(dataset, inat.INatDataset)
    assert [Path(path).relative_to(root).parts[:3] for path, _ in dataset.samples] == [
        ("train_val2018", "Plants", str(category)) for category in VAL_CATEGORY_ORDER
    ]
    # Classes follow the training annotations' order of first appearance (2, 0, 3, 1), in both splits.
    assert dataset.classes == [CATEGORIES[k]["name"] for k in TRAIN_CATEGORY_ORDER[:4]]
    assert dataset.targets == [dataset.classes.index(f"species_{k}") for k in VAL_CATEGORY_ORDER]


def test_inat_without_its_json_is_still_class_folders(tmp_path: Path) -> None:
    from image_folders import write_class_folders

    root = write_class_folders(tmp_path, classes=2, per_class=2)
    dataset = build_dataset("INAT", str(root), train=True, transform=None)
    assert type(dataset) is FolderDataset and dataset.classes == ["class_0", "class_1"]
    with pytest.raises(DeitError, match="categories.json: cannot read .*needs train<year>.json"):
        build_dataset("INAT19", str(root), train=True, transform=None)


def _rewrite(root: Path, name: str, edit) -> None:
    path = root / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "val2019.json",
            lambda d: {**d, "images": [{**d["images"][0], "file_name": "../../etc/passwd"}]},
            r"file_name '../../etc/passwd' is not a relative path inside --data-path",
        ),
        (
            "val2019.json",
            lambda d: {**d, "images": [{**d["images"][0], "file_name": "/etc/passwd"}]},
            r"file_name '/etc/passwd' is not a relative path",
        ),
        (
            "val2019.json",
            lambda d: {**d, "annotations": [{**d["annotations"][0], "category_id": 4}]},
            r"'category_id' 4 in .* is not an integer >= 0 below 4",
        ),
        (
            "train2019.json",
            lambda d: {**d, "annotations": [{**d["annotations"][0], "category_id": True}]},
            r"'category_id' True",
        ),
        ("val2019.json", lambda d: {**d, "annotations": d["annotations"][1:]}, r"image 8 has no annotation"),
        ("val2019.json", lambda d: {**d, "images": {"id": 1}}, r"expected 'images' to be a list of objects"),
        ("categories.json", lambda d: [{**c, "id": c["id"] + 1} for c in d], r"entry 0 has id 1"),
        (
            "categories.json",
            lambda d: [{k: v for k, v in c.items() if k != "name"} for c in d],
            r"entry 0 has no 'name' name",
        ),
    ],
)
def test_malformed_json_is_one_line_naming_the_file(tmp_path: Path, name: str, edit: Callable, message: str) -> None:
    root = write_inat_layout(tmp_path)
    _rewrite(root, name, edit)
    with pytest.raises(DeitError, match=message) as error:
        build_dataset("INAT19", str(root), train=False, transform=None)
    assert name in str(error.value) and "\n" not in str(error.value)


def test_json_cost_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_inat_layout(tmp_path)
    (root / "val2019.json").write_text("[" * 100_000 + "]" * 100_000)  # nesting that overflows the parser
    with pytest.raises(DeitError, match=r"val2019.json: not valid JSON"):
        build_dataset("INAT19", str(root), train=False, transform=None)
    monkeypatch.setattr(inat, "MAX_JSON_BYTES", 100)
    with pytest.raises(DeitError, match=r"categories.json: [\d,]+ bytes, over the 100 this reader"):
        build_dataset("INAT19", str(root), train=False, transform=None)
    monkeypatch.setattr(inat, "MAX_JSON_BYTES", 2**20)
    monkeypatch.setattr(inat, "MAX_ENTRIES", 5)  # 4 categories pass, 8 training annotations do not
    with pytest.raises(DeitError, match=r"train2019.json: 8 'annotations', more than the 5"):
        build_dataset("INAT19", str(root), train=False, transform=None)


def test_an_unknown_level_is_refused(tmp_path: Path) -> None:
    root = write_inat_layout(tmp_path)
    with pytest.raises(DeitError, match="--inat-category 'species': choose one of kingdom"):
        build_dataset("INAT19", str(root), train=True, transform=None, options={"inat_category": "species"})
