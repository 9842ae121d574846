"""`deit train` on a generated 64 px image folder against the plain torchvision `ImageFolder` + timm loop doing
the same work (issue 28), in one process, alternating; and the data's cost per image before and after the
batched path, at 64 and 224 px (`--parts`).

The folder: 6 classes x 200 training PNGs at 64 x 64 (docs/examples/make_shapes.py's five shapes on noisy
backgrounds, and a sixth class of background alone), 50 validation images per class. The work on both sides:
`RandomResizedCrop(64, scale=(0.35, 1), bicubic)` + flip 0.5 + normalisation, batch 32, a width-64 2-block
DeiT (8 px patches, 4 heads, timm's `VisionTransformer` on the plain side), label smoothing 0.1, AdamW lr 1e-3
(not scaled) weight decay 0.05, a cosine schedule per epoch, no mixup, no EMA, an evaluation (resize 73, centre
crop 64) after every epoch, one thread.

- plain: what a user writes: `ImageFolder` with torchvision's per-image transforms, a `DataLoader` (no
  workers), the model, the loss, `torch.optim.AdamW`, an evaluation pass per epoch;
- deit: `deit.engine.train` itself, end to end (`--data-loader auto`, which takes the in-memory path: the
  folder decoded once, crop + flip per batch).

Images/s: training images / CPU seconds of this one-thread process (on a shared machine that, not wall time, is
what the work costs; on a GPU, wall seconds); each round's ratio, then their median. Each round uses its own
seed on both sides; the final validation top-1 of each is reported.

    PYTHONPATH=src python benchmarks/bench_folder_train.py --rounds 3 --parts --out benchmarks/results/issue28
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE, BATCH, SCALE, LR, WEIGHT_DECAY, SMOOTHING = 64, 32, (0.35, 1.0), 1e-3, 0.05, 0.1
MODEL_KWARGS = {"embed_dim": 64, "depth": 2, "num_heads": 4, "patch_size": 8}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_shapes_folder(root: Path, *, train: int = 200, val: int = 50, seed: int = 0) -> Path:
    """`root/{train,val}/<class>/<n>.png`, 64 x 64: the five shapes of docs/examples/make_shapes.py and 'blank'."""
    spec = importlib.util.spec_from_file_location("make_shapes", ROOT / "docs/examples/make_shapes.py")
    shapes = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(shapes)  # type: ignore[union-attr]
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for name in (*shapes.SHAPES, "blank"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                if name == "blank":
                    background = rng.integers(0, 256, 3)
                    pixels = np.clip(background + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                    image = Image.fromarray(pixels)
                else:
                    image = shapes.draw(name, rng)
                image.save(folder / f"{index}.png")
    return root


def deit_config(
    data: Path, out: Path, *, epochs: int, seed: int, device: str, input_size: int = SIZE, data_loader: str = "auto"
) -> Any:
    """The `deit train` configuration of the deit side (the plain loop's work, in `deit train`'s flags)."""
    from deit.engine import make_config

    return make_config(
        model="deit_tiny_patch16_224",
        model_kwargs=MODEL_KWARGS,
        input_size=input_size,
        data_set="IMAGEFOLDER",
        data_path=str(data),
        batch_size=BATCH,
        epochs=epochs,
        warmup_epochs=0,
        lr=LR,
        unscale_lr=True,
        min_lr=0.0,
        weight_decay=WEIGHT_DECAY,
        smoothing=SMOOTHING,
        aa="none",
        color_jitter=0.0,
        reprob=0.0,
        mixup=0.0,
        cutmix=0.0,
        scale=list(SCALE),
        hflip=0.5,
        repeated_aug=False,
        model_ema=False,
        drop_path=0.0,
        num_workers=0,
        data_loader=data_loader,
        device=device,
        amp="none",
        seed=seed,
        log_format="plain",
        log_interval=0,
        output_dir=str(out),
        overwrite_output=True,
    )


def _clock(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def deit_run(
    data: Path, out: Path, *, epochs: int, seed: int, device: str, data_loader: str = "auto"
) -> tuple[float, float]:
    """(seconds, final validation top-1) of one `deit.engine.train` run."""
    from deit.engine import train

    config = deit_config(data, out, epochs=epochs, seed=seed, device=device, data_loader=data_loader)
    started = _clock(device)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        metrics = train(config)
    return _clock(device) - started, float(metrics["acc1"])


def plain_run(data: Path, *, epochs: int, seed: int, device: str) -> tuple[float, float]:
    """(seconds, final validation top-1) of the hand-written loop: same data, model, loss, schedule, evaluation."""
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.data import DataLoader
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    started = _clock(device)
    torch.manual_seed(seed)
    bicubic = T.InterpolationMode.BICUBIC
    normalize = T.Normalize(MEAN, STD)
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(SIZE, scale=SCALE, interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            normalize,
        ]
    )
    val_tf = T.Compose([T.Resize(int(SIZE / 0.875), bicubic), T.CenterCrop(SIZE), T.ToTensor(), normalize])
    train_set, val_set = ImageFolder(str(data / "train"), train_tf), ImageFolder(str(data / "val"), val_tf)
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=int(1.5 * BATCH), num_workers=0)
    model = VisionTransformer(img_size=SIZE, num_classes=len(train_set.classes), **MODEL_KWARGS).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels, label_smoothing=SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += int((model(images.to(device)).argmax(1).cpu() == labels).sum())
        accuracy = 100.0 * correct / len(val_set)
    return _clock(device) - started, accuracy


def _per_image_ms(work: Any, images: int, device: str, repeats: int = 3) -> float:
    """Median CPU (or, on a GPU, wall) milliseconds per image of `work()`, which handles `images` images."""
    work()
    times = []
    for _ in range(repeats):
        started = _clock(device)
        work()
        times.append((_clock(device) - started) * 1e3 / images)
    return statistics.median(times)


def data_parts(data: Path, work: Path, device: str, rounds: int) -> list[dict[str, Any]]:
    """Data and step CPU ms per image, before (the per-image path: `dataset[i]`, decode + RandomResizedCrop +
    flip + ToTensor + Normalize) and after (the in-memory batch from the store), at 64 and 224 px; one thread,
    the two data paths alternating `rounds` times."""
    from bench_data import natural_jpeg
    from deit.engine import builders
    from deit.engine.memory_path import build_memory_loader
    from deit.inference.bench import build_bench_step

    big = work / "jpeg224"
    rng = np.random.default_rng(0)
    for split, count in (("train", 60), ("val", 1)):
        for label in range(2):
            folder = big / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                (folder / f"{index}.jpg").write_bytes(natural_jpeg(rng))  # 500 x 375, ImageNet's typical JPEG
    rows = []
    for size, folder, what in ((64, data, "64 x 64 PNGs"), (224, big, "500 x 375 JPEGs")):
        config = deit_config(folder, work / f"parts{size}", epochs=1, seed=0, device=device, input_size=size)
        config.model_kwargs = {**MODEL_KWARGS, "patch_size": 8 if size == 64 else 16}
        train_set, _ = builders.build_datasets(config, report_dir=None)
        sampler = torch.utils.data.RandomSampler(train_set)
        sampler.set_epoch = lambda epoch: None  # type: ignore[attr-defined]
        loader, _ = build_memory_loader(
            config, train_set, sampler, rank=0, device=torch.device(device), teacher=None, mean=MEAN, std=STD
        )
        count = len(train_set)
        indices = torch.arange(count)
        views = loader.augment.draw(count, torch.Generator().manual_seed(0), indices)

        def batched(augment: Any = loader.augment, count: int = count, views: torch.Tensor = views) -> None:
            for start in range(0, count - BATCH + 1, BATCH):
                augment(torch.arange(start, start + BATCH), views[start : start + BATCH])

        def per_image(data_set: Any = train_set) -> None:
            for index in range(len(data_set)):
                data_set[index]

        before, after = [], []
        for round_index in range(rounds):
            pair = ((per_image, before), (batched, after))
            for work_fn, times in pair if round_index % 2 == 0 else pair[::-1]:
                images = count if work_fn is per_image else (count // BATCH) * BATCH
                times.append(_per_image_ms(work_fn, images, device, repeats=1))
        step = build_bench_step(config, num_classes=len(train_set.classes), device=torch.device(device))
        images = loader.augment(indices[:BATCH], views[:BATCH]).to(device)
        labels = (torch.arange(BATCH) % len(train_set.classes)).to(device)
        step_ms = _per_image_ms(lambda step=step, x=images, y=labels: [step(x, y) for _ in range(3)], 3 * BATCH, device)
        rows.append(
            {
                "input_size": size,
                "source": what,
                "store": f"{tuple(loader.augment.pixels.shape)} uint8, {loader.augment.nbytes / 2**20:.1f} MB",
                "data_ms_per_image_before": round(statistics.median(before), 4),
                "data_ms_per_image_after": round(statistics.median(after), 4),
                "step_ms_per_image": round(step_ms, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    """Alternate the two sides `--rounds` times (a seed per round), print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (seeds 0, 1, ...)")
    parser.add_argument("--parts", action="store_true", help="also the data and step cost per image, 64 and 224 px")
    parser.add_argument("--parts-only", action="store_true", help="only the parts")
    parser.add_argument(
        "--data-loader", default="auto", help="deit train's --data-loader (torch: the per-image path, as before)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    report: dict[str, Any] = {"environment": environment(torch.device(args.device)), "load_at_start": load_at_start}
    with tempfile.TemporaryDirectory(prefix="bench_folder_") as scratch:
        work = Path(scratch)
        data = make_shapes_folder(work / "shapes")
        if not args.parts_only:
            images = args.epochs * (1200 // BATCH) * BATCH
            runs: dict[str, list[tuple[float, float]]] = {"plain": [], "deit": []}
            for seed in range(args.rounds):
                common = dict(epochs=args.epochs, seed=seed, device=args.device)
                sides = [
                    ("plain", lambda common=common: plain_run(data, **common)),
                    (
                        "deit",
                        lambda common=common: deit_run(data, work / "deit", data_loader=args.data_loader, **common),
                    ),
                ]
                for name, run in sides if seed % 2 == 0 else sides[::-1]:
                    runs[name].append(run())
                plain, deit = runs["plain"][-1], runs["deit"][-1]
                print(
                    f"seed {seed}: plain {images / plain[0]:.1f} img/s top-1 {plain[1]:.1f}; deit "
                    f"{images / deit[0]:.1f} img/s top-1 {deit[1]:.1f}; x{plain[0] / deit[0]:.2f} "
                    f"(load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            ratios = [p[0] / d[0] for p, d in zip(runs["plain"], runs["deit"])]
            report.update(
                epochs=args.epochs,
                data_loader=args.data_loader,
                training_images_per_run=images,
                seconds={name: [round(s, 2) for s, _ in values] for name, values in runs.items()},
                top1={name: [round(a, 2) for _, a in values] for name, values in runs.items()},
                images_per_second={
                    name: round(images / statistics.median(s for s, _ in v), 1) for name, v in runs.items()
                },
                ratio_per_round=[round(r, 3) for r in ratios],
                median_ratio=round(statistics.median(ratios), 3),
            )
            print(f"median x{report['median_ratio']:.2f} (rounds {report['ratio_per_round']})")
        if args.parts or args.parts_only:
            report["parts"] = data_parts(data, work, args.device, rounds=max(args.rounds, 3))
    report["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    lines = [f"load at start {load_at_start}, at end {report['load_at_end']}"]
    if "median_ratio" in report:
        lines.append(f"deit train vs plain loop: x{report['median_ratio']:.2f}, top-1 {report['top1']}")
    for row in report.get("parts", []):
        before, after = row["data_ms_per_image_before"], row["data_ms_per_image_after"]
        lines.append(
            f"{row['input_size']} px: data {before:.3f} -> {after:.3f} ms/img (1/{before / after:.1f}), "
            f"step {row['step_ms_per_image']:.2f} ms/img"
        )
    write_report(args.out, "folder_train", report, "\n\n".join(lines), echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
