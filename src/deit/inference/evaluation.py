"""Evaluate a saved checkpoint with its own preprocessing: three heads, teacher agreement, confusion matrix."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from deit.data.class_match import RelabelledDataset, match_classes
from deit.engine.wide_head import keeps_wide_head, wide_head_note
from deit.errors import DeitError
from deit.inference.record import training_record
from deit.integrity import check_finite_metrics
from deit.io import dumps_strict
from deit.models.download import is_url


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data_set: str | None = None,
    data_path: str | None = None,
    teacher_model: str | None = None,
    teacher_path: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 128,
    device: str = "auto",
    num_workers: int = 2,
    use_ema: bool = False,
    worst: int = 16,
    eval_crop_ratio: float | None = None,
    map_classes_by_position: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 of the class, distillation and fused heads (+ teacher agreement) on a validation split, the
    per-class report (`classification_report`) and the `worst` most confident mistakes (`worst_mistakes`).

    The data set defaults to the one the checkpoint was trained on; with `output`, writes `metrics.json`,
    `confusion_matrix.png` and `worst_mistakes.png` there. The centre crop is the checkpoint's recorded
    ratio (`deit train --eval-crop-ratio`), or `eval_crop_ratio`. The data's classes are matched to the
    checkpoint's by name (`class_matching` says how); other names are refused unless `map_classes_by_position`.
    """
    from deit.data import build_dataset
    from deit.engine.loop import evaluate
    from deit.inference import eval_report
    from deit.inference.preprocess import with_crop_ratio
    from deit.io import require_regular_file
    from deit.models.factory import load_trained_model
    from deit.perf import resolve_device
    from deit.precision import resolve_precision

    path = require_regular_file(checkpoint, flag="--checkpoint", allow_directory=True)
    if teacher_path and not is_url(teacher_path):
        require_regular_file(teacher_path, flag="--teacher-path", allow_directory=True)
    record = training_record(path)
    args = record.args
    data_set, data_path = record.data(data_set, data_path)
    if not data_set:
        raise DeitError(f"--data-set is needed: {path} does not record the data set it was trained on")
    torch_device = resolve_device(device)
    model, meta = load_trained_model(path, torch_device, use_ema=use_ema)
    meta = with_crop_ratio(meta, eval_crop_ratio)
    if not record.has_preprocessing:  # weights alone: the data set's normalisation, as `deit train --eval --resume`
        from deit.engine.builders import data_set_normalization

        mean, std = data_set_normalization(data_set)
        meta = dataclasses.replace(meta, mean=tuple(mean), std=tuple(std))
    options = {"inat_category": str(args.get("inat_category") or "name")}  # the level the model was trained on
    dataset = build_dataset(data_set, data_path, train=False, transform=_eval_transform(meta, model), options=options)
    if len(dataset) == 0:
        raise DeitError(f"--data-set {data_set}: the validation split is empty")
    classes = [str(name) for name in dataset.classes]
    wide = keeps_wide_head(meta.num_classes, len(classes), data_set)  # an official IMNET head on a smaller folder
    if wide:
        warnings.warn(wide_head_note(str(path), meta.num_classes, len(classes)), stacklevel=2)
    elif len(classes) != meta.num_classes:
        raise DeitError(
            f"{path}: the model predicts {meta.num_classes} classes but --data-set {data_set} has {len(classes)}"
        )
    how = "by position: the official head is wider than the data (its first classes are the data's)"
    if not wide:
        recorded_names = meta.labels() if record.has_preprocessing else []  # weights alone: names only guessed
        match = match_classes(
            recorded_names,
            classes,
            source=str(path),
            data=f"--data-set {data_set}",
            by_position=map_classes_by_position,
        )
        how = match.how
        if not match.identity:  # scored in the checkpoint's numbering, reported under its names
            dataset, classes = RelabelledDataset(dataset, match.order), meta.labels()
    teacher = None
    if teacher_path:
        from deit.distill import build_teacher
        from deit.engine.builders import local_copy

        teacher = build_teacher(
            teacher_model or "regnety_160",
            num_classes=len(classes),
            checkpoint=local_copy(teacher_path, "--teacher-path"),
            student_mean=meta.mean,
            student_std=meta.std,
            device=torch_device,
        )
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=torch_device.type == "cuda"
    )
    per_image: list[dict[str, torch.Tensor]] = []
    metrics = evaluate(
        model,
        loader,
        torch_device,
        teacher=teacher,
        precision=resolve_precision("auto", torch_device),
        confusion=True,
        per_image=per_image,
    )
    records = eval_report.PerImage.from_batches(per_image)
    names = classes
    if wide:  # the matrix and the lists name the data's classes, and one entry for the head's other outputs
        metrics["confusion_matrix"] = fold_outside_classes(metrics["confusion_matrix"], len(classes))
        names = classes + [f"(any of the other {meta.num_classes - len(classes)} outputs of the head)"]
        records = dataclasses.replace(records, prediction=records.prediction.clamp(max=len(classes)))
        if records.teacher is not None:
            records = dataclasses.replace(records, teacher=records.teacher.clamp(max=len(classes)))
    # Under --distillation-type none the distillation head never learned: the fused number averages it in.
    untrained = args.get("distillation_type") == "none" and "dist_acc1" in metrics
    metrics.update(
        checkpoint=str(path),
        data_set=data_set,
        class_names=classes,
        class_matching=how,
        weights="model_ema" if use_ema else "model",
        dist_head_untrained=untrained,
        classification_report=eval_report.classification_report(records, classes),
        worst_mistakes=eval_report.describe_mistakes(
            records, eval_report.worst_mistakes(records, worst), names, dataset
        ),
    )
    if wide:
        metrics["confusion_labels"] = names  # the matrix's rows and columns, when they are not `class_names`
    if output is not None:
        write_outputs(metrics, Path(output))  # NaN is written as null, and the run still fails below
        # The same crop without normalisation: the contact sheet shows what the model saw.
        display = build_dataset(
            data_set, data_path, train=False, transform=_eval_transform(meta, model, normalise=False), options=options
        )
        metrics["worst_mistakes_png"] = eval_report.plot_mistakes(
            metrics["worst_mistakes"], display, Path(output) / "worst_mistakes.png"
        )
    check_finite_metrics(metrics, source=str(path))
    return metrics


