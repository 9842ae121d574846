"""The DALI pipeline in CPU mode: same labels and images per epoch across ranks, the torch loader's skips, the
eval transform within a small pixel error of ours, crop and flip statistics of the paper's train transform."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data.dali import DaliLoader, DaliSettings, require_dali
from deit.data.folder import FolderDataset
from deit.data.transforms import build_transform
from deit.errors import DeitError
from image_folders import write_class_folders

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
        loader = DaliLoader(
            source,
            DaliSettings(input_size=32, auto_augment=None, color_jitter=None),
            train=train,
            batch_size=4,
            shard_id=rank,
            num_shards=2,
            seed=7,
        )
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


def test_bad_files_are_skipped_and_named_as_by_the_torch_loader(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = FolderDataset(folder)  # the DALI loader reads exactly the torch loader's checked list
    assert [Path(path).name for path, _ in source.skipped] == ["broken.jpg"]
    assert "skipping unusable image" in caplog.text and "broken.jpg" in caplog.text
    loader = DaliLoader(source, DaliSettings(input_size=32), train=False, batch_size=16)
    assert sum(len(labels) for _, labels in loader) == 15


def _damaged_payloads(folder: Path) -> list[str]:
    """Two JPEGs whose headers pass the folder scan but whose payloads do not decode (cut, overwritten)."""
    data = (folder / "0.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    overwritten = bytearray(data)
    overwritten[len(data) // 2 : len(data) // 2 + 200] = b"\xff" * 200
    (folder / "overwritten.jpg").write_bytes(bytes(overwritten))
    return ["cut.jpg", "overwritten.jpg"]


@pytest.mark.parametrize("train", [False, True])
def test_files_that_fail_only_at_decode_are_replaced_and_named_as_by_the_torch_loader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, train: bool
) -> None:
    rng = np.random.default_rng(2)
    (tmp_path / "a").mkdir()
    for index in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "a" / f"{index}.jpg")
    damaged = _damaged_payloads(tmp_path / "a")
    source = FolderDataset(tmp_path)
    assert not source.skipped and len(source.samples) == 12  # the header scan lets them through
    torch_source = FolderDataset(tmp_path)
    for index in range(len(torch_source)):
        torch_source[index]  # the torch loader's late fallback: skipped, named, the next image instead
    loader = DaliLoader(
        source, DaliSettings(input_size=32, auto_augment=None, color_jitter=None), train=train, batch_size=4
    )
    for _ in range(2):  # a second pass reads the replacements without failing again
        assert sum(len(labels) for _, labels in loader) == 12
    assert sorted(Path(path).name for path, _ in source.skipped) == damaged
    assert sorted(source.skipped) == sorted(torch_source.skipped)  # same files, same reasons
    assert caplog.text.count("(failed at decode; using the next image instead)") == 4  # 2 each, once


def test_a_damaged_file_without_a_fallback_is_one_line(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 48, 3), dtype=np.uint8)).save(tmp_path / "0.jpg")
    _damaged_payloads(tmp_path)
    loader = DaliLoader(_Repeated(tmp_path / "cut.jpg", 4), DaliSettings(input_size=32), train=False, batch_size=4)
    with pytest.raises(DeitError, match="the DALI pipeline failed") as error:
        list(loader)
    assert "\n" not in str(error.value)


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
    # of 255 levels (measured 3.1 and 22)
    assert float(pixel_error.mean()) < 4.0 and float(pixel_error.quantile(0.99)) < 30.0


def _window_statistics(images: torch.Tensor, *, std: tuple[float, float]) -> dict[str, torch.Tensor]:
    """Crop window (width, height as fractions of the image) and flip per output of a 2-ramp image.

    The red channel ramps left to right, the green top to bottom: an output's edge-to-edge difference in each
    is ± the crop's extent relative to the image (negative red: flipped)."""
    red = (images[:, 0, :, -1] - images[:, 0, :, 0]).mean(1) * std[0]
    green = (images[:, 1, -1, :] - images[:, 1, 0, :]).mean(1) * std[1]
    return {"flip": (red < 0).float(), "width": red.abs(), "height": green.abs(), "area": red.abs() * green.abs()}


