"""The in-memory run's validation set: each image transformed once, by the data set's own transform."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from deit.data import DIGITS_MEAN, DIGITS_STD, build_transform
from deit.data.digits import DigitsDataset
from deit.data.memory_eval import PreparedEvalSet, eval_tensor_bytes
from deit.engine.loop import evaluate
from deit.models import create_model


def _val_set() -> DigitsDataset:
    transform = build_transform(False, input_size=32, mean=DIGITS_MEAN, std=DIGITS_STD, eval_crop_ratio=1.0)
    return DigitsDataset(train=False, transform=transform)


def test_batches_are_the_per_image_loaders_pixels_and_labels_in_order() -> None:
    val_set = _val_set()
    prepared = PreparedEvalSet(val_set, batch_size=100, device=torch.device("cpu"))
    assert len(prepared) == 4 and eval_tensor_bytes(val_set, 32) == 360 * 3 * 32 * 32 * 4
    ours = list(prepared)
    reference = list(DataLoader(val_set, batch_size=100))
    assert [len(labels) for _, labels in ours] == [100, 100, 100, 60]
    for (images, labels), (expected_images, expected_labels) in zip(ours, reference):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    # twice over, the same batches: nothing is drawn or consumed
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(ours, prepared))


def test_evaluation_from_memory_counts_as_the_per_image_loader() -> None:
    torch.manual_seed(0)
    model = create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=10)
    val_set = _val_set()
    device = torch.device("cpu")
    ours = evaluate(model, PreparedEvalSet(val_set, batch_size=256, device=device), device)
    reference = evaluate(model, DataLoader(val_set, batch_size=24), device)
    # Other batch sizes can move a logit in its last bit, so a tie could flip: allow one image of 360.
    assert abs(ours["acc1"] - reference["acc1"]) <= 100 / 360 + 1e-9
    assert abs(ours["loss"] - reference["loss"]) < 1e-4
