"""Metrics: each model's own (ELBO, IWAE NLL, bits/dim, perplexity, PSNR, ...) as sums over counts, and
the extra metrics listed in ``genlab.catalog.METRICS`` (FID with local features, true-data NLL)."""
from genlab.eval.evaluate import MetricSpec, evaluate, register_metric

__all__ = ["MetricSpec", "evaluate", "register_metric"]