def _ramps(path: Path, width: int = 128, height: int = 96) -> Path:
    red = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))
    green = np.tile(np.linspace(0, 255, height, dtype=np.float32)[:, None], (1, width))
    Image.fromarray(np.stack([red, green, np.zeros_like(red)], -1).astype(np.uint8)).save(path)
    return path


def _seed_everything(seed: int = 0) -> None:
    """timm's transforms draw from `random`, `numpy.random` and torch: seed all three for a fixed reference."""
    __import__("random").seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Repeated:
    """One image, `count` times (labels 0..count-1 so the order can be read back)."""

    def __init__(self, path: Path, count: int) -> None:
        self.samples = [(str(path), index) for index in range(count)]
        self.classes = [str(index) for index in range(count)]


@pytest.mark.parametrize("input_size", [64, 32])  # RandomResizedCrop; the CIFAR crop of inputs <= 32 pixels
def test_crop_and_flip_statistics_match_our_torch_transform(tmp_path: Path, input_size: int) -> None:
    path = _ramps(tmp_path / "ramps.png")
    count = 400
    settings = DaliSettings(
        input_size=input_size, auto_augment=None, color_jitter=None, reprob=0.0, mean=(0, 0, 0), std=(1, 1, 1)
    )
    dali = torch.cat(
        [batch for batch, _ in DaliLoader(_Repeated(path, count), settings, train=True, batch_size=100, seed=3)]
    )
    ours = build_transform(True, input_size=input_size, auto_augment=None, reprob=0.0, color_jitter=None)
    base = Image.open(path).convert("RGB")
    _seed_everything()
    reference = torch.stack([ours(base) for _ in range(count)])
    measured = _window_statistics(dali, std=(1.0, 1.0))
    expected = _window_statistics(reference, std=(0.229, 0.224))
    for key in measured:
        print(
            f"{input_size}px {key}: DALI {float(measured[key].mean()):.3f} ± {float(measured[key].std()):.3f}, "
            f"ours {float(expected[key].mean()):.3f} ± {float(expected[key].std()):.3f}"
        )
    # 400 draws each: the standard error of a mean is ~0.009 here, the tolerance ~3.5 of them for the difference
    for key in ("flip", "width", "height", "area"):
        assert abs(float(measured[key].mean()) - float(expected[key].mean())) < 0.045, key
        assert abs(float(measured[key].std()) - float(expected[key].std())) < 0.035, key


def _flat_images(
    tmp_path: Path, settings: DaliSettings, count: int = 400, colour: tuple = (200, 120, 40)
) -> torch.Tensor:
    path = tmp_path / "flat.png"
    Image.new("RGB", (80, 72), colour).save(path)
    loader = DaliLoader(_Repeated(path, count), settings, train=True, batch_size=100, seed=5)
    return torch.cat([batch for batch, _ in loader])


def _erased_boxes(images: torch.Tensor, background: torch.Tensor) -> list[tuple[int, int, int] | None]:
    """Per image: (height, width, pixels changed) of the changed region's bounding box, or None."""
    boxes = []
    for changed in ((images - background).abs() > 1e-3).any(1):
        rows, columns = changed.any(1).nonzero(), changed.any(0).nonzero()
        if len(rows) == 0:
            boxes.append(None)
            continue
        boxes.append((int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1), int(changed.sum())))
    return boxes


