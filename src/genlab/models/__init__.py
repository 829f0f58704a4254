"""Model families, one module each; importing this package registers them."""
from . import adversarial, cnf, flows, torus, vae
from .base import MODELS, GenerativeModel, ModelSpec, build_model, get_model_spec, register_model

BUILTIN_MODULES = (vae, adversarial, torus, flows, cnf)

__all__ = ["MODELS", "GenerativeModel", "ModelSpec", "build_model", "get_model_spec", "register_model"]
