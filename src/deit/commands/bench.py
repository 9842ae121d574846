"""`deit bench`: images/s for inference or a full training step (deit.inference.bench), as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from deit.errors import DeitError


def _parse_model_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise DeitError(f"--model-kwargs is not valid JSON: {error.msg} at character {error.pos}") from error
    if not isinstance(parsed, dict):
        raise DeitError("--model-kwargs must be a JSON object, e.g. '{\"depth\": 2}'")
    return parsed


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit bench`."""
    from deit.precision import AMP_CHOICES

    parser.add_argument(
        "--model", default=None, help="model name (ours, timm or torchvision); required unless --checkpoint"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default 256 CUDA, 8 CPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--amp", choices=AMP_CHOICES, default="auto", help="autocast dtype (auto: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile student and teacher (default: on for CUDA; off for CPU, where "
        "compiling takes about a minute and gains little over the matrix products)",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="time deit train's own step (mixup, forward, loss with teacher, backward, clip, "
        "optimizer, EMA; the official recipe unless --config says otherwise) instead of "
        "inference",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="YAML",
        help="with --train: a deit train config.yaml whose settings the timed step uses (model, "
        "batch, precision and teacher come from the flags above)",
    )
    parser.add_argument("--teacher-model", default=None, help="teacher for --train (e.g. regnety_160)")
    parser.add_argument(
        "--distillation-type", choices=("hard", "soft"), default="hard", help="distillation loss with --teacher-model"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of student and teacher")
    parser.add_argument(
        "--model-kwargs", default=None, help='JSON constructor overrides, e.g. \'{"depth": 2, "patch_size": 8}\''
    )
    parser.add_argument(
        "--onnxruntime",
        action="store_true",
        help="CPU inference through ONNX Runtime (exported in memory) instead of PyTorch",
    )
    parser.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="with --onnxruntime: int8 (ONNX Runtime fusion + int8 weight products)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="with --quantize int8: a trained checkpoint (replaces --model) whose validation "
        "split measures the top-1 agreement with fp32",
    )
    parser.add_argument(
        "--data-set", default=None, help="validation data for the agreement (default: the checkpoint's)"
    )
    parser.add_argument("--data-path", default=None, help="folder of --data-set (default: the checkpoint's)")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="inference only: replay CUDA graphs (with --compile: mode reduce-overhead)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


_FLAG_SETTINGS = (
    "model",
    "batch_size",
    "input_size",
    "amp",
    "compile",
    "device",
    "model_kwargs",
    "teacher_model",
    "distillation_type",
    "seed",
)


def run(args: argparse.Namespace) -> int:
    """Run `deit bench` from parsed flags."""
    from deit.inference.bench import benchmark

    if args.model is None and args.checkpoint is None:
        raise DeitError("--model is required (or --checkpoint with --onnxruntime --quantize int8)")
    train_settings = None
    if args.config:
        if not args.train:
            raise DeitError("--config only matters with --train")
        from deit.engine import load_yaml_settings

        train_settings = {k: v for k, v in load_yaml_settings(args.config).items() if k not in _FLAG_SETTINGS}
    result = benchmark(
        args.model,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        train=args.train,
        teacher_model=args.teacher_model,
        distillation_type=args.distillation_type,
        steps=args.steps,
        warmup=args.warmup,
        img_size=args.img_size,
        model_kwargs=_parse_model_kwargs(args.model_kwargs),
        num_classes=args.num_classes,
        onnxruntime=args.onnxruntime,
        cuda_graphs=args.cuda_graphs,
        train_settings=train_settings,
        quantize=args.quantize,
        checkpoint=args.checkpoint,
        data_set=args.data_set,
        data_path=args.data_path,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0
