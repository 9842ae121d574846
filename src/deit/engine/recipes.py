"""Named recipes (`--recipe`): the documented small-data settings in one word, and the warnings of a small run.

A recipe sits between the defaults and everything the user gives: defaults < recipe < `--config` YAML < flags,
so any of its settings can be overridden flag by flag. The defaults stay the paper's ImageNet recipe.
"""

from __future__ import annotations

from typing import Any

from deit.errors import DeitError

# What "a small data set" changes in the ImageNet recipe, measured in docs/demo.md and docs/finetune.md: the lr as
# given (the /512 scaling makes a small batch's lr negligible), short warmup, no EMA (0.99996 per step averages
# over far more steps than a small run has), and none of the heavy regularisers (RandAugment, mixup/cutmix,
# random erasing, repeated augmentation), which slow learning far more than they help at this scale.
_SMALL_DATA_AUGMENTATION: dict[str, Any] = dict(
    aa="none",
    mixup=0.0,
    cutmix=0.0,
    reprob=0.0,
    repeated_aug=False,
    color_jitter=0.0,
    model_ema=False,
    unscale_lr=True,
    smoothing=0.1,
    weight_decay=0.05,
    sched="cosine",
    # The schedule (warmup included) stepped per update: a short run's first epoch is not spent at --warmup-lr.
    sched_on_updates=True,
    # Above 32 px the crop is RandomResizedCrop: keep at least 35% of the image (torchvision's 8% loses a small
    # set's off-centre objects in most crops).
    scale=[0.35, 1.0],
)

RECIPES: dict[str, dict[str, Any]] = {
    # From pretrained weights: a small lr that leaves the features mostly in place, reached within the first
    # epoch (the schedule is stepped per update).
    "finetune": dict(
        _SMALL_DATA_AUGMENTATION, lr=1e-4, min_lr=1e-6, warmup_epochs=1, warmup_lr=1e-6, epochs=30, drop_path=0.1
    ),
    # From scratch on a few thousand images: the demo's recipe (docs/demo.md), minus its digit-only settings.
    "small-data": dict(
        _SMALL_DATA_AUGMENTATION, lr=1e-3, min_lr=1e-5, warmup_epochs=2, warmup_lr=1e-6, epochs=12, drop_path=0.0
    ),
}


def apply_recipe(settings: dict[str, Any], *, source: str = "--recipe") -> dict[str, Any]:
    """`settings` on top of its recipe's values (the settings given win); unchanged without a recipe."""
    name = settings.get("recipe") or ""
    if not name:
        return settings
    if name not in RECIPES:
        raise DeitError(f"{source} {name}: unknown recipe; choose one of {', '.join(RECIPES)}")
    return {**RECIPES[name], **settings}


def describe_recipe(config: Any) -> str | None:
    """One line: the recipe's settings as run, each overridden one marked with the recipe's value."""
    if not config.recipe:
        return None
    parts = []
    for name, value in RECIPES[config.recipe].items():
        actual = getattr(config, name)
        flag = "--" + name.replace("_", "-")
        parts.append(f"{flag} {_show(actual)}" + ("" if actual == value else f" (yours; recipe {_show(value)})"))
    return f"--recipe {config.recipe}: " + ", ".join(parts)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def small_run_warnings(config: Any, *, world_size: int) -> list[str]:
    """Settings that waste a short or small-batch run without a word: warmup as long as the run, an lr that the
    /512 scaling makes negligible (at or below the cosine's floor, so the schedule never rises)."""
    from deit.engine.optim import scaled_lr

    problems = []
    if config.warmup_epochs and config.warmup_epochs >= config.epochs > 0:
        problems.append(
            f"--warmup-epochs {config.warmup_epochs} ≥ --epochs {config.epochs}: the whole run is "
            f"warmup from --warmup-lr {config.warmup_lr:g} and never reaches --lr; lower --warmup-epochs"
            + ("" if config.recipe else " (or try --recipe finetune / small-data)")  # not to a run that has one
        )
    batch = config.batch_size * config.grad_accum_steps
    lr = scaled_lr(config.lr, batch, world_size, unscale=config.unscale_lr)
    if not config.unscale_lr and lr <= max(config.min_lr, config.warmup_lr):
        problems.append(
            f"--lr {config.lr:g} × total batch {batch * world_size}/512 = {lr:.3g}, not "
            f"above --min-lr {config.min_lr:g} / --warmup-lr {config.warmup_lr:g}: the schedule never "
            f"rises; pass --unscale-lr to use --lr as is, or a larger --lr"
        )
    return problems
