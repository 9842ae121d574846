"""Folder data sets (IMNET layout): bad files are skipped, reported and counted; layout errors are named."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from deit.data import build_dataset, build_transform
from deit.data import folder as folder_module
from deit.data.images import probe_image
from deit.errors import DeitError


def _save(path, seed, mode="RGB", fmt=None, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _imagenet_tree(root):
    """train/{cat,dog,fish} with good images in odd modes plus the usual damage; val/ clean."""
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("cat", "dog", "fish")):
            for index in range(count):
                _save(root / split / name / f"{name}_{index}.jpg", seed=label * 10 + index)
    _save(root / "train/cat/cmyk.jpg", 1, mode="CMYK")
    deep = root / "train/dog/deep.png"
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(deep)
    _save(root / "train/dog/palette.gif", 2, mode="P")
    _save(root / "train/fish/nested/deeper/gray.png", 3, mode="L")
    bad = {
        root / "train/cat/empty.jpg": b"",
        root / "train/dog/readme.txt": b"not an image",
    }
    for path, data in bad.items():
        path.write_bytes(data)
    truncated_png = _save(root / "train/fish/cut.png", 4, fmt="PNG")
    _truncate(truncated_png)
    (root / "train/fish/.DS_Store").write_bytes(b"\0\0junk")  # hidden: ignored silently
    return sorted(str(path) for path in (*bad, truncated_png))


def test_bad_files_are_skipped_logged_and_reported(tmp_path, caplog):
    bad = _imagenet_tree(tmp_path / "data")
    assert len(bad) == 3
    report_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="deit.data"):
        dataset = build_dataset("IMNET", str(tmp_path / "data"), train=True, transform=None, report_dir=str(report_dir))
    assert dataset.classes == ["cat", "dog", "fish"]
    assert len(dataset) == 9 + 4  # 3 per class + cmyk, deep, palette, nested gray
    assert sorted(path for path, _ in dataset.skipped) == bad
    for path in bad:  # one warning line naming each file
        lines = [r.getMessage() for r in caplog.records if path in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0]
    assert any("skipped 3 of 16 files" in r.getMessage() for r in caplog.records)
    report = (report_dir / "skipped_files.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in report) == bad
    # a second build (val, or a resumed run) does not duplicate the lines
    build_dataset("IMNET", str(tmp_path / "data"), train=True, transform=None, report_dir=str(report_dir))
    assert len((report_dir / "skipped_files.txt").read_text().splitlines()) == 3

    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.mode == "RGB" and dataset.classes[label] in dataset.samples[index][0]
    deep_index = next(i for i, (p, _) in enumerate(dataset.samples) if p.endswith("deep.png"))
    assert np.asarray(dataset[deep_index][0])[0, 0].tolist() == [156, 156, 156]  # 40000/257, not clipped


def test_val_split_uses_train_class_indices(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b", "c"):
        _save(root / "train" / name / "x.png", 0)
    _save(root / "val/c/y.png", 1)  # val lacks a and b
    val = build_dataset("IMAGEFOLDER", str(root), train=False, transform=build_transform(False, input_size=16))
    assert val.classes == ["a", "b", "c"] and len(val) == 1
    image, label = val[0]
    assert label == 2 and isinstance(image, torch.Tensor) and image.shape == (3, 16, 16)


def test_strict_data_fails_before_training_naming_files(tmp_path):
    bad = _imagenet_tree(tmp_path / "data")
    with pytest.raises(DeitError) as caught:
        build_dataset("IMNET", str(tmp_path / "data"), train=True, transform=None, strict_data=True)
    message = str(caught.value)
    assert "--strict-data" in message and "3 unusable" in message and "\n" not in message
    assert all(path in message for path in bad)


def test_damage_found_only_at_decode_falls_back_deterministically(tmp_path, caplog):
    root = tmp_path / "data"
    for index in range(4):
        _save(root / "train/only" / f"{index}.jpg", seed=index, size=(64, 64))
    _truncate(root / "train/only/1.jpg", keep=0.6)  # header intact: passes the up-front check
    dataset = build_dataset("INAT", str(root), train=True, transform=None, report_dir=str(tmp_path / "run"))
    assert len(dataset) == 4 and dataset.skipped == []
    expected = np.asarray(dataset[2][0])
    with caplog.at_level(logging.WARNING, logger="deit.data"):
        image, label = dataset[1]
    assert np.array_equal(np.asarray(image), expected) and label == 0  # the next sample, its own label
    assert [path for path, _ in dataset.skipped] == [str(root / "train/only/1.jpg")]
    assert "truncated" in dataset.skipped[0][1]
    assert sum("1.jpg" in r.getMessage() for r in caplog.records) == 1
    assert "1.jpg" in (tmp_path / "run/skipped_files.txt").read_text()
    assert np.array_equal(np.asarray(dataset[1][0]), expected)  # again: no retry, no second warning
    assert len(dataset.skipped) == 1


def test_layout_errors_name_the_path(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DeitError, match="no such folder"):
        build_dataset("IMNET", str(root), train=True, transform=None)
    _save(root / "train/a/x.png", 0)
    with pytest.raises(DeitError, match=f"missing {root / 'val'}"):
        build_dataset("IMNET", str(root), train=False, transform=None)
    (root / "train/empty_class").mkdir()
    with pytest.raises(DeitError, match="empty_class: empty class folder"):
        build_dataset("IMNET", str(root), train=True, transform=None)
    (root / "train/empty_class").rmdir()
    (root / "train/b").mkdir()
    (root / "train/b/broken.png").write_bytes(b"")
    with pytest.raises(DeitError, match=r"train/b: no usable images"):
        build_dataset("IMNET", str(root), train=True, transform=None)
    _save(root / "val/zebra/x.png", 0)
    with pytest.raises(DeitError, match="zebra"):
        build_dataset("IMNET", str(root), train=False, transform=None)
    flat = tmp_path / "flat"
    _save(flat / "train/x.png", 0)
    with pytest.raises(DeitError, match="no class folders"):
        build_dataset("IMNET", str(flat), train=True, transform=None)
    with pytest.raises(DeitError, match="needs --data-path"):
        build_dataset("IMNET", None, train=True, transform=None)
    with pytest.raises(DeitError, match="unknown"):
        build_dataset("MNIST", None, train=True, transform=None)


def test_scan_of_many_files_uses_the_thread_pool(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for index in range(80):  # above the serial threshold
        _save(root / "train" / f"c{index % 2}" / f"{index}.png", seed=index, size=(4, 4))
    (root / "train/c0/zz_bad.png").write_bytes(b"junk")
    threads, overlapped, second_probe = [], [], threading.Event()

    def probe_waiting_for_a_second_one(path):
        # The first probe waits until another starts: only a pool running probes side by side lets it through.
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            overlapped.append(second_probe.wait(timeout=5))
        else:
            second_probe.set()
        return probe_image(path)

    monkeypatch.setattr(folder_module, "probe_image", probe_waiting_for_a_second_one)
    dataset = build_dataset("IMNET", str(root), train=True, transform=None)
    assert overlapped == [True] and len(threads) == 81
    assert all(name.startswith("deit-scan") for name in threads) and len(set(threads)) >= 2
    assert len(dataset) == 80 and [p for p, _ in dataset.skipped] == [str(root / "train/c0/zz_bad.png")]
    assert dataset.targets.count(0) == 40
