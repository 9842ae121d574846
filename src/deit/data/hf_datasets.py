"""`--data-set HF`: a Hugging Face `datasets` data set on disk, with an image and a class-label column.

`--data-path` is a `save_to_disk` folder (a `DatasetDict` with the splits by name) or a folder of parquet files
named by split (`train-*.parquet`, `validation-*.parquet`, or `train/*.parquet`). Nothing is fetched from the
hub. Class names come from the label column's `ClassLabel` feature (else `class_<i>` for integer labels).
Images are decoded here, not by `datasets`, so an undecodable record is skipped with one warning naming
`<data-path>[split][row]` (the next row is used instead), as bad files are.

Labels are checked before any model is built, since the class count sizes the model's head: a `ClassLabel`
declares the classes; plain integer labels give `max + 1` classes, refused above `max_classes` (`--max-classes`)
or when some class in between never occurs. A row whose label is outside the classes (`-1`, HF's "no label",
or past the end) is skipped and named at start-up, as damaged images are; a split left empty is an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from deit.data.images import to_rgb
from deit.data.skips import LOGGER, append_report, report_skipped
from deit.errors import DeitError
from deit.io import read_json_bounded

_MAX_FALLBACK_TRIES = 50
#: Classes a data set without declared class names may have (`--max-classes`): ImageNet-21k has 21,841.
DEFAULT_MAX_CLASSES = 100_000


def load_split(data_path: str, split: str) -> Any:
    """The `split` of the dataset at `data_path` (a `save_to_disk` folder or parquet files), hub untouched."""
    try:
        import datasets
    except ImportError as error:
        raise DeitError("--data-set HF needs the datasets library: pip install 'deit[datasets]'") from error
    root = Path(data_path)
    if not root.is_dir():
        raise DeitError(f"--data-path {root}: no such folder")
    if (root / "dataset_dict.json").is_file():
        names = read_json_bounded(root / "dataset_dict.json")
        names = names.get("splits") if isinstance(names, dict) else None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise DeitError(f"{root / 'dataset_dict.json'}: not a dataset dict (no list of 'splits')")
        if split not in names:
            raise DeitError(
                f"--data-path {root}: no split '{split}' (has {', '.join(names)}); "
                f"choose it with --hf-train-split / --hf-val-split"
            )
        return _load_saved(root / split, f"{root}[{split}]")  # only the split asked for is opened
    if (root / "dataset_info.json").is_file():
        return _load_saved(root, str(root))
    files = sorted(
        str(p)
        for p in [*root.glob(f"{split}-*.parquet"), *root.glob(f"{split}/*.parquet"), *root.glob(f"{split}.parquet")]
    )
    if not files:
        raise DeitError(
            f"--data-path {root}: neither a save_to_disk folder nor parquet files for split "
            f"'{split}' ({split}-*.parquet or {split}/*.parquet)"
        )
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def _load_saved(folder: Path, source: str) -> Any:
    import datasets

    if not (folder / "state.json").is_file():
        raise DeitError(f"{source}: not a saved split (no {folder / 'state.json'})")
    try:
        return datasets.load_from_disk(str(folder))
    except IndexError as error:  # `datasets` cannot open a split saved with no rows (it has no Arrow file)
        raise DeitError(f"{source}: the split is empty (0 rows)") from error
    except Exception as error:  # damaged files: datasets and pyarrow raise many types
        raise DeitError(f"{source}: cannot be read ({type(error).__name__}: {str(error).splitlines()[0]})") from error


def label_array(dataset: Any, label_column: str, source: str) -> np.ndarray:
    """Every row's label as int64, read from the Arrow column (no image decoded); a missing label is -1."""
    import pyarrow
    import pyarrow.compute

    column = dataset.with_format("arrow")[label_column]
    if not pyarrow.types.is_integer(column.type):
        raise DeitError(
            f"{source}: column '{label_column}' is neither a ClassLabel nor integer labels (it holds {column.type})"
        )
    return np.asarray(pyarrow.compute.fill_null(column, -1).to_numpy(), dtype=np.int64)


