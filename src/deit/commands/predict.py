"""`deit predict`: top-k classes for image files and folders (deit.inference.predict), printed or as JSON.

Exit codes: 0 every input predicted; 1 some inputs could not be read (each named on stderr, the rest
predicted); 2 nothing could be predicted (missing checkpoint, no readable image, bad flag).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deit.commands.crop_ratio import add_eval_crop_ratio
from deit.errors import DeitError, printable

EXIT_SOME_INPUTS_FAILED = 1

if TYPE_CHECKING:
    from deit.inference.predict import Prediction


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit predict`."""
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint.pth, official/timm weights, HF directory, or an .onnx file written by `deit export`",
    )
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: automatic)")
    add_eval_crop_ratio(parser)
    parser.epilog = "exit status: 0 all predicted, 1 some inputs unreadable (named on stderr), 2 error"


def _print_text(predictions: Sequence[Prediction]) -> None:
    for prediction in predictions:
        if not prediction.ok:
            continue
        # Names come from files (class names, file names): escaped, so one result stays one line.
        ranked = ", ".join(f"{printable(c)} {p:.3f}" for c, p in zip(prediction.classes, prediction.probabilities))
        print(f"{printable(prediction.path)}: {ranked}")


def run(args: argparse.Namespace) -> int:
    """Run `deit predict`; returns the exit code documented at the top of this module."""
    from deit.inference.predict import predict
    from deit.io import dumps_strict

    has_folder = any(Path(p).is_dir() for p in args.inputs)
    predictions = predict(
        args.checkpoint,
        args.inputs,
        args.topk,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        progress=has_folder,
        eval_crop_ratio=args.eval_crop_ratio,
    )
    failed = [p for p in predictions if not p.ok]
    if len(predictions) == 1 and failed:
        raise DeitError(str(failed[0].error))
    for prediction in failed:
        print(f"deit predict: {printable(prediction.error or '')}", file=sys.stderr)
    if len(failed) == len(predictions):
        raise DeitError(f"none of the {len(predictions)} inputs could be read as an image")
    if args.json:
        sys.stdout.write(dumps_strict([p.to_json() for p in predictions], indent=2))
        print()
    else:
        _print_text(predictions)
    return EXIT_SOME_INPUTS_FAILED if failed else 0
