"""Metrics: ELBO, IWAE NLL, bits/dim (from each model's ``eval_metrics``) and registered extras."""
from .evaluate import EXTRA_METRICS, evaluate, register_metric

__all__ = ["EXTRA_METRICS", "evaluate", "register_metric"]
