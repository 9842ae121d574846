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
import io
import os
import platform
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from deit.errors import DeitError

STUDENT_KINDS = ("none", "two_cls_tokens", "soft", "hard")
PLAIN_STUDENT = "deit_tiny_patch16_224"
DISTILLED_STUDENT = "deit_tiny_distilled_patch16_224"
TEACHER_MODEL = "resnet18"
# ResNet-18 at a quarter of its width (0.7 M parameters): as accurate as the full one on DIGITS, and its forward
# pass, paid at every step of a distilled student, costs a third of the student's training step instead of 2/3.
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


@dataclass(frozen=True)
class Job:
    """One training run of the demo: the teacher, or one student kind with one seed."""

    kind: str
    seed: int
    config: Any  # a deit.engine.TrainConfig (plain data, so it pickles to a worker process)

    @property
    def label(self) -> str:
        """How its progress lines are prefixed."""
        return "teacher" if self.kind == "teacher" else f"{self.kind} seed {self.seed}"


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
    distillation = kind if kind in ("soft", "hard") else "none"
    extra: dict[str, Any] = {}
    if distillation != "none":
        if not teacher_path:
            raise DeitError(f"the {kind} student needs the teacher's checkpoint")
        extra = dict(teacher_model=TEACHER_MODEL, teacher_path=teacher_path)
    return make_config(**shared_recipe(settings), model=PLAIN_STUDENT if kind == "none" else DISTILLED_STUDENT,
                       model_kwargs=dict(settings.student_kwargs), epochs=settings.epochs,
                       batch_size=settings.batch_size, seed=seed, distillation_type=distillation,
                       distillation_alpha=settings.distillation_alpha, distillation_tau=settings.distillation_tau,
                       output_dir=str(run_dir(settings, f"{kind}_seed{seed}")), **extra)


# ---------------------------------------------------------------- one run (in this process or a worker)


class _PrefixedLines(io.TextIOBase):
    """A text stream that prefixes every line, so parallel runs' progress stays readable."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        super().__init__()
        self.stream, self.prefix, self.pending = stream, prefix, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def last_layer_token_similarity(checkpoint: Path, device: str = "auto") -> float | None:
    """Mean over DIGITS' validation images of cos(token 0, token 1) after the last block; None for one token."""
    import torch
    from torch.utils.data import DataLoader

    from deit.data import build_dataset
    from deit.tools.analyze import token_cosine_similarity
    from deit.tools.preprocess import EvalPreprocessing, load_inference_model

    model, meta, resolved = load_inference_model(checkpoint, device)
    if not getattr(model, "distilled", False):
        return None
    preprocessing = EvalPreprocessing.from_meta(meta, model)
    dataset = build_dataset("DIGITS", None, train=False, transform=preprocessing.transform())
    total, count = 0.0, 0
    with torch.inference_mode():
        for images, _ in DataLoader(dataset, batch_size=128):
            last = model.forward_intermediates(images.to(resolved))[-1]
            total += float(token_cosine_similarity([last]).sum())
            count += images.shape[0]
    return total / count


def _curve(log_path: Path) -> list[dict[str, Any]]:
    from deit.engine.logging_utils import read_log

    points = []
    for row in read_log(log_path) if log_path.is_file() else []:
        if "test_acc1" in row:
            dist = row.get("test_dist_acc1")
            points.append({"epoch": int(row["epoch"]) + 1, "fused": row["test_acc1"] / 100.0,
                           "cls": row["test_cls_acc1"] / 100.0, "dist": None if dist is None else dist / 100.0})
    return points


def execute(job: Job, threads: int | None = None) -> dict[str, Any]:
    """Train one run with the engine and measure it; picklable in and out, so it runs in worker processes."""
    import torch

    from deit.engine import train

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    output = Path(job.config.output_dir)
    if output.exists():  # a fresh run: an old log.txt would be appended to, an old checkpoint resumed from
        shutil.rmtree(output)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(_PrefixedLines(sys.stdout, f"[{job.label}] ")):
            metrics = train(job.config)
            cosine = None
            if job.kind != "teacher":
                cosine = last_layer_token_similarity(output / "checkpoint.pth", job.config.device)
    except Exception as error:  # re-raised as a plain DeitError: every exception type must survive pickling
        raise DeitError(f"demo run '{job.label}' failed: {type(error).__name__}: {error}") from None
    finally:
        torch.set_num_threads(previous_threads)  # this process may go on with other work (inline runs, tests)
    return {"kind": job.kind, "seed": job.seed, "label": job.label, "model": job.config.model,
            "distillation_type": job.config.distillation_type, "metrics": _plain(metrics), "cosine": cosine,
            "curve": _curve(output / "log.txt"), "seconds": time.perf_counter() - started, "run_dir": str(output)}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float, str)) or value is None}


# ---------------------------------------------------------------- scheduling


class _InlineExecutor:
    """Runs each job at once in this process (one job at a time: GPU, or a single core)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: BLE001 -- handed to the caller through the future
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop."""


def resolve_jobs(settings: DemoSettings) -> tuple[int, int | None, str]:
    """(parallel runs, threads per run or None for torch's default, the resolved device)."""
    from deit.engine.distributed import resolve_device

    device = str(resolve_device(settings.device))
    if device.startswith("cuda"):
        return 1, None, device  # one GPU: runs one after the other, in this process
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = settings.jobs or max(1, min(cores, 2 * settings.seeds))
    return jobs, max(1, cores // jobs), device


def _run_all(settings: DemoSettings, jobs: int, threads: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train the teacher and the label-only students, then the distilled ones once the teacher exists."""
    teacher_job = Job("teacher", 0, teacher_config(settings))
    first = [teacher_job] + [Job(kind, seed, student_config(settings, kind, seed))
                             for seed in range(settings.seeds) for kind in ("none", "two_cls_tokens")]
    executor: Any
    if jobs == 1:
        executor = _InlineExecutor()
    else:
        import multiprocessing

        # spawn, not fork: a forked copy of a process that already started torch's threads can deadlock.
        executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    teacher: dict[str, Any] = {}
    students: list[dict[str, Any]] = []
    total = len(first) + 2 * settings.seeds
    try:
        pending = {executor.submit(execute, job, threads): job for job in first}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                result = future.result()
                if job.kind == "teacher":
                    teacher = result
                    checkpoint = str(Path(job.config.output_dir) / "checkpoint.pth")
                    for seed in range(settings.seeds):
                        for kind in ("soft", "hard"):
                            nxt = Job(kind, seed, student_config(settings, kind, seed, checkpoint))
                            pending[executor.submit(execute, nxt, threads)] = nxt
                else:
                    students.append(result)
                _announce(result, len(students) + bool(teacher), total)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return teacher, students


def _announce(result: dict[str, Any], finished: int, total: int) -> None:
    metrics = result["metrics"]
    heads = f"class {metrics['cls_acc1']:.1f}%"
    if "dist_acc1" in metrics:
        heads += f", distillation {metrics['dist_acc1']:.1f}%"
    cosine = f", token cosine {result['cosine']:.3f}" if result["cosine"] is not None else ""
    print(f"[demo] {finished}/{total} done: {result['label']}: fused top-1 {metrics['acc1']:.1f}% ({heads}{cosine}) "
          f"in {result['seconds']:.0f} s", flush=True)


# ---------------------------------------------------------------- the experiment


def machine_description(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
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
    jobs, threads, device = resolve_jobs(settings)
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


__all__ = ["DemoSettings", "Job", "STUDENT_KINDS", "execute", "last_layer_token_similarity", "run_demo",
           "student_config", "teacher_config"]
