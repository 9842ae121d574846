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
    """The experiment's sizes and recipe (chosen by the sweeps in docs/demo.md, which record their measured time)."""

    output_dir: str = "runs/demo"
    #: Seeds per student kind and size on the DIGITS curve.
    seeds: int = 3
    #: The students' seeds are first_seed, first_seed + 1, ...: other values check the headline on fresh draws.
    first_seed: int = 0
    #: Training-set sizes as fractions of DIGITS' 1,437 training images (nested subsets, one draw): the curve.
    sizes: tuple[float, ...] = (0.03, 0.1, 1.0)
    #: Student kinds trained below the full size: the budget's choice.
    subset_kinds: tuple[str, ...] = ("none", "soft")
    #: Kinds trained at the full size: the paper's Table 3 rows (the two-class-token control, hard distillation)
    #: too with `deit demo --table3`; the 10-minute budget of converged students leaves them out by default.
    full_size_kinds: tuple[str, ...] = ("none", "soft")
    subset_seed: int = 0
    #: Student epochs; a fraction f of the training set passes 1 / f times per epoch (the same number of steps).
    epochs: int = 64
    teacher_epochs: int = 8
    #: Epochs between evaluations, at every size (16 points of a 64-epoch curve) and after the last.
    eval_interval: int = 4
    input_size: int = 32
    # A 4x4 grid of 8x8 patches (2x2 of the original pixels each), width 64, 2 blocks: its step costs ~0.45x that
    # of width 128 (the 10-minute budget's choice, docs/demo.md).
    student_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"embed_dim": 64, "depth": 2, "num_heads": 4, "patch_size": 8}
    )
    # Batch 64 at lr 4e-3 for 64 epochs (1,408 steps at every size): converged at the full size (the last quarter
    # moves top-1 by under a point) for less time than batch 16 (docs/demo.md, the issue-32 sweep).
    batch_size: int = 64
    teacher_batch_size: int = 32
    lr: float = 4e-3
    teacher_lr: float = 1e-3
    #: The teacher's own regularisers (0 / "none": the students' recipe).
    teacher_mixup: float = 0.0
    teacher_aa: str = "none"
    #: The teacher's label smoothing (None: the recipe's 0.1). A smoothed teacher's logits carry less of the
    #: similarity between classes that distillation hands over (Mueller et al. 2019).
    teacher_smoothing: float | None = None
    warmup_epochs: int = 2
    # Soft: Hinton et al.'s batch-mean KL at temperature 3 (the official scaling is 10x weaker at 10 classes),
    # weight 0.9 (the issue-19 headline check on fresh seeds, docs/demo.md). Hard: the paper's equal weighting.
    soft_alpha: float = 0.9
    hard_alpha: float = 0.5
    distillation_tau: float = 3.0
    kl_reduction: str = "batchmean"
    #: Mixup for the kinds in `mixup_kinds` (0: none). With a teacher it is Beyer et al.'s function matching: the
    #: teacher labels every mixed image, so a distilled student learns its function on new inputs, not only on
    #: the training views (the teacher then runs per step: mixed images are not table views).
    mixup: float = 0.0
    mixup_kinds: tuple[str, ...] = ("soft",)
    #: RandAugment for the students in `mixup_kinds` ("none": off), e.g. "rand-m9-mstd0.5-inc1".
    student_aa: str = "none"
    #: The headline's setting, fixed by the protocol committed before its runs (benchmarks/demo_sweep/
    #: headline_issue32.py): a data set ("DIGITS" or "DIGITS-CANVAS"), one training-set size, its own seeds.
    headline_data_set: str = "DIGITS"
    headline_size: float = 0.03
    headline_seeds: int = 5
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
            headline_data_set="DIGITS",
            headline_size=0.5,
            headline_seeds=1,
            student_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8},
        )
        for name, value in changes.items():
            setattr(settings, name, value)
        return settings

    def validate(self) -> None:
        """One-line errors naming the flag, before anything is built."""
        from deit.data.datasets import data_set_key

        for flag, value in (
            ("--seeds", self.seeds),
            ("--headline-seeds", self.headline_seeds),
            ("--epochs", self.epochs),
            ("--teacher-epochs", self.teacher_epochs),
        ):
            if value < 1:
                raise DeitError(f"{flag} {value}: must be at least 1")
        if self.first_seed < 0:
            raise DeitError(f"--first-seed {self.first_seed}: must be 0 or more")
        if self.jobs < 0:
            raise DeitError(f"--jobs {self.jobs}: must be 0 (automatic) or more")
        if any(not 0.0 < size <= 1.0 for size in self.sizes):
            raise DeitError(
                f"--sizes {','.join(f'{size:g}' for size in self.sizes)}: fractions in (0, 1], e.g. 0.25,0.5,1"
            )
        if not 0.0 < self.headline_size <= 1.0:
            raise DeitError(f"--headline-size {self.headline_size:g}: a fraction in (0, 1], e.g. 0.25")
        if data_set_key(self.headline_data_set) not in HEADLINE_DATA_SETS:
            raise DeitError(
                f"--headline-data-set {self.headline_data_set}: choose one of {', '.join(HEADLINE_DATA_SETS.values())}"
            )
        unknown = [kind for kind in (*self.subset_kinds, *self.full_size_kinds) if kind not in STUDENT_KINDS]
        if unknown:
            raise DeitError(f"unknown student kind '{unknown[0]}'; choose from {', '.join(STUDENT_KINDS)}")

    @property
    def student_seeds(self) -> range:
        """The seeds every student kind is trained with on the curve (the same at every size: gains are paired)."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def fractions(self) -> list[float]:
        """The curve's sizes, smallest first, without repeats."""
        return sorted(set(self.sizes))

    @property
    def headline_key(self) -> tuple[str, float]:
        """(data set, fraction) of the headline comparison, known before anything trains."""
        from deit.data.datasets import data_set_key

        return (HEADLINE_DATA_SETS[data_set_key(self.headline_data_set)], self.headline_size)

    @property
    def separate_headline(self) -> bool:
        """True when the headline is not one of the DIGITS curve's sizes (its own teacher and students)."""
        return self.headline_key not in {("DIGITS", fraction) for fraction in self.fractions}

    def seeds_at(self, data_set: str, fraction: float) -> range:
        """The seeds trained at one (data set, size): the curve's, widened to the headline's at the headline."""
        count = self.headline_seeds if (data_set, fraction) == self.headline_key else 0
        return range(self.first_seed, self.first_seed + max(count, self.seeds if data_set == "DIGITS" else 0))

    def kinds_at(self, fraction: float, data_set: str = "DIGITS") -> tuple[str, ...]:
        """The student kinds trained at a size: all at DIGITS' largest, none and the headline's elsewhere."""
        if data_set == "DIGITS" and self.fractions and fraction == self.fractions[-1]:
            wanted_here = set(self.full_size_kinds) | {"none", HEADLINE_KIND}
            return tuple(kind for kind in STUDENT_KINDS if kind in wanted_here)
        wanted = set(self.subset_kinds) | {"none", HEADLINE_KIND}
        return tuple(kind for kind in STUDENT_KINDS if kind in wanted)

    def repeats_at(self, fraction: float) -> int:
        """Passes over the subset per epoch (`--epoch-repeats`): 1 / fraction, so every size trains about the same
        number of steps, with the same warmup, evaluations and checkpoints per epoch."""
        return max(1, round(1 / fraction))


