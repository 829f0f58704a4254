"""Model families: one module (or subpackage) each, listed in ``genlab.catalog`` and loaded lazily;
shared math in ``densities``, ``bijections`` and ``exact``; abilities in ``protocols``."""
from .base import Avg, GenerativeModel, ModelSpec, build_model, get_model_spec, register_model

__all__ = ["Avg", "GenerativeModel", "ModelSpec", "build_model", "get_model_spec", "register_model"]
