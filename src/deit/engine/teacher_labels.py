"""`deit teacher-labels`: run a training configuration's seeded stream once through the teacher and store its outputs.

The batches are built by the very loader `deit train` builds for the same flags (`builders.build_loaders`, the
seeded stream of engine/stream.py), so a student that draws the same stream reads, at each step, exactly what
its teacher would have said. The teacher runs in inference mode, in the run's precision, on each training
batch as the student's step would give it (so its logits are the per-step teacher's bit for bit). Under
torchrun each process writes its own rank's files; in one process `--world_size N` computes all N ranks' streams.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

import torch

from deit.distill.loss import TEACHER_TYPES
from deit.distill.teacher_labels import FORMAT, FORMAT_VERSION, MANIFEST, LabelWriter, Layout, topk_kl, write_manifest
from deit.engine import builders
from deit.engine.config import TrainConfig
from deit.engine.distributed import init_distributed, process_device, read_launcher_env, shutdown_distributed
from deit.engine.logging_utils import Progress, resolve_log_format, say
from deit.engine.preflight import resolve_data_set, validate_config
from deit.engine.run_report import choose_threads
from deit.engine.stream import stream_identity
from deit.errors import DeitError
from deit.integrity import source_sha256
from deit.precision import resolve_precision
from deit.version import __version__

#: Soft labels keep every logit up to this many classes (`--top-k 0`), the top `DEFAULT_TOP_K` above it.
ALL_LOGITS_MAX_CLASSES = 100
DEFAULT_TOP_K = 10


def label_layout_kind(distillation_type: str, classes: int, top_k: int) -> tuple[str, int]:
    """(kind, k) stored for a run: hard -> the class; soft -> every logit, or the top k (`top_k` 0: automatic)."""
    if distillation_type == "hard":
        return "hard", 0
    if top_k == 0:
        top_k = classes if classes <= ALL_LOGITS_MAX_CLASSES else DEFAULT_TOP_K
    return ("logits", 0) if top_k >= classes else ("topk", top_k)


def compute_teacher_labels(config: TrainConfig, output: str | Path, *, top_k: int = 0, overwrite: bool = False) -> Path:
    """Store the teacher's outputs for `config`'s seeded stream in `output`; returns the manifest's path."""
    config = resolve_data_set(config)
    if config.distillation_type not in TEACHER_TYPES:
        raise DeitError("deit teacher-labels: give --distillation-type hard or soft (what the students will learn)")
    if config.teacher_labels:
        raise DeitError("deit teacher-labels: --teacher-labels replays labels; it cannot make them")
    if top_k < 0:
        raise DeitError(f"--top-k {top_k}: must be 0 (automatic) or a number of classes")
    config = dataclasses.replace(config, seeded_stream=True)
    validate_config(config)
    output = Path(output)
    if (output / MANIFEST).exists() and not overwrite:
        raise DeitError(f"--output {output}: already holds teacher labels; pass --overwrite-output to replace them")
    env = read_launcher_env()
    world_size = env.world_size if env.distributed else config.world_size
    device = process_device(config.device, env.local_rank)
    precision = resolve_precision(config.amp, device)
    owns_group = not torch.distributed.is_initialized()
    threads_before = torch.get_num_threads()
    try:
        init_distributed(env, device, dist_url=config.dist_url, require=config.distributed)
        train_set, val_set = builders.build_datasets(config, report_dir=None)
        classes = len(train_set.classes)  # type: ignore[union-attr]
        kind, k = label_layout_kind(config.distillation_type, classes, top_k)
        teacher = builders.build_teacher_for(config, classes, device)
        ranks = [env.rank] if env.distributed else list(range(world_size))
        digests: dict[str, Any] = {}
        kl_sum, samples, identity, layout = 0.0, 0, None, None
        mode = resolve_log_format(config.log_format, is_main=env.is_main)
        started = time.time()
        for rank in ranks:
            rank_env = dataclasses.replace(env, rank=rank, world_size=world_size)
            loader = builders.build_loaders(config, train_set, val_set, rank_env, device).train
            steps = min(len(loader), config.max_steps_per_epoch) if config.max_steps_per_epoch else len(loader)
            layout = Layout(kind=kind, classes=classes, epochs=config.epochs, steps=steps, batch=config.batch_size, k=k)
            identity = stream_identity(config, train_set, world_size=world_size, memory=loader.stream_sampler is None)
            # The threads `deit train` would use: the teacher's logits are then the per-step teacher's bit for bit.
            threads, _ = choose_threads(config.threads, loader.num_workers)
            torch.set_num_threads(threads)
            writer = LabelWriter(output, rank, layout, config.distillation_tau)
            rank_kl, rank_samples = _run_rank(loader, teacher, writer, config, precision, device, mode, len(ranks))
            digests[f"rank{rank}"] = writer.close()
            kl_sum, samples = kl_sum + rank_kl, samples + rank_samples
        if env.distributed:  # every rank's digests to rank 0, which writes the one manifest
            gathered: list[Any] = [None] * env.world_size
            torch.distributed.all_gather_object(gathered, (digests, kl_sum, samples))
            digests = {key: value for part, _, _ in gathered for key, value in part.items()}
            kl_sum, samples = sum(part[1] for part in gathered), sum(part[2] for part in gathered)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "deit_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "stream": identity,
            "teacher": {
                "model": config.teacher_model,
                "file_sha256": source_sha256(builders.local_copy(config.teacher_path, "--teacher-path")),
                "precision": precision.name,
                "device": device.type,
                "steps_per_forward": 1,
            },
            "layout": layout.to_dict() if layout is not None else {},
            "tau": config.distillation_tau,
            "digests": digests,
            "measured": {"topk_kl_per_sample": kl_sum / max(samples, 1)} if kind == "topk" else {},
        }
        path = output / MANIFEST
        if env.is_main:
            path = write_manifest(output, manifest)
            say(
                f"teacher labels: {kind}{f' (top {k})' if kind == 'topk' else ''} for {config.epochs} epochs x "
                f"{layout.steps if layout else 0} steps x {config.batch_size} x {world_size} rank(s) in "
                f"{time.time() - started:.1f}s -> {path}",
                is_main=True,
            )
        if env.distributed:
            torch.distributed.barrier()
        return path
    finally:
        torch.set_num_threads(threads_before)  # the caller's process goes on with its own setting
        if owns_group:
            shutdown_distributed()


