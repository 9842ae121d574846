"""A training set's identity in one digest: what stored teacher outputs (`deit teacher-labels`) are keyed by.

Cheap at ImageNet scale: for an image folder, each file's path under the root, label and size (one `stat` per
file, no decoding); for an array-backed set (DIGITS, CIFAR), the pixels and labels themselves; otherwise the
class names and the count. The order of the samples is part of it, since the sampler draws positions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from deit.data.memory import _base_dataset


def data_fingerprint(data_set: Dataset) -> str:
    """sha256 over the samples of `data_set` (through any `Subset`), in order."""
    base, positions = _base_dataset(data_set)
    digest = hashlib.sha256(f"{type(base).__name__}|{len(positions)}|".encode())
    digest.update("\0".join(str(name) for name in getattr(base, "classes", [])).encode() + b"\1")
    samples = getattr(base, "samples", None)
    root = getattr(base, "root", None)
    if isinstance(samples, list) and root is not None:
        for i in positions:
            path, label = samples[i]
            relative = os.path.relpath(path, root)
            digest.update(f"{relative}|{label}|{Path(path).stat().st_size}\n".encode())
    elif hasattr(base, "images") and hasattr(base, "targets"):
        for i in positions:
            digest.update(np.ascontiguousarray(np.asarray(base.images[i])).tobytes())
        digest.update(np.asarray([int(base.targets[i]) for i in positions], dtype=np.int64).tobytes())
    return digest.hexdigest()
