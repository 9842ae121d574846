"""The paper's measurements on a trained model (`deit analyze`'s library).

- Cosine similarity between the class and distillation tokens, per layer (paper, DeiT-B⚗: 0.06 for the learned
  input embeddings, 0.93 at the last layer) -> `token_similarity.csv`, `.json`, `.png`.
- Agreement between the class and distillation heads' predictions, and with a teacher -> `agreement.json`.
- Attention of the class and distillation tokens to the patches (last layer, head-averaged) and attention rollout
  (Abnar & Zuidema 2020) over a few images -> `attention_maps.png` overlays and `attention_maps.npz` arrays.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from deit.data.class_match import SAME_NAMES, RelabelledDataset, match_classes
from deit.errors import DeitError
from deit.inference.preprocess import EvalPreprocessing, load_inference_model
from deit.io import dumps_strict
from deit.models.vit import VisionTransformer

PAPER_EMBEDDING_SIMILARITY = 0.06
PAPER_LAST_LAYER_SIMILARITY = 0.93
NO_DIST_NOTE = "the model has no distillation token: class/distillation similarity and agreement skipped"


# ---------------------------------------------------------------- the measurements (pure functions)


def token_cosine_similarity(layers: list[Tensor]) -> Tensor:
    """(B, depth): cosine similarity of tokens 0 and 1 (class, distillation) in each block's (B, N, D) output."""
    return torch.stack([F.cosine_similarity(tokens[:, 0], tokens[:, 1], dim=-1) for tokens in layers], dim=1)


def embedding_cosine_similarity(model: VisionTransformer) -> float:
    """Cosine similarity of the learned class and distillation token embeddings (before any block)."""
    if not model.distilled or model.dist_token is None:
        raise DeitError(NO_DIST_NOTE)
    return float(F.cosine_similarity(model.cls_token.detach().flatten(), model.dist_token.detach().flatten(), dim=0))


def attention_rollout(attention_maps: list[Tensor]) -> Tensor:
    """Abnar & Zuidema rollout: per layer average heads, add identity, renormalise rows; multiply through layers.

    Takes per-block (B, heads, N, N) weights; returns (B, N, N) whose rows sum to 1 (row i: how token i's final
    representation draws on each input token).
    """
    rollout = None
    for weights in attention_maps:
        mixed = weights.float().mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device, dtype=mixed.dtype)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    if rollout is None:
        raise DeitError("attention rollout needs at least one block")
    return rollout


def patch_grid(token_rows: Tensor, num_prefix_tokens: int) -> Tensor:
    """(B, N) attention from one token to all tokens -> (B, g, g) over the patch grid (prefix tokens dropped)."""
    patches = token_rows[:, num_prefix_tokens:]
    side = int(round(patches.shape[-1] ** 0.5))
    if side * side != patches.shape[-1]:
        raise DeitError(f"{patches.shape[-1]} patch tokens do not form a square grid")
    return patches.reshape(-1, side, side)


@dataclass
class AgreementCounter:
    """Running counts of how often two predictors pick the same class, and of correct predictions."""

    total: int = 0
    same: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)

    def update(self, predictions: dict[str, Tensor], labels: Tensor | None) -> None:
        """Add one batch of top-1 predictions (name -> (B,) class indices) and, optionally, labels."""
        names = list(predictions)
        self.total += int(next(iter(predictions.values())).shape[0])
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                key = f"{first}_vs_{second}"
                self.same[key] = self.same.get(key, 0) + int((predictions[first] == predictions[second]).sum())
            if labels is not None:
                self.correct[first] = self.correct.get(first, 0) + int((predictions[first] == labels).sum())

    def result(self) -> dict[str, Any]:
        """Fractions in [0, 1]: pairwise agreement and, when labels were given, top-1 accuracy."""
        out: dict[str, Any] = {"num_images": self.total, "agreement": {k: v / self.total for k, v in self.same.items()}}
        if self.correct:
            out["top1_accuracy"] = {k: v / self.total for k, v in self.correct.items()}
        return out


# ---------------------------------------------------------------- writing the results


