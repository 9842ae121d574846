"""Robust image loading: any file Pillow can decode becomes an RGB image, anything else a named `DeitError`.

Colour modes are mapped to RGB deliberately rather than with a bare `convert("RGB")`, which would clip 16-bit
pixels to white and drop transparency onto whatever colour hides under it:

- 16-bit (`I;16*`) and 32-bit integer (`I`) images are rescaled to 8 bits; float (`F`) images in [0, 1] too.
- Images with an alpha channel or palette transparency (`RGBA`, `LA`, `PA`, `P` + transparency) are composited
  onto white.
- Every other mode (`CMYK`, `L`, `1`, `P`, `YCbCr`, `LAB`, `HSV`) goes through Pillow's own conversion.

EXIF orientation is not applied, as with torchvision's loader, so pixels match the official pipeline.
Truncated files fail (unless the caller set `PIL.ImageFile.LOAD_TRUNCATED_IMAGES`), so they are skipped rather
than trained on half grey.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deit.errors import DeitError

#: Images up to this many pixels load (a 14000 x 14000 scan is fine); larger ones are refused as
#: decompression bombs. Pillow refuses at twice `Image.MAX_IMAGE_PIXELS`, so raise its limit to half ours.
MAX_IMAGE_PIXELS = 200_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS // 2:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_WHITE = (255, 255, 255)


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode the image at `path` fully and return it as RGB; raise `DeitError` naming the file if unusable."""
    path = Path(path)
    special = _not_a_regular_file(path)
    if special:
        raise DeitError(f"{path}: {special}")
    try:
        with Image.open(path) as image:
            too_large = _size_problem(image)
            if too_large:
                raise DeitError(f"{path}: {too_large}")
            image.load()
            return to_rgb(image)
    except DeitError as error:
        if str(error).startswith(str(path)):
            raise
        raise DeitError(f"{path}: {error}") from error
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError ... for damaged files
        raise DeitError(f"{path}: {describe_image_error(path, error)}") from error


def _not_a_regular_file(path: Path) -> str | None:
    # Opening a FIFO or a device blocks or reads forever: only regular files are images.
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # reported by the open below, with its reason
    if stat.S_ISDIR(mode):
        readable = os.access(path, os.R_OK | os.X_OK)
        return "is a directory, not an image" if readable else "folder cannot be read (permission denied)"
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, socket or device); skipped"


def probe_image(path: str | os.PathLike) -> str | None:
    """Cheap up-front check of one file: None if it looks usable, else the reason it is not (header + verify)."""
    path = Path(path)
    special = _not_a_regular_file(path)  # before anything opens it: a FIFO blocks, a device never ends
    if special:
        return special
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            problem = _size_problem(image)
            if problem:
                return problem
            # verify() walks the chunk structure (PNG CRCs, ...) without decoding pixels; JPEG payloads are
            # only checked when decoded, which `FolderDataset` handles lazily.
            image.verify()
        return None
    except Exception as error:
        return describe_image_error(path, error)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode in _ALPHA_MODES or (mode in ("P", "L", "1") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise DeitError(f"unsupported colour mode {mode!r} ({error})") from error


def describe_image_error(path: Path, error: BaseException) -> str:
    """One short phrase saying why an image could not be used."""
    if isinstance(error, Image.DecompressionBombError):
        return f"too large (over {MAX_IMAGE_PIXELS:,} pixels, refused as a decompression bomb)"
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not an image"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.replace(str(path), "").strip(" :'\"") or type(error).__name__
    if "truncated" in text.lower():
        return f"truncated or damaged ({text})"
    return f"damaged image ({type(error).__name__}: {text})"


def _size_problem(image: Image.Image) -> str | None:
    pixels = image.width * image.height
    if image.width < 1 or image.height < 1:
        return f"degenerate size {image.width}x{image.height}"
    if pixels > MAX_IMAGE_PIXELS:
        return f"too large ({image.width}x{image.height} = {pixels:,} pixels, limit {MAX_IMAGE_PIXELS:,})"
    return None


def _to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    values = array.astype(np.float64)
    if mode in _SIXTEEN_BIT_MODES:
        values = values / 257.0
    elif mode == "F":
        peak = float(np.nanmax(values)) if values.size else 0.0
        values = values * 255.0 if peak <= 1.0 else values
    else:  # 32-bit "I": 8-bit data kept; 16-bit data (older Pillow opens 16-bit PNGs so) scaled like I;16
        peak = float(values.max()) if values.size else 0.0
        if peak > 65535:
            values = values * (255.0 / peak)
        elif peak > 255:
            values = values / 257.0
    return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
