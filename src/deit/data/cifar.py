"""CIFAR-10 / CIFAR-100 read from the official *binary* archives, or from torchvision's pickled download.

Layouts (as the archives extract, under `--data-path`):

- CIFAR-10: `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`, `batches.meta.txt`; 3073-byte records
  (label byte, then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue, row-major 32x32).
- CIFAR-100: `cifar-100-binary/{train,test}.bin`, `fine_label_names.txt`; 3074-byte records (coarse label
  byte, fine label byte, 3072 pixel bytes). The 100 fine labels are the classes, as in the DeiT paper.

torchvision's pickled "python version" (`cifar-10-batches-py/`, `cifar-100-python/`) is read too, through an
unpickler that runs no code (`deit.data.cifar_pickle`); the binary layout wins where both are present.

`--data-path` may also point straight at the extracted folder. With `download=True` a missing archive is fetched
from the dataset authors' site, its MD5 checked, and only the expected regular files are extracted (no member
paths from the archive are trusted).
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from deit.data.cifar_pickle import PICKLED_CIFAR, find_pickled_cifar, read_pickled_split
from deit.errors import DeitError
from deit.io import read_text_file

_PIXELS = 3 * 32 * 32


@dataclasses.dataclass(frozen=True)
class CifarArchive:
    """Where one CIFAR variant comes from and how its binary records are laid out."""

    title: str
    url: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    names_file: str
    label_bytes: int  # bytes before the pixels in each record
    label_offset: int  # which of them is the class label
    num_classes: int

    @property
    def filename(self) -> str:
        """The archive's file name, as the URL ends."""
        return self.url.rsplit("/", 1)[-1]


CIFAR_ARCHIVES: dict[int, CifarArchive] = {
    10: CifarArchive(
        "CIFAR-10",
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
        "cifar-10-batches-bin",
        tuple(f"data_batch_{number}.bin" for number in range(1, 6)),
        ("test_batch.bin",),
        "batches.meta.txt",
        label_bytes=1,
        label_offset=0,
        num_classes=10,
    ),
    100: CifarArchive(
        "CIFAR-100",
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
        "cifar-100-binary",
        ("train.bin",),
        ("test.bin",),
        "fine_label_names.txt",
        label_bytes=2,
        label_offset=1,
        num_classes=100,
    ),
}


class CifarDataset(Dataset):
    """One split of CIFAR-10 or CIFAR-100 as (PIL RGB 32x32, label) pairs, held in memory as uint8."""

    def __init__(
        self,
        root: str | Path,
        *,
        num_classes: int,
        train: bool,
        transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        if num_classes not in CIFAR_ARCHIVES:
            raise DeitError(f"CIFAR with {num_classes} classes does not exist (10 or 100)")
        archive = CIFAR_ARCHIVES[num_classes]
        has_binary = any(_is_complete(folder, archive) for folder in (Path(root) / archive.folder, Path(root)))
        pickled = None if has_binary else find_pickled_cifar(Path(root), num_classes)
        if pickled is not None:  # torchvision's download: pickles, read by an unpickler that runs no code
            self.images, self.targets, self.classes = read_pickled_split(pickled, num_classes, train=train)
        else:
            folder = locate_cifar(Path(root), archive, download=download)
            files = archive.train_files if train else archive.test_files
            parts = [_read_records(folder / name, archive) for name in files]
            self.images = np.concatenate([images for images, _ in parts])
            self.targets = [int(label) for _, labels in parts for label in labels]
            self.classes = _read_class_names(folder / archive.names_file, archive)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def locate_cifar(root: Path, archive: CifarArchive, *, download: bool) -> Path:
    """The folder holding `archive`'s extracted files, downloading and extracting them first if allowed."""
    for folder in (root / archive.folder, root):
        if _is_complete(folder, archive):
            return folder
    if not download:
        pickled = PICKLED_CIFAR[archive.num_classes].folder
        raise DeitError(
            f"--data-path {root}: no {archive.title} data (expected the binary "
            f"{root / archive.folder}/{archive.train_files[0]} or torchvision's pickled {root / pickled}/, "
            f"complete){_partial_pickled(root, archive.num_classes)}; pass --download to fetch "
            f"{archive.filename} there, or point --data-path at the folder that holds it"
        )
    download_cifar(root, archive)
    return root / archive.folder


def _partial_pickled(root: Path, num_classes: int) -> str:
    """Which files of torchvision's pickled layout are missing, when its folder is there but incomplete."""
    layout = PICKLED_CIFAR[num_classes]
    folder = root / layout.folder
    if not folder.is_dir():
        return ""
    missing = [
        name for name in (*layout.train_files, *layout.test_files, layout.meta_file) if not (folder / name).is_file()
    ]
    return f"; {folder} is torchvision's pickled layout but lacks {', '.join(missing)}"


def download_cifar(root: Path, archive: CifarArchive) -> None:
    """Fetch `archive` into `root` (MD5 checked) and extract its expected files into `root/archive.folder`."""
    from torchvision.datasets.utils import check_integrity, download_url

    tarball = root / archive.filename
    try:
        download_url(archive.url, str(root), archive.filename, archive.md5)
    except Exception as error:  # URLError, HTTPError, OSError, RuntimeError (checksum) ...
        if tarball.exists() and not check_integrity(str(tarball), archive.md5):
            tarball.unlink()
            reason = f"the download's MD5 is not {archive.md5}"
        else:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeitError(f"--download: could not fetch {archive.url} into {root}: {reason}") from error
    _extract_expected(tarball, root, archive)


def _extract_expected(tarball: Path, root: Path, archive: CifarArchive) -> None:
    wanted = {f"{archive.folder}/{name}" for name in (*archive.train_files, *archive.test_files, archive.names_file)}
    destination = root / archive.folder
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball, "r:gz") as bundle:
            for member in bundle.getmembers():
                name = member.name.removeprefix("./")
                if name not in wanted or not member.isfile():
                    continue
                source = bundle.extractfile(member)
                partial = destination / f".{Path(name).name}.part"
                with source, open(partial, "wb") as target:
                    while chunk := source.read(1 << 20):
                        target.write(chunk)
                partial.replace(destination / Path(name).name)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DeitError(f"{tarball}: cannot extract ({error}); delete it and retry with --download") from error
    if not _is_complete(destination, archive):
        raise DeitError(f"{tarball}: does not contain the expected {archive.title} files under {archive.folder}/")


def _is_complete(folder: Path, archive: CifarArchive) -> bool:
    return all((folder / name).is_file() for name in (*archive.train_files, *archive.test_files, archive.names_file))


def _read_records(path: Path, archive: CifarArchive) -> tuple[np.ndarray, np.ndarray]:
    record = archive.label_bytes + _PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DeitError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte {archive.title} records "
            "(damaged or not the binary version); delete it and retry with --download"
        )
    records = raw.reshape(-1, record)
    labels = records[:, archive.label_offset].astype(np.int64)
    if labels.max() >= archive.num_classes:
        raise DeitError(
            f"{path}: label {labels.max()} out of range for {archive.title} "
            f"({archive.num_classes} classes); is this the right variant?"
        )
    images = records[:, archive.label_bytes :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _read_class_names(path: Path, archive: CifarArchive) -> list[str]:
    names = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if len(names) != archive.num_classes:
        raise DeitError(f"{path}: lists {len(names)} class names, expected {archive.num_classes}")
    return names
