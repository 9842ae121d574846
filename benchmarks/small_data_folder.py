"""`deit train --recipe small-data` on a user's own small folder, against the 30-line loop they would write.

Issue 32's new-user case: a generated folder of six shape classes (64 px, 100 training images per class), a small
DeiT from scratch, plain and distilled (a ResNet-18 teacher trained by `deit train` on the same images), against
a hand-written timm + torchvision loop training the same architecture on the same images for the same epochs.
Run from the repository root: `PYTHONPATH=src python benchmarks/small_data_folder.py [--seeds 3] [--epochs 40]`.
It prints one JSON line per run and a summary; the numbers are recorded in docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross", "ring", "bars")
STUDENT_KWARGS = {"embed_dim": 64, "depth": 4, "num_heads": 4, "patch_size": 8}


def draw_shape(rng: np.random.Generator, label: int, size: int = 64) -> Image.Image:
    """One image: a shape of class `label`, random colour, size and place, on a noisy two-colour background."""
    background = rng.integers(0, 256, 3)
    pixels = np.clip(background + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    extent = int(rng.integers(size // 4, size // 2))
    left, top = (int(v) for v in rng.integers(0, size - extent, 2))
    box = (left, top, left + extent, top + extent)
    colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
    width = max(2, extent // 6)
    if CLASSES[label] == "circle":
        draw.ellipse(box, fill=colour)
    elif CLASSES[label] == "square":
        draw.rectangle(box, fill=colour)
    elif CLASSES[label] == "triangle":
        draw.polygon([(left, top + extent), (left + extent, top + extent), (left + extent // 2, top)], fill=colour)
    elif CLASSES[label] == "cross":
        middle = extent // 2
        draw.line([(left + middle, top), (left + middle, top + extent)], fill=colour, width=width)
        draw.line([(left, top + middle), (left + extent, top + middle)], fill=colour, width=width)
    elif CLASSES[label] == "ring":
        draw.ellipse(box, outline=colour, width=width)
    else:
        for offset in range(0, extent, 2 * width):
            draw.rectangle((left + offset, top, left + offset + width - 1, top + extent), fill=colour)
    return image


def make_shapes_folder(root: Path, *, per_class: int = 100, val_per_class: int = 40, seed: int = 0) -> Path:
    """`root/{train,val}/<shape>/*.png`."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                draw_shape(rng, label).save(folder / f"{index}.png")
    return root


def hand_written_loop(data: Path, *, seed: int, epochs: int, batch_size: int = 32, lr: float = 1e-3) -> float:
    """What a user writes in 30 lines: timm's ViT, torchvision's ImageFolder and transforms, AdamW, cosine with a
    per-step warmup, label smoothing; the last epoch's validation top-1 (%)."""
    import timm
    import torch
    import torch.nn.functional as F
    from torchvision import datasets
    from torchvision import transforms as T

    torch.manual_seed(seed)
    normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train_tf = T.Compose(
        [T.RandomResizedCrop(64, scale=(0.35, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(), normalize]
    )
    val_tf = T.Compose([T.Resize(64), T.ToTensor(), normalize])
    train = torch.utils.data.DataLoader(
        datasets.ImageFolder(data / "train", train_tf), batch_size=batch_size, shuffle=True, drop_last=True
    )
    val = torch.utils.data.DataLoader(datasets.ImageFolder(data / "val", val_tf), batch_size=256)
    model = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=len(CLASSES), **STUDENT_KWARGS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    total, warmup = epochs * len(train), len(train)
    step = 0
    for _ in range(epochs):
        model.train()
        for images, labels in train:
            scale = (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(images).argmax(1) == labels).sum()) for images, labels in val)
    return 100.0 * correct / len(val.dataset)


def deit_train(data: Path, out: Path, *, seed: int, epochs: int, teacher: Path | None = None, model: str = "") -> float:
    """`deit train --recipe small-data` on the folder (plain, or distilled from `teacher`): last top-1 (%)."""
    from deit.engine import make_config, train

    settings = dict(
        recipe="small-data",
        data_set="IMAGEFOLDER",
        data_path=str(data),
        input_size=64,
        batch_size=32,
        epochs=epochs,
        seed=seed,
        num_workers=0,
        device="cpu",
        log_format="plain",
        output_dir=str(out),
    )
    if model:  # the teacher
        settings.update(model=model, model_kwargs={"channels": [16, 32, 64, 128], "stem_width": 16})
    elif teacher is None:
        settings.update(model="deit_tiny_patch16_224", model_kwargs=dict(STUDENT_KWARGS))
    else:
        settings.update(
            model="deit_tiny_distilled_patch16_224",
            model_kwargs=dict(STUDENT_KWARGS),
            teacher_model="resnet18",
            teacher_path=str(teacher),
            distillation_type="soft",
            distillation_alpha=0.9,
            distillation_tau=3.0,
            distillation_kl_reduction="batchmean",
        )
    return float(train(make_config(**settings))["acc1"])


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--root", default="runs/small_data_folder")
    parser.add_argument("--only", default="loop,plain,soft", help="which sides to run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.root)
    data = root / "shapes"
    if not (data / "val").is_dir():
        make_shapes_folder(data)
    sides = args.only.split(",")
    teacher = root / "teacher" / "checkpoint.pth"
    if "soft" in sides and not teacher.is_file():
        top1 = deit_train(data, teacher.parent, seed=0, epochs=args.epochs, model="resnet18")
        print(json.dumps({"side": "teacher", "top1": top1}), flush=True)
    results: dict[str, list[float]] = {side: [] for side in sides}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for side in sides:
            started = time.time()
            if side == "loop":
                top1 = hand_written_loop(data, seed=seed, epochs=args.epochs)
            else:
                out = root / f"{side}_seed{seed}"
                top1 = deit_train(data, out, seed=seed, epochs=args.epochs, teacher=teacher if side == "soft" else None)
            results[side].append(top1)
            print(
                json.dumps(
                    {"side": side, "seed": seed, "top1": round(top1, 2), "seconds": round(time.time() - started, 1)}
                ),
                flush=True,
            )
    print(
        json.dumps({side: {"mean": statistics.fmean(v), "per_seed": v} for side, v in results.items() if v}), flush=True
    )


if __name__ == "__main__":
    main()
