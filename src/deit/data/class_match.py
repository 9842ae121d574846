"""Classes are matched by name: a data set's class names against a checkpoint's, before a single image is scored.

The same names in another order are mapped by name; other names are refused unless the caller asks to map by
position (then the report says so); a checkpoint that records no names can only be matched by position.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from deit.errors import DeitError, short_list

#: `--map-classes-by-position`'s help, shared by the commands that score data against a checkpoint's classes.
MAP_BY_POSITION_HELP = (
    "score data whose class names differ from the checkpoint's by position (default: refused; the same names in "
    "another order are always matched by name)"
)
SAME_NAMES = "by name (the same names in the same order)"  # the usual case: nothing to point out
_GENERIC = re.compile(r"(class_|LABEL_)?\d+")  # what a file without names gets (`class_3`, `3`, HF's `LABEL_3`)


@dataclass(frozen=True)
class ClassMatch:
    """`order[data index]` is the checkpoint's index of that class; `how` is what the report says."""

    order: tuple[int, ...]
    how: str

    @property
    def identity(self) -> bool:
        """Whether every data class is the checkpoint's class of the same index."""
        return all(index == position for position, index in enumerate(self.order))


def match_classes(
    checkpoint_names: Sequence[str], data_names: Sequence[str], *, source: str, data: str, by_position: bool = False
) -> ClassMatch:
    """Match `data_names` to `checkpoint_names` (same count, checked by the caller) by name; `source` and `data`
    name the checkpoint and the data set in the refusal. Empty `checkpoint_names`: the file records none (weights
    alone, whose names were only guessed), so by position."""
    model, ours = [str(n) for n in checkpoint_names], [str(n) for n in data_names]
    position = tuple(range(len(ours)))
    if model == ours:
        return ClassMatch(position, SAME_NAMES)
    if not model or all(_GENERIC.fullmatch(name) for name in model):
        return ClassMatch(position, "by position (the checkpoint records no class names)")
    if sorted(model) == sorted(ours) and len(set(model)) == len(model):
        return ClassMatch(tuple(model.index(name) for name in ours), "by name (the data lists them in another order)")
    if by_position:
        return ClassMatch(position, "by position, as --map-classes-by-position asks (the names differ)")
    differ = [f"{mine!r} vs {theirs!r}" for mine, theirs in zip(ours, model) if mine != theirs]
    raise DeitError(
        f"{data}: its class names are not {source}'s ({len(differ)} of {len(ours)} differ: {short_list(differ, 3)}); "
        f"pass --map-classes-by-position to match them by position"
    )


class RelabelledDataset(Dataset):
    """`dataset` whose targets are renumbered into the checkpoint's class indices (`order[target]`)."""

    def __init__(self, dataset: Any, order: Sequence[int]) -> None:
        self.dataset, self.order = dataset, list(order)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self.dataset[index]
        return image, self.order[int(target)]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "order"):  # not set yet (unpickling in a worker): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)  # `samples`, `classes` ... for the report
