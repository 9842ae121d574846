"""`--train-subset`: a fixed, stratified, seeded part of a training split, for data-efficiency studies.

The images are put in one seeded order that interleaves the classes evenly: the i-th image of a class with
`n` images gets the key `(i + u) / n` (its per-class order and the offset `u` in [0, 1) drawn from the seed),
and the subset of size `k` is the first `k` images by key. So any prefix holds every class in proportion, to
within one image, and the subsets of one seed are **nested**: the 10% subset lies inside the 25% one, which
lies inside the 50% one. scikit-learn's `train_test_split(stratify=...)` gives the same proportions but no
nesting.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Dataset, Subset

from deit.errors import DeitError


def check_subset_flag(size: float, flag: str = "--train-subset") -> None:
    """A fraction in (0, 1] or a whole number of images; anything else is a one-line error naming the flag."""
    if not (size > 0 and math.isfinite(size)):  # inf would reach int(): OverflowError
        raise DeitError(f"{flag} {size:g}: must be a fraction in (0, 1] or a number of images")
    if size > 1 and size != int(size):
        raise DeitError(f"{flag} {size:g}: above 1 it is a number of images and must be whole")


def subset_size(size: float, total: int, flag: str = "--train-subset") -> int:
    """Images kept: `size` in (0, 1] is a fraction of `total` (at least one image), a larger whole number a count."""
    check_subset_flag(size, flag)
    if size <= 1:
        return max(1, round(size * total))
    if size > total:
        raise DeitError(f"{flag} {int(size)}: the training split has only {total} images")
    return int(size)


def dataset_labels(dataset: Dataset) -> list[int]:
    """Every image's label: from `targets` or `samples` when the data set has them, else read one by one."""
    targets = getattr(dataset, "targets", None)
    if targets is None and getattr(dataset, "samples", None) is not None:
        targets = [label for _, label in dataset.samples]  # type: ignore[attr-defined]
    if targets is None:  # any other data set: read the labels (slow for files, but always right)
        targets = [dataset[index][1] for index in range(len(dataset))]  # type: ignore[arg-type]
    return [int(label) for label in targets]


def stratified_order(labels: list[int], seed: int) -> np.ndarray:
    """All indices in the seeded class-interleaved order whose every prefix is a stratified subset."""
    labels_array = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels_array), dtype=np.float64)
    for label in np.unique(labels_array):
        members = np.flatnonzero(labels_array == label)
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random()) / len(members)
    tie_break = rng.permutation(len(labels_array))
    return np.lexsort((tie_break, keys))


class TrainingSubset(Subset):
    """A stratified subset that still looks like its data set: `classes`, `targets`, `skipped` and a description."""

    def __init__(self, dataset: Dataset, indices: list[int], labels: list[int], *, size: float, seed: int) -> None:
        super().__init__(dataset, indices)
        self.classes = dataset.classes  # type: ignore[attr-defined]
        self.class_to_idx = getattr(dataset, "class_to_idx", None)
        self.skipped = getattr(dataset, "skipped", [])
        self.targets = [labels[index] for index in indices]
        self.description = f"stratified subset of {len(labels)}, --train-subset {size:g}, seed {seed}"


def stratified_subset(dataset: Dataset, size: float, seed: int) -> TrainingSubset:
    """The first `subset_size(size)` images of `stratified_order`, in their original order."""
    labels = dataset_labels(dataset)
    count = subset_size(size, len(labels))
    indices = np.sort(stratified_order(labels, seed)[:count])
    return TrainingSubset(dataset, [int(index) for index in indices], labels, size=size, seed=seed)
