"""From a `TrainConfig` to the objects of a run: data sets and loaders, student, teacher, criterion, meta."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, SequentialSampler

from deit.data.datasets import data_set_key
from deit.distill.loss import TEACHER_TYPES
from deit.engine.config import TrainConfig
from deit.engine.distributed import DistributedEnv
from deit.engine.finetune import FinetuneOrigin
from deit.engine.finetune import load_finetune as load_finetune_weights
from deit.engine.logging_utils import say
from deit.engine.step import TrainStep
from deit.engine.stream import check_stream, uses_seeded_stream
from deit.errors import DeitError
from deit.models.download import fetch_checkpoint, is_url
from deit.models.meta import CheckpointMeta
from deit.precision import Precision
from deit.version import __version__


def normalization(config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the run's data set (see `data_set_normalization`)."""
    return data_set_normalization(config.data_set)


def data_set_normalization(data_set: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std: the digit sets' own statistics for DIGITS and DIGITS-CANVAS, ImageNet's for everything else
    (as official)."""
    from deit.data import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD
    from deit.data.digits_canvas import DIGITS_CANVAS_MEAN, DIGITS_CANVAS_STD

    if data_set_key(data_set) == "DIGITS":
        return tuple(DIGITS_MEAN), tuple(DIGITS_STD)
    if data_set_key(data_set) == "DIGITSCANVAS":
        return tuple(DIGITS_CANVAS_MEAN), tuple(DIGITS_CANVAS_STD)
    return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)


def build_datasets(
    config: TrainConfig, *, report_dir: str | None, need_train: bool = True
) -> tuple[Dataset | None, Dataset]:
    """The training split (None when only evaluating) and the validation split, with the paper's transforms."""
    from deit.data import build_dataset, build_transform

    mean, std = normalization(config)
    options = dict(
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
        image_column=config.hf_image_column,
        label_column=config.hf_label_column,
        train_split=config.hf_train_split,
        val_split=config.hf_val_split,
        max_classes=config.max_classes,
        inat_category=config.inat_category,
    )
    common = dict(download=config.download, strict_data=config.strict_data, report_dir=report_dir, options=options)
    train_set = None
    if need_train:
        train_transform = build_transform(
            True,
            input_size=config.input_size,
            mean=mean,
            std=std,
            color_jitter=config.color_jitter,
            auto_augment=config.aa,
            interpolation=config.train_interpolation,
            reprob=config.reprob,
            remode=config.remode,
            recount=config.recount,
            three_augment=config.three_augment,
            simple_random_crop=config.src,
            eval_crop_ratio=config.eval_crop_ratio,
            hflip=config.hflip,
            scale=config.scale,
            ratio=config.ratio,
        )
        train_set = build_dataset(
            config.data_set, config.data_path or None, train=True, transform=train_transform, **common
        )
        if config.train_subset != 1.0 and len(train_set) > 0:
            from deit.data.subset import stratified_subset

            train_set = stratified_subset(train_set, config.train_subset, config.train_subset_seed)
    eval_transform = build_transform(
        False, input_size=config.input_size, mean=mean, std=std, eval_crop_ratio=config.eval_crop_ratio
    )
    val_set = build_dataset(config.data_set, config.data_path or None, train=False, transform=eval_transform, **common)
    if len(val_set) == 0:
        raise DeitError(f"--data-set {config.data_set}: the validation split is empty")
    if train_set is not None and len(train_set) == 0:
        raise DeitError(f"--data-set {config.data_set}: the training split is empty")
    return train_set, val_set


@dataclass
class Loaders:
    """The training loader (and its epoch-seeded sampler) and the validation loader."""

    train: DataLoader | None
    train_sampler: Any
    val: DataLoader
    distributed_eval: bool


def build_loaders(
    config: TrainConfig,
    train_set: Dataset | None,
    val_set: Dataset,
    env: DistributedEnv,
    device: torch.device,
    teacher: nn.Module | None = None,
) -> Loaders:
    """Repeated-augmentation (or plain distributed) sampling for training, sequential or split evaluation; the
    training set from memory (`--data-loader memory|auto`, engine/memory_path.py) where that applies."""
    from deit.data import RepeatAugSampler

    if config.class_balanced and (isinstance(train_set, IterableDataset) or config.data_loader == "dali"):
        raise DeitError(
            "--class-balanced: needs an indexable data set and the torch loader (not WDS shards or --data-loader dali)"
        )
    if config.class_balanced and config.repeated_aug:
        warnings.warn(
            "--class-balanced replaces repeated augmentation (--repeated-aug); pass --no-repeated-aug to silence this",
            stacklevel=2,
        )
    if uses_seeded_stream(config):
        check_stream(config, train_set)
    if config.data_loader == "dali":
        return _dali_loaders(config, train_set, val_set, env, device)
    pin = config.pin_mem and device.type == "cuda"
    train_loader = sampler = None
    from_memory = False
    if isinstance(train_set, IterableDataset):  # shards: the data set splits itself over ranks and workers
        train_set.configure(rank=env.rank, world_size=env.world_size, num_workers=config.num_workers)
        sampler = train_set
        train_loader = DataLoader(
            train_set, batch_size=config.batch_size, num_workers=config.num_workers, pin_memory=pin, drop_last=True
        )
    elif train_set is not None:
        # The samplers draw from seed + epoch alone, so an epoch's order survives a resume exactly.
        if config.class_balanced:
            from deit.data.balanced_sampler import ClassBalancedSampler
            from deit.data.subset import dataset_labels

            sampler = ClassBalancedSampler(
                dataset_labels(train_set), num_replicas=env.world_size, rank=env.rank, seed=config.seed
            )
        elif config.repeated_aug:
            sampler = RepeatAugSampler(
                train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, num_repeats=3, seed=config.seed
            )
        else:
            sampler = DistributedSampler(
                train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=config.seed
            )
        if config.epoch_repeats > 1:
            from deit.data.epoch_repeats import EpochRepeatSampler

            sampler = EpochRepeatSampler(sampler, config.epoch_repeats)
        if len(sampler) < config.batch_size:
            raise DeitError(
                f"--batch-size {config.batch_size}: larger than the {len(sampler)} training images each "
                f"process sees per epoch"
            )
        train_loader = _memory_loader(config, train_set, sampler, env, device, teacher)
        from_memory = train_loader is not None
        if uses_seeded_stream(config):
            train_loader = _stream_loader(config, train_set, sampler, train_loader, env, device)
            sampler = train_loader  # its set_epoch reseeds the order, the augmentation and mixup
        elif train_loader is None:
            train_loader = DataLoader(
                train_set,
                sampler=sampler,
                batch_size=config.batch_size,
                num_workers=config.num_workers,
                pin_memory=pin,
                drop_last=True,
            )
        else:
            sampler = train_loader  # its set_epoch reseeds the order and the augmentation
    distributed_eval = config.dist_eval and env.distributed
    # The validation loader draws its seed from its own generator, not torch's global one: how often it runs
    # (--eval-interval) must not change the training's random stream.
    val_generator = torch.Generator().manual_seed(config.seed)
    if isinstance(val_set, IterableDataset):
        val_set.configure(
            rank=env.rank if distributed_eval else 0,
            world_size=env.world_size if distributed_eval else 1,
            num_workers=config.num_workers,
        )
        val_loader = DataLoader(
            val_set,
            batch_size=int(1.5 * config.batch_size),
            num_workers=config.num_workers,
            pin_memory=pin,
            drop_last=False,
            generator=val_generator,
        )
        return Loaders(train_loader, sampler, val_loader, distributed_eval)
    if distributed_eval:
        if len(val_set) % env.world_size:
            warnings.warn(
                "--dist-eval: the validation set does not split evenly; a few images are counted twice", stacklevel=2
            )
        val_sampler: Any = DistributedSampler(val_set, num_replicas=env.world_size, rank=env.rank, shuffle=False)
    else:
        val_sampler = SequentialSampler(val_set)
    if from_memory and not distributed_eval:  # training from memory
        prepared = _prepared_eval_set(config, val_set, device, is_main=env.is_main)
        if prepared is not None:
            return Loaders(train_loader, sampler, prepared, distributed_eval)  # type: ignore[arg-type]
    # Evaluation is deterministic, so its workers can live for the whole run instead of starting again at every
    # evaluation. Not the training loader's: fresh workers draw their augmentation seeds from the torch RNG at
    # each epoch, which is what makes a resumed epoch repeat an uninterrupted one.
    val_loader = DataLoader(
        val_set,
        sampler=val_sampler,
        batch_size=int(1.5 * config.batch_size),
        num_workers=config.num_workers,
        pin_memory=pin,
        drop_last=False,
        generator=val_generator,
        persistent_workers=config.num_workers > 0,
    )
    return Loaders(train_loader, sampler, val_loader, distributed_eval)


def _prepared_eval_set(config: TrainConfig, val_set: Dataset, device: torch.device, *, is_main: bool) -> Any:
    """An in-memory run's validation set transformed once (`deit.data.memory_eval`), or None when too large."""
    from deit.data.memory_eval import EVAL_BATCH, MAX_EVAL_BYTES, PreparedEvalSet, eval_tensor_bytes

    if eval_tensor_bytes(val_set, config.input_size) > MAX_EVAL_BYTES:
        say(
            f"validation: per-image DataLoader ({len(val_set)} images would take more than "  # type: ignore[arg-type]
            f"{MAX_EVAL_BYTES >> 20} MB kept in memory)",
            is_main=is_main,
        )
        return None
    prepared = PreparedEvalSet(val_set, batch_size=max(EVAL_BATCH, int(1.5 * config.batch_size)), device=device)
    say(
        f"validation: {len(prepared.labels)} images transformed once and kept ({prepared.megabytes:.1f} MB on "
        f"{device}), evaluated {prepared.batch_size} at a time",
        is_main=is_main,
    )
    return prepared


def _memory_loader(
    config: TrainConfig,
    train_set: Dataset,
    sampler: Any,
    env: DistributedEnv,
    device: torch.device,
    teacher: nn.Module | None,
) -> Any:
    """The in-memory loader when asked for or automatic and the recipe allows it; None for the per-image path."""
    if config.data_loader not in ("auto", "memory"):
        return None
    from deit.engine.memory_path import build_memory_loader, memory_refusal_for

    why_not = memory_refusal_for(config, train_set)
    if why_not:
        if config.data_loader == "memory":
            raise DeitError(f"--data-loader memory: {why_not}; use --data-loader torch")
        say(f"--data-loader auto: per-image DataLoader, not the in-memory path ({why_not})", is_main=env.is_main)
        return None
    from deit.data.memory_folder import StoreOverCap

    mean, std = normalization(config)
    try:
        loader, lines = build_memory_loader(
            config, train_set, sampler, rank=env.rank, device=device, teacher=teacher, mean=mean, std=std
        )
    except StoreOverCap as error:
        if config.data_loader == "memory":
            raise DeitError(f"--data-loader memory: {error}; use --data-loader torch") from error
        say(f"--data-loader auto: per-image DataLoader, not the in-memory path ({error})", is_main=env.is_main)
        return None
    for line in lines:
        say(line, is_main=env.is_main)
    return loader


def _stream_loader(
    config: TrainConfig,
    train_set: Dataset,
    sampler: Any,
    memory_loader: Any,
    env: DistributedEnv,
    device: torch.device,
) -> Any:
    """The seeded stream (engine/stream.py), with the teacher's stored outputs under `--teacher-labels`."""
    from deit.engine.stream import build_stream_loader, stream_identity, stream_steps

    num_classes = len(train_set.classes)  # type: ignore[attr-defined]
    replay = None
    if config.teacher_labels:
        from deit.engine.replay import open_replay
        from deit.precision import resolve_precision

        identity = stream_identity(config, train_set, world_size=env.world_size, memory=memory_loader is not None)
        steps = stream_steps(config, sampler)
        precision = resolve_precision(config.amp, device).name
        replay, lines = open_replay(
            config, identity, rank=env.rank, steps=steps, num_classes=num_classes, precision=precision
        )
        for line in lines:
            say(line, is_main=env.is_main)
    say(
        "--seeded-stream: each sample's augmentation drawn from (seed, epoch, rank, position), mixup's from "
        "(seed, epoch, rank, step): the batches do not depend on --num_workers or on a resume",
        is_main=env.is_main,
    )
    return build_stream_loader(
        config,
        train_set,
        sampler,
        memory_loader,
        rank=env.rank,
        device=device,
        mixup_fn=build_mixup_fn(config, num_classes),
        replay=replay,
    )


def _dali_loaders(
    config: TrainConfig, train_set: Dataset | None, val_set: Dataset, env: DistributedEnv, device: torch.device
) -> Loaders:
    """DALI pipelines over the same file lists (bad files already skipped by the folder scan); each rank reads
    its own shard, so every image is seen once per epoch across ranks; the torch transform's flags, in DALI."""
    from deit.data.dali import DaliLoader, DaliSettings
    from deit.data.dali_shards import ShardRecords
    from deit.data.shards import ShardDataset
    from deit.data.transforms import augment_policy_set, crop_ranges

    if config.repeated_aug and train_set is not None:
        warnings.warn(
            "--data-loader dali reads each image once per epoch: repeated augmentation (--repeated-aug) "
            "is not applied; pass --no-repeated-aug to silence this",
            stacklevel=2,
        )
    mean, std = normalization(config)
    settings = DaliSettings(
        input_size=config.input_size,
        mean=mean,
        std=std,
        hflip=config.hflip,
        auto_augment=config.aa if augment_policy_set(config.aa) else None,
        color_jitter=config.color_jitter,
        reprob=config.reprob,
        remode=config.remode,
        recount=config.recount,
        eval_crop_ratio=config.eval_crop_ratio,
        scale=crop_ranges(config.scale, config.ratio)[0],
        ratio=crop_ranges(config.scale, config.ratio)[1],
    )
    common = dict(
        shard_id=env.rank,
        num_shards=env.world_size,
        num_threads=max(config.num_workers, 1),
        device_id=device.index if device.type == "cuda" else None,
        seed=config.seed,
    )
    if isinstance(val_set, ShardDataset):  # --data-set WDS: DALI reads the records by byte range
        train_set = ShardRecords(train_set) if train_set is not None else None  # type: ignore[arg-type]
        val_set = ShardRecords(val_set)  # type: ignore[assignment]
    train = None
    if train_set is not None:
        train = DaliLoader(
            train_set,
            settings,
            train=True,
            batch_size=config.batch_size,
            drop_last=True,  # type: ignore[arg-type]
            **common,
        )
        if len(train) == 0:
            raise DeitError(
                f"--batch-size {config.batch_size}: larger than the {train.shard_size} training images "
                f"each process sees per epoch"
            )
    distributed_eval = config.dist_eval and env.distributed
    eval_shards = dict(common) if distributed_eval else dict(common, shard_id=0, num_shards=1)
    val = DaliLoader(val_set, settings, train=False, batch_size=int(1.5 * config.batch_size), **eval_shards)  # type: ignore[arg-type]
    return Loaders(train, train, val, distributed_eval)  # type: ignore[arg-type]


def build_student(config: TrainConfig, num_classes: int, *, load_finetune: bool) -> nn.Module:
    """The model to train, with `--finetune` weights (pos_embed resampled, other heads dropped) and `--attn-only`."""
    return build_student_with_origin(config, num_classes, load_finetune=load_finetune)[0]


def build_student_with_origin(
    config: TrainConfig, num_classes: int, *, load_finetune: bool, class_names: list[str] | None = None
) -> tuple[nn.Module, FinetuneOrigin | None]:
    """`build_student`, and what `--finetune` loaded and adapted (None when no fine-tune weights were loaded);
    `class_names` (the data's) are matched by name to the checkpoint's when its heads are kept."""
    from deit.models.factory import build_model

    overrides = dict(config.model_kwargs)
    if config.drop:
        overrides["drop_rate"] = config.drop
    try:
        # The factory decides what applies to the model's source (img_size, drop_path_rate); see build_model.
        model = build_model(
            config.model,
            num_classes=num_classes,
            img_size=config.input_size,
            drop_path_rate=config.drop_path,
            **overrides,
        )
    except TypeError as error:
        raise DeitError(f"--model {config.model} / --model-kwargs {config.model_kwargs}: {error}") from error
    origin = None
    if load_finetune and config.finetune:
        origin = load_finetune_weights(
            model,
            local_copy(config.finetune, "--finetune"),
            flag_model=config.model,
            flag_kwargs=dict(config.model_kwargs),
            class_names=class_names,
            by_position=config.map_classes_by_position,
        )
    if config.attn_only:
        _freeze_all_but_attention(model)
    if config.linear_probe:
        _freeze_all_but_classifier(model)
    return model, origin


def local_copy(source: str, flag: str) -> str | Path:
    """`source` itself, or for a URL its cached download (hash-checked when the name has one).

    Fetched here, on the command line's side, so that a failed download tells the user to pass the file as `flag`.
    """
    return fetch_checkpoint(source, progress=True, local_option=flag) if is_url(source) else source


def _freeze_all_but_attention(model: nn.Module) -> None:
    """As the official `--attn-only`: train attention, position embedding and heads; freeze the rest."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = ".attn." in name or name == "pos_embed" or name.startswith(("head.", "head_dist."))
    if not any(p.requires_grad for p in model.parameters()):
        raise DeitError(f"--attn-only: {model_name_of(model)} has no attention layers to fine-tune")


def _freeze_all_but_classifier(model: nn.Module) -> None:
    """`--linear-probe`: only the classification head(s) train, on the frozen features of the backbone."""
    heads = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = heads if isinstance(heads, tuple) else (heads,)
    trainable = {id(p) for head in heads if isinstance(head, nn.Module) for p in head.parameters()}
    if not trainable:
        raise DeitError(f"--linear-probe: {model_name_of(model)} has no classifier (get_classifier) to train")
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in trainable


def model_name_of(model: nn.Module) -> str:
    """A model's registry name, or its class name."""
    return str(getattr(model, "model_name", type(model).__name__))


def build_teacher_for(config: TrainConfig, num_classes: int, device: torch.device) -> nn.Module | None:
    """The frozen teacher when distilling; its class count and normalisation are checked against the data."""
    if config.distillation_type not in TEACHER_TYPES:
        return None
    from deit.distill import build_teacher

    mean, std = normalization(config)
    # No --teacher-path (only `deit bench`, which times an untrained teacher: the speed is the same).
    checkpoint = local_copy(config.teacher_path, "--teacher-path") if config.teacher_path else None
    # NHWC convolutions are the fast cuDNN path for the CNN teachers; on CPU the default layout is as fast.
    return build_teacher(
        config.teacher_model,
        num_classes=num_classes,
        checkpoint=checkpoint,
        student_mean=mean,
        student_std=std,
        device=device,
        channels_last=device.type == "cuda",
    )


def build_criterion(config: TrainConfig, teacher: nn.Module | None, *, mixup_active: bool) -> nn.Module:
    """The DeiT objective: base criterion (smoothed CE, soft-target CE or BCE) plus the teacher's term; or, with
    `--cosub`, the co-training loss of two sub-models (distill/cosub.py)."""
    from deit.distill import CosubLoss, DistillationLoss, build_base_criterion

    # As official DeiT III: with BCE, any class present in the mixed target counts as positive.
    threshold = config.bce_target_thresh
    if threshold is None and config.bce_loss and mixup_active:
        threshold = 0.0
    if config.cosub:  # as the official engine: co-training replaces the whole criterion
        return CosubLoss(smoothing=config.smoothing, target_threshold=threshold)
    base = build_base_criterion(
        mixup_active=mixup_active, smoothing=config.smoothing, bce_loss=config.bce_loss, bce_target_thresh=threshold
    )
    if teacher is None and config.teacher_labels and config.distillation_type in TEACHER_TYPES:
        from deit.distill.teacher_labels import ReplayedTeacher

        teacher = ReplayedTeacher()  # every batch brings the teacher's stored outputs
    return DistillationLoss(
        base,
        teacher,
        config.distillation_type,
        config.distillation_alpha,
        config.distillation_tau,
        kl_reduction=config.distillation_kl_reduction,
    )


def build_train_step(
    config: TrainConfig,
    model: nn.Module,
    teacher: nn.Module | None,
    *,
    num_classes: int,
    device: torch.device,
    precision: Precision,
    world_size: int = 1,
    distributed: bool = False,
) -> TrainStep:
    """The one training step of a run (engine/step.py), built from `config` exactly as `deit train` builds it:
    optimizer (lr scaled by the total batch), mixup, the DeiT criterion, EMA, DDP and `--compile` wrappers.

    `deit bench --train` and benchmarks/ call this too, so what they time is a `deit train` configuration.
    """
    from deit.engine.optim import build_optimizer, scaled_lr

    if config.grad_accum_steps < 1:
        raise DeitError(f"--grad-accum-steps {config.grad_accum_steps}: must be 1 or more")
    lr = scaled_lr(config.lr, config.batch_size * config.grad_accum_steps, world_size, unscale=config.unscale_lr)
    optimizer = build_optimizer(
        model,
        opt=config.opt,
        lr=lr,
        weight_decay=config.weight_decay,
        eps=config.opt_eps,
        betas=config.opt_betas,
        momentum=config.momentum,
        device=device,
        layer_decay=config.layer_decay,
    )
    model_ema = None
    if config.model_ema and not config.eval:
        from timm.utils import ModelEmaV3

        model_ema = ModelEmaV3(
            model, decay=config.model_ema_decay, device=torch.device("cpu") if config.model_ema_force_cpu else None
        )
    mixup_fn = None if config.eval else build_mixup_fn(config, num_classes)
    criterion = build_criterion(config, teacher, mixup_active=mixup_fn is not None)
    if uses_seeded_stream(config):
        mixup_fn = None  # the stream mixes each batch from its own seeds (engine/stream.py), not the step
    forward_model: nn.Module = model
    if distributed:
        # With the official `none`, a distilled student's distillation head gets no gradient: DDP must know.
        idle_head = config.distillation_type == "none" and bool(getattr(model, "distilled", False))
        forward_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=idle_head
        )
    if config.compile:
        from deit.perf import compile_model

        forward_model = compile_model(forward_model)
        if teacher is not None:
            # The teacher's forward is about half of a distillation step: compile its network too (the frozen
            # wrapper's no_grad and re-normalisation stay eager).
            teacher.model = compile_model(teacher.model)  # type: ignore[assignment]
    return TrainStep(
        forward_model,
        criterion,
        optimizer,
        precision=precision,
        clip_grad=config.clip_grad,
        model_ema=model_ema,
        mixup_fn=mixup_fn,
        accum_steps=config.grad_accum_steps,
    )


