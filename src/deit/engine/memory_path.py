"""`--data-loader memory|auto` and `--teacher-table`: choose, build and announce the in-memory training path.

The choice is made once, at start, and said in the run's first lines: which loader, and whether the teacher
runs per step or is looked up in its table (and why not, when it is not).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from deit.data.batch_erasing import BatchErasing
from deit.data.memory import BatchAugment, MemoryLoader, ViewSet, decode, memory_refusal
from deit.data.memory_resized import CropSettings, ResizedCropAugment
from deit.data.transforms import SMALL_INPUT, crop_ranges
from deit.distill.loss import TEACHER_TYPES
from deit.distill.teacher_table import MAX_TABLE_BYTES, cached_table, compute_table, file_sha256, table_bytes, table_key
from deit.engine.config import TrainConfig
from deit.errors import DeitError


def memory_refusal_for(config: TrainConfig, train_set: Dataset) -> str | None:
    """Why `config` cannot train from memory (None: it can)."""
    return memory_refusal(
        data_set=train_set,
        input_size=config.input_size,
        aa=config.aa,
        color_jitter=config.color_jitter,
        three_augment=config.three_augment,
        iterable=isinstance(train_set, IterableDataset),
        interpolation=config.train_interpolation,
        simple_random_crop=config.src,
        limit=memory_cap_bytes(config),
    )


def memory_cap_bytes(config: TrainConfig) -> int:
    """`--memory-cap-gib` in bytes."""
    return int(config.memory_cap_gib * 2**30)


def build_memory_loader(
    config: TrainConfig,
    train_set: Dataset,
    sampler: Any,
    *,
    rank: int,
    device: torch.device,
    teacher: nn.Module | None,
    mean: tuple,
    std: tuple,
) -> tuple[MemoryLoader, list[str]]:
    """The in-memory loader over `train_set` in `sampler`'s order, and the lines that announce it; a folder that
    outgrows the cap while decoding raises `StoreOverCap`."""
    images, labels = decode(train_set, config.input_size, config.train_interpolation, limit=memory_cap_bytes(config))
    augment: BatchAugment | ResizedCropAugment
    if config.input_size <= SMALL_INPUT:
        augment = BatchAugment(images, ViewSet(size=config.input_size, hflip=config.hflip), mean, std, device=device)
        crop = "padded crop, flip"
    else:
        scale, ratio = crop_ranges(config.scale, config.ratio)
        settings = CropSettings(config.input_size, scale, ratio, config.train_interpolation, config.hflip)
        augment = ResizedCropAugment(images, settings, mean, std, device=_store_device(images, device))
        crop = settings.describe()
    erasing = BatchErasing(config.reprob, config.remode, config.recount, augment.device) if config.reprob > 0 else None
    steps = f"{crop}, normalisation" + (f" and random erasing (p={config.reprob:g})" if erasing else "")
    lines = [
        f"--data-loader memory: {len(labels)} training images decoded once into one "
        f"{augment.nbytes / 2**20:.1f} MB uint8 tensor on {augment.device}; {steps} per batch"
    ]
    classes = len(train_set.classes)  # type: ignore[attr-defined]
    folder = not isinstance(images, torch.Tensor)  # decode gives a folder's images as a list
    table, teacher_line = _teacher_table(config, teacher, augment, classes, len(sampler), device, folder=folder)
    if teacher_line:
        lines.append(teacher_line)
    loader = MemoryLoader(
        augment,
        labels,
        sampler,
        batch_size=config.batch_size,
        seed=config.seed,
        rank=rank,
        teacher_table=table,
        erasing=erasing,
    )
    return loader, lines


def _store_device(images: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.device:
    """The training device when the store takes at most a quarter of its free memory, else the CPU."""
    if device.type != "cuda":
        return device
    held = images.numel() if isinstance(images, torch.Tensor) else sum(image.numel() for image in images)
    free, _ = torch.cuda.mem_get_info(device)
    return device if held <= free // 4 else torch.device("cpu")


def _teacher_table(
    config: TrainConfig,
    teacher: nn.Module | None,
    augment: BatchAugment | ResizedCropAugment,
    classes: int,
    draws_per_epoch: int,
    device: torch.device,
    *,
    folder: bool = False,
) -> tuple[torch.Tensor | None, str]:
    """(the table or None, what the run says about its teacher)."""
    if teacher is None or config.distillation_type not in TEACHER_TYPES:
        return None, ""
    if isinstance(augment, ResizedCropAugment):
        why_not = "RandomResizedCrop's boxes are continuous, not a finite set of views"
        if config.teacher_table == "on":
            raise DeitError(f"--teacher-table on: {why_not}")
        return None, f"teacher: one forward pass per step ({why_not})"
    images, views = augment.count, augment.views.count
    why_not = _table_refusal(config, images, views, classes, draws_per_epoch, square=augment.square)
    if why_not:
        if config.teacher_table == "on":
            raise DeitError(f"--teacher-table on: {why_not}")
        return None, f"teacher: one forward pass per step ({why_not})"
    identity = (file_sha256(config.teacher_path), _data_identity(config, augment, folder), augment.views.describe())
    table = cached_table(
        table_key(*identity),
        lambda: compute_table(teacher, augment, images=images, views=views, device=device),
        config.teacher_table_dir or None,
        device,
        shape=(images, views, classes),
        origin=f"teacher sha256 {identity[0]} | data {identity[1]} | views {identity[2]}",
    )
    return table, (
        f"teacher: looked up in a table of its logits for {images} images x {views} views "
        f"({table_bytes(images, views, classes) / 2**20:.1f} MB, computed once"
        f"{' and shared in ' + config.teacher_table_dir if config.teacher_table_dir else ''}), "
        f"not run per step"
    )


def _table_refusal(
    config: TrainConfig, images: int, views: int, classes: int, draws_per_epoch: int, *, square: bool = True
) -> str:
    """Why the table is not used for this run ('' when it is)."""
    if config.teacher_table == "off":
        return "--teacher-table off"
    if config.reprob > 0:
        return (
            f"--reprob {config.reprob:g}: random erasing changes pixels per draw, so the teacher's input is not "
            f"one of a finite set of views"
        )
    if not square:
        return "the images are not all square after the resize, so their crop offsets differ from image to image"
    if config.mixup > 0 or config.cutmix > 0 or config.cutmix_minmax:
        return "mixup/cutmix mix images, so the teacher's input is not one of a finite set of views"
    if not config.teacher_path:
        return "no --teacher-path to key the table by"
    if table_bytes(images, views, classes) > MAX_TABLE_BYTES:
        return (
            f"a table of {images} images x {views} views x {classes} classes would take "
            f"{table_bytes(images, views, classes) >> 20} MB, over {MAX_TABLE_BYTES >> 20} MB"
        )
    if (
        config.teacher_table == "auto"
        and not config.teacher_table_dir
        and config.epochs * draws_per_epoch < images * views
    ):
        return (
            f"the run draws {config.epochs * draws_per_epoch} samples, fewer than the table's {images * views}; "
            f"--teacher-table on, or a shared --teacher-table-dir, builds it anyway"
        )
    return ""


def _data_identity(config: TrainConfig, augment: BatchAugment, folder: bool) -> str:
    """What decides the table's inputs besides the views: data set, subset, input size, resize, normalisation;
    for an image folder, whose files can change under the same path, the decoded pixels themselves."""
    identity = (
        f"{config.data_set}|{config.data_path}|subset{config.train_subset:g}@{config.train_subset_seed}|"
        f"n{augment.count}|in{config.input_size}|{config.train_interpolation}"
    )
    if folder:
        identity += "|" + hashlib.sha256(augment.pixels.cpu().numpy().tobytes()).hexdigest()
    return identity
