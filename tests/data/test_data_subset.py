"""`--train-subset`: stratified, seeded, deterministic, nested subsets of any training split."""

from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import Dataset

from deit.data.digits import DigitsDataset
from deit.data.subset import dataset_labels, stratified_order, stratified_subset, subset_size
from deit.errors import DeitError


def test_subset_is_stratified_within_one_image_per_class() -> None:
    digits = DigitsDataset(train=True)
    full = Counter(digits.targets)
    for fraction in (0.05, 0.1, 0.25, 0.5):
        subset = stratified_subset(digits, fraction, seed=3)
        assert len(subset) == round(fraction * len(digits))
        counts = Counter(subset.targets)
        for label, total in full.items():
            assert abs(counts[label] - fraction * total) <= 1.0, (fraction, label)
        assert subset.classes == digits.classes
        assert [digits.targets[index] for index in subset.indices] == subset.targets


def test_subsets_of_one_seed_are_nested_and_deterministic() -> None:
    digits = DigitsDataset(train=True)
    sizes = (0.1, 0.25, 0.5, 1.0)
    subsets = [set(stratified_subset(digits, size, seed=0).indices) for size in sizes]
    assert all(small < large for small, large in zip(subsets, subsets[1:]))
    assert subsets[-1] == set(range(len(digits)))
    assert stratified_subset(digits, 0.1, seed=0).indices == stratified_subset(digits, 0.1, seed=0).indices
    assert stratified_subset(digits, 0.1, seed=0).indices != stratified_subset(digits, 0.1, seed=1).indices


class _SamplesOnly(Dataset):
    """A folder-like data set that has `samples` and no `targets`."""

    classes = ["a", "b"]

    def __init__(self) -> None:
        self.samples = [(f"f{index}.png", index % 2) for index in range(40)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, self.samples[index][1]


class _NoLabelLists(_SamplesOnly):
    """Labels are only in what the data set yields."""

    def __init__(self) -> None:
        super().__init__()
        self.labels_read = 0

    def __getattribute__(self, name: str):  # hide `samples` from the label reader
        if name == "samples":
            raise AttributeError(name)
        return super().__getattribute__(name)

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, index % 2


def test_labels_come_from_targets_samples_or_the_items() -> None:
    assert dataset_labels(_SamplesOnly()) == [index % 2 for index in range(40)]
    assert dataset_labels(_NoLabelLists()) == [index % 2 for index in range(40)]
    subset = stratified_subset(_SamplesOnly(), 10, seed=0)  # a count, not a fraction
    assert len(subset) == 10 and Counter(subset.targets) == {0: 5, 1: 5}
    assert list(stratified_order([0, 0, 1, 1], seed=5)) != [] and sorted(stratified_order([0, 1], 0)) == [0, 1]


@pytest.mark.parametrize(
    "size, message",
    [
        (0.0, "must be a fraction"),
        (-2, "must be a fraction"),
        (2.5, "must be whole"),
        (5000, "has only 40 images"),
        (float("inf"), "must be a fraction"),
        (float("nan"), "must be a fraction"),
    ],
)
def test_bad_sizes_are_one_line_errors(size: float, message: str) -> None:
    with pytest.raises(DeitError, match=f"--train-subset .*{message}"):
        subset_size(size, 40)


def test_small_fractions_keep_at_least_one_image() -> None:
    assert subset_size(0.001, 40) == 1 and subset_size(1.0, 40) == 40 and subset_size(40, 40) == 40
