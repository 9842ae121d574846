"""Mixed precision, resolved once for every command: bf16 autocast by default on CUDA, fp16 with a gradient
scaler on request (CUDA only), fp32 on CPU. `deit train`, `deit eval`, `deit bench` and benchmarks/ all call
`resolve_precision`, so a flag means the same everywhere."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from deit.errors import DeitError

AMP_CHOICES = ("auto", "bf16", "fp16", "none")


@dataclass
class Precision:
    """The autocast dtype (None: fp32) and, for fp16, the gradient scaler."""

    name: str
    dtype: torch.dtype | None = None
    scaler: Any = None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context for `device` (a no-op for fp32)."""
        return autocast(device, self.dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for `dtype` on `device`, or a no-op for fp32 (`dtype` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
    raise DeitError(f"--amp {amp}: expected {', '.join(AMP_CHOICES)}")
