"""iNaturalist 2018 / 2019 in the official layout: `--data-set INAT` / `INAT19` as the official `main.py` reads them.

Under `--data-path`: `train<year>.json` and `val<year>.json` (COCO-style: `images` with `id` and `file_name`,
`annotations` with `image_id` and `category_id`), `categories.json` (a list, entry `i` describes category id `i`:
`name`, `genus`, `family`, `order`, `class`, `phylum`, `kingdom`, `supercategory`), and the images where
`file_name` says (`train_val2019/Plants/400/<hash>.jpg`, as the archives extract). `--inat-category` picks the
level that is the class; as in the official code, classes are numbered in order of first appearance among the
training annotations (so labels match checkpoints trained by it), and both splits use the training numbering.

Differences from the official reader, on purpose: the label comes from the image's annotation (the official one
parses it out of the path); the image is read at `file_name` itself, or, if not there, where the official code
looks (the supercategory folder dropped); the JSON files are untrusted input: each is capped in size, checked
entry by entry, and a `file_name` that leaves `--data-path` is refused. Bad image files are skipped as in
`deit.data.folder`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from deit.data.folder import FolderDataset, _probe_all
from deit.data.skips import raise_strict, report_skipped
from deit.errors import DeitError

INAT_YEARS = {"INAT": 2018, "INAT19": 2019}
INAT_CATEGORIES = ("kingdom", "phylum", "class", "order", "supercategory", "family", "genus", "name")
# json.load holds the whole file, several times its size in objects: the caps bound that cost. The largest real
# file, train2018.json (437,513 images and as many annotations), is of the order of 100 MB by that count.
MAX_JSON_BYTES = 256 * 2**20
MAX_ENTRIES = 5_000_000  # images or annotations per file (iNat 2018 train: 437,513)


def inat_json_layout(data_path: str | os.PathLike, year: int) -> bool:
    """Whether `data_path` holds the official JSON layout of iNaturalist `year` (its `train<year>.json`)."""
    return (Path(data_path) / f"train{year}.json").is_file()


class INatDataset(FolderDataset):
    """One split of iNaturalist `year` in the official JSON layout, labelled at the `category` level."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        year: int,
        train: bool,
        category: str = "name",
        transform: Callable | None = None,
        strict_data: bool = False,
        report_dir: str | None = None,
    ) -> None:
        # FolderDataset's state and bad-file handling, filled from the JSON instead of a folder listing.
        if category not in INAT_CATEGORIES:
            raise DeitError(f"--inat-category {category!r}: choose one of {', '.join(INAT_CATEGORIES)}")
        self.root = Path(root)
        self.transform = transform
        self.report_dir = report_dir
        categories = _category_levels(self.root / "categories.json", category)
        self.classes = _classes_in_order(self.root / f"train{year}.json", categories)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        split = self.root / f"{'train' if train else 'val'}{year}.json"
        candidates = [
            (path, self.class_to_idx[categories[category_id]])
            for path, category_id in _labelled_files(split, self.root, len(categories))
        ]
        reasons = _probe_all([path for path, _ in candidates])
        self.skipped: list[tuple[str, str]] = [
            (path, reason) for (path, _), reason in zip(candidates, reasons) if reason is not None
        ]
        if strict_data and self.skipped:
            raise_strict(self.skipped, where=str(split))
        report_skipped(self.skipped, where=str(split), total=len(candidates), report_dir=report_dir)
        self.samples = [sample for sample, reason in zip(candidates, reasons) if reason is None]
        if not self.samples:
            raise DeitError(f"{split}: none of its {len(candidates)} images is a usable image file")
        self.targets = [target for _, target in self.samples]
        self._known_bad: set[int] = set()


