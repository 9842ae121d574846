"""The paper's image transforms: timm's training pipeline, DeiT III's 3-Augment, and the evaluation crop.

Training (paper, Table 9): RandomResizedCrop (bicubic) -> horizontal flip -> RandAugment
`rand-m9-mstd0.5-inc1` -> ToTensor -> Normalize -> RandomErasing 0.25 (pixel mode), built by timm exactly as the
official code does (timm drops colour jitter when RandAugment is on), with the posterize trap removed (see
`deit.data.augment`). For inputs of 32 pixels or less the random-resized crop becomes the official CIFAR crop,
a random 32-crop with 4 pixels of padding, preceded by a resize to the input size so smaller images (DIGITS'
8x8) are upsampled first.

Training with `three_augment=True` (DeiT III): RandomResizedCrop, or with `simple_random_crop=True` a resize
plus a random crop with 4 reflected pixels of padding -> flip -> one of grayscale / solarize / Gaussian blur ->
colour jitter -> ToTensor -> Normalize. As in the official code this replaces the whole pipeline, so the
RandAugment and random-erasing settings do not apply.

Evaluation: resize the shorter side to `int(input_size / eval_crop_ratio)` -> center crop `input_size` ->
ToTensor -> Normalize. (The official code skips the resize for inputs <= 32; `eval_crop_ratio=1.0` gives the
same result on 32x32 images.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torchvision import transforms as T

from deit.data.augment import RandomGaussianBlur, make_posterize_safe
from deit.errors import DeitError
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD

SMALL_INPUT = 32
DEFAULT_SCALE, DEFAULT_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # torchvision's and timm's RandomResizedCrop
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "hamming", "box")


def augment_policy_set(policy: str | None) -> bool:
    """Whether `--aa` names a policy (`none`, `None` and empty turn AutoAugment/RandAugment off)."""
    return policy not in (None, "", "none", "None")


def build_transform(
    train: bool,
    *,
    input_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color_jitter: float | None = 0.3,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    interpolation: str = "bicubic",
    reprob: float = 0.25,
    remode: str = "pixel",
    recount: int = 1,
    three_augment: bool = False,
    simple_random_crop: bool = False,
    eval_crop_ratio: float = 0.875,
    hflip: float = 0.5,
    scale: Sequence[float] | None = None,
    ratio: Sequence[float] | None = None,
) -> Callable:
    """PIL RGB image -> normalised (3, input_size, input_size) tensor, for training or evaluation.

    `hflip`: probability of the training horizontal flip (the paper's 0.5; 0 for digits and text, whose mirror
    image is another or no symbol); `scale`, `ratio`: RandomResizedCrop's area and aspect ranges (timm's
    `--scale`, `--ratio`; None: torchvision's 0.08-1 and 3/4-4/3).
    """
    if input_size < 1:
        raise DeitError(f"--input-size {input_size}: must be a positive number of pixels")
    if not 0.0 <= hflip <= 1.0:
        raise DeitError(f"--hflip {hflip}: must be a probability in [0, 1]")
    mean, std = tuple(float(value) for value in mean), tuple(float(value) for value in std)
    if not train:
        return _eval_transform(input_size, mean, std, interpolation, eval_crop_ratio)
    scale, ratio = crop_ranges(scale, ratio)
    if three_augment:
        return _three_augment_transform(
            input_size, mean, std, color_jitter, interpolation, simple_random_crop, hflip, scale, ratio
        )
    return _paper_transform(
        input_size,
        mean,
        std,
        color_jitter,
        auto_augment,
        interpolation,
        reprob,
        remode,
        recount,
        simple_random_crop,
        hflip,
        scale,
        ratio,
    )


def crop_ranges(
    scale: Sequence[float] | None, ratio: Sequence[float] | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """`--scale` and `--ratio` as (low, high) pairs, torchvision's defaults where None; a reversed range is refused."""
    pairs = []
    for flag, value, default in (("--scale", scale, DEFAULT_SCALE), ("--ratio", ratio, DEFAULT_RATIO)):
        low, high = (float(v) for v in (default if value is None else value))
        if not 0 < low <= high:
            raise DeitError(f"{flag} {low:g} {high:g}: must be two positive numbers, the smaller first")
        pairs.append((low, high))
    return pairs[0], pairs[1]


