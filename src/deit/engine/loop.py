"""One training epoch and one evaluation pass.

The training loop never reads a device value per step: the loss is summed on the device and a non-finite loss
is remembered in a device-side "first bad step" tensor, read only every `log_interval` steps and at the end
of the epoch. `nan_policy="skip"` is the exception: to drop a bad batch before it touches the weights it must
look at the loss, so it syncs once per step (and agrees across processes, which DDP requires).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import unwrap_model
from torch import Tensor, nn

from deit.engine.distributed import all_reduce_sum, any_process, is_distributed
from deit.engine.logging_utils import Progress
from deit.engine.optim import current_lr
from deit.engine.step import TrainStep
from deit.errors import DeitError
from deit.precision import Precision


class NonFiniteLossError(DeitError):
    """The loss became NaN or infinite; `step` is the global step (0-based) where it first happened."""

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


def train_one_epoch(
    step: TrainStep,
    loader: Iterable,
    device: torch.device,
    epoch: int,
    *,
    set_training_mode: bool = True,
    nan_policy: str = "stop",
    max_steps: int = 0,
    log_interval: int = 50,
    progress_mode: str = "quiet",
    global_step: int = 0,
    steps_after: int = 0,
    on_report: Callable[[int, dict[str, float]], None] | None = None,
    on_update: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Train for one epoch with `step` (engine/step.py); returns mean loss, lr, steps, skipped steps, images/s
    and the next global step.

    After every batch `on_update(batches done in the whole run)` is called (a schedule stepped per update).
    Every `log_interval` steps the interval's mean loss and the lr are shown (with the whole run's ETA, counting
    `steps_after` more steps) and handed to `on_report(global step, values)` (the run's TensorBoard).

    Raises `NonFiniteLossError` under `nan_policy="stop"`; the caller then keeps the last good checkpoint.
    """
    optimizer = step.optimizer
    step.model.train(set_training_mode)
    total = len(loader) if hasattr(loader, "__len__") else 0  # type: ignore[arg-type]
    total = min(total, max_steps) if max_steps else total
    progress = Progress(total=total, desc=f"epoch {epoch + 1}", mode=progress_mode, steps_after=steps_after)
    loss_sum = torch.zeros((), device=device)
    interval_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    # The losses of the steps since the last look, summed and checked a chunk at a time: one stack and a few
    # reductions per chunk instead of ~8 small operators per step (~1% of the demo's step).
    pending = LossChunk()
    chunk = log_interval if log_interval else LossChunk.DEFAULT_SIZE
    steps = skipped = interval_steps = 0
    # --nan-policy skip must look at the loss before the update (the one host sync per step of that mode), and
    # every process must agree, which DDP requires.
    should_update = (
        (lambda loss: not any_process(not bool(torch.isfinite(loss)), device)) if nan_policy == "skip" else None
    )
    try:
        for batch in loader:
            if max_steps and steps + skipped >= max_steps:
                break
            images = batch[0].to(device, non_blocking=True)
            targets = batch[1].to(device, non_blocking=True)
            # A third element: the teacher's logits looked up in its table (the in-memory path, data/memory.py).
            teacher_outputs = batch[2] if len(batch) > 2 else None
            loss, updated = step(images, targets, teacher_outputs=teacher_outputs, should_update=should_update)
            progress.step(images.shape[0])
            if on_update is not None:
                on_update(global_step + steps + skipped + 1)
            if not updated:
                skipped += 1
                continue
            pending.add(loss, global_step + steps + skipped)
            steps += 1
            interval_steps += 1
            if len(pending) == chunk:
                first_bad = pending.flush_into(loss_sum, interval_sum, first_bad)
            if log_interval and steps % log_interval == 0:
                _check_finite(first_bad, epoch, global_step, device)
                values = {"loss": interval_sum.item() / interval_steps, "lr": current_lr(optimizer)}
                progress.report(values)
                if on_report is not None:
                    on_report(global_step + steps + skipped, values)
                interval_sum.zero_()
                interval_steps = 0
        first_bad = pending.flush_into(loss_sum, interval_sum, first_bad)
        _check_finite(first_bad, epoch, global_step, device)
    finally:
        progress.close()
    if steps == 0 and skipped == 0:
        raise DeitError("the training loader produced no batch: fewer images than --batch-size?")
    return {
        "loss": loss_sum.item() / max(steps, 1),
        "lr": current_lr(optimizer),
        "steps": steps,
        "skipped_steps": skipped,
        "images_per_second": progress.images_per_second,
        "global_step": global_step + steps + skipped,
    }


