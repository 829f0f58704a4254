"""Evaluate a run on a split: the model's metrics as sums over counts, with a fixed seed, plus the
extra metrics (listed in ``genlab.catalog.METRICS``) that apply to what the model can do.

An extra metric is declared with ``@register_metric(name, needs=(Samples,), kinds=("image",))`` on a
function ``(run, split_data, options) -> dict | None``; it runs only for models that declare every
ability in ``needs`` on data of one of ``kinds`` (all kinds when empty), and only when the user did
not switch it off (``genlab eval --no-NAME``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab import catalog
from genlab.abilities import can
from genlab.config import from_dict, to_dict
from genlab.errors import ConfigError
from genlab.maths.densities import grey_levels
from genlab.training.loop import evaluate_model
from genlab.training.run import Run, load_run
from genlab.training.rundir import eval_record


@dataclass
class MetricSpec:
    name: str
    fn: Callable
    needs: tuple = ()
    kinds: tuple = ()
    description: str = ""

    def applies(self, run: Run, data) -> bool:
        return can(run.model, *self.needs) and (not self.kinds or data.info.kind in self.kinds)


def register_metric(name: str, needs: tuple = (), kinds: tuple = (), description: str = ""):
    """Declare an extra metric of ``genlab eval`` (list ``name`` in ``genlab.catalog.METRICS``)."""
    def deco(fn):
        catalog.register("metric", name, MetricSpec(name, fn, tuple(needs), tuple(kinds), description))
        return fn
    return deco


def eval_options(run: Run, options: dict | None) -> object:
    """The model's evaluation config (its family declares it) with ``options`` applied."""
    return from_dict(run.spec.eval_config, options or {}, where=f"eval options of {run.model_name}")


def evaluate(run: Run | str | Path, split: str = "test", seed: int = 0, batch_size: int = 256,
             device: str = "cpu", limit: int | None = None, extras: bool | set = True, progress: bool = False,
             data_dir: str | None = None, options: dict | None = None, write_texts: dict | None = None,
             **model_options) -> dict:
    """Metrics of ``run`` on ``split``; the same run and seed always give the same numbers.

    ``options`` (or keywords) go to the model's eval config, e.g. ``iwae_k=1000`` for a VAE;
    ``limit`` evaluates the first N examples; ``extras``: True for every extra metric that applies,
    False for none, or the set of names to skip; ``write_texts`` names files for the strings the
    model's evaluation gathered (``genlab.model.Texts``), one per line, e.g. ``{"hypotheses":
    "hyp.txt", "references": "ref.txt"}`` for a translator (files that exist are refused).
    Returns the ``eval.json`` record.
    """
    write_texts = {name: Path(path) for name, path in (write_texts or {}).items()}
    _check_new_files(write_texts)
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be a positive number of examples, got {limit}")
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    if not isinstance(run, Run):
        run = load_run(run, device)
    cfg = eval_options(run, (options or {}) | model_options)
    data = run.data(split, data_dir)
    if limit:
        data = data.subset(slice(0, limit))
    start = time.perf_counter()
    skip = set(extras) if isinstance(extras, (set, frozenset, list, tuple)) else set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        texts: dict[str, list[str]] = {}
        metrics = evaluate_model(run.model, data, batch_size, next(run.model.parameters()).device,
                                 progress=progress, texts=texts, **to_dict(cfg))
        _write_texts(write_texts, texts, run.model_name)
        if extras is not False:
            for name, spec in catalog.load_all("metric").items():
                if name in skip or not spec.applies(run, data):
                    continue
                torch.manual_seed(seed)
                metrics |= spec.fn(run, data, {"seed": seed, "split": split, "data_dir": data_dir,
                                               "progress": progress}) or {}
    metrics |= bpd_levels(data.info, metrics)
    return eval_record(run.model_name, run.data_name, split, len(data), seed,
                       dataclasses.asdict(cfg), metrics, time.perf_counter() - start)


def bpd_levels(info, metrics: dict) -> dict:
    """Beside any bits/dim: ``bpd_levels``, the number K of grey levels of the discrete data they are
    measured on, and ``uniform_bpd`` = log2 K, the uniform distribution's bits/dim on those levels
    (bpd = NLL / (D ln 2) of the discrete pixels, van den Oord et al. 2016). Bits/dim on different K do not
    compare (log2 2 = 1 on binary pixels, log2 17 = 4.09 on the 8x8 digits, 8 on 8-bit images)."""
    if not any(name == "bpd" or name.endswith("_bpd") for name in metrics):
        return {}
    levels = grey_levels(info)
    return {"bpd_levels": levels, "uniform_bpd": round(math.log2(levels), 4)}


def _check_new_files(paths: dict[str, Path]) -> None:
    """Refuse, before any work, files that exist, folders that do not, and one file named twice."""
    for name, path in paths.items():
        if path.exists():
            raise ConfigError(f"--{name} {path}: the file exists; give a new file name (nothing is overwritten)")
        if not path.parent.is_dir():
            raise ConfigError(f"--{name} {path}: folder {path.parent} does not exist")
    if len({p.resolve() for p in paths.values()}) < len(paths):
        raise ConfigError(f"give a different file to each of {', '.join('--' + n for n in paths)}")


def _write_texts(paths: dict[str, Path], texts: dict[str, list[str]], model: str) -> None:
    """Each list ``paths`` names, one string per line (all checked before the first file is written)."""
    for name in paths:
        if name not in texts:
            have = f"it gathers {', '.join(sorted(texts))}" if texts else "it gathers no text"
            raise ConfigError(f"--{name}: the {model} evaluation gathers no {name} ({have})")
        if any("\n" in line for line in texts[name]):
            raise ConfigError(f"--{name}: a line of the {name} contains a newline; the file would misalign")
    for name, path in paths.items():
        with open(path, "x", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in texts[name])
