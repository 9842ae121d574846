"""Official `--data-set IMNET` checkpoints of a smaller class folder: the official code gives every IMNET run a
1000-class head, whatever the folder holds. Such a head is kept (evaluation, `--eval --resume`, `--resume`) and
scored as the official code scores it, over all of its outputs: a prediction outside the data's classes is a
mistake. One line says so."""

from __future__ import annotations

from typing import Any

from deit.data.datasets import data_set_key

WIDE_HEAD_DATA_SETS = ("IMNET", "IMAGEFOLDER")  # the class folders the official code reads with 1000 classes


def head_width(state_dict: Any) -> int | None:
    """The number of classes of a DeiT/ViT state dict's head (None without one)."""
    head = state_dict.get("head.weight") if isinstance(state_dict, dict) else None
    return int(head.shape[0]) if head is not None and head.ndim == 2 else None


def keeps_wide_head(head_classes: int | None, data_classes: int, data_set: str) -> bool:
    """Whether a head of `head_classes` outputs is kept on a class folder of fewer classes."""
    return head_classes is not None and head_classes > data_classes and data_set_key(data_set) in WIDE_HEAD_DATA_SETS


def wide_head_note(source: str, head_classes: int, data_classes: int) -> str:
    """The one line that says the head is wider than the data, and how it is scored."""
    return (
        f"{source}: its head predicts {head_classes} classes, the data has {data_classes} (the official code "
        f"builds {head_classes} for any --data-set IMNET folder); kept and scored as there, over all "
        f"{head_classes} outputs (a prediction outside the {data_classes} classes is a mistake)"
    )


def padded_names(class_names: list[str], head_classes: int) -> list[str]:
    """The data's class names, then a name for each further output of the head."""
    return list(class_names) + [f"class_{index}" for index in range(len(class_names), head_classes)]
