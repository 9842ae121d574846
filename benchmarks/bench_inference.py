"""Inference images/s of the same model in deit and in timm, in one process, with identical weights.

Each model gets: a parity check (ours vs timm logits in fp32 and under autocast; every fast path vs our eager
model), then interleaved timing of the paths (timm eager, ours eager, ours compiled, ...) and each one's ratio
to timm eager. GPU (docs/reference.md batch sizes, bf16 autocast):

    PYTHONPATH=src python benchmarks/bench_inference.py --device cuda --amp bf16 --out $OUT

CPU (fp32, smaller batches):

    python benchmarks/bench_inference.py --device cpu --out benchmarks/results/cpu
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from common import (
    Deadline,
    environment,
    environment_lines,
    guarded,
    interleaved,
    markdown_table,
    number,
    previous_rows,
    same_weights_pair,
    write_report,
)
from deit import perf
from deit.export.onnx_runtime import OnnxRuntimeModel
from deit.precision import resolve_precision

# docs/reference.md's timm measurements were taken at these batch sizes on an H200.
GPU_MODELS = (
    "deit_small_distilled_patch16_224:512,deit_base_distilled_patch16_224:256,"
    "deit_tiny_distilled_patch16_224:1024,deit_base_distilled_patch16_384:64"
)
CPU_MODELS = "deit_tiny_distilled_patch16_224:32,deit_small_distilled_patch16_224:16,deit_base_distilled_patch16_224:8"
PATHS = {"cuda": "timm,ours,ours-compile", "cpu": "timm,ours,ours-bf16,ours-ort,ours-ort-int8"}
ALL_PATHS = (
    "timm",
    "ours",
    "ours-bf16",
    "ours-compile",
    "ours-compile-freeze",
    "ours-compile-cudagraphs",
    "ours-ort",
    "ours-ort-int8",
    "timm-compile",
)


def _forward(
    model: Callable[[Tensor], Tensor], device: torch.device, dtype: torch.dtype | None
) -> Callable[[Tensor], Tensor]:
    def run(images: Tensor) -> Tensor:
        with perf.inference_context(device, dtype):
            return model(images)

    return run


def _build_path(
    name: str, timm_model: Any, ours: Any, images: Tensor, dtype: torch.dtype | None
) -> tuple[Callable[[Tensor], Tensor], str | None]:
    """The callable for one path, already warmed (compiled); `(callable, fallback reason or None)`."""
    device = images.device
    if name == "timm":
        return _forward(timm_model, device, dtype), None
    if name == "ours":
        return _forward(ours, device, dtype), None
    if name == "ours-bf16":  # bf16 autocast on CPU (AVX-512 BF16 / AMX), whatever --amp says for the others
        return _forward(ours, device, torch.bfloat16), None
    if name in ("ours-ort", "ours-ort-int8"):
        if device.type != "cpu" or dtype is not None:
            raise ValueError(f"{name} is the fp32-input CPU path")
        quantize = "int8" if name.endswith("int8") else "none"
        return OnnxRuntimeModel.from_module(ours, images[:2], quantize=quantize), None
    source = timm_model if name.startswith("timm") else ours
    options: dict[str, Any] = {}
    if name.endswith("-freeze"):
        options["freeze"] = True
    if name.endswith("-cudagraphs"):
        options["mode"] = "reduce-overhead"
    compiled = _forward(perf.compile_model(source, **options), device, dtype)
    chosen, reason = perf.warm_up_or_eager(compiled, _forward(source, device, dtype), images)
    if reason is not None:
        raise RuntimeError(f"compilation failed: {reason}")
    return chosen, None


def bench_model(
    model_name: str,
    batch_size: int,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    paths: list[str],
    steps: int,
    warmup: int,
    rounds: int,
) -> dict[str, Any]:
    """One row: parity figures and per-path timings for `model_name` at `batch_size`."""
    row: dict[str, Any] = {"model": model_name, "batch_size": batch_size, "paths": {}, "parity": {}}

    def work() -> None:
        timm_model, ours = same_weights_pair(model_name, device)
        timm_model.eval(), ours.eval()
        size = ours.img_size
        row["img_size"] = size
        generator = torch.Generator().manual_seed(1)
        check = torch.randn(min(batch_size, 8), 3, size, size, generator=generator).to(device)
        images = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
        _parity_ours_vs_timm(row["parity"], timm_model, ours, check, dtype)
        reference = _forward(ours, device, dtype)(images).float()
        callables: dict[str, Callable[[], Any]] = {}
        for path in paths:
            entry: dict[str, Any] = row["paths"].setdefault(path, {})
            try:
                forward, _ = _build_path(path, timm_model, ours, images, dtype)
                output = forward(images).float()
                entry["max_abs_diff_vs_ours_eager"] = perf.max_abs_diff(reference, output)
                entry["top1_agreement_vs_ours_eager"] = perf.top1_agreement(reference, output)
                callables[path] = (lambda f: lambda: f(images))(forward)
            except Exception as error:  # noqa: BLE001 - a path that cannot run is reported, the others go on
                entry["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
                print(f"  {model_name} {path}: {entry['error']}", flush=True)
        times = interleaved(callables, rounds=rounds, steps=steps, warmup=warmup, device=device)
        base = statistics.median(times["timm"]) if "timm" in times else None
        for path, step_ms in times.items():
            median = statistics.median(step_ms)
            row["paths"][path].update(
                median_ms=median,
                images_per_second=batch_size * 1000 / median,
                ratio_vs_timm_eager=None if base is None else base / median,
                step_ms=[round(t, 4) for t in step_ms],
            )
        print(_row_line(row), flush=True)

    guarded(row, work)
    return row


def _parity_ours_vs_timm(
    parity: dict[str, Any], timm_model: Any, ours: Any, images: Tensor, dtype: torch.dtype | None
) -> None:
    device = images.device
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # a true fp32 comparison
    try:
        with torch.inference_mode():
            expected, got = timm_model(images), ours(images)
        parity["fp32_max_abs_diff"] = perf.max_abs_diff(expected, got)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if dtype is not None:
        expected, got = _forward(timm_model, device, dtype)(images), _forward(ours, device, dtype)(images)
        parity["amp_max_abs_diff"] = perf.max_abs_diff(expected, got)
        parity["amp_top1_agreement"] = perf.top1_agreement(expected, got)


def _row_line(row: dict[str, Any]) -> str:
    parts = [
        f"{p} {number(e.get('images_per_second'))} img/s (x{number(e.get('ratio_vs_timm_eager'), 2)})"
        for p, e in row["paths"].items()
        if "images_per_second" in e
    ]
    return f"{row['model']} bs{row['batch_size']}: " + ", ".join(parts)


def to_markdown(rows: list[dict[str, Any]], paths: list[str], env: dict[str, Any], amp: str) -> str:
    """The results table plus where and how they were taken."""
    paths = list(dict.fromkeys([*paths, *(p for row in rows for p in row["paths"])]))  # appended passes too
    headers = (
        ["model", "batch"]
        + [f"{p} img/s (×timm)" for p in paths]
        + ["ours vs timm, fp32 max abs diff", "vs ours eager: max abs diff / top-1"]
    )
    table = []
    for row in rows:
        cells = [row["model"], row["batch_size"]]
        for path in paths:
            entry = row["paths"].get(path, {})
            if "images_per_second" in entry:
                cells.append(f"{number(entry['images_per_second'])} (×{number(entry['ratio_vs_timm_eager'], 2)})")
            else:
                cells.append("failed" if "error" in entry else "—")
        fp32 = row["parity"].get("fp32_max_abs_diff")
        cells.append("—" if fp32 is None else f"{fp32:.1e}")
        fast = [
            f"{p}: {e['max_abs_diff_vs_ours_eager']:.1e} / {e['top1_agreement_vs_ours_eager']:.3f}"
            for p, e in row["paths"].items()
            if p not in ("ours",) and "max_abs_diff_vs_ours_eager" in e
        ]
        cells.append("; ".join(fast) or "—")
        if "error" in row:
            cells[-1] += f" (row error: {row['error']})"
        table.append(cells)
    precision = "fp32" if amp == "none" else f"{amp} autocast"
    title = f"### Inference, {precision}, synthetic input, median over interleaved rounds\n\n"
    return title + environment_lines(env) + "\n\n" + markdown_table(headers, table)


def main() -> None:
    """Parse flags, run every model row within the time budget, write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--amp",
        choices=("bf16", "fp16", "none"),
        default=None,
        help="autocast dtype (default: bf16 on CUDA, none on CPU)",
    )
    parser.add_argument("--models", default=None, help="comma-separated NAME:BATCH (default: per device)")
    parser.add_argument("--paths", default=None, help=f"comma-separated, from {', '.join(ALL_PATHS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path per round")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per path before the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (timm, ours, ...) × rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no further row when less than --row-estimate-s of this is left",
    )
    parser.add_argument("--row-estimate-s", type=float, default=60, help="expected seconds per row (compiling)")
    parser.add_argument("--append", action="store_true", help="add rows to an existing inference.json in --out")
    parser.add_argument("--out", default=None, help="folder for inference.json and inference.md")
    args = parser.parse_args()

    device = perf.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    dtype = resolve_precision(amp, device).dtype
    models = [
        (spec.split(":")[0], int(spec.split(":")[1]))
        for spec in (args.models or (GPU_MODELS if device.type == "cuda" else CPU_MODELS)).split(",")
    ]
    paths = (args.paths or PATHS[device.type]).split(",")
    unknown = [p for p in paths if p not in ALL_PATHS]
    if unknown:
        parser.error(f"unknown --paths {unknown}; choose from {', '.join(ALL_PATHS)}")
    steps = args.steps or (20 if device.type == "cuda" else 5)
    warmup = args.warmup or (5 if device.type == "cuda" else 2)
    env = environment(device)
    deadline = Deadline(args.budget_s, row_estimate_s=args.row_estimate_s)
    rows = previous_rows(args.out, "inference", args.append)
    for index, (name, batch_size) in enumerate(models):
        if index > 0 and not deadline.fits_another_row():  # a pass's first row always runs
            rows.append(
                {
                    "model": name,
                    "batch_size": batch_size,
                    "paths": {},
                    "parity": {},
                    "error": "skipped: out of time budget",
                }
            )
        else:
            rows.append(
                bench_model(
                    name,
                    batch_size,
                    device=device,
                    dtype=dtype,
                    paths=paths,
                    steps=steps,
                    warmup=warmup,
                    rounds=args.rounds,
                )
            )
        env["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
        payload = {
            "environment": env,
            "amp": amp,
            "steps": steps,
            "warmup": warmup,
            "rounds": args.rounds,
            "rows": rows,
        }
        # Written after every row, so a run cut short still leaves its finished rows behind.
        write_report(args.out, "inference", payload, to_markdown(rows, paths, env, amp), echo=index == len(models) - 1)


if __name__ == "__main__":
    main()
