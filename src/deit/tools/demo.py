"""`deit demo`: the paper's central experiment (its Table 3) at laptop scale, on the embedded DIGITS data.

A small CNN teacher, then one small DeiT student trained four ways, over several seeds:

- `none`: the plain architecture (one class token), labels only -- the paper's "no distillation";
- `two_cls_tokens`: the distilled architecture with `--distillation-type none`, so both tokens learn from the
  labels -- the paper's control of a second *class* token instead of a distillation token;
- `soft`, `hard`: the distilled architecture with the teacher (DeiT⚗).

Every run, the teacher's included, is a real `deit.engine.train` run with its own directory under
`<output>/runs/`, so its `log.txt`, `checkpoint.pth` and `curves.png` are there to inspect or `deit eval`.
On a CPU the runs go to parallel processes of one thread each (tiny models use one core far better than two);
the distilled students start as soon as the teacher is trained.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deit.errors import DeitError
from deit.tools.demo_runs import Job, plan_parallelism, run_jobs, usable_cores

STUDENT_KINDS = ("none", "two_cls_tokens", "soft", "hard")
PLAIN_STUDENT = "deit_tiny_patch16_224"
DISTILLED_STUDENT = "deit_tiny_distilled_patch16_224"
TEACHER_MODEL = "resnet18"
# ResNet-18 at a quarter of its width (0.7 M parameters) reaches ~98% on DIGITS in 8 epochs. Its forward pass is
# paid at every step of a distilled student: ~1/3 of the student's step, against ~1/2 at half width (~1 point more).
TEACHER_KWARGS = {"channels": [16, 32, 64, 128], "stem_width": 16}


@dataclass
class DemoSettings:
    """The experiment's size and recipe; the defaults fit the training in about 5 minutes on 2 CPU cores."""

    output_dir: str = "runs/demo"
    seeds: int = 3
    epochs: int = 22
    teacher_epochs: int = 8
    input_size: int = 32
    # A 4x4 grid of 8x8 patches (2x2 of the original pixels each); wide and shallow trains fastest per second here.
    student_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"embed_dim": 128, "depth": 2, "num_heads": 4, "patch_size": 8})
    batch_size: int = 16
    teacher_batch_size: int = 32
    lr: float = 1e-3
    warmup_epochs: int = 2
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    device: str = "auto"
    jobs: int = 0
    max_steps_per_epoch: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> DemoSettings:
        """A smoke-test size: one seed, two short epochs, a narrow student (its numbers mean nothing)."""
        settings = cls(seeds=1, epochs=2, teacher_epochs=1, warmup_epochs=0, max_steps_per_epoch=8,
                       student_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8})
        for name, value in changes.items():
            setattr(settings, name, value)
        return settings

    def validate(self) -> None:
        """One-line errors naming the flag, before anything is built."""
        for flag, value in (("--seeds", self.seeds), ("--epochs", self.epochs),
                            ("--teacher-epochs", self.teacher_epochs)):
            if value < 1:
                raise DeitError(f"{flag} {value}: must be at least 1")
        if self.jobs < 0:
            raise DeitError(f"--jobs {self.jobs}: must be 0 (automatic) or more")


# ---------------------------------------------------------------- the runs' configurations


def shared_recipe(settings: DemoSettings) -> dict[str, Any]:
    """What every run shares: DIGITS, a light augmentation, label smoothing 0.1, AdamW with a cosine schedule.

    The augmentation is the official small-image crop alone (resize, then a random crop with 4 px of padding).
    No flip: a mirrored digit is not a digit. RandAugment, mixup/cutmix, random erasing, colour jitter and
    repeated augmentation are off: on DIGITS at this budget they slow training far more than they regularise
    (measured: RandAugment gave 54% instead of 82% after 20 epochs).
    """
    return dict(data_set="DIGITS", input_size=settings.input_size, aa="none", hflip=0.0, reprob=0.0, mixup=0.0,
                cutmix=0.0, repeated_aug=False, color_jitter=0.0, eval_crop_ratio=1.0, smoothing=0.1,
                model_ema=False, drop_path=0.0, unscale_lr=True, lr=settings.lr, warmup_epochs=settings.warmup_epochs,
                min_lr=1e-5, weight_decay=0.05, device=settings.device, num_workers=0, log_format="plain",
                log_interval=100_000, max_steps_per_epoch=settings.max_steps_per_epoch)


def run_dir(settings: DemoSettings, name: str) -> Path:
    """Where one run writes its checkpoint and logs."""
    return Path(settings.output_dir) / "runs" / name


def teacher_config(settings: DemoSettings) -> Any:
    """The teacher: a quarter-width ResNet-18 trained by the same engine on the same data."""
    from deit.engine import make_config

    return make_config(**shared_recipe(settings), model=TEACHER_MODEL, model_kwargs=dict(TEACHER_KWARGS),
                       epochs=settings.teacher_epochs, batch_size=settings.teacher_batch_size, seed=0,
                       output_dir=str(run_dir(settings, "teacher")))


def student_config(settings: DemoSettings, kind: str, seed: int, teacher_path: str | None = None) -> Any:
    """One student run: the plain architecture for `none`, the distilled one otherwise; same dims for all."""
    from deit.engine import make_config

    if kind not in STUDENT_KINDS:
        raise DeitError(f"unknown student kind '{kind}'; choose one of {', '.join(STUDENT_KINDS)}")
    distillation = {"two_cls_tokens": "labels"}.get(kind, kind)
    extra: dict[str, Any] = {}
    if distillation in ("soft", "hard"):
        if not teacher_path:
            raise DeitError(f"the {kind} student needs the teacher's checkpoint")
        extra = dict(teacher_model=TEACHER_MODEL, teacher_path=teacher_path)
    return make_config(**shared_recipe(settings), model=PLAIN_STUDENT if kind == "none" else DISTILLED_STUDENT,
                       model_kwargs=dict(settings.student_kwargs), epochs=settings.epochs,
                       batch_size=settings.batch_size, seed=seed, distillation_type=distillation,
                       distillation_alpha=settings.distillation_alpha, distillation_tau=settings.distillation_tau,
                       output_dir=str(run_dir(settings, f"{kind}_seed{seed}")), **extra)