#: The data sets a headline may use, by their `data_set_key`, spelled as `--data-set` takes them.
HEADLINE_DATA_SETS = {"DIGITS": "DIGITS", "DIGITSCANVAS": "DIGITS-CANVAS"}


# ---------------------------------------------------------------- the runs' configurations


def shared_recipe(settings: DemoSettings, data_set: str = "DIGITS") -> dict[str, Any]:
    """What every run shares: `--recipe small-data` on the digits, with the digit-specific settings on top.

    The recipe brings AdamW with a cosine schedule stepped per update (`--sched-on-updates`), label smoothing
    0.1, no EMA and none of the heavy regularisers (RandAugment, mixup/cutmix, random erasing, colour jitter,
    repeated augmentation: at this scale they slow training far more than they regularise, docs/demo.md). On
    top: the official small-image crop alone (a random crop with 4 px of padding), no flip (a mirrored digit is
    not a digit), the whole image at evaluation, no stochastic depth.
    """
    return dict(
        recipe="small-data",
        data_set=data_set,
        data_loader="auto",
        input_size=settings.input_size,
        hflip=0.0,
        eval_crop_ratio=1.0,
        drop_path=0.0,
        lr=settings.lr,
        warmup_epochs=settings.warmup_epochs,
        device=settings.device,
        num_workers=0,
        log_format="plain",
        log_interval=0,  # no step lines: many runs share the console; their epoch lines are the progress
        max_steps_per_epoch=settings.max_steps_per_epoch,
        train_subset=1.0,
        train_subset_seed=settings.subset_seed,
    )


