"""One typed `TrainConfig`: the official `main.py` flags (same spellings, same defaults) plus ours, and YAML.

Precedence: dataclass defaults < `--config run.yaml` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deit.errors import DeitError
from deit.flag_bounds import bound_for, check_value
from deit.io import read_text_file
from deit.yaml_load import safe_load_no_aliases


def _opt(
    default: Any,
    *flags: str,
    group: str,
    help: str,
    kind: type | str | None = None,
    choices: tuple[str, ...] | None = None,
    negative: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field that knows its command-line spellings; `kind` is the value type ('floats': a list)."""
    if kind is None:
        kind = type(default) if default is not None else str
    metadata = dict(flags=flags, group=group, help=help, kind=kind, choices=choices, negative=negative, metavar=metavar)
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a `deit train` run needs; field names are the official `args` attribute names."""

    # -- basics (official)
    batch_size: int = _opt(64, "--batch-size", group="basics", help="images per process and step")
    epochs: int = _opt(300, "--epochs", group="basics", help="training epochs")
    bce_loss: bool = _opt(False, "--bce-loss", group="basics", help="binary cross-entropy loss (DeiT III)")
    bce_target_thresh: float | None = _opt(
        None,
        "--bce-target-thresh",
        group="basics",
        kind=float,
        metavar="THRESH",
        help="with --bce-loss: mixed targets above this become 1 (timm's flag; "
        "default: 0 under mixup/cutmix, as the official DeiT III)",
    )
    unscale_lr: bool = _opt(
        False, "--unscale-lr", group="basics", help="use --lr as is instead of lr x batch-size x world-size / 512"
    )
    # -- model (official)
    model: str = _opt(
        "deit_base_patch16_224",
        "--model",
        group="model",
        metavar="MODEL",
        help="model to train: a DeiT name (`deit models`), or any timm / torchvision name",
    )
    input_size: int = _opt(224, "--input-size", group="model", help="image side in pixels")
    drop: float = _opt(0.0, "--drop", group="model", metavar="PCT", help="dropout rate")
    drop_path: float = _opt(0.1, "--drop-path", group="model", metavar="PCT", help="stochastic depth rate")
    model_ema: bool = _opt(
        True,
        "--model-ema",
        negative="--no-model-ema",
        group="model",
        help="keep an exponential moving average of the weights",
    )
    model_ema_decay: float = _opt(0.99996, "--model-ema-decay", group="model", help="EMA decay per step")
    model_ema_force_cpu: bool = _opt(False, "--model-ema-force-cpu", group="model", help="keep the EMA on the CPU")
    # -- optimizer (official)
    opt: str = _opt(
        "adamw",
        "--opt",
        group="optimizer",
        metavar="OPTIMIZER",
        help="optimizer name known to timm (adamw, lamb, sgd, ...)",
    )
    opt_eps: float = _opt(1e-8, "--opt-eps", group="optimizer", metavar="EPSILON", help="optimizer epsilon")
    opt_betas: list[float] | None = _opt(
        None,
        "--opt-betas",
        group="optimizer",
        kind="floats",
        metavar="BETA",
        help="optimizer betas (default: the optimizer's)",
    )
    clip_grad: float | None = _opt(
        None,
        "--clip-grad",
        group="optimizer",
        kind=float,
        metavar="NORM",
        help="clip the gradient norm (default: no clipping)",
    )
    momentum: float = _opt(0.9, "--momentum", group="optimizer", metavar="M", help="SGD momentum")
    weight_decay: float = _opt(
        0.05, "--weight-decay", group="optimizer", help="weight decay (never on biases, norms, tokens, pos_embed)"
    )
    # -- learning-rate schedule (official)
    sched: str = _opt(
        "cosine",
        "--sched",
        group="schedule",
        metavar="SCHEDULER",
        choices=("cosine", "tanh", "step", "multistep", "plateau", "poly"),
        help="timm scheduler name",
    )
    lr: float = _opt(
        5e-4,
        "--lr",
        group="schedule",
        metavar="LR",
        help="learning rate for a total batch of 512 (scaled linearly, see --unscale-lr)",
    )
    lr_noise: list[float] | None = _opt(
        None,
        "--lr-noise",
        group="schedule",
        kind="floats",
        metavar="PCT",
        help="learning-rate noise on/off epoch percentages",
    )
    lr_noise_pct: float = _opt(
        0.67, "--lr-noise-pct", group="schedule", metavar="PERCENT", help="learning-rate noise limit percent"
    )
    lr_noise_std: float = _opt(
        1.0, "--lr-noise-std", group="schedule", metavar="STDDEV", help="learning-rate noise std-dev"
    )
    warmup_lr: float = _opt(1e-6, "--warmup-lr", group="schedule", metavar="LR", help="warmup start lr")
    min_lr: float = _opt(1e-5, "--min-lr", group="schedule", metavar="LR", help="lower lr bound of the cosine")
    decay_epochs: float = _opt(
        30.0, "--decay-epochs", group="schedule", metavar="N", help="epoch interval to decay the lr (step schedulers)"
    )
    warmup_epochs: int = _opt(5, "--warmup-epochs", group="schedule", metavar="N", help="linear warmup epochs")
    epoch_repeats: int = _opt(
        1,
        "--epoch-repeats",
        group="schedule",
        metavar="N",
        help="pass over the training images N times per epoch (timm's flag), so a small subset's epoch is not "
        "a handful of steps each paying a checkpoint and a log row",
    )
    sched_on_updates: bool = _opt(
        False,
        "--sched-on-updates",
        group="schedule",
        negative="--no-sched-on-updates",
        help="step the lr schedule (warmup and decay) after every optimizer update, not once per epoch "
        "(timm's flag): a short run's first epoch is not spent at --warmup-lr",
    )
    cooldown_epochs: int = _opt(
        10,
        "--cooldown-epochs",
        group="schedule",
        metavar="N",
        help="epochs at min_lr after a cyclic schedule (timm; unused by the loop)",
    )
    patience_epochs: int = _opt(
        10, "--patience-epochs", group="schedule", metavar="N", help="patience of the plateau scheduler"
    )
    decay_rate: float = _opt(0.1, "--decay-rate", "--dr", group="schedule", metavar="RATE", help="lr decay rate")
    # -- augmentation (official)
    color_jitter: float = _opt(0.3, "--color-jitter", group="augmentation", metavar="PCT", help="color jitter factor")
    aa: str = _opt(
        "rand-m9-mstd0.5-inc1",
        "--aa",
        group="augmentation",
        metavar="NAME",
        help="AutoAugment / RandAugment policy ('none' to disable)",
    )
    hflip: float = _opt(
        0.5,
        "--hflip",
        group="augmentation",
        metavar="PCT",
        help="horizontal flip probability in training (ours, as timm's; 0 for digits and text)",
    )
    smoothing: float = _opt(0.1, "--smoothing", group="augmentation", help="label smoothing")
    train_interpolation: str = _opt(
        "bicubic",
        "--train-interpolation",
        group="augmentation",
        help="training resize interpolation (random, bilinear, bicubic)",
    )
    scale: list[float] | None = _opt(
        None,
        "--scale",
        group="augmentation",
        kind="floats",
        metavar="PCT",
        help="RandomResizedCrop: the range of the crop's area, as a fraction of the image's (timm's flag; "
        "default: 0.08 1.0; inputs > 32 px, whose crop is RandomResizedCrop)",
    )
    ratio: list[float] | None = _opt(
        None,
        "--ratio",
        group="augmentation",
        kind="floats",
        metavar="RATIO",
        help="RandomResizedCrop: the range of the crop's aspect ratio, width / height (timm's flag; default: "
        "0.75 1.333)",
    )
    repeated_aug: bool = _opt(
        True,
        "--repeated-aug",
        negative="--no-repeated-aug",
        group="augmentation",
        help="repeated augmentation (each image 3 times per epoch, across processes)",
    )
    train_mode: bool = _opt(
        True,
        "--train-mode",
        negative="--no-train-mode",
        group="augmentation",
        help="keep the model in training mode while training (off: eval-mode BN/dropout)",
    )
    three_augment: bool = _opt(
        False,
        "--ThreeAugment",
        "--three-augment",
        group="augmentation",
        help="3-Augment (DeiT III): grayscale / solarize / blur, then color jitter",
    )
    src: bool = _opt(False, "--src", group="augmentation", help="simple random crop (DeiT III)")
    reprob: float = _opt(0.25, "--reprob", group="augmentation", metavar="PCT", help="random erase probability")
    remode: str = _opt("pixel", "--remode", group="augmentation", help="random erase mode")
    recount: int = _opt(1, "--recount", group="augmentation", help="random erase count")
    resplit: bool = _opt(
        False,
        "--resplit",
        group="augmentation",
        help="accepted, without effect: the official code declares it and never reads it",
    )
    # -- mixup / cutmix (official)
    mixup: float = _opt(0.8, "--mixup", group="mixup", help="mixup alpha (on if > 0)")
    cutmix: float = _opt(1.0, "--cutmix", group="mixup", help="cutmix alpha (on if > 0)")
    cutmix_minmax: list[float] | None = _opt(
        None, "--cutmix-minmax", group="mixup", kind="floats", help="cutmix min/max ratio (overrides alpha)"
    )
    mixup_prob: float = _opt(1.0, "--mixup-prob", group="mixup", help="probability of mixup or cutmix")
    mixup_switch_prob: float = _opt(
        0.5, "--mixup-switch-prob", group="mixup", help="probability of cutmix when both are on"
    )
    mixup_mode: str = _opt(
        "batch", "--mixup-mode", group="mixup", choices=("batch", "pair", "elem"), help="per batch, pair or element"
    )
    # -- distillation (official)
    teacher_model: str = _opt(
        "regnety_160",
        "--teacher-model",
        group="distillation",
        metavar="MODEL",
        help="teacher architecture (timm / torchvision name)",
    )
    teacher_path: str = _opt(
        "",
        "--teacher-path",
        group="distillation",
        help="teacher weights (a file, a URL, or a checkpoint written by `deit train`)",
    )
    distillation_type: str = _opt(
        "none",
        "--distillation-type",
        group="distillation",
        choices=("none", "soft", "hard", "labels"),
        help="what the distillation head learns from: none (official: nothing; the loss "
        "is the class head's), soft / hard (the teacher), labels (ours: the paper's "
        "two-class-token control, both heads on the labels, no teacher)",
    )
    distillation_alpha: float = _opt(
        0.5, "--distillation-alpha", group="distillation", help="weight of the distillation term"
    )
    distillation_tau: float = _opt(
        1.0, "--distillation-tau", group="distillation", help="temperature of soft distillation"
    )
    distillation_kl_reduction: str = _opt(
        "official",
        "--distillation-kl-reduction",
        group="distillation",
        choices=("official", "batchmean"),
        help="soft distillation's KL scaling: official (summed KL / (batch x "
        "classes) x tau^2, as released) or batchmean (Hinton et al.: / batch "
        "x tau^2; `classes` times stronger)",
    )
    cosub: bool = _opt(
        False,
        "--cosub",
        group="distillation",
        help="co-training of two stochastic-depth sub-models (official DeiT III engine): each image twice "
        "per step, BCE on the labels and on the other sub-model's detached sigmoid; replaces the loss",
    )
    # -- fine-tuning (official)
    finetune: str = _opt(
        "",
        "--finetune",
        group="finetune",
        help="start from these weights (pos_embed resampled, mismatched heads dropped)",
    )
    attn_only: bool = _opt(
        False, "--attn-only", group="finetune", help="fine-tune the attention layers, heads and pos_embed only"
    )
    map_classes_by_position: bool = _opt(
        False,
        "--map-classes-by-position",
        group="finetune",
        help="--finetune: keep the heads of a checkpoint whose class names differ from the data's, paired by index "
        "(default: refused; the same names in another order are reordered by name)",
    )
    # -- fine-tuning (ours; timm's names where timm has the flag)
    recipe: str = _opt(
        "",
        "--recipe",
        group="finetune",
        metavar="NAME",
        help="named small-data settings, each overridable by its own flag: finetune (from "
        "pretrained weights) or small-data (from scratch, the demo's); docs/finetune.md",
    )
    layer_decay: float | None = _opt(
        None,
        "--layer-decay",
        group="finetune",
        kind=float,
        metavar="RATE",
        help="layer-wise lr decay (timm): block i of N gets lr x RATE^(N-i); the head keeps the full lr (default: off)",
    )
    grad_accum_steps: int = _opt(
        1,
        "--grad-accum-steps",
        group="finetune",
        metavar="N",
        help="add up the gradients of N batches per optimizer step (timm's flag): a batch "
        "N times larger in memory of one; the lr scales with the larger batch",
    )
    class_balanced: bool = _opt(
        False,
        "--class-balanced",
        group="finetune",
        help="draw every class equally often per epoch (with replacement), for imbalanced "
        "folders; replaces repeated augmentation",
    )
    linear_probe: bool = _opt(
        False, "--linear-probe", group="finetune", help="train the classification head(s) only, on a frozen backbone"
    )
    # -- data (official; 'auto' is the official IMNET default when a --data-path is given, else our DIGITS)
    data_path: str = _opt(
        "", "--data-path", group="data", help="data root (IMNET: train/ and val/ class folders); DIGITS needs none"
    )
    data_set: str = _opt(
        "auto",
        "--data-set",
        group="data",
        help="auto (IMNET, the official default, when --data-path is given; else the embedded, "
        "offline DIGITS), IMNET, IMAGEFOLDER, INAT, INAT19 (iNaturalist 2018/2019, official json "
        "layout; INAT also class folders), CIFAR (CIFAR-100), "
        "CIFAR100, CIFAR10, DIGITS, DIGITS-CANVAS (the digits at random positions on a 32 px canvas), "
        "SYNTHETIC, WDS (tar shards of `deit data pack`), "
        "HF (a Hugging Face dataset on disk)",
    )
    inat_category: str = _opt(
        "name",
        "--inat-category",
        group="data",
        choices=("kingdom", "phylum", "class", "order", "supercategory", "family", "genus", "name"),
        help="iNaturalist label granularity (INAT, INAT19 json layout)",
    )
    train_subset: float = _opt(
        1.0,
        "--train-subset",
        group="data",
        metavar="SIZE",
        help="train on a stratified, seeded subset of the training split: a fraction in "
        "(0, 1] or a number of images (ours; 1 = all; nested across sizes)",
    )
    train_subset_seed: int = _opt(0, "--train-subset-seed", group="data", help="seed that draws --train-subset")
    download: bool = _opt(False, "--download", group="data", help="allow downloading CIFAR (off: offline)")
    strict_data: bool = _opt(
        False,
        "--strict-data",
        group="data",
        help="unreadable images are an error before training instead of being skipped",
    )
    data_loader: str = _opt(
        "auto",
        "--data-loader",
        group="data",
        choices=("auto", "memory", "torch", "dali"),
        help="memory: the training set decoded once into one uint8 tensor on the device and augmented "
        "per batch (DIGITS, CIFAR, image folders up to --memory-cap-gib; the crop (padded at <= 32 px, "
        "RandomResizedCrop above), flip, random erasing; not RandAugment, colour jitter, 3-Augment); "
        "torch: DataLoader workers decode and augment per image (the official loader); dali: NVIDIA DALI "
        "on the GPU (extra [dali]; class folders and WDS shards); auto: memory where it applies, "
        "else torch (ours)",
    )
    memory_cap_gib: float = _opt(
        2.0,
        "--memory-cap-gib",
        group="data",
        metavar="GIB",
        help="the most an image folder may take decoded on the in-memory path; over it the run says so "
        "and --data-loader auto decodes per image (ours)",
    )
    teacher_table: str = _opt(
        "auto",
        "--teacher-table",
        group="data",
        choices=("auto", "on", "off"),
        help="with --data-loader memory, no mixup and no --reprob: look the teacher's logits up in a table "
        "of every (image, crop view) computed once, instead of a forward per step; auto: "
        "when the run draws at least as many samples as the table has, or the table is "
        "already in --teacher-table-dir (ours)",
    )
    teacher_table_dir: str = _opt(
        "",
        "--teacher-table-dir",
        group="data",
        metavar="DIR",
        help="keep teacher tables here, keyed by teacher checkpoint hash, data and views, "
        "so runs with the same teacher share one (empty: in memory only; ours)",
    )
    seeded_stream: bool = _opt(
        False,
        "--seeded-stream",
        group="data",
        help="draw each sample's augmentation from generators seeded by (seed, epoch, rank, position) and "
        "mixup's by (seed, epoch, rank, step): batches independent of --num_workers and of resumes, what "
        "--teacher-labels replays (ours; docs/teacher_labels.md)",
    )
    teacher_labels: str = _opt(
        "",
        "--teacher-labels",
        group="distillation",
        metavar="DIR",
        help="replay the teacher's outputs stored by `deit teacher-labels --output DIR` instead of running "
        "the teacher; implies --seeded-stream; the manifest must match this run (ours)",
    )
    shuffle_buffer: int = _opt(
        1000, "--shuffle-buffer", group="data", help="WDS: samples in the webdataset shuffle buffer of each reader"
    )
    hf_image_column: str = _opt("image", "--hf-image-column", group="data", help="HF: the image column")
    hf_label_column: str = _opt("label", "--hf-label-column", group="data", help="HF: the class-label column")
    hf_train_split: str = _opt("train", "--hf-train-split", group="data", help="HF: the training split's name")
    hf_val_split: str = _opt("validation", "--hf-val-split", group="data", help="HF: the validation split's name")
    max_classes: int = _opt(
        100_000,
        "--max-classes",
        group="data",
        help="HF with plain integer labels: the most classes the labels may imply (a label "
        "of 10^9 would otherwise size the model's head)",
    )
    # -- run (official)
    output_dir: str = _opt("", "--output_dir", "--output-dir", group="run", help="run directory (empty: save nothing)")
    device: str = _opt(
        "auto",
        "--device",
        group="run",
        help="auto (cuda if available, else cpu), cuda, cuda:N, cpu (official default: cuda)",
    )
    seed: int = _opt(0, "--seed", group="run", help="random seed (each process adds its rank)")
    resume: str = _opt(
        "",
        "--resume",
        group="run",
        help="checkpoint to continue from, or 'auto' (the run directory's checkpoint.pth, if any)",
    )
    start_epoch: int = _opt(
        0,
        "--start_epoch",
        "--start-epoch",
        group="run",
        metavar="N",
        help="first epoch (a resumed run starts after the checkpoint's epoch)",
    )
    eval: bool = _opt(False, "--eval", group="run", help="evaluate only (the --resume or --finetune weights)")
    overwrite_output: bool = _opt(
        False,
        "--overwrite-output",
        group="run",
        help="start a fresh run in an --output_dir that holds another run's checkpoint",
    )
    eval_crop_ratio: float = _opt(0.875, "--eval-crop-ratio", group="run", help="center-crop ratio at evaluation")
    dist_eval: bool = _opt(False, "--dist-eval", group="run", help="split evaluation across processes")
    num_workers: int = _opt(10, "--num_workers", "--num-workers", group="run", help="data loader workers")
    pin_mem: bool = _opt(True, "--pin-mem", negative="--no-pin-mem", group="run", help="pin loader memory (CUDA only)")
    # -- distributed (official)
    distributed: bool = _opt(
        False,
        "--distributed",
        group="distributed",
        help="require a distributed launch (torchrun / SLURM are detected anyway)",
    )
    world_size: int = _opt(
        1,
        "--world_size",
        "--world-size",
        group="distributed",
        help="number of processes (taken from the launcher's environment)",
    )
    dist_url: str = _opt(
        "env://", "--dist_url", "--dist-url", group="distributed", help="init_method of the process group"
    )
    # -- ours: engine, logging, robustness
    model_kwargs: dict[str, Any] = _opt(
        {},
        "--model-kwargs",
        group="engine",
        kind="mapping",
        help='constructor overrides as JSON/YAML, e.g. \'{"depth": 2, "patch_size": 4}\'',
    )
    amp: str = _opt(
        "auto",
        "--amp",
        group="engine",
        choices=("auto", "bf16", "fp16", "none"),
        help="mixed precision: auto = bf16 on CUDA, none on CPU; fp16 uses a grad scaler",
    )
    compile: bool = _opt(False, "--compile", group="engine", help="torch.compile the student and the teacher")
    log_format: str = _opt(
        "auto",
        "--log-format",
        group="engine",
        choices=("auto", "bar", "plain"),
        help="progress bars on a terminal (auto), or one line per --log-interval steps",
    )
    log_interval: int = _opt(
        50, "--log-interval", group="engine", metavar="N", help="steps between progress lines and NaN checks"
    )
    nan_policy: str = _opt(
        "stop",
        "--nan-policy",
        group="engine",
        choices=("stop", "skip"),
        help="non-finite loss: stop (keep the last good checkpoint) or skip the batch",
    )
    keep_every: int = _opt(
        0,
        "--keep-every",
        group="engine",
        metavar="N",
        help="also keep checkpoint_epochN.pth every N epochs (0: only the latest and best)",
    )
    eval_interval: int = _opt(
        1,
        "--eval-interval",
        group="engine",
        metavar="N",
        help="evaluate after every N-th epoch and after the last (1: every epoch, as the "
        "official code); a checkpoint is still written every epoch",
    )
    checkpoint_every: int = _opt(
        1,
        "--checkpoint-every",
        group="engine",
        metavar="N",
        help="write checkpoint.pth after every N-th epoch, after an improvement and after the last (1: every "
        "epoch, as the official code); a run of sub-second epochs spends more on the atomic, synced write than "
        "on training; a kill loses at most N-1 epochs",
    )
    threads: int = _opt(
        0,
        "--threads",
        group="engine",
        metavar="N",
        help="torch intra-op threads (0: the usable cores left by the loader workers, never more than "
        "torch's own default, which OMP_NUM_THREADS sets; printed on the first lines). On a shared or "
        "loaded machine fewer threads than cores are often faster",
    )
    max_steps_per_epoch: int = _opt(
        0,
        "--max-steps-per-epoch",
        group="engine",
        metavar="N",
        help="cap the steps of each epoch (smoke tests; 0: full epochs)",
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str/int/float/bool/list/dict/None), as saved in `config.yaml` and checkpoints."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _yaml_key_index() -> dict[str, str]:
    """Every spelling a YAML key may use: field names, dashed names, and flag names without dashes."""
    index: dict[str, str] = {}
    for name, f in _FIELDS.items():
        index[name] = name
        index[name.replace("_", "-")] = name
        for flag in f.metadata["flags"]:
            index[flag.lstrip("-")] = name
    return index


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every `TrainConfig` flag (and `--config`); unset flags stay absent so YAML can fill them."""
    parser.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="YAML",
        help="YAML file of settings (field or flag names); flags given here override it",
    )
    groups: dict[str, Any] = {}
    for name, f in _FIELDS.items():
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = f.default if f.default is not dataclasses.MISSING else {}
        # A help that states its own default ("default: off") is not followed by the raw one ("default: None").
        help_text = meta["help"] if "(default:" in meta["help"] else f"{meta['help']} (default: {default!r})"
        if meta["kind"] is bool:
            group.add_argument(
                *meta["flags"], dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text
            )
            if meta["negative"]:
                group.add_argument(
                    meta["negative"],
                    dest=name,
                    action="store_false",
                    default=argparse.SUPPRESS,
                    help=f"turn off {meta['flags'][0]}",
                )
            continue
        kwargs: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=help_text, metavar=meta["metavar"])
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["kind"] == "floats":
            kwargs.update(type=float, nargs="+")
        elif meta["kind"] == "mapping":
            kwargs.update(type=str, metavar=meta["metavar"] or "JSON")
        else:
            kwargs["type"] = meta["kind"]
        group.add_argument(*meta["flags"], **kwargs)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check and convert one value to its field's type; the error names the key and where it came from."""
    value = _convert(name, value, source)
    bound = bound_for("train", name)
    if bound is not None and value is not None:
        where = source if source.startswith("--") else f"{source}: '{name}'"
        problem = check_value(bound, value, where)
        if problem:
            raise DeitError(problem)
    return value


