"""Teacher weights: fetch (file or URL, cached), read safely with their meta, load with a class-count check.

Reading (with the meta a teacher needs: normalisation, input size, class count, checked against the tensors),
unwrapping and downloading are the checkpoint module's (`deit.models.checkpoint`, `.download`); what is added
here is a class-count mismatch reported as such rather than as a mis-shaped head.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from deit.errors import DeitError
from deit.models.checkpoint import load_state_dict_strict, read_trained_weights
from deit.models.download import fetch_checkpoint, is_url
from deit.models.meta import CheckpointMeta


def read_teacher_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Tensor], CheckpointMeta | None]:
    """`(state_dict, meta)` from a local file, directory or http(s) URL; meta is None unless the file has one."""
    url = str(checkpoint)
    path = fetch_checkpoint(url, local_option="checkpoint=") if is_url(url) else Path(checkpoint)
    if not path.exists():
        raise DeitError(f"{path}: no such teacher checkpoint file")
    # Tensors checked finite and the (untrusted) meta against them, before the teacher is built from it.
    state, _, meta = read_trained_weights(path)
    return state, meta


def load_teacher_weights(model: nn.Module, state: dict[str, Tensor], *, label: str, num_classes: int) -> None:
    """Load `state` strictly; a classifier of another size becomes a one-line class-count error."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and value.shape != own[key].shape and _is_classifier(own[key], num_classes, value):
            raise DeitError(
                f"{label} predicts {value.shape[0]} classes but the data has {num_classes}; "
                f"give a teacher trained on the same classes"
            )
    load_state_dict_strict(model, state, source=label)


def class_count_of(model: nn.Module) -> int | None:
    """How many classes `model` predicts: its `num_classes`, else its last Linear layer's width."""
    count = getattr(model, "num_classes", None)
    if isinstance(count, int):
        return count
    last_linear = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
    return last_linear.out_features if last_linear is not None else None


def _is_classifier(own: Tensor, num_classes: int, theirs: Tensor) -> bool:
    # A head weight (C, D) or bias (C,) that differs only in C, the number of classes.
    return (
        own.dim() in (1, 2)
        and own.shape[0] == num_classes
        and theirs.dim() == own.dim()
        and theirs.shape[1:] == own.shape[1:]
    )
