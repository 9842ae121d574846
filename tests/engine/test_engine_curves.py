"""curves.png as a reader needs it: the top-1 axis from 0 to 100 % with the chance line, one line per real head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from deit.engine.logging_utils import plot_curves


def _log(path: Path, *, distilled: bool) -> Path:
    rows = []
    for epoch, acc in enumerate([16.5, 18.0, 20.0]):  # noise near chance for 6 classes (16.7 %)
        row = {"epoch": epoch, "train_loss": 1.8, "test_loss": 1.79, "test_acc1": acc, "test_cls_acc1": acc}
        if distilled:
            row.update(test_cls_acc1=acc - 1, test_dist_acc1=acc + 1)
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_accuracy_axis_spans_0_to_100_with_the_chance_line(tmp_path: Path, drawn: list[Figure]) -> None:
    plot_curves(_log(tmp_path / "log.txt", distilled=False), tmp_path / "curves.png", num_classes=6)
    (figure,) = drawn
    accuracy = figure.axes[1]
    assert accuracy.get_ylim() == (0, 100)
    labels = [line.get_label() for line in accuracy.get_lines()]
    assert labels == ["top-1", "chance (1 in 6)"]  # one head: one line, not "fused" and "class head" twice
    assert accuracy.get_lines()[1].get_ydata()[0] == pytest.approx(100 / 6)


def test_a_distilled_model_draws_its_three_heads(tmp_path: Path, drawn: list[Figure]) -> None:
    plot_curves(_log(tmp_path / "log.txt", distilled=True), tmp_path / "curves.png")
    labels = [line.get_label() for line in drawn[0].axes[1].get_lines()]
    assert labels == ["fused", "class head", "dist head"]  # no class count: no chance line
