"""Model families, one module each; importing this package registers them."""
from . import torus, vae
from .base import MODELS, GenerativeModel, ModelSpec, build_model, get_model_spec, register_model

BUILTIN_MODULES = (vae, torus)

__all__ = ["MODELS", "GenerativeModel", "ModelSpec", "build_model", "get_model_spec", "register_model"]
