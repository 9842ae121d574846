"""Does a state dict fit a model: key names and shapes compared, the misfits named in one line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deit.errors import DeitError, short_list


def check_key_names(
    state_dict: Mapping[str, Any], target: Mapping[str, Any], *, optional: set[str], source: str
) -> None:
    """Refuse missing (not `optional`) or unexpected keys, naming a few of each."""
    missing = [key for key in target if key not in state_dict and key not in optional]
    unexpected = [key for key in state_dict if key not in target]
    problems = []
    if missing:
        problems.append(f"missing key(s) {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {short_list(unexpected)}")
    if problems:
        raise DeitError(f"{source}: does not fit the model: {'; '.join(problems)}")


def check_shapes(state_dict: Mapping[str, Any], target: Mapping[str, Any], *, source: str) -> None:
    """Refuse keys present in both whose shapes differ (values: tensors, or anything with `.shape`)."""
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} vs model {tuple(target[key].shape)}"
        for key in state_dict
        if key in target and tuple(state_dict[key].shape) != tuple(target[key].shape)
    ]
    if wrong:
        raise DeitError(f"{source}: mis-shaped key(s) {short_list(wrong)}")