def _write_similarity(output: Path, embedding: float, per_layer: list[float], num_images: int) -> list[Path]:
    csv_path, json_path, png_path = (output / f"token_similarity.{ext}" for ext in ("csv", "json", "png"))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "stage", "cosine_similarity"])
        writer.writerow([0, "learned embeddings", f"{embedding:.6f}"])
        for index, value in enumerate(per_layer, start=1):
            stage = f"after block {index}" + (" (final norm)" if index == len(per_layer) else "")
            writer.writerow([index, stage, f"{value:.6f}"])
    json_path.write_text(
        dumps_strict(
            {
                "num_images": num_images,
                "embedding": embedding,
                "layers": per_layer,
                "last_layer": per_layer[-1],
                "paper_deit_b_distilled": {
                    "embedding": PAPER_EMBEDDING_SIMILARITY,
                    "last_layer": PAPER_LAST_LAYER_SIMILARITY,
                },
            },
            indent=2,
        )
        + "\n"
    )

    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6), dpi=120)
    axes = figure.subplots()
    layers = list(range(len(per_layer) + 1))
    axes.plot(layers, [embedding] + per_layer, marker="o", label="this model")
    axes.plot(
        [0, len(per_layer)],
        [PAPER_EMBEDDING_SIMILARITY, PAPER_LAST_LAYER_SIMILARITY],
        "x",
        color="tab:red",
        label="paper, DeiT-B distilled (embeddings, last layer)",
    )
    axes.set(
        xlabel="layer (0 = learned embeddings)",
        ylabel="cosine similarity",
        ylim=(-1.05, 1.05),
        title="class vs distillation token",
    )
    axes.xaxis.get_major_locator().set_params(integer=True)  # layers are whole numbers: no "1.5" ticks
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(png_path)
    return [csv_path, json_path, png_path]


def _normalised(maps: Tensor) -> Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


