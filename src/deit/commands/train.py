"""`deit train`: the official `main.py` flags (and `--config run.yaml`), handed to `deit.engine.train`."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the training flags: official spellings and defaults, plus ours (see docs/training.md)."""
    parser.description = (
        "Train a DeiT student (optionally distilled from a teacher), a teacher, or any timm / "
        "torchvision model. Defaults are the paper's recipe; the default data set is the "
        "embedded DIGITS. `--eval --resume CKPT` evaluates only."
    )
    from deit.engine.config import add_train_arguments  # the engine loads only for the command that runs

    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration (defaults < YAML < flags) and train; 0 on success."""
    from deit.engine import train
    from deit.engine.config import config_from_args

    train(config_from_args(args))
    return 0
