"""`build_dataset`: one name (the official `--data-set` spellings) to one split of a data set.

| name | source | layout under `--data-path` |
|---|---|---|
| `IMNET`, `IMAGEFOLDER` | image files | `train/<class>/*`, `val/<class>/*` (classes: sorted train/ folder names) |
| `INAT`, `INAT19` | image files | iNaturalist official JSON layout (`deit.data.inat`); `INAT` else as `IMNET` |
| `CIFAR` (CIFAR-100), `CIFAR100`, `CIFAR10` | official binary archives | see `deit.data.cifar` |
| `DIGITS` | scikit-learn's bundled digits | none (offline); use `DIGITS_MEAN`/`DIGITS_STD` |
| `DIGITS-CANVAS` | the same digits, ×2, each at its own place on a 32×32 canvas (`deit.data.digits_canvas`) | none |
| `SYNTHETIC` | generated | none; 512 train / 128 val images, 10 classes, 64x64 |
| `WDS` | tar shards of `deit data pack` (`deit.data.shards`) | the shard folder, or a brace pattern of train shards |
| `HF` | a Hugging Face dataset (`deit.data.hf_datasets`) | a `save_to_disk` folder or a folder of parquet files |

`options` carries the source-specific settings: `shuffle_buffer`, `seed` (WDS); `image_column`, `label_column`,
`train_split`, `val_split`, `max_classes` (HF); `inat_category` (INAT, INAT19).

Every data set returned has `.classes` (list of names, its length the number of classes), `.skipped`
(`(path, reason)` for unusable files) and yields `(transform(PIL RGB image), int label)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from deit.errors import DeitError

DATASET_NAMES = (
    "IMNET",
    "IMAGEFOLDER",
    "INAT",
    "INAT19",
    "CIFAR",
    "CIFAR100",
    "CIFAR10",
    "DIGITS",
    "DIGITSCANVAS",
    "SYNTHETIC",
    "WDS",
    "HF",
)
FOLDER_DATA_SETS = ("IMNET", "IMAGEFOLDER", "INAT")  # read from `--data-path`'s train/ and val/ class folders


def data_set_key(name: str) -> str:
    """The canonical spelling of a `--data-set` name (`cifar-10` -> `CIFAR10`)."""
    return name.upper().replace("-", "").replace("_", "")


def build_dataset(
    name: str,
    data_path: str | None,
    *,
    train: bool,
    transform: Callable | None,
    download: bool = False,
    strict_data: bool = False,
    report_dir: str | None = None,
    options: dict | None = None,
) -> Dataset:
    """The training (`train=True`) or validation split of data set `name` (see the module docstring)."""
    key = data_set_key(name)
    if key not in DATASET_NAMES:
        raise DeitError(f"--data-set {name!r}: unknown; choose one of {', '.join(DATASET_NAMES)}")
    if key == "DIGITS":
        from deit.data.digits import DigitsDataset

        return DigitsDataset(train=train, transform=transform)
    if key == "DIGITSCANVAS":
        from deit.data.digits_canvas import DigitsCanvasDataset

        return DigitsCanvasDataset(train=train, transform=transform)
    if key == "SYNTHETIC":
        from deit.data.synthetic import SyntheticDataset

        return SyntheticDataset(train=train, transform=transform)
    if not data_path:
        raise DeitError(
            f"--data-set {key} needs --data-path (the folder that holds "
            f"{'or will hold ' if key.startswith('CIFAR') else ''}the data)"
        )
    if key in ("WDS", "HF"):
        return _build_external(
            key, data_path, train=train, transform=transform, report_dir=report_dir, options=dict(options or {})
        )
    if key in ("INAT", "INAT19"):
        from deit.data.inat import INAT_YEARS, INatDataset, inat_json_layout

        if key == "INAT19" or inat_json_layout(data_path, INAT_YEARS[key]):
            return INatDataset(
                data_path,
                year=INAT_YEARS[key],
                train=train,
                transform=transform,
                category=str((options or {}).get("inat_category", "name")),
                strict_data=strict_data,
                report_dir=report_dir,
            )
    if key.startswith("CIFAR"):
        from deit.data.cifar import CifarDataset

        return CifarDataset(
            data_path, num_classes=10 if key == "CIFAR10" else 100, train=train, transform=transform, download=download
        )
    return build_folder_split(
        data_path, train=train, transform=transform, strict_data=strict_data, report_dir=report_dir
    )


def _build_external(
    key: str, data_path: str, *, train: bool, transform: Callable | None, report_dir: str | None, options: dict
) -> Dataset:
    if key == "WDS":
        from deit.data.shards import ShardDataset

        return ShardDataset(
            data_path,
            train=train,
            transform=transform,
            report_dir=report_dir,
            shuffle_buffer=int(options.get("shuffle_buffer", 1000)),
            seed=int(options.get("seed", 0)),
        )
    from deit.data.hf_datasets import HfImageDataset

    return HfImageDataset(
        data_path,
        train=train,
        transform=transform,
        report_dir=report_dir,
        **{k: v for k, v in options.items() if k.endswith(("_column", "_split", "max_classes"))},
    )


def build_folder_split(
    data_path: str, *, train: bool, transform: Callable | None, strict_data: bool = False, report_dir: str | None = None
) -> Dataset:
    """`data_path/train` or `data_path/val` as a `FolderDataset`, labelled by the train/ class folders."""
    from deit.data.folder import FolderDataset, class_folders

    root = Path(data_path)
    if not root.is_dir():
        raise DeitError(f"--data-path {root}: no such folder")
    train_root, split_root = root / "train", root / ("train" if train else "val")
    if not split_root.is_dir():
        raise DeitError(
            f"--data-path {root}: missing {split_root} (expected {root}/train/<class>/<images> "
            f"and {root}/val/<class>/<images>)"
        )
    # Labels must mean the same in both splits, so the classes always come from train/ when it exists.
    classes = class_folders(train_root) if train_root.is_dir() else None
    return FolderDataset(
        split_root, transform=transform, classes=classes, strict_data=strict_data, report_dir=report_dir
    )
