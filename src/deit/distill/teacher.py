"""The teacher: a frozen network whose predictions the distillation token learns to reproduce."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deit.distill.weights import class_count_of, load_teacher_weights, read_teacher_checkpoint
from deit.errors import DeitError
from deit.models.meta import CheckpointMeta
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD


class FrozenTeacher(nn.Module):
    """Wraps a trained network: eval mode forever, no gradients, optional re-normalisation and resize."""

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int | None = None,
        student_mean: Sequence[float] | None = None,
        student_std: Sequence[float] | None = None,
        teacher_mean: Sequence[float] | None = None,
        teacher_std: Sequence[float] | None = None,
        input_size: int | None = None,
        channels_last: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model.requires_grad_(False)
        self.num_classes = num_classes if num_classes is not None else class_count_of(model)
        self.input_size = input_size
        self.channels_last = channels_last
        self.name = name or type(model).__name__
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Images come normalised with the student's mean/std; x_t = (x·σ_s + μ_s − μ_t)/σ_t = x·scale + shift.
        scale, shift = _renormalisation(student_mean, student_std, teacher_mean, teacher_std)
        self.renormalise = scale is not None
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stays in eval mode whatever `mode` is: a parent's `.train()` must not wake BatchNorm or dropout."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """The teacher's logits on the student's (possibly mixed) images, without gradient."""
        with torch.no_grad():
            if self.renormalise:
                images = images * self.scale + self.shift
            size = self.input_size
            if size is not None and tuple(images.shape[-2:]) != (size, size):
                images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits = _logits_of(self.model(images))
        if self.num_classes is not None and logits.shape[-1] != self.num_classes:
            raise DeitError(f"teacher '{self.name}' returns {logits.shape[-1]} classes, expected {self.num_classes}")
        return logits

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, num_classes={self.num_classes}, renormalise={self.renormalise}, "
            f"input_size={self.input_size}, channels_last={self.channels_last}"
        )


def build_teacher(
    model: str | nn.Module,
    *,
    num_classes: int,
    checkpoint: str | Path | None = None,
    student_mean: Sequence[float] = IMAGENET_MEAN,
    student_std: Sequence[float] = IMAGENET_STD,
    teacher_mean: Sequence[float] | None = None,
    teacher_std: Sequence[float] | None = None,
    input_size: int | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
) -> FrozenTeacher:
    """A frozen teacher from a name (ours / timm / torchvision) or a module, with weights from `checkpoint`.

    `checkpoint` is a local file (`deit train` checkpoint, official/timm .pth, .safetensors) or an http(s) URL,
    downloaded once into the torch hub cache. A `deit train` checkpoint's meta supplies the teacher's mean/std,
    input size and class count; explicit `teacher_mean`/`teacher_std`/`input_size` win over it.
    """
    name = model if isinstance(model, str) else type(model).__name__
    state, meta = read_teacher_checkpoint(checkpoint) if checkpoint is not None else (None, None)
    where = f" ({checkpoint})" if checkpoint is not None else ""
    if meta is not None and meta.num_classes != num_classes:
        raise DeitError(_mismatch(name, where, meta.num_classes, num_classes))

    if isinstance(model, str):
        network = _build_named(model, num_classes, meta)
    else:
        network = model
    if state is not None:
        try:
            load_teacher_weights(network, state, label=f"teacher '{name}'{where}", num_classes=num_classes)
        except DeitError as error:
            if meta is None or not meta.model or meta.model == name:
                raise
            # The file says what it is: name that, not only the keys that do not fit.
            size = f" at {meta.input_size} px" if meta.input_size else ""
            raise DeitError(
                f"teacher '{name}'{where}: the file holds a {meta.model}{size} ({meta.num_classes} classes), "
                f"not a {name}; pass --teacher-model {meta.model}"
            ) from error
    teacher_classes = class_count_of(network)
    if teacher_classes is not None and teacher_classes != num_classes:
        raise DeitError(_mismatch(name, where, teacher_classes, num_classes))

    if meta is not None:
        teacher_mean = teacher_mean if teacher_mean is not None else meta.mean
        teacher_std = teacher_std if teacher_std is not None else meta.std
    if input_size is None:
        native = meta.input_size if meta is not None and meta.input_size else getattr(network, "img_size", None)
        input_size = int(native) if isinstance(native, int) else None  # a ViT needs its own size; a CNN any
    teacher = FrozenTeacher(
        network,
        num_classes=num_classes,
        student_mean=student_mean,
        student_std=student_std,
        teacher_mean=student_mean if teacher_mean is None else teacher_mean,
        teacher_std=student_std if teacher_std is None else teacher_std,
        input_size=input_size,
        channels_last=channels_last,
        name=name,
    )
    return teacher.to(device)


def _build_named(name: str, num_classes: int, meta: CheckpointMeta | None) -> nn.Module:
    from deit.models.factory import build_model

    overrides: dict = {}
    if meta is not None and meta.model == name:  # a `deit train` checkpoint: rebuild the exact variant it was
        overrides = {k: v for k, v in meta.model_kwargs.items() if k != "num_classes"}  # trained as
        if meta.input_size is not None:
            overrides.setdefault("img_size", meta.input_size)
    img_size = overrides.pop("img_size", None)
    return build_model(name, num_classes=num_classes, img_size=img_size, **overrides)


def _mismatch(name: str, where: str, teacher_classes: int, data_classes: int) -> str:
    return (
        f"teacher '{name}'{where} predicts {teacher_classes} classes but the data has {data_classes}; "
        f"give a teacher trained on the same classes"
    )


def _renormalisation(student_mean, student_std, teacher_mean, teacher_std) -> tuple[Tensor | None, Tensor | None]:
    given = [v is not None for v in (student_mean, student_std, teacher_mean, teacher_std)]
    if not any(given):
        return None, None
    if not all(given):
        raise DeitError("re-normalising the teacher's input needs the student's and the teacher's mean and std")
    s_mean, s_std, t_mean, t_std = (
        torch.tensor([float(v) for v in values], dtype=torch.float32).view(1, -1, 1, 1)
        for values in (student_mean, student_std, teacher_mean, teacher_std)
    )
    if torch.equal(s_mean, t_mean) and torch.equal(s_std, t_std):
        return None, None
    return s_std / t_std, (s_mean - t_mean) / t_std


def _logits_of(output: object) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if hasattr(output, "logits"):  # Hugging Face style output objects
        return output.logits
    if isinstance(output, (tuple, list)) and len(output) == 2 and all(isinstance(o, Tensor) for o in output):
        return (output[0] + output[1]) / 2  # a distilled DeiT teacher: its fused prediction
    raise DeitError(f"the teacher returned {type(output).__name__}, expected a logits tensor")
