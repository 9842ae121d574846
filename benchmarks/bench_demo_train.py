"""`deit train` on the demo's workload against the plain torchvision + timm loop doing the same work (issue 19).

The workload is docs/demo.md's soft student at the full size: DIGITS (1,437 images, resized to 32 px, random
32-crop with 4 px of padding, normalised), timm's `VisionTransformerDistilled` with the demo's dims (width 64,
2 blocks, 4 heads, 8 px patches), the demo's quarter-width ResNet-18 teacher (trained here for one epoch by
`deit train`; its accuracy does not change the speed), soft distillation (the demo's τ 3, α 0.9, batch-mean
KL) with label smoothing 0.1, AdamW lr 1e-3 wd 0.05, batch 16, one thread, the validation set evaluated after
every epoch.

- plain: what a user writes by hand: torchvision per-image transforms, a DataLoader (no workers, as the demo),
  the teacher's forward at every step, torch's AdamW, an evaluation pass per epoch;
- deit: `deit.engine.train` itself (the demo's `student_config`), end to end: start-up, every epoch with its
  evaluation, checkpoint and log. Three variants: the in-memory path with the teacher table already built (as
  the demo's 2nd to 6th student of a teacher find it), the same with the table built by this run (cold), and
  the teacher run per step (`--teacher-table off`).

The variants alternate in one process, `--rounds` times; the ratio of images/s (training images / CPU seconds
of this one-thread process: on a shared machine that, not wall time, is what the work costs) to the plain
loop's is printed. `--parts` also times one step's parts (data, teacher, student) alone.

    PYTHONPATH=src python benchmarks/bench_demo_train.py --rounds 3 --parts      # the demo's 24 epochs
    PYTHONPATH=src python benchmarks/bench_demo_train.py --epochs 3 --rounds 3   # start-up weighs 8x more
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment  # noqa: E402
from deit.data.digits import DIGITS_MEAN, DIGITS_STD, DigitsDataset  # noqa: E402
from deit.demo.experiment import TEACHER_KWARGS, TEACHER_MODEL, DemoSettings, student_config, teacher_config  # noqa: E402
from deit.distill import teacher_table  # noqa: E402

_DEMO = DemoSettings()
TAU, ALPHA, BATCH = _DEMO.distillation_tau, _DEMO.soft_alpha, _DEMO.batch_size


def _quiet_train(config: Any) -> dict[str, Any]:
    import contextlib
    import io

    from deit.engine import train

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return train(config)


def train_teacher(folder: Path) -> Path:
    """The demo's teacher, one epoch (its speed, not its accuracy, matters here)."""
    config = teacher_config(DemoSettings(output_dir=str(folder), device="cpu"))
    config.epochs = 1
    _quiet_train(config)
    return Path(config.output_dir) / "checkpoint.pth"


def deit_run(folder: Path, teacher: Path, epochs: int, *, table: str, table_dir: Path | None) -> float:
    """CPU seconds (this process, one thread) of one `deit.engine.train` run of the demo's soft student."""
    settings = DemoSettings(output_dir=str(folder), device="cpu")
    config = student_config(settings, "soft", 0, teacher_path=str(teacher))
    config.epochs, config.overwrite_output = epochs, True
    config.warmup_epochs = min(config.warmup_epochs, max(epochs - 1, 0))  # the demo's 2, unless the run is shorter
    config.teacher_table, config.teacher_table_dir = table, str(table_dir) if table_dir else ""
    teacher_table._TABLES.clear()  # as a separate process: only the cache file (if any) is shared
    started = time.process_time()
    _quiet_train(config)
    return time.process_time() - started


