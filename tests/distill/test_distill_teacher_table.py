"""The teacher table: looking the teacher's logits up gives the loss and gradients of running it per step, and
students of the same teacher share one table (in memory, and through the cache file across processes)."""

from __future__ import annotations

import re
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


def _plant(path: Path, kind: str) -> None:
    """Damage a stored table the way a careless or hostile copy would."""
    from safetensors.torch import load_file, save_file

    good = load_file(str(path))["logits"]
    if kind == "nan":
        good[0, 0, 0] = float("nan")
        save_file({"logits": good}, str(path))  # no recorded digest either, as a planted file would have
    elif kind == "nan_with_digest":  # a forger who recomputed the digest: the finite check still holds
        from deit.integrity import tensor_digest

        good[0, 0, 0] = float("nan")
        save_file(
            {"logits": good}, str(path), {"key": path.stem.split("_")[-1], "sha256": tensor_digest({"logits": good})}
        )
    elif kind == "shape":
        save_file({"logits": good[:2].contiguous()}, str(path))
    elif kind == "dtype":
        save_file({"logits": good.double()}, str(path))
    elif kind == "missing":
        save_file({"other": good}, str(path))
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "flipped":  # same shape and dtype, one value changed: only the digest sees it
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "oversized":
        path.write_bytes(path.read_bytes() + b"\0" * (1 << 17))


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("nan", "do not match the key and digest"),
        ("nan_with_digest", "NaN or infinite logits"),
        ("shape", "its logits are (2, 25, 3), not (images, views, classes) = (5, 25, 3)"),
        ("dtype", "torch.float64, not float32"),
        ("missing", "holds no 'logits' tensor"),
        ("truncated", "unreadable"),
        ("flipped", "do not match the key and digest"),
        ("oversized", "more than a table of this shape takes"),
    ],
)
def test_a_stored_table_that_fails_a_check_is_rebuilt_with_one_line_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, why: str
) -> None:
    from deit.distill import teacher_table

    augment, teacher = _setup(hflip=0.0)
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return compute_table(teacher, augment, images=5, views=augment.views.count)

    key = table_key("abc", "noise", augment.views.describe())
    shape = (5, augment.views.count, 3)
    monkeypatch.setattr(teacher_table, "_TABLES", {})  # nothing from an earlier test in memory
    first = cached_table(key, compute, tmp_path, torch.device("cpu"), shape=shape, origin="teacher abc")
    path = tmp_path / f"teacher_table_{key}.safetensors"
    _plant(path, kind)
    monkeypatch.setattr(teacher_table, "_TABLES", {})
    with pytest.warns(UserWarning, match=re.escape(why)) as caught:
        again = cached_table(key, compute, tmp_path, torch.device("cpu"), shape=shape)
    assert len(calls) == 2 and torch.equal(first, again) and "rebuilt" in str(caught[0].message)
    monkeypatch.setattr(teacher_table, "_TABLES", {})  # the rebuilt file passes every check: read, not recomputed
    assert torch.equal(cached_table(key, compute, tmp_path, torch.device("cpu"), shape=shape), first)
    assert len(calls) == 2


def test_a_teacher_with_nan_logits_is_refused_not_trained_on(tmp_path: Path) -> None:
    from deit.errors import DeitError

    with pytest.raises(DeitError, match="the teacher's logits are not finite"):
        cached_table("k", lambda: torch.full((2, 1, 3), float("nan")), tmp_path, torch.device("cpu"))
