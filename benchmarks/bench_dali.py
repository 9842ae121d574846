"""Images/s of the DALI input pipeline (decode + the paper's train transform + normalisation), on the GPU when
there is one (`--device cuda`: decode "mixed", transforms on the card), else DALI's CPU mode; next to the torch
path's per-core rate from bench_data.py. JPEGs are bench_data.py's photograph-like 500×375 files, in a folder.

    python benchmarks/bench_dali.py --device cuda --out $OUT
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_data import natural_jpeg
from common import environment, environment_lines, markdown_table, number, write_report
from deit.data.dali import DaliLoader, DaliSettings
from deit.data.folder import FolderDataset


def main() -> None:
    """Write the JPEG folder, time `--epochs` passes of the DALI train loader after one warm-up pass."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=512, help="JPEGs in the folder (2 classes)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="DALI CPU threads")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes over the folder")
    parser.add_argument("--no-rand-augment", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="deit-dali-bench-") as scratch:
        for index in range(args.images):
            folder = Path(scratch) / f"class{index % 2}"
            folder.mkdir(exist_ok=True)
            (folder / f"{index}.jpg").write_bytes(natural_jpeg(rng))
        settings = DaliSettings(auto_augment=None if args.no_rand_augment else DaliSettings.auto_augment)
        loader = DaliLoader(
            FolderDataset(scratch),
            settings,
            train=True,
            batch_size=args.batch_size,
            device_id=0 if args.device == "cuda" else None,
            num_threads=args.threads,
        )
        rates = []
        for epoch in range(args.epochs + 1):
            began, seen = time.perf_counter(), 0
            for images, _ in loader:
                seen += images.shape[0]
            if args.device == "cuda":
                torch.cuda.synchronize()
            if epoch:  # the first pass builds and warms the pipeline
                rates.append(seen / (time.perf_counter() - began))
    rate = float(np.median(rates))
    env = environment(torch.device(args.device))
    where = "GPU (mixed decode)" if args.device == "cuda" else f"CPU mode, {args.threads} threads"
    rows = [[f"DALI decode + train transform{'' if args.no_rand_augment else ' + RandAugment'}", where, number(rate)]]
    markdown = (
        "### DALI input pipeline\n\n"
        + environment_lines(env)
        + "\n\n"
        + markdown_table(["pipeline", "where", "images/s"], rows)
    )
    write_report(
        args.out,
        "dali",
        {
            "environment": env,
            "images_per_second": rate,
            "epochs": rates,
            "device": args.device,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "images": args.images,
        },
        markdown,
        echo=True,
    )


if __name__ == "__main__":
    main()