def test_random_erasing_statistics_match_timm(tmp_path: Path) -> None:
    from timm.data.random_erasing import RandomErasing

    size, count = 48, 400
    settings = DaliSettings(
        input_size=size, auto_augment=None, color_jitter=None, reprob=0.4, mean=(0, 0, 0), std=(1, 1, 1)
    )
    images = _flat_images(tmp_path, settings, count)
    background = torch.tensor((200, 120, 40), dtype=torch.float32).view(1, 3, 1, 1) / 255
    boxes = _erased_boxes(images, background)
    _seed_everything()
    timm_erasing = RandomErasing(probability=0.4, mode="pixel", device="cpu")
    reference = _erased_boxes(
        torch.stack([timm_erasing(background[0].expand(3, size, size).clone()) for _ in range(count)]), background
    )
    erased = [box for box in boxes if box]
    expected = [box for box in reference if box]
    areas = torch.tensor([height * width for height, width, _ in erased], dtype=torch.float32) / size**2
    expected_areas = torch.tensor([height * width for height, width, _ in expected], dtype=torch.float32) / size**2
    print(
        f"erased {len(erased) / count:.3f} (timm {len(expected) / count:.3f}); box area {float(areas.mean()):.3f}"
        f" ± {float(areas.std()):.3f} (timm {float(expected_areas.mean()):.3f} ± "
        f"{float(expected_areas.std()):.3f})"
    )
    assert abs(len(erased) / count - 0.4) < 0.07 and abs(len(expected) / count - 0.4) < 0.07
    assert all(changed == height * width for height, width, changed in erased)  # a filled rectangle
    assert 0.015 < float(areas.min()) and float(areas.max()) < 1 / 3 + 0.03  # timm's 2%–1/3 (pixel rounding)
    assert abs(float(areas.mean()) - float(expected_areas.mean())) < 0.03
    assert abs(float(areas.std()) - float(expected_areas.std())) < 0.03
    ratios = torch.tensor([height / width for height, width, _ in erased])
    assert float(ratios.min()) > 0.25 and float(ratios.max()) < 4.0  # log-uniform in 0.3–3.3, rounded
    noise = torch.cat([image[(image - background[0]).abs() > 1e-3] for image in images])
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1.0) < 0.1  # per-pixel N(0, 1)


