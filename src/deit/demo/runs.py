"""One `deit demo` run (in this process or a worker process) and the scheduling of all of them.

Each run is `deit.engine.train` on its own configuration, then (full-size students) the token similarity.
Runs go to parallel single-threaded processes on a CPU (tiny models use one core far better than two, and
two-thread runs sharing a busy 2-core machine stall: one epoch took 179 s instead of ~3 s), or one after the
other in this process (a GPU, or `jobs=1`). The distilled students of a training-set size are queued when that
size's teacher is trained.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from deit.errors import DeitError


@dataclass(frozen=True)
class Job:
    """One training run of the demo: a teacher, or one student kind with one seed, at one training-set size."""

    kind: str
    seed: int
    config: Any  # a deit.engine.TrainConfig (plain data, so it pickles to a worker process)
    fraction: float = 1.0
    measure_cosine: bool = False
    data_set: str = "DIGITS"

    @property
    def size_key(self) -> tuple[str, float]:
        """The (data set, training-set fraction) this run belongs to: one teacher per key."""
        return (self.data_set, self.fraction)

    @property
    def label(self) -> str:
        """How its progress lines are prefixed."""
        size = f"{100 * self.fraction:g}%" if self.data_set == "DIGITS" else f"{self.data_set} {100 * self.fraction:g}%"
        return f"teacher {size}" if self.kind == "teacher" else f"{self.kind} {size} seed {self.seed}"


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
    from deit.inference.analyze import token_cosine_similarity
    from deit.inference.preprocess import EvalPreprocessing, load_inference_model

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
            points.append(
                {
                    "epoch": int(row["epoch"]) + 1,
                    "fused": row["test_acc1"] / 100.0,
                    "cls": row["test_cls_acc1"] / 100.0,
                    "dist": None if dist is None else dist / 100.0,
                }
            )
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
            if job.measure_cosine:
                cosine = last_layer_token_similarity(output / "checkpoint.pth", job.config.device)
    except Exception as error:  # re-raised as a plain DeitError: every exception type must survive pickling
        raise DeitError(f"demo run '{job.label}' failed: {type(error).__name__}: {error}") from None
    finally:
        torch.set_num_threads(previous_threads)  # this process may go on with other work (inline runs, tests)
    return {
        "kind": job.kind,
        "seed": job.seed,
        "fraction": job.fraction,
        "data_set": job.data_set,
        "label": job.label,
        "model": job.config.model,
        "distillation_type": job.config.distillation_type,
        "metrics": _plain(metrics),
        "cosine": cosine,
        "curve": _curve(output / "log.txt"),
        "seconds": time.perf_counter() - started,
        "run_dir": str(output),
    }


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


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plan_parallelism(device: str, jobs: int, seeds: int) -> tuple[int, int | None, str]:
    """(parallel runs, threads per run or None for torch's default, the resolved device); `jobs` 0 = automatic."""
    from deit.perf import resolve_device

    resolved = str(resolve_device(device))
    if resolved.startswith("cuda"):
        return 1, None, resolved  # one GPU: runs one after the other, in this process
    cores = usable_cores()
    jobs = jobs or max(1, min(cores, 2 * seeds))
    return jobs, max(1, cores // jobs), resolved


def run_jobs(
    first: list[Job], after_teacher: Callable[[Job, str], list[Job]], *, total: int, jobs: int, threads: int | None
) -> tuple[dict[tuple[str, float], dict[str, Any]], list[dict[str, Any]]]:
    """Run `first` (the teachers among them); when a teacher is done, `after_teacher(it, its checkpoint)` too.

    Returns the teachers' results by (data set, training-set fraction) and the students' results, in the order
    they finished.
    At most `jobs` runs are in flight; a free worker takes the longest waiting kind first (teachers, then the
    distilled students, who also run the teacher's forward pass, then the label-only ones), so the short runs
    fill the end and no core idles behind one long run. Of a teacher's distilled students the first runs alone
    (it computes the teacher's table); the others follow when it is done, the label-only runs filling the gap.
    """
    executor: Any
    if jobs == 1:
        executor = _InlineExecutor()
    else:
        import multiprocessing

        # spawn, not fork: a forked copy of a process that already started torch's threads can deadlock.
        executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    teachers: dict[tuple[str, float], dict[str, Any]] = {}
    students: list[dict[str, Any]] = []
    waiting = list(first)
    pending: dict[Future, Job] = {}
    # A teacher's distilled students share its table of logits, which the first of them computes (the
    # others would wait for its lock, a core idle): the rest are held until that first one is done.
    held: dict[tuple[str, float], list[Job]] = {}
    try:
        while waiting or pending:
            while waiting and len(pending) < jobs:
                job = min(waiting, key=_longest_first)  # min keeps the submission order among equals
                waiting.remove(job)
                pending[executor.submit(execute, job, threads)] = job
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                result = future.result()
                if job.kind == "teacher":
                    teachers[job.size_key] = result
                    unlocked = after_teacher(job, str(Path(job.config.output_dir) / "checkpoint.pth"))
                    waiting += unlocked[:1]
                    held[job.size_key] = unlocked[1:]
                else:
                    students.append(result)
                    waiting += held.pop(job.size_key, []) if job.kind in ("soft", "hard") else []
                _announce(result, len(students) + len(teachers), total)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return teachers, students


def _longest_first(job: Job) -> int:
    return 0 if job.kind == "teacher" else 1 if job.kind in ("soft", "hard") else 2


def _announce(result: dict[str, Any], finished: int, total: int) -> None:
    metrics = result["metrics"]
    heads = f"class {metrics['cls_acc1']:.1f}%"
    if "dist_acc1" in metrics:
        heads += f", distillation {metrics['dist_acc1']:.1f}%"
    cosine = f", token cosine {result['cosine']:.3f}" if result["cosine"] is not None else ""
    print(
        f"[demo] {finished}/{total} done: {result['label']}: fused top-1 {metrics['acc1']:.1f}% ({heads}{cosine}) "
        f"in {result['seconds']:.0f} s",
        flush=True,
    )
