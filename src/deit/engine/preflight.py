"""Cheap checks of a `TrainConfig`, run before any data set, loader or model is built: fail in a second, not an hour."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from deit.data.datasets import DATASET_NAMES, FOLDER_DATA_SETS, data_set_key
from deit.distill.loss import TEACHER_TYPES
from deit.engine.config import TrainConfig, check_config_bounds, inert_official_flags
from deit.errors import DeitError
from deit.io import require_regular_file
from deit.models.download import is_url
from deit.models.kwargs_check import check_no_download_keys, check_patch_grid, check_vit_kwargs
from deit.models.registry import check_model_name, get_model_spec, is_registered

_RESERVED_KWARGS = {
    "num_classes": "the data set decides it",
    "img_size": "use --input-size",
    "drop_path_rate": "use --drop-path",
    "drop_rate": "use --drop",
}


def resolve_data_set(config: TrainConfig) -> TrainConfig:
    """`--data-set auto`: the official default IMNET when `--data-path` names data, the embedded DIGITS otherwise."""
    if data_set_key(config.data_set) != "AUTO":
        return config
    return dataclasses.replace(config, data_set="IMNET" if config.data_path else "DIGITS")


def describe_data(config: TrainConfig) -> str:
    """The run's first line: which data set, from where."""
    key = data_set_key(config.data_set)
    if key in ("DIGITS", "DIGITSCANVAS", "SYNTHETIC"):
        where = "generated" if key == "SYNTHETIC" else "embedded, offline"
        ignored = f"; --data-path {config.data_path} is not used" if config.data_path else ""
        return f"data: {config.data_set} ({where}{ignored})"
    where = Path(config.data_path).resolve() if config.data_path else "(no --data-path)"
    return f"data: {config.data_set} from {where}"


def validate_config(config: TrainConfig) -> None:
    """Every check that needs no data and no model; raises a one-line `DeitError` naming the flag."""
    if _inat_class_folders(config) and config.inat_category != "name":
        raise DeitError(
            "--inat-category: this INAT --data-path has no train2018.json and is read as class "
            "folders, whose names are the only granularity"
        )
    for note in inert_official_flags(config):
        warnings.warn(note, stacklevel=2)
    if config.cosub and config.distillation_type != "none":
        raise DeitError(
            f"--cosub with --distillation-type {config.distillation_type}: co-training replaces the loss "
            f"(the two sub-models teach each other, as in the official engine), so nothing would use the "
            f"teacher; drop one of the two"
        )
    _check_numbers(config)
    check_model_name(config.model, where="--model")
    for key, why in _RESERVED_KWARGS.items():
        if key in config.model_kwargs:
            raise DeitError(f"--model-kwargs: '{key}' is not allowed there ({why})")
    _check_model_kwargs(config)
    _check_patch_size(config)
    if config.distillation_type in TEACHER_TYPES and not config.eval:
        check_model_name(config.teacher_model, where="--teacher-model")
        if not config.teacher_path and not config.teacher_labels:  # replayed: the labels name their teacher
            raise DeitError(
                f"--distillation-type {config.distillation_type} needs --teacher-path (the teacher's "
                f"trained weights; train one with `deit train --model {config.teacher_model}`)"
            )
        if config.teacher_path:
            _check_file(config.teacher_path, "--teacher-path")
    if config.finetune:
        _check_file(config.finetune, "--finetune")
    _check_names(config)
    _check_data_layout(config)
    if config.eval and not (config.resume or config.finetune):
        warnings.warn("--eval without --resume or --finetune evaluates a freshly initialised model", stacklevel=2)


def _check_numbers(config: TrainConfig) -> None:
    check_config_bounds(config)  # each value alone: finite and in its range (deit.flag_bounds)
    # What follows relates values to each other.
    if config.eval_interval > 1 and config.sched == "plateau":
        raise DeitError(
            f"--eval-interval {config.eval_interval} with --sched plateau: the plateau scheduler needs "
            f"a validation top-1 every epoch; use --eval-interval 1"
        )
    if config.bce_target_thresh is not None and not config.bce_loss:
        raise DeitError("--bce-target-thresh needs --bce-loss")
    if config.train_subset != 1.0:
        from deit.data.subset import check_subset_flag

        check_subset_flag(config.train_subset)  # the size against the data is checked when the data is built
    mixup_on = config.mixup > 0 or config.cutmix > 0 or config.cutmix_minmax is not None
    if mixup_on and config.batch_size % 2:  # timm's Mixup pairs samples in every mode
        raise DeitError(f"--batch-size {config.batch_size}: mixup/cutmix needs an even batch size")
    if config.cutmix_minmax is not None and config.cutmix_minmax[0] > config.cutmix_minmax[1]:
        raise DeitError(
            f"--cutmix-minmax {config.cutmix_minmax[0]} {config.cutmix_minmax[1]}: the minimum is above the maximum"
        )
    if config.start_epoch >= config.epochs and not config.eval:
        raise DeitError(f"--start_epoch {config.start_epoch}: the run has only --epochs {config.epochs}")


