"""The optimisation recipe: decay-free groups, linear lr scaling, cosine with warmup stepped per epoch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deit import create_model
from deit.engine.optim import build_optimizer, build_scheduler, current_lr, keep_kernel_choice, param_groups, scaled_lr
from deit.errors import DeitError


def tiny_vit() -> nn.Module:
    return create_model(
        "deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2, num_classes=10
    )


def test_lr_scales_with_the_total_batch() -> None:
    assert scaled_lr(5e-4, 1024, 1) == pytest.approx(1e-3)
    assert scaled_lr(5e-4, 256, 4) == pytest.approx(1e-3)
    assert scaled_lr(5e-4, 64, 1, unscale=True) == 5e-4


def test_no_weight_decay_on_biases_norms_tokens_and_pos_embed() -> None:
    model = tiny_vit()
    no_decay, decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert {"cls_token", "dist_token", "pos_embed", "norm.weight", "norm.bias", "head.bias"} <= no_decay_names
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "head.weight", "head_dist.weight"} <= decay_names
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert len(no_decay_names) + len(decay_names) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out() -> None:
    model = tiny_vit()
    model.patch_embed.requires_grad_(False)
    groups = param_groups(model, 0.05)
    assert all(p.requires_grad for g in groups for p in g["params"])


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("lamb", None), ("sgd", torch.optim.SGD)])
def test_optimizers_by_name_keep_the_groups(name: str, cls: type | None) -> None:
    optimizer = build_optimizer(
        tiny_vit(), opt=name, lr=1e-3, weight_decay=0.05, eps=1e-8, betas=None, momentum=0.9, device=torch.device("cpu")
    )
    if cls is not None:
        assert isinstance(optimizer, cls)
    else:
        assert "lamb" in type(optimizer).__name__.lower()
    assert sorted(g["weight_decay"] for g in optimizer.param_groups) == [0.0, 0.05]
    # Adam(W) takes torch's fused kernel on CPU too; the other optimizers have none.
    assert bool(optimizer.defaults.get("fused")) is (name == "adamw")


def _trained_weights(optimizer_for: object, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = tiny_vit()
    optimizer = optimizer_for(model)  # type: ignore[operator]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images, labels = torch.randn(4, 3, 32, 32, generator=generator), torch.randint(0, 10, (4,), generator=generator)
        class_logits, dist_logits = model(images)
        loss = nn.functional.cross_entropy(class_logits, labels) + dist_logits.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_cpu_adamw_is_the_fused_kernel_with_the_per_parameter_loops_update() -> None:
    def ours(model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(
            model,
            opt="adamw",
            lr=1e-3,
            weight_decay=0.05,
            eps=1e-8,
            betas=None,
            momentum=0.9,
            device=torch.device("cpu"),
        )

    def per_parameter_loop(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, eps=1e-8, foreach=False)

    assert ours(tiny_vit()).defaults["fused"] is True  # the fast path is really taken
    fast, reference = _trained_weights(ours), _trained_weights(per_parameter_loop)
    # The same update, rounded in another order, not bit for bit: after 5 steps no weight is further from the
    # loop's than 1% of one step (lr 1e-3; Adam's m/sqrt(v) magnifies last-bit differences of tiny gradients).
    # Except the key bias (the middle third of qkv.bias): softmax ignores a constant added to every logit of a
    # row, so its true gradient is zero and both optimizers step on rounding noise (~1e-10), which Adam scales
    # up to updates of ~1e-5 that round differently; there, the two stay within one step (lr) of each other.
    names = [name for name, _ in tiny_vit().named_parameters()]
    for name, a, b in zip(names, fast, reference, strict=True):
        if name.endswith("attn.qkv.bias"):
            third = a.shape[0] // 3
            assert float((a[third : 2 * third] - b[third : 2 * third]).abs().max()) < 1e-3
            a, b = torch.cat([a[:third], a[2 * third :]]), torch.cat([b[:third], b[2 * third :]])
        assert float((a - b).abs().max()) < 1e-5, name
    assert not all(torch.equal(a, b) for a, b in zip(fast, _trained_weights(ours, steps=0)))  # and they moved


def test_a_resumed_optimizer_keeps_this_runs_kernel_not_the_checkpoints() -> None:
    model = tiny_vit()
    # As an older CPU run (or the official code on another device) saves: the multi-tensor kernel.
    saved = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, foreach=True)
    optimizer = build_optimizer(
        model, opt="adamw", lr=1e-3, weight_decay=0.05, eps=1e-8, betas=None, momentum=0.9, device=torch.device("cpu")
    )
    optimizer.load_state_dict(saved.state_dict())
    assert all(group["foreach"] and not group["fused"] for group in optimizer.param_groups)  # loading alone
    keep_kernel_choice(optimizer)
    assert all(group["fused"] is True and not group["foreach"] for group in optimizer.param_groups)


def test_unknown_optimizer_is_a_user_error() -> None:
    with pytest.raises(DeitError, match="--opt adamz"):
        build_optimizer(
            tiny_vit(),
            opt="adamz",
            lr=1e-3,
            weight_decay=0.0,
            eps=1e-8,
            betas=None,
            momentum=0.9,
            device=torch.device("cpu"),
        )


def test_cosine_with_linear_warmup_per_epoch() -> None:
    optimizer, scheduler = _scheduler(updates_per_epoch=0)
    lrs = [current_lr(optimizer)]
    for epoch in range(1, 11):
        scheduler.step(epoch)
        lrs.append(current_lr(optimizer))
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)  # linear warmup, halfway
    expected_5 = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 5 / 10))
    assert lrs[5] == pytest.approx(expected_5)
    assert lrs[10] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def _scheduler(updates_per_epoch: int, sched: str = "cosine") -> tuple[torch.optim.Optimizer, object]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = build_scheduler(
        optimizer,
        sched=sched,
        epochs=10,
        warmup_epochs=2,
        warmup_lr=1e-6,
        min_lr=1e-5,
        decay_epochs=30,
        decay_rate=0.1,
        cooldown_epochs=10,
        patience_epochs=10,
        lr_noise=None,
        lr_noise_pct=0.67,
        lr_noise_std=1.0,
        seed=0,
        updates_per_epoch=updates_per_epoch,
    )
    return optimizer, scheduler


def test_cosine_with_linear_warmup_per_update() -> None:
    # --sched-on-updates: the same shape in epochs, but every update moves the lr (4 updates an epoch here).
    optimizer, scheduler = _scheduler(updates_per_epoch=4)
    lrs = [current_lr(optimizer)]
    for update in range(1, 41):
        scheduler.step_update(update)
        lrs.append(current_lr(optimizer))
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 8)  # one eighth of the 8-update warmup
    assert lrs[4] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)  # where the per-epoch warmup is after 1 epoch
    expected_20 = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 20 / 40))  # timm: t counts from 0
    assert lrs[20] == pytest.approx(expected_20)
    assert all(a >= b for a, b in zip(lrs[8:], lrs[9:]))
    scheduler.step(1)  # the epoch step does nothing to a per-update schedule
    assert current_lr(optimizer) == pytest.approx(lrs[-1])


def test_plateau_cannot_step_per_update() -> None:
    with pytest.raises(DeitError, match="--sched plateau.*--sched-on-updates"):
        _scheduler(updates_per_epoch=4, sched="plateau")
