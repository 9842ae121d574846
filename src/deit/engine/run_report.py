"""What a run says about itself besides its epochs: the loader workers and threads it can use, how often it
shows a step, and its closing summary line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from deit.engine.checkpointing import BEST_NAME, CHECKPOINT_NAME
from deit.engine.config import TrainConfig
from deit.engine.logging_utils import format_duration


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def clamp_workers(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """`config` with at most one loader worker per usable core, and the line that says so (None if unchanged).

    More workers than cores only compete with the training step (and PyTorch warns about it in every loader).
    """
    cores = usable_cores()
    if config.num_workers <= cores:
        return config, None
    message = f"--num_workers {config.num_workers}: {cores} usable CPU core(s) here, so {cores} loader workers"
    return dataclasses.replace(config, num_workers=cores), message


def choose_threads(requested: int, workers: int) -> tuple[int, str]:
    """(torch intra-op threads, the line that says so): `--threads`, else the usable cores of this process's
    share of the node (torchrun's LOCAL_WORLD_SIZE) less its loader workers, at most torch's own default
    (which OMP_NUM_THREADS, or a caller's `torch.set_num_threads`, already set)."""
    import torch

    if requested:
        return requested, f"threads: {requested} torch intra-op threads (--threads)"
    cores, processes = usable_cores(), max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    default = torch.get_num_threads()
    threads = max(1, min(default, cores // processes - workers))
    share = f"{cores} usable cores" + (f" / {processes} processes" if processes > 1 else "")
    return threads, (
        f"threads: {threads} torch intra-op threads ({share}, {workers} loader workers, torch's default "
        f"{default}; --threads N sets it: on a loaded machine fewer are often faster)"
    )


def epoch_steps(loader: Any, max_steps: int) -> int:
    """Training steps per epoch (0 when the loader has no length)."""
    total = len(loader) if hasattr(loader, "__len__") else 0
    return min(total, max_steps) if max_steps else total


def effective_log_interval(log_interval: int, steps_per_epoch: int) -> int:
    """--log-interval, shortened for small epochs so a piped run shows about four step lines per epoch
    (a 37-step epoch under the default 50 would show none); 0 stays off."""
    if not log_interval or not steps_per_epoch:
        return log_interval
    return max(1, min(log_interval, steps_per_epoch // 4))


def closing_summary(
    best_acc: float,
    metrics: dict[str, Any],
    output_dir: Path | None,
    *,
    epochs_run: int,
    seconds: float,
    resumed_after: int = 0,
    total_epochs: int = 0,
) -> str:
    """The last line of a run: best and last top-1, how long it took, where the weights and logs are.

    A run resumed after epoch `resumed_after` counts the whole run's epochs, and says how many this start ran."""
    last = f"last top-1 {metrics['acc1']:.2f}" if metrics else "not evaluated"
    done = f"done: {epochs_run} epoch(s) in {format_duration(seconds)}"
    if resumed_after:
        done = (
            f"done: {resumed_after + epochs_run}/{total_epochs or resumed_after + epochs_run} epochs "
            f"({epochs_run} in {format_duration(seconds)} since resuming after epoch {resumed_after})"
        )
    parts = [done, f"best top-1 {best_acc:.2f}", last]
    if output_dir is None:
        parts.append("nothing saved (no --output_dir)")
    else:
        best = output_dir / BEST_NAME
        weights = f"{best} (best), " if best.is_file() else ""
        parts.append(
            f"weights {weights}{output_dir / CHECKPOINT_NAME} (last); curves {output_dir / 'curves.png'}, "
            f"log {output_dir / 'log.txt'}"
        )
    return " | ".join(parts)


def teacher_note(metrics: dict[str, Any]) -> str | None:
    """One line when the distilled student ended above its own teacher: distillation then pulls toward a weaker
    model (the demo's finding on small folders); None otherwise."""
    teacher, student = metrics.get("teacher_acc1"), metrics.get("acc1")
    if teacher is None or student is None or student <= teacher:
        return None
    return (
        f"note: the student ({student:.2f}%) ended above its teacher ({teacher:.2f}%) on the validation set: "
        f"the teacher's targets pull toward a weaker model; compare with a plain run (--distillation-type none) "
        f"or train a stronger teacher"
    )