class LossChunk:
    """Detached losses (with their global step numbers) of the steps since the last look, kept on the device."""

    DEFAULT_SIZE = 64

    def __init__(self) -> None:
        self.losses: list[Tensor] = []
        self.steps: list[int] = []

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: Tensor, global_step: int) -> None:
        """Keep one step's loss (no operator runs)."""
        self.losses.append(loss)
        self.steps.append(global_step)

    def flush_into(self, loss_sum: Tensor, interval_sum: Tensor, first_bad: Tensor) -> Tensor:
        """Add the kept losses to both sums (in place) and return `first_bad`: the global step of the first
        non-finite loss seen so far, -1 if none. Nothing is read on the host."""
        if not self.losses:
            return first_bad
        values = torch.stack(self.losses).float()
        total = values.sum()
        loss_sum += total
        interval_sum += total
        bad = ~torch.isfinite(values)
        steps = torch.tensor(self.steps, dtype=torch.long).to(values.device, non_blocking=True)
        first_here = torch.where(bad.any(), steps[bad.int().argmax()], -1)
        self.losses, self.steps = [], []
        return torch.where(first_bad < 0, first_here, first_bad)


def _check_finite(first_bad: Tensor, epoch: int, epoch_start_step: int, device: torch.device) -> None:
    """Read the device-side flag (a sync, but only every log interval); raise on every rank together."""
    bad_step = int(first_bad.item())
    if any_process(bad_step >= 0, device):
        where = (
            f"step {bad_step - epoch_start_step} of the epoch (global step {bad_step})"
            if bad_step >= 0
            else "a step of another process"
        )
        raise NonFiniteLossError(f"the loss became NaN/inf in epoch {epoch + 1}, {where}", epoch=epoch, step=bad_step)


def _logits_from(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor | None]:
    """(class-head logits, distillation-head logits or None) in any mode; plain models have one head."""
    if hasattr(model, "head_logits") and hasattr(model, "forward_prefix_features"):
        return model.head_logits(model.forward_prefix_features(images))
    outputs = model(images)
    if isinstance(outputs, (tuple, list)):
        return outputs[0], outputs[1]
    return outputs, None