def _plain_parts(teacher_path: Path) -> tuple[Any, Any, Any, Any, Any]:
    """(train loader, val loader, student, teacher, optimizer) as a user writes them with torchvision + timm."""
    import timm
    from timm.models.deit import VisionTransformerDistilled
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    from deit.models.checkpoint import load_torch_file

    normalize = T.Normalize(DIGITS_MEAN, DIGITS_STD)
    train_tf = T.Compose(
        [T.Resize(32, T.InterpolationMode.BICUBIC), T.RandomCrop(32, padding=4), T.ToTensor(), normalize]
    )
    val_tf = T.Compose([T.Resize(32, T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(), normalize])
    train_loader = DataLoader(
        DigitsDataset(train=True, transform=train_tf), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True
    )
    val_loader = DataLoader(DigitsDataset(train=False, transform=val_tf), batch_size=24, num_workers=0)
    student = VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)
    student.set_distilled_training(True)  # (class, distillation) logits in training mode, as DeiT's loss needs
    teacher = timm.create_model(TEACHER_MODEL, num_classes=10, **TEACHER_KWARGS)
    teacher.load_state_dict(load_torch_file(teacher_path)["model"])
    teacher.eval()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.05)
    return train_loader, val_loader, student, teacher, optimizer


def plain_run(teacher_path: Path, epochs: int) -> float:
    """CPU seconds of the hand-written loop: same data, model, teacher, loss, batch, evaluation per epoch."""
    started = time.process_time()
    train_loader, val_loader, student, teacher, optimizer = _plain_parts(teacher_path)
    for _ in range(epochs):
        student.train()
        for images, labels in train_loader:
            plain_step(student, teacher, optimizer, images, labels)
        student.eval()
        with torch.no_grad():
            correct = sum(int((student(images).argmax(1) == labels).sum()) for images, labels in val_loader)
        assert correct >= 0
    return time.process_time() - started


