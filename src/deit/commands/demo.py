"""`deit demo`: the distillation experiment on the embedded DIGITS data (deit.demo.experiment)."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit demo`."""
    from deit.demo.experiment import DemoSettings

    defaults = DemoSettings()
    parser.add_argument(
        "--output-dir",
        "--output_dir",
        default=defaults.output_dir,
        help=f"where results and per-run folders go (default {defaults.output_dir})",
    )
    parser.add_argument("--seeds", type=int, default=None, help=f"seeds per student (default {defaults.seeds})")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=None,
        help=f"the students' first seed; they use first, first+1, ... (default {defaults.first_seed}): other values "
        "check the headline on fresh draws",
    )
    parser.add_argument(
        "--sizes",
        type=_fractions,
        default=None,
        metavar="F,F,...",
        help="training-set sizes as fractions of DIGITS' training split (default "
        f"{','.join(f'{size:g}' for size in defaults.sizes)})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"student epochs on the full training set; a fraction f trains epochs / f (default {defaults.epochs})",
    )
    parser.add_argument(
        "--teacher-epochs",
        type=int,
        default=None,
        help=f"teacher epochs on the full training set, scaled as --epochs (default {defaults.teacher_epochs})",
    )
    parser.add_argument(
        "--headline-seeds",
        type=int,
        default=None,
        help=f"seeds of the headline comparison (default {defaults.headline_seeds}; the interval needs several)",
    )
    parser.add_argument(
        "--table3",
        action="store_true",
        help="also train the paper's Table 3 rows at the full size: the two-class-token control and hard "
        "distillation (adds about 40%% to the time)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--jobs", type=int, default=0, help="runs trained at once on a CPU, one process each (default: one per core)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 1 seed, 2 sizes, short epochs, a narrow student (numbers meaningless)",
    )


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of fractions") from None


def run(args: argparse.Namespace) -> int:
    """Run the experiment from the command line."""
    from deit.demo.experiment import STUDENT_KINDS, DemoSettings, run_demo

    changes = {"output_dir": args.output_dir, "device": args.device, "jobs": args.jobs}
    for name in ("seeds", "first_seed", "sizes", "epochs", "teacher_epochs", "headline_seeds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.table3:
        changes["full_size_kinds"] = STUDENT_KINDS
    settings = DemoSettings.quick(**changes) if args.quick else DemoSettings(**changes)
    run_demo(settings, command=_command_line(args))
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, reconstructed (flags at their defaults left out)."""
    parts = ["deit demo"] + (["--quick"] if args.quick else []) + (["--table3"] if args.table3 else [])
    for name in ("seeds", "first_seed", "sizes", "epochs", "teacher_epochs", "headline_seeds"):
        value = getattr(args, name)
        if value is not None:
            text = ",".join(f"{size:g}" for size in value) if name == "sizes" else value
            parts.append(f"--{name.replace('_', '-')} {text}")
    if args.jobs:
        parts.append(f"--jobs {args.jobs}")
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    parts.append(f"--output-dir {args.output_dir}")
    return " ".join(parts)
