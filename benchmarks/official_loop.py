"""The baseline: the official DeiT training step, built from timm's model, as the released recipe runs it.

What the official `train_one_epoch` does per batch, kept here: autocast around forward and loss, the
distillation loss with the teacher called inside it, `loss.item()` for logging plus the `isfinite` check,
`optimizer.zero_grad()`, backward and AdamW (timm's `create_optimizer`, the multi-tensor — not fused — kernel)
through the loss scaler under fp16, `torch.cuda.synchronize()`, then the model EMA update; mixup/cutmix on the
batch first (timm's `Mixup`, soft-target cross-entropy), as the released recipe does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OfficialDistillationLoss(nn.Module):
    """L = (1-α)·base(z_cls, y) + α·D, D hard = CE(z_dist, argmax z_t), soft = τ²·KL sum / numel (as released)."""

    def __init__(
        self,
        base_criterion: nn.Module,
        teacher: nn.Module,
        distillation_type: str,
        alpha: float = 0.5,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        self.base_criterion, self.teacher = base_criterion, teacher
        self.distillation_type, self.alpha, self.tau = distillation_type, alpha, tau

    def forward(self, inputs: Tensor, outputs: tuple[Tensor, Tensor], labels: Tensor) -> Tensor:
        """The loss of one batch; the teacher sees the same inputs as the student."""
        class_logits, distillation_logits = (outputs, None) if isinstance(outputs, Tensor) else outputs
        base_loss = self.base_criterion(class_logits, labels)
        if self.distillation_type == "none":
            return base_loss
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        if self.distillation_type == "hard":
            distillation = F.cross_entropy(distillation_logits, teacher_logits.argmax(dim=1))
        else:
            tau = self.tau
            distillation = (
                F.kl_div(
                    F.log_softmax(distillation_logits / tau, dim=1),
                    F.log_softmax(teacher_logits / tau, dim=1),
                    reduction="sum",
                    log_target=True,
                )
                * (tau * tau)
                / distillation_logits.numel()
            )
        return base_loss * (1 - self.alpha) + distillation * self.alpha


class OfficialStep:
    """One step of the official loop (see the module docstring); returns the loss as a Python float."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        *,
        device: torch.device,
        dtype: torch.dtype | None,
        distillation_type: str,
        batch_size: int,
        num_classes: int = 1000,
        recipe: bool = True,
    ) -> None:
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.utils import ModelEmaV3, NativeScaler

        self.student = student.train()
        if hasattr(student, "set_distilled_training"):  # timm returns both heads in training only when asked
            student.set_distilled_training(True)
        self.teacher = teacher.eval() if teacher is not None else None
        # `recipe`: the paper's mixup 0.8 / cutmix 1.0 and EMA 0.99996 (official defaults); off for parity checks.
        self.mixup = (
            Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=num_classes) if recipe else None
        )
        self.model_ema = ModelEmaV3(student, decay=0.99996) if recipe else None
        base = SoftTargetCrossEntropy() if recipe else LabelSmoothingCrossEntropy(smoothing=0.1)
        self.criterion = OfficialDistillationLoss(base, self.teacher, distillation_type)
        # The official recipe: lr 5e-4 × batch / 512, weight decay 0.05 except on 1-D parameters and tokens.
        self.optimizer = create_optimizer_v2(student, opt="adamw", lr=5e-4 * batch_size / 512, weight_decay=0.05)
        self.scaler = NativeScaler() if dtype == torch.float16 else None
        self.device, self.dtype = device, dtype

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """The loss without an update (for the parity check)."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return self.criterion(images, self.student(images), labels)

    def __call__(self, images: Tensor, labels: Tensor) -> float:
        """Update the student on one batch, as the official loop does."""
        if self.mixup is not None:
            images, labels = self.mixup(images, labels)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            outputs = self.student(images)
            loss = self.criterion(images, outputs, labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise RuntimeError(f"loss is {loss_value}, stopping training")
        self.optimizer.zero_grad()
        if self.scaler is not None:
            self.scaler(loss, self.optimizer, parameters=self.student.parameters())
        else:
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if self.model_ema is not None:
            self.model_ema.update(self.student)
        return loss_value