def plain_step(student: Any, teacher: Any, optimizer: Any, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One step of the hand-written loop: forward, the soft DeiT loss with the teacher, backward, AdamW."""
    z_cls, z_dist = student(images)
    with torch.no_grad():
        z_t = teacher(images)
    base = F.cross_entropy(z_cls, labels, label_smoothing=0.1)
    kl = F.kl_div(F.log_softmax(z_dist / TAU, 1), F.log_softmax(z_t / TAU, 1), reduction="batchmean", log_target=True)
    loss = (1 - ALPHA) * base + ALPHA * TAU * TAU * kl
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _per_call_ms(function: Any, calls: int) -> float:
    function()
    started = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - started) / calls * 1e3


def step_parts(teacher_path: Path, folder: Path, calls: int) -> dict[str, float]:
    """Milliseconds per step of each part, alone, one thread: before (plain) and after (deit's own objects)."""
    from deit.engine import builders
    from deit.engine.distributed import read_launcher_env
    from deit.engine.memory_path import build_memory_loader
    from deit.precision import resolve_precision

    train_loader, _, student, teacher, optimizer = _plain_parts(teacher_path)
    batches = iter(train_loader)
    images, labels = next(batches)
    parts = {
        "plain: data (PIL resize + padded crop + to-tensor, DataLoader collate)": _per_call_ms(
            lambda: next(iter(train_loader)), calls
        )
    }
    with torch.no_grad():
        parts["plain: teacher forward"] = _per_call_ms(lambda: teacher(images), calls)
    parts["plain: whole step without data"] = _per_call_ms(
        lambda: plain_step(student, teacher, optimizer, images, labels), calls
    )

    settings = DemoSettings(output_dir=str(folder), device="cpu")
    config = student_config(settings, "soft", 0, teacher_path=str(teacher_path))
    config.teacher_table, config.teacher_table_dir = "on", str(folder / "tables")
    device = torch.device("cpu")
    train_set, _ = builders.build_datasets(config, report_dir=None)
    deit_teacher = builders.build_teacher_for(config, 10, device)
    sampler = torch.utils.data.RandomSampler(train_set)
    sampler.set_epoch = lambda epoch: None  # type: ignore[attr-defined]
    loader, _ = build_memory_loader(
        config,
        train_set,
        sampler,
        rank=read_launcher_env().rank,
        device=device,
        teacher=deit_teacher,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
    )
    model = builders.build_student(config, 10, load_finetune=False)
    step = builders.build_train_step(
        config, model, deit_teacher, num_classes=10, device=device, precision=resolve_precision(config.amp, device)
    )
    order, view = torch.randint(0, len(train_set), (BATCH,)), torch.randint(0, 81, (BATCH,))
    memory_images = loader.augment(order, view)
    table_logits = loader.teacher_table[order, view]
    targets = loader.labels[order]
    parts["deit: data (in-memory batch: gather, normalise, table lookup)"] = _per_call_ms(
        lambda: (loader.augment(order, view), loader.teacher_table[order, view]), calls
    )
    with torch.no_grad():
        parts["deit: teacher forward (--teacher-table off)"] = _per_call_ms(lambda: deit_teacher(memory_images), calls)
    parts["deit: student step with the table (forward, loss, backward, AdamW)"] = _per_call_ms(
        lambda: step(memory_images, targets, teacher_outputs=table_logits), calls
    )
    parts["deit: student step, teacher per step"] = _per_call_ms(lambda: step(memory_images, targets), calls)
    return {name: round(value, 3) for name, value in parts.items()}


def main() -> int:
    """Alternate the variants, print images/s and ratios (and the parts), write a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=DemoSettings().epochs, help="epochs per timed run (default: the demo's)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--parts", action="store_true", help="also time one step's parts alone")
    parser.add_argument("--calls", type=int, default=100, help="calls per part")
    parser.add_argument("--json", default="", help="write the report here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    teacher = train_teacher(work / "teacher")
    images = args.epochs * (1437 // BATCH) * BATCH
    seconds: dict[str, list[float]] = {"plain": [], "deit, table built": [], "deit, teacher per step": []}
    shared = work / "shared_tables"
    # The table the demo's students share, built once: what that costs is reported on its own.
    build = deit_run(work / "prebuild", teacher, 1, table="on", table_dir=shared)
    one_epoch = deit_run(work / "prebuild", teacher, 1, table="on", table_dir=shared)
    for _ in range(args.rounds):
        seconds["plain"].append(plain_run(teacher, args.epochs))
        seconds["deit, table built"].append(deit_run(work / "warm", teacher, args.epochs, table="on", table_dir=shared))
        seconds["deit, teacher per step"].append(
            deit_run(work / "off", teacher, args.epochs, table="off", table_dir=None)
        )
    report: dict[str, Any] = {
        "environment": environment(torch.device("cpu")),
        "epochs": args.epochs,
        "training_images_per_run": images,
        "seconds": seconds,
        "table_build_cpu_seconds": round(build - one_epoch, 2),
    }
    print(f"building the teacher table (1,437 images x 81 views), once per teacher: {build - one_epoch:.1f} CPU s")
    plain = statistics.median(seconds["plain"])
    print(
        f"{images} training images per run ({args.epochs} epochs of the demo's soft student, batch {BATCH}, "
        f"1 thread), median of {args.rounds}:"
    )
    for name, values in seconds.items():
        median = statistics.median(values)
        report.setdefault("images_per_second", {})[name] = round(images / median, 1)
        # Each round's own ratio too: plain and deit ran back to back, so a slow spell of the machine hits both.
        rounds = [before / after for before, after in zip(seconds["plain"], values)]
        report.setdefault("ratio_per_round", {})[name] = [round(ratio, 3) for ratio in rounds]
        print(
            f"  {name:24s} {median:7.2f} CPU s  {images / median:7.1f} images/s  x{plain / median:.2f} vs plain"
            f"  (rounds: {' '.join(f'x{ratio:.2f}' for ratio in rounds)})"
        )
    if args.parts:
        report["step_parts_ms"] = step_parts(teacher, work / "parts", args.calls)
        for name, value in report["step_parts_ms"].items():
            print(f"  {value:7.3f} ms  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
