"""Image folders on the in-memory path: decoded once through the data set's own safe loading, resized as the
per-image transform resizes (aspect ratio kept), crops equal to its crops, bad files skipped, bounded in size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from deit.data import build_dataset, memory_folder
from deit.data.digits import DIGITS_MEAN, DIGITS_STD
from deit.data.memory import BatchAugment, ViewSet, decode, memory_refusal
from deit.data.subset import stratified_subset
from deit.data.transforms import build_transform
from image_folders import write_class_folders

SIZE = 16


def _folder(tmp_path: Path, shape: tuple[int, int] = (40, 48)):
    root = write_class_folders(tmp_path / "images", classes=3, per_class=4, shape=shape)
    return build_dataset("IMAGEFOLDER", str(root), train=True, transform=None)


def _per_image_view(picture: Image.Image, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """The per-image transform's deterministic parts at a given crop offset and flip."""
    resized = TF.pad(TF.resize(picture, SIZE, TF.InterpolationMode.BICUBIC), 4)
    crop = TF.crop(resized, dy, dx, SIZE, SIZE)
    crop = TF.hflip(crop) if flip else crop
    return TF.normalize(TF.to_tensor(crop), DIGITS_MEAN, DIGITS_STD)


def test_batched_crops_equal_the_per_image_transforms_and_reach_the_long_side(tmp_path: Path) -> None:
    data = _folder(tmp_path)  # 48 wide, 40 high: resized to 19 x 16, so 12 column offsets, 9 row offsets
    images, labels = decode(data, SIZE)
    assert labels.tolist() == data.targets
    assert all(image.shape == (3, SIZE, 19) and image.dtype == torch.uint8 for image in images)
    augment = BatchAugment(images, ViewSet(SIZE, hflip=0.5), DIGITS_MEAN, DIGITS_STD)
    assert (augment.row_offsets, augment.col_offsets, augment.square) == (9, 12, False)
    picture = Image.open(data.samples[5][0]).convert("RGB")
    for dy, dx, flip in ((0, 0, False), (8, 11, True), (3, 7, False), (8, 0, True)):
        view = torch.tensor([(int(flip) * 9 + dy) * 12 + dx])
        batched = augment(torch.tensor([5]), view)[0]
        assert torch.equal(batched, _per_image_view(picture, dy, dx, flip)), (dy, dx, flip)
    # Every per-image draw is one of the batched views, and the draws cover the long side's extra offsets.
    every = augment(torch.full((9 * 12 * 2,), 5), torch.arange(9 * 12 * 2))
    transform = build_transform(
        True, input_size=SIZE, mean=DIGITS_MEAN, std=DIGITS_STD, color_jitter=None, auto_augment="none", reprob=0.0
    )
    torch.manual_seed(0)
    for _ in range(50):
        error = (every - transform(picture)).abs().flatten(1).amax(1)
        assert float(error.min()) == 0.0
    drawn = augment.draw(6000, torch.Generator().manual_seed(0), torch.full((6000,), 5))
    dy, dx, flip = augment.split_view(drawn)
    columns, rows = np.bincount(dx.numpy(), minlength=12), np.bincount(dy.numpy(), minlength=9)
    assert len(columns) == 12 and len(rows) == 9  # never past what the image allows
    assert np.abs(columns / 6000 - 1 / 12).max() < 0.02 and np.abs(rows / 6000 - 1 / 9).max() < 0.02
    assert abs(float(flip.float().mean()) - 0.5) < 0.03


def test_square_folders_keep_the_finite_view_set_and_subsets_are_followed(tmp_path: Path) -> None:
    data = _folder(tmp_path, shape=(24, 24))
    subset = stratified_subset(data, 0.5, 0)
    images, labels = decode(subset, SIZE)
    assert labels.tolist() == [data.targets[i] for i in subset.indices]
    assert BatchAugment(images, ViewSet(SIZE), DIGITS_MEAN, DIGITS_STD).square


