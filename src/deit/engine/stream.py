"""`--seeded-stream` and `--teacher-labels`: the run's training batches as a pure function of where they are.

`StreamLoader` is the training loader of such a run: the per-image path over `SeededSamples` (or the in-memory
path, already drawn from (seed, epoch, rank)), mixup/cutmix applied here from seeds of (seed, epoch, rank, step)
rather than in the train step, and, when replaying, the teacher's stored outputs for the step appended as the
batch's third element (the loop hands it to the loss). `deit teacher-labels` iterates the very same loader.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from deit.data.datasets import data_set_key
from deit.data.fingerprint import data_fingerprint
from deit.data.seeded_stream import STREAM_VERSION, SeededSamples, StreamSampler, mix_words, seeded_mix
from deit.distill.teacher_labels import TeacherLabels
from deit.engine.config import TrainConfig
from deit.errors import DeitError

#: The settings the stream's images depend on (label smoothing changes the targets only, not the teacher's input).
STREAM_SETTINGS = (
    "seed",
    "batch_size",
    "input_size",
    "aa",
    "color_jitter",
    "hflip",
    "reprob",
    "remode",
    "recount",
    "three_augment",
    "src",
    "train_interpolation",
    "scale",
    "ratio",
    "epoch_repeats",
    "mixup",
    "cutmix",
    "cutmix_minmax",
    "mixup_prob",
    "mixup_switch_prob",
    "mixup_mode",
    "repeated_aug",
    "class_balanced",
    "train_subset",
    "train_subset_seed",
)
_FLAGS = {f.name: f.metadata["flags"][0] for f in dataclasses.fields(TrainConfig)}
_NAMES = {
    "world_size": "--world_size",
    "loader": "--data-loader (the path it resolved to)",
    "data": "the training data",
    "images": "the training image count",
}


def uses_seeded_stream(config: TrainConfig) -> bool:
    """Whether the run draws the seeded stream (`--seeded-stream`, or replaying with `--teacher-labels`)."""
    return config.seeded_stream or bool(config.teacher_labels)


def stream_refusal(config: TrainConfig, train_set: Dataset) -> str | None:
    """Why this run cannot draw the seeded stream (None: it can)."""
    if config.data_loader == "dali":
        return "--data-loader dali draws its augmentation from DALI's own generators"
    if isinstance(train_set, IterableDataset):
        return f"--data-set {config.data_set} streams shards in its own shuffled order"
    return None


def check_stream(config: TrainConfig, train_set: Dataset | None) -> None:
    """Refuse, in one line, a seeded stream this run's data path cannot draw."""
    why_not = stream_refusal(config, train_set) if train_set is not None else None
    if why_not:
        flag = "--teacher-labels" if config.teacher_labels else "--seeded-stream"
        raise DeitError(f"{flag}: {why_not}; use --data-loader torch or memory on an indexable data set")


def stream_steps(config: TrainConfig, sampler: Any) -> int:
    """Steps per epoch of the stream: whole batches (drop_last), at most --max-steps-per-epoch (the loop stops
    there, so nothing past it is drawn, or stored by `deit teacher-labels`)."""
    steps = len(sampler) // config.batch_size
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


def stream_identity(config: TrainConfig, train_set: Dataset, *, world_size: int, memory: bool) -> dict[str, Any]:
    """Everything the seeded stream's images depend on, as plain values (a label manifest's `stream`)."""
    identity: dict[str, Any] = {
        "stream_version": STREAM_VERSION,
        "world_size": world_size,
        "loader": "memory" if memory else "per-image",
        "data_set": data_set_key(config.data_set),
        "images": len(train_set),  # type: ignore[arg-type]
        "data": data_fingerprint(train_set),
    }
    identity.update({name: getattr(config, name) for name in STREAM_SETTINGS})
    return identity


def first_difference(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first setting on which a label manifest's stream and this run's differ, in words (None: none)."""
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            name = _NAMES.get(key) or _FLAGS.get(key) or key
            return f"{name}: the labels were computed with {recorded.get(key)!r}, this run has {current.get(key)!r}"
    return None


class StreamLoader:
    """An epoch of (mixed images, targets[, teacher outputs]) batches of the seeded stream; also the run's
    sampler (`set_epoch(epoch, start_step)`: an epoch, from a step in its middle)."""

    def __init__(
        self,
        loader: Any,
        *,
        steps: int,
        batch_size: int,
        mixup_fn: Any,
        seed: int,
        rank: int,
        device: torch.device,
        stream_sampler: StreamSampler | None = None,
        replay: TeacherLabels | None = None,
    ) -> None:
        self.loader, self.steps, self.batch_size = loader, steps, batch_size
        self.mixup_fn, self.seed, self.rank, self.device = mixup_fn, seed, rank, device
        self.stream_sampler, self.replay = stream_sampler, replay
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The epoch the next iteration draws, from step `start_step` on."""
        self.epoch, self.start_step = epoch, start_step
        if self.stream_sampler is not None:  # the per-image path starts at the sample: nothing decoded in vain
            self.stream_sampler.set_epoch(epoch, start_step * self.batch_size)
        else:
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return max(self.steps - self.start_step, 0)

    @property
    def num_workers(self) -> int:
        """Loader worker processes behind the stream (0 on the in-memory path)."""
        return int(getattr(self.loader, "num_workers", 0))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        batches: Any = iter(self.loader)
        if self.stream_sampler is None:  # the in-memory loader draws the whole epoch at once: skip to the step
            batches = itertools.islice(batches, self.start_step, None)
        for step, batch in zip(range(self.start_step, self.steps), batches):
            images = batch[0].to(self.device, non_blocking=True)
            targets = batch[1].to(self.device, non_blocking=True)
            words = mix_words(self.seed, self.epoch, self.rank, step)
            images, targets = seeded_mix(self.mixup_fn, images, targets, words)
            extra = tuple(batch[2:])
            if self.replay is not None:
                extra = (self.replay.outputs(self.epoch, step).to(self.device, non_blocking=True),)
            yield (images, targets, *extra)


def build_stream_loader(
    config: TrainConfig,
    train_set: Dataset,
    sampler: Any,
    memory_loader: Any,
    *,
    rank: int,
    device: torch.device,
    mixup_fn: Any,
    replay: TeacherLabels | None = None,
) -> StreamLoader:
    """The seeded stream over `sampler`'s order: `memory_loader`'s batches when given, else the per-image path."""
    check_stream(config, train_set)
    steps = stream_steps(config, sampler)
    loader, stream_sampler = memory_loader, None
    if memory_loader is None:  # the per-image path: each sample transformed under its own seeds
        stream_sampler = StreamSampler(sampler, seed=config.seed, rank=rank)
        loader = DataLoader(
            SeededSamples(train_set),
            sampler=stream_sampler,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            pin_memory=config.pin_mem and device.type == "cuda",
            drop_last=True,
            # Its own generator: the loader's per-iteration seed draw must not move the run's global stream.
            generator=torch.Generator().manual_seed(config.seed),
        )
    return StreamLoader(
        loader,
        steps=steps,
        batch_size=config.batch_size,
        mixup_fn=mixup_fn,
        seed=config.seed,
        rank=rank,
        device=device,
        stream_sampler=stream_sampler,
        replay=replay,
    )