def class_names(dataset: Any, label_column: str, source: str, *, max_classes: int = DEFAULT_MAX_CLASSES) -> list[str]:
    """Names from the label column's `ClassLabel` feature, else `class_<i>` for integer labels 0..max, each seen."""
    import datasets

    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    labels = label_array(dataset, label_column, source)
    seen = np.unique(labels[labels >= 0])
    if seen.size == 0:
        raise DeitError(f"{source}: no row has a class label (column '{label_column}' holds no label >= 0)")
    count = int(seen[-1]) + 1
    if count > max_classes:
        raise DeitError(
            f"{source}: label {count - 1:,} in column '{label_column}' would make {count:,} classes, "
            f"more than --max-classes {max_classes:,} (raise it if the data set really has that many)"
        )
    if seen.size < count:
        missing = np.setdiff1d(np.arange(count), seen)
        raise DeitError(
            f"{source}: labels run 0..{count - 1} but {missing.size:,} of those classes never occur "
            f"(first: {', '.join(str(m) for m in missing[:5])}); declare the classes with a ClassLabel "
            f"column or renumber the labels"
        )
    return [f"class_{i}" for i in range(count)]


class HfImageDataset(Dataset):
    """One split of a Hugging Face dataset as `(transform(RGB image), label)`; bad records skipped and named."""

    def __init__(
        self,
        data_path: str,
        *,
        train: bool,
        transform: Callable | None,
        image_column: str = "image",
        label_column: str = "label",
        train_split: str = "train",
        val_split: str = "validation",
        report_dir: str | None = None,
        classes: list[str] | None = None,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> None:
        import datasets

        self.split = train_split if train else val_split
        self.source = f"{data_path}[{self.split}]"
        data = load_split(data_path, self.split)
        for flag, column in (("--hf-image-column", image_column), ("--hf-label-column", label_column)):
            if column not in data.column_names:
                raise DeitError(
                    f"{flag} {column}: no such column in {self.source} (columns: {', '.join(data.column_names)})"
                )
        if isinstance(data.features[image_column], datasets.Image):
            data = data.cast_column(image_column, datasets.Image(decode=False))  # we decode, and skip bad ones
        # Labels mean the same in both splits: the validation split takes the training split's names when it has them.
        if len(data) == 0:
            raise DeitError(f"{self.source}: the split is empty (0 rows)")
        self.classes = classes or class_names(
            load_split(data_path, train_split) if not train else data,
            label_column,
            f"{data_path}[{train_split}]",
            max_classes=max_classes,
        )
        self.data, self.image_column, self.label_column = data, image_column, label_column
        self.transform, self.report_dir = transform, report_dir
        self.rows, self.skipped = self._rows_in_range(label_array(data, label_column, self.source))
        self._known_bad: set[int] = set()

    def _rows_in_range(self, labels: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """The rows whose label names a class; the others skipped and reported, as damaged images are."""
        outside = (labels < 0) | (labels >= len(self.classes))
        skipped = [
            (
                f"{self.source}[{row}]",
                f"label {labels[row]} outside the {len(self.classes)} classes 0..{len(self.classes) - 1}",
            )
            for row in np.flatnonzero(outside)
        ]
        report_skipped(skipped, where=self.source, total=len(labels), report_dir=self.report_dir)
        rows = np.flatnonzero(~outside)
        if rows.size == 0:
            raise DeitError(
                f"{self.source}: no usable rows (all {len(labels)} labels are outside the {len(self.classes)} classes)"
            )
        return rows, skipped

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for attempt in range(min(len(self.rows), _MAX_FALLBACK_TRIES)):
            candidate = int(self.rows[(index + attempt) % len(self.rows)])
            if candidate in self._known_bad:
                continue
            row = self.data[candidate]
            try:
                image, label = self._decode(row)
            except Exception as error:  # a damaged record is skipped, as a damaged file is
                self._record_bad(candidate, f"{type(error).__name__}: {error}")
                continue
            return (self.transform(image) if self.transform else image), label
        raise DeitError(f"{self.source}: {_MAX_FALLBACK_TRIES} records in a row after row {index} failed to decode")

    def _decode(self, row: dict[str, Any]) -> tuple[Any, int]:
        from PIL import Image

        value, label = row[self.image_column], int(row[self.label_column])
        if not 0 <= label < len(self.classes):
            raise ValueError(f"label {label} outside 0..{len(self.classes) - 1}")
        if isinstance(value, Image.Image):
            return to_rgb(value), label
        if isinstance(value, dict):
            data = value.get("bytes") or (Path(value["path"]).read_bytes() if value.get("path") else None)
        else:
            data = value
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"column '{self.image_column}' holds {type(value).__name__}, not an image")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image), label

    def _record_bad(self, index: int, reason: str) -> None:
        name = f"{self.source}[{index}]"
        self._known_bad.add(index)
        self.skipped.append((name, reason))
        LOGGER.warning("skipping unusable record %s: %s (using the next record instead)", name, reason)
        if self.report_dir:
            append_report(self.report_dir, [(name, reason)])


__all__ = ["HfImageDataset", "class_names", "load_split"]