def fold_outside_classes(matrix: list[list[int]], data_classes: int) -> list[list[int]]:
    """A confusion matrix over a head wider than the data, as (data classes + 1) square: the last column counts
    the predictions outside the data's classes; the last row is empty (no image is of such a class)."""
    rows = [row[:data_classes] + [sum(row[data_classes:])] for row in matrix[:data_classes]]
    return rows + [[0] * (data_classes + 1)]


def _eval_transform(meta: Any, model: torch.nn.Module, *, normalise: bool = True) -> Any:
    from deit.data import build_transform

    mean, std = (meta.mean, meta.std) if normalise else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return build_transform(
        False,
        input_size=meta.input_size or int(getattr(model, "img_size", 224)),
        mean=mean,
        std=std,
        interpolation=meta.interpolation,
        eval_crop_ratio=meta.crop_pct,
    )


def write_outputs(metrics: dict[str, Any], output: Path) -> None:
    """`metrics.json` and `confusion_matrix.png` (fused prediction vs. true class) in `output`."""
    from deit.io import atomic_write

    output.mkdir(parents=True, exist_ok=True)
    text = dumps_strict(metrics, indent=2)
    atomic_write(output / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    labels = metrics.get("confusion_labels", metrics["class_names"])
    plot_confusion(metrics["confusion_matrix"], labels, output / "confusion_matrix.png")


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: Path) -> None:
    """A confusion-matrix PNG with scikit-learn's `ConfusionMatrixDisplay` (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    from deit.io import atomic_write

    many = len(class_names) > 30  # hundreds of labels are unreadable: show the matrix alone
    size = min(4 + 0.4 * len(class_names), 20)
    fig, ax = plt.subplots(figsize=(size, size))
    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=None if many else class_names)
    display.plot(ax=ax, include_values=not many, colorbar=True, cmap="Blues", xticks_rotation="vertical")
    ax.set_title("fused prediction vs. true class")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
