"""`--finetune CKPT`: the model comes from the checkpoint's meta unless given, and the run says what it adapted.

Two moments: `fill_from_checkpoint` (while the settings are resolved, when it is still known which flags the
user gave) takes the architecture, constructor arguments and input size from the file's meta; `load_finetune`
(while the run is built) loads the weights and returns what it did to them (heads re-initialised, position
embedding resampled), which the run prints in its first lines and records in the checkpoint meta.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deit.data.class_match import SAME_NAMES, match_classes
from deit.errors import DeitError
from deit.models.meta import CheckpointMeta

_HEADS = ("head", "head_dist")


def checkpoint_meta_of(path: str | Path) -> CheckpointMeta | None:
    """The deit meta a local checkpoint file or export carries (checked against its tensors), or None."""
    from deit.models.checkpoint import read_trained_weights

    return read_trained_weights(path)[2]


def fill_from_checkpoint(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with `model`, `model_kwargs` and `input_size` taken from the `finetune` file's meta where absent.

    Only for a local file with meta (official releases and URLs carry none: `--model` stays needed there). The
    kwargs are taken only when the model is the checkpoint's; a mismatch is reported when the weights load.
    """
    source = settings.get("finetune") or ""
    if not source or "://" in source or not Path(source).exists():
        return settings  # a URL, or a missing file (validation names it)
    from deit.io import require_regular_file

    require_regular_file(source, flag="--finetune", allow_directory=True)  # a FIFO would block the read below
    meta = checkpoint_meta_of(source)
    if meta is None:
        return settings
    filled = dict(settings)
    filled.setdefault("model", meta.model)
    if filled["model"] == meta.model:
        filled.setdefault("model_kwargs", _constructor_kwargs(meta))
    if meta.input_size:
        filled.setdefault("input_size", int(meta.input_size))
    return filled


def _constructor_kwargs(meta: CheckpointMeta) -> dict[str, Any]:
    """The meta's kwargs less the keys the run sets itself: the class count (the new data's) and the image size
    (`--input-size`, which fine-tuning may change; the meta check made a repeated one equal to `input_size`)."""
    return {key: value for key, value in meta.model_kwargs.items() if key not in ("num_classes", "img_size")}


@dataclass(frozen=True)
class FinetuneOrigin:
    """What `--finetune` loaded and how the weights were fitted to the model being trained."""

    source: str
    trained_as: str | None  # the checkpoint's model and kwargs per its meta; None without meta
    classes_before: int | None
    classes_after: int
    reinitialised: tuple[str, ...]  # head names whose weights were not taken from the file
    grid_before: int | None  # pos_embed patch grid side in the file; None when unchanged or absent
    grid_after: int | None
    class_matching: str | None = None  # how kept heads were matched to the data's classes, when worth saying

    def lines(self, model_name: str) -> list[str]:
        """The run's first lines about the fine-tune start (one idea per line)."""
        origin = f" ({self.trained_as})" if self.trained_as else " (no deit meta: architecture from --model)"
        lines = [f"--finetune {self.source}: weights loaded into {model_name}{origin}"]
        if self.reinitialised:
            lines.append(
                f"--finetune: {', '.join(self.reinitialised)} re-initialised: {self.classes_before} → "
                f"{self.classes_after} classes"
            )
        else:
            lines.append(f"--finetune: heads kept ({self.classes_after} classes, as in the checkpoint)")
        if self.class_matching:
            lines.append(f"--finetune: classes matched {self.class_matching}")
        if self.grid_before is not None:
            lines.append(
                f"--finetune: pos_embed resampled {self.grid_before}×{self.grid_before} → "
                f"{self.grid_after}×{self.grid_after} patch grid (bicubic, as the official fine-tuning)"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The record kept in the checkpoint meta (`finetuned_from`) and shown by the model card."""
        return {
            "source": self.source,
            "trained_as": self.trained_as,
            "classes_before": self.classes_before,
            "reinitialised": list(self.reinitialised),
            "pos_embed_grid": [self.grid_before, self.grid_after] if self.grid_before is not None else None,
            "class_matching": self.class_matching,
        }


def _describe(meta: CheckpointMeta) -> str:
    kwargs = f" {json.dumps(meta.model_kwargs, sort_keys=True)}" if meta.model_kwargs else ""
    size = f" at {meta.input_size} px" if meta.input_size else ""
    return f"a {meta.model}{kwargs} checkpoint{size}, {meta.num_classes} classes"


def load_finetune(
    model: nn.Module,
    source: str | Path,
    *,
    flag_model: str,
    flag_kwargs: dict[str, Any],
    class_names: list[str] | None = None,
    by_position: bool = False,
) -> FinetuneOrigin:
    """Load `source` into `model` (heads of another class count dropped, pos_embed resampled) and say how.

    A file that does not fit is one DeitError naming both the flags and what the file's meta says it holds. Kept
    heads are matched to the data's `class_names` by name (rows reordered), as `deit eval` matches classes;
    other names are refused unless `by_position`.
    """
    from deit.models.checkpoint import adapt_state_dict, read_trained_weights

    state_dict, _, meta = read_trained_weights(source)
    target = model.state_dict()
    classes_before = int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else None
    classes_after = int(getattr(model, "num_classes", 0) or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # adapt_state_dict's head warning: our own lines say it, with more
            adapted = adapt_state_dict(state_dict, model, source=str(source))
    except DeitError as error:
        if meta is not None and (meta.model != flag_model or dict(meta.model_kwargs) != dict(flag_kwargs)):
            kwargs = f" --model-kwargs {json.dumps(flag_kwargs, sort_keys=True)}" if flag_kwargs else ""
            raise DeitError(
                f"--model {flag_model}{kwargs} does not fit --finetune {source}, {_describe(meta)} "
                f"(drop --model/--model-kwargs to build the checkpoint's): {error}"
            ) from error
        raise
    reinitialised = tuple(name for name in _HEADS if f"{name}.weight" in target and (f"{name}.weight" not in adapted))
    matching = None
    if class_names and meta is not None and not reinitialised and len(class_names) == meta.num_classes:
        match = match_classes(
            meta.labels(), class_names, source=f"--finetune {source}", data="the training data", by_position=by_position
        )
        matching = None if match.how == SAME_NAMES else match.how
        rows = torch.tensor(match.order)  # the data's class i takes the checkpoint's row order[i]
        for key in [f"{name}.{part}" for name in _HEADS for part in ("weight", "bias")]:
            if key in adapted and not match.identity:
                adapted[key] = adapted[key][rows]
    model.load_state_dict(adapted, strict=False)
    grid_before = grid_after = None
    if (
        "pos_embed" in target
        and "pos_embed" in state_dict
        and state_dict["pos_embed"].shape != target["pos_embed"].shape
    ):
        prefix = target["pos_embed"].shape[1] - model.patch_embed.num_patches  # type: ignore[union-attr]
        grid_before = round((state_dict["pos_embed"].shape[1] - prefix) ** 0.5)
        grid_after = int(model.patch_embed.grid_size)  # type: ignore[union-attr]
    return FinetuneOrigin(
        source=str(source),
        trained_as=_describe(meta) if meta is not None else None,
        classes_before=classes_before,
        classes_after=classes_after,
        reinitialised=reinitialised,
        grid_before=grid_before,
        grid_after=grid_after,
        class_matching=matching,
    )
