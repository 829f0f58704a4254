"""The classic experiments, declared per family (``registry.Experiment``) and listed in
``genlab.catalog.EXPERIMENTS``."""
from genlab.experiments.registry import (
    Context,
    Experiment,
    Setting,
    declare,
    list_experiments,
    run_experiment,
)

__all__ = ["Context", "Experiment", "Setting", "declare", "list_experiments", "run_experiment"]
