"""Issue 32, round 4's teacher sweep: which recipe trains the best convnet teacher on DIGITS' 3% (43 images)?

Each variant changes the demo's teacher recipe (8 epochs, lr 1e-3, batch 32, label smoothing 0.1, the padded
crop); one seed, its last-epoch top-1 on the 360 validation images. Two runs at a time, one thread each.
`PYTHONPATH=src python benchmarks/demo_sweep/teacher_sweep_issue32.py [variant ...]`; one JSON line per run is
appended to runs/issue32/teacher_sweep.jsonl (the session-28 lines: benchmarks/results/issue32/).
"""

import sys
from multiprocessing import get_context
from pathlib import Path

from sweep_runs import record, train_fields

ROOT = Path("runs/issue32/teacher_sweep")
HALF_WIDTH = {"channels": [32, 64, 128, 256], "stem_width": 32}
NO_CUTMIX = {"cutmix": 0.0}
RANDAUGMENT = "rand-m9-mstd0.5-inc1"

VARIANTS = {
    "base": {},
    "e32": {"epochs": 32},
    "e32_mix": {"epochs": 32, "mixup": 0.8, **NO_CUTMIX},
    "e32_lr3": {"epochs": 32, "lr": 3e-3},
    "e32_ra": {"epochs": 32, "aa": RANDAUGMENT},
    "e16_wd": {"epochs": 16, "weight_decay": 0.3},
    "e32_mix_ra": {"epochs": 32, "mixup": 0.8, **NO_CUTMIX, "aa": RANDAUGMENT},
    "e32_half": {"epochs": 32, "model_kwargs": HALF_WIDTH},
    "e64_mix": {"epochs": 64, "mixup": 0.8, **NO_CUTMIX},
    "e32_mix_lr3": {"epochs": 32, "mixup": 0.8, **NO_CUTMIX, "lr": 3e-3},
    "e32_mix_half": {"epochs": 32, "mixup": 0.8, **NO_CUTMIX, "model_kwargs": HALF_WIDTH},
}


def train_variant(name: str, fraction: float = 0.03) -> dict:
    """One teacher: the demo's teacher configuration at `fraction` with the variant's changes."""
    from dataclasses import asdict

    from deit.demo.experiment import DemoSettings, teacher_config

    base = asdict(teacher_config(DemoSettings(), fraction))
    metrics, seconds = train_fields({**base, **VARIANTS[name]}, ROOT / name)
    return {
        "variant": name,
        "fraction": fraction,
        "top1_last": round(metrics["acc1"], 2),
        "top1_best": round(metrics["best_acc1"], 2),
        "train_loss": round(metrics["train_loss"], 3),
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    with get_context("spawn").Pool(2) as pool:
        for row in pool.imap_unordered(train_variant, sys.argv[1:] or list(VARIANTS)):
            record(row, ROOT.parent / "teacher_sweep.jsonl")
