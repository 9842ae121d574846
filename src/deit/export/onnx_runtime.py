"""The one ONNX exporter and ONNX Runtime runner, used by `deit export`, `deit bench --onnxruntime` and the
benchmarks.

Exported graphs take `(batch, 3, size, size)` normalised images (batch dynamic) and return the fused logits.
`--quantize int8` does less work rather than the same work faster: ONNX Runtime's transformer optimiser first
fuses each block's attention, then every weight matrix product and the attention's qkv product become int8
ones (weights quantized once, activations per batch; VNNI kernels where the CPU has them), which the CPU provider
runs as `DynamicQuantizeMatMul`/`QAttention`. Accuracy is checked separately (see `deit.inference.agreement`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from deit.errors import DeitError

QUANTIZE_CHOICES = ("none", "int8")
EXPORT_EXTRA_HINT = "install the export extra: pip install 'deit[export]'"
TRACING_EXPORTER = "torch.onnx TorchScript-based"
DYNAMO_EXPORTER = "torch.onnx dynamo"


def require_onnx() -> None:
    """Raise a one-line `DeitError` naming the export extra when onnx or onnxruntime is missing."""
    missing = []
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise DeitError(f"ONNX export needs {' and '.join(missing)}: {EXPORT_EXTRA_HINT}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The exporters warn about the (deliberate) shape check in PatchEmbed and their own deprecations, the
    # dynamo exporter prints its progress, and the quantizer logs advice to the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _with_tracing(model: nn.Module, example: Tensor, output: Path, opset: int | None) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(output),
        dynamo=False,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset or 17,
    )


def _with_dynamo(model: nn.Module, example: Tensor, output: Path, opset: int | None) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    # One self-contained file (weights inline) while under protobuf's 2 GB limit.
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_900_000_000
    torch.onnx.export(
        model,
        (example,),
        str(output),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        external_data=external,
        verbose=False,
    )


def export_onnx(
    model: nn.Module, example: Tensor, output: str | Path, *, opset: int | None = None, notes: list[str] | None = None
) -> str:
    """Write the eval-mode `model` to `output` as ONNX; returns the exporter used.

    The TorchScript-based exporter goes first: it takes about a second for a ViT, and its graph is the one ONNX
    Runtime's transformer optimiser recognises (SkipLayerNorm, BiasGelu). The dynamo exporter is the fallback
    for graphs it cannot trace or a PyTorch that no longer ships it. `example` should have a batch of 2 or
    more: a batch of 1 lets exporters specialise the batch axis to a constant.
    """
    require_onnx()
    output = Path(output)
    model = model.eval()
    with torch.no_grad(), _quiet():
        try:
            _with_tracing(model, example, output, opset)
            return TRACING_EXPORTER
        except Exception as error:  # noqa: BLE001 - removed or failing legacy exporter: the dynamo one still works
            reason = type(error).__name__
        _with_dynamo(model, example, output, opset)
    if notes is not None:
        notes.append(f"note: the TorchScript-based exporter failed ({reason}); used the dynamo one")
    return DYNAMO_EXPORTER


def _attention_shape(model: nn.Module) -> tuple[int, int]:
    """(heads, width) of the model's attention, 0s when unknown (the optimiser then reads them off the graph)."""
    heads = next((int(m.num_heads) for m in model.modules() if hasattr(m, "num_heads")), 0)
    width = int(getattr(model, "embed_dim", 0) or getattr(model, "num_features", 0) or 0)
    return heads, width


