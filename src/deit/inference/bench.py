"""Images/s (`deit bench`'s library) for inference and for a full training step, warm-up excluded, median over steps.

A training step is `deit train`'s own step (deit.engine.step.TrainStep), built from a `deit train`
configuration by the engine's builders: mixup/cutmix, student forward, the DeiT loss with the teacher's
prediction, backward, clipping, the optimizer, the EMA update. Timing uses CUDA events on GPU (no host
synchronisation inside the timed steps) and perf_counter on CPU, where every operation is synchronous.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deit import perf
from deit.cpu_info import describe_cpu
from deit.engine.step import TrainStep
from deit.errors import DeitError

DEFAULT_BATCH_SIZE = {"cuda": 256, "cpu": 8}


@dataclass
class BenchResult:
    """One measurement: what ran, how, and how fast (median over the timed steps)."""

    model: str
    mode: str  # "inference" or "train"
    device: str
    device_name: str
    batch_size: int
    img_size: int
    amp: str  # "bf16", "fp16" or "fp32"
    runtime: str  # "eager", "compiled", "onnxruntime", "cuda-graph", "compiled+cuda-graph"
    steps: int
    warmup: int
    median_ms: float
    images_per_second: float
    step_ms: list[float] = field(default_factory=list)
    teacher: str | None = None
    distillation_type: str | None = None
    parity_max_abs_diff: float | None = None  # fast path vs eager (logits, or the first step's loss)
    quantize: str = "none"  # "int8": ONNX Runtime int8 (see deit.export.onnx_runtime)
    top1_agreement: dict[str, Any] | None = None  # quantized vs fp32 on a trained model's validation split
    fallback_reason: str | None = None  # why the requested fast path was not used
    torch_version: str = torch.__version__
    train_config: dict[str, Any] | None = None  # the `deit train` settings of a training row

    def summary(self) -> str:
        """One line a person can read."""
        what = (
            f"train step (teacher {self.teacher}, {self.distillation_type})"
            if self.mode == "train" and self.teacher
            else ("train step" if self.mode == "train" else "inference")
        )
        line = (
            f"{self.model} {what} on {self.device_name}, {self.amp}, {self.runtime}, batch {self.batch_size}, "
            f"{self.img_size}px: {self.images_per_second:,.1f} images/s (median {self.median_ms:.2f} ms/step "
            f"over {self.steps} steps after {self.warmup} warm-up)"
        )
        if self.parity_max_abs_diff is not None:
            line += f"; max |diff| vs eager {self.parity_max_abs_diff:.2e}"
        if self.fallback_reason:
            line += f"; fast path not used ({self.fallback_reason})"
        if self.quantize != "none":
            agreement = self.top1_agreement
            line += (
                f"; {self.quantize}, top-1 agreement with fp32 {100 * agreement['rate']:.2f}% "
                f"({agreement['agreeing']}/{agreement['images']} {agreement['data_set']} validation images)"
                if agreement
                else f"; {self.quantize}, top-1 agreement not measured (give --checkpoint)"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def time_steps(step: Callable[[], Any], *, steps: int, warmup: int, device: torch.device) -> list[float]:
    """Milliseconds of each of `steps` calls of `step` after `warmup` untimed ones.

    On CUDA each step is bracketed by events and the host synchronises once, after the last step, so the
    timing adds no stall between steps; on CPU the host clock is exact because the work is synchronous.
    """
    if steps < 1 or warmup < 0:
        raise DeitError(f"--steps must be at least 1 and --warmup at least 0, got {steps} and {warmup}")
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        for start, end in zip(starts, ends):
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in zip(starts, ends)]
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append((time.perf_counter() - began) * 1000.0)
    return times


def device_name(device: torch.device) -> str:
    """The card's name, or the CPU's with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{describe_cpu()}, {torch.get_num_threads()} threads"


