"""Training-step images/s: `deit train`'s own step versus the official loop on timm's model, in one process.

Our path is the engine's `TrainStep`, built from a `deit train` configuration by the same builders `deit train`
uses (deit.inference.bench.build_bench_step): a row here is that configuration, recorded in the JSON. Both sides run
the official recipe per batch: mixup/cutmix, student forward, hard distillation with the teacher's prediction,
backward, AdamW, EMA update. They start from the same student weights (timm's random init loaded into ours) and
the same teacher weights (RegNetY-16GF, random init: speed does not depend on the values). Parity first: fp32
loss and gradients of ours vs the official formula on timm's model on one small batch (mixup and EMA off).

    PYTHONPATH=src python benchmarks/bench_train_step.py --device cuda --out $OUT --profile
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import torch
from timm.utils import unwrap_model
from torch import Tensor, nn

from common import (
    Deadline,
    environment,
    environment_lines,
    guarded,
    interleaved,
    markdown_table,
    number,
    previous_rows,
    same_weights_pair,
    write_report,
)
from deit import perf
from deit.inference.bench import build_bench_step, time_steps, train_config
from deit.precision import resolve_precision
from official_loop import OfficialStep

GPU_STUDENTS = "deit_small_distilled_patch16_224:256,deit_base_distilled_patch16_224:128"
CPU_STUDENTS = "deit_tiny_distilled_patch16_224:8"
ALL_PATHS = ("official-timm", "ours-eager", "ours-compile")
PATHS = {"cuda": "official-timm,ours-eager,ours-compile", "cpu": "official-timm,ours-eager"}


def _teacher(name: str, device: torch.device) -> nn.Module:
    import timm

    torch.manual_seed(1)
    return timm.create_model(name, pretrained=False, num_classes=1000).to(device).eval()


def _fp32_parity(
    row: dict[str, Any],
    timm_student: nn.Module,
    ours: nn.Module,
    teacher: nn.Module,
    distillation_type: str,
    device: torch.device,
) -> None:
    """Loss and gradients of our step's math vs the official formula on timm's model, fp32, batch 4."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        size = ours.img_size
        generator = torch.Generator().manual_seed(2)
        images = torch.randn(4, 3, size, size, generator=generator).to(device)
        labels = torch.randint(0, 1000, (4,), generator=generator).to(device)
        official = OfficialStep(
            timm_student,
            teacher,
            device=device,
            dtype=None,
            distillation_type=distillation_type,
            batch_size=4,
            recipe=False,
        )
        mine = our_step(
            ours,
            teacher,
            amp="none",
            compile=False,
            distillation_type=distillation_type,
            batch_size=4,
            device=device,
            mixup=0.0,
            cutmix=0.0,
            model_ema=False,
        )
        timm_student.zero_grad(set_to_none=True)
        reference = official.criterion(images, timm_student(images), labels)
        reference.backward()
        loss = mine.loss(images, labels)
        loss.backward()
        row["fp32_loss_abs_diff"] = float((reference.detach() - loss.detach()).abs())
        grads = {name: p.grad for name, p in timm_student.named_parameters()}
        row["fp32_grad_max_abs_diff"] = max(
            float((grads[name] - p.grad).abs().max()) for name, p in unwrap_model(mine.model).named_parameters()
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        timm_student.zero_grad(set_to_none=True)
        ours.zero_grad(set_to_none=True)


def our_step(
    student: nn.Module,
    teacher: nn.Module,
    *,
    amp: str,
    compile: bool,
    distillation_type: str | None,
    batch_size: int,
    device: torch.device,
    **settings: Any,
) -> Any:
    """`deit train`'s step for this student and teacher (copies of their weights), from a deit train config."""
    # --drop-path 0: timm's baseline student is built without stochastic depth, so both sides compute the same.
    settings.setdefault("drop_path", 0.0)
    config = train_config(
        student.model_name,
        batch_size=batch_size,
        img_size=student.img_size,
        amp=amp,
        compile=compile,
        device=device,
        teacher_model=teacher.default_cfg["architecture"] if distillation_type else None,
        distillation_type=distillation_type or "none",
        model_kwargs={},
        **settings,
    )
    step = build_bench_step(config, num_classes=1000, device=device)
    unwrap_model(step.model).load_state_dict(student.state_dict())
    if step.model_ema is not None:
        step.model_ema.module.load_state_dict(student.state_dict())
    if step.criterion.teacher is not None:
        unwrap_model(step.criterion.teacher.model).load_state_dict(teacher.state_dict())
    step.config = config
    return step


def _build_paths(
    paths: list[str],
    timm_student: nn.Module,
    ours: nn.Module,
    teacher: nn.Module,
    images: Tensor,
    labels: Tensor,
    amp: str,
    distillation_type: str,
    row: dict[str, Any],
) -> dict[str, Any]:
    """Each path's step, warmed up (compiled), with its first pre-update loss recorded for parity."""
    device, batch_size = images.device, images.shape[0]
    steps: dict[str, Any] = {}
    for path in paths:
        entry = row["paths"].setdefault(path, {})
        try:
            if path == "official-timm":
                dtype = resolve_precision(amp, device).dtype
                step: Any = OfficialStep(
                    timm_student,
                    teacher,
                    device=device,
                    dtype=dtype,
                    distillation_type=distillation_type,
                    batch_size=batch_size,
                )
                entry["first_loss"] = step(images, labels)
            else:
                step = our_step(
                    ours,
                    teacher,
                    amp=amp,
                    compile=path == "ours-compile",
                    distillation_type=distillation_type,
                    batch_size=batch_size,
                    device=device,
                )
                entry["first_loss"] = float(step(images, labels)[0])
                entry["train_config"] = step.config.to_dict()
            steps[path] = step
        except Exception as error:  # noqa: BLE001 - a failed path is reported; the others still run
            entry["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            print(f"  {row['student']} {path}: {entry['error']}", flush=True)
    return steps


def _breakdown(
    row: dict[str, Any],
    steps: dict[str, Any],
    ours: nn.Module,
    teacher: nn.Module,
    images: Tensor,
    labels: Tensor,
    amp: str,
) -> None:
    """Where a step's time goes: teacher forward, the same step without a teacher, the optimizer alone (ms)."""
    device = images.device
    parts: dict[str, float] = {}
    precision = resolve_precision(amp, device)

    def median_ms(fn: Any) -> float:
        return statistics.median(time_steps(fn, steps=10, warmup=3, device=device))

    fast = steps.get("ours-compile") or steps.get("ours-eager")
    with torch.no_grad(), precision.autocast(device):
        parts["teacher_forward_timm_eager_nchw"] = median_ms(lambda: teacher(images))
        if fast is not None:
            parts["teacher_forward_ours"] = median_ms(lambda: fast.criterion.teacher(images))
    if fast is not None:
        without_teacher = our_step(
            ours,
            teacher,
            amp=amp,
            compile=fast.config.compile,
            distillation_type=None,
            batch_size=images.shape[0],
            device=device,
        )
        parts["student_step_ours_no_teacher"] = median_ms(lambda: without_teacher(images, labels))
        parts["optimizer_step_ours"] = median_ms(fast.optimizer.step)
    row["breakdown_ms"] = parts


def _profile(step: Any, images: Tensor, labels: Tensor, path: str) -> None:
    """The top kernels of three steps, by self device time, written to `path`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if images.is_cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step(images, labels)
        if images.is_cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if images.is_cuda else "self_cpu_time_total"
    with open(path, "w") as handle:
        handle.write(prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=70))


def bench_student(
    student_name: str,
    batch_size: int,
    *,
    args: argparse.Namespace,
    device: torch.device,
    amp: str,
    paths: list[str],
    profile_path: str | None,
) -> dict[str, Any]:
    """One row: parity, then interleaved timing of each path, breakdown and (optionally) a profile."""
    row: dict[str, Any] = {
        "student": student_name,
        "teacher": args.teacher,
        "batch_size": batch_size,
        "distillation_type": args.distillation_type,
        "paths": {},
    }

    def work() -> None:
        timm_student, ours = same_weights_pair(student_name, device)
        teacher = _teacher(args.teacher, device)
        if not args.skip_fp32_parity:
            _fp32_parity(row, timm_student, ours, teacher, args.distillation_type, device)
        size = ours.img_size
        generator = torch.Generator().manual_seed(3)
        images = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
        labels = torch.randint(0, 1000, (batch_size,), generator=generator).to(device)
        steps = _build_paths(paths, timm_student, ours, teacher, images, labels, amp, args.distillation_type, row)
        times = interleaved(
            {name: (lambda s: lambda: s(images, labels))(step) for name, step in steps.items()},
            rounds=args.rounds,
            steps=args.steps,
            warmup=args.warmup,
            device=device,
        )
        base = statistics.median(times["official-timm"]) if "official-timm" in times else None
        for name, step_ms in times.items():
            median = statistics.median(step_ms)
            row["paths"][name].update(
                median_ms=median,
                images_per_second=batch_size * 1000 / median,
                ratio_vs_official=None if base is None else base / median,
                step_ms=[round(t, 4) for t in step_ms],
            )
        print(
            f"{student_name} bs{batch_size}: "
            + ", ".join(
                f"{n} {number(e.get('images_per_second'))} img/s (x{number(e.get('ratio_vs_official'), 2)})"
                for n, e in row["paths"].items()
                if "images_per_second" in e
            ),
            flush=True,
        )
        if args.breakdown:
            _breakdown(row, steps, ours, teacher, images, labels, amp)
        if profile_path and steps:
            name = next((p for p in ("ours-compile", "ours-eager") if p in steps), next(iter(steps)))
            _profile(steps[name], images, labels, profile_path)
            row["profile"] = {"path": name, "file": os.path.basename(profile_path)}

    guarded(row, work)
    return row


def to_markdown(rows: list[dict[str, Any]], paths: list[str], env: dict[str, Any], amp: str) -> str:
    """The results table, parity and breakdown, with the environment."""
    paths = list(dict.fromkeys([*paths, *(p for row in rows for p in row["paths"])]))  # appended passes too
    headers = (
        ["student + teacher", "batch"]
        + [f"{p} img/s (×official)" for p in paths]
        + ["fp32 loss / grad max abs diff", "first loss per path", "breakdown ms"]
    )
    table = []
    for row in rows:
        cells = [f"{row['student']} + {row['teacher']} ({row['distillation_type']})", row["batch_size"]]
        for path in paths:
            entry = row["paths"].get(path, {})
            cells.append(
                f"{number(entry['images_per_second'])} (×{number(entry['ratio_vs_official'], 2)})"
                if "images_per_second" in entry
                else ("failed" if "error" in entry else "—")
            )
        if "fp32_loss_abs_diff" in row:
            cells.append(f"{row['fp32_loss_abs_diff']:.1e} / {row['fp32_grad_max_abs_diff']:.1e}")
        else:
            cells.append("—")
        cells.append(
            ", ".join(f"{p}: {e['first_loss']:.4f}" for p, e in row["paths"].items() if "first_loss" in e) or "—"
        )
        cells.append(", ".join(f"{k}: {v:.1f}" for k, v in row.get("breakdown_ms", {}).items()) or "—")
        if "error" in row:
            cells[-1] += f" (row error: {row['error']})"
        table.append(cells)
    precision = "fp32" if amp == "none" else f"{amp} autocast"
    title = f"### Training step, {precision}, synthetic input on the device, median over interleaved rounds\n\n"
    return title + environment_lines(env) + "\n\n" + markdown_table(headers, table)


def main() -> None:
    """Parse flags, run every student row within the time budget, write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--amp",
        choices=("bf16", "fp16", "none"),
        default=None,
        help="autocast for both loops (default: bf16 on CUDA, as docs/reference.md; none on CPU)",
    )
    parser.add_argument("--students", default=None, help="comma-separated NAME:BATCH (default: per device)")
    parser.add_argument("--teacher", default="regnety_160", help="timm teacher (random weights)")
    parser.add_argument("--distillation-type", choices=("hard", "soft"), default="hard")
    parser.add_argument("--paths", default=None, help=f"comma-separated, from {', '.join(ALL_PATHS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path per round")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per path before the rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip timing teacher, student and AdamW separately",
    )
    parser.add_argument("--profile", action="store_true", help="write the first row's kernel profile to --out")
    parser.add_argument("--skip-fp32-parity", action="store_true")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no further row when less than --row-estimate-s of this is left",
    )
    parser.add_argument("--row-estimate-s", type=float, default=120, help="expected seconds per row (compiling)")
    parser.add_argument("--append", action="store_true", help="add rows to an existing train_step.json in --out")
    parser.add_argument("--out", default=None, help="folder for train_step.json/.md (and the profile)")
    args = parser.parse_args()

    device = perf.resolve_device(args.device)
    torch.backends.cudnn.benchmark = True  # as the official main.py sets it
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    students = [
        (spec.split(":")[0], int(spec.split(":")[1]))
        for spec in (args.students or (GPU_STUDENTS if device.type == "cuda" else CPU_STUDENTS)).split(",")
    ]
    paths = (args.paths or PATHS[device.type]).split(",")
    unknown = [p for p in paths if p not in ALL_PATHS]
    if unknown:
        parser.error(f"unknown --paths {unknown}; choose from {', '.join(ALL_PATHS)}")
    args.steps = args.steps or (15 if device.type == "cuda" else 3)
    args.warmup = args.warmup or (3 if device.type == "cuda" else 1)
    env = environment(device)
    deadline = Deadline(args.budget_s, row_estimate_s=args.row_estimate_s)
    rows: list[dict[str, Any]] = previous_rows(args.out, "train_step", args.append)
    for index, (name, batch_size) in enumerate(students):
        if index > 0 and not deadline.fits_another_row():  # a pass's first row always runs
            rows.append(
                {
                    "student": name,
                    "teacher": args.teacher,
                    "batch_size": batch_size,
                    "distillation_type": args.distillation_type,
                    "paths": {},
                    "error": "skipped: out of time budget",
                }
            )
        else:
            profile_path = (
                os.path.join(args.out, "profile_train_step.txt") if args.profile and args.out and index == 0 else None
            )
            rows.append(
                bench_student(
                    name, batch_size, args=args, device=device, amp=amp, paths=paths, profile_path=profile_path
                )
            )
        env["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
        payload = {
            "environment": env,
            "amp": amp,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "rows": rows,
        }
        write_report(
            args.out, "train_step", payload, to_markdown(rows, paths, env, amp), echo=index == len(students) - 1
        )


if __name__ == "__main__":
    main()
