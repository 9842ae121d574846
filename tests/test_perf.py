"""The fast paths compute what the eager model computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deit import create_model, perf
from deit.errors import DeitError
from deit.precision import resolve_precision


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10).eval()


def test_one_precision_resolver_for_every_command() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype is None  # fp32 on CPU by default
    assert resolve_precision("none", cpu).dtype is None
    assert resolve_precision("bf16", cpu).dtype is torch.bfloat16
    with pytest.raises(DeitError, match="--amp fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)  # refused for bench exactly as for train
    with pytest.raises(DeitError, match="--amp"):
        resolve_precision("fp8", cpu)


def test_default_compile_only_on_cuda() -> None:
    assert perf.default_compile(torch.device("cpu")) is False
    assert perf.default_compile(torch.device("cuda")) is True


def test_resolve_device() -> None:
    assert perf.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeitError, match="--device"):
        perf.resolve_device("toaster")
    if torch.cuda.is_available():
        assert perf.resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(DeitError, match="no CUDA"):
            perf.resolve_device("cuda")


@pytest.mark.slow
def test_compiled_graph_has_no_breaks_and_matches_eager() -> None:
    # fullgraph=True fails on any graph break; aot_eager traces forward and backward like inductor does
    # without generating C++ (inductor takes about a minute on this CPU, too long for a unit test).
    model = _tiny().train()
    compiled = perf.compile_model(model, backend="aot_eager", fullgraph=True)
    images = torch.randn(3, 3, 32, 32)
    eager_out = model(images)
    compiled_out = compiled(images)
    assert perf.max_abs_diff(eager_out, compiled_out) <= 1e-5
    sum(o.sum() for o in compiled_out).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_warm_up_falls_back_to_eager_with_a_reason() -> None:
    def broken(_: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no C++ compiler\nmore detail")

    def eager(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    chosen, reason = perf.warm_up_or_eager(broken, eager, torch.zeros(1))
    assert chosen is eager and reason == "RuntimeError: no C++ compiler"
    chosen, reason = perf.warm_up_or_eager(eager, broken, torch.zeros(1))
    assert chosen is eager and reason is None


def test_channels_last_teacher_matches() -> None:
    from deit.models.factory import build_model

    torch.manual_seed(0)
    network = build_model("test_resnet", num_classes=10).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = network(images)
        fast = perf.channels_last(network)
        got = fast(images.contiguous(memory_format=torch.channels_last))
    assert next(w for w in fast.parameters() if w.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    assert perf.max_abs_diff(expected, got) <= 1e-4


def test_to_device_and_inference_context() -> None:
    tensor = torch.arange(6.0)
    assert torch.equal(perf.to_device(tensor, torch.device("cpu")), tensor)
    model = _tiny()
    images = torch.randn(2, 3, 32, 32)
    with perf.inference_context(torch.device("cpu"), None):
        out = model(images)
    assert out.shape == (2, 10) and not out.requires_grad


def test_cuda_graphs_refuse_cpu_tensors() -> None:
    with pytest.raises(DeitError, match="CUDA"):
        perf.CudaGraphRunner(lambda x: x, torch.zeros(2))


def test_max_abs_diff_and_agreement() -> None:
    a = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert perf.max_abs_diff(a, a + 0.5) == pytest.approx(0.5)
    assert perf.top1_agreement(a, torch.tensor([[0.0, 1.0], [0.0, 2.0]])) == 0.5
    with pytest.raises(DeitError, match="structure"):
        perf.max_abs_diff((a, a), a)
