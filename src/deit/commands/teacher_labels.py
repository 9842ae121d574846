"""`deit teacher-labels`: the training flags, `--output DIR` and `--top-k`, handed to `deit.engine.teacher_labels`."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The `deit train` flags (the stream and the teacher to store), plus where and how much to store."""
    parser.description = (
        "Run a training configuration's seeded stream once through its teacher and store the outputs, so that "
        "every student drawing the same stream replays them with `deit train --teacher-labels DIR` "
        "(docs/teacher_labels.md)."
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="the label folder to write")
    parser.add_argument(
        "--top-k",
        type=int,
        default=0,
        metavar="K",
        help="soft: store the K largest logits per sample (0: every logit up to 100 classes, else the top 10; "
        "K >= classes: every logit)",
    )
    from deit.engine.config import add_train_arguments  # the engine loads only for the command that runs

    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration as `deit train` does and compute the labels; 0 on success."""
    from deit.engine.config import config_from_args
    from deit.engine.teacher_labels import compute_teacher_labels

    config = config_from_args(args)
    compute_teacher_labels(config, args.output, top_k=args.top_k, overwrite=config.overwrite_output)
    return 0