@torch.inference_mode()
def _run_rank(
    loader: Any,
    teacher: torch.nn.Module,
    writer: LabelWriter,
    config: TrainConfig,
    precision: Any,
    device: torch.device,
    mode: str,
    ranks: int,
) -> tuple[float, int]:
    """One rank's stream through the teacher, step by step into `writer`; (Σ top-k KL, samples) measured."""
    layout = writer.layout
    steps = layout.epochs * layout.steps
    desc = f"teacher labels, rank {writer.rank}"
    progress = Progress(total=steps, desc=desc, mode=mode, steps_after=steps * (ranks - 1))
    kl_sum, samples = 0.0, 0
    interval = max(config.log_interval, 1) if config.log_interval else 0
    try:
        for epoch in range(layout.epochs):
            loader.set_epoch(epoch)
            for step, batch in enumerate(loader):
                if step >= layout.steps:
                    break
                images = batch[0].to(device, non_blocking=True)
                with precision.autocast(device):
                    logits = teacher(images)
                writer.add(logits)
                if layout.kind == "topk":
                    kl_sum += float(topk_kl(logits, layout, writer.tau))
                samples += images.shape[0]
                progress.step(images.shape[0])
                if interval and progress.steps % interval == 0:
                    progress.report({"epoch": float(epoch + 1)})
    finally:
        progress.close()
    return kl_sum, samples
