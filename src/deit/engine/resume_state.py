"""What a `--resume` file holds: full training state or weights only; its optimizer state checked against the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deit.errors import DeitError

TRAINING_STATE_KEYS = ("optimizer", "lr_scheduler", "epoch")

# States that mirror their parameter element by element (Adam/AdamW/LAMB/NAdam/RAdam/Lion/AdaBelief/Adan/SGD/
# RMSprop/Adagrad ...). Factored states (Adafactor's row/column moments) legitimately have other shapes.
ELEMENTWISE_STATES = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_avg_var", "exp_avg_diff",
                                "pre_grad", "momentum_buffer", "momentum", "square_avg", "grad_avg", "acc_delta",
                                "sum", "exp_inf"})


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
                    raise DeitError(f"--resume {source}: optimizer state '{key}' of {name} has shape "
                                    f"{tuple(value.shape)}, the parameter {tuple(parameter.shape)} (saved with "
                                    f"another parameter order or model; use --finetune to start from its weights)")
