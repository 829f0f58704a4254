"""Evaluate a run on a split: the model's per-example metrics averaged, with a fixed seed.

Other metrics (e.g. a sample-quality score) plug in through ``register_metric``: a function
``(run, split_data, options) -> dict | None`` that returns nothing when it does not apply.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..train.loop import evaluate_model
from ..train.run import Run, load_run

EXTRA_METRICS: dict[str, Callable] = {}


def register_metric(name: str):
    def deco(fn):
        EXTRA_METRICS[name] = fn
        return fn
    return deco


def evaluate(run: Run | str | Path, split: str = "test", seed: int = 0, iwae_k: int = 100,
             batch_size: int = 256, device: str = "cpu", limit: int | None = None,
             extras: bool = True, progress: bool = False) -> dict:
    """Metrics of ``run`` on ``split``; the same run and seed always give the same numbers.

    ``iwae_k`` importance samples for likelihood bounds (VAE ``nll_nats``); ``limit`` evaluates only
    the first N examples.
    """
    if not isinstance(run, Run):
        run = load_run(run, device)
    data = run.data(split)
    if limit:
        data = data.subset(slice(0, limit))
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        metrics = evaluate_model(run.model, data, batch_size, next(run.model.parameters()).device,
                                 progress=progress, iwae_k=iwae_k)
        if extras:
            for fn in EXTRA_METRICS.values():
                metrics |= fn(run, data, {"seed": seed, "split": split}) or {}
    return {"model": run.model_name, "data": run.data_name, "split": split, "examples": len(data),
            "seed": seed, "iwae_k": iwae_k, "metrics": metrics,
            "eval_time_s": round(time.perf_counter() - start, 3)}
