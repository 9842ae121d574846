"""A model card (README.md) for an exported model: training data, recipe, teacher and evaluation figures."""

from __future__ import annotations

import json
from pathlib import Path

from deit.inference.record import training_record
from deit.integrity import source_sha256
from deit.models.meta import CheckpointMeta

DEFAULT_LICENSE = "other"  # the Hub's value for "see the card"; `deit export --license` sets a real one

_RECIPE_KEYS = (
    "epochs",
    "batch_size",
    "opt",
    "lr",
    "weight_decay",
    "sched",
    "warmup_epochs",
    "smoothing",
    "mixup",
    "cutmix",
    "aa",
    "reprob",
    "drop_path",
    "repeated_aug",
    "three_augment",
    "bce_loss",
    "seed",
)
_METRIC_KEYS = ("acc1", "acc5", "cls_acc1", "dist_acc1", "teacher_acc1", "teacher_agreement")


def model_card(checkpoint: str | Path, meta: CheckpointMeta, *, fmt: str, license: str = DEFAULT_LICENSE) -> str:
    """Markdown stating what the exported weights are, where they came from, how they were trained, how well they
    did, under which licence and for what use."""
    record = training_record(checkpoint)
    args = record.args
    name, size = meta.model, meta.input_size or 224
    lines = [
        f"---\nlibrary_name: {'transformers' if fmt == 'hf' else 'timm'}\nlicense: {license}\n"
        f"tags: [image-classification, deit]\n---\n",
        f"# {name}",
        "",
        f"Exported by `deit export --format {fmt}` from `{Path(checkpoint).name}` "
        f"(sha256 `{source_sha256(checkpoint)}`).",
        "",
        f"- architecture: `{name}` {json.dumps(meta.model_kwargs)}, "
        f"{'distilled (class + distillation heads, averaged at inference)' if meta.distilled else 'one class head'}",
        f"- classes: {meta.num_classes} ({', '.join(meta.class_names[:10])}"
        f"{', ...' if len(meta.class_names) > 10 else ''})",
        f"- preprocessing: resize shorter side to {int(size / meta.crop_pct)} "
        f"({meta.interpolation}), center crop {size}, mean {list(meta.mean)}, std {list(meta.std)}",
        "",
    ]
    if not args:
        lines += ["No training record: these weights did not come from a `deit train` checkpoint.", ""]
        return "\n".join(lines + _use_and_licence(meta, license))
    data = str(args.get("data_set", "?")) + (f" (`{args['data_path']}`)" if args.get("data_path") else "")
    recipe = {k: args[k] for k in _RECIPE_KEYS if k in args}
    if record.lr_used is not None:  # the flag is the lr for a batch of 512; the run used the scaled one
        recipe["lr"] = (
            f"{record.lr_used:.4g} (--lr {args.get('lr')} scaled to the batch)"
            if not args.get("unscale_lr")
            else record.lr_used
        )
    lines += [
        "## Origin",
        "",
        _origin_line(args, meta),
        "",
        "## Training",
        "",
        f"- data: {data}, input size {args.get('input_size')}",
        "- recipe: "
        + (f"--recipe {args['recipe']}; " if args.get("recipe") else "")
        + ", ".join(f"{k}={v}" for k, v in recipe.items()),
    ]
    distillation = args.get("distillation_type", "none")
    if distillation != "none":
        lines.append(
            f"- teacher: `{args.get('teacher_model')}` from `{args.get('teacher_path') or '-'}`, "
            f"{distillation} distillation, alpha={args.get('distillation_alpha')}, "
            f"tau={args.get('distillation_tau')}"
        )
    else:
        lines.append("- teacher: none (no distillation)")
    lines += [
        "",
        "## Evaluation (validation split, from the checkpoint)",
        "",
        f"- epochs completed: {int(record.epoch) + 1 if record.epoch is not None else '?'}",
        f"- best top-1: {record.best_acc}",
    ]
    last = record.last_log
    for key in _METRIC_KEYS:
        if f"test_{key}" in last:
            lines.append(f"- last epoch {key}: {last[f'test_{key}']}")
    return "\n".join(lines + [""] + _use_and_licence(meta, license))


def _origin_line(args: dict, meta: CheckpointMeta) -> str:
    """Where the weights started: the `--finetune` source (with what it was, when its meta said) or scratch."""
    origin = meta.extra.get("finetuned_from")
    if isinstance(origin, dict):
        return f"- fine-tuned from: `{origin.get('source')}` ({origin.get('trained_as') or 'no deit meta'})"
    if args.get("finetune"):
        return f"- fine-tuned from: `{args['finetune']}`"
    return "- trained from scratch (no --finetune)"


def _use_and_licence(meta: CheckpointMeta, license: str) -> list[str]:
    return [
        "## Intended use",
        "",
        f"Image classification into the {meta.num_classes} classes above, on images like the training data, "
        f"preprocessed as stated. Every input gets one of these classes, including images of none of them: "
        f"the model was evaluated only on the validation split named above.",
        "",
        "## Licence",
        "",
        f"- these weights: `{license}` (set with `deit export --license`)",
        "- code: the `deit` package (Apache-2.0, as the official DeiT release); the terms of the training "
        "data (and of any --finetune source) also apply to weights learnt from it",
        "",
    ]


__all__ = ["DEFAULT_LICENSE", "model_card", "training_record"]


__all__ = ["DEFAULT_LICENSE", "model_card"]
