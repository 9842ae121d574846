"""DIGITS (offline, fixed stratified split, its own statistics) and SYNTHETIC (deterministic, learnable)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from deit.data import DIGITS_MEAN, DIGITS_STD, build_dataset, build_transform


@pytest.mark.slow
def test_digits_split_is_fixed_stratified_and_disjoint():
    train = build_dataset("DIGITS", None, train=True, transform=None)
    val = build_dataset("DIGITS", None, train=False, transform=None)
    assert (len(train), len(val)) == (1437, 360)
    assert train.classes == [str(digit) for digit in range(10)]
    per_class = Counter(val.targets)
    assert set(per_class) == set(range(10)) and max(per_class.values()) - min(per_class.values()) <= 2
    train_pixels = {train.images[i].tobytes() for i in range(len(train))}
    assert sum(val.images[i].tobytes() in train_pixels for i in range(len(val))) <= 2  # (sklearn has few dupes)
    again = build_dataset("DIGITS", None, train=False, transform=None)
    assert again.targets == val.targets and np.array_equal(again.images, val.images)


def test_digits_items_are_rgb_upscaled_by_the_transform():
    train = build_dataset("DIGITS", None, train=True, transform=None)
    image, label = train[0]
    assert image.mode == "RGB" and image.size == (8, 8) and isinstance(label, int)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    levels = {round(level * 255 / 16) for level in range(17)}  # sklearn's 0..16 scaled to 0..255
    assert set(np.unique(train.images).tolist()) == levels
    transformed = build_dataset(
        "DIGITS", None, train=False, transform=build_transform(False, input_size=32, mean=DIGITS_MEAN, std=DIGITS_STD)
    )
    tensor, _ = transformed[0]
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32


def test_digits_mean_std_are_the_training_split_statistics():
    train = build_dataset("DIGITS", None, train=True, transform=None)
    pixels = train.images.astype(np.float64) / 255.0
    assert abs(pixels.mean() - DIGITS_MEAN[0]) < 1e-3
    assert abs(pixels.std() - DIGITS_STD[0]) < 1e-3
    assert len(set(DIGITS_MEAN)) == 1 and len(set(DIGITS_STD)) == 1


def test_synthetic_is_deterministic_balanced_and_learnable():
    train = build_dataset("SYNTHETIC", None, train=True, transform=None)
    val = build_dataset("SYNTHETIC", None, train=False, transform=None)
    assert len(train.classes) == 10 and len(train) > len(val) > 0
    assert np.array_equal(np.asarray(train[5][0]), np.asarray(train[5][0]))
    assert not np.array_equal(np.asarray(train[5][0]), np.asarray(val[5][0]))
    counts = Counter(train.targets)
    assert set(counts) == set(range(10)) and max(counts.values()) - min(counts.values()) <= 1
    # nearest class-mean colour classifies val perfectly: the signal is there to learn
    means = np.zeros((10, 3))
    for index in range(len(train)):
        means[train.targets[index]] += np.asarray(train[index][0]).reshape(-1, 3).mean(0) / counts[train.targets[index]]
    hits = sum(
        np.argmin(((means - np.asarray(img).reshape(-1, 3).mean(0)) ** 2).sum(1)) == label
        for img, label in (val[i] for i in range(len(val)))
    )
    assert hits == len(val)
