"""What a `--resume` file must hold, checked where it is read, one line naming file and key: the type of each
entry, full training state or weights only, and optimizer state shaped like the model's parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deit.errors import DeitError

_NUMBER = (int, float)


def validate_checkpoint_structure(checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse entries of the wrong type (a list for `model`, a string `epoch`, a malformed `rng` ...)."""

    def fail(key: str, expected: str) -> None:
        found = type(checkpoint[key]).__name__
        raise DeitError(f"{path}: entry '{key}' is malformed (expected {expected}, found {found})")

    for key in ("model", "model_ema"):
        if key in checkpoint and not _tensor_mapping(checkpoint[key]):
            fail(key, "a mapping of parameter names to tensors")
    for key in ("meta", "args", "lr_scheduler", "scaler"):
        if checkpoint.get(key) is not None and not _str_keyed(checkpoint[key]):
            fail(key, "a mapping with string keys")
    optimizer = checkpoint.get("optimizer")
    if optimizer is not None and not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
        and all(isinstance(g, dict) for g in optimizer["param_groups"])
    ):
        fail("optimizer", "an optimizer state dict with 'state' and 'param_groups'")
    if "epoch" in checkpoint and not (_integer(checkpoint["epoch"]) and checkpoint["epoch"] >= -1):
        fail("epoch", "a whole number >= -1")  # -1 would be "before the first epoch"; less is nonsense
    if "global_step" in checkpoint and not (_integer(checkpoint["global_step"]) and checkpoint["global_step"] >= 0):
        fail("global_step", "a whole number >= 0")
    if "best_acc" in checkpoint and not (
        isinstance(checkpoint["best_acc"], _NUMBER) and not isinstance(checkpoint["best_acc"], bool)
    ):
        fail("best_acc", "a number")
    rng = checkpoint.get("rng")
    if rng and not _rng_state(rng):
        fail("rng", "the RNG state deit train records (torch, numpy, python)")


def _rng_state(rng: Any) -> bool:
    if not isinstance(rng, dict):
        return False
    if "ranks" in rng and not (isinstance(rng["ranks"], list) and all(_rng_state(r) for r in rng["ranks"])):
        return False
    numpy_state, python_state = rng.get("numpy"), rng.get("python")
    return (
        isinstance(rng.get("torch"), Tensor)
        and isinstance(numpy_state, dict)
        and isinstance(numpy_state.get("name"), str)
        and isinstance(numpy_state.get("keys"), Tensor)
        and numpy_state["keys"].numel() == 624
        and all(_integer(numpy_state.get(k)) for k in ("pos", "has_gauss"))
        and isinstance(numpy_state.get("cached_gaussian"), _NUMBER)
        and isinstance(python_state, (list, tuple))
        and len(python_state) == 3
        and _integer(python_state[0])
        and isinstance(python_state[1], (list, tuple))
        and all(_integer(x) for x in python_state[1])
        and (python_state[2] is None or isinstance(python_state[2], _NUMBER))
    )


def _tensor_mapping(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())


def _str_keyed(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_scheduler_state(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A saved scheduler state may only set the attributes the scheduler has, with values of their types."""
    for key, value in saved.items():
        if key not in current:
            raise DeitError(f"{path}: entry 'lr_scheduler' has an unknown key '{key}'")
        expected = current[key]
        same = (
            value is None
            or expected is None
            or type(value) is type(expected)
            or (
                isinstance(value, _NUMBER)
                and isinstance(expected, _NUMBER)
                and not isinstance(value, bool)
                and not isinstance(expected, bool)
            )
        )
        if not same:
            raise DeitError(
                f"{path}: entry 'lr_scheduler' key '{key}' is malformed (expected "
                f"{type(expected).__name__}, found {type(value).__name__})"
            )


TRAINING_STATE_KEYS = ("optimizer", "lr_scheduler", "epoch")

# States that mirror their parameter element by element (Adam/AdamW/LAMB/NAdam/RAdam/Lion/AdaBelief/Adan/SGD/
# RMSprop/Adagrad ...). Factored states (Adafactor's row/column moments) legitimately have other shapes.
ELEMENTWISE_STATES = frozenset(
    {
        "exp_avg",
        "exp_avg_sq",
        "max_exp_avg_sq",
        "exp_avg_var",
        "exp_avg_diff",
        "pre_grad",
        "momentum_buffer",
        "momentum",
        "square_avg",
        "grad_avg",
        "acc_delta",
        "sum",
        "exp_inf",
    }
)


def has_training_state(checkpoint: dict[str, Any]) -> bool:
    """Whether the file can continue a run (the official test): optimizer, lr_scheduler and epoch all present."""
    return all(key in checkpoint for key in TRAINING_STATE_KEYS)


def check_state_shapes(optimizer: torch.optim.Optimizer, model: nn.Module, source: Path | str) -> None:
    """Refuse optimizer state whose element-wise tensors are not shaped like their parameter.

    `optimizer.load_state_dict` matches states to parameters by position only: a checkpoint whose parameters
    were registered in another order would crash at the first step (different shapes) or silently train with
    another parameter's moments (same shapes; only the registration order itself prevents that).
    """
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if key in ELEMENTWISE_STATES and torch.is_tensor(value) and value.shape != parameter.shape:
                    name = names.get(id(parameter), "an unnamed parameter")
                    raise DeitError(
                        f"--resume {source}: optimizer state '{key}' of {name} has shape "
                        f"{tuple(value.shape)}, the parameter {tuple(parameter.shape)} (saved with "
                        f"another parameter order or model; use --finetune to start from its weights)"
                    )
