"""The one ONNX exporter and runner: fp32 matches eager at any batch; int8 runs integer products, same classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import deit.export.onnx_runtime as onnx_runtime
from deit import create_model, perf
from deit.errors import DeitError
from deit.export.onnx_int8_graph import unfuse_skip_layer_norm, with_separate_qkv
from deit.export.onnx_runtime import OnnxRuntimeModel, export_int8, export_onnx
from deit.models.layers import Attention


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


def _int8_and_fp32(model: nn.Module, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    fp32, int8, notes = tmp_path / "fp32.onnx", tmp_path / "int8.onnx", []
    export_onnx(model, torch.randn(2, 3, 32, 32), fp32)
    export_int8(model, torch.randn(2, 3, 32, 32), int8, notes=notes)
    return fp32, int8, notes


def test_int8_graph_runs_integer_products_and_keeps_the_classes(tmp_path: Path) -> None:
    model = _tiny()
    fp32, int8, notes = _int8_and_fp32(model, tmp_path)
    ops = [node.op_type for node in onnx.load(str(int8)).graph.node]
    # Block 1's attention is one fused int8 node; block 0's (after the position embedding, a pattern the
    # optimiser does not fuse) keeps q, k, v as separate int8 products. Three residual adds + norms fuse: the
    # final norm reads the prefix tokens alone (`forward_prefix_features`), after a slice.
    assert ops.count("QAttention") == 1
    assert ops.count("MatMulInteger") == 3 + 3 + 3 + 2  # q/k/v (block 0); proj, fc1, fc2 per block; 2 heads
    assert ops.count("Conv") == 1 and "ConvInteger" not in ops  # the patch embedding stays fp32
    assert "BiasGelu" in ops and "SkipLayerNormalization" not in ops  # fused, then split back (slow kernel)
    assert "1 Attention" in notes[0] and "QAttention" in notes[0] and "the 3 SkipLayerNormalization split" in notes[0]
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # the weights are stored as int8
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(images)
    got = OnnxRuntimeModel(int8, threads=1)(images)
    scale = float(expected.abs().max())
    assert perf.max_abs_diff(expected, got) <= 0.05 * scale
    assert perf.top1_agreement(expected, got) >= 0.9


@pytest.mark.slow
def test_int8_keeps_the_distillation_head(tmp_path: Path) -> None:
    model = _tiny(seed=1)
    with torch.no_grad():  # the logits are (class head + distillation head) / 2: leave only the second
        model.head.weight.zero_()
        model.head.bias.zero_()
    _, int8, _ = _int8_and_fp32(model, tmp_path)
    images = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(images)
    got = OnnxRuntimeModel(int8, threads=1)(images)
    assert float(expected.abs().max()) > 0.1
    assert perf.max_abs_diff(expected, got) <= 0.05 * float(expected.abs().max())


@pytest.mark.slow
def test_int8_of_a_model_whose_attention_is_not_fused(tmp_path: Path) -> None:
    torch.manual_seed(0)  # DeiT III: LayerScale after the projection hides the pattern from the fusion
    model = create_model("deit3_small_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10).eval()
    runner = OnnxRuntimeModel.from_module(model, torch.randn(2, 3, 32, 32), quantize="int8", threads=1)
    assert "QAttention" not in runner.notes[0]
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    assert perf.max_abs_diff(expected, runner(images)) <= 0.05 * float(expected.abs().max())


def test_separate_qkv_attention_is_the_same_maths() -> None:
    model = _tiny()
    rewritten = with_separate_qkv(model)
    assert not any(isinstance(m, Attention) for m in rewritten.modules())
    assert any(isinstance(m, Attention) for m in model.modules())  # the original is untouched
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert perf.max_abs_diff(model(images), rewritten(images)) <= 1e-5


def test_unfused_skip_layer_norm_computes_the_same(tmp_path: Path) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), name) for name in ("gamma", "beta", "bias")
    ]
    node = helper.make_node(
        "SkipLayerNormalization",
        ["x", "skip", "gamma", "beta", "bias"],
        ["y", "", "", "sum"],
        domain="com.microsoft",
        epsilon=1e-6,
    )
    tensor = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, 8]) for n in ("x", "skip", "y", "sum")]
    graph = helper.make_graph([node], "g", tensor[:2], tensor[2:], weights)
    fused = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    inputs = {
        "x": rng.standard_normal((2, 3, 8)).astype(np.float32),
        "skip": rng.standard_normal((2, 3, 8)).astype(np.float32),
    }

    def run(model: onnx.ModelProto) -> list[np.ndarray]:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)

    expected = run(fused)
    unfused = onnx.ModelProto()
    unfused.CopyFrom(fused)
    assert unfuse_skip_layer_norm(unfused.graph) == 1
    assert [n.op_type for n in unfused.graph.node] == ["Add", "Add", "LayerNormalization"]
    for want, got in zip(expected, run(unfused)):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
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
