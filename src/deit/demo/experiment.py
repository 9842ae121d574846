"""`deit demo`: what distillation through attention buys, measured at laptop scale on the embedded DIGITS data.

A data-efficiency experiment in the spirit of the paper's Table 3: at several training-set sizes (nested,
stratified subsets of DIGITS' training split, `--train-subset`), a small CNN teacher trained on those images, and
one small DeiT student trained on the same images several ways, over several paired seeds:

- `none`: the plain architecture (one class token), labels only -- the paper's "no distillation";
- `two_cls_tokens`: the distilled architecture with `--distillation-type labels`, so both tokens learn from the
  labels -- the paper's control of a second *class* token instead of a distillation token;
- `soft`, `hard`: the distilled architecture with the teacher (DeiT⚗).

The headline comparison (`HEADLINE_KIND` against `none` at the smallest size) is fixed here, before any run.
Every run, the teachers' included, is a real `deit.engine.train` run with its own directory under
`<output>/runs/`, so its `log.txt`, `checkpoint.pth` and `curves.png` are there to inspect or `deit eval`.
On a CPU the runs go to parallel processes of one thread each (tiny models use one core far better than two);
the distilled students of a size start as soon as that size's teacher is trained.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deit.cpu_info import describe_cpu
from deit.demo.kinds import STUDENT_KINDS
from deit.demo.runs import Job, plan_parallelism, run_jobs, usable_cores
from deit.errors import DeitError

#: The comparison the demo's verdict is about, fixed before any run: soft distillation against none, at the
#: smallest training-set size of the run (the data-starved regime, where the paper's thesis predicts the gain).
HEADLINE_KIND = "soft"
PLAIN_STUDENT = "deit_tiny_patch16_224"
DISTILLED_STUDENT = "deit_tiny_distilled_patch16_224"
TEACHER_MODEL = "resnet18"
# ResNet-18 at a quarter of its width (0.7 M parameters) reaches ~98% on DIGITS in 8 epochs. Its forward pass is
# paid at every step of a distilled student: ~1/3 of the student's step, against ~1/2 at half width (~1 point more).
TEACHER_KWARGS = {"channels": [16, 32, 64, 128], "stem_width": 16}


@dataclass
class DemoSettings:
    """The experiment's sizes and recipe (chosen by the sweep in docs/demo.md, which records its measured time)."""

    output_dir: str = "runs/demo"
    seeds: int = 3
    #: The students' seeds are first_seed, first_seed + 1, ...: other values check the headline on fresh draws.
    first_seed: int = 0
    #: Training-set sizes as fractions of DIGITS' 1,437 training images (nested subsets, one draw).
    sizes: tuple[float, ...] = (0.25, 1.0)
    #: Student kinds trained below the full size (all of STUDENT_KINDS at the full size): the budget's choice.
    subset_kinds: tuple[str, ...] = ("none", "soft")
    subset_seed: int = 0
    #: Student epochs on the full training set; a fraction f of it gets epochs / f (the same number of steps).
    #: 24 (2,136 steps): the in-memory path and the teacher table made a step ~2x cheaper than at 12 epochs.
    epochs: int = 24
    teacher_epochs: int = 8
    input_size: int = 32
    # A 4x4 grid of 8x8 patches (2x2 of the original pixels each), width 64, 2 blocks: its step costs ~0.45x that
    # of width 128 (the 10-minute budget's choice, docs/demo.md).
    student_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"embed_dim": 64, "depth": 2, "num_heads": 4, "patch_size": 8}
    )
    batch_size: int = 16
    teacher_batch_size: int = 32
    lr: float = 1e-3
    warmup_epochs: int = 2
    # Soft: Hinton et al.'s batch-mean KL at temperature 3 (the official scaling is 10x weaker at 10 classes),
    # weight 0.9: the headline check on fresh seeds (benchmarks/demo_sweep/headline.py, docs/demo.md) found 0.7
    # better on 4 of 6 seeds and 0.9 on 6 of 6. Hard: the paper's equal weighting.
    soft_alpha: float = 0.9
    hard_alpha: float = 0.5
    distillation_tau: float = 3.0
    kl_reduction: str = "batchmean"
    device: str = "auto"
    #: The distilled students look the teacher up in its table (computed once per teacher); "off": per step.
    teacher_table: str = "on"
    jobs: int = 0
    max_steps_per_epoch: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> DemoSettings:
        """A smoke-test size: one seed, two sizes, short epochs, a narrow student (its numbers mean nothing)."""
        # No teacher table: a few steps draw far fewer samples than the table holds.
        settings = cls(
            seeds=1,
            sizes=(0.5, 1.0),
            epochs=2,
            teacher_epochs=1,
            warmup_epochs=0,
            max_steps_per_epoch=8,
            teacher_table="off",
            student_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8},
        )
        for name, value in changes.items():
            setattr(settings, name, value)
        return settings

    def validate(self) -> None:
        """One-line errors naming the flag, before anything is built."""
        for flag, value in (
            ("--seeds", self.seeds),
            ("--epochs", self.epochs),
            ("--teacher-epochs", self.teacher_epochs),
        ):
            if value < 1:
                raise DeitError(f"{flag} {value}: must be at least 1")
        if self.first_seed < 0:
            raise DeitError(f"--first-seed {self.first_seed}: must be 0 or more")
        if self.jobs < 0:
            raise DeitError(f"--jobs {self.jobs}: must be 0 (automatic) or more")
        if not self.sizes or any(not 0.0 < size <= 1.0 for size in self.sizes):
            raise DeitError(
                f"--sizes {','.join(f'{size:g}' for size in self.sizes)}: fractions in (0, 1], e.g. 0.25,0.5,1"
            )
        unknown = [kind for kind in self.subset_kinds if kind not in STUDENT_KINDS]
        if unknown:
            raise DeitError(f"unknown student kind '{unknown[0]}'; choose from {', '.join(STUDENT_KINDS)}")

    @property
    def student_seeds(self) -> range:
        """The seeds every student kind is trained with (the same seeds at every size: the gains are paired)."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def fractions(self) -> list[float]:
        """The sizes, smallest first, without repeats."""
        return sorted(set(self.sizes))

    @property
    def headline_fraction(self) -> float:
        """The size of the headline comparison: the smallest of the run (known before anything trains)."""
        return self.fractions[0]

    def kinds_at(self, fraction: float) -> tuple[str, ...]:
        """The student kinds trained at this size: all at the full size (or a run's largest), else `subset_kinds`."""
        if fraction == self.fractions[-1]:
            return STUDENT_KINDS
        return tuple(kind for kind in STUDENT_KINDS if kind in self.subset_kinds or kind == "none")

    def epochs_at(self, fraction: float, teacher: bool = False) -> int:
        """Epochs at a size: the full-size epochs / fraction, so every size trains about the same number of steps."""
        return max(1, round((self.teacher_epochs if teacher else self.epochs) / fraction))

    def warmup_epochs_at(self, fraction: float) -> int:
        """Warmup epochs at a size: scaled as the epochs, so every size has the same schedule in steps."""
        return round(self.warmup_epochs / fraction)

    def eval_interval_at(self, fraction: float) -> int:
        """Epochs between evaluations at a size: 1 / fraction, so every size is evaluated about as often."""
        return max(1, round(1 / fraction))


# ---------------------------------------------------------------- the runs' configurations


def shared_recipe(settings: DemoSettings) -> dict[str, Any]:
    """What every run shares: DIGITS, a light augmentation, label smoothing 0.1, AdamW with a cosine schedule.

    The augmentation is the official small-image crop alone (resize, then a random crop with 4 px of padding).
    No flip: a mirrored digit is not a digit. RandAugment, mixup/cutmix, random erasing, colour jitter and
    repeated augmentation are off: at this budget they slow training far more than they regularise
    (measured: RandAugment gave 54% instead of 82% after 20 epochs; mixup + cutmix 52% instead of 73% at 25% of
    the data, docs/demo.md).
    """
    return dict(
        data_set="DIGITS",
        data_loader="auto",
        input_size=settings.input_size,
        aa="none",
        hflip=0.0,
        reprob=0.0,
        mixup=0.0,
        cutmix=0.0,
        repeated_aug=False,
        color_jitter=0.0,
        eval_crop_ratio=1.0,
        smoothing=0.1,
        model_ema=False,
        drop_path=0.0,
        unscale_lr=True,
        lr=settings.lr,
        warmup_epochs=settings.warmup_epochs,
        min_lr=1e-5,
        weight_decay=0.05,
        device=settings.device,
        num_workers=0,
        log_format="plain",
        log_interval=0,  # no step lines: nine runs share the console; their epoch lines are the progress
        max_steps_per_epoch=settings.max_steps_per_epoch,
        train_subset=1.0,
        train_subset_seed=settings.subset_seed,
    )


def _sized_recipe(settings: DemoSettings, fraction: float) -> dict[str, Any]:
    """The shared recipe at one training-set size: its subset, warmup and evaluation interval."""
    return {
        **shared_recipe(settings),
        "train_subset": fraction,
        "eval_interval": settings.eval_interval_at(fraction),
        "warmup_epochs": settings.warmup_epochs_at(fraction),
    }


def size_tag(fraction: float) -> str:
    """A size as a folder name: `f025` for 25%, `f100` for the full set."""
    return f"f{round(100 * fraction):03d}"


def run_dir(settings: DemoSettings, name: str, fraction: float = 1.0) -> Path:
    """Where one run writes its checkpoint and logs."""
    return Path(settings.output_dir) / "runs" / size_tag(fraction) / name


def teacher_config(settings: DemoSettings, fraction: float = 1.0) -> Any:
    """A teacher: a quarter-width ResNet-18 trained by the same engine on the same images as its students."""
    from deit.engine import make_config

    return make_config(
        **_sized_recipe(settings, fraction),
        model=TEACHER_MODEL,
        model_kwargs=dict(TEACHER_KWARGS),
        epochs=settings.epochs_at(fraction, teacher=True),
        batch_size=settings.teacher_batch_size,
        seed=0,
        output_dir=str(run_dir(settings, "teacher", fraction)),
    )


def student_config(
    settings: DemoSettings, kind: str, seed: int, teacher_path: str | None = None, fraction: float = 1.0
) -> Any:
    """One student run: the plain architecture for `none`, the distilled one otherwise; same dims for all."""
    from deit.engine import make_config

    if kind not in STUDENT_KINDS:
        raise DeitError(f"unknown student kind '{kind}'; choose one of {', '.join(STUDENT_KINDS)}")
    distillation = {"two_cls_tokens": "labels"}.get(kind, kind)
    extra: dict[str, Any] = {}
    if distillation in ("soft", "hard"):
        if not teacher_path:
            raise DeitError(f"the {kind} student needs the teacher's checkpoint")
        # The teacher's logits for every (image, crop view) are computed once, next to its checkpoint, and
        # looked up by every student of that teacher (exact: the crop has 81 views, nothing mixes images).
        extra = dict(
            teacher_model=TEACHER_MODEL,
            teacher_path=teacher_path,
            distillation_alpha=settings.soft_alpha if kind == "soft" else settings.hard_alpha,
            teacher_table=settings.teacher_table,
            teacher_table_dir=str(Path(teacher_path).parent),
        )
    return make_config(
        **_sized_recipe(settings, fraction),
        model=PLAIN_STUDENT if kind == "none" else DISTILLED_STUDENT,
        model_kwargs=dict(settings.student_kwargs),
        epochs=settings.epochs_at(fraction),
        batch_size=settings.batch_size,
        seed=seed,
        distillation_type=distillation,
        distillation_tau=settings.distillation_tau,
        distillation_kl_reduction=settings.kl_reduction,
        output_dir=str(run_dir(settings, f"{kind}_seed{seed}", fraction)),
        **extra,
    )


def plan_runs(settings: DemoSettings) -> tuple[list[Job], Any, int]:
    """(the runs that start at once, the runs each trained teacher unlocks, the number of runs in all).

    The teachers go first, then the label-only students; a size's distilled students are queued when its teacher
    is trained. The token similarity is measured on the full-size students (the Table 3 analogue).
    """
    largest = settings.fractions[-1]

    def job(kind: str, seed: int, fraction: float, teacher_path: str | None = None) -> Job:
        return Job(
            kind,
            seed,
            student_config(settings, kind, seed, teacher_path, fraction),
            fraction,
            measure_cosine=fraction == largest and kind != "none",
        )

    first = [Job("teacher", 0, teacher_config(settings, fraction), fraction) for fraction in settings.fractions]
    first += [
        job(kind, seed, fraction)
        for fraction in settings.fractions
        for seed in settings.student_seeds
        for kind in settings.kinds_at(fraction)
        if kind in ("none", "two_cls_tokens")
    ]

    def distilled(teacher: Job, checkpoint: str) -> list[Job]:
        return [
            job(kind, seed, teacher.fraction, checkpoint)
            for seed in settings.student_seeds
            for kind in settings.kinds_at(teacher.fraction)
            if kind in ("soft", "hard")
        ]

    total = len(settings.fractions) + settings.seeds * sum(len(settings.kinds_at(f)) for f in settings.fractions)
    return first, distilled, total


# ---------------------------------------------------------------- the experiment


def machine_description(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cores = usable_cores()
    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = f"{describe_cpu()}, {cores} usable core(s)"
    return {
        "description": f"{hardware}; {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}",
        "device": device,
        "cores": cores,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_demo(settings: DemoSettings, command: str = "deit demo") -> dict[str, Any]:
    """Train everything, then write `results.json`, `results.md` and the pictures into the output directory.

    The output directory is locked as `deit train` locks its own: a second demo into it is refused at once."""
    from deit.engine.run_lock import lock_run_folder

    settings.validate()
    lock = lock_run_folder(settings.output_dir)
    try:
        return _run_demo(settings, command)
    finally:
        lock.release()


def _run_demo(settings: DemoSettings, command: str) -> dict[str, Any]:
    from deit.demo import plots as demo_plots
    from deit.demo import report as demo_report

    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    jobs, threads, device = plan_parallelism(settings.device, settings.jobs, settings.seeds)
    first, distilled, total = plan_runs(settings)
    sizes_text = ", ".join(f"{100 * fraction:g}%" for fraction in settings.fractions)
    print(
        f"[demo] {total} runs: at each training-set size ({sizes_text} of DIGITS' training images) a teacher and "
        f"the students x {settings.seeds} seed(s); on {device}, {jobs} at a time; per-run logs under "
        f"{Path(settings.output_dir) / 'runs'}",
        flush=True,
    )
    training_started = time.perf_counter()
    teachers, student_runs = run_jobs(first, distilled, total=total, jobs=jobs, threads=threads)
    training_seconds = time.perf_counter() - training_started

    images = _training_images()
    sizes = [
        demo_report.summarise_size(
            fraction,
            teachers[fraction],
            [run for run in student_runs if run["fraction"] == fraction],
            images=_subset_images(fraction, images),
            epochs=settings.epochs_at(fraction),
            teacher_epochs=settings.epochs_at(fraction, teacher=True),
        )
        for fraction in settings.fractions
    ]
    full, teacher = sizes[-1], teachers[settings.fractions[-1]]
    headline = demo_report.headline(sizes, settings.headline_fraction, HEADLINE_KIND)
    machine = machine_description(device)
    machine["load_average_start"] = load_start
    machine["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    grid = settings.input_size // int(settings.student_kwargs.get("patch_size", 16))
    results: dict[str, Any] = {
        "teacher": {
            "model": TEACHER_MODEL,
            "model_kwargs": dict(TEACHER_KWARGS),
            "label": "ResNet-18, quarter width",
            "top1": full["teacher"]["top1"],
            "fraction": full["fraction"],
            "epochs": full["teacher"]["epochs"],
            "seconds": full["teacher"]["seconds"],
            "curve": teacher["curve"],
            "run_dir": teacher["run_dir"],
        },
        "students": full["students"],
        "sizes": sizes,
        "headline": headline,
        "verdict": demo_report.verdict(headline),
        "every_seed": demo_report.every_seed_sentence(sizes),
        "paper": demo_report.PAPER_COSINE,
        "config": {
            **asdict(settings),
            "jobs": jobs,
            "threads_per_run": threads or "default",
            "headline_kind": HEADLINE_KIND,
            "headline_fraction": settings.headline_fraction,
            "student": {
                "name": f"{PLAIN_STUDENT} / {DISTILLED_STUDENT}",
                "kwargs": settings.student_kwargs,
                "grid": grid,
            },
            "recipe": shared_recipe(settings),
        },
        "timings": {"training_seconds": round(training_seconds, 2)},
        "machine": machine,
        "command": command,
    }
    results["timings"]["total_seconds"] = round(time.perf_counter() - started, 2)
    output_dir = Path(settings.output_dir)
    paths = demo_report.write_results(results, output_dir)
    paths["headline_plot"] = demo_plots.plot_data_efficiency(results, output_dir / "data_efficiency.png")
    paths["plot"] = demo_plots.plot_curves(results, output_dir / "curves.png")
    print(demo_report.size_table(results), flush=True)
    print(results["verdict"], flush=True)
    print(results["every_seed"], flush=True)
    print(
        f"[demo] {results['timings']['total_seconds']:.0f} s in all ({training_seconds:.0f} s training); wrote "
        f"{', '.join(str(path) for path in paths.values())}",
        flush=True,
    )
    return results


def _training_images() -> int:
    from deit.data.digits import DigitsDataset

    return len(DigitsDataset(train=True))


def _subset_images(fraction: float, total: int) -> int:
    from deit.data.subset import subset_size

    return subset_size(fraction, total)


__all__ = [
    "DemoSettings",
    "HEADLINE_KIND",
    "STUDENT_KINDS",
    "plan_runs",
    "run_demo",
    "shared_recipe",
    "student_config",
    "teacher_config",
]
