"""A class folder's walk never follows a link back into the tree or out of it, and never opens a FIFO."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from deit.data.datasets import build_folder_split
from image_folders import write_class_folders


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """train/c0..c2 with 8 images each."""
    return write_class_folders(tmp_path / "data", classes=3, per_class=8, shape=(12, 12), class_prefix="c")


def _train(tree: Path):
    return build_folder_split(str(tree), train=True, transform=None, report_dir=str(tree.parent))


def test_a_link_loop_is_not_followed(tree: Path) -> None:
    os.symlink("..", tree / "train" / "c0" / "up")  # c0/up/c1/... would list every class again under c0
    dataset = _train(tree)
    assert Counter(label for _, label in dataset.samples) == {0: 8, 1: 8, 2: 8}
    assert (
        str(tree / "train" / "c0" / "up"),
        "a link to a folder inside a class folder (not followed)",
    ) in dataset.skipped
    assert "c0/up\t" in (tree.parent / "skipped_files.txt").read_text()


def test_a_linked_folder_elsewhere_is_not_followed_either(tree: Path, tmp_path: Path) -> None:
    write_class_folders(tmp_path / "other", classes=1, per_class=3, shape=(12, 12), class_prefix="x")
    os.symlink(tmp_path / "other" / "train" / "x0", tree / "train" / "c2" / "more")
    assert len(_train(tree).samples) == 24


def test_an_image_linked_into_another_class_is_counted_once(tree: Path) -> None:
    os.symlink(tree / "train" / "c1" / "0.png", tree / "train" / "c2" / "borrowed.png")
    dataset = _train(tree)
    assert Counter(label for _, label in dataset.samples) == {0: 8, 1: 8, 2: 8}
    assert any(path.endswith("c2/borrowed.png") and "the same file as" in reason for path, reason in dataset.skipped)


def test_a_class_folder_may_itself_be_a_link(tree: Path, tmp_path: Path) -> None:
    (tree / "train" / "c2").rename(tmp_path / "c2_elsewhere")
    os.symlink(tmp_path / "c2_elsewhere", tree / "train" / "c2")
    assert len(_train(tree).samples) == 24


@pytest.mark.timeout(60)  # probing the FIFO would block for ever
def test_a_fifo_in_a_class_folder_is_refused_unopened(tree: Path) -> None:
    os.mkfifo(tree / "train" / "c0" / "pipe.png")
    dataset = _train(tree)
    assert len(dataset.samples) == 24
    assert (
        str(tree / "train" / "c0" / "pipe.png"),
        "not a regular file (a FIFO, socket or device); skipped",
    ) in dataset.skipped