def _convert(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].metadata["kind"]
    where = f"{source}: '{name}'"
    if value is None:
        default = _FIELDS[name].default
        if default is None or default == "":
            return default  # optional settings: null means "not set"
        raise DeitError(f"{where} may not be empty")
    if kind == "mapping":
        if isinstance(value, str):
            try:
                value = safe_load_no_aliases(value) if value.strip() else {}
            except yaml.YAMLError as error:
                raise DeitError(f"{where} is not valid JSON/YAML: {str(error).splitlines()[0]}") from error
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise DeitError(f'{where} must be a mapping of constructor arguments, e.g. {{"depth": 2}}')
        return dict(value)
    if kind == "floats":
        values = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise DeitError(f"{where} must be a list of numbers, got {value!r}")
        return [float(v) for v in values]
    if kind is bool:
        if not isinstance(value, bool):
            raise DeitError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DeitError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DeitError(f"{where} must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        return str(value)
    choices = _FIELDS[name].metadata["choices"]
    if choices and value not in choices:
        raise DeitError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def load_yaml_settings(path: str | Path) -> dict[str, Any]:
    """Read a `--config` YAML file into field names -> checked values; unknown keys get close matches."""
    path = Path(path)
    text = read_text_file(path, flag="--config")  # a FIFO, a folder or non-UTF-8 bytes: one line naming it
    try:
        raw = safe_load_no_aliases(text) or {}
    except yaml.YAMLError as error:
        raise DeitError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(raw, dict):
        raise DeitError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    index = _yaml_key_index()
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = index.get(str(key))
        if name is None:
            close = difflib.get_close_matches(str(key), list(index), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise DeitError(f"{path}: unknown setting '{key}'{hint}")
        settings[name] = _coerce(name, value, str(path))
    return settings


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the `--config` YAML, then the flags actually given on the command line."""
    given = vars(args)
    settings: dict[str, Any] = {}
    if "config" in given:  # `--config ''` is a missing file, not "no config"
        settings.update(load_yaml_settings(given["config"]))
    for name in _FIELDS:
        if name in given:
            settings[name] = _coerce(name, given[name], _FIELDS[name].metadata["flags"][0])
    return TrainConfig(**_resolved(settings))


def _resolved(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings given, on top of their recipe, with what `--finetune`'s checkpoint says where not given."""
    from deit.engine.finetune import fill_from_checkpoint
    from deit.engine.recipes import apply_recipe

    return fill_from_checkpoint(apply_recipe(settings))


def make_config(**settings: Any) -> TrainConfig:
    """A `TrainConfig` from keyword settings (the Python API), type-checked like YAML."""
    unknown = [k for k in settings if k not in _FIELDS]
    if unknown:
        raise DeitError(f"unknown setting '{unknown[0]}'")
    return TrainConfig(**_resolved({k: _coerce(k, v, "make_config") for k, v in settings.items()}))


def save_config_yaml(config: TrainConfig, path: str | Path, *, comments: Sequence[str] = ()) -> None:
    """Write the resolved configuration as YAML (loadable again with `--config`), `comments` as # lines on top."""
    from deit.io import atomic_write

    header = "".join("# " + line.replace("\n", " ") + "\n" for line in comments)
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_config_bounds(config: TrainConfig) -> None:
    """Every bounded setting of `config` against `deit.flag_bounds` (for configs built without `_coerce`)."""
    for name, f in _FIELDS.items():
        bound, value = bound_for("train", name), getattr(config, name)
        if bound is not None and value is not None:
            problem = check_value(bound, value, f.metadata["flags"][0])
            if problem:
                raise DeitError(problem)


def inert_official_flags(config: TrainConfig) -> list[str]:
    """Official flags that are set but do nothing, in the official code as here: one line each, to say so."""
    return ["--resplit has no effect (the official code declares it and never reads it)"] if config.resplit else []
