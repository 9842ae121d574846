"""DIGITS-CANVAS: the embedded digits, enlarged x2, each at its own fixed place on a 32x32 canvas."""

from __future__ import annotations

import numpy as np

from deit.data import build_dataset
from deit.data.digits import DigitsDataset
from deit.data.digits_canvas import DIGITS_CANVAS_MEAN, DIGITS_CANVAS_STD, DigitsCanvasDataset
from deit.engine.builders import data_set_normalization


def test_each_canvas_holds_its_digit_enlarged_somewhere_and_nothing_else() -> None:
    canvas, digits = DigitsCanvasDataset(train=True), DigitsDataset(train=True)
    assert len(canvas) == len(digits) == 1437 and len(DigitsCanvasDataset(train=False)) == 360
    assert canvas.targets == digits.targets and canvas.images.shape == (1437, 32, 32)
    corners = set()
    for image, digit in zip(canvas.images[:50], digits.images[:50]):
        enlarged = digit.repeat(2, axis=0).repeat(2, axis=1)
        rows, cols = np.nonzero(image)
        top, left = rows.min() - np.nonzero(enlarged)[0].min(), cols.min() - np.nonzero(enlarged)[1].min()
        assert np.array_equal(image[top : top + 16, left : left + 16], enlarged)
        assert image.sum() == enlarged.sum()  # nothing outside the digit's square
        corners.add((int(top), int(left)))
    assert len(corners) > 25  # the digits are spread over the canvas


def test_the_canvas_is_fixed_and_its_statistics_are_the_constants() -> None:
    first, again = DigitsCanvasDataset(train=True), DigitsCanvasDataset(train=True)
    assert np.array_equal(first.images, again.images)
    pixels = first.images.astype(np.float64) / 255.0
    assert abs(pixels.mean() - DIGITS_CANVAS_MEAN[0]) < 1e-4 and abs(pixels.std() - DIGITS_CANVAS_STD[0]) < 1e-4
    assert data_set_normalization("digits-canvas") == (DIGITS_CANVAS_MEAN, DIGITS_CANVAS_STD)
    image, label = build_dataset("DIGITS-CANVAS", None, train=False, transform=None)[0]
    assert image.size == (32, 32) and image.mode == "RGB" and 0 <= label < 10
