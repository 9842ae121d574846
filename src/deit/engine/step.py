"""One training step of `deit train`: mixup, forward, the DeiT loss with the teacher, backward, clip, optimizer, EMA.

The epoch loop (`engine/loop.py`), `deit bench --train` and the scripts in `benchmarks/` all run this object and
nothing else, so a benchmark figure describes the code users train with. Nothing here reads a device value:
the loss comes back as a device tensor and the caller decides when to look at it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from timm.utils import unwrap_model
from torch import Tensor, nn

from deit.engine.fused_adamw import DirectFusedAdamW
from deit.precision import Precision

Criterion = Callable[[Tensor, Any, Tensor], Tensor]


class TrainStep:
    """`step(images, targets)` updates the model on one batch; `mix`, `loss` and `update` are its three parts.

    `model` is what runs forward (possibly DDP- or compile-wrapped); `criterion(inputs, outputs, targets)` is a
    `deit.distill.DistillationLoss`; `model_ema` is timm's `ModelEmaV3` or None; `mixup_fn` timm's `Mixup` or None.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion,
        optimizer: torch.optim.Optimizer,
        *,
        precision: Precision,
        clip_grad: float | None = None,
        model_ema: Any = None,
        mixup_fn: Any = None,
        accum_steps: int = 1,
    ) -> None:
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.precision, self.clip_grad = precision, clip_grad
        self.model_ema, self.mixup_fn = model_ema, mixup_fn
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self._doubles_batch = bool(getattr(criterion, "doubles_batch", False))
        self.accum_steps = accum_steps  # batches whose gradients add up before one optimizer step
        self._micro_steps = 0
        # torch's fused AdamW called directly (engine/fused_adamw.py): the same kernel, ~6% of a small step less.
        # Not under the fp16 scaler, which hands the kernel its scale and inf flag through optimizer.step().
        direct = DirectFusedAdamW.supports(optimizer) and precision.scaler is None
        self._direct = DirectFusedAdamW(optimizer) if direct else None

    def zero_grad(self) -> None:
        """Drop every gradient the optimizer would update (`zero_grad(set_to_none=True)`)."""
        if self._direct is not None:
            self._direct.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=True)

    def mix(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup/CutMix on the batch (targets become soft distributions), or the batch unchanged."""
        return self.mixup_fn(images, targets) if self.mixup_fn is not None else (images, targets)

    def loss(self, images: Tensor, targets: Tensor, teacher_outputs: Tensor | None = None) -> Tensor:
        """Forward and the DeiT loss on an already mixed batch; the teacher sees the same images (or its logits
        on them come looked up, `teacher_outputs`: the in-memory path's teacher table)."""
        with self.precision.autocast(images.device):
            # --cosub: each image twice in one forward, two stochastic-depth sub-models (distill/cosub.py)
            outputs = self.model(torch.cat((images, images)) if self._doubles_batch else images)
            if teacher_outputs is None:
                return self.criterion(images, outputs, targets)
            return self.criterion(images, outputs, targets, teacher_outputs)

    def update(self, loss: Tensor) -> None:
        """Backward, gradient clipping, the optimizer step (through the fp16 scaler) and the EMA update.

        With `accum_steps` N (`--grad-accum-steps`), each batch's loss / N is back-propagated and the optimizer
        steps on every N-th batch: the gradient of a batch N times larger.
        """
        if self._micro_steps % self.accum_steps == 0:
            self.zero_grad()
        self._micro_steps += 1
        if self.accum_steps > 1:
            loss = loss / self.accum_steps
        scaler = self.precision.scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if self._micro_steps % self.accum_steps:
            return
        if scaler is not None:
            if self.clip_grad:
                scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(self.parameters, self.clip_grad)
            scaler.step(self.optimizer)
            scaler.update()
        else:
            if self.clip_grad:
                nn.utils.clip_grad_norm_(self.parameters, self.clip_grad)
            if self._direct is not None:
                self._direct.step()
            else:
                self.optimizer.step()
        if self.model_ema is not None:
            self.model_ema.update(unwrap_model(self.model))

    def __call__(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        teacher_outputs: Tensor | None = None,
        should_update: Callable[[Tensor], bool] | None = None,
    ) -> tuple[Tensor, bool]:
        """The whole step on a batch already on the device: `(detached loss, whether the weights were updated)`.

        `should_update(loss)`, when given, may veto the update (the loop's `--nan-policy skip`); otherwise no
        device value is read. `teacher_outputs`: the teacher's logits for this batch, looked up (never with mixup).
        """
        images, targets = self.mix(images, targets)  # never with a teacher table: the run builds none with mixup
        loss = self.loss(images, targets) if teacher_outputs is None else self.loss(images, targets, teacher_outputs)
        if should_update is not None and not should_update(loss):
            self.zero_grad()
            self._micro_steps = 0  # a bad batch also drops the gradients accumulated so far
            return loss.detach(), False
        self.update(loss)
        return loss.detach(), True
