"""`deit export`: a checkpoint to ONNX, TorchScript, safetensors, HF or timm, verified (deit.export.exporter)."""

from __future__ import annotations

import argparse

from deit.commands.crop_ratio import add_eval_crop_ratio


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit export`."""
    from deit.export.exporter import DEFAULT_TOLERANCE, FOLDER_FORMATS, FORMATS
    from deit.export.model_card import DEFAULT_LICENSE
    from deit.export.onnx_runtime import QUANTIZE_CHOICES
    from deit.inference.agreement import DEFAULT_MIN_AGREEMENT

    parser.add_argument("--checkpoint", required=True, help="checkpoint.pth, official/timm weights, HF directory")
    parser.add_argument(
        "--format", required=True, choices=FORMATS + FOLDER_FORMATS, help="output format (hf, timm: a folder)"
    )
    parser.add_argument(
        "--output", required=True, help="file to write (model.onnx, model.pt, model.safetensors); folder for hf/timm"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="largest batch used to verify the export (batch 1 is always checked; default 4)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest max |diff| against PyTorch accepted (default 1e-4, fp32)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output if it exists (never allowed when it is the input checkpoint)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default="none",
        help="int8: ONNX Runtime fusion + int8 weight products (CPU fast path); checked by top-1 "
        "agreement with fp32 on the validation split",
    )
    parser.add_argument(
        "--data-set", default=None, help="validation data for the int8 agreement check (default: the checkpoint's)"
    )
    parser.add_argument("--data-path", default=None, help="folder of --data-set (default: the checkpoint's)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="lowest int8 top-1 agreement with fp32 accepted (default 0.995)",
    )
    parser.add_argument(
        "--no-agreement-check",
        dest="check_agreement",
        action="store_false",
        help="export int8 without measuring its top-1 agreement (needed when no data set is known)",
    )
    parser.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        help="licence of the exported weights in the model card (hf, timm; default 'other')",
    )
    add_eval_crop_ratio(parser, what="the preprocessing written with the export")
    parser.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep an export that fails its check as <name>.failed<ext> (never at --output)",
    )


def run(args: argparse.Namespace) -> int:
    """Run `deit export`; prints the verification, exits 2 when it fails."""
    from deit.export.exporter import export

    report = export(
        args.checkpoint,
        args.format,
        args.output,
        opset=args.opset,
        batch_size=args.batch_size,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        quantize=args.quantize,
        data_set=args.data_set,
        data_path=args.data_path,
        min_agreement=args.min_agreement,
        check_agreement=args.check_agreement,
        keep_failed=args.keep_failed,
        license=args.license,
        eval_crop_ratio=args.eval_crop_ratio,
    )
    print(report.summary())
    return 0
