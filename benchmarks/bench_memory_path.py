"""`deit train` from memory (`--data-loader memory`: DIGITS decoded once onto the device, crop + flip +
normalisation per batch) against the per-image DataLoader (`--data-loader torch`), alternating, same run.

The training images/s of each epoch come from the run's own log (`train_images_per_second`); the first epoch
is dropped (start-up). A row of benchmarks/run_gpu.sh (the in-memory path with the data on the card); on a CPU
it runs too.

    PYTHONPATH=src python benchmarks/bench_memory_path.py --device cuda --out benchmarks/results/gpu
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment  # noqa: E402
from deit.engine import make_config, train  # noqa: E402


def images_per_second(loader: str, folder: Path, args: argparse.Namespace) -> float:
    """Median training images/s over the epochs after the first, from the run's log."""
    config = make_config(
        model="deit_tiny_distilled_patch16_224",
        input_size=32,
        data_set="DIGITS",
        data_loader=loader,
        batch_size=args.batch_size,
        epochs=args.epochs,
        aa="none",
        color_jitter=0.0,
        reprob=0.0,
        mixup=0.0,
        cutmix=0.0,
        repeated_aug=False,
        hflip=0.5,
        model_ema=False,
        amp=args.amp,
        device=args.device,
        num_workers=args.workers,
        eval_interval=args.epochs,
        warmup_epochs=0,
        log_format="plain",
        log_interval=0,
        model_kwargs=json.loads(args.model_kwargs),
        output_dir=str(folder),
        overwrite_output=True,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        train(config)
    rows = [json.loads(line) for line in (folder / "log.txt").read_text().splitlines()]
    return statistics.median(row["train_images_per_second"] for row in rows[1:])


def main() -> int:
    """Alternate the two loaders, print and write images/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the per-image path")
    parser.add_argument("--model-kwargs", default='{"patch_size": 4}', help="JSON (a CPU smoke test: a tiny one)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (start-up) is not timed")
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    results: dict[str, list[float]] = {"memory": [], "torch": []}
    for _ in range(args.rounds):
        for loader in results:
            results[loader].append(images_per_second(loader, work / loader, args))
    medians = {loader: statistics.median(values) for loader, values in results.items()}
    line = (
        f"deit_tiny⚗ at 32 px on DIGITS, batch {args.batch_size}, {args.device} {args.amp}: memory "
        f"{medians['memory']:.0f} images/s, per-image DataLoader ({args.workers} workers) "
        f"{medians['torch']:.0f} images/s, x{medians['memory'] / medians['torch']:.2f}"
    )
    print(line)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report = {"environment": environment(torch.device(args.device)), "images_per_second": results, "summary": line}
        (Path(args.out) / "memory_path.json").write_text(json.dumps(report, indent=2))
        (Path(args.out) / "memory_path.md").write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
