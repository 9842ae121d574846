"""build_transform: the paper's train pipeline, 3-Augment, and the evaluation resize + center crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from deit.data import IMAGENET_MEAN, IMAGENET_STD, build_transform
from deit.errors import DeitError


def _image(width, height, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _names(transform) -> list[str]:
    return [type(step).__name__ for step in transform.transforms]


def test_paper_train_pipeline_matches_the_recipe():
    transform = build_transform(True, input_size=64)
    assert _names(transform) == [
        "RandomResizedCropAndInterpolation",
        "RandomHorizontalFlip",
        "RandAugment",
        "MaybeToTensor",
        "Normalize",
        "RandomErasing",
    ]
    crop, erasing = transform.transforms[0], transform.transforms[-1]
    assert crop.scale == (0.08, 1.0) and str(crop.interpolation).endswith("BICUBIC")
    assert isinstance(erasing, RandomErasing) and erasing.probability == 0.25 and erasing.mode == "pixel"
    assert "ColorJitter" not in _names(transform)  # timm drops jitter under RandAugment, as official
    assert transform(_image(100, 80)).shape == (3, 64, 64)
    no_aa = build_transform(True, input_size=64, auto_augment=None, reprob=0.0)
    assert "ColorJitter" in _names(no_aa) and "RandAugment" not in _names(no_aa)
    assert "RandomErasing" not in _names(no_aa)


@pytest.mark.parametrize("source", [(8, 8), (32, 32)])
def test_small_inputs_use_the_padded_random_crop(source):
    transform = build_transform(True, input_size=32)
    crop = transform.transforms[0]
    assert [type(step).__name__ for step in crop.transforms] == ["Resize", "RandomCrop"]
    assert crop.transforms[1].padding == 4
    assert transform(_image(*source)).shape == (3, 32, 32)


def test_eval_at_ratio_one_on_32px_is_the_official_no_resize():
    image = _image(32, 32)
    ours = build_transform(False, input_size=32, eval_crop_ratio=1.0)(image)
    official = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    assert torch.equal(ours, official)


def test_eval_resizes_by_the_crop_ratio_then_center_crops():
    transform = build_transform(False, input_size=224)
    resize, crop = transform.transforms[0], transform.transforms[1]
    assert resize.size == 256 and str(resize.interpolation).endswith("BICUBIC") and crop.size == (224, 224)
    out = transform(_image(300, 200))
    assert out.shape == (3, 224, 224)
    # normalisation: a uniform image at the mean colour maps to zeros
    mean_colour = tuple(round(255 * value) for value in IMAGENET_MEAN)
    flat = build_transform(False, input_size=16)(Image.new("RGB", (20, 20), mean_colour))
    assert flat.abs().max() < 0.01
    digits = build_transform(False, input_size=32)(_image(8, 8))
    assert digits.shape == (3, 32, 32)  # 8x8 upsampled to 36, center 32


@pytest.mark.parametrize("simple", [False, True])
def test_three_augment_pipeline(simple):
    transform = build_transform(True, input_size=48, three_augment=True, simple_random_crop=simple)
    names = _names(transform)
    assert names[1:] == ["RandomHorizontalFlip", "RandomChoice", "ColorJitter", "ToTensor", "Normalize"]
    choices = [type(step).__name__ for step in transform.transforms[2].transforms]
    assert choices == ["Grayscale", "RandomSolarize", "RandomGaussianBlur"]
    crop = transform.transforms[0]
    if simple:
        assert crop.transforms[1].padding == 4 and crop.transforms[1].padding_mode == "reflect"
    else:
        assert isinstance(crop, T.RandomResizedCrop)
    torch.manual_seed(0)
    outputs = [transform(_image(70, 50)) for _ in range(6)]
    assert all(out.shape == (3, 48, 48) for out in outputs)
    assert "ColorJitter" not in _names(build_transform(True, input_size=48, three_augment=True, color_jitter=0.0))


def test_simple_random_crop_with_the_paper_pipeline():
    transform = build_transform(True, input_size=48, simple_random_crop=True)
    assert _names(transform)[0] == "Compose" and transform(_image(60, 90)).shape == (3, 48, 48)


def test_scale_and_ratio_reach_the_per_image_crop_and_are_checked():
    crop = build_transform(True, input_size=64, scale=(0.35, 1.0), ratio=(0.5, 2.0)).transforms[0]
    assert crop.scale == (0.35, 1.0) and crop.ratio == (0.5, 2.0)
    three = build_transform(True, input_size=64, three_augment=True, scale=[0.5, 0.9]).transforms[0]
    assert three.scale == (0.5, 0.9) and three.ratio == pytest.approx((3 / 4, 4 / 3))
    with pytest.raises(DeitError, match=r"^--scale 1 0.5: must be two positive numbers, the smaller first"):
        build_transform(True, input_size=64, scale=(1.0, 0.5))
    with pytest.raises(DeitError, match="--ratio"):
        build_transform(True, input_size=64, ratio=(0.0, 1.0))


def test_bad_settings_are_named():
    with pytest.raises(DeitError, match="--train-interpolation"):
        build_transform(True, input_size=64, interpolation="cubic-ish")
    with pytest.raises(DeitError, match="--aa"):
        build_transform(True, input_size=64, auto_augment="randomly")
    with pytest.raises(DeitError, match="--eval-crop-ratio"):
        build_transform(False, input_size=64, eval_crop_ratio=1.5)
    with pytest.raises(DeitError, match="--reprob"):
        build_transform(True, input_size=64, reprob=2.0)
    with pytest.raises(DeitError, match="--input-size"):
        build_transform(True, input_size=0)


def test_transforms_pickle_for_spawned_data_loader_workers():
    import pickle

    for transform in (
        build_transform(True, input_size=32),
        build_transform(True, input_size=48, three_augment=True),
        build_transform(False, input_size=32),
    ):
        clone = pickle.loads(pickle.dumps(transform))
        assert clone(_image(40, 40)).shape == transform(_image(40, 40)).shape