def _check_names(config: TrainConfig) -> None:
    """The string settings that name something (data set, optimizer, device, augmentation): known, before any work."""
    from timm.optim import list_optimizers

    from deit.data import build_transform
    from deit.perf import resolve_device

    key = data_set_key(config.data_set)
    if key not in DATASET_NAMES + ("AUTO",):
        raise DeitError(f"--data-set {config.data_set!r}: unknown; choose one of {', '.join(DATASET_NAMES)}")
    # timm's own parsing: an optional "lookahead_" or "fused" prefix, then the optimizer's name.
    if config.opt.lower().split("_")[-1] not in list_optimizers():
        raise DeitError(f"--opt {config.opt!r}: not an optimizer timm knows (adamw, sgd, lamb, ...)")
    resolve_device(config.device)
    # The training transform is built by the same code the run uses (milliseconds): --aa, --remode and
    # --train-interpolation are refused now rather than after the data set is read.
    build_transform(
        True,
        input_size=config.input_size,
        color_jitter=config.color_jitter,
        auto_augment=config.aa,
        interpolation=config.train_interpolation,
        reprob=config.reprob,
        remode=config.remode,
        recount=config.recount,
        three_augment=config.three_augment,
        simple_random_crop=config.src,
        hflip=config.hflip,
        scale=config.scale,
        ratio=config.ratio,
    )
    if key == "HF":
        for flag, value in {
            "--hf-image-column": config.hf_image_column,
            "--hf-label-column": config.hf_label_column,
            "--hf-train-split": config.hf_train_split,
            "--hf-val-split": config.hf_val_split,
        }.items():
            if not value:
                raise DeitError(f"{flag}: may not be empty")
    if config.resume and config.resume != "auto":
        _check_file(config.resume, "--resume")


def _check_model_kwargs(config: TrainConfig) -> None:
    check_no_download_keys(config.model_kwargs, where="--model-kwargs")
    if is_registered(config.model):
        check_vit_kwargs(config.model_kwargs, where="--model-kwargs")


def _check_patch_size(config: TrainConfig) -> None:
    if not is_registered(config.model):
        return
    patch = int(config.model_kwargs.get("patch_size", get_model_spec(config.model).kwargs["patch_size"]))
    check_patch_grid(config.input_size, patch, where=f"--input-size {config.input_size} ({config.model})")


def _check_file(path: str, flag: str) -> None:
    if is_url(path):
        return
    require_regular_file(path, flag=flag, allow_directory=True)  # a FIFO would hang the first read


def _inat_class_folders(config: TrainConfig) -> bool:
    # --data-set INAT reads the official json layout when its train2018.json is there, else class folders.
    from deit.data.inat import INAT_YEARS, inat_json_layout

    key = data_set_key(config.data_set)
    return key == "INAT" and not (config.data_path and inat_json_layout(config.data_path, INAT_YEARS[key]))


def _check_data_layout(config: TrainConfig) -> None:
    key = data_set_key(config.data_set)
    if config.data_loader == "dali":
        if key not in FOLDER_DATA_SETS + ("WDS",) or (key == "INAT" and not _inat_class_folders(config)):
            raise DeitError(
                f"--data-loader dali reads class folders (--data-set {', '.join(FOLDER_DATA_SETS)}) "
                f"and shards (--data-set WDS), "
                f"not --data-set {config.data_set}; use --data-loader torch"
            )
        from deit.data.dali import check_dali_flags, require_dali

        require_dali()  # the missing extra is named now, before any work
        check_dali_flags(
            auto_augment=config.aa,
            three_augment=config.three_augment,
            simple_random_crop=config.src,
            interpolation=config.train_interpolation,
        )
    if key not in FOLDER_DATA_SETS or (key == "INAT" and not _inat_class_folders(config)):
        return
    if not config.data_path:
        raise DeitError(f"--data-set {config.data_set} needs --data-path (a folder with train/ and val/)")
    root = Path(config.data_path)
    if not root.is_dir():
        raise DeitError(f"--data-path {root}: no such folder")
    needed = ["val"] if config.eval else ["train", "val"]
    missing = [name for name in needed if not (root / name).is_dir()]
    if missing:
        raise DeitError(
            f"--data-path {root}: missing {', '.join(missing)}/ (expected {root}/train/<class>/<images> "
            f"and {root}/val/<class>/<images>)"
        )
