"""`--eval-crop-ratio` for the commands that read a checkpoint's preprocessing (eval, predict, export)."""

from __future__ import annotations

import argparse


def add_eval_crop_ratio(parser: argparse.ArgumentParser, *, what: str = "the evaluation resize") -> None:
    """The flag, defaulting to the ratio the checkpoint records."""
    parser.add_argument(
        "--eval-crop-ratio",
        dest="eval_crop_ratio",
        type=float,
        default=None,
        metavar="RATIO",
        help=f"centre-crop ratio of {what} (resize to input / ratio, crop input; default: the one the "
        "checkpoint records, `deit train --eval-crop-ratio`, else 0.875)",
    )
