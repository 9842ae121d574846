"""A model card (README.md) for an exported model: training data, recipe, teacher and evaluation figures."""

from __future__ import annotations

import json
from pathlib import Path

from deit.inference.record import training_record
from deit.models.meta import CheckpointMeta

_RECIPE_KEYS = ("epochs", "batch_size", "opt", "lr", "weight_decay", "sched", "warmup_epochs", "smoothing",
                "mixup", "cutmix", "aa", "reprob", "drop_path", "repeated_aug", "three_augment", "bce_loss", "seed")
_METRIC_KEYS = ("acc1", "acc5", "cls_acc1", "dist_acc1", "teacher_acc1", "teacher_agreement")


def model_card(checkpoint: str | Path, meta: CheckpointMeta, *, fmt: str) -> str:
    """Markdown stating what the exported weights are, how they were trained and how well they did."""
    record = training_record(checkpoint)
    args = record.args
    name, size = meta.model, meta.input_size or 224
    lines = [f"---\nlibrary_name: {'transformers' if fmt == 'hf' else 'timm'}\ntags: [image-classification, deit]\n"
             f"---\n", f"# {name}", "",
             f"Exported by `deit export --format {fmt}` from `{Path(checkpoint).name}`.", "",
             f"- architecture: `{name}` {json.dumps(meta.model_kwargs)}, "
             + ("distilled (class + distillation heads, averaged at inference)" if meta.distilled
              else "one class head"),
             f"- classes: {meta.num_classes} ({', '.join(meta.class_names[:10])}"
             f"{', ...' if len(meta.class_names) > 10 else ''})",
             f"- preprocessing: resize shorter side to {int(size / meta.crop_pct)} "
             f"({meta.interpolation}), center crop {size}, mean {list(meta.mean)}, std {list(meta.std)}", ""]
    if not args:
        lines += ["No training record: these weights did not come from a `deit train` checkpoint.", ""]
        return "\n".join(lines)
    data = args.get("data_set", "?") + (f" (`{args['data_path']}`)" if args.get("data_path") else "")
    lines += ["## Training", "", f"- data: {data}, input size {args.get('input_size')}",
              "- recipe: " + (f"--recipe {args['recipe']}; " if args.get("recipe") else "")
              + ", ".join(f"{k}={args[k]}" for k in _RECIPE_KEYS if k in args)]
    origin = meta.extra.get("finetuned_from")
    if isinstance(origin, dict):
        lines.append(f"- fine-tuned from: `{origin.get('source')}` ({origin.get('trained_as') or 'no deit meta'})")
    distillation = args.get("distillation_type", "none")
    if distillation != "none":
        lines.append(f"- teacher: `{args.get('teacher_model')}` from `{args.get('teacher_path') or '-'}`, "
                     f"{distillation} distillation, alpha={args.get('distillation_alpha')}, "
                     f"tau={args.get('distillation_tau')}")
    else:
        lines.append("- teacher: none (no distillation)")
    lines += ["", "## Evaluation (validation split, from the checkpoint)", "",
              f"- epochs completed: {int(record.epoch) + 1 if record.epoch is not None else '?'}",
              f"- best top-1: {record.best_acc}"]
    last = record.last_log
    for key in _METRIC_KEYS:
        if f"test_{key}" in last:
            lines.append(f"- last epoch {key}: {last[f'test_{key}']}")
    return "\n".join(lines) + "\n"


__all__ = ["model_card"]
