"""The one ONNX exporter and runner: fp32 matches eager at any batch; int8 runs integer products, same classes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import deit.tools.onnx_runtime as onnx_runtime
from deit import create_model, perf
from deit.errors import DeitError
from deit.tools.onnx_runtime import OnnxRuntimeModel, export_onnx


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10).eval()


def test_fp32_runner_matches_eager_at_any_batch_size() -> None:
    model = _tiny()
    runner = OnnxRuntimeModel.from_module(model, torch.randn(2, 3, 32, 32), threads=1)
    for batch in (1, 5):  # the batch axis is dynamic
        images = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = model(images)
        got = runner(images)
        assert got.shape == expected.shape
        assert perf.max_abs_diff(expected, got) <= 1e-4


def test_int8_graph_runs_integer_products_and_keeps_the_classes(tmp_path: Path) -> None:
    model = _tiny()
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_onnx(model, torch.randn(2, 3, 32, 32), fp32)
    notes = onnx_runtime.quantize_int8(fp32, int8, model)
    ops = [node.op_type for node in onnx.load(str(int8)).graph.node]
    assert ops.count("MatMulInteger") == 2 * 4 + 2  # qkv, proj, fc1, fc2 per block; class and distillation heads
    assert ops.count("ConvInteger") == 1  # the patch embedding
    assert "SkipLayerNormalization" in ops and "BiasGelu" in ops  # fused before quantizing
    assert "SkipLayerNormalization" in notes[0]
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # the weights are stored as int8
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(images)
    got = OnnxRuntimeModel(int8, threads=1)(images)
    scale = float(expected.abs().max())
    assert perf.max_abs_diff(expected, got) <= 0.05 * scale
    assert perf.top1_agreement(expected, got) >= 0.9


def test_falls_back_to_the_dynamo_exporter_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(onnx_runtime, "_with_tracing", broken)
    notes: list[str] = []
    model = _tiny()
    exporter = export_onnx(model, torch.randn(2, 3, 32, 32), tmp_path / "m.onnx", notes=notes)
    assert exporter == onnx_runtime.DYNAMO_EXPORTER and "RuntimeError" in notes[0]
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert perf.max_abs_diff(model(images), OnnxRuntimeModel(tmp_path / "m.onnx")(images)) <= 1e-4


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(DeitError, match="--quantize int4"):
        OnnxRuntimeModel.from_module(_tiny(), torch.randn(2, 3, 32, 32), quantize="int4")
