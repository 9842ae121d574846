"""Write a small class-folder data set for docs/finetune.md: five shapes drawn at random places and sizes, each
in the complement of its random, noisy background, `ROOT/{train,val}/<shape>/<n>.png` at 64×64.
Offline, seeded, a few seconds.

    python docs/examples/make_shapes.py shapes [--train 100] [--val 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring")
SIZE = 64


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    """One image: a noisy background and one shape of a random colour, size and place."""
    background = rng.integers(0, 256, 3)
    pixels = np.clip(background + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    pen = ImageDraw.Draw(image)
    colour = tuple(int(255 - c) for c in background)  # the background's complement: the shape always stands out
    radius = int(rng.integers(10, 24))
    cx, cy = (int(v) for v in rng.integers(radius, SIZE - radius, 2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    elif shape == "cross":
        width = max(radius // 3, 2)
        pen.rectangle((cx - width, cy - radius, cx + width, cy + radius), fill=colour)
        pen.rectangle((cx - radius, cy - width, cx + radius, cy + width), fill=colour)
    else:
        pen.ellipse(box, outline=colour, width=max(radius // 4, 2))
    return image


def main() -> None:
    """Write the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=100, help="images per class in train/")
    parser.add_argument("--val", type=int, default=40, help="images per class in val/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, count in (("train", args.train), ("val", args.val)):
        for shape in SHAPES:
            folder = args.root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                draw(shape, rng).save(folder / f"{index}.png")


if __name__ == "__main__":
    main()
