"""The DALI pipeline in CPU mode: same labels and images per epoch across ranks, the torch loader's skips, the
eval transform within a small pixel error of ours, crop and flip statistics of the paper's train transform."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data.dali import DaliLoader, DaliSettings, build_pipeline, require_dali
from deit.data.folder import FolderDataset
from deit.data.transforms import build_transform
from deit.errors import DeitError

pytest.importorskip("nvidia.dali")  # in the `test` extra on Linux x86-64 (the only platform DALI ships for)

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 5 smooth JPEGs (smooth, so resampling differences stay small), plus one broken file."""
    root = tmp_path_factory.mktemp("dali")
    rng = np.random.default_rng(0)
    for class_index, name in enumerate(CLASSES):
        (root / name).mkdir()
        for index in range(5):
            small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((80 + 8 * index, 60 + 4 * class_index), Image.BILINEAR)
            image.save(root / name / f"{index}.jpg", quality=95)
    (root / "ant" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def _labels_by_rank(source: FolderDataset, *, train: bool) -> list[list[int]]:
    per_rank = []
    for rank in range(2):
        loader = DaliLoader(source, DaliSettings(input_size=32, rand_augment=False), train=train, batch_size=4,
                            shard_id=rank, num_shards=2, seed=7)
        epochs = [[int(label) for _, labels in loader for label in labels] for _ in range(2)]
        assert len(epochs[0]) == len(epochs[1]) == loader.shard_size  # the same count every epoch
        assert sorted(epochs[0]) == sorted(epochs[1])  # and the same images
        per_rank.append(epochs[0])
    return per_rank


@pytest.mark.parametrize("train", [False, True])
def test_two_ranks_see_every_image_once_per_epoch_with_its_label(folder: Path, train: bool) -> None:
    source = FolderDataset(folder)
    ranks = _labels_by_rank(source, train=train)
    assert sorted(ranks[0] + ranks[1]) == sorted(source.targets)  # 15 images: 7 + 8, none twice
    assert {len(labels) for labels in ranks} == {7, 8}


def test_bad_files_are_skipped_and_named_as_by_the_torch_loader(folder: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    source = FolderDataset(folder)  # the DALI loader reads exactly the torch loader's checked list
    assert [Path(path).name for path, _ in source.skipped] == ["broken.jpg"]
    assert "skipping unusable image" in caplog.text and "broken.jpg" in caplog.text
    loader = DaliLoader(source, DaliSettings(input_size=32), train=False, batch_size=16)
    assert sum(len(labels) for _, labels in loader) == 15


def test_eval_transform_matches_ours_within_a_small_pixel_error(folder: Path) -> None:
    source = FolderDataset(folder)
    ours = build_transform(False, input_size=32, eval_crop_ratio=0.875)
    loader = DaliLoader(source, DaliSettings(input_size=32), train=False, batch_size=15)
    images, labels = next(iter(loader))
    expected = torch.stack([ours(Image.open(path).convert("RGB")) for path, _ in source.samples])
    assert labels.tolist() == source.targets
    error = (images - expected).abs()
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    pixel_error = error * std * 255  # back to 0-255 pixel units
    print(f"eval pixel error: mean {float(pixel_error.mean()):.2f}, p99 {float(pixel_error.quantile(0.99)):.2f}")
    assert float(pixel_error.mean()) < 4.0 and float(pixel_error.quantile(0.99)) < 30.0  # of 255 levels (measured 3.1 and 22)


def test_random_resized_crop_and_flip_statistics_match_the_paper_transform(tmp_path: Path) -> None:
    # A horizontal ramp image: the output's left-right gradient sign shows a flip, and its mean slope the crop's
    # width relative to the image (the scale x ratio of RandomResizedCrop).
    width, height = 128, 96
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))
    Image.fromarray(np.stack([ramp] * 3, -1).astype(np.uint8)).save(tmp_path / "ramp.png")

    class Source:
        samples = [(str(tmp_path / "ramp.png"), 0)] * 400
        classes = ["ramp"]

    settings = DaliSettings(input_size=32, rand_augment=False, mean=(0, 0, 0), std=(1, 1, 1))
    images = torch.cat([batch for batch, _ in DaliLoader(Source(), settings, train=True, batch_size=100)])
    # mean 0, std 1 in 0-1 units (the settings are in 0-1 units, as ours): slope = ±(crop width / image width)
    slopes = (images[:, 0, :, -1] - images[:, 0, :, 0]).mean(1)
    flipped = float((slopes < 0).float().mean())
    widths = slopes.abs()
    ours = build_transform(True, input_size=32, auto_augment=None, reprob=0.0, color_jitter=None)
    base = Image.open(tmp_path / "ramp.png").convert("RGB")
    torch.manual_seed(0)
    reference = torch.stack([ours(base) for _ in range(400)])
    std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    reference_slopes = ((reference[:, 0, :, -1] - reference[:, 0, :, 0]) * std[0]).mean(1)
    print(f"flip {flipped:.3f} vs {float((reference_slopes < 0).float().mean()):.3f}; width mean {float(widths.mean()):.3f} vs {float(reference_slopes.abs().mean()):.3f}, std {float(widths.std()):.3f} vs {float(reference_slopes.abs().std()):.3f}")
    assert abs(flipped - float((reference_slopes < 0).float().mean())) < 0.1  # both ~0.5
    # measured 0.534 vs 0.597: DALI's crops are ~10% narrower on average here (not yet explained; see the report)
    assert abs(float(widths.mean()) - float(reference_slopes.abs().mean())) < 0.08
    assert abs(float(widths.std()) - float(reference_slopes.abs().std())) < 0.06


def test_rand_augment_runs_on_the_cpu(folder: Path) -> None:
    loader = DaliLoader(FolderDataset(folder), DaliSettings(input_size=32), train=True, batch_size=8)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and torch.isfinite(images).all()


def test_missing_dali_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(DeitError, match=r"deit\[dali\]"):
        require_dali()


def test_rank_outside_the_world_is_refused(folder: Path) -> None:
    with pytest.raises(DeitError, match="shard 2 of 2"):
        build_pipeline(FolderDataset(folder), DaliSettings(input_size=32), train=False, batch_size=4, shard_id=2,
                       num_shards=2)


def test_deit_train_runs_an_epoch_through_dali_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deit.cli import main

    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for split, count in (("train", 12), ("val", 3)):
        for label in range(2):
            (root / split / f"c{label}").mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                pixels[..., label] = 255
                Image.fromarray(pixels).save(root / split / f"c{label}" / f"{index}.jpg")
    argv = ["train", "--data-loader", "dali", "--data-path", str(root), "--model", "deit_tiny_patch16_224",
            "--model-kwargs", '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}', "--input-size", "32",
            "--batch-size", "8", "--epochs", "1", "--warmup-epochs", "0", "--num_workers", "1", "--device", "cpu",
            "--log-format", "plain", "--output_dir", str(tmp_path / "run")]
    assert main(argv) == 0, capsys.readouterr().err
    row = __import__("json").loads((tmp_path / "run" / "log.txt").read_text().splitlines()[-1])
    # 24 training images, repeated augmentation does not apply to DALI's reader: 3 full batches of 8
    assert row["train_steps"] == 3 and row["test_num_images"] == 6


def test_dali_needs_a_class_folder_data_set(capsys: pytest.CaptureFixture) -> None:
    from deit.cli import main

    assert main(["train", "--data-loader", "dali", "--data-set", "DIGITS", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--data-loader dali reads class folders" in err and len(err.strip().splitlines()) == 1
