"""Issue 32, session 28: distilled-student variants against one shared plain baseline at one DIGITS size.

`PYTHONPATH=src python benchmarks/demo_sweep/student_variants_issue32.py <round> <first seed> <seeds>` trains the
round's teacher (the demo's configuration with the round's teacher changes) and, on every seed, `none` (the
demo's plain student, with the round's `none` changes) and each variant (the demo's distilled student with its
changes). Two runs at a time, one thread each. One JSON line per variant, its per-seed fused top-1, its paired
gains over `none`, the 95% t-interval and the gap closed, is appended to runs/issue32/student_variants.jsonl.
Rounds are added to ROUNDS before any of their runs (the protocol: benchmarks/demo_sweep/headline_issue32.py).
"""

import sys
from multiprocessing import get_context
from pathlib import Path

from sweep_runs import record, train_fields

ROOT = Path("runs/issue32/student_variants")

#: round -> (fraction, teacher changes (DemoSettings fields), none changes, {variant: (kind, config changes)})
ROUNDS: dict[str, tuple[float, dict, dict, dict[str, tuple[str, dict]]]] = {
    "r8": (
        0.03,
        {},
        {},
        {
            "soft_t3_a09": ("soft", {}),
            "soft_t1_a09": ("soft", {"distillation_tau": 1.0}),
            "soft_t6_a09": ("soft", {"distillation_tau": 6.0}),
            "soft_t3_a05": ("soft", {"distillation_alpha": 0.5}),
            "soft_t3_a1": ("soft", {"distillation_alpha": 1.0}),
        },
    ),
    # Round 9, step 1: the 3% students at 32 epochs (the default's soft loss), for convergence and cost.
    "r9": (0.03, {}, {"epochs": 32}, {"soft_e32": ("soft", {"epochs": 32})}),
    # Round 10: the soft loss again, ten seeds per variant.
    "r10": (
        0.03,
        {},
        {},
        {
            "soft_t3_a09": ("soft", {}),
            "soft_t1_a09": ("soft", {"distillation_tau": 1.0}),
            "soft_t3_a05": ("soft", {"distillation_alpha": 0.5}),
            "soft_t1_a05": ("soft", {"distillation_tau": 1.0, "distillation_alpha": 0.5}),
        },
    ),
}


def _train(job: tuple[str, str, dict]) -> tuple[str, float]:
    """(name, fused top-1 %) of one run given as (name, output dir, config fields)."""
    name, out, fields = job
    metrics, _ = train_fields(fields, out)
    return name, round(metrics["acc1"], 2)


def main(round_name: str, first_seed: int, seeds: int) -> None:
    """Teacher first, then every run of the round; a summary line per variant."""
    from dataclasses import asdict

    from deit.demo.experiment import DemoSettings, student_config, teacher_config
    from deit.demo.findings import paired_interval

    fraction, teacher_changes, none_changes, variants = ROUNDS[round_name]
    out = ROOT / round_name
    settings = DemoSettings(output_dir=str(out), **teacher_changes)
    teacher_fields = asdict(teacher_config(settings, fraction))
    teacher_dir = out / "teacher"
    with get_context("spawn").Pool(2) as pool:
        _, teacher_top1 = pool.apply(_train, (("teacher", str(teacher_dir), teacher_fields),))
        checkpoint = str(teacher_dir / "checkpoint.pth")
        jobs = []
        for seed in range(first_seed, first_seed + seeds):
            plain = {**asdict(student_config(settings, "none", seed, None, fraction)), **none_changes}
            jobs.append((f"none/{seed}", str(out / f"none_s{seed}"), plain))
            for variant, (kind, changes) in variants.items():
                fields = {**asdict(student_config(settings, kind, seed, checkpoint, fraction)), **changes}
                jobs.append((f"{variant}/{seed}", str(out / f"{variant}_s{seed}"), fields))
        results = dict(pool.imap_unordered(_train, jobs))
    plain = [results[f"none/{seed}"] for seed in range(first_seed, first_seed + seeds)]
    for variant in variants:
        distilled = [results[f"{variant}/{seed}"] for seed in range(first_seed, first_seed + seeds)]
        gains = [d - p for d, p in zip(distilled, plain)]
        low, high = paired_interval(gains)
        gap = [g / (teacher_top1 - p) for g, p in zip(gains, plain)]
        line = {
            "round": round_name,
            "variant": variant,
            "first_seed": first_seed,
            "teacher": teacher_top1,
            "none": plain,
            "distilled": distilled,
            "gain": round(sum(gains) / len(gains), 2),
            "interval": [round(low, 2), round(high, 2)],
            "wins": sum(g > 0 for g in gains),
            "gap_closed": round(sum(gap) / len(gap), 3),
        }
        record(line, ROOT.parent / "student_variants.jsonl")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
