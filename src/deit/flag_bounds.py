"""The values every numeric flag accepts, in one table: finite, and within the range where the value means something.

`deit` checks each numeric flag of each subcommand against `bound_for(command, dest)` when it parses the command
line (`apply_bounds`), and `deit train` checks YAML and Python-API settings against the same table, so `--lr inf`,
`--momentum nan`, `--world_size -1` or `--recount 10**20` are one line naming the flag and its reason, never a
run. A flag added later gets its bound here: a test walks every parser and fails on a numeric flag without one.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

HUGE_COUNT = 10**9  # counts (epochs, steps, images) beyond this are typos, and some loop over them eagerly


@dataclass(frozen=True)
class Bound:
    """An interval [low, high] (an end open where `*_open`); `lengths`: how many values a list flag takes."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    lengths: tuple[int, ...] = ()

    def reason(self, value: float) -> str | None:
        """Why `value` is refused (None when accepted): not finite, or outside the interval."""
        try:
            number = float(value)
        except OverflowError:  # a whole number beyond float: compare it as an infinity of its sign
            number = math.inf if value > 0 else -math.inf
        else:
            if not math.isfinite(number):
                return "must be a finite number"
        below = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        above = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        return f"must be {self.describe()}" if below or above else None

    def describe(self) -> str:
        """The interval in words: 'in [0, 1)', 'at least 1', 'positive' ..."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            if self.low == 0:
                return "positive" if self.low_open else "at least 0"
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"{'below' if self.high_open else 'at most'} {self.high:g}" if self.high is not None else "finite"


def unit(*, low_open: bool = False, high_open: bool = False) -> Bound:
    """A probability or fraction: [0, 1], ends open as asked."""
    return Bound(0, 1, low_open=low_open, high_open=high_open)


def count(low: int = 0, high: int = HUGE_COUNT) -> Bound:
    """A whole number of things (epochs, workers, steps ...)."""
    return Bound(low, high)


def positive(high: float) -> Bound:
    """A finite value above 0, at most `high`."""
    return Bound(0, high, low_open=True)


# Flags meaning the same in every subcommand that has them (argparse `dest` names).
SHARED: dict[str, Bound] = {
    "batch_size": count(1, 65536),
    "num_workers": count(0, 1024),
    "workers": count(0, 1024),
    "eval_crop_ratio": unit(low_open=True),  # train, eval, predict, export
    "max_model_gb": positive(1e6),  # every subcommand (deit.cli): the cap on a model a file describes
}

# Per subcommand: `deit train`'s keys are `TrainConfig` field names (its YAML keys and `args` attributes).
BOUNDS: dict[str, dict[str, Bound]] = {
    "train": {
        "epochs": count(1),
        "bce_target_thresh": unit(high_open=True),
        "input_size": count(1, 4096),
        "drop": unit(high_open=True),
        "drop_path": unit(high_open=True),  # 1 drops everything: nothing is learnt
        "model_ema_decay": unit(low_open=True, high_open=True),
        "opt_eps": positive(1.0),
        "opt_betas": Bound(0, 1, high_open=True, lengths=(2, 3)),
        "clip_grad": positive(1e6),
        "momentum": unit(high_open=True),
        "weight_decay": Bound(0, 10),
        "lr": positive(10.0),
        "lr_noise": Bound(0, HUGE_COUNT, lengths=(1, 2)),
        "lr_noise_pct": Bound(0, 1),
        "lr_noise_std": Bound(0, 100),
        "warmup_lr": Bound(0, 10),
        "min_lr": Bound(0, 10),
        "decay_epochs": positive(HUGE_COUNT),
        "warmup_epochs": count(),
        "epoch_repeats": count(1, 10_000),
        "checkpoint_every": count(1),
        "cooldown_epochs": count(),
        "patience_epochs": count(),
        "decay_rate": unit(low_open=True),
        "color_jitter": Bound(0, 10),
        "hflip": unit(),
        "scale": Bound(0, 1, low_open=True, lengths=(2,)),
        "ratio": Bound(0, 100, low_open=True, lengths=(2,)),
        "smoothing": unit(high_open=True),
        "reprob": unit(),
        "recount": count(1, 100),  # boxes erased per image; timm draws each one in a loop
        "mixup": Bound(0, 1000),
        "cutmix": Bound(0, 1000),
        "cutmix_minmax": Bound(0, 1, low_open=True, lengths=(2,)),
        "mixup_prob": unit(),
        "mixup_switch_prob": unit(),
        "distillation_alpha": unit(),
        "distillation_tau": positive(1000),
        "train_subset": positive(HUGE_COUNT),
        "train_subset_seed": count(0, 2**32 - 1),
        "shuffle_buffer": count(0, 10**7),
        "seed": count(0, 2**32 - 1),
        "start_epoch": count(),
        "world_size": count(1, 65536),
        "log_interval": count(),
        "keep_every": count(),
        "eval_interval": count(1),
        "max_steps_per_epoch": count(),
        "threads": count(0, 4096),
        "memory_cap_gib": positive(1e6),
        "max_classes": count(1, HUGE_COUNT),  # the head is built from it: the data's labels are checked against it
        "layer_decay": unit(low_open=True),
        "grad_accum_steps": count(1, 65536),
    },
    "eval": {"worst": count(0, 100000)},
    "export": {
        "opset": count(14, 23),  # what torch.onnx writes; below 14 there is no scaled_dot_product_attention
        "tolerance": Bound(0, 1),
        "min_agreement": unit(),
        "batch_size": count(1, 1024),  # the largest verification batch: random images, held at once
    },
    "predict": {"topk": count(1, 100000)},
    "data": {"shard_size": count(1, 10**7)},
}
# `deit teacher-labels` takes the training flags (the stream it stores) and how many logits to keep.
BOUNDS["teacher-labels"] = {**BOUNDS["train"], "top_k": count(0, 10**7)}


# `deit submit` takes every `deit train` flag, and the official submitit ones.
BOUNDS["submit"] = {**BOUNDS["train"], "ngpus": count(1, 1024), "nodes": count(1, 100000), "timeout": count(1)}


def bound_for(command: str, dest: str) -> Bound | None:
    """The bound of `dest` in `command` (its own entry first, then the shared one), or None."""
    return BOUNDS.get(command, {}).get(dest) or SHARED.get(dest)


def check_value(bound: Bound, value: Any, where: str) -> str | None:
    """The one-line reason `value` (a number or a list of numbers) breaks `bound`, prefixed by `where`; or None."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and bound.lengths and len(values) not in bound.lengths:
        return f"{where}: takes {' or '.join(str(n) for n in bound.lengths)} values, got {len(values)}"
    for item in values:
        reason = bound.reason(item)
        if reason:
            return f"{where} {item!r}: {reason}" if isinstance(value, (list, tuple)) else f"{where} {item}: {reason}"
    return None