def _read_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DeitError(
            f"{path}: cannot read ({error.strerror or error}); the iNaturalist layout needs "
            f"train<year>.json, val<year>.json and categories.json under --data-path"
        ) from error
    if size > MAX_JSON_BYTES:
        raise DeitError(
            f"{path}: {size:,} bytes, over the {MAX_JSON_BYTES:,} this reader accepts for an annotation file"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, RecursionError) as error:  # RecursionError: nesting deeper than any real annotation
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DeitError(f"{path}: not valid JSON ({reason[:200]})") from error


def _entries(data: Any, key: str, path: Path) -> list[dict[str, Any]]:
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DeitError(f"{path}: expected '{key}' to be a list of objects")
    if len(entries) > MAX_ENTRIES:
        raise DeitError(f"{path}: {len(entries)} '{key}', more than the {MAX_ENTRIES} this reader accepts")
    return entries


def _integer(entry: dict[str, Any], key: str, path: Path, *, below: int | None = None) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (below is not None and value >= below):
        bound = f" below {below}" if below is not None else ""
        raise DeitError(f"{path}: '{key}' {value!r} in {json.dumps(entry)[:120]} is not an integer >= 0{bound}")
    return value


def _category_levels(path: Path, category: str) -> list[str]:
    """The `category`-level name of each category id (the list position, as the official reader indexes it)."""
    data = _read_json(path)
    if not isinstance(data, list) or len(data) > MAX_ENTRIES:
        raise DeitError(f"{path}: expected a list of at most {MAX_ENTRIES} category objects")
    names = []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get(category), str):
            raise DeitError(f"{path}: entry {position} has no '{category}' name (--inat-category {category})")
        if "id" in entry and entry["id"] != position:
            raise DeitError(f"{path}: entry {position} has id {entry['id']!r}; ids must be 0, 1, 2 ... in order")
        names.append(entry[category])
    return names


def _classes_in_order(train_json: Path, categories: list[str]) -> list[str]:
    # The official numbering: each class at its first appearance among the training annotations.
    seen: dict[str, None] = {}
    for annotation in _entries(_read_json(train_json), "annotations", train_json):
        seen.setdefault(categories[_integer(annotation, "category_id", train_json, below=len(categories))])
    if not seen:
        raise DeitError(f"{train_json}: no annotations, so no classes")
    return list(seen)


def _labelled_files(split: Path, root: Path, num_categories: int) -> list[tuple[str, int]]:
    """(image path, category id) for every image of `split`, in the file's order."""
    data = _read_json(split)
    labels: dict[int, int] = {}
    for annotation in _entries(data, "annotations", split):
        labels[_integer(annotation, "image_id", split)] = _integer(
            annotation, "category_id", split, below=num_categories
        )
    files = []
    for image in _entries(data, "images", split):
        image_id = _integer(image, "id", split)
        if image_id not in labels:
            raise DeitError(f"{split}: image {image_id} has no annotation (no label)")
        files.append((_confined(image.get("file_name"), root, split), labels[image_id]))
    if not files:
        raise DeitError(f"{split}: lists no images")
    return _official_layout_if_flattened(files, root)


def _confined(file_name: Any, root: Path, split: Path) -> str:
    relative = PurePosixPath(file_name) if isinstance(file_name, str) and file_name else None
    if relative is None or relative.is_absolute() or ".." in relative.parts or "\\" in file_name:
        raise DeitError(f"{split}: file_name {file_name!r} is not a relative path inside --data-path")
    return str(root.joinpath(*relative.parts))


def _official_layout_if_flattened(files: list[tuple[str, int]], root: Path) -> list[tuple[str, int]]:
    # The official reader opens <split folder>/<category id>/<file>, without the supercategory folder the
    # archives have; a tree prepared for it is read the same way (decided once, on the first image).
    first = Path(files[0][0])
    parts = first.relative_to(root).parts
    if first.exists() or len(parts) != 4 or not root.joinpath(parts[0], parts[2], parts[3]).exists():
        return files
    flattened = []
    for path, label in files:
        parts = Path(path).relative_to(root).parts
        flattened.append((str(root.joinpath(parts[0], *parts[2:])) if len(parts) == 4 else path, label))
    return flattened
