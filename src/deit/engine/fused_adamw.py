"""`optimizer.step()` and `zero_grad()` of torch's fused AdamW without torch.optim's per-call Python.

`torch.optim.AdamW(fused=True).step()` wraps one kernel call in profiler records, grad-mode and compile guards,
hook loops and a regrouping of every parameter by device and dtype. At the demo's size (35 tensors, a 4-6 ms
step) that wrapper costs ~5% of a training step and `zero_grad` ~1% more (measured interleaved in one process,
benchmarks/BENCHMARKS.md). `DirectFusedAdamW` calls the same kernel, `torch._fused_adamw_`, with the same
arguments, read from the optimizer's own state at each step: the weights and optimizer state are bit-identical
to `optimizer.step()` (tests/engine/test_engine_fused_adamw.py).

The optimizer stays the object that is saved, resumed and scheduled. Whatever the direct call does not cover
(the first step, which creates the state; a parameter without a gradient; hooks; a patched `step`; amsgrad,
maximize, a tensor lr) goes through `optimizer.step()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

_UNSUPPORTED_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable")


class DirectFusedAdamW:
    """Steps a fused `torch.optim.AdamW` with one kernel call per parameter group; see the module docstring."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        #: How many steps went through the kernel directly (the rest through `optimizer.step()`).
        self.direct_steps = 0

    @staticmethod
    def supports(optimizer: torch.optim.Optimizer) -> bool:
        """True for a `torch.optim.AdamW` whose every group runs the fused kernel (CPU or CUDA)."""
        return type(optimizer) is torch.optim.AdamW and all(group.get("fused") for group in optimizer.param_groups)

    def zero_grad(self) -> None:
        """`optimizer.zero_grad(set_to_none=True)`: every parameter's gradient dropped."""
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def step(self) -> None:
        """One AdamW update, bit-identical to `optimizer.step()`."""
        groups = self._groups() if self._usable() else None
        if groups is None:
            self.optimizer.step()
            return
        for group, params, grads, exp_avgs, exp_avg_sqs, steps in groups:
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
        self.direct_steps += 1

    def _usable(self) -> bool:
        optimizer = self.optimizer
        if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
            return False
        if _global_optimizer_pre_hooks or _global_optimizer_post_hooks or "step" in vars(optimizer):
            return False  # hooks, or a step wrapped by someone (an LR scheduler counting calls)
        for group in optimizer.param_groups:
            if not group.get("fused") or isinstance(group["lr"], Tensor):
                return False
            if any(group.get(flag) for flag in _UNSUPPORTED_FLAGS):
                return False
        return True

    def _groups(self) -> list[tuple[Any, ...]] | None:
        """Per group: (group, params, grads, exp_avgs, exp_avg_sqs, steps), read from the optimizer's state at
        every step (nothing cached that `load_state_dict` could leave stale); None when a parameter has no
        gradient or no state yet (the first step creates it), which `optimizer.step()` handles."""
        state, groups = self.optimizer.state, []
        for group in self.optimizer.param_groups:
            params = group["params"]
            if not params:
                continue
            grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
            kind = (params[0].device, params[0].dtype)  # one kernel call takes one device and dtype
            for parameter in params:
                grad, entry = parameter.grad, state.get(parameter)
                if grad is None or not entry or "exp_avg" not in entry or grad.is_sparse or parameter.is_complex():
                    return None
                if (parameter.device, parameter.dtype) != kind:
                    return None
                grads.append(grad)
                exp_avgs.append(entry["exp_avg"])
                exp_avg_sqs.append(entry["exp_avg_sq"])
                steps.append(entry["step"])
            groups.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
        return groups
