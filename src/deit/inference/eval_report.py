"""What `deit eval` shows beyond accuracy: per-class precision/recall/F1 and a contact sheet of the worst mistakes.

Both read the per-image records `evaluate(per_image=...)` collects (true class, fused prediction, its softmax
confidence, the teacher's call); the validation loader is unshuffled, so a record's position is the image's
index in the data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from deit.errors import printable

TABLE_MAX_CLASSES = 40  # above this the printed table keeps the worst classes; metrics.json keeps them all


@dataclass(frozen=True)
class PerImage:
    """One row per validation image, in data-set order."""

    target: Tensor  # (N,) true class
    prediction: Tensor  # (N,) fused prediction
    confidence: Tensor  # (N,) softmax probability of the prediction
    teacher: Tensor | None  # (N,) the teacher's class, when a teacher was given

    @classmethod
    def from_batches(cls, batches: list[dict[str, Tensor]]) -> PerImage:
        """Concatenate the per-batch records of `evaluate(per_image=...)`."""

        def column(key: str) -> Tensor:
            return torch.cat([batch[key] for batch in batches]) if batches else torch.zeros(0)

        teacher = column("teacher") if batches and "teacher" in batches[0] else None
        return cls(column("target").long(), column("prediction").long(), column("confidence").float(), teacher)


def classification_report(records: PerImage, class_names: list[str]) -> dict[str, Any]:
    """scikit-learn's report as a dict: {class: {precision, recall, f1-score, support}, accuracy, averages}."""
    from sklearn.metrics import classification_report as sklearn_report

    return sklearn_report(
        records.target.numpy(),
        records.prediction.numpy(),
        labels=list(range(len(class_names))),
        target_names=class_names,
        zero_division=0,
        output_dict=True,
    )


def format_report(report: dict[str, Any], class_names: list[str]) -> str:
    """The report as a text table: every class up to TABLE_MAX_CLASSES, else the lowest-F1 half of that."""
    shown = list(class_names)
    heading = "per class (fused prediction):"
    if len(shown) > TABLE_MAX_CLASSES:  # hundreds of rows hide the point: the classes the model does worst on
        shown = sorted(shown, key=lambda name: (report[name]["f1-score"], name))[: TABLE_MAX_CLASSES // 2]
        heading = f"the {len(shown)} classes of lowest F1 (all {len(class_names)} in metrics.json):"
    width = max(len(printable(name)) for name in shown + ["weighted avg"])
    rows = [heading, f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>8}"]
    for name in shown + ["macro avg", "weighted avg"]:
        row = report[name]
        rows.append(  # a class name with a newline would split its row: escaped
            f"{printable(name):>{width}} {row['precision']:>9.3f} {row['recall']:>9.3f} {row['f1-score']:>9.3f} "
            f"{int(row['support']):>8d}"
        )
    return "\n".join(rows)


def worst_mistakes(records: PerImage, count: int) -> list[int]:
    """Indices of the `count` wrong predictions made with the highest confidence, most confident first."""
    wrong = (records.prediction != records.target).nonzero().flatten()
    order = records.confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order][:count].tolist()


def describe_mistakes(
    records: PerImage, indices: list[int], class_names: list[str], dataset: Dataset
) -> list[dict[str, Any]]:
    """The worst mistakes as metrics.json lists them: index, file (where known), true, predicted, teacher."""
    samples = getattr(dataset, "samples", None)
    rows = []
    for index in indices:
        row: dict[str, Any] = {
            "index": index,
            "true": class_names[int(records.target[index])],
            "predicted": class_names[int(records.prediction[index])],
            "confidence": float(records.confidence[index]),
        }
        if records.teacher is not None:
            row["teacher"] = class_names[int(records.teacher[index])]
        if isinstance(samples, list) and index < len(samples) and isinstance(samples[index], tuple):
            row["file"] = str(samples[index][0])
        rows.append(row)
    return rows


def plot_mistakes(rows: list[dict[str, Any]], dataset: Dataset, path: Path) -> bool:
    """A contact sheet PNG of `rows` (image, true, predicted, teacher); False when the data set has no random
    access (WebDataset shards stream) or nothing was wrong."""
    import math

    from matplotlib.figure import Figure

    from deit.io import atomic_write

    if not rows or isinstance(dataset, IterableDataset):
        return False
    columns = min(len(rows), 6)
    lines = 4 if "teacher" in rows[0] else 3
    figure = Figure(figsize=(2.4 * columns, (2.2 + 0.3 * lines) * math.ceil(len(rows) / columns)), dpi=100)
    grid = figure.subplots(math.ceil(len(rows) / columns), columns, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for axes, row in zip(grid.flat, rows):
        image = dataset[row["index"]][0]  # a (3, H, W) tensor in [0, 1]: the evaluation crop, unnormalised
        axes.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        title = [
            f"#{row['index']}",
            f"true: {row['true']}",
            f"predicted: {row['predicted']} ({100 * row['confidence']:.0f}%)",
        ]
        if "teacher" in row:
            title.append(f"teacher: {row['teacher']}")
        axes.set_title("\n".join(title), fontsize=7, color="darkred")
    figure.suptitle("most confident mistakes (fused prediction)", fontsize=9)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return True