def check_bounds(command: str, **values: Any) -> None:
    """The Python API's side of the table: raise a one-line `DeitError` for the first value out of its bound."""
    from deit.errors import DeitError

    for dest, value in values.items():
        bound = bound_for(command, dest)
        problem = check_value(bound, value, "--" + dest.replace("_", "-")) if bound and value is not None else None
        if problem:
            raise DeitError(problem)


def numeric_actions(parser: argparse.ArgumentParser, command: str) -> Iterator[tuple[str, argparse.Action]]:
    """(subcommand path, action) of every int/float flag of `parser` and its sub-parsers (`data pack` ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from numeric_actions(sub, f"{command} {name}")
        elif action.option_strings and _base_type(action.type) in (int, float):
            yield command, action


def apply_bounds(parser: argparse.ArgumentParser, command: str) -> None:
    """Make each bounded numeric flag of `parser` refuse out-of-bound values at parse time (a parser error)."""
    for path, action in numeric_actions(parser, command):
        bound = bound_for(path.split()[0], action.dest)
        if bound is not None:
            action.type = _bounded(_base_type(action.type), bound)


def _base_type(kind: Any) -> Any:
    return getattr(kind, "base_type", kind)


def _bounded(kind: Callable[[str], Any], bound: Bound) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)  # argparse turns its ValueError into "invalid int value: ..."
        reason = bound.reason(value)
        if reason:
            raise argparse.ArgumentTypeError(f"{text} {reason}")
        return value

    parse.base_type = kind  # type: ignore[attr-defined]
    parse.__name__ = kind.__name__  # argparse names the type in "invalid <name> value"
    return parse


__all__ = [
    "BOUNDS",
    "HUGE_COUNT",
    "SHARED",
    "Bound",
    "apply_bounds",
    "bound_for",
    "check_bounds",
    "check_value",
    "count",
    "numeric_actions",
    "positive",
    "unit",
]
