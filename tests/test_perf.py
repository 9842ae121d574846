"""The fast paths compute what the eager model computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deit import create_model, perf
from deit.errors import DeitError


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10).eval()


def test_autocast_dtype_choices() -> None:
    cpu = torch.device("cpu")
    assert perf.autocast_dtype("auto", cpu) is None  # fp32 on CPU by default
    assert perf.autocast_dtype("none", cpu) is None
    assert perf.autocast_dtype("bf16", cpu) is torch.bfloat16
    assert perf.autocast_dtype("fp16", cpu) is torch.float16
    with pytest.raises(DeitError, match="--amp"):
        perf.autocast_dtype("fp8", cpu)


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


def test_fused_adamw_is_the_same_update() -> None:
    torch.manual_seed(0)
    reference, fast = nn.Linear(8, 4), nn.Linear(8, 4)
    fast.load_state_dict(reference.state_dict())
    optimizers = [torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.05),
                  perf.adamw(fast.parameters(), lr=1e-2, weight_decay=0.05, fused=True)]
    assert perf.adamw(nn.Linear(2, 2).parameters(), lr=1.0, weight_decay=0.0).defaults["fused"] is None  # CPU
    for _ in range(3):
        batch = torch.randn(5, 8)
        for model, optimizer in zip((reference, fast), optimizers):
            optimizer.zero_grad()
            model(batch).square().mean().backward()
            optimizer.step()
    assert perf.max_abs_diff(tuple(reference.parameters()), tuple(fast.parameters())) <= 1e-6


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
