"""`deit eval`'s per-class report and worst mistakes, on records whose answers are known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import IterableDataset, TensorDataset

from deit.engine.loop import evaluate
from deit.inference.eval_report import (
    TABLE_MAX_CLASSES,
    PerImage,
    classification_report,
    describe_mistakes,
    format_report,
    plot_mistakes,
    worst_mistakes,
)


def _records(
    target: list[int], prediction: list[int], confidence: list[float], teacher: list[int] | None = None
) -> PerImage:
    return PerImage(
        torch.tensor(target),
        torch.tensor(prediction),
        torch.tensor(confidence),
        None if teacher is None else torch.tensor(teacher),
    )


def test_worst_mistakes_are_the_confident_wrong_ones_first() -> None:
    records = _records([0, 1, 2, 0, 1, 2], [0, 2, 2, 1, 0, 2], [0.99, 0.6, 0.95, 0.9, 0.7, 0.5])
    assert worst_mistakes(records, 2) == [3, 4]  # wrong at 1 (0.6), 3 (0.9), 4 (0.7); right ones never listed
    assert worst_mistakes(records, 10) == [3, 4, 1]
    assert worst_mistakes(_records([1], [1], [0.2]), 5) == []


def test_describe_mistakes_names_classes_file_and_teacher() -> None:
    records = _records([0, 1], [1, 1], [0.8, 0.9], teacher=[0, 1])

    folder = TensorDataset(torch.zeros(2))
    folder.samples = [("/data/val/cat/a.png", 0), ("/data/val/dog/b.png", 1)]  # as FolderDataset lists them
    rows = describe_mistakes(records, [0], ["cat", "dog"], folder)
    assert rows == [
        {
            "index": 0,
            "true": "cat",
            "predicted": "dog",
            "confidence": pytest.approx(0.8),
            "teacher": "cat",
            "file": "/data/val/cat/a.png",
        }
    ]


def test_report_per_class_and_the_table_keeps_the_worst_of_many_classes() -> None:
    # Class 0: 2 of 3 right, and one image of class 1 called 0 -> precision 2/3, recall 2/3.
    records = _records([0, 0, 0, 1, 1], [0, 0, 1, 1, 0], [0.9] * 5)
    report = classification_report(records, ["a", "b"])
    assert report["a"]["precision"] == pytest.approx(2 / 3) and report["a"]["recall"] == pytest.approx(2 / 3)
    assert report["b"]["recall"] == pytest.approx(1 / 2) and report["b"]["support"] == 2
    table = format_report(report, ["a", "b"])
    assert "precision" in table and table.count("\n") == 1 + 2 + 2  # heading, columns, 2 classes, 2 averages

    names = [f"class_{k}" for k in range(TABLE_MAX_CLASSES + 10)]
    target = list(range(len(names)))
    prediction = [0 if k == 7 else k for k in target]  # class_7 always wrong: F1 0
    table = format_report(classification_report(_records(target, prediction, [0.5] * len(names)), names), names)
    shown = [line.split()[0] for line in table.splitlines()[2:-2]]
    assert len(shown) == TABLE_MAX_CLASSES // 2 and shown[0] == "class_7" and "class_0" in shown  # 0 has F1 < 1
    assert f"all {len(names)} in metrics.json" in table


def test_evaluate_records_every_image_in_order() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    images, targets = torch.randn(10, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    loader = torch.utils.data.DataLoader(TensorDataset(images, targets), batch_size=4)
    batches: list[dict[str, torch.Tensor]] = []
    metrics = evaluate(model, loader, torch.device("cpu"), per_image=batches)
    records = PerImage.from_batches(batches)
    with torch.no_grad():
        probabilities = model(images).softmax(1)
    assert torch.equal(records.target, targets) and torch.equal(records.prediction, probabilities.argmax(1))
    torch.testing.assert_close(records.confidence, probabilities.max(1).values)
    assert metrics["acc1"] == pytest.approx(100 * (records.prediction == targets).float().mean().item())
    assert records.teacher is None


def test_contact_sheet_is_drawn_for_indexed_data_only(tmp_path: Path) -> None:
    images = TensorDataset(torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 0]))
    rows = [{"index": 2, "true": "a", "predicted": "b", "confidence": 0.9, "teacher": "a"}]
    assert plot_mistakes(rows, images, tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    class Stream(IterableDataset):
        def __iter__(self):
            yield from images

    assert not plot_mistakes(rows, Stream(), tmp_path / "stream.png") and not (tmp_path / "stream.png").exists()
    assert not plot_mistakes([], images, tmp_path / "none.png")


def test_a_class_name_with_a_newline_keeps_its_row_on_one_line() -> None:
    from deit.inference.eval_report import format_report

    row = {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 2}
    report = {"a\nb": row, "c": row, "macro avg": row, "weighted avg": row}
    lines = format_report(report, ["a\nb", "c"]).splitlines()
    assert len(lines) == 2 + 4 and lines[2].strip().startswith("a\\nb ")
