"""The paper's optimisation recipe: decay-free parameter groups, AdamW/LAMB via timm, lr scaling, cosine + warmup."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deit.errors import DeitError


def scaled_lr(lr: float, batch_size: int, world_size: int, *, unscale: bool = False) -> float:
    """The paper's linear rule: `lr x total batch / 512` (as is with `unscale`)."""
    return lr if unscale else lr * batch_size * world_size / 512.0


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weight-decayed matrices, and 1-D parameters (biases, norms) plus `model.no_weight_decay()`."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # frozen (e.g. --attn-only): the optimiser never sees it
        if parameter.ndim <= 1 or name in skip or name.endswith(".bias"):
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(model: nn.Module, *, opt: str, lr: float, weight_decay: float, eps: float,
                    betas: list[float] | None, momentum: float, device: torch.device) -> torch.optim.Optimizer:
    """timm's optimizer factory over `param_groups`; AdamW uses the fused CUDA kernel on GPU."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {"eps": eps}
    if betas:
        if len(betas) != 2:
            raise DeitError(f"--opt-betas takes two numbers, got {len(betas)}")
        kwargs["betas"] = tuple(betas)
    if opt.lower() in {"adamw", "adam"} and device.type == "cuda":
        kwargs["fused"] = True
    groups = param_groups(model, weight_decay)
    if not any(group["params"] for group in groups):
        raise DeitError("the model has no trainable parameters")
    try:
        return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, momentum=momentum,
                                   **kwargs)
    except (AssertionError, ValueError) as error:
        raise DeitError(f"--opt {opt}: {error}") from error


def build_scheduler(optimizer: torch.optim.Optimizer, *, sched: str, epochs: int, warmup_epochs: int,
                    warmup_lr: float, min_lr: float, decay_epochs: float, decay_rate: float, cooldown_epochs: int,
                    patience_epochs: int, lr_noise: list[float] | None, lr_noise_pct: float, lr_noise_std: float,
                    seed: int) -> Any:
    """A timm epoch scheduler (cosine + linear warmup by default), stepped once after every epoch."""
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=sched, num_epochs=epochs, decay_epochs=decay_epochs, cooldown_epochs=cooldown_epochs,
            patience_epochs=patience_epochs, decay_rate=decay_rate, min_lr=min_lr, warmup_lr=warmup_lr,
            warmup_epochs=warmup_epochs, noise=lr_noise, noise_pct=lr_noise_pct, noise_std=lr_noise_std,
            noise_seed=seed, step_on_epochs=True)
    except (AssertionError, ValueError) as error:
        reason = str(error) or f"timm's scheduler refused these settings ({type(error).__name__})"
        raise DeitError(f"--sched {sched}: {reason}") from error
    if scheduler is None:
        raise DeitError(f"--sched {sched}: unknown scheduler; try cosine, step, multistep, plateau, tanh, poly")
    return scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest learning rate among the parameter groups (they share one schedule)."""
    return max(group["lr"] for group in optimizer.param_groups)
