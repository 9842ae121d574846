"""`--data-set HF`: a Hugging Face `datasets` data set on disk, with an image and a class-label column.

`--data-path` is a `save_to_disk` folder (a `DatasetDict` with the splits by name) or a folder of parquet files
named by split (`train-*.parquet`, `validation-*.parquet`, or `train/*.parquet`). Nothing is fetched from the
hub. Class names come from the label column's `ClassLabel` feature (else `class_<i>` for integer labels).
Images are decoded here, not by `datasets`, so an undecodable record is skipped with one warning naming
`<data-path>[split][row]` (the next row is used instead), as bad files are.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from deit.data.images import to_rgb
from deit.data.skips import LOGGER, append_report
from deit.errors import DeitError

_MAX_FALLBACK_TRIES = 50


def load_split(data_path: str, split: str) -> Any:
    """The `split` of the dataset at `data_path` (a `save_to_disk` folder or parquet files), hub untouched."""
    try:
        import datasets
    except ImportError as error:
        raise DeitError("--data-set HF needs the datasets library: pip install 'deit[datasets]'") from error
    root = Path(data_path)
    if not root.is_dir():
        raise DeitError(f"--data-path {root}: no such folder")
    if (root / "dataset_dict.json").is_file() or (root / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(root))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DeitError(f"--data-path {root}: no split '{split}' (has {', '.join(loaded)}); "
                                f"choose it with --hf-train-split / --hf-val-split")
            return loaded[split]
        return loaded
    files = sorted(str(p) for p in [*root.glob(f"{split}-*.parquet"), *root.glob(f"{split}/*.parquet"),
                                    *root.glob(f"{split}.parquet")])
    if not files:
        raise DeitError(f"--data-path {root}: neither a save_to_disk folder nor parquet files for split "
                        f"'{split}' ({split}-*.parquet or {split}/*.parquet)")
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def class_names(dataset: Any, label_column: str, source: str) -> list[str]:
    """Names from the label column's `ClassLabel` feature, or `class_<i>` up to the largest integer label."""
    import datasets

    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    labels = dataset[label_column]
    if not all(isinstance(label, int) for label in labels):
        raise DeitError(f"{source}: column '{label_column}' is neither a ClassLabel nor integer labels")
    return [f"class_{i}" for i in range(max(labels) + 1)]


class HfImageDataset(Dataset):
    """One split of a Hugging Face dataset as `(transform(RGB image), label)`; bad records skipped and named."""

    def __init__(self, data_path: str, *, train: bool, transform: Callable | None, image_column: str = "image",
                 label_column: str = "label", train_split: str = "train", val_split: str = "validation",
                 report_dir: str | None = None, classes: list[str] | None = None) -> None:
        import datasets

        self.split = train_split if train else val_split
        self.source = f"{data_path}[{self.split}]"
        data = load_split(data_path, self.split)
        for flag, column in (("--hf-image-column", image_column), ("--hf-label-column", label_column)):
            if column not in data.column_names:
                raise DeitError(f"{flag} {column}: no such column in {self.source} "
                                f"(columns: {', '.join(data.column_names)})")
        if isinstance(data.features[image_column], datasets.Image):
            data = data.cast_column(image_column, datasets.Image(decode=False))  # we decode, and skip bad ones
        # Labels mean the same in both splits: the validation split takes the training split's names when it has them.
        self.classes = classes or class_names(load_split(data_path, train_split) if not train else data,
                                              label_column, self.source)
        self.data, self.image_column, self.label_column = data, image_column, label_column
        self.transform, self.report_dir = transform, report_dir
        self.skipped: list[tuple[str, str]] = []
        self._known_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for attempt in range(min(len(self.data), _MAX_FALLBACK_TRIES)):
            candidate = (index + attempt) % len(self.data)
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
