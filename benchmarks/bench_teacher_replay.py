"""Teacher replay vs teacher per step: the training step of DeiT-Ti⚗ with a RegNetY-16GF-sized teacher, in one process.

Both steps are `deit train`'s own `TrainStep`, built from one configuration by the engine's builders
(`deit.inference.bench.train_config`, `--seeded-stream`, hard distillation): "per step" runs the teacher's
forward inside the step, "replayed" is the same configuration with `--teacher-labels` (the step reads the class
the label pass stored, `deit.distill.teacher_labels.ReplayedTeacher` stands in). Same student weights, same
mixed batch; timed interleaved (per step, replayed, per step, ...), medians. The label pass's own cost per step
is timed too (the teacher's forward in inference mode on one training batch): with it, the cost of K students
with one label pass against K runs with the teacher per step, per training step (data loading, the same on
both sides, left out). The teacher has random weights (timm's architecture, `pretrained=False`): its speed does
not depend on their values.

    PYTHONPATH=src python benchmarks/bench_teacher_replay.py --out benchmarks/results/cpu-replay
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

import torch

from common import environment, environment_lines, interleaved, markdown_table, number, write_report
from deit.engine import builders
from deit.inference.bench import train_config
from deit.precision import resolve_precision


def _steps(config: Any, device: torch.device) -> tuple[Any, Any, Any]:
    """(step with the teacher per step, replayed step, the frozen teacher), from the same student weights."""
    precision = resolve_precision(config.amp, device)
    torch.manual_seed(1)
    teacher = builders.build_teacher_for(config, 1000, device)
    built = []
    for variant, its_teacher in ((config, teacher), (dataclasses.replace(config, teacher_labels="(bench)"), None)):
        torch.manual_seed(0)
        student = builders.build_student(variant, 1000, load_finetune=False).to(device)
        built.append(
            builders.build_train_step(
                variant, student, its_teacher, num_classes=1000, device=device, precision=precision
            )
        )
    return built[0], built[1], teacher


def main() -> None:
    """Time the two steps and the label pass; write `teacher_replay.{json,md}` to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none", help="none on CPU; bf16 on a GPU")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--student", default="deit_tiny_distilled_patch16_224")
    parser.add_argument("--teacher", default="regnety_160")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per path per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    config = train_config(
        args.student,
        batch_size=args.batch_size,
        img_size=224,
        amp=args.amp,
        compile=False,
        device=device,
        teacher_model=args.teacher,
        distillation_type="hard",
        model_kwargs={},
        seeded_stream=True,
    )
    per_step, replayed, teacher = _steps(config, device)
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(args.batch_size, 3, 224, 224, generator=generator).to(device)
    labels = torch.randint(0, 1000, (args.batch_size,), generator=generator).to(device)
    mixup = builders.build_mixup_fn(config, 1000)  # the stream mixes before the step: mix once here
    images, targets = mixup(images, labels)
    precision = resolve_precision(config.amp, device)

    def label_pass() -> torch.Tensor:
        with torch.inference_mode(), precision.autocast(device):
            return teacher(images).argmax(-1)

    stored = label_pass().clone()  # as read from a label file: an ordinary tensor, not an inference-mode one
    times = interleaved(
        {
            "per_step": lambda: per_step(images, targets),
            "replayed": lambda: replayed(images, targets, teacher_outputs=stored),
            "label_pass": label_pass,
        },
        rounds=args.rounds,
        steps=args.steps,
        warmup=args.warmup,
        device=device,
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    speedup = median["per_step"] / median["replayed"]
    k_rows = []
    for k in (1, 3, 10):
        with_teacher = k * median["per_step"]
        with_labels = median["label_pass"] + k * median["replayed"]
        k_rows.append(
            {"students": k, "per_step_ms": with_teacher, "replay_ms": with_labels, "ratio": with_teacher / with_labels}
        )
    env = environment(device)
    payload = {
        "environment": env,
        "config": {"student": args.student, "teacher": args.teacher, "batch_size": args.batch_size, "amp": args.amp},
        "milliseconds": times,
        "median_ms": median,
        "speedup_replayed_step": speedup,
        "k_students": k_rows,
    }
    step_table = markdown_table(
        [f"path (batch {args.batch_size}, 224 px)", "median ms / step", "images/s"],
        [
            [name, number(median[name]), number(args.batch_size * 1000 / median[name])]
            for name in ("per_step", "replayed", "label_pass")
        ],
    )
    k_table = markdown_table(
        ["students K", "K runs, teacher per step (ms / step)", "1 label pass + K replays (ms / step)", "ratio"],
        [[r["students"], number(r["per_step_ms"]), number(r["replay_ms"]), f"x{r['ratio']:.2f}"] for r in k_rows],
    )
    markdown = (
        f"{step_table}\n\nreplayed step x{speedup:.2f} faster than the step with the teacher per step\n\n"
        f"{k_table}\n\n{environment_lines(env)}\n"
    )
    write_report(args.out, "teacher_replay", payload, markdown)


if __name__ == "__main__":
    main()