def export_int8(
    model: nn.Module, example: Tensor, output: str | Path, *, opset: int | None = None, notes: list[str] | None = None
) -> str:
    """Write an int8 ONNX version of the eval-mode `model` to `output`; returns the exporter used.

    The model is exported with separate q/k/v products so that ONNX Runtime's transformer optimiser fuses each
    block's attention (and the residual adds with LayerNorm, the biases with GELU) before quantization:
    quantizing first would split the patterns it looks for. Then the weight products and the fused attention
    become int8 (`DynamicQuantizeMatMul`, `QAttention`: symmetric per-tensor weights, activations quantized per
    batch, so no calibration data), the patch embedding stays fp32 (its integer convolution was slower), and
    SkipLayerNormalization is split back into Add + LayerNormalization (faster on the CPUs measured).
    """
    require_onnx()
    from onnx import load_model, save_model
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from deit.export.onnx_int8_graph import unfuse_skip_layer_norm, with_separate_qkv

    heads, width = _attention_shape(model)
    with tempfile.TemporaryDirectory(prefix="deit-onnx-") as scratch:
        fp32_path, fused_path, quantized_path = (Path(scratch) / f"{n}.onnx" for n in ("fp32", "fused", "int8"))
        exporter = export_onnx(with_separate_qkv(model), example, fp32_path, opset=opset, notes=notes)
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            fused = optimizer.optimize_model(
                str(fp32_path), model_type="vit", num_heads=heads, hidden_size=width, opt_level=0, use_gpu=False
            )
            stats = {name: count for name, count in fused.get_fused_operator_statistics().items() if count}
            fused.save_model_to_file(str(fused_path))
            # DefaultTensorType: the fused contrib ops defeat ONNX shape inference, so the quantizer is told
            # their outputs are float.
            quantize_dynamic(
                str(fused_path),
                str(quantized_path),
                weight_type=QuantType.QInt8,
                per_channel=False,
                op_types_to_quantize=["MatMul", "Attention"],
                extra_options={"DefaultTensorType": 1, "MatMulConstBOnly": True},
            )
        quantized = load_model(str(quantized_path))
        split = unfuse_skip_layer_norm(quantized.graph)
        save_model(quantized, str(output))
    fusions = ", ".join(f"{count} {name}" for name, count in sorted(stats.items()))
    if notes is not None:
        attention = " and the fused attention (QAttention)" if stats.get("Attention") else ""
        unfused = f"; the {split} SkipLayerNormalization split back into Add + LayerNormalization" if split else ""
        notes.append(
            f"int8: fused {fusions or 'nothing'}; weight products{attention} int8 (dynamic activations, "
            f"per-tensor symmetric weights), patch embedding fp32{unfused}"
        )
    return exporter


class OnnxRuntimeModel:
    """An ONNX file (or bytes) run by ONNX Runtime's CPU provider, called like the module it came from."""

    def __init__(self, source: str | Path | bytes, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise DeitError(f"the ONNX Runtime path needs onnxruntime: {EXPORT_EXTRA_HINT}") from error
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        model = source if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own InvalidProtobuf, InvalidGraph, Fail ...
            reason = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
            where = "the ONNX model" if isinstance(source, bytes) else str(source)
            raise DeitError(f"{where}: cannot be read as ONNX by ONNX Runtime: {reason}") from error
        self.input_name = self.session.get_inputs()[0].name
        self.notes: list[str] = []

    @classmethod
    def from_module(
        cls, model: nn.Module, example: Tensor, *, quantize: str = "none", threads: int | None = None
    ) -> OnnxRuntimeModel:
        """Export `model` (and quantize it with `quantize='int8'`) in a scratch folder, then load it."""
        if quantize not in QUANTIZE_CHOICES:
            raise DeitError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE_CHOICES)}")
        if example.shape[0] < 2:
            example = example.expand(2, *example.shape[1:])
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="deit-onnx-") as scratch:
            path = Path(scratch) / "model.onnx"
            export = export_int8 if quantize == "int8" else export_onnx
            export(model, example.detach().cpu().float(), path, notes=notes)
            runner = cls(path.read_bytes(), threads=threads)
        runner.notes = notes
        return runner

    def __call__(self, images: Tensor) -> Tensor:
        """Logits for a (B, C, H, W) batch, as a float32 CPU tensor."""
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


__all__ = ["QUANTIZE_CHOICES", "OnnxRuntimeModel", "export_int8", "export_onnx", "require_onnx"]
