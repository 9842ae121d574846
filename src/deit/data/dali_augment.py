"""The torch loader's augmentations as DALI graph pieces: RandAugment, random erasing, colour jitter, the
small-input crop.

Each function takes and returns DALI `DataNode`s inside a `pipeline_def`; the per-sample parameters are drawn
on the CPU (scalars) and the image work runs on the images' device, so on a GPU pipeline the pixels stay there.
The semantics are timm's / torchvision's, which `deit.data.transforms` uses:

- `rand_augment`: timm's `rand-mM-nN-pP-inc1` on DALI's `auto_aug` ops: the 15 "increasing" ops (rotate 30°,
  shear 0.3, translate 45% of the size, brightness/contrast/colour/sharpness 1 ± 0.9, posterize to 4→0 bits,
  solarize, solarize-add 110, equalize, auto-contrast, invert) at magnitude M of 10, N layers, each op applied
  with probability P (0.5). Not reproduced: `mstd` (timm's per-op Gaussian noise on M) and the fill colour of
  geometric ops (timm: the ImageNet mean colour; DALI takes one grey level, 115 here).
- `random_erasing`: timm's `RandomErasing` (area 2%–1/3 of the image divided by the box count, log-uniform aspect
  ratio 0.3–3.3, up to 10 attempts per box, the first that fits wins; with `max_count > 1` the count is drawn
  from 1..max_count), filled with per-pixel (`pixel`), per-channel (`rand`) normal noise or zeros (`const`), on
  the normalised CHW image.
- `color_jitter`: torchvision's `ColorJitter(s, s, s)` as timm builds it without an auto-augment policy:
  brightness, contrast (around the grey mean) and saturation (towards grey) factors uniform in
  [max(0, 1 - s), 1 + s], applied in a random order, clamped to 0–255 after each.
- `small_input_crop`: the official CIFAR crop our transform uses for inputs of 32 pixels or less: resize the
  short side to the input size, then a random input-size crop of the image padded by 4 black pixels.
"""

from __future__ import annotations

import math
from typing import Any

_LEVELS = 10  # timm's magnitude scale: M of 10
_FILL = 115  # timm fills geometric ops with the ImageNet mean colour (124, 116, 104); DALI takes one grey level
_ERASE_AREA = (0.02, 1 / 3)
_ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))
_ERASE_ATTEMPTS = 10
_ERASE_MODES = ("pixel", "rand", "const")
_GREY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" conversion
# The 6 orders of (brightness 0, contrast 1, saturation 2), as torchvision's randperm over its ops picks one.
_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def parse_rand_augment(policy: str) -> tuple[int, int, float]:
    """(layers N, magnitude M of 10, probability P) of a timm `rand-...-inc1` policy; ValueError otherwise.

    Read by timm's own parser, the one the torch transform uses, so both loaders agree on every default (M is 10
    when the policy names none); what DALI cannot do (op weights, `mmax`, a fractional M) is refused.
    """
    from timm.data.auto_augment import rand_augment_transform

    sections = policy.split("-")
    if sections[0] != "rand" or "inc1" not in sections[1:]:
        raise ValueError("DALI implements timm's RandAugment with increasing ops (rand-...-inc1) only")
    try:
        transform = rand_augment_transform(policy, {})
    except (AssertionError, ValueError, KeyError) as error:
        raise ValueError(f"timm rejects it ({error or 'unknown section'})") from error
    op = transform.ops[0]
    if transform.choice_weights is not None or op.magnitude_max is not None:
        raise ValueError("op weights (w) and mmax are not implemented for DALI")
    magnitude = float(op.magnitude)
    if not (magnitude.is_integer() and 0 <= magnitude <= _LEVELS):
        raise ValueError(f"magnitude {op.magnitude:g}: DALI takes a whole number in [0, {_LEVELS}]")
    return transform.num_layers, int(magnitude), float(op.prob)


def rand_augment(images: Any, policy: str, *, size: int) -> Any:
    """timm's RandAugment `policy` on uint8 HWC (size, size) images (needs `enable_conditionals=True`)."""
    from nvidia.dali import fn
    from nvidia.dali.auto_aug import augmentations as ops
    from nvidia.dali.auto_aug.rand_augment import apply_rand_augment, get_rand_augment_suite

    layers, magnitude, probability = parse_rand_augment(policy)
    suite = [
        op
        for op in get_rand_augment_suite(use_shape=True, max_translate_rel=0.45)
        if op.name not in ("posterize", "identity")
    ]
    # timm's PosterizeIncreasing keeps 4 - int(4 M / 10) bits (DALI's suite: 8 -> 4)
    suite += [ops.posterize.augmentation((4, 0), False, ops.poster_mask_uint8), ops.solarize_add, ops.invert]
    for _ in range(layers):
        if fn.random.coin_flip(probability=probability):  # timm: each layer's op applies with probability P
            images = apply_rand_augment(
                suite, images, 1, magnitude, num_magnitude_bins=_LEVELS + 1, shape=(size, size), fill_value=_FILL
            )
    return images


