"""Why ONNX Runtime beats PyTorch on this CPU: GFLOP/s of the model's own fp32 matrix products in each.

A ViT forward pass on CPU is almost all matrix products (qkv, proj, fc1, fc2). PyTorch sends them to MKL's
sgemm, ONNX Runtime to its own MLAS kernels; on an AMD CPU MKL may not take its AVX-512 path, so the
same products run at different speeds. Shapes: deit_small at batch 16 (16·198 tokens, width 384).

    python benchmarks/bench_cpu_gemm.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = {"qkv": (384, 1152), "proj": (384, 384), "fc1": (384, 1536), "fc2": (1536, 384)}


def ort_linear(in_features: int, out_features: int, threads: int):  # type: ignore[no-untyped-def]
    """An ONNX Runtime session computing x @ W + b (MatMul + Add, fused by ORT into one Gemm-like kernel)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((in_features, out_features), dtype=np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(out_features, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out_features])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def gflops(fn, flops: float, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median GFLOP/s of `fn` over `repeats` timed calls after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return flops / statistics.median(times) / 1e9


def main() -> None:
    """Print GFLOP/s per product for PyTorch (MKL) and ONNX Runtime (MLAS), interleaved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tokens", type=int, default=16 * 198)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} ({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}), "
        f"{args.threads} thread(s), {args.tokens} tokens"
    )
    print("| product | shape | PyTorch GFLOP/s | ONNX Runtime GFLOP/s | ratio |\n|---|---|---|---|---|")
    for name, (fan_in, fan_out) in SHAPES.items():
        x = torch.randn(args.tokens, fan_in)
        weight, bias = torch.randn(fan_out, fan_in), torch.randn(fan_out)
        session = ort_linear(fan_in, fan_out, args.threads)
        feed = {"x": x.numpy()}
        flops = 2.0 * args.tokens * fan_in * fan_out
        results = {"torch": [], "ort": []}
        for _ in range(2):  # interleaved, so load drift hits both alike
            results["torch"].append(gflops(partial(F.linear, x, weight, bias), flops, args.repeats))
            results["ort"].append(gflops(partial(session.run, None, feed), flops, args.repeats))
        torch_rate, ort_rate = max(results["torch"]), max(results["ort"])
        print(
            f"| {name} | {args.tokens}×{fan_in} · {fan_in}×{fan_out} | {torch_rate:.0f} | {ort_rate:.0f} | "
            f"×{ort_rate / torch_rate:.2f} |"
        )


if __name__ == "__main__":
    main()
