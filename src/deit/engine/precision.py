"""Mixed precision: bf16 autocast by default on CUDA, fp16 with a gradient scaler on request, fp32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deit.errors import DeitError


@dataclass
class Precision:
    """The autocast dtype (None: fp32) and, for fp16, the gradient scaler."""

    name: str
    dtype: torch.dtype | None = None
    scaler: Any = None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context for `device` (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """`--amp auto|bf16|fp16|none` on `device` -> a `Precision`; fp16 on CPU is refused."""
    if amp == "auto":
        if device.type != "cuda":
            return Precision("fp32")
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "none":
        return Precision("fp32")
    if amp == "bf16":
        return Precision("bf16", torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise DeitError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or --amp none")
        return Precision("fp16", torch.float16, torch.amp.GradScaler("cuda"))
    raise DeitError(f"--amp {amp}: expected auto, bf16, fp16 or none")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
