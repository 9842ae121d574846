"""The teacher table: looking the teacher's logits up gives the loss and gradients of running it per step, and
students of the same teacher share one table (in memory, and through the cache file across processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deit.data.memory import BatchAugment, ViewSet
from deit.distill import DistillationLoss
from deit.distill.teacher import FrozenTeacher
from deit.distill.teacher_table import cached_table, compute_table, table_key


def _setup(hflip: float = 0.5) -> tuple[BatchAugment, FrozenTeacher]:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    augment = BatchAugment(images, ViewSet(size=8, padding=2, hflip=hflip), (0.5,) * 3, (0.25,) * 3)
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return augment, FrozenTeacher(network, num_classes=3)


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_looked_up_logits_give_the_per_step_loss_and_gradients(kind: str) -> None:
    augment, teacher = _setup()
    table = compute_table(teacher, augment, images=5, views=augment.views.count, batch_size=7)
    assert table.shape == (5, 50, 3)
    indices, view = torch.tensor([0, 4, 2, 2, 1, 3]), torch.tensor([0, 49, 24, 25, 7, 30])
    images = augment(indices, view)
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 6))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    criterion = DistillationLoss(
        nn.CrossEntropyLoss(label_smoothing=0.1), teacher, kind, 0.7, 3.0, kl_reduction="batchmean"
    )
    results = []
    for teacher_outputs in (None, table[indices, view]):
        student.zero_grad()
        outputs = student(images).split(3, dim=1)
        loss = criterion(images, outputs, labels, teacher_outputs)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in student.parameters()]))
    (per_step, per_step_grads), (looked_up, looked_up_grads) = results
    torch.testing.assert_close(looked_up, per_step, rtol=1e-6, atol=1e-6)
    for a, b in zip(looked_up_grads, per_step_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_table_per_key_shared_in_memory_and_through_the_cache_file(tmp_path: Path, monkeypatch) -> None:
    from deit.distill import teacher_table

    augment, teacher = _setup(hflip=0.0)
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return compute_table(teacher, augment, images=5, views=augment.views.count)

    key = table_key("abc", "noise", augment.views.describe())
    first = cached_table(key, compute, tmp_path, torch.device("cpu"))
    assert len(calls) == 1 and (tmp_path / f"teacher_table_{key}.safetensors").is_file()
    assert cached_table(key, compute, tmp_path, torch.device("cpu")) is not None and len(calls) == 1
    monkeypatch.setattr(teacher_table, "_TABLES", {})  # another process: nothing in memory, the file is there
    again = cached_table(key, compute, tmp_path, torch.device("cpu"))
    assert len(calls) == 1 and torch.equal(first, again)
    assert table_key("abd", "noise", augment.views.describe()) != key  # other teacher weights: another table