def random_erasing(images: Any, *, probability: float, mode: str, max_count: int, size: int) -> Any:
    """timm's RandomErasing on normalised (3, size, size) images: each image erased with `probability`."""
    from nvidia.dali import fn, types

    if mode not in _ERASE_MODES:
        raise ValueError(f"random erasing mode {mode!r}: one of {', '.join(_ERASE_MODES)}")
    erase = fn.cast(fn.random.coin_flip(probability=probability), dtype=types.FLOAT)
    count = fn.random.uniform(values=[float(value) for value in range(1, max_count + 1)]) if max_count > 1 else 1.0
    for box in range(max_count):
        height, width = _erase_box(count, size)
        active = erase * (count > box) if max_count > 1 else erase  # an image draws `count` boxes, or none
        top = _uniform_int(size - height) * active
        left = _uniform_int(size - width) * active
        keep = fn.erase(
            images * 0.0 + 1.0,
            anchor=fn.stack(top, left),
            shape=fn.stack(height, width) * active,
            axis_names="HW",
            fill_value=0.0,
        )
        images = images * keep + _noise(images, mode) * (1.0 - keep)
    return images


def _erase_box(count: Any, size: int) -> tuple[Any, Any]:
    """(height, width) of the first of timm's 10 attempts that fits inside the image; (0, 0) when none does."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn

    height: Any = 0.0
    width: Any = 0.0
    for _ in range(_ERASE_ATTEMPTS):  # the last attempt that fits wins: as the attempts are independent and
        # identically drawn, it has the distribution of timm's first one that fits
        area = fn.random.uniform(range=list(_ERASE_AREA)) * float(size * size) / count
        ratio = dmath.exp(fn.random.uniform(range=list(_ERASE_LOG_RATIO)))
        attempt_height = dmath.floor(dmath.sqrt(area * ratio) + 0.5)
        attempt_width = dmath.floor(dmath.sqrt(area / ratio) + 0.5)
        fits = (attempt_height < size) & (attempt_width < size)
        height = fits * attempt_height + (1 - fits) * height
        width = fits * attempt_width + (1 - fits) * width
    return height, width


def _uniform_int(high: Any) -> Any:
    """A uniform integer in [0, high] per sample, as a float (timm's `random.randint(0, high)`)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn

    return dmath.min(dmath.floor(fn.random.uniform(range=[0.0, 1.0]) * (high + 1.0)), high)


def _noise(images: Any, mode: str) -> Any:
    from nvidia.dali import fn

    if mode == "pixel":
        return fn.random.normal(images)
    if mode == "rand":
        return fn.random.normal(shape=[3, 1, 1])  # one value per channel, broadcast over the box
    return 0.0


def color_jitter(images: Any, strength: float) -> Any:
    """torchvision's ColorJitter(strength, strength, strength) on HWC RGB images; returns float 0–255 images.

    Needs the pipeline's `enable_conditionals=True` (the random order picks one branch per image)."""
    from nvidia.dali import fn, types

    images = fn.cast(images, dtype=types.FLOAT)
    factors = [fn.random.uniform(range=[max(0.0, 1.0 - strength), 1.0 + strength]) for _ in range(3)]
    order = fn.random.uniform(values=list(range(len(_ORDERS))), dtype=types.INT32)
    for slot in range(3):
        operation = fn.lookup_table(
            order, keys=list(range(len(_ORDERS))), values=[float(chosen[slot]) for chosen in _ORDERS], default_value=0.0
        )
        if operation == 0:
            images = _clamp(images * factors[0])
        elif operation == 1:
            images = _clamp(_blend(images, fn.reductions.mean(_grey(images)), factors[1]))
        else:
            images = _clamp(_blend(images, _grey(images), factors[2]))
    return images


def _grey(images: Any) -> Any:
    from nvidia.dali import fn

    return fn.coord_transform(images, M=list(_GREY))  # (H, W, 1), broadcast against the RGB channels


def _blend(images: Any, towards: Any, factor: Any) -> Any:
    return towards + factor * (images - towards)


def _clamp(images: Any) -> Any:
    import nvidia.dali.math as dmath

    return dmath.clamp(images, 0.0, 255.0)


def _shorter_side_to(images: Any, size: int) -> Any:
    """(height, width) with the shorter side `size` and the longer one truncated, as torchvision's Resize(size)
    (DALI's `resize_shorter` rounds the longer side instead)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    shape = images.shape(dtype=types.FLOAT)
    shorter = dmath.min(shape[0], shape[1])
    return fn.stack(*(dmath.floor(size * shape[axis] / shorter + 1e-4) for axis in (0, 1)))


def small_input_crop(images: Any, size: int, *, padding: int = 4) -> Any:
    """Resize the short side to `size` (bicubic), then a random `size` crop of the image padded by `padding`."""
    from nvidia.dali import fn, types

    images = fn.resize(images, size=_shorter_side_to(images, size), interp_type=types.INTERP_CUBIC, antialias=True)
    shape = images.shape(dtype=types.FLOAT)
    top = _uniform_int(shape[0] + 2 * padding - size) - padding
    left = _uniform_int(shape[1] + 2 * padding - size) - padding
    start = fn.cast(fn.stack(top, left), dtype=types.INT32)
    return fn.slice(images, start=start, shape=[size, size], axis_names="HW", out_of_bounds_policy="pad", fill_values=0)


__all__ = ["color_jitter", "parse_rand_augment", "rand_augment", "random_erasing", "small_input_crop"]