def benchmark(
    model: str,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: str = "auto",
    compile: bool | None = None,
    train: bool = False,
    teacher_model: str | None = None,
    distillation_type: str = "hard",
    steps: int = 20,
    warmup: int = 5,
    img_size: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    num_classes: int = 1000,
    onnxruntime: bool = False,
    cuda_graphs: bool = False,
    seed: int = 0,
    train_settings: dict[str, Any] | None = None,
    quantize: str = "none",
    checkpoint: str | None = None,
    data_set: str | None = None,
    data_path: str | None = None,
) -> BenchResult:
    """Images/s of `model` for inference (default) or for a `deit train` step (`train=True`) on synthetic data.

    `compile=None` means on for CUDA, off for CPU (see `deit.perf.default_compile`). `onnxruntime` runs
    inference through ONNX Runtime on the CPU instead of PyTorch; `quantize='int8'` makes it int8 and, given a
    trained `checkpoint` (which then replaces `model`), measures the top-1 agreement with fp32 on its validation
    split (`data_set`/`data_path`, default: the ones it was trained on). `train_settings` are further
    `deit train` settings for the training step (e.g. `{"clip_grad": 1.0, "model_ema": False}`); the result
    records them all.
    """
    from deit.models.factory import build_model
    from deit.precision import resolve_precision

    torch_device = perf.resolve_device(device)
    if torch_device.type not in ("cpu", "cuda"):  # timing is synchronous on CPU, CUDA events on GPU: nothing else
        raise DeitError(f"--device: '{device}' is not supported by deit bench (use cpu or cuda)")
    dtype = resolve_precision(amp, torch_device).dtype  # the same resolver, and refusals, as deit train
    use_compile = perf.default_compile(torch_device) if compile is None else compile
    if onnxruntime and (train or torch_device.type != "cpu"):
        raise DeitError("--onnxruntime runs inference on the CPU only (drop --train, use --device cpu)")
    if quantize != "none" and not onnxruntime:
        raise DeitError(f"--quantize {quantize} needs --onnxruntime")
    if checkpoint is not None and (train or quantize == "none"):
        raise DeitError("--checkpoint is for measuring --quantize int8 agreement (with --onnxruntime)")
    if cuda_graphs and (train or torch_device.type != "cuda"):
        raise DeitError(
            "--cuda-graphs is for inference on --device cuda (deit train does not replay CUDA graphs, "
            "so neither does its benchmark)"
        )
    if teacher_model is not None and not train:
        raise DeitError("--teacher-model only matters with --train")
    batch = batch_size or DEFAULT_BATCH_SIZE[torch_device.type]
    if batch < 1:
        raise DeitError(f"--batch-size must be positive, got {batch}")
    torch.manual_seed(seed)
    meta: Any = None  # a CheckpointMeta with --checkpoint
    if checkpoint is not None:
        from deit.inference.preprocess import load_inference_model

        network, meta, _ = load_inference_model(checkpoint, "cpu")
        model, num_classes = meta.model or model, meta.num_classes
    else:
        network = build_model(model, num_classes=num_classes, img_size=img_size, **(model_kwargs or {}))
    size = int(getattr(network, "img_size", None) or img_size or 224)
    images = perf.to_device(torch.randn(batch, 3, size, size), torch_device)
    labels = perf.to_device(torch.randint(0, num_classes, (batch,)), torch_device)
    common = dict(
        model=model,
        device=torch_device.type,
        device_name=device_name(torch_device),
        batch_size=batch,
        img_size=size,
        amp=_amp_name(dtype),
        steps=steps,
        warmup=warmup,
    )
    if train:
        config = train_config(
            model,
            batch_size=batch,
            img_size=size,
            amp=amp,
            compile=use_compile,
            device=torch_device,
            teacher_model=teacher_model,
            distillation_type=distillation_type,
            model_kwargs=model_kwargs or {},
            seed=seed,
            **(train_settings or {}),
        )
        return _bench_train(config, images, labels, num_classes=num_classes, common=common)
    result, forward = _bench_inference(
        network.to(torch_device),
        images,
        dtype=dtype,
        use_compile=use_compile,
        cuda_graphs=cuda_graphs,
        onnxruntime=onnxruntime,
        quantize=quantize,
        common=common,
    )
    if checkpoint is not None:
        from deit.inference.agreement import checkpoint_agreement

        agreement = checkpoint_agreement(
            network, meta, forward, checkpoint=checkpoint, data_set=data_set, data_path=data_path
        )
        result.top1_agreement = None if agreement is None else dict(asdict(agreement), rate=agreement.rate)
    return result


def _amp_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _bench_inference(
    network: nn.Module,
    images: Tensor,
    *,
    dtype: torch.dtype | None,
    use_compile: bool,
    cuda_graphs: bool,
    onnxruntime: bool,
    quantize: str,
    common: dict[str, Any],
) -> tuple[BenchResult, Callable[[Tensor], Tensor]]:
    device = images.device
    network.eval()
    with perf.inference_context(device, dtype):
        reference = network(images)

    def eager(batch: Tensor) -> Tensor:
        with perf.inference_context(device, dtype):
            return network(batch)

    forward, runtime, fallback = eager, "eager", None
    if onnxruntime:
        from deit.export.onnx_runtime import OnnxRuntimeModel

        forward = OnnxRuntimeModel.from_module(network, images[:2].cpu(), quantize=quantize)
        runtime = "onnxruntime" if quantize == "none" else f"onnxruntime-{quantize}"
    elif use_compile:
        compiled = perf.compile_model(network, mode="reduce-overhead" if cuda_graphs else None)

        def compiled_forward(batch: Tensor) -> Tensor:
            with perf.inference_context(device, dtype):
                return compiled(batch)

        forward, fallback = perf.warm_up_or_eager(compiled_forward, eager, images)
        if fallback is None:
            runtime = "compiled+cuda-graph" if cuda_graphs else "compiled"
    if cuda_graphs and runtime == "eager":
        forward, runtime = perf.CudaGraphRunner(eager, images), "cuda-graph"

    parity = None if runtime == "eager" else perf.max_abs_diff(reference, forward(images))
    times = time_steps(lambda: forward(images), steps=common["steps"], warmup=common["warmup"], device=device)
    result = _result(common, "inference", runtime, times, parity=parity, fallback=fallback)
    result.quantize = quantize
    return result, forward


