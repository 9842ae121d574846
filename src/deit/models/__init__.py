"""DeiT models: the architecture, the registry of named configurations, and checkpoint interop."""

from deit.models.registry import ModelSpec, create_model, get_model_spec, is_registered, list_models
from deit.models.vit import VisionTransformer

__all__ = ["ModelSpec", "VisionTransformer", "create_model", "get_model_spec", "is_registered", "list_models"]
