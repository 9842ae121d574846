"""`deit analyze`: token similarity, head agreement and attention maps written as tables, JSON and PNGs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deit
from deit.cli import main
from deit.inference.analyze import analyze, attention_rollout, embedding_cosine_similarity, patch_grid
from deit.inference.preprocess import EvalPreprocessing
from tiny_checkpoints import CLASS_NAMES, TINY_OVERRIDES, TINY_SIZE, save_tiny_checkpoint


def test_rollout_rows_sum_to_one_and_follow_the_recursion() -> None:
    maps = [torch.rand(2, 3, 5, 5).softmax(dim=-1) for _ in range(4)]
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 5))

    # One head, two layers, by hand: each layer becomes (A + I) / 2 (rows of A sum to 1), then R = A2' @ A1'.
    first = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
    second = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    expected = torch.tensor([[0.5, 0.5], [0.5, 0.5]]) @ torch.tensor([[0.75, 0.25], [0.0, 1.0]])
    torch.testing.assert_close(attention_rollout([first, second])[0], expected)


def test_patch_grid_drops_the_prefix_tokens() -> None:
    rows = torch.arange(2 + 16, dtype=torch.float32)[None]
    torch.testing.assert_close(patch_grid(rows, 2)[0], torch.arange(2, 18, dtype=torch.float32).view(4, 4))


def test_embedding_similarity_of_equal_and_opposite_tokens() -> None:
    model = deit.create_model("deit_tiny_distilled_patch16_224", img_size=TINY_SIZE, **TINY_OVERRIDES)
    with torch.no_grad():
        model.dist_token.copy_(model.cls_token)
        assert embedding_cosine_similarity(model) == pytest.approx(1.0, abs=1e-6)
        model.dist_token.copy_(-model.cls_token)
        assert embedding_cosine_similarity(model) == pytest.approx(-1.0, abs=1e-6)


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


@pytest.mark.slow
def test_analyze_writes_similarity_agreement_and_attention(
    tiny_checkpoint: Path,
    tiny_plain_checkpoint: Path,
    image_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    output = tmp_path / "analysis"
    code = main(
        [
            "analyze",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data-path",
            str(image_dataset),
            "--output",
            str(output),
            "--num-images",
            "3",
            "--batch-size",
            "4",
            "--teacher-model",
            "deit_tiny_patch16_224",
            "--teacher-path",
            str(tiny_plain_checkpoint),
        ]
    )
    assert code == 0
    assert "last layer" in capsys.readouterr().out

    with open(output / "token_similarity.csv") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(row["cosine_similarity"]) for row in rows]
    assert len(values) == 1 + TINY_OVERRIDES["depth"]  # the learned embeddings, then each block
    assert all(-1.0 <= value <= 1.0 for value in values)
    table = json.loads((output / "token_similarity.json").read_text())
    assert table["num_images"] == 2 * len(CLASS_NAMES)
    assert table["layers"] == pytest.approx(values[1:], abs=1e-6)
    model, _ = deit.models.factory.load_trained_model(tiny_checkpoint)
    assert table["embedding"] == pytest.approx(embedding_cosine_similarity(model), abs=1e-6)

    agreement = json.loads((output / "agreement.json").read_text())
    pairs = agreement["agreement"]
    assert {"cls_vs_dist", "cls_vs_teacher", "dist_vs_teacher", "fused_vs_teacher"} <= set(pairs)
    assert all(0.0 <= value <= 1.0 for value in pairs.values())
    assert set(agreement["top1_accuracy"]) == {"cls", "dist", "fused", "teacher"}

    arrays = np.load(output / "attention_maps.npz")
    grid = TINY_SIZE // TINY_OVERRIDES["patch_size"]
    assert set(arrays.files) == {"cls_attention", "dist_attention", "cls_rollout", "dist_rollout"}
    for name in arrays.files:
        assert arrays[name].shape == (3, grid, grid)
        assert (arrays[name] >= 0).all() and (arrays[name].sum(axis=(1, 2)) <= 1 + 1e-5).all()
    for png in ("token_similarity.png", "attention_maps.png"):
        _assert_png(output / png)


@pytest.mark.slow
def test_analyze_a_plain_model_skips_the_distillation_parts(
    tiny_plain_checkpoint: Path, image_dataset: Path, tmp_path: Path
) -> None:
    summary = analyze(tiny_plain_checkpoint, image_dataset, tmp_path, num_images=2, device="cpu")
    assert any("no distillation token" in note for note in summary["notes"])
    assert not (tmp_path / "token_similarity.csv").exists()
    assert json.loads((tmp_path / "agreement.json").read_text())["agreement"] == {}
    assert set(np.load(tmp_path / "attention_maps.npz").files) == {"cls_attention", "cls_rollout"}
    _assert_png(tmp_path / "attention_maps.png")


def test_analyze_reads_the_checkpoints_data_and_titles_true_and_predicted(image_dataset: Path, tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "checkpoint.pth")
    payload = torch.load(checkpoint, weights_only=True)
    payload["args"].update(data_set="IMAGEFOLDER", data_path=str(image_dataset))  # what `deit train` records
    torch.save(payload, checkpoint)
    summary = analyze(checkpoint, None, tmp_path / "out", num_images=3, device="cpu")  # no data flags
    drawn = summary["attention_images"]
    indices = [entry["index"] for entry in drawn]
    # Two validation images per class, in class order: the true class is the folder the image came from.
    assert [entry["true"] for entry in drawn] == [CLASS_NAMES[i // 2] for i in indices] == CLASS_NAMES
    model, meta = deit.models.factory.load_trained_model(checkpoint)
    transform = EvalPreprocessing.from_meta(meta, model).transform()
    dataset = deit.data.build_dataset("IMAGEFOLDER", str(image_dataset), train=False, transform=transform)
    with torch.no_grad():
        logits = model(torch.stack([dataset[i][0] for i in indices]))
    assert [entry["predicted"] for entry in drawn] == [CLASS_NAMES[k] for k in logits.argmax(-1).tolist()]


def test_analyze_matches_classes_by_name_as_eval_does(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from deit.errors import DeitError
    from image_folders import write_class_folders

    other = write_class_folders(tmp_path / "xyz", classes=3, per_class=1, class_prefix="x")
    with pytest.raises(DeitError, match="its class names are not .*'x0' vs 'apple'.*--map-classes-by-position"):
        analyze(tiny_checkpoint, other, tmp_path / "out", data_set="IMAGEFOLDER", num_images=0, device="cpu")
    summary = analyze(
        tiny_checkpoint,
        other,
        tmp_path / "out",
        data_set="IMAGEFOLDER",
        num_images=0,
        device="cpu",
        map_classes_by_position=True,
    )
    assert "classes matched by position, as --map-classes-by-position asks (the names differ)" in summary["notes"]
