"""train_one_epoch (no per-step host sync, NaN guard) and evaluate (three heads, teacher agreement)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deit import create_model
from deit.distill import DistillationLoss
from deit.engine.loop import NonFiniteLossError, evaluate, train_one_epoch
from deit.engine.step import TrainStep
from deit.errors import DeitError
from deit.precision import resolve_precision

CPU = torch.device("cpu")


def tiny_vit(distilled: bool = True) -> nn.Module:
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return create_model(name, img_size=16, patch_size=8, depth=1, embed_dim=16, num_heads=2, num_classes=4)


def batches(steps: int, batch: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, 16, 16, generator=generator), torch.randint(0, 4, (batch,), generator=generator))
        for _ in range(steps)
    ]


def make_step(model: nn.Module, optimizer_class: type = torch.optim.AdamW, precision: str = "none") -> TrainStep:
    optimizer = optimizer_class(model.parameters(), lr=1e-3)
    criterion = DistillationLoss(nn.CrossEntropyLoss(), None, "none", 0.0, 1.0)
    return TrainStep(model, criterion, optimizer, precision=resolve_precision(precision, CPU))


def run_epoch(model: nn.Module, data: list, optimizer_class: type = torch.optim.AdamW, **kwargs) -> dict:
    return train_one_epoch(make_step(model, optimizer_class), data, CPU, 0, **kwargs)


def poison(data: list, index: int) -> list:
    """The same batches with NaN images at position `index`: the fault comes from the data, not a hook."""
    images, labels = data[index]
    return data[:index] + [(torch.full_like(images, float("nan")), labels)] + data[index + 1 :]


def count_device_reads(monkeypatch: pytest.MonkeyPatch, steps: int) -> int:
    calls = []
    for name in ("item", "__bool__", "tolist", "__float__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _f=original: calls.append(1) or _f(self))
    # SGD: CPU AdamW reads its own step counters with .item(), which the CUDA fused kernel does not.
    run_epoch(tiny_vit(), batches(steps), torch.optim.SGD, log_interval=0)
    monkeypatch.undo()
    return len(calls)


def test_no_host_sync_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading a device value (`.item()`, `bool()`, ...) is what syncs; their number must not grow with the steps.
    assert count_device_reads(monkeypatch, 2) == count_device_reads(monkeypatch, 6)


def test_epoch_trains_and_reports() -> None:
    model = tiny_vit()
    before = model.head.weight.detach().clone()
    stats = run_epoch(model, batches(4), global_step=10)
    assert stats["steps"] == 4 and stats["global_step"] == 14 and stats["skipped_steps"] == 0
    assert 0 < stats["loss"] < 10 and not torch.equal(before, model.head.weight)


def test_nan_stops_naming_the_step() -> None:
    with pytest.raises(NonFiniteLossError, match=r"step 2 of the epoch \(global step 12\)") as info:
        run_epoch(tiny_vit(), poison(batches(5), 2), global_step=10, log_interval=0)
    assert info.value.step == 12 and isinstance(info.value, DeitError)


def test_nan_skip_leaves_the_weights_untouched_by_the_bad_batch() -> None:
    model = tiny_vit()
    stats = run_epoch(model, poison(batches(4), 1), nan_policy="skip")
    assert stats["skipped_steps"] == 1 and stats["steps"] == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bf16_autocast_on_cpu_trains() -> None:
    model = tiny_vit()
    stats = train_one_epoch(make_step(model, precision="bf16"), batches(2), CPU, 0)
    assert stats["steps"] == 2 and 0 < stats["loss"] < 10
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights


def test_max_steps_caps_the_epoch() -> None:
    assert run_epoch(tiny_vit(), batches(6), max_steps=2)["steps"] == 2


def test_evaluate_reports_three_heads_consistently() -> None:
    model = tiny_vit().eval()
    data = batches(3, batch=8, seed=1)
    metrics = evaluate(model, data, CPU, confusion=True)
    images = torch.cat([x for x, _ in data])
    targets = torch.cat([y for _, y in data])
    with torch.no_grad():
        cls_logits, dist_logits = model.head_logits(model.forward_features(images))
        fused = model(images)  # eval mode: the average of both heads
    assert metrics["num_images"] == 24
    assert metrics["acc1"] == pytest.approx(100 * (fused.argmax(1) == targets).float().mean().item())
    assert metrics["cls_acc1"] == pytest.approx(100 * (cls_logits.argmax(1) == targets).float().mean().item())
    assert metrics["dist_acc1"] == pytest.approx(100 * (dist_logits.argmax(1) == targets).float().mean().item())
    assert metrics["loss"] == pytest.approx(nn.functional.cross_entropy(fused, targets).item(), rel=1e-5)
    assert metrics["acc5"] == 100.0  # four classes: top-5 covers them all
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.sum() == 24 and matrix.diag().sum() == round(metrics["acc1"] * 24 / 100)


class ScriptedTeacher(nn.Module):
    """A teacher independent of the student: it answers each call with the next batch of fixed labels."""

    def __init__(self, labels: torch.Tensor, classes: int = 4) -> None:
        super().__init__()
        self.labels, self.classes, self.calls = labels, classes, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        start = self.calls * images.shape[0]
        self.calls += 1
        return nn.functional.one_hot(self.labels[start : start + images.shape[0]], self.classes).float()


def test_teacher_agreement_is_counted_per_head() -> None:
    model = tiny_vit().eval()
    with torch.no_grad():  # constant heads: class head says 0, dist head 1, their average 2
        for head, bias in ((model.head, [2.0, 0.0, 1.5, 0.0]), (model.head_dist, [0.0, 2.0, 1.5, 0.0])):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    teacher = ScriptedTeacher(torch.tensor([0, 0, 0, 0, 0, 1, 2, 2]))
    data = [(torch.randn(4, 3, 16, 16), targets[:4]), (torch.randn(4, 3, 16, 16), targets[4:])]
    metrics = evaluate(model, data, CPU, teacher=teacher)
    # by hand over the 8 images: teacher says 0 five times, 1 once, 2 twice; right on images 0, 4, 5, 6
    assert metrics["cls_teacher_agreement"] == 100 * 5 / 8
    assert metrics["dist_teacher_agreement"] == 100 * 1 / 8
    assert metrics["teacher_agreement"] == 100 * 2 / 8
    assert metrics["teacher_acc1"] == 100 * 4 / 8
    assert (metrics["cls_acc1"], metrics["dist_acc1"], metrics["acc1"]) == (25.0, 25.0, 25.0)
    assert metrics["cls_dist_agreement"] == 0.0 and teacher.calls == 2


def test_plain_model_has_one_head() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    metrics = evaluate(model, batches(2), CPU)
    assert metrics["acc1"] == metrics["cls_acc1"] and "dist_acc1" not in metrics


def test_precision_choices() -> None:
    assert resolve_precision("auto", CPU).dtype is None
    assert resolve_precision("bf16", CPU).dtype is torch.bfloat16
    with pytest.raises(DeitError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", CPU)


def test_teacher_cache_runs_the_frozen_teacher_once_with_the_same_metrics() -> None:
    model = tiny_vit().eval()
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    data = [(torch.randn(4, 3, 16, 16), targets[:4]), (torch.randn(4, 3, 16, 16), targets[4:])]
    labels = torch.tensor([0, 1, 1, 3, 0, 2, 2, 3])
    uncached = evaluate(model, data, CPU, teacher=ScriptedTeacher(labels))
    teacher, cache = ScriptedTeacher(labels), {}
    first = evaluate(model, data, CPU, teacher=teacher, teacher_cache=cache)
    second = evaluate(model, data, CPU, teacher=teacher, teacher_cache=cache)
    assert teacher.calls == 2 and sorted(cache) == [0, 1]  # the second epoch asked the cache, not the teacher
    assert first == second == uncached and first["teacher_acc1"] == 100 * 6 / 8


def test_loss_chunk_sums_and_finds_the_first_bad_step_across_chunks() -> None:
    from deit.engine.loop import LossChunk

    chunk = LossChunk()
    loss_sum, interval_sum = torch.zeros(()), torch.zeros(())
    first_bad = torch.full((), -1, dtype=torch.long)
    for step, value in enumerate([1.0, 2.0, 3.0]):
        chunk.add(torch.tensor(value), 100 + step)
    first_bad = chunk.flush_into(loss_sum, interval_sum, first_bad)
    assert (loss_sum.item(), interval_sum.item(), first_bad.item(), len(chunk)) == (6.0, 6.0, -1, 0)
    for step, value in [(103, 4.0), (104, float("inf")), (105, float("nan"))]:
        chunk.add(torch.tensor(value), step)
    first_bad = chunk.flush_into(loss_sum, interval_sum, first_bad)
    assert first_bad.item() == 104  # the first non-finite one
    chunk.add(torch.tensor(float("nan")), 106)
    assert chunk.flush_into(loss_sum, interval_sum, first_bad).item() == 104  # a later one does not move it
    assert chunk.flush_into(loss_sum, interval_sum, first_bad).item() == 104  # nothing kept: unchanged


def test_nan_after_a_whole_chunk_is_named_with_its_step() -> None:
    from deit.engine.loop import LossChunk

    steps = LossChunk.DEFAULT_SIZE + 3
    tiny_batches = batches(steps, batch=2)
    with pytest.raises(NonFiniteLossError, match=rf"step {steps - 2} of the epoch"):
        run_epoch(tiny_vit(), poison(tiny_batches, steps - 2), log_interval=0)