def _paper_transform(
    input_size: int,
    mean: tuple,
    std: tuple,
    color_jitter: float | None,
    auto_augment: str | None,
    interpolation: str,
    reprob: float,
    remode: str,
    recount: int,
    simple_random_crop: bool,
    hflip: float = 0.5,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> T.Compose:
    from timm.data import create_transform

    if not 0.0 <= reprob <= 1.0:
        raise DeitError(f"--reprob {reprob}: must be a probability in [0, 1]")
    if interpolation != "random":
        _interpolation_mode(interpolation)
    auto_augment = auto_augment if augment_policy_set(auto_augment) else None
    try:
        transform = create_transform(
            input_size,
            is_training=True,
            color_jitter=color_jitter or None,
            auto_augment=auto_augment,
            interpolation=interpolation,
            re_prob=reprob,
            re_mode=remode,
            re_count=recount,
            mean=mean,
            std=std,
            hflip=hflip,
            scale=scale,
            ratio=ratio,
        )
    except (AssertionError, ValueError, KeyError) as error:
        raise DeitError(
            f"--aa {auto_augment!r} / --remode {remode!r}: timm rejects them ({error or 'bad value'})"
        ) from error
    make_posterize_safe(transform)
    if input_size <= SMALL_INPUT:
        transform.transforms[0] = T.Compose(
            [T.Resize(input_size, _interpolation_mode(interpolation, "bicubic")), T.RandomCrop(input_size, padding=4)]
        )
    elif simple_random_crop:
        transform.transforms[0] = _simple_random_crop(input_size, interpolation)
    return transform


def _three_augment_transform(
    input_size: int,
    mean: tuple,
    std: tuple,
    color_jitter: float | None,
    interpolation: str,
    simple_random_crop: bool,
    hflip: float = 0.5,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> T.Compose:
    mode = _interpolation_mode(interpolation, "bicubic")
    crop = (
        _simple_random_crop(input_size, interpolation)
        if simple_random_crop
        else T.RandomResizedCrop(input_size, scale=scale, ratio=ratio, interpolation=mode)
    )
    steps = [
        crop,
        *([T.RandomHorizontalFlip(hflip)] if hflip > 0 else []),
        T.RandomChoice(
            [T.Grayscale(num_output_channels=3), T.RandomSolarize(threshold=128, p=1.0), RandomGaussianBlur()]
        ),
    ]
    if color_jitter:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def _eval_transform(input_size: int, mean: tuple, std: tuple, interpolation: str, eval_crop_ratio: float) -> T.Compose:
    if not 0.0 < eval_crop_ratio <= 1.0:
        raise DeitError(f"--eval-crop-ratio {eval_crop_ratio}: must be in (0, 1]")
    resize_to = int(input_size / eval_crop_ratio)
    return T.Compose(
        [
            T.Resize(resize_to, interpolation=_interpolation_mode(interpolation, "bicubic")),
            T.CenterCrop(input_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def _simple_random_crop(input_size: int, interpolation: str) -> T.Compose:
    return T.Compose(
        [
            T.Resize(input_size, interpolation=_interpolation_mode(interpolation, "bicubic")),
            T.RandomCrop(input_size, padding=4, padding_mode="reflect"),
        ]
    )


def _interpolation_mode(name: str, random_means: str | None = None) -> T.InterpolationMode:
    if name == "random" and random_means:
        name = random_means
    if name not in _INTERPOLATIONS:
        raise DeitError(
            f"--train-interpolation {name!r}: unknown; choose one of {', '.join(_INTERPOLATIONS)}"
            + (", random" if random_means else "")
        )
    return T.InterpolationMode(name)
