"""The `deit` command: parse the subcommand, hand over to the library, turn user errors into one line."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from deit.commands import analyze, bench, data, demo, export, models, predict, submit, teacher_labels, train
from deit.commands import eval as evaluate
from deit.errors import DeitError
from deit.flag_bounds import apply_bounds
from deit.models.model_cost import DEFAULT_MAX_MODEL_BYTES, set_max_model_bytes

# Each subcommand is a module of deit.commands exposing `configure_parser(parser)` and `run(args) -> int`.
# Those modules import their library inside the two functions, so `deit --help` does not pay for the engine,
# onnx or matplotlib, and only the command that runs loads what it needs.
SUBCOMMANDS: dict[str, tuple[ModuleType, str]] = {
    "train": (train, "train a DeiT student, a teacher or any timm/torchvision model"),
    "submit": (submit, "submit `deit train` as a SLURM job (submitit; the official run_with_submitit.py flags)"),
    "eval": (evaluate, "evaluate a checkpoint: class, distillation and fused heads"),
    "predict": (predict, "top-k classes for images or folders"),
    "export": (export, "export a checkpoint to ONNX, TorchScript, safetensors, a Hugging Face or a timm folder"),
    "analyze": (analyze, "token similarity, head agreement and attention maps"),
    "bench": (bench, "images/s for inference and for a training step"),
    "models": (models, "list the registered models"),
    "data": (data, "data tools: `deit data pack` writes WebDataset tar shards"),
    "demo": (demo, "the paper's distillation experiment on the embedded DIGITS data"),
    "teacher-labels": (teacher_labels, "run a training stream through the teacher once; students replay it"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, with a usage error as every other `deit` error: one line naming the flag, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Raise the error as a `DeitError` (`main` prints it on one line; the usage is one `--help` away)."""
        bound = re.fullmatch(r"argument (\S+): (\S*) (must be .+)", message)  # deit.flag_bounds' refusal
        if bound:  # in the words of every other bad value: "--lr inf: must be a finite number"
            message = f"{bound[1].split('/')[0]} {bound[2]}: {bound[3]}"
        raise DeitError(f"{message.removeprefix('argument ')} (see {self.prog} --help)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `deit` parser; only `command`'s flags are configured (every command is listed for --help).

    Every numeric flag of `command` is checked against `deit.flag_bounds` as it is parsed."""
    parser = OneLineErrorParser(prog="deit", description="DeiT: data-efficient image transformers.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            sub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
            sub.add_argument(
                "--max-model-gb",
                dest="max_model_gb",
                type=float,
                default=None,
                help="refuse a model a file describes whose weights + one image's activations exceed this many GB "
                f"(default {DEFAULT_MAX_MODEL_BYTES / 1e9:g}; raise it only for trusted files)",
            )
            module.configure_parser(sub)
            apply_bounds(sub, name)
            sub.set_defaults(_run=module.run)
    return parser


def _wants_debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"deit: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deit` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(argv)
    previous_format = warnings.formatwarning
    if not debug:  # a user reads one line per warning; the source location is for --debug
        warnings.formatwarning = _one_line_warning
    try:
        command = next((a for a in argv if not a.startswith("-")), None)
        parser = build_parser(command if command in SUBCOMMANDS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        limit = getattr(args, "max_model_gb", None)
        set_max_model_bytes(None if limit is None else int(limit * 1e9))
        return int(args._run(args) or 0)
    except DeitError as error:
        if debug:
            raise
        print(f"deit: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `deit models | head` closed the pipe: not an error. Point stdout at devnull so the exit flush is quiet.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("deit: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as error:
        # Anything else is still reported on one line; --debug shows where it came from.
        if debug:
            raise
        print(f"deit: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous_format
        set_max_model_bytes(None)  # the flag is this command's, not the process's (tests call main repeatedly)
