"""Metrics: ELBO, IWAE NLL, bits/dim (from each model's ``eval_metrics``) and registered extras."""
from .evaluate import EXTRA_METRICS, evaluate, register_metric
from . import fid  # noqa: F401,E402  (registers the "fid" metric)
from . import data_nll  # noqa: F401,E402  (registers "data_nll" for toy sets with a known density)

__all__ = ["EXTRA_METRICS", "evaluate", "register_metric"]