def build_mixup_fn(config: TrainConfig, num_classes: int) -> Any:
    """timm's Mixup/CutMix with the smoothing folded in, or None when both are off."""
    from deit.data import build_mixup

    return build_mixup(
        mixup=config.mixup,
        cutmix=config.cutmix,
        cutmix_minmax=config.cutmix_minmax,
        prob=config.mixup_prob,
        switch_prob=config.mixup_switch_prob,
        mode=config.mixup_mode,
        label_smoothing=config.smoothing,
        num_classes=num_classes,
    )


def checkpoint_meta(
    config: TrainConfig, model: nn.Module, class_names: list[str], *, origin: FinetuneOrigin | None = None
) -> CheckpointMeta:
    """What `deit predict`/`eval`/`export` need to use the checkpoint alone (docs/architecture.md); with `origin`,
    where `--finetune` started from (`finetuned_from`, shown by the model card)."""
    mean, std = normalization(config)
    return CheckpointMeta(
        model=config.model,
        model_kwargs=dict(config.model_kwargs),
        input_size=config.input_size,
        num_classes=len(class_names),
        mean=tuple(mean),
        std=tuple(std),
        crop_pct=config.eval_crop_ratio,
        class_names=tuple(class_names),
        distilled=bool(getattr(model, "distilled", False)),
        deit_version=__version__,
        extra={"finetuned_from": origin.to_dict()} if origin is not None else {},
    )
