"""Distillation through attention: the DeiT objective, its base criteria, and the frozen teacher."""

from deit.distill.cosub import CosubLoss
from deit.distill.criteria import build_base_criterion
from deit.distill.loss import DISTILLATION_TYPES, KL_REDUCTIONS, TEACHER_TYPES, DistillationLoss
from deit.distill.teacher import FrozenTeacher, build_teacher

__all__ = [
    "DISTILLATION_TYPES",
    "KL_REDUCTIONS",
    "TEACHER_TYPES",
    "CosubLoss",
    "DistillationLoss",
    "FrozenTeacher",
    "build_base_criterion",
    "build_teacher",
]
