"""deit: data-efficient image transformers and distillation through attention, for PyTorch."""

from __future__ import annotations

import importlib
from typing import Any

from deit.errors import DeitError
from deit.models import ModelSpec, VisionTransformer, create_model, get_model_spec, list_models
from deit.version import __version__

# Heavier parts (timm, the engine) load on first use, so `import deit` and `deit models` stay quick.
_LAZY_EXPORTS = {
    "DistillationLoss": "deit.distill",
    "FrozenTeacher": "deit.distill",
    "build_teacher": "deit.distill",
    "build_base_criterion": "deit.distill",
    "build_model": "deit.models.factory",
    "load_trained_model": "deit.models.factory",
    "save_weights": "deit.models.checkpoint",
    "CheckpointMeta": "deit.models.meta",
    "build_dataset": "deit.data",
    "build_transform": "deit.data",
    "TrainConfig": "deit.engine.config",
    "train": "deit.engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'deit' has no attribute '{name}'")


__all__ = [
    "DeitError",
    "ModelSpec",
    "VisionTransformer",
    "create_model",
    "get_model_spec",
    "list_models",
    "__version__",
    *_LAZY_EXPORTS,
]