def _write_attention(output: Path, pictures: Tensor, maps: dict[str, Tensor], titles: list[str]) -> list[Path]:
    from matplotlib.figure import Figure

    npz_path, png_path = output / "attention_maps.npz", output / "attention_maps.png"
    np.savez(npz_path, **{name.replace(" ", "_"): value.numpy() for name, value in maps.items()})
    size = pictures.shape[-1]
    columns = ["image"] + list(maps)
    # Constrained layout: it leaves room for the colour bar that tight_layout cannot place beside a grid.
    figure = Figure(figsize=(2.2 * len(columns) + 0.8, 2.3 * len(pictures)), dpi=100, layout="constrained")
    grid = figure.subplots(len(pictures), len(columns), squeeze=False)
    for row, picture in enumerate(pictures):
        rgb = picture.permute(1, 2, 0).numpy()
        for column, name in enumerate(columns):
            axes = grid[row][column]
            axes.imshow(rgb)
            if name != "image":
                heat = F.interpolate(maps[name][row][None, None], size=(size, size), mode="bilinear")[0, 0]
                axes.imshow(_normalised(heat).numpy(), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            axes.set_axis_off()
            axes.set_title(titles[row] if name == "image" else name if row == 0 else "", fontsize=8)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = ScalarMappable(norm=Normalize(0, 1), cmap="inferno")
    figure.colorbar(scale, ax=grid[:, 1:].ravel().tolist(), label="attention, each map from its min (0) to max (1)")
    figure.savefig(png_path)
    return [npz_path, png_path]


# ---------------------------------------------------------------- the command


def _spread_indices(length: int, count: int) -> list[int]:
    # Evenly spaced rather than the first `count`: folder data sets are sorted by class.
    count = min(count, length)
    return sorted({int(i) for i in np.linspace(0, length - 1, count).round()}) if count else []


def _build_teacher(
    name: str | None, path: str | None, num_classes: int, preprocessing: EvalPreprocessing, device: torch.device
) -> torch.nn.Module | None:
    if name is None and path is None:
        return None
    if name is None or path is None:
        raise DeitError(
            "--teacher-model and --teacher-path go together (a teacher without trained weights "
            "would agree by chance only)"
        )
    from deit.distill.teacher import build_teacher

    return build_teacher(
        name,
        num_classes=num_classes,
        checkpoint=path,
        student_mean=preprocessing.mean,
        student_std=preprocessing.std,
        device=device,
    )


@torch.inference_mode()
def analyze(
    checkpoint: str | Path,
    data_path: str | Path | None,
    output: str | Path,
    *,
    data_set: str | None = None,
    num_images: int = 8,
    max_images: int = 1000,
    batch_size: int = 64,
    teacher_model: str | None = None,
    teacher_path: str | Path | None = None,
    device: str | torch.device | None = None,
    workers: int = 0,
    map_classes_by_position: bool = False,
) -> dict[str, Any]:
    """Run the measurements on `data_set`'s validation split and write them under `output`; returns a summary.

    `data_set` and `data_path` default to those the checkpoint was trained on, as `deit eval`'s do (else IMNET).
    The data's classes are matched to the checkpoint's by name, as `deit eval` matches them.
    """
    from deit.data import build_dataset
    from deit.inference.record import training_record

    if num_images < 0 or max_images < 1 or batch_size < 1:
        raise DeitError("--num-images must be >= 0, --max-images and --batch-size >= 1")
    record: dict[str, Any] = {}
    names_recorded = True
    if Path(checkpoint).exists():  # else the loader below says so in one line
        recorded = training_record(checkpoint)
        record, names_recorded = recorded.args, recorded.has_preprocessing
        data_set, data_path = recorded.data(data_set, None if data_path is None else str(data_path))
    data_set = data_set or "IMNET"
    model, meta, resolved = load_inference_model(checkpoint, device)
    if not isinstance(model, VisionTransformer):
        raise DeitError(f"--checkpoint {checkpoint}: analyze needs a DeiT model, this is {type(model).__name__}")
    preprocessing = EvalPreprocessing.from_meta(meta, model)
    dataset = build_dataset(
        data_set,
        None if data_path is None else str(data_path),
        train=False,
        transform=preprocessing.transform(),
        options={"inat_category": str(record.get("inat_category") or "name")},
    )
    if len(dataset) == 0:
        raise DeitError(f"--data-path {data_path}: the {data_set} validation split holds no usable image")
    num_classes = model.num_classes
    class_names = meta.labels(num_classes)
    labels_match = len(getattr(dataset, "classes", [])) == num_classes
    if labels_match:  # scored against labels: by name, as `deit eval` (refused when the names differ)
        match = match_classes(
            class_names if names_recorded else [],  # weights alone: their names were only guessed
            [str(name) for name in dataset.classes],
            source=str(checkpoint),
            data=f"--data-set {data_set}",
            by_position=map_classes_by_position,
        )
        if not match.identity:
            dataset = RelabelledDataset(dataset, match.order)
    teacher = _build_teacher(
        teacher_model, None if teacher_path is None else str(teacher_path), num_classes, preprocessing, resolved
    )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    notes = [] if model.distilled else [NO_DIST_NOTE]
    if labels_match and match.how != SAME_NAMES:
        notes.append(f"classes matched {match.how}")
    if not labels_match:
        notes.append(
            f"the data has {len(getattr(dataset, 'classes', []))} classes, the model {num_classes}: "
            "top-1 accuracy against labels skipped"
        )

    subset = Subset(dataset, _spread_indices(len(dataset), max_images))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers)
    similarity_sum: Tensor | None = None
    counter = AgreementCounter()
    for images, labels in loader:
        images = images.to(resolved)
        layers = model.forward_intermediates(images)
        cls_logits, dist_logits = model.head_logits(layers[-1])
        predictions = {"cls": cls_logits.argmax(-1)}
        if dist_logits is not None:
            predictions["dist"] = dist_logits.argmax(-1)
            predictions["fused"] = (cls_logits + dist_logits).argmax(-1)
            per_layer = token_cosine_similarity(layers).sum(dim=0)
            similarity_sum = per_layer if similarity_sum is None else similarity_sum + per_layer
        if teacher is not None:
            predictions["teacher"] = teacher(images).argmax(-1)
        counter.update(predictions, labels.to(resolved) if labels_match else None)

    files: list[Path] = []
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "model": meta.model, "notes": notes}
    if similarity_sum is not None:
        per_layer_mean = (similarity_sum / counter.total).cpu().tolist()
        embedding = embedding_cosine_similarity(model)
        files += _write_similarity(output, embedding, per_layer_mean, counter.total)
        summary["token_similarity"] = {"embedding": embedding, "layers": per_layer_mean}
    agreement = counter.result()
    if teacher is not None:
        agreement["teacher"] = {"model": teacher_model, "checkpoint": str(teacher_path)}
    agreement["notes"] = notes
    (output / "agreement.json").write_text(dumps_strict(agreement, indent=2) + "\n")
    files.append(output / "agreement.json")
    summary["agreement"] = agreement

    picked = _spread_indices(len(dataset), num_images)
    if picked:
        samples = [dataset[i] for i in picked]
        images = torch.stack([image for image, _ in samples]).to(resolved)
        maps = model.attention_maps(images)
        last = maps[-1].float().mean(dim=1)
        rollout = attention_rollout(maps)
        prefix = model.num_prefix_tokens
        grids = {"cls attention": patch_grid(last[:, 0], prefix), "cls rollout": patch_grid(rollout[:, 0], prefix)}
        if model.distilled:
            grids["dist attention"] = patch_grid(last[:, 1], prefix)
            grids["dist rollout"] = patch_grid(rollout[:, 1], prefix)
        grids = {name: grids[name] for name in sorted(grids, key=lambda n: (n.split()[1], n))}
        predicted = model(images).argmax(-1).tolist()
        truths = [class_names[int(label)] if labels_match else "?" for _, label in samples]
        titles = [f"#{i} true: {truth}\npredicted: {class_names[p]}" for i, truth, p in zip(picked, truths, predicted)]
        files += _write_attention(
            output, preprocessing.denormalize(images).cpu(), {k: v.cpu() for k, v in grids.items()}, titles
        )
        summary["attention_images"] = [
            {"index": i, "true": truth, "predicted": class_names[p]} for i, truth, p in zip(picked, truths, predicted)
        ]
    summary["files"] = [str(path) for path in files]
    (output / "summary.json").write_text(dumps_strict(summary, indent=2) + "\n")
    return summary


__all__ = [
    "AgreementCounter",
    "analyze",
    "attention_rollout",
    "embedding_cosine_similarity",
    "patch_grid",
    "token_cosine_similarity",
]
