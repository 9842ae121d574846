"""deit: data-efficient image transformers and distillation through attention, for PyTorch."""

from deit.errors import DeitError
from deit.models import ModelSpec, VisionTransformer, create_model, get_model_spec, list_models

__version__ = "0.1.0"

__all__ = ["DeitError", "ModelSpec", "VisionTransformer", "create_model", "get_model_spec", "list_models",
           "__version__"]