def test_bad_files_are_skipped_up_front_and_at_decode_as_the_per_image_path(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "images", classes=2, per_class=3, shape=(32, 32), formats=("jpg",))
    (root / "train/class_0/broken.png").write_bytes(b"not an image")  # skipped when the folder is built
    late = root / "train/class_1/1.jpg"
    late.write_bytes(late.read_bytes()[: int(late.stat().st_size * 0.6)])  # passes the probe, fails at decode
    data = build_dataset("IMAGEFOLDER", str(root), train=True, transform=None)
    assert len(data) == 6 and [Path(p).name for p, _ in data.skipped] == ["broken.png"]
    images, labels = decode(data, SIZE)
    assert len(images) == 6
    late_index = [Path(p) for p, _ in data.samples].index(late)
    # The late failure is replaced by the next image, with that image's label, as `data[late_index]` gives.
    assert torch.equal(images[late_index], images[late_index + 1])
    assert labels[late_index] == labels[late_index + 1] == data[late_index][1]
    assert str(late) in [p for p, _ in data.skipped]


def test_folders_are_bounded_in_size(tmp_path: Path) -> None:
    data = _folder(tmp_path)
    common = dict(data_set=data, input_size=SIZE, aa="none", color_jitter=None, three_augment=False, iterable=False)
    assert memory_refusal(**common) is None
    assert "--aa rand" in memory_refusal(**{**common, "aa": "rand-m9-mstd0.5-inc1"})
    least = memory_folder.least_bytes(12, SIZE, 4)  # 12 square padded images
    too_big = memory_refusal(**common, limit=least - 1)
    assert too_big.startswith("12 images decoded at --input-size 16 would take about")
    assert "over the in-memory cap of" in too_big and "(--memory-cap-gib raises it)" in too_big
    # Wider than square: the first estimate fits, the decoded size does not, and decoding says so.
    assert memory_refusal(**common, limit=least) is None
    with pytest.raises(memory_folder.StoreOverCap, match=r"images decoded at --input-size 16 take over"):
        decode(data, SIZE, limit=least)
    # Above 32 px the estimate is the resized-crop store's: 12 images at most 73 px on the shorter side.
    store = memory_refusal(**{**common, "input_size": 64}, limit=12 * 3 * 73 * 73 - 1)
    assert store.startswith("12 images decoded at --input-size 64 would take about")


def test_images_of_several_shapes_crop_within_their_own_bounds() -> None:
    torch.manual_seed(0)
    images = [torch.randint(0, 256, shape, dtype=torch.uint8) for shape in ((3, 16, 19), (3, 21, 16), (3, 16, 16))]
    augment = BatchAugment(images, ViewSet(SIZE, hflip=0.5), DIGITS_MEAN, DIGITS_STD)
    assert (augment.row_offsets, augment.col_offsets, augment.square) == (14, 12, False)
    mean, std = torch.tensor(DIGITS_MEAN).view(3, 1, 1), torch.tensor(DIGITS_STD).view(3, 1, 1)
    for index, (dy, dx, flip) in ((0, (8, 11, True)), (1, (13, 8, False)), (2, (8, 8, True)), (0, (0, 0, False))):
        padded = torch.nn.functional.pad(images[index], (4, 4, 4, 4))
        crop = padded[:, dy : dy + SIZE, dx : dx + SIZE]
        crop = crop.flip(-1) if flip else crop
        view = torch.tensor([(int(flip) * 14 + dy) * 12 + dx])
        assert torch.equal(augment(torch.tensor([index]), view)[0], (crop.float() / 255.0 - mean) / std)
    indices = torch.arange(3).repeat(3000)
    dy, dx, _ = augment.split_view(augment.draw(len(indices), torch.Generator().manual_seed(0), indices))
    for index, (rows, columns) in enumerate(((9, 12), (14, 9), (9, 9))):
        mine = indices == index
        assert int(dy[mine].max()) == rows - 1 and int(dx[mine].max()) == columns - 1
        assert int(dy[mine].min()) == 0 and int(dx[mine].min()) == 0
    with pytest.raises(ValueError, match="needs the indices"):
        augment.draw(4, torch.Generator())
