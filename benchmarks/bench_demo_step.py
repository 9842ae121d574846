"""Where one distilled step of the demo goes: data, teacher forward, student forward + backward + AdamW, whole step.

The demo's soft student (`deit demo`'s `student_config`: width 64, 2 blocks, batch 16, DIGITS at 32 px, the
quarter-width ResNet-18 teacher with random weights: its speed does not depend on them), built by the engine's
own builders, timed in CPU time (process time, one thread: a shared machine's load does not inflate it the
way it does wall time). Each part is the engine's code: the training DataLoader as `deit train` builds it (data), the
criterion's frozen teacher on one batch (teacher), the engine's `TrainStep` with the teacher's logits looked up
instead of computed (student), and `train_one_epoch` over the real loader (whole step). One thread by default.

    PYTHONPATH=src python benchmarks/bench_demo_step.py --threads 1 --out benchmarks/results/cpu-zen4 [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import Tensor, nn

from common import environment, environment_lines, markdown_table, write_report
from deit.demo.experiment import DemoSettings, student_config
from deit.engine import builders
from deit.engine.distributed import read_launcher_env
from deit.engine.loop import train_one_epoch
from deit.inference.bench import build_bench_step


class _LookedUpTeacher(nn.Module):
    """The teacher's logits of one batch, returned without computing anything: the student's part alone."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, images: Tensor) -> Tensor:
        """The stored logits (same batch size as the timed batch)."""
        return self.logits


def demo_config(scratch: str) -> Any:
    """The demo's soft student at the full training set, its teacher untrained (`deit bench`'s convention)."""
    config = student_config(DemoSettings(output_dir=scratch), "soft", seed=0, teacher_path="unused")
    return dataclasses.replace(config, teacher_path="", device="cpu", output_dir="")


def _cpu_ms(call: Any, calls: int) -> float:
    """CPU milliseconds per call of `call` (process time: on one thread, what other processes cannot inflate)."""
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) * 1000 / calls


def measure(config: Any, *, steps: int, rounds: int) -> dict[str, list[float]]:
    """CPU milliseconds of each part of a step, per round (the parts interleaved over `rounds`)."""
    device = torch.device("cpu")
    train_set, val_set = builders.build_datasets(config, report_dir=None)
    loaders = builders.build_loaders(config, train_set, val_set, read_launcher_env(), device)
    num_classes = len(train_set.classes)  # type: ignore[union-attr]
    torch.manual_seed(0)
    step = build_bench_step(config, num_classes=num_classes, device=device)
    images, labels = next(iter(loaders.train))
    teacher = step.criterion.teacher
    looked_up = _LookedUpTeacher(teacher(images))
    results: dict[str, list[float]] = {"data": [], "teacher": [], "student": [], "whole": []}
    for epoch in range(rounds):
        batches = iter(loaders.train)
        results["data"].append(_cpu_ms(lambda batches=batches: next(batches), steps))
        teacher(images)  # warm
        results["teacher"].append(_cpu_ms(lambda: teacher(images), steps))
        step.criterion.teacher = looked_up
        step(images, labels)  # warm
        results["student"].append(_cpu_ms(lambda: step(images, labels), steps))
        step.criterion.teacher = teacher
        loaders.train_sampler.set_epoch(epoch)
        results["whole"].append(
            _cpu_ms(
                lambda epoch=epoch: train_one_epoch(
                    step, loaders.train, device, epoch, max_steps=steps, log_interval=0
                ),
                1,
            )
            / steps
        )
    return results


def profile(config: Any, *, steps: int) -> str:
    """torch.profiler's operator table over `steps` steps of `train_one_epoch` (after one warm-up epoch)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device("cpu")
    train_set, val_set = builders.build_datasets(config, report_dir=None)
    loaders = builders.build_loaders(config, train_set, val_set, read_launcher_env(), device)
    step = build_bench_step(config, num_classes=len(train_set.classes), device=device)  # type: ignore[union-attr]
    train_one_epoch(step, loaders.train, device, 0, max_steps=5, log_interval=0)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_one_epoch(step, loaders.train, device, 1, max_steps=steps, log_interval=0)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)


def main() -> None:
    """Measure the parts, optionally profile, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="steps timed per part and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's operator table")
    parser.add_argument("--label", default="", help="a name for this measurement (e.g. before / after)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        config = demo_config(scratch)
        times = measure(config, steps=args.steps, rounds=args.rounds)
        table_profile = profile(config, steps=args.steps) if args.profile else ""
    env = environment(torch.device("cpu"))
    # The median over rounds, and the fastest (the least disturbed by other processes sharing the caches).
    parts = {part: (statistics.median(values), min(values)) for part, values in times.items()}
    names = {
        "data": "data: DataLoader batch (per-image transforms + collate)",
        "teacher": "teacher forward",
        "student": "student forward + backward + AdamW (the engine's TrainStep, teacher looked up)",
        "whole": "whole step (train_one_epoch over the real loader)",
    }
    rows = [[names[part], f"{median:.1f}", f"{fastest:.1f}"] for part, (median, fastest) in parts.items()]
    title = f"### The demo's distilled step, {args.threads} thread(s){' — ' + args.label if args.label else ''}"
    table = (
        title
        + "\n\n"
        + environment_lines(env)
        + "\n\n"
        + markdown_table(["part of one step", "CPU ms, median", "CPU ms, fastest"], rows)
    )
    if table_profile:
        print(table_profile)
    write_report(
        args.out,
        f"demo_step{'_' + args.label if args.label else ''}",
        {"environment": env, "parts_ms": times, "train_config": config.to_dict()},
        table,
        echo=True,
    )


if __name__ == "__main__":
    main()
