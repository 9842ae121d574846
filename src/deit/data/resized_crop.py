"""RandomResizedCrop and flip on whole batches of uint8 images: torchvision's boxes, torchvision's pixels.

Boxes: `draw_boxes` is `torchvision.transforms.RandomResizedCrop.get_params` for many images at once -- ten tries
of an area uniform in `scale` x the image's and an aspect ratio log-uniform in `ratio`, the first that fits,
else the whole image clamped to `ratio` and centred -- drawn from a `torch.Generator`.

Pixels: `torchvision.transforms.v2.functional.resized_crop(..., antialias=True)` on a uint8 tensor is PyTorch's
separable antialiased resize (`F.interpolate`): each output pixel is a few taps of the bicubic (a = -0.5) or
triangle filter, widened by the downscale factor, with 16-bit fixed-point weights, the horizontal pass first and
the result rounded to uint8 between the passes. On the CPU `resized_crops` calls that kernel on each sample's
crop (a view of the store: no copy, no PIL; its int16 SIMD code beats any batched float formulation there); on
an accelerator, where a launch per sample would cost more than the arithmetic, it builds the same taps for the
whole batch and applies each pass as one batched matrix product over tiles of `TILE` output rows, a tile
reading only the input rows its taps reach. Both give torchvision's pixels (tests/data/test_data_resized_crop.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Output rows per matrix product: small enough that a tile reads few input rows besides its own taps'.
TILE = 8
_TRIES = 10  # torchvision's get_params


def draw_boxes(
    heights: Tensor, widths: Tensor, scale: Sequence[float], ratio: Sequence[float], generator: torch.Generator
) -> Tensor:
    """(N, 4) int64 boxes (top, left, height, width), one per image of size `heights` x `widths` (CPU, int64),
    from `RandomResizedCrop.get_params`' distribution."""
    count = len(heights)
    height, width = heights.double()[:, None], widths.double()[:, None]
    area = height * width
    low, high = float(scale[0]), float(scale[1])
    target = area * (low + (high - low) * torch.rand(count, _TRIES, generator=generator, dtype=torch.float64))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        log_low + (log_high - log_low) * torch.rand(count, _TRIES, generator=generator, dtype=torch.float64)
    )
    box_w, box_h = torch.round(torch.sqrt(target * aspect)), torch.round(torch.sqrt(target / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.double().argmax(1, keepdim=True)  # the first try that fits (0 when none does)
    found = fits.any(1)
    box_h, box_w = box_h.gather(1, first)[:, 0], box_w.gather(1, first)[:, 0]
    # None fits: the whole image, clamped to the ratio range, centred.
    height, width = heights.double(), widths.double()
    in_ratio = width / height
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fallback_w = torch.where(wide, torch.round(height * max(ratio)), width)
    fallback_h = torch.where(narrow, torch.round(width / min(ratio)), height)
    box_h, box_w = torch.where(found, box_h, fallback_h).long(), torch.where(found, box_w, fallback_w).long()
    # Offsets uniform over what each box leaves (get_params' randint), centred for the fallback.
    top = (torch.rand(count, generator=generator, dtype=torch.float64) * (heights - box_h + 1)).long()
    left = (torch.rand(count, generator=generator, dtype=torch.float64) * (widths - box_w + 1)).long()
    top = torch.where(found, top, (heights - box_h) // 2)
    left = torch.where(found, left, (widths - box_w) // 2)
    return torch.stack([top, left, box_h, box_w], 1)


def _filter(distance: Tensor, bicubic: Tensor) -> Tensor:
    """PyTorch's antialias filters at |distance|: bicubic with a = -0.5, or the triangle (bilinear)."""
    x, a = distance.abs(), -0.5
    cubic = torch.where(
        x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, torch.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0)
    )
    return torch.where(bicubic, cubic, (1 - x).clamp(min=0))


def _taps(starts: Tensor, lengths: Tensor, size: int, bicubic: Tensor) -> tuple[Tensor, Tensor]:
    """(input index (B, size, K), weight (B, size, K)) of each output pixel along one axis, for crops
    [start, start + length) of that axis: PyTorch's `_compute_indices_weights_aa` and its int16 weights."""
    device = starts.device
    scale = lengths.double() / size
    half = torch.where(bicubic, 2.0, 1.0).to(device, torch.float64)  # the filter's support at scale 1
    support = torch.where(scale >= 1, half * scale, half)[:, None]
    inverse = torch.where(scale >= 1, 1 / scale, 1.0)[:, None, None]
    center = scale[:, None] * (torch.arange(size, device=device, dtype=torch.float64) + 0.5)
    first = (center - support + 0.5).trunc().clamp(min=0)  # C++ casts to int64: truncation
    last = torch.minimum((center + support + 0.5).trunc(), lengths.double()[:, None])
    taps = int(math.ceil(2 * float(support.max()))) + 2
    index = first[..., None] + torch.arange(taps, device=device, dtype=torch.float64)
    valid = index < last[..., None]
    weight = _filter((index - center[..., None] + 0.5) * inverse, bicubic[:, None, None]) * valid
    weight = weight / weight.sum(-1, keepdim=True)
    # A tap past the crop points at the first one (weight 0), so a tile reads only rows it needs.
    index = torch.where(valid, index, first[..., None]).long() + starts[:, None, None]
    return index, _fixed_point(weight)


def _fixed_point(weight: Tensor) -> Tensor:
    """Weights rounded to PyTorch's uint8 kernel's int16 fixed point (the most fraction bits, up to 22, that keep
    the largest weight of the sample and axis below 2^15), as float32 fractions: sums stay exact in float32."""
    largest = weight.flatten(1).amax(1, keepdim=True)
    candidates = torch.arange(1, 23, device=weight.device, dtype=torch.float64)
    bits = (torch.floor(0.5 + largest * torch.exp2(candidates)) < 2**15).sum(1)  # monotone: count the fits
    unit = torch.exp2(bits.double())[:, None, None]
    return (weight.sign() * torch.floor(0.5 + weight.abs() * unit) / unit).float()


def _resample(source: Tensor, base: Tensor, index: Tensor, weight: Tensor, rows_each: int) -> Tensor:
    """uint8 out[b, i] = round(sum_k weight[b, i, k] * source[base[b] + index[b, i, k]]) clamped to [0, 255], for
    `source` (rows, L) holding `rows_each` rows per sample: one `bmm` over tiles of `TILE` output rows, each
    reading the span of rows its taps reach."""
    batch, size, taps = index.shape
    tile = max(t for t in range(1, TILE + 1) if size % t == 0)
    tiles = size // tile
    index = index.view(batch, tiles, tile * taps)
    start = index.amin(-1)
    span = int((index.amax(-1) - start).max()) + 1
    rows = (start[..., None] + torch.arange(span, device=index.device)).clamp_(max=rows_each - 1)
    window = source.index_select(0, (rows + base[:, None, None]).flatten()).float().view(batch * tiles, span, -1)
    local = (index - start[..., None]).view(batch, tiles, tile, taps)
    matrix = torch.zeros(batch, tiles, tile, span, device=weight.device).scatter_add_(
        -1, local, weight.view(batch, tiles, tile, taps)
    )
    out = torch.bmm(matrix.view(batch * tiles, tile, span), window)
    # round half up, as the kernel's `(sum + 2^(bits-1)) >> bits`; the cast truncates what is >= 0
    return out.add_(0.5).clamp_(0, 255).to(torch.uint8).view(batch, size, -1)


def resized_crops(
    store: Tensor,
    indices: Tensor,
    boxes: Tensor,
    flips: Tensor,
    bicubic: Tensor,
    size: int,
    *,
    batched: bool | None = None,
) -> Tensor:
    """uint8 (B, C, size, size) crops of `store` (uint8 (N, C, H, W)) images `indices` at `boxes` (B, 4: top, left,
    height, width), resized bicubic where `bicubic` else bilinear, then flipped where `flips`; `batched`: the
    matrix-product form (default: on any device but the CPU)."""
    batched = store.device.type != "cpu" if batched is None else batched
    if not batched:
        return _each_sample(store, indices, boxes, flips, bicubic, size)
    crops = _batched(store, indices, boxes, bicubic, size)
    return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


def _each_sample(store: Tensor, indices: Tensor, boxes: Tensor, flips: Tensor, bicubic: Tensor, size: int) -> Tensor:
    """PyTorch's antialiased kernel on each crop (a view of the store), as torchvision calls it; flipped alone."""
    crops = torch.empty(len(indices), store.shape[1], size, size, dtype=torch.uint8)
    rows = zip(indices.tolist(), boxes.tolist(), flips.tolist(), bicubic.tolist())
    for sample, (index, (top, left, height, width), flip, cubic) in enumerate(rows):
        crop = store[index, None, :, top : top + height, left : left + width]
        mode = "bicubic" if cubic else "bilinear"
        resized = F.interpolate(crop, size=(size, size), mode=mode, antialias=True, align_corners=False)[0]
        crops[sample] = resized.flip(-1) if flip else resized
    return crops


def _batched(store: Tensor, indices: Tensor, boxes: Tensor, bicubic: Tensor, size: int) -> Tensor:
    """The same pixels as `_each_sample` from a few batched matrix products (the accelerator's way)."""
    images = store[indices]
    batch, channels, height, width = images.shape
    top, left, box_h, box_w = boxes.unbind(1)
    # The horizontal pass reads each image's columns as rows: (B x W, H x C), channels last.
    columns = images.permute(0, 3, 2, 1).reshape(batch * width, height * channels)
    index, weight = _taps(left, box_w, size, bicubic)
    base = torch.arange(batch, device=store.device)
    across = _resample(columns, base * width, index, weight, width)  # (B, size, H x C), uint8 as the kernel's
    rows = across.view(batch, size, height, channels).transpose(1, 2).reshape(batch * height, size * channels)
    index, weight = _taps(top, box_h, size, bicubic)
    down = _resample(rows, base * height, index, weight, height)
    return down.view(batch, size, size, channels).permute(0, 3, 1, 2).contiguous()
