"""`deit eval` matches the data's classes to the checkpoint's by name: reordered names are mapped, other names
are refused unless --map-classes-by-position, and the report says which."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deit.cli import main
from deit.data.class_match import RelabelledDataset, match_classes
from deit.errors import DeitError
from image_folders import write_class_folders
from tiny_checkpoints import save_tiny_checkpoint, write_image


def test_the_same_names_in_another_order_are_mapped_by_name() -> None:
    match = match_classes(["cherry", "apple", "banana"], ["apple", "banana", "cherry"], source="m.pth", data="d")
    assert match.order == (1, 2, 0) and "another order" in match.how and not match.identity
    relabelled = RelabelledDataset([(torch.zeros(1), 0), (torch.zeros(1), 2)], match.order)
    assert [relabelled[i][1] for i in range(2)] == [1, 0]  # data 'apple' is the checkpoint's index 1


def test_other_names_are_refused_unless_mapped_by_position() -> None:
    with pytest.raises(DeitError, match=r"d: its class names are not m.pth's \(2 of 3 differ: 'x' vs 'b'"):
        match_classes(["a", "b", "c"], ["a", "x", "y"], source="m.pth", data="d")
    match = match_classes(["a", "b", "c"], ["a", "x", "y"], source="m.pth", data="d", by_position=True)
    assert match.identity and "--map-classes-by-position" in match.how


def test_a_checkpoint_without_names_and_identical_names_match_by_position() -> None:
    assert "records no class names" in match_classes(["class_0", "class_1"], ["a", "b"], source="m", data="d").how
    assert "records no class names" in match_classes(["0", "1"], ["a", "b"], source="m", data="d").how
    assert match_classes(["a", "b"], ["a", "b"], source="m", data="d").identity


def _eval(checkpoint: Path, root: Path, *extra: str) -> int:
    return main(
        ["eval", "--checkpoint", str(checkpoint), "--data-set", "IMAGEFOLDER", "--data-path", str(root)]
        + ["--num_workers", "0", "--device", "cpu", "--worst", "0", *extra]
    )


def test_deit_eval_refuses_other_names_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "abc.pth")  # apple, banana, cherry
    other = write_class_folders(tmp_path / "xyz", classes=3, per_class=1, class_prefix="x")
    assert _eval(checkpoint, other) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'x0' vs 'apple'" in err and "--map-classes-by-position" in err


@pytest.mark.slow
def test_deit_eval_maps_by_position_on_request_and_reordered_names_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "abc.pth")  # apple, banana, cherry
    other = write_class_folders(tmp_path / "xyz", classes=3, per_class=1, class_prefix="x")
    assert _eval(checkpoint, other, "--map-classes-by-position") == 0
    assert "classes matched by position, as --map-classes-by-position asks" in capsys.readouterr().out
    # The checkpoint's own names, listed in another order by the folder (sorted): scored under the right labels.
    payload = torch.load(checkpoint, weights_only=True)
    payload["meta"]["class_names"] = ["cherry", "apple", "banana"]
    torch.save(payload, tmp_path / "cab.pth")
    fruit = tmp_path / "fruit"  # 1 apple, 2 bananas, 3 cherries: the counts show which numbering scored them
    for split in ("train", "val"):
        for count, name in enumerate(("apple", "banana", "cherry"), start=1):
            (fruit / split / name).mkdir(parents=True)
            for index in range(count):
                write_image(fruit / split / name / f"{index}.png", seed=10 * count + index)
    assert _eval(tmp_path / "cab.pth", fruit, "--output", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "classes matched by name (the data lists them in another order)" in out
    import json

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["class_names"] == ["cherry", "apple", "banana"]
    # Rows are true classes in the checkpoint's numbering (cherry, apple, banana): 3, 1 and 2 images.
    assert [sum(row) for row in metrics["confusion_matrix"]] == [3, 1, 2]


def test_guessed_names_of_weights_alone_match_by_position() -> None:
    # Official ImageNet weights get torchvision's names ("tench") while the folders are wnids ("n01440764"):
    # a file that records no names is matched by position, as it always was.
    assert "records no class names" in match_classes([], ["n01440764", "n01443537"], source="m", data="d").how
    assert "records no class names" in match_classes(["LABEL_0", "LABEL_1"], ["a", "b"], source="m", data="d").how
