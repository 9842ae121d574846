"""Fast paths that keep the math: torch.compile, channels-last, pinned transfers, CUDA graphs. (The ONNX
Runtime runner lives with export: `deit.export.onnx_runtime`; precision is resolved in `deit.precision`.)

Every helper here changes how the same computation is executed, never what is computed; the benchmarks and
tests compare each one with the eager model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from deit.errors import DeitError
from deit.precision import autocast


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device (None or `auto`: CUDA when present, else CPU); a missing CUDA is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeitError(f"--device: '{device}' is not a device (use cpu or cuda)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeitError(
            f"--device {device}: CUDA is not available here (no CUDA device visible to PyTorch); use --device cpu"
        )
    return resolved


def default_compile(device: torch.device) -> bool:
    """Whether torch.compile is on by default: yes on CUDA, where it pays back its start-up within a few
    hundred steps; no on CPU, where compiling takes about a minute and the matrix products dominate anyway."""
    return device.type == "cuda"


def compile_model(
    model: nn.Module | Callable,
    *,
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = False,
    backend: str = "inductor",
    freeze: bool = False,
) -> Any:
    """`torch.compile(model)`; compilation itself happens on the first call (see `warm_up_or_eager`).

    `dynamic=False` because batch shapes are fixed in training and benchmarking: static shapes give the
    fastest kernels, and a new shape only costs one recompilation. `freeze=True` (inference only) lets
    inductor treat the weights as constants: their autocast copies are made once and, on CPU, the matrix
    weights are pre-packed for the BLAS — the same arithmetic, less work per call.
    """
    if not hasattr(torch, "compile"):
        raise DeitError("--compile needs PyTorch 2.0 or newer")
    if mode is not None and freeze:
        raise DeitError("freezing cannot be combined with a torch.compile mode")
    options = {"freezing": True} if freeze and backend == "inductor" else None
    if options is not None:
        return torch.compile(model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, options=options)
    return torch.compile(model, mode=mode, fullgraph=fullgraph, dynamic=dynamic, backend=backend)


def warm_up_or_eager(compiled: Callable, eager: Callable, *inputs: Any) -> tuple[Callable, str | None]:
    """Run `compiled` once (which compiles it); on failure fall back to `eager` and say why.

    Returns `(callable to use, None)` or `(eager, reason)`, so a benchmark keeps going without the fast path.
    """
    try:
        compiled(*inputs)
        return compiled, None
    except Exception as error:  # inductor needs a C++ compiler / Triton; any failure there means "use eager"
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
        with contextlib.suppress(Exception):
            torch._dynamo.reset()
        return eager, reason


def channels_last(model: nn.Module) -> nn.Module:
    """The model with 4-D weights in NHWC layout: convolutions run on faster kernels (cuDNN, oneDNN)."""
    return model.to(memory_format=torch.channels_last)


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """Copy to `device` without stalling the host: pinned memory plus a non-blocking copy for CUDA."""
    if device.type != "cuda" or tensor.is_cuda:
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


class CudaGraphRunner:
    """Replays one captured CUDA graph of `fn` for a fixed input shape: no per-kernel launch cost on the host.

    Each call copies the input into the static buffer and replays; the returned tensor is the static output,
    overwritten by the next call (clone it to keep it). For inference at small batch sizes, where the GPU
    finishes kernels faster than Python can launch them.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], example: Tensor, *, warmup_steps: int = 3) -> None:
        if not example.is_cuda:
            raise DeitError("CUDA graphs need a CUDA device (--device cuda)")
        self.static_input = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as capture requires
            for _ in range(warmup_steps):
                fn(self.static_input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = fn(self.static_input)

    def __call__(self, images: Tensor) -> Tensor:
        """The output for `images` (same shape as the example), through graph replay."""
        if images.shape != self.static_input.shape:
            raise DeitError(
                f"the CUDA graph was captured for {tuple(self.static_input.shape)}, got {tuple(images.shape)}"
            )
        self.static_input.copy_(images, non_blocking=True)
        self.graph.replay()
        return self.static_output


def max_abs_diff(reference: Tensor | tuple, candidate: Tensor | tuple) -> float:
    """Largest |reference − candidate| over (possibly tuples of) tensors, in fp32."""
    refs = reference if isinstance(reference, (tuple, list)) else (reference,)
    cands = candidate if isinstance(candidate, (tuple, list)) else (candidate,)
    if len(refs) != len(cands):
        raise DeitError(f"outputs differ in structure: {len(refs)} vs {len(cands)} tensors")
    return max(float((r.detach().float().cpu() - c.detach().float().cpu()).abs().max()) for r, c in zip(refs, cands))


def top1_agreement(reference: Tensor, candidate: Tensor) -> float:
    """Fraction of rows whose argmax class is the same in both logits tensors."""
    return float((reference.float().argmax(-1).cpu() == candidate.float().argmax(-1).cpu()).float().mean())


@contextlib.contextmanager
def inference_context(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """inference_mode plus autocast: the cheapest way to run a forward pass whose result is only read."""
    with torch.inference_mode(), autocast(device, dtype):
        yield
