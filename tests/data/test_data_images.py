"""read_image / probe_image: every colour mode becomes correct RGB; unusable files are named, never crash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deit.data import images as images_module
from deit.data import read_image
from deit.data.images import probe_image
from deit.errors import DeitError


def _noise(size=(16, 12), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_sixteen_bit_png_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(read_image(path))
    assert rgb.shape == (1, 4, 3)
    # a bare convert("RGB") clips 1000 to 255; scaling gives 1000/257 ~ 4
    assert rgb[0, :, 0].tolist() == [0, 128, 255, 4]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_palette_transparency_becomes_white(tmp_path):
    palette_image = Image.new("P", (4, 2), 0)
    palette_image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette_image.paste(1, (2, 0, 4, 2))
    palette_image.info["transparency"] = 0
    path = tmp_path / "logo.png"
    palette_image.save(path, transparency=0)
    rgb = np.asarray(read_image(path))
    assert rgb[0, 0].tolist() == [255, 255, 255]  # the transparent index, black underneath
    assert rgb[0, 3].tolist() == [200, 10, 10]


def test_alpha_is_composited_onto_white(tmp_path):
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[0, 0, 3] = 255  # opaque red-ish
    pixels[0, 1, 3] = 0  # fully transparent
    pixels[1, :, 3] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels).save(path)
    rgb = np.asarray(read_image(path)).astype(int)
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert abs(rgb[1, 0, 1] - 127) <= 2  # half-way between 0 and white

    la = Image.new("LA", (2, 1), (50, 0))
    la.save(tmp_path / "la.png")
    assert np.asarray(read_image(tmp_path / "la.png"))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("P", "GIF"),
        ("L", "JPEG"),
        ("RGB", "BMP"),
        ("RGB", "WEBP"),
    ],
)
def test_any_common_mode_loads_as_rgb(tmp_path, mode, fmt):
    base = Image.fromarray(_noise())
    image = base.convert(mode)
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, format=fmt)
    loaded = read_image(path)
    assert loaded.mode == "RGB" and loaded.size == base.size
    assert probe_image(path) is None


def test_cmyk_colour_is_converted(tmp_path):
    path = tmp_path / "cmyk.tiff"
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(path)  # no cyan, full magenta+yellow = red
    assert np.asarray(read_image(path))[1, 1].tolist() == [255, 0, 0]


def _bad_files(tmp_path):
    Image.fromarray(_noise((64, 64))).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return ["truncated.png", "empty.jpg", "notes.jpg", "garbage.png"]


def test_unusable_files_are_reported_by_name(tmp_path):
    for name in _bad_files(tmp_path):
        reason = probe_image(tmp_path / name)
        assert reason, name
        with pytest.raises(DeitError) as caught:
            read_image(tmp_path / name)
        message = str(caught.value)
        assert str(tmp_path / name) in message and "\n" not in message
    assert probe_image(tmp_path / "empty.jpg").startswith("empty file")
    assert "not an image" in probe_image(tmp_path / "notes.jpg")


def test_missing_file_is_a_deit_error(tmp_path):
    with pytest.raises(DeitError, match="no such file"):
        read_image(tmp_path / "absent.png")


def test_decompression_bombs_are_refused_large_images_allowed(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 60), (1, 2, 3)).save(path)
    # Our limit: 6,000 pixels pass at 6,000, fail at 5,999.
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 6000)
    assert probe_image(path) is None and read_image(path).size == (100, 60)
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 5999)
    assert "too large" in probe_image(path)
    with pytest.raises(DeitError, match="too large"):
        read_image(path)
    # Pillow's own bomb check (it raises above twice its limit) is caught as a skip too.
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert "decompression bomb" in probe_image(path)


def test_default_limit_admits_200_megapixels():
    assert images_module.MAX_IMAGE_PIXELS >= 200_000_000
    # Pillow must not refuse below our limit: its hard stop is at twice its own setting.
    assert Image.MAX_IMAGE_PIXELS is None or 2 * Image.MAX_IMAGE_PIXELS >= images_module.MAX_IMAGE_PIXELS