def _sized_recipe(settings: DemoSettings, fraction: float, data_set: str = "DIGITS") -> dict[str, Any]:
    """The shared recipe at one training-set size: its subset, warmup and evaluation interval."""
    return {
        **shared_recipe(settings, data_set),
        "train_subset": fraction,
        "eval_interval": settings.eval_interval,
        "epoch_repeats": settings.repeats_at(fraction),
        # A synced checkpoint write (~0.15 s) per 0.4-s epoch was a quarter of a run: every 8th epoch, the
        # improvements and the last are written (a kill loses at most 7 sub-second epochs).
        "checkpoint_every": 8,
    }


def size_tag(fraction: float) -> str:
    """A size as a folder name: `f025` for 25%, `f100` for the full set."""
    return f"f{round(100 * fraction):03d}"


def run_dir(settings: DemoSettings, name: str, fraction: float = 1.0, data_set: str = "DIGITS") -> Path:
    """Where one run writes its checkpoint and logs (DIGITS-CANVAS runs under `canvas/`)."""
    runs = Path(settings.output_dir) / "runs"
    return (runs if data_set == "DIGITS" else runs / "canvas") / size_tag(fraction) / name


def teacher_config(settings: DemoSettings, fraction: float = 1.0, data_set: str = "DIGITS") -> Any:
    """A teacher: a quarter-width ResNet-18 trained by the same engine on the same images as its students."""
    from deit.engine import make_config

    return make_config(
        **{**_sized_recipe(settings, fraction, data_set), "lr": settings.teacher_lr},
        **({"mixup": settings.teacher_mixup, "cutmix": 0.0} if settings.teacher_mixup else {}),
        aa=settings.teacher_aa,
        **({} if settings.teacher_smoothing is None else {"smoothing": settings.teacher_smoothing}),
        model=TEACHER_MODEL,
        model_kwargs=dict(TEACHER_KWARGS),
        epochs=settings.teacher_epochs,
        batch_size=settings.teacher_batch_size,
        seed=0,
        output_dir=str(run_dir(settings, "teacher", fraction, data_set)),
    )


