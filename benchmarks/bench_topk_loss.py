"""What top-k soft labels cost in the loss: the DeiT soft objective with the teacher's full logits vs its stored top k.

A short distilled run on DIGITS through `deit train`'s own objects (builders, the seeded stream, `TrainStep`) with a
ResNet-10t teacher trained first (`deit train --model resnet10t`, a few epochs). At every step the student's
outputs are computed once and the loss is evaluated twice on them: with the teacher's logits, and with what a
`topk` label folder would give back (`deit.distill.teacher_labels.encode`/`decode`); then the step trains with the
full logits. Reported per k and temperature: the mean absolute and relative difference of the total loss and of
the distillation term, and KL(teacher || stored) per sample. Ten classes only: at ImageNet's 1,000 the
rest's mass is spread over more classes, so expect larger differences there (not measured here).

    PYTHONPATH=src python benchmarks/bench_topk_loss.py --out benchmarks/results/cpu-replay
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from common import environment, environment_lines, markdown_table, write_report
from deit.cli import main as deit_main
from deit.distill.teacher_labels import Layout, decode, encode, topk_kl
from deit.engine import builders
from deit.engine.config import make_config
from deit.engine.distributed import DistributedEnv
from deit.precision import Precision

TINY = {"depth": 2, "patch_size": 8, "embed_dim": 64, "num_heads": 4}


def _teacher(folder: Path, epochs: int) -> Path:
    """A ResNet-10t trained on DIGITS by `deit train`."""
    args = ["train", "--model", "resnet10t", "--input-size", "32", "--epochs", str(epochs), "--batch-size", "64"]
    args += ["--num_workers", "0", "--device", "cpu", "--no-model-ema", "--log-format", "plain", "--log-interval", "0"]
    args += ["--warmup-epochs", "0", "--lr", "0.002", "--unscale-lr", "--output_dir", str(folder)]
    assert deit_main(args) == 0
    return folder / "checkpoint.pth"


def _measure(teacher_path: Path, tau: float, ks: list[int], epochs: int, steps: int) -> list[dict]:
    config = make_config(
        data_set="DIGITS",
        model="deit_tiny_distilled_patch16_224",
        model_kwargs=TINY,
        input_size=32,
        batch_size=32,
        device="cpu",
        num_workers=0,
        seeded_stream=True,
        distillation_type="soft",
        distillation_tau=tau,
        teacher_model="resnet10t",
        teacher_path=str(teacher_path),
        epochs=epochs,
        max_steps_per_epoch=steps,
        lr=0.002,
        unscale_lr=True,
        warmup_epochs=0,
    )
    device = torch.device("cpu")
    train_set, val_set = builders.build_datasets(config, report_dir=None)
    teacher = builders.build_teacher_for(config, 10, device)
    torch.manual_seed(0)
    student = builders.build_student(config, 10, load_finetune=False)
    step = builders.build_train_step(
        config, student, teacher, num_classes=10, device=device, precision=Precision("fp32")
    )
    loader = builders.build_loaders(config, train_set, val_set, DistributedEnv(), device, teacher).train
    sums = {k: {"loss": 0.0, "relative": 0.0, "distillation": 0.0, "kl": 0.0} for k in ks}
    count = samples = 0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, targets in loader:
            with torch.no_grad():
                z_t = teacher(images)
                outputs = step.model(images)
                full = float(step.criterion(images, outputs, targets, z_t))
                full_term = float(step.criterion.last_terms["distillation"])
                for k in ks:
                    layout = Layout(kind="topk", classes=10, epochs=1, steps=1, batch=images.shape[0], k=k)
                    approx = float(step.criterion(images, outputs, targets, decode(encode(z_t, layout, tau), layout)))
                    term = float(step.criterion.last_terms["distillation"])
                    sums[k]["loss"] += abs(approx - full)
                    sums[k]["relative"] += abs(approx - full) / abs(full)
                    sums[k]["distillation"] += abs(term - full_term)
                    sums[k]["kl"] += float(topk_kl(z_t, layout, tau))
            step(images, targets, teacher_outputs=z_t)
            count += 1
            samples += images.shape[0]
    return [
        {
            "tau": tau,
            "k": k,
            "steps": count,
            "mean_abs_loss_difference": value["loss"] / count,
            "mean_relative_loss_difference": value["relative"] / count,
            "mean_abs_distillation_term_difference": value["distillation"] / count,
            "kl_per_sample": value["kl"] / samples,
        }
        for k, value in sums.items()
    ]


def main() -> None:
    """Train the teacher, measure, write `topk_loss.{json,md}` to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--k", default="1,2,3,5")
    parser.add_argument("--tau", default="1,3")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        teacher_path = _teacher(Path(folder) / "teacher", args.teacher_epochs)
        rows = []
        for tau in (float(t) for t in args.tau.split(",")):
            rows += _measure(teacher_path, tau, [int(k) for k in args.k.split(",")], args.epochs, args.steps)
    env = environment(torch.device("cpu"))
    table = markdown_table(
        ["tau", "k of 10", "steps", "mean |Δ loss|", "mean |Δ loss| / loss", "mean |Δ distillation term|", "KL/sample"],
        [
            [
                f"{r['tau']:g}",
                r["k"],
                r["steps"],
                f"{r['mean_abs_loss_difference']:.2e}",
                f"{100 * r['mean_relative_loss_difference']:.3f} %",
                f"{r['mean_abs_distillation_term_difference']:.2e}",
                f"{r['kl_per_sample']:.2e}",
            ]
            for r in rows
        ],
    )
    write_report(args.out, "topk_loss", {"environment": env, "rows": rows}, f"{table}\n\n{environment_lines(env)}\n")
    print(json.dumps(rows[0]))


if __name__ == "__main__":
    main()
