"""Images/s per CPU core of JPEG decoding and of the paper's training transform, and whether 16 cores keep the
GPU step fed.

The JPEGs are generated (500×375, ImageNet's typical size) with natural-image statistics — smooth shapes and
gradients, mild texture — rather than white noise, which would decode several times slower than photographs.
Everything runs in one process on one thread: a DataLoader worker does the same work on its own core.

    python benchmarks/bench_data.py --out benchmarks/results/cpu
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from common import environment, environment_lines, markdown_table, number, write_report

# docs/reference.md: timm on one H200, bf16, deit_small⚗ + RegNetY-16GF teacher, hard distillation, batch 256.
GPU_STEP_RATES = {
    "timm loop, small⚗ + teacher (docs/reference.md, H200)": 2360.0,
    "2× that (this project's goal)": 4720.0,
    "timm, small without teacher (docs/reference.md)": 5077.0,
}


def natural_jpeg(rng: np.random.Generator, *, width: int = 500, height: int = 375, quality: int = 90) -> bytes:
    """A photograph-like JPEG: colour fields at two scales, a few hard-edged shapes, fine texture.

    The texture is set so the files average about ImageNet's 110 KiB: decoding cost follows the coded size.
    """

    def field(rows: int, cols: int) -> np.ndarray:
        cells = rng.uniform(0, 255, size=(rows, cols, 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC), dtype=np.float32)

    canvas = 0.7 * field(6, 8) + 0.3 * field(height // 8, width // 8)
    for _ in range(int(rng.integers(3, 8))):  # shapes give the edges real photos have
        x0, y0 = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        w, h = int(rng.integers(30, width - x0)), int(rng.integers(30, height - y0))
        canvas[y0 : y0 + h, x0 : x0 + w] = canvas[y0 : y0 + h, x0 : x0 + w] * 0.4 + rng.uniform(0, 255, 3) * 0.6
    canvas += rng.normal(0, 22, size=canvas.shape)  # fine texture
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def per_second(work: Callable[[bytes], Any], files: list[bytes], *, repeats: int) -> list[float]:
    """Images/s of `work` over all files, once per repeat (after one warm-up pass over a few files)."""
    for data in files[:8]:
        work(data)
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        for data in files:
            work(data)
        rates.append(len(files) / (time.perf_counter() - began))
    return rates


def pipelines() -> dict[str, Callable[[bytes], Any]]:
    """Decode alone (PIL, torchvision/libjpeg-turbo) and decode + the paper's train transform."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from deit.data.transforms import build_transform

    train = build_transform(True, input_size=224)  # RRC bicubic, flip, RandAugment m9, erasing 0.25

    def pil_decode(data: bytes) -> Any:
        return Image.open(io.BytesIO(data)).convert("RGB")

    def reduced_decode(data: bytes) -> Any:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (image.width // 2, image.height // 2))  # DCT-domain ½ scale: not the paper's input
        return image.convert("RGB")

    return {
        "decode (PIL)": pil_decode,
        "decode (torchvision.io, libjpeg-turbo)": lambda data: decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
        ),
        "decode + paper train transform": lambda data: train(pil_decode(data)),
        "½-scale decode + paper train transform (changes the input)": lambda data: train(reduced_decode(data)),
    }


def starvation_table(rate_per_core: float, cores: int) -> list[list[str]]:
    """For each GPU step rate: cores needed to feed it, and whether `cores` suffice."""
    rows = []
    supply = rate_per_core * cores
    for label, demand in GPU_STEP_RATES.items():
        needed = demand / rate_per_core
        verdict = "fed" if supply >= demand else f"starved: GPU waits {100 * (1 - supply / demand):.0f}% of the time"
        rows.append([label, number(demand, 0), number(needed, 1), number(supply, 0), verdict])
    return rows


def main() -> None:
    """Generate the JPEGs, time each pipeline on one thread, write the per-core table and the starvation check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="distinct generated JPEGs")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images per pipeline")
    parser.add_argument("--cores", type=int, default=16, help="loader cores of the GPU machine to assess")
    parser.add_argument("--out", default=None, help="folder for data.json and data.md")
    args = parser.parse_args()

    torch.set_num_threads(1)
    env = environment(torch.device("cpu"))
    rng = np.random.default_rng(0)
    files = [natural_jpeg(rng) for _ in range(args.images)]
    torch.manual_seed(0)
    results: dict[str, Any] = {}
    for name, work in pipelines().items():
        rates = per_second(work, files, repeats=args.repeats)
        results[name] = {"median_images_per_second": statistics.median(rates), "rates": rates}
        print(f"{name}: {statistics.median(rates):,.0f} images/s on one core", flush=True)

    env["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    mean_kib = sum(map(len, files)) / len(files) / 1024
    paper_rate = results["decode + paper train transform"]["median_images_per_second"]
    rows = [[name, number(r["median_images_per_second"], 0)] for name, r in results.items()]
    markdown = "\n\n".join(
        [
            "### Data path on one CPU core (500×375 JPEG, quality 90, "
            f"{mean_kib:.0f} KiB on average; ImageNet's train JPEGs average about 110 KiB)",
            environment_lines(env),
            markdown_table(["pipeline (one thread)", "images/s per core"], rows),
            f"#### Would {args.cores} loader cores feed the GPU? "
            f"(decode + paper transform, {paper_rate:,.0f} img/s/core)",
            markdown_table(
                ["GPU training step", "needs img/s", "cores needed", f"{args.cores} cores give", "verdict"],
                starvation_table(paper_rate, args.cores),
            ),
        ]
    )
    payload = {
        "environment": env,
        "images": args.images,
        "mean_jpeg_kib": mean_kib,
        "results": results,
        "cores": args.cores,
        "gpu_step_rates": GPU_STEP_RATES,
    }
    write_report(args.out, "data", payload, markdown)


if __name__ == "__main__":
    main()