def _run_all(settings: DemoSettings, jobs: int, threads: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The teacher and the label-only students first; the distilled students once the teacher is trained."""
    first = [Job("teacher", 0, teacher_config(settings))] + [
        Job(kind, seed, student_config(settings, kind, seed))
        for seed in range(settings.seeds) for kind in ("none", "two_cls_tokens")]

    def distilled(teacher_checkpoint: str) -> list[Job]:
        return [Job(kind, seed, student_config(settings, kind, seed, teacher_checkpoint))
                for seed in range(settings.seeds) for kind in ("soft", "hard")]

    return run_jobs(first, distilled, total=1 + len(STUDENT_KINDS) * settings.seeds, jobs=jobs, threads=threads)


# ---------------------------------------------------------------- the experiment


def machine_description(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cores = usable_cores()
    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = f"{_cpu_name()}, {cores} usable core(s)"
    return {"description": f"{hardware}; {platform.system()} {platform.release()}; Python "
                           f"{platform.python_version()}; torch {torch.__version__}",
            "device": device, "cores": cores, "torch": torch.__version__, "python": platform.python_version()}


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_demo(settings: DemoSettings, command: str = "deit demo") -> dict[str, Any]:
    """Train everything, then write `results.json`, `results.md` and `curves.png` into the output directory."""
    from deit.tools import demo_report

    settings.validate()
    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    jobs, threads, device = plan_parallelism(settings.device, settings.jobs, settings.seeds)
    runs = 1 + len(STUDENT_KINDS) * settings.seeds
    print(f"[demo] {runs} runs (teacher + {len(STUDENT_KINDS)} students x {settings.seeds} seeds) on {device}, "
          f"{jobs} at a time; per-run logs under {Path(settings.output_dir) / 'runs'}", flush=True)
    training_started = time.perf_counter()
    teacher, student_runs = _run_all(settings, jobs, threads)
    training_seconds = time.perf_counter() - training_started

    students = {kind: demo_report.summarise_student(kind, [r for r in student_runs if r["kind"] == kind])
                for kind in STUDENT_KINDS}
    comparison = demo_report.paired_comparison(students)
    machine = machine_description(device)
    machine["load_average_start"] = load_start
    machine["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    grid = settings.input_size // int(settings.student_kwargs.get("patch_size", 16))
    results: dict[str, Any] = {
        "teacher": {"model": TEACHER_MODEL, "model_kwargs": dict(TEACHER_KWARGS),
                    "label": "ResNet-18, quarter width", "top1": teacher["metrics"]["acc1"] / 100.0,
                    "epochs": settings.teacher_epochs, "seconds": round(teacher["seconds"], 2),
                    "curve": teacher["curve"], "run_dir": teacher["run_dir"]},
        "students": students,
        "comparison": comparison,
        "verdict": demo_report.verdict(comparison),
        "paper": demo_report.PAPER_COSINE,
        "config": {**asdict(settings), "jobs": jobs, "threads_per_run": threads or "default",
                   "student": {"name": f"{PLAIN_STUDENT} / {DISTILLED_STUDENT}", "kwargs": settings.student_kwargs,
                               "grid": grid},
                   "recipe": shared_recipe(settings)},
        "timings": {"training_seconds": round(training_seconds, 2)},
        "machine": machine,
        "command": command,
    }
    results["timings"]["total_seconds"] = round(time.perf_counter() - started, 2)
    paths = demo_report.write_results(results, Path(settings.output_dir))
    print(demo_report.markdown_table(results), flush=True)
    print(results["verdict"], flush=True)
    print(f"[demo] {results['timings']['total_seconds']:.0f} s in all ({training_seconds:.0f} s training); wrote "
          f"{', '.join(str(path) for path in paths.values())}", flush=True)
    return results


# ---------------------------------------------------------------- the command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit demo`."""
    defaults = DemoSettings()
    parser.add_argument("--output-dir", "--output_dir", default=defaults.output_dir,
                        help=f"where results and per-run folders go (default {defaults.output_dir})")
    parser.add_argument("--seeds", type=int, default=None, help=f"seeds per student (default {defaults.seeds})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"student training epochs (default {defaults.epochs})")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help=f"teacher training epochs (default {defaults.teacher_epochs})")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.add_argument("--jobs", type=int, default=0,
                        help="runs trained at once on a CPU, one process each (default: one per core)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 1 seed, 2 short epochs, a 2-block student (numbers meaningless)")


def run(args: argparse.Namespace) -> int:
    """Run the experiment from the command line."""
    changes = {"output_dir": args.output_dir, "device": args.device, "jobs": args.jobs}
    for name in ("seeds", "epochs", "teacher_epochs"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    settings = DemoSettings.quick(**changes) if args.quick else DemoSettings(**changes)
    run_demo(settings, command=_command_line(args))
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, reconstructed (flags at their defaults left out)."""
    parts = ["deit demo"] + (["--quick"] if args.quick else [])
    for name in ("seeds", "epochs", "teacher_epochs"):
        if getattr(args, name) is not None:
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    if args.jobs:
        parts.append(f"--jobs {args.jobs}")
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    parts.append(f"--output-dir {args.output_dir}")
    return " ".join(parts)


__all__ = ["DemoSettings", "STUDENT_KINDS", "run_demo", "shared_recipe", "student_config", "teacher_config"]