def _topk_correct(logits: Tensor, targets: Tensor, k: int) -> Tensor:
    # Not timm.utils.accuracy: it returns percent of each batch as float, so summing batches would need a
    # multiply-back with float rounding; this is an exact integer count that stays on the device (no sync).
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == targets[:, None]).any(dim=1).sum()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    *,
    teacher: nn.Module | None = None,
    precision: Precision | None = None,
    distributed: bool = False,
    confusion: bool = False,
    max_batches: int = 0,
    teacher_cache: dict[int, Tensor] | None = None,
    per_image: list[dict[str, Tensor]] | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 of the class head, the distillation head and their fused average, loss, teacher agreement.

    Keys: `acc1`, `acc5`, `loss` (fused output, the official names), `cls_acc1/5`, and for distilled models
    `dist_acc1/5` and `cls_dist_agreement`; with a teacher `teacher_acc1` and `teacher_agreement` (fused),
    `cls_teacher_agreement`, `dist_teacher_agreement` -- all in percent. `distributed`: sum over processes.
    `teacher_cache`: the teacher's decisions by batch, filled on the first call and reused after: the teacher is
    frozen and the validation loader deterministic, so its forward pass is paid once per run, not every epoch.
    `per_image`: a list that receives, per batch, the true class, fused prediction, its softmax confidence and
    the teacher's call (on the CPU) -- `deit eval`'s per-class report and worst mistakes.
    """
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    precision = precision or Precision("fp32")
    names = [
        "images",
        "loss",
        "cls1",
        "cls5",
        "dist1",
        "dist5",
        "fused1",
        "fused5",
        "cls_dist",
        "teacher1",
        "teacher_fused",
        "teacher_cls",
        "teacher_dist",
    ]
    counts = torch.zeros(len(names), dtype=torch.float64, device=device)
    matrix: Tensor | None = None
    distilled = False
    for batch_index, (images, targets) in enumerate(loader):
        if max_batches and batch_index >= max_batches:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        teacher_prediction = None if teacher_cache is None else teacher_cache.get(batch_index)
        with precision.autocast(device):
            cls_logits, dist_logits = _logits_from(net, images)
            if teacher is not None and teacher_prediction is None:
                teacher_prediction = teacher(images).argmax(1)
                if teacher_cache is not None:
                    teacher_cache[batch_index] = teacher_prediction
        cls_logits = cls_logits.float()
        fused = cls_logits if dist_logits is None else (cls_logits + dist_logits.float()) / 2
        batch = torch.zeros_like(counts)
        batch[0] = images.shape[0]
        batch[1] = F.cross_entropy(fused, targets, reduction="sum")
        batch[2], batch[3] = _topk_correct(cls_logits, targets, 1), _topk_correct(cls_logits, targets, 5)
        batch[6], batch[7] = _topk_correct(fused, targets, 1), _topk_correct(fused, targets, 5)
        prediction = fused.argmax(1)
        if dist_logits is not None:
            distilled = True
            batch[4], batch[5] = (
                _topk_correct(dist_logits.float(), targets, 1),
                _topk_correct(dist_logits.float(), targets, 5),
            )
            batch[8] = (cls_logits.argmax(1) == dist_logits.argmax(1)).sum()
        if teacher_prediction is not None:
            batch[9] = (teacher_prediction == targets).sum()
            batch[10] = (prediction == teacher_prediction).sum()
            batch[11] = (cls_logits.argmax(1) == teacher_prediction).sum()
            if dist_logits is not None:
                batch[12] = (dist_logits.argmax(1) == teacher_prediction).sum()
        counts += batch
        if per_image is not None:
            record = {
                "target": targets,
                "prediction": prediction,
                "confidence": fused.softmax(1).gather(1, prediction[:, None])[:, 0],
            }
            if teacher_prediction is not None:
                record["teacher"] = teacher_prediction
            per_image.append({key: value.detach().cpu() for key, value in record.items()})
        if confusion:
            classes = fused.shape[1]
            if matrix is None:
                matrix = torch.zeros(classes * classes, dtype=torch.long, device=device)
            matrix += torch.bincount(targets * classes + prediction, minlength=classes * classes)
    net.train(was_training)
    if distributed and is_distributed():
        all_reduce_sum(counts)
        if matrix is not None:
            all_reduce_sum(matrix)
    values = dict(zip(names, counts.tolist()))
    n = max(values["images"], 1.0)
    percent = {k: 100.0 * values[k] / n for k in names[2:]}
    metrics: dict[str, Any] = {
        "acc1": percent["fused1"],
        "acc5": percent["fused5"],
        "loss": values["loss"] / n,
        "cls_acc1": percent["cls1"],
        "cls_acc5": percent["cls5"],
        "num_images": int(values["images"]),
    }
    if distilled:
        metrics.update(dist_acc1=percent["dist1"], dist_acc5=percent["dist5"], cls_dist_agreement=percent["cls_dist"])
    if teacher is not None:
        metrics.update(
            teacher_acc1=percent["teacher1"],
            teacher_agreement=percent["teacher_fused"],
            cls_teacher_agreement=percent["teacher_cls"],
        )
        if distilled:
            metrics["dist_teacher_agreement"] = percent["teacher_dist"]
    if matrix is not None:
        classes = int(matrix.numel() ** 0.5)
        metrics["confusion_matrix"] = matrix.view(classes, classes).tolist()
    return metrics