@pytest.mark.parametrize("mode", ["rand", "const"])
def test_random_erasing_modes_fill_as_timm(tmp_path: Path, mode: str) -> None:
    settings = DaliSettings(
        input_size=40,
        auto_augment=None,
        color_jitter=None,
        reprob=1.0,
        remode=mode,
        recount=2,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    images = _flat_images(tmp_path, settings, count=40)
    background = torch.tensor((200, 120, 40), dtype=torch.float32).view(3, 1, 1) / 255
    erased = 0
    for image in images:
        changed = ((image - background).abs() > 1e-3).any(0)
        erased += bool(changed.any())
        values = image[:, changed]
        if mode == "const":
            assert (values == 0).all()
        elif values.numel():
            assert len({tuple(column.tolist()) for column in values.T}) <= 2  # one colour per box, up to 2 boxes
    assert erased >= 38  # reprob 1: every image (a box may rarely coincide with the background: never here)


@pytest.mark.slow
def test_colour_jitter_applies_without_rand_augment_as_timm(tmp_path: Path) -> None:
    count = 400
    settings = DaliSettings(
        input_size=40, auto_augment=None, color_jitter=0.3, reprob=0.0, hflip=0.0, mean=(0, 0, 0), std=(1, 1, 1)
    )
    colours = _flat_images(tmp_path, settings, count, colour=(200, 120, 40)).mean((2, 3))
    ours = build_transform(
        True, input_size=40, auto_augment=None, reprob=0.0, color_jitter=0.3, hflip=0.0, mean=(0, 0, 0), std=(1, 1, 1)
    )
    _seed_everything()
    base = Image.new("RGB", (80, 72), (200, 120, 40))
    expected = torch.stack([ours(base).mean((1, 2)) for _ in range(count)])
    print(
        f"jitter colour mean {colours.mean(0).tolist()} vs {expected.mean(0).tolist()}, std "
        f"{colours.std(0).tolist()} vs {expected.std(0).tolist()}"
    )
    assert (colours.std(0) > 0.03).all()  # jittered (a flat image stays flat through the crop)
    assert torch.allclose(colours.mean(0), expected.mean(0), atol=0.03)
    assert torch.allclose(colours.std(0), expected.std(0), atol=0.03)


def test_resumed_epoch_replays_the_uninterrupted_order_and_augmentations(folder: Path) -> None:
    source = FolderDataset(folder)
    unique = _Repeated(Path(source.samples[0][0]), 0)
    unique.samples = [(path, index) for index, (path, _) in enumerate(source.samples)]  # label = identity
    settings = DaliSettings(input_size=32, auto_augment=None, color_jitter=None)  # erasing on: replayed too

    def epoch_of(loader: DaliLoader, epoch: int) -> tuple[list[int], torch.Tensor]:
        loader.set_epoch(epoch)
        batches = list(loader)
        return [int(label) for _, labels in batches for label in labels], torch.cat([images for images, _ in batches])

    for rank in range(2):
        uninterrupted = DaliLoader(unique, settings, train=True, batch_size=4, shard_id=rank, num_shards=2, seed=7)
        orders = [epoch_of(uninterrupted, epoch) for epoch in range(3)]
        resumed = DaliLoader(unique, settings, train=True, batch_size=4, shard_id=rank, num_shards=2, seed=7)
        order, images = epoch_of(resumed, 2)
        assert order == orders[2][0] and torch.equal(images, orders[2][1])
        assert orders[1][0] != orders[2][0]  # reshuffled every epoch
        # the torch loader's DistributedSampler draws the same permutation (it pads with repeats; we do not)
        sampler = __import__("torch.utils.data", fromlist=["DistributedSampler"]).DistributedSampler(
            unique.samples, num_replicas=2, rank=rank, shuffle=True, seed=7
        )
        sampler.set_epoch(2)
        assert list(sampler)[: len(order)] == order


@pytest.mark.slow
def test_rand_augment_strength_matches_timm(tmp_path: Path) -> None:
    # A colourful smooth image: the spread of the per-image colour means and contrasts measures how hard the
    # policy pushes (DALI's own m 9 of 31 levels gave a spread of 0.34 against timm's 0.57-0.60: too weak).
    path = tmp_path / "colours.png"
    small = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((128, 96), Image.BILINEAR).save(path)
    count = 400
    loader = DaliLoader(
        _Repeated(path, count), DaliSettings(input_size=64, reprob=0.0), train=True, batch_size=100, seed=2
    )
    dali = torch.cat([batch for batch, _ in loader])
    ours = build_transform(True, input_size=64, reprob=0.0)
    base = Image.open(path).convert("RGB")
    _seed_everything()
    reference = torch.stack([ours(base) for _ in range(count)])
    for name, statistic in (("colour mean", lambda x: x.mean((2, 3))), ("contrast", lambda x: x.std((2, 3)))):
        measured, expected = statistic(dali), statistic(reference)
        print(
            f"RandAugment {name}: DALI {float(measured.mean()):.3f} ± {float(measured.std()):.3f}, timm "
            f"{float(expected.mean()):.3f} ± {float(expected.std()):.3f}"
        )
        # the colour mean runs ~0.04 above timm's (over seeds; std error 0.03): fill colour, op details
        assert abs(float(measured.mean()) - float(expected.mean())) < 0.1, name
        assert abs(float(measured.std()) - float(expected.std())) < 0.1, name


def test_rand_augment_policies_parse_as_timm_or_are_refused() -> None:
    from deit.data.dali_augment import parse_rand_augment

    assert parse_rand_augment("rand-m9-mstd0.5-inc1") == (2, 9, 0.5)
    assert parse_rand_augment("rand-m7-n3-p0.7-inc1") == (3, 7, 0.7)
    assert parse_rand_augment("rand-n2-inc1") == (2, 10, 0.5)  # timm's default magnitude, as the torch path
    for policy in ("rand-m9-mstd0.5", "augmix-m5", "original", "rand-m12-inc1", "rand-w0-inc1"):
        with pytest.raises(ValueError):
            parse_rand_augment(policy)


def test_missing_dali_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(DeitError, match=r"deit\[dali\]"):
        require_dali()


def test_rank_outside_the_world_is_refused(folder: Path) -> None:
    with pytest.raises(DeitError, match="shard 2 of 2"):
        DaliLoader(
            FolderDataset(folder), DaliSettings(input_size=32), train=False, batch_size=4, shard_id=2, num_shards=2
        )


@pytest.mark.slow
def test_deit_train_runs_an_epoch_through_dali_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deit.cli import main

    root = write_class_folders(
        tmp_path / "data",
        classes=2,
        per_class=12,
        val_per_class=3,
        formats=("jpg",),
        mark_class=True,
        seed=1,
        class_prefix="c",
    )
    argv = [
        "train",
        "--data-loader",
        "dali",
        "--data-path",
        str(root),
        "--model",
        "deit_tiny_patch16_224",
        "--model-kwargs",
        '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
        "--input-size",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--num_workers",
        "1",
        "--device",
        "cpu",
        "--log-format",
        "plain",
        "--output_dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    row = __import__("json").loads((tmp_path / "run" / "log.txt").read_text().splitlines()[-1])
    # 24 training images, repeated augmentation does not apply to DALI's reader: 3 full batches of 8
    assert row["train_steps"] == 3 and row["test_num_images"] == 6


@pytest.mark.parametrize("data_set", ["DIGITS", "SYNTHETIC"])
def test_dali_needs_a_class_folder_data_set(capsys: pytest.CaptureFixture, data_set: str) -> None:
    from deit.cli import main

    assert main(["train", "--data-loader", "dali", "--data-set", data_set, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--data-loader dali reads class folders" in err and f"not --data-set {data_set}" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--three-augment"], "--three-augment"),
        (["--src"], "--src"),
        (["--train-interpolation", "bilinear"], "--train-interpolation"),
        (["--aa", "rand-m9-mstd0.5"], "inc1"),
    ],
)
def test_transform_flags_dali_does_not_implement_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], named: str
) -> None:
    from deit.cli import main

    for split in ("train", "val"):
        (tmp_path / split / "c0").mkdir(parents=True)
    assert main(["train", "--data-loader", "dali", "--data-path", str(tmp_path), "--epochs", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "--data-loader dali" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_deit_train_hands_the_torch_transform_flags_to_dali(folder: Path) -> None:
    from deit.engine.builders import build_loaders
    from deit.engine.config import TrainConfig
    from deit.engine.distributed import DistributedEnv

    config = TrainConfig(
        data_loader="dali",
        input_size=32,
        batch_size=4,
        aa="none",
        color_jitter=0.2,
        hflip=0.1,
        reprob=0.6,
        remode="const",
        recount=2,
        repeated_aug=False,
        num_workers=1,
        scale=[0.3, 0.9],
        ratio=[0.5, 2.0],
    )
    source = FolderDataset(folder)
    loaders = build_loaders(config, source, source, DistributedEnv(), torch.device("cpu"))
    settings = loaders.train.settings  # type: ignore[union-attr]
    assert (
        settings.auto_augment,
        settings.color_jitter,
        settings.hflip,
        settings.reprob,
        settings.remode,
        settings.recount,
    ) == (None, 0.2, 0.1, 0.6, "const", 2)
    assert (tuple(settings.scale), tuple(settings.ratio)) == ((0.3, 0.9), (0.5, 2.0))  # --scale, --ratio
    assert loaders.train_sampler is loaders.train  # the engine's set_epoch reaches the DALI loader


def test_training_ranks_take_the_same_number_of_steps(folder: Path) -> None:
    source = FolderDataset(folder)  # 15 images: shards of 8 and 7, batches of 4 -> 1 full batch each, not 2 and 1
    settings = DaliSettings(input_size=32, auto_augment=None, color_jitter=None, reprob=0.0)
    steps = [
        len(list(DaliLoader(source, settings, train=True, batch_size=4, shard_id=rank, num_shards=2, drop_last=True)))
        for rank in range(2)
    ]
    assert steps == [1, 1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`deit data pack` of 2 classes x (7 train + 2 val) JPEGs in shards of 4; one train JPEG's payload is cut
    (its header passes the pack's scan, its pixels do not decode)."""
    from deit.data.pack import pack_folder

    root = tmp_path_factory.mktemp("wds")
    rng = np.random.default_rng(3)
    for split, count in (("train", 7), ("val", 2)):
        for label in range(2):
            folder = root / "images" / split / f"c{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index}.jpg")
    _damaged_payloads(root / "images" / "train" / "c1")  # + cut.jpg, overwritten.jpg: 16 train records
    pack_folder(str(root / "images"), root / "shards", shard_size=4)
    return root / "shards"


@pytest.mark.slow
def test_shard_records_are_read_once_per_epoch_across_ranks_with_their_labels(shards: Path) -> None:
    from deit.data.dali_shards import ShardRecords
    from deit.data.shards import ShardDataset

    records = ShardRecords(ShardDataset(str(shards), train=True, transform=None))
    assert len(records.samples) == 16 and records.classes == ["c0", "c1"]
    settings = DaliSettings(input_size=32, auto_augment=None, color_jitter=None)
    seen, planned, read = [], [], []
    for rank in range(2):
        loader = DaliLoader(records, settings, train=True, batch_size=4, shard_id=rank, num_shards=2, seed=1)
        loader.set_epoch(1)
        planned += loader._epoch_indices()
        seen += [int(label) for _, labels in loader for label in labels]
        read += loader._epoch_indices()  # now with the replacements of records DALI failed to decode
    assert sorted(planned) == list(range(16))  # every record once per epoch across the ranks
    assert sorted(seen) == sorted(records.samples[index][1] for index in read)  # each with its own label


def test_undecodable_records_are_skipped_and_named_as_by_the_torch_loader(
    shards: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deit.data.dali_shards import ShardRecords
    from deit.data.shards import ShardDataset

    torch_reader = ShardDataset(str(shards), train=False, transform=None)
    torch_reader.shards = ShardDataset(str(shards), train=True, transform=None).shards  # the train shards, once
    assert len(list(torch_reader)) == 14
    dataset = ShardDataset(str(shards), train=True, transform=None)
    loader = DaliLoader(ShardRecords(dataset), DaliSettings(input_size=32), train=False, batch_size=4)
    assert sum(len(labels) for _, labels in loader) == 16  # replaced by the next decodable record: same count
    assert sorted(dataset.skipped) == sorted(torch_reader.skipped) and len(dataset.skipped) == 2
    assert all(name.startswith("train-00000") and ".tar:" in name for name, _ in dataset.skipped)
    assert caplog.text.count("skipping unusable record train-") == 4  # each, by both loaders


@pytest.mark.slow
def test_deit_train_reads_shards_through_dali(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deit.cli import main

    argv = [
        "train",
        "--data-loader",
        "dali",
        "--data-set",
        "WDS",
        "--data-path",
        str(shards),
        "--model",
        "deit_tiny_patch16_224",
        "--model-kwargs",
        '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
        "--input-size",
        "32",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--aa",
        "none",
        "--no-repeated-aug",
        "--num_workers",
        "1",
        "--device",
        "cpu",
        "--log-format",
        "plain",
        "--output_dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    row = __import__("json").loads((tmp_path / "run" / "log.txt").read_text().splitlines()[-1])
    assert row["train_steps"] == 4 and row["test_num_images"] == 4  # 16 records / 4; 2 x 2 validation images
    assert (tmp_path / "run" / "skipped_files.txt").read_text().count(".tar:") == 2
