"""`optimizer.step()` and `zero_grad()` of torch's fused AdamW without torch.optim's per-call Python.

`torch.optim.AdamW(fused=True).step()` wraps one kernel call in profiler records, grad-mode and compile guards,
hook loops and a regrouping of every parameter by device and dtype. At the demo's size (35 tensors, a 4-6 ms
step) that wrapper costs ~5% of a training step and `zero_grad` ~1% more (measured interleaved in one process,
benchmarks/BENCHMARKS.md). `DirectFusedAdamW` calls the same kernel, `torch._fused_adamw_`, with the same
arguments, on lists built once: the weights and optimizer state are bit-identical to `optimizer.step()`
(tests/engine/test_engine_fused_adamw.py).

The optimizer stays the object that is saved, resumed and scheduled. Whatever the direct call does not cover
(the first step, which creates the state; a parameter without a gradient; a state or parameter groups replaced
by `load_state_dict`; hooks; a patched `step`; amsgrad, maximize, a tensor lr) goes through `optimizer.step()`.
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
        self._groups: list[tuple[dict[str, Any], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]] = []
        self._built_for: tuple[Any, ...] = ()

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
        grads = self._gradients() if self._usable() else None
        if grads is None:
            self.optimizer.step()
            self._build()
            return
        for (group, params, exp_avgs, exp_avg_sqs, steps), group_grads in zip(self._groups, grads):
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                params,
                group_grads,
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

    def _key(self) -> tuple[Any, ...]:
        # What load_state_dict or add_param_group replaces: the state and group containers themselves.
        optimizer = self.optimizer
        return (id(optimizer.state), id(optimizer.param_groups), len(optimizer.state)) + tuple(
            id(group["params"]) for group in optimizer.param_groups
        )

    def _usable(self) -> bool:
        optimizer = self.optimizer
        if not self._groups or self._key() != self._built_for:
            return False
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

    def _gradients(self) -> list[list[Tensor]] | None:
        """Each group's gradients, or None when one is missing (then optimizer.step() knows what to do)."""
        grads = []
        for _, params, _, _, _ in self._groups:
            group_grads = [parameter.grad for parameter in params]
            if any(grad is None or grad.is_sparse for grad in group_grads):
                return None
            grads.append(group_grads)
        return grads

    def _build(self) -> None:
        """The per-group lists, from the state `optimizer.step()` has created (none before the first step)."""
        optimizer, groups = self.optimizer, []
        for group in optimizer.param_groups:
            params = list(group["params"])
            if not params:
                continue
            states = [optimizer.state.get(parameter) for parameter in params]
            if any(not state or "exp_avg" not in state for state in states) or any(p.is_complex() for p in params):
                self._groups, self._built_for = [], ()
                return
            exp_avgs = [state["exp_avg"] for state in states]
            exp_avg_sqs = [state["exp_avg_sq"] for state in states]
            groups.append((group, params, exp_avgs, exp_avg_sqs, [state["step"] for state in states]))
        self._groups, self._built_for = groups, self._key()
