"""CIFAR-10 / CIFAR-100 in the pickled "python version" that torchvision downloads, read without running code.

Layouts (as torchvision's `CIFAR10(download=True)` / `CIFAR100(...)` leave them under `--data-path`):

- CIFAR-10: `cifar-10-batches-py/{data_batch_1..5,test_batch}` (dicts with `data`, a uint8 array N x 3072, and
  `labels`), `batches.meta` (`label_names`).
- CIFAR-100: `cifar-100-python/{train,test}` (`data`, `fine_labels`), `meta` (`fine_label_names`).

Those files are Python pickles, and unpickling runs whatever callable a pickle names. `SafeCifarUnpickler` admits
only the few globals that a pickled numpy array needs (its reconstructor, `ndarray`, `dtype`, and `_codecs.encode`
for bytes written under protocol 2); every other global, `os.system` included, stops the read before it is called.
The values are then checked: a dict of uint8 pixels, integer labels in range, string class names.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from deit.errors import DeitError

# What an array in a pickle may name: numpy's reconstructor (under its numpy 1 and numpy 2 module names), the
# array and dtype types, the protocol-5 buffer constructor, and the codec call protocol 2 uses for bytes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class SafeCifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data and numpy arrays; any other global is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed globals only (see `_ALLOWED_GLOBALS`)."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR file never holds")
        return super().find_class(module, name)


@dataclasses.dataclass(frozen=True)
class PickledCifar:
    """Where one CIFAR variant's pickled files are, and the keys of its labels and class names."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: str
    names_key: str
    num_classes: int


PICKLED_CIFAR: dict[int, PickledCifar] = {
    10: PickledCifar(
        "cifar-10-batches-py",
        tuple(f"data_batch_{number}" for number in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
        10,
    ),
    100: PickledCifar("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100),
}


def find_pickled_cifar(root: Path, num_classes: int) -> Path | None:
    """The folder holding torchvision's pickled layout of CIFAR-`num_classes` under `root` (or `root` itself)."""
    layout = PICKLED_CIFAR[num_classes]
    for folder in (root / layout.folder, root):
        if all((folder / name).is_file() for name in (*layout.train_files, *layout.test_files, layout.meta_file)):
            return folder
    return None


def read_pickled_split(folder: Path, num_classes: int, *, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """(uint8 images N x 32 x 32 x 3, labels, class names) of one split of the pickled layout in `folder`."""
    layout = PICKLED_CIFAR[num_classes]
    images, labels = [], []
    for name in layout.train_files if train else layout.test_files:
        batch = load_cifar_pickle(folder / name)
        pixels, batch_labels = batch.get("data"), batch.get(layout.labels_key)
        path = folder / name
        if (
            not isinstance(pixels, np.ndarray)
            or pixels.dtype != np.uint8
            or pixels.ndim != 2
            or pixels.shape[1] != 3072
        ):
            raise DeitError(f"{path}: 'data' is not a uint8 array of 3072-byte rows (not a CIFAR batch)")
        if not isinstance(batch_labels, list) or len(batch_labels) != len(pixels):
            raise DeitError(f"{path}: '{layout.labels_key}' is not a list of one label per image")
        if not all(type(label) is int and 0 <= label < num_classes for label in batch_labels):
            raise DeitError(f"{path}: a label is not an integer in [0, {num_classes}); is this the right variant?")
        images.append(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(batch_labels)
    meta_path = folder / layout.meta_file
    names = load_cifar_pickle(meta_path).get(layout.names_key)
    if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise DeitError(f"{meta_path}: '{layout.names_key}' is not a list of {num_classes} class names")
    return np.ascontiguousarray(np.concatenate(images)), labels, names


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle through `SafeCifarUnpickler`: a dict with string keys (bytes decoded as torchvision does)."""
    try:
        with open(path, "rb") as handle:
            # latin1, as torchvision: the files were written by Python 2, whose str becomes str here.
            payload = SafeCifarUnpickler(handle, encoding="latin1").load()
    except Exception as error:  # damaged or hostile bytes fail in many ways; each is one line naming the file
        raise DeitError(f"{path}: refused as a CIFAR pickle: {error or type(error).__name__}") from error
    if not isinstance(payload, dict):
        raise DeitError(f"{path}: holds a {type(payload).__name__}, not the dict of a CIFAR batch")
    if any(isinstance(value, np.ndarray) and value.dtype.hasobject for value in payload.values()):
        raise DeitError(f"{path}: an array holds Python objects, not pixels")
    return {
        _text(key): [_text(item) for item in value] if isinstance(value, list) else value
        for key, value in payload.items()
    }


def _text(value: Any) -> Any:
    """Bytes as a string (files read with `encoding='bytes'` keep their keys and names as bytes); the rest as is."""
    return value.decode("latin1") if isinstance(value, bytes) else value
