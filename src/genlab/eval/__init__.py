"""Metrics: ELBO, IWAE NLL, bits/dim (from each model's ``eval_metrics``) and registered extras:
``fid`` (local-classifier features) for image samplers, ``data_nll`` for data with a known density."""
from .evaluate import EXTRA_METRICS, evaluate, register_metric
from . import data_nll, fid  # noqa: E402,F401  (importing registers the extra metrics)

__all__ = ["EXTRA_METRICS", "evaluate", "register_metric"]
