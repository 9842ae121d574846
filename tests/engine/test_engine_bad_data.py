"""A training run on a folder that mixes every kind of bad and odd image: the epoch completes, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST, TINY_STUDENT, log_rows, run_cli
from deit.io import load_torch_file


def _good(path: Path, mode: str, seed: int, size: tuple[int, int] = (40, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = 0
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path)


def _messy_folder(root: Path) -> list[str]:
    """train/{a,b}: good images in every convertible mode plus every kind of damage; returns the bad paths."""
    for split, count in (("train", 4), ("val", 2)):
        for label in ("a", "b"):
            for index in range(count):
                _good(root / split / label / f"{index}.png", "RGB", seed=index + 10 * (label == "b"))
    train = root / "train"
    _good(train / "a/cmyk.jpg", "CMYK", 1)
    _good(train / "a/rgba.png", "RGBA", 2)
    _good(train / "a/palette.png", "P", 3)
    _good(train / "b/gray.png", "L", 4)
    _good(train / "b/large.jpg", "RGB", 5, size=(4000, 3000))
    Image.fromarray(np.full((32, 32), 50000, dtype=np.uint16)).save(train / "b/sixteen_bit.png")
    bad = [train / "a/zero_bytes.jpg", train / "a/notes.txt", train / "b/corrupt.jpg", train / "b/truncated.png"]
    bad[0].write_bytes(b"")
    bad[1].write_text("not an image\n")
    bad[2].write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50)
    _good(bad[3], "RGB", 6, size=(64, 64))
    bad[3].write_bytes(bad[3].read_bytes()[:60])
    return sorted(str(path) for path in bad)


@pytest.mark.slow
def test_an_epoch_on_a_messy_folder_completes_and_lists_the_skipped_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = _messy_folder(tmp_path / "data")
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--data-set",
            "IMNET",
            "--data-path",
            tmp_path / "data",
            "--output_dir",
            out_dir,
            "--no-model-ema",
            "--batch-size",
            "4",
        ],
        capsys,
    )
    assert code == 0, out + err
    assert log_rows(out_dir)[0]["epoch"] == 0
    listed = sorted(line.split("\t")[0] for line in (out_dir / "skipped_files.txt").read_text().splitlines())
    assert listed == bad
    assert load_torch_file(out_dir / "checkpoint.pth")["meta"]["class_names"] == ["a", "b"]


def test_strict_data_refuses_the_messy_folder_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _messy_folder(tmp_path / "data")
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--data-set",
            "IMNET",
            "--data-path",
            tmp_path / "data",
            "--output_dir",
            out_dir,
            "--strict-data",
        ],
        capsys,
    )
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("deit: error:")]
    assert len(error_lines) == 1 and "Traceback" not in err
    assert "zero_bytes.jpg" in error_lines[0] or "corrupt.jpg" in error_lines[0]
    assert not (out_dir / "checkpoint.pth").exists()
