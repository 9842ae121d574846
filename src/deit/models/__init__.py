"""DeiT models: the architecture, the registry of named configurations, the factory, and checkpoint interop."""

from deit.models.factory import build_model, create_model, load_trained_model
from deit.models.registry import ModelSpec, get_model_spec, is_registered, list_models
from deit.models.vit import VisionTransformer

__all__ = [
    "ModelSpec",
    "VisionTransformer",
    "build_model",
    "create_model",
    "get_model_spec",
    "is_registered",
    "list_models",
    "load_trained_model",
]
