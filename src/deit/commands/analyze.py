"""`deit analyze`: token similarity, head agreement and attention maps of a checkpoint (deit.inference.analyze)."""

from __future__ import annotations

import argparse
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit analyze`."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint.pth, official/timm weights, HF directory")
    parser.add_argument(
        "--data-set",
        default=None,
        help="IMNET (folder with val/<class>/), CIFAR10, DIGITS ... "
        "(default: the one the checkpoint was trained on, else IMNET)",
    )
    parser.add_argument(
        "--data-path", default=None, help="where the data set lives (default: the checkpoint's training data path)"
    )
    parser.add_argument("--output", required=True, help="folder for the tables, JSON and PNGs")
    parser.add_argument("--num-images", type=int, default=8, help="images drawn with attention maps (default 8)")
    parser.add_argument(
        "--max-images",
        type=int,
        default=1000,
        help="images for similarity and agreement, spread over the split (default 1000)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda ... (default: cuda if available)")
    parser.add_argument("--teacher-model", default=None, help="teacher name (ours / timm / torchvision)")
    parser.add_argument("--teacher-path", default=None, help="the teacher's trained weights")
    from deit.data.class_match import MAP_BY_POSITION_HELP

    parser.add_argument("--map-classes-by-position", action="store_true", help=MAP_BY_POSITION_HELP)


def run(args: argparse.Namespace) -> int:
    """Run `deit analyze` and print the headline numbers."""
    from deit.inference.analyze import PAPER_EMBEDDING_SIMILARITY, PAPER_LAST_LAYER_SIMILARITY, analyze

    summary = analyze(
        args.checkpoint,
        args.data_path,
        args.output,
        data_set=args.data_set,
        num_images=args.num_images,
        max_images=args.max_images,
        batch_size=args.batch_size,
        teacher_model=args.teacher_model,
        teacher_path=args.teacher_path,
        device=args.device,
        workers=args.workers,
        map_classes_by_position=args.map_classes_by_position,
    )
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    similarity = summary.get("token_similarity")
    if similarity:
        print(
            f"cls/dist token cosine similarity: embeddings {similarity['embedding']:.3f} "
            f"(paper {PAPER_EMBEDDING_SIMILARITY}), last layer {similarity['layers'][-1]:.3f} "
            f"(paper {PAPER_LAST_LAYER_SIMILARITY})"
        )
    agreement = summary["agreement"]
    for pair, value in agreement["agreement"].items():
        print(f"agreement {pair.replace('_vs_', ' vs ')}: {value:.3f} over {agreement['num_images']} images")
    for head, value in agreement.get("top1_accuracy", {}).items():
        print(f"top-1 {head}: {100 * value:.2f}%")
    print(f"wrote {len(summary['files'])} files to {args.output}")
    return 0
