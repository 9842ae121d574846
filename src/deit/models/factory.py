"""Build any model by name: our DeiT registry first, then timm, then torchvision (teachers, CNN baselines)."""

from __future__ import annotations

from typing import Any

from torch import nn

from deit.errors import DeitError
from deit.models.registry import create_model, is_registered, list_models


def build_model(name: str, *, num_classes: int, img_size: int | None = None, drop_path_rate: float = 0.0,
                **overrides: Any) -> nn.Module:
    """A freshly initialised model called `name` with `num_classes` outputs (no weights are downloaded)."""
    if is_registered(name):
        return create_model(name, num_classes=num_classes, img_size=img_size, drop_path_rate=drop_path_rate,
                            **overrides)
    import timm

    if timm.is_model(name):
        kwargs: dict[str, Any] = dict(overrides)
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    import torchvision

    if name in torchvision.models.list_models():
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **overrides)
    raise DeitError(f"unknown model '{name}'{_close_matches_hint(name)}")


def _close_matches_hint(name: str) -> str:
    import difflib

    import timm
    import torchvision

    candidates = list(dict.fromkeys(list_models() + timm.list_models() + torchvision.models.list_models()))
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else "; see `deit models` or timm.list_models()"
