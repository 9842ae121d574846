"""Distillation through attention: the DeiT training objective, written as the paper's equation.

Symbols: z_cls, z_dist = the student's class- and distillation-token logits; z_t = the teacher's logits on the
same (mixed) images; y = the labels (indices, or mixed distributions under mixup); ψ = softmax; τ = temperature;
α = weight of the teacher's term; base = the base criterion (CE, label-smoothed CE, soft-target CE or BCE).

    L = (1 − α) · base(z_cls, y) + α · D
    soft:  D = τ² · KL(ψ(z_t / τ) ‖ ψ(z_dist / τ))        summed over batch and classes, then divided by
                                                          B·C ('official', as the released code) or B ('batchmean')
    hard:  D = CE(z_dist, y_t),   y_t = argmax_c z_t     (the teacher's decision taken as a true label)
    none:  L = base(z_cls, y)                           (official: a distillation head, if any, learns nothing)
    labels: L = ½ · (base(z_cls, y) + base(z_dist, y))   the paper's control of a second *class* token: both
                                                          tokens learn from the labels, no teacher (ours)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deit.distill.fused_soft import label_smoothing_of, soft_terms
from deit.errors import DeitError

DISTILLATION_TYPES = ("none", "soft", "hard", "labels")
TEACHER_TYPES = ("soft", "hard")
KL_REDUCTIONS = ("official", "batchmean")


class DistillationLoss(nn.Module):
    """L = (1 − α)·base(z_cls, y) + α·D(z_dist, z_t): the DeiT objective (see the module docstring)."""

    def __init__(
        self,
        base_criterion: nn.Module,
        teacher_model: nn.Module | None,
        distillation_type: str,
        alpha: float,
        tau: float,
        *,
        kl_reduction: str = "official",
    ) -> None:
        super().__init__()
        if distillation_type not in DISTILLATION_TYPES:
            raise DeitError(
                f"--distillation-type must be one of {', '.join(DISTILLATION_TYPES)}, got '{distillation_type}'"
            )
        if kl_reduction not in KL_REDUCTIONS:
            raise DeitError(f"kl_reduction must be one of {', '.join(KL_REDUCTIONS)}, got '{kl_reduction}'")
        if not 0.0 <= alpha <= 1.0:
            raise DeitError(f"--distillation-alpha must be in [0, 1], got {alpha}")
        if tau <= 0.0:
            raise DeitError(f"--distillation-tau must be positive, got {tau}")
        if distillation_type in TEACHER_TYPES and teacher_model is None:
            raise DeitError(f"--distillation-type {distillation_type} needs a teacher (--teacher-model)")
        self.base_criterion = base_criterion
        self.teacher = (
            _frozen(teacher_model) if teacher_model is not None and distillation_type in TEACHER_TYPES else None
        )
        self.distillation_type = distillation_type
        self.alpha = alpha
        self.tau = tau
        self.kl_reduction = kl_reduction
        # Soft distillation over label-smoothed CE on class indices has a shorter form (distill/fused_soft.py).
        self._smoothing = label_smoothing_of(base_criterion) if distillation_type == "soft" else None
        self.last_terms: dict[str, Tensor] = {}  # the last batch's two terms, for inspection (the tests read them)

    def forward(
        self,
        inputs: Tensor,
        outputs: Tensor | tuple[Tensor, Tensor],
        labels: Tensor,
        teacher_outputs: Tensor | None = None,
    ) -> Tensor:
        """The loss for one batch; `inputs` are the images the student saw (after mixup), for the teacher.

        `teacher_outputs`: the teacher's logits on `inputs` when already known (the teacher table,
        `deit.distill.teacher_table`; stored labels, `deit.distill.teacher_labels`), or for hard distillation its
        classes (B,); then the teacher does not run.
        """
        z_cls, z_dist = outputs if isinstance(outputs, (tuple, list)) else (outputs, None)

        if self.distillation_type == "none":  # official: the class head alone, whatever the model has
            loss = self.base_criterion(z_cls, labels)
            self._record(loss, torch.zeros_like(loss))
            return loss
        if self.distillation_type == "labels":  # two class tokens, both on the labels: the paper's control
            if z_dist is None:
                raise DeitError(
                    "--distillation-type labels needs a student with a distillation token (a *_distilled_* model)"
                )
            base, second = self.base_criterion(z_cls, labels), self.base_criterion(z_dist, labels)
            self._record(base, second)
            return 0.5 * (base + second)

        if z_dist is None:  # a student without a distillation token: "usual" distillation on its class token
            z_dist = z_cls
        # frozen: eval mode, no gradient (see teacher.py)
        z_t = self.teacher(inputs) if teacher_outputs is None else teacher_outputs
        classes_given = not z_t.is_floating_point()  # its classes themselves (replayed hard labels)
        if classes_given and self.distillation_type != "hard":
            raise DeitError("soft distillation needs the teacher's logits, not its classes")

        if not classes_given and z_t.shape[-1] != z_dist.shape[-1]:
            raise DeitError(f"the teacher predicts {z_t.shape[-1]} classes but the student {z_dist.shape[-1]}")

        divisor = z_dist.numel() if self.kl_reduction == "official" else z_dist.shape[0]
        if self._smoothing is not None and labels.ndim == 1 and not labels.is_floating_point():
            # the same two terms as below, in a third of the operators
            base, distillation = soft_terms(
                z_cls, z_dist, labels, z_t, smoothing=self._smoothing, tau=self.tau, divisor=divisor
            )
        else:
            base = self.base_criterion(z_cls, labels)
            if self.distillation_type == "soft":
                tau = self.tau
                # Σ_b Σ_c ψ(z_t/τ)·(log ψ(z_t/τ) − log ψ(z_dist/τ)), both given as log-probabilities
                kl_sum = F.kl_div(
                    F.log_softmax(z_dist / tau, dim=-1),
                    F.log_softmax(z_t / tau, dim=-1),
                    reduction="sum",
                    log_target=True,
                )
                distillation = tau * tau * kl_sum / divisor
            else:  # hard
                distillation = F.cross_entropy(z_dist, z_t if classes_given else z_t.argmax(dim=-1))

        loss = (1.0 - self.alpha) * base + self.alpha * distillation
        self._record(base, distillation)
        return loss

    def _record(self, base: Tensor, distillation: Tensor) -> None:
        # Detached tensors, not floats: keeping them costs no host synchronisation per step.
        self.last_terms = {"base": base.detach(), "distillation": distillation.detach()}

    def extra_repr(self) -> str:
        return (
            f"distillation_type={self.distillation_type}, alpha={self.alpha}, tau={self.tau}, "
            f"kl_reduction={self.kl_reduction}"
        )


def _frozen(teacher: nn.Module) -> nn.Module:
    from deit.distill.teacher import FrozenTeacher

    return teacher if isinstance(teacher, FrozenTeacher) else FrozenTeacher(teacher)
