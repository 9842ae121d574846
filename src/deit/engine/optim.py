"""The paper's optimisation recipe: decay-free parameter groups, AdamW/LAMB via timm, lr scaling, cosine + warmup."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deit.errors import DeitError

#: Devices where torch's fused Adam(W) kernel exists (CPU from torch 2.4, the floor pyproject.toml sets).
FUSED_ADAM_DEVICES = ("cuda", "cpu")


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


def layer_decay_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """timm's `param_groups_layer_decay`: each group carries an `lr_scale` (decay^(depth - layer)) that timm's
    schedulers apply; the head keeps the full lr. No weight decay on 1-D parameters and `no_weight_decay()`, as
    `param_groups`."""
    from timm.optim import param_groups_layer_decay

    if not 0.0 < layer_decay <= 1.0:
        raise DeitError(f"--layer-decay {layer_decay:g}: must be in (0, 1] (e.g. 0.65, 0.75; 1 = no decay)")
    skip = sorted(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else []
    return param_groups_layer_decay(
        model, weight_decay=weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay
    )


def build_optimizer(
    model: nn.Module,
    *,
    opt: str,
    lr: float,
    weight_decay: float,
    eps: float,
    betas: list[float] | None,
    momentum: float,
    device: torch.device,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """timm's optimizer factory over `param_groups` (timm's layer-decay groups with `layer_decay`); Adam(W) runs the
    fused kernel on CPU and GPU (multi-tensor elsewhere)."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {"eps": eps}
    if betas:
        if len(betas) != 2:
            raise DeitError(f"--opt-betas takes two numbers, got {len(betas)}")
        kwargs["betas"] = tuple(betas)
    if opt.lower() in {"adamw", "adam"}:
        # torch's default is a per-parameter loop on CPU. The fused kernel (CPU since torch 2.4, CUDA) is the
        # same update in one pass per parameter: 0.30 ms against 0.64 ms (multi-tensor) and ~0.9 ms (loop) per
        # step of the demo's student. It rounds differently from the loop in the last bit, so weights of a
        # run are not bit-identical to the official code's on CPU; they are to another `deit` run's.
        kwargs["fused" if device.type in FUSED_ADAM_DEVICES else "foreach"] = True
    groups = (
        param_groups(model, weight_decay)
        if layer_decay is None
        else layer_decay_groups(model, weight_decay, layer_decay)
    )
    if not any(group["params"] for group in groups):
        raise DeitError("the model has no trainable parameters")
    try:
        return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, momentum=momentum, **kwargs)
    except (AssertionError, ValueError) as error:
        raise DeitError(f"--opt {opt}: {error}") from error


def keep_kernel_choice(optimizer: torch.optim.Optimizer) -> None:
    """After `load_state_dict`: the run's own `foreach`/`fused` flags, not those of the machine that saved it.

    A checkpoint's parameter groups carry them, so a CPU run's file resumed on a GPU would lose the fused
    kernel, and a GPU run's file resumed on a CPU would take the fused kernel there (other rounding).
    """
    for group in optimizer.param_groups:
        for key in ("foreach", "fused"):
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    sched: str,
    epochs: int,
    warmup_epochs: int,
    warmup_lr: float,
    min_lr: float,
    decay_epochs: float,
    decay_rate: float,
    cooldown_epochs: int,
    patience_epochs: int,
    lr_noise: list[float] | None,
    lr_noise_pct: float,
    lr_noise_std: float,
    seed: int,
    updates_per_epoch: int = 0,
) -> Any:
    """A timm scheduler (cosine + linear warmup by default): stepped once after every epoch, or, given
    `updates_per_epoch`, after every optimizer update (`step_update`) with the same shape in epochs."""
    from timm.scheduler import create_scheduler_v2

    if updates_per_epoch and sched == "plateau":
        raise DeitError("--sched plateau reacts to each epoch's accuracy: it cannot take --sched-on-updates")
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=sched,
            num_epochs=epochs,
            decay_epochs=decay_epochs,
            cooldown_epochs=cooldown_epochs,
            patience_epochs=patience_epochs,
            decay_rate=decay_rate,
            min_lr=min_lr,
            warmup_lr=warmup_lr,
            warmup_epochs=warmup_epochs,
            noise=lr_noise,
            noise_pct=lr_noise_pct,
            noise_std=lr_noise_std,
            noise_seed=seed,
            step_on_epochs=not updates_per_epoch,
            updates_per_epoch=updates_per_epoch,
        )
    except (AssertionError, ValueError) as error:
        reason = str(error) or f"timm's scheduler refused these settings ({type(error).__name__})"
        raise DeitError(f"--sched {sched}: {reason}") from error
    if scheduler is None:
        raise DeitError(f"--sched {sched}: unknown scheduler; try cosine, step, multistep, plateau, tanh, poly")
    return scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest learning rate among the parameter groups (they share one schedule)."""
    return max(group["lr"] for group in optimizer.param_groups)
