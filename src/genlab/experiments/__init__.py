"""The classic experiments, one module per family; importing this package registers them."""
from . import adversarial, flows, geometry, vae
from .registry import EXPERIMENTS, list_experiments, register_experiment, run_experiment

BUILTIN_MODULES = (vae, geometry, flows, adversarial)

__all__ = ["EXPERIMENTS", "list_experiments", "register_experiment", "run_experiment"]
