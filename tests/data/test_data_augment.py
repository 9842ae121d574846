"""The Pillow 13 posterize trap in timm's RandAugment: forced, then sampled many times; 3-Augment ops.

pyproject admits Pillow >= 10; Pillow <= 12 answers 0 bits with black, Pillow 13 raises. The tests install
Pillow 13's check (`_strict_posterize`) on every version, so they test our guarantee, not the Pillow in use.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from timm.data import auto_augment as timm_aa
from timm.data import create_transform

from deit.data import augment as augment_module
from deit.data import build_transform
from deit.data.augment import RandomGaussianBlur, make_posterize_safe, posterize_any_bits


def _image(size=32, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(1, 256, (size, size, 3), dtype=np.uint8))


def _posterize_op(transform):
    ops = [op for op in augment_module._augment_ops(transform) if op.name == "PosterizeIncreasing"]
    assert len(ops) == 1
    return ops[0]


def _force_magnitude_noise(monkeypatch, value: float) -> None:
    """Make the op fire (random() below p) and the N(9, 0.5) magnitude draw come out as `value`."""
    monkeypatch.setattr(timm_aa.random, "random", lambda: 0.0)
    monkeypatch.setattr(timm_aa.random, "gauss", lambda mean, std: value)


_PILLOW_POSTERIZE = ImageOps.posterize


def _strict_posterize(image, bits):
    """Pillow 13's ImageOps.posterize on any Pillow: bits outside 1..8 raise."""
    if not 1 <= bits <= 8:
        raise ValueError("bits must be between or equal to 1 and 8")
    return _PILLOW_POSTERIZE(image, bits)


@pytest.fixture
def pillow_13_posterize(monkeypatch):
    monkeypatch.setattr(ImageOps, "posterize", _strict_posterize)


def test_root_cause_magnitude_ten_keeps_zero_bits():
    # PosterizeIncreasing maps magnitude 10 (a clamped N(9, 0.5) draw >= 10) to "keep 0 bits", which timm passes
    # to ImageOps.posterize: black on Pillow <= 12, ValueError on Pillow 13.
    assert timm_aa.LEVEL_TO_ARG["PosterizeIncreasing"](10.0, {}) == (0,)
    assert timm_aa.LEVEL_TO_ARG["PosterizeIncreasing"](9.9, {}) == (1,)


def test_forced_bad_draw_is_black_not_an_exception(monkeypatch, pillow_13_posterize):
    image = _image()
    plain = create_transform(32, is_training=True, auto_augment="rand-m9-mstd0.5-inc1")
    ours = build_transform(True, input_size=32)
    _force_magnitude_noise(monkeypatch, 10.7)
    with pytest.raises(ValueError, match="bits must be"):
        _posterize_op(plain)(image)  # the trap, reproduced deterministically
    result = _posterize_op(ours)(image)
    assert result.mode == "RGB" and result.size == image.size
    assert not np.asarray(result).any()  # Pillow 12's answer: keep 0 bits = black


def test_posterize_any_bits_matches_pillow_where_pillow_works():
    image = _image()
    for bits in range(1, 8):
        assert np.array_equal(np.asarray(posterize_any_bits(image, bits)), np.asarray(ImageOps.posterize(image, bits)))
    assert posterize_any_bits(image, 8) is image and posterize_any_bits(image, 12) is image
    assert not np.asarray(posterize_any_bits(image, -1)).any()


@pytest.mark.slow
def test_many_draws_of_the_paper_recipe_never_fail(pillow_13_posterize):
    transform = build_transform(True, input_size=32)
    op = _posterize_op(transform)
    installed, bits_asked = op.aug_fn, []

    def counting(image, bits_to_keep, **kwargs):
        bits_asked.append(bits_to_keep)
        return installed(image, bits_to_keep, **kwargs)  # whatever build_transform installed

    op.aug_fn = counting
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    image = _image(24)
    for _ in range(4000):
        assert transform(image).shape == (3, 32, 32)
    # ~1 in 700 images hit the 0-bit level; the loop must have met the trap several times
    assert bits_asked.count(0) >= 2, bits_asked.count(0)


@pytest.mark.parametrize("policy", ["original", "v0", "rand-m9-mstd0.5", "augmix-m5-w4-d2"])
def test_every_timm_policy_with_posterize_is_patched(policy):
    transform = create_transform(64, is_training=True, auto_augment=policy)
    assert make_posterize_safe(transform) >= 1
    ops = [op for op in augment_module._augment_ops(transform) if op.name.startswith("Posterize")]
    assert ops and all(op.aug_fn is posterize_any_bits for op in ops)


def test_gaussian_blur_radius_is_random_in_range(monkeypatch):
    radii = []
    box_blur = ImageFilter.BoxBlur
    monkeypatch.setattr(augment_module.ImageFilter, "GaussianBlur", lambda radius: radii.append(radius) or box_blur(0))
    blur = RandomGaussianBlur(0.1, 2.0)
    for _ in range(50):
        blur(_image(8))
    assert all(0.1 <= radius <= 2.0 for radius in radii) and len(set(radii)) > 40
