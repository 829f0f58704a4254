"""Model families, one module each; importing this package registers them."""
from . import adversarial, torus, vae
from . import cnf, flows
from .base import MODELS, GenerativeModel, ModelSpec, build_model, get_model_spec, register_model

BUILTIN_MODULES = (vae, adversarial, torus, flows, cnf,)

__all__ = ["MODELS", "GenerativeModel", "ModelSpec", "build_model", "get_model_spec", "register_model"]