def _result(common: dict[str, Any], mode: str, runtime: str, times: list[float], **extra: Any) -> BenchResult:
    median = statistics.median(times)
    return BenchResult(
        **common,
        mode=mode,
        runtime=runtime,
        median_ms=median,
        images_per_second=common["batch_size"] * 1000.0 / median,
        step_ms=times,
        parity_max_abs_diff=extra.get("parity"),
        fallback_reason=extra.get("fallback"),
        teacher=extra.get("teacher"),
        distillation_type=extra.get("distillation_type"),
        train_config=extra.get("train_config"),
    )


def train_config(
    model: str,
    *,
    batch_size: int,
    img_size: int,
    amp: str,
    compile: bool,
    device: torch.device,
    teacher_model: str | None,
    distillation_type: str,
    model_kwargs: dict[str, Any],
    **settings: Any,
) -> Any:
    """The `deit train` configuration a training benchmark runs: the official recipe (AdamW, mixup/cutmix,
    label smoothing, EMA, ...) with this model, batch, precision and teacher; `settings` override any flag."""
    from deit.engine import make_config

    distillation = distillation_type if teacher_model is not None else "none"
    # Synthetic ImageNet-like input: ImageNet normalisation, as the official default data set (teacher and student
    # then share it, so the teacher does not re-normalise) -- unless `settings` name a data set.
    settings.setdefault("data_set", "IMNET")
    return make_config(
        model=model,
        batch_size=batch_size,
        input_size=img_size,
        amp=amp,
        compile=compile,
        device=str(device),
        model_kwargs=dict(model_kwargs),
        distillation_type=distillation,
        **({"teacher_model": teacher_model} if teacher_model is not None else {}),
        **settings,
    )


def build_bench_step(config: Any, *, num_classes: int, device: torch.device) -> TrainStep:
    """The engine's training step for `config`, built by the same builders as `deit train` (engine/builders.py);
    the teacher has random weights unless the config names a `teacher_path` (its speed does not depend on them)."""
    from deit.engine import builders
    from deit.precision import resolve_precision

    precision = resolve_precision(config.amp, device)
    student = builders.build_student(config, num_classes, load_finetune=False).to(device)
    teacher = builders.build_teacher_for(config, num_classes, device)
    return builders.build_train_step(
        config, student, teacher, num_classes=num_classes, device=device, precision=precision
    )


def _bench_train(
    config: Any, images: Tensor, labels: Tensor, *, num_classes: int, common: dict[str, Any]
) -> BenchResult:
    device = images.device
    parity = fallback = None
    torch.manual_seed(config.seed)
    step = build_bench_step(dataclasses.replace(config, compile=False), num_classes=num_classes, device=device)
    runtime = "eager"
    if config.compile:
        # The compiled step must compute what the eager one does: compare the first loss on the same mixed batch.
        mixed_images, mixed_targets = step.mix(images, labels)
        with torch.no_grad():
            reference = step.loss(mixed_images, mixed_targets).float()
        torch.manual_seed(config.seed)  # the same initial weights as the eager step's
        compiled_step = build_bench_step(config, num_classes=num_classes, device=device)
        try:
            with torch.no_grad():
                parity = float((compiled_step.loss(mixed_images, mixed_targets).float() - reference).abs())
            step, runtime = compiled_step, "compiled"
        except Exception as error:  # noqa: BLE001 - a failed compile: time the eager step instead, and say so
            torch._dynamo.reset()
            fallback = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
    times = time_steps(lambda: step(images, labels), steps=common["steps"], warmup=common["warmup"], device=device)
    teacher = config.teacher_model if config.distillation_type in ("soft", "hard") else None
    return _result(
        common,
        "train",
        runtime,
        times,
        parity=parity,
        fallback=fallback,
        teacher=teacher,
        distillation_type=config.distillation_type if teacher else None,
        train_config=config.to_dict(),
    )
