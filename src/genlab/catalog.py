"""The one place that lists what exists: models, datasets, experiments, extra metrics and figures.

Each entry maps a name to the module that declares it (with ``register_model``,
``register_dataset``, ``register_experiment``, ``register_metric`` or ``register_figures``). Nothing is
imported until it is asked for, so ``import genlab`` stays light and a family's code loads only when
that family is used. Adding a family touches this file and the family's own files; the test
``tests/contract/test_catalog.py`` keeps the entries and the declarations in agreement.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigError

MODELS: dict[str, str] = {
    # autoencoders and VAEs
    "ae": "genlab.models.vae",
    "vae": "genlab.models.vae",
    "torus-vae": "genlab.models.torus",
    # adversarial
    "aae": "genlab.models.adversarial",
    "gan": "genlab.models.adversarial",
    # flows
    "invertible-mlp": "genlab.models.flows",
    "realnvp": "genlab.models.flows",
    "cnf": "genlab.models.cnf",
    # autoregressive pixel models
    "pixelcnn": "genlab.models.pixelcnn",
    # diffusion
    "ddpm": "genlab.models.diffusion.model",
    # language models
    "gpt": "genlab.models.lm.model",
    "rnnlm": "genlab.models.lm.model",
    # translation
    "translator": "genlab.models.translation.model",
    # neural radiance fields
    "nerf": "genlab.models.nerf.model",
    "nerf-grid": "genlab.models.nerf.model",
}

DATASETS: dict[str, str] = {
    "digits": "genlab.data.images",
    "mnist": "genlab.data.images",
    "fashion-mnist": "genlab.data.images",
    "torus": "genlab.data.geometry",
    **{name: "genlab.data.toy" for name in
       ("moons", "circles", "8gaussians", "checkerboard", "pinwheel", "2spirals", "gmm1d", "gmm2d")},
    # text
    "tinyshakespeare": "genlab.data.text",
    "synthetic-text": "genlab.data.text",
    # translation pairs
    "multi30k": "genlab.data.translation",
    "synthetic-pairs": "genlab.data.translation",
    # scenes
    **{name: "genlab.data.scenes" for name in ("blender", "tiny-nerf", "synthetic-scene")},
}

EXPERIMENTS: dict[str, str] = {
    **{name: "genlab.experiments.vae" for name in
       ("kl-check", "vae-sgvb-vs-analytic", "ae-mnist", "vae-interpolation", "vae-categorical-cnn",
        "vae-bernoulli-mlp")},
    "torus-interpolation": "genlab.experiments.geometry",
    **{name: "genlab.experiments.flows" for name in
       ("cnf-change-of-variables", "flow-toy", "cnf-toy", "flow-mnist")},
    **{name: "genlab.experiments.adversarial" for name in
       ("aae-mnist", "aae-vs-ae-2d", "aae-stochastic-z20", "gan-mnist")},
    # diffusion
    **{name: "genlab.experiments.diffusion" for name in
       ("diffusion-forward", "sampler-oracle", "ddpm-mnist", "sampler-compare", "negative-prompt")},
    # language models
    **{name: "genlab.experiments.lm" for name in ("rnn-vs-transformer", "attention-anatomy", "gpt-shakespeare")},
    # translation
    "prenorm-vs-postnorm": "genlab.experiments.translation",
    "prenorm-vs-postnorm-toy": "genlab.experiments.translation",
    # neural radiance fields
    **{name: "genlab.experiments.nerf" for name in ("nerf-render-gradient", "nerf-offline", "nerf-lego")},
    # across families: the likelihood table and every experiment in turn
    "likelihood-table": "genlab.experiments.report",
    "all": "genlab.experiments.report",
}

# Extra metrics of `genlab eval` (each applies only to runs whose model can do what it needs).
METRICS: dict[str, str] = {
    "fid": "genlab.eval.fid",
    "data_nll": "genlab.eval.data_nll",
    "text": "genlab.eval.text",
    "nerf_views": "genlab.eval.nerf",
}

# Modules whose figure makers `genlab report RUN` draws (each maker declares what it needs).
FIGURES: list[str] = [
    "genlab.viz.report",
    "genlab.viz.geometry",
    "genlab.viz.flows",
    "genlab.viz.lm",
    "genlab.viz.nerf",
    "genlab.viz.translation",
]

SECTIONS = {"model": MODELS, "dataset": DATASETS, "experiment": EXPERIMENTS, "metric": METRICS}
_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in (*SECTIONS, "figure")}
_HINT = {"model": "`genlab train --help` lists them", "dataset": "`genlab data list` lists them",
         "experiment": "`genlab experiment list` lists them", "metric": ""}


def register(kind: str, name: str, obj: Any) -> Any:
    """Called by the ``register_*`` decorators when a declaring module is imported."""
    table = _REGISTRY[kind]
    if name in table and table[name] is not obj:
        raise ValueError(f"{kind} {name!r} declared twice")
    table[name] = obj
    return obj


def get(kind: str, name: str) -> Any:
    """The declaration of ``name`` (importing its module on first use)."""
    section = SECTIONS[kind]
    if name not in section:
        hint = f"; {_HINT[kind]}" if _HINT[kind] else ""
        raise ConfigError(f"unknown {kind} {name!r}{hint}: {', '.join(sorted(section))}")
    if name not in _REGISTRY[kind]:
        importlib.import_module(section[name])
        if name not in _REGISTRY[kind]:
            raise RuntimeError(f"catalog: {section[name]} does not declare {kind} {name!r}")
    return _REGISTRY[kind][name]


def names(kind: str) -> list[str]:
    return sorted(SECTIONS[kind])


def load_all(kind: str) -> dict[str, Any]:
    """Every declaration of ``kind`` (imports all their modules)."""
    if kind == "figure":
        for module in FIGURES:
            importlib.import_module(module)
        return dict(_REGISTRY["figure"])
    return {name: get(kind, name) for name in names(kind)}