def student_config(
    settings: DemoSettings,
    kind: str,
    seed: int,
    teacher_path: str | None = None,
    fraction: float = 1.0,
    data_set: str = "DIGITS",
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
    if settings.mixup and kind in settings.mixup_kinds:
        extra.update(mixup=settings.mixup, cutmix=0.0, aa=settings.student_aa)
        if "teacher_table" in extra:
            extra["teacher_table"] = "off"
    return make_config(
        **_sized_recipe(settings, fraction, data_set),
        model=PLAIN_STUDENT if kind == "none" else DISTILLED_STUDENT,
        model_kwargs=dict(settings.student_kwargs),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        seed=seed,
        distillation_type=distillation,
        distillation_tau=settings.distillation_tau,
        distillation_kl_reduction=settings.kl_reduction,
        output_dir=str(run_dir(settings, f"{kind}_seed{seed}", fraction, data_set)),
        **extra,
    )


def size_keys(settings: DemoSettings) -> list[tuple[str, float]]:
    """Every (data set, size) the experiment trains: the DIGITS curve, smallest first, then a separate headline."""
    keys = [("DIGITS", fraction) for fraction in settings.fractions]
    return keys + ([settings.headline_key] if settings.separate_headline else [])


def plan_runs(settings: DemoSettings) -> tuple[list[Job], Any, int]:
    """(the runs that start at once, the runs each trained teacher unlocks, the number of runs in all).

    The teachers go first, then the label-only students; a size's distilled students are queued when its teacher
    is trained. The token similarity is measured on DIGITS' full-size students (the Table 3 analogue).
    """
    largest = settings.fractions[-1] if settings.fractions else None

    def job(kind: str, seed: int, key: tuple[str, float], teacher_path: str | None = None) -> Job:
        data_set, fraction = key
        return Job(
            kind,
            seed,
            student_config(settings, kind, seed, teacher_path, fraction, data_set),
            fraction,
            measure_cosine=key == ("DIGITS", largest) and kind != "none",
            data_set=data_set,
        )

    keys = size_keys(settings)
    first = [Job("teacher", 0, teacher_config(settings, f, d), f, data_set=d) for d, f in keys]
    first += [
        job(kind, seed, key)
        for key in keys
        for seed in settings.seeds_at(*key)
        for kind in settings.kinds_at(key[1], key[0])
        if kind in ("none", "two_cls_tokens")
    ]

    def distilled(teacher: Job, checkpoint: str) -> list[Job]:
        return [
            job(kind, seed, teacher.size_key, checkpoint)
            for seed in settings.seeds_at(*teacher.size_key)
            for kind in settings.kinds_at(teacher.fraction, teacher.data_set)
            if kind in ("soft", "hard")
        ]

    total = len(keys) + sum(len(settings.seeds_at(*key)) * len(settings.kinds_at(key[1], key[0])) for key in keys)
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
    from deit.demo import findings as demo_findings
    from deit.demo import plots as demo_plots
    from deit.demo import report as demo_report

    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    jobs, threads, device = plan_parallelism(settings.device, settings.jobs, settings.seeds)
    first, distilled, total = plan_runs(settings)
    sizes_text = ", ".join(f"{100 * fraction:g}%" for fraction in settings.fractions)
    headline_data, headline_fraction = settings.headline_key
    print(
        f"[demo] {total} runs: at each training-set size ({sizes_text} of DIGITS' training images) a teacher and "
        f"the students x {settings.seeds} seed(s); the headline: {HEADLINE_KIND} vs none on {headline_data} at "
        f"{100 * headline_fraction:g}% x {len(settings.seeds_at(*settings.headline_key))} seeds; on {device}, {jobs} "
        f"at a time; per-run logs under {Path(settings.output_dir) / 'runs'}",
        flush=True,
    )
    training_started = time.perf_counter()
    teachers, student_runs = run_jobs(first, distilled, total=total, jobs=jobs, threads=threads)
    training_seconds = time.perf_counter() - training_started

    images = _training_images()
    summaries = {
        key: demo_report.summarise_size(
            key[1],
            teachers[key],
            [run for run in student_runs if (run["data_set"], run["fraction"]) == key],
            images=_subset_images(key[1], images),
            epochs=settings.epochs,
            teacher_epochs=settings.teacher_epochs,
            data_set=key[0],
        )
        for key in size_keys(settings)
    }
    sizes = [summaries[("DIGITS", fraction)] for fraction in settings.fractions]
    # Without a DIGITS curve (a headline-only run, benchmarks/demo_sweep) the headline's row stands in.
    last_key = ("DIGITS", settings.fractions[-1]) if sizes else settings.headline_key
    full, teacher = summaries[last_key], teachers[last_key]
    headline = demo_report.headline([summaries[settings.headline_key]], headline_fraction, HEADLINE_KIND)
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
        "curve": demo_findings.curve(sizes),
        "headline": headline,
        "verdict": demo_report.verdict(headline),
        "every_seed": demo_report.every_seed_sentence(sizes),
        "where_the_teacher_helps": demo_findings.teacher_help_sentence(sizes),
        "training_check": demo_findings.training_check(list(summaries.values())),
        "paper": demo_report.PAPER_COSINE,
        "config": {
            **asdict(settings),
            "jobs": jobs,
            "threads_per_run": threads or "default",
            "headline_kind": HEADLINE_KIND,
            "headline_fraction": headline_fraction,
            "headline_data_set": headline_data,
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
    if settings.separate_headline:
        results["headline_sizes"] = [summaries[settings.headline_key]]
        results["headline_curve"] = demo_findings.curve(results["headline_sizes"])
    results["timings"]["total_seconds"] = round(time.perf_counter() - started, 2)
    output_dir = Path(settings.output_dir)
    paths = demo_report.write_results(results, output_dir)
    paths["headline_plot"] = demo_plots.plot_data_efficiency(results, output_dir / "data_efficiency.png")
    paths["plot"] = demo_plots.plot_curves(results, output_dir / "curves.png")
    print(demo_report.size_table(results), flush=True)
    for key in ("verdict", "where_the_teacher_helps", "every_seed"):
        print(results[key], flush=True)
    print(results["training_check"]["sentence"], flush=True)
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
