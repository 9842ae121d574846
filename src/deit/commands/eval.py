"""`deit eval`: a checkpoint's class, distillation and fused heads on a validation split (its own preprocessing)."""

from __future__ import annotations

import argparse

from deit.commands.crop_ratio import add_eval_crop_ratio


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit eval` (data-set flags share `deit train`'s spellings)."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a `deit train` checkpoint, a safetensors export, an official/timm .pth or a Hugging Face directory",
    )
    parser.add_argument(
        "--data-set", dest="data_set", default=None, help="data set (default: the one the checkpoint was trained on)"
    )
    parser.add_argument("--data-path", dest="data_path", default=None, help="data root (folder data sets, CIFAR)")
    parser.add_argument(
        "--teacher-model", dest="teacher_model", default=None, help="teacher architecture, to report agreement with it"
    )
    parser.add_argument("--teacher-path", dest="teacher_path", default=None, help="the teacher's weights")
    parser.add_argument("--output", default=None, help="write metrics.json and confusion_matrix.png here")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=128, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--num_workers", "--num-workers", dest="num_workers", type=int, default=2, help="data loader workers"
    )
    parser.add_argument(
        "--ema",
        action="store_true",
        help="evaluate the EMA weights (model_ema) of a training checkpoint, ours or official",
    )
    from deit.data.class_match import MAP_BY_POSITION_HELP

    parser.add_argument("--map-classes-by-position", action="store_true", help=MAP_BY_POSITION_HELP)
    add_eval_crop_ratio(parser)
    parser.add_argument(
        "--worst",
        type=int,
        default=16,
        help="how many of the most confident mistakes to list and draw (default 16; 0: none)",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the three heads' top-1/top-5 (and teacher agreement), the per-class table and the worst
    mistakes; 0 on success."""
    from deit.engine.run import format_metrics
    from deit.errors import printable
    from deit.inference.eval_report import format_report
    from deit.inference.evaluation import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint,
        data_set=args.data_set,
        data_path=args.data_path,
        teacher_model=args.teacher_model,
        teacher_path=args.teacher_path,
        output=args.output,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        use_ema=args.ema,
        worst=args.worst,
        eval_crop_ratio=args.eval_crop_ratio,
        map_classes_by_position=args.map_classes_by_position,
    )
    weights = " (EMA weights)" if args.ema else ""
    print(f"{metrics['checkpoint']}{weights} on {metrics['data_set']} ({metrics['num_images']} images)")
    print(format_metrics(metrics, untrained_dist_head=metrics["dist_head_untrained"]))
    print(f"classes matched {metrics['class_matching']}")
    print(format_report(metrics["classification_report"], metrics["class_names"]))
    mistakes = metrics["worst_mistakes"]
    if mistakes:
        print(
            "most confident mistakes: "
            + "; ".join(
                f"#{row['index']} {printable(row['true'])} -> {printable(row['predicted'])} "
                + f"({100 * row['confidence']:.0f}%"
                + (f", teacher {row['teacher']})" if "teacher" in row else ")")
                for row in mistakes[:5]
            )
            + (f" and {len(mistakes) - 5} more" if len(mistakes) > 5 else "")
        )
    if args.output:
        sheet = f", {args.output}/worst_mistakes.png" if metrics.get("worst_mistakes_png") else ""
        print(f"wrote {args.output}/metrics.json, {args.output}/confusion_matrix.png{sheet}")
    return 0
