"""The one place that lists what exists: one line per model family, plus the core's own datasets,
metrics, figures and cross-family experiments.

A family is a folder ``genlab/families/<name>/`` whose ``__init__.py`` declares, as plain tables of
strings, the names it contributes and the submodule that declares each one::

    MODELS = {"vae": "model"}                 # genlab train vae  -> families/vae/model.py
    DATASETS = {}                             # genlab data list
    EXPERIMENTS = {"kl-check": "experiments"} # genlab experiment list
    METRICS = {}                              # extra metrics of genlab eval
    FIGURES = ["figures"]                     # modules whose figure makers genlab report draws

Those submodules declare the objects with ``register_model``, ``register_dataset``,
``declare``, ``register_metric`` and ``register_figures``. Nothing heavy is imported until a name is
asked for: reading the tables imports only the families' small ``__init__`` files, so ``import genlab``
stays light and a family's code loads only when that family is used. Adding a family is one folder and
one line in ``FAMILIES``; ``tests/contract/test_catalog.py`` keeps tables and declarations in agreement.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from genlab.errors import ConfigError

# One line per family: its name (used by `experiment list`, the report and the tests) and its package.
FAMILIES: dict[str, str] = {
    "vae": "genlab.families.vae",                  # autoencoders and VAEs
    "geometry": "genlab.families.geometry",        # a VAE with a toroidal latent space
    "adversarial": "genlab.families.adversarial",  # adversarial autoencoders, GANs, f-divergences
    "flows": "genlab.families.flows",              # normalizing flows and continuous normalizing flows
    "pixelcnn": "genlab.families.pixelcnn",        # autoregressive image models
    "diffusion": "genlab.families.diffusion",      # DDPM and its samplers
    "lm": "genlab.families.lm",                    # GPT and RNN language models
    "translation": "genlab.families.translation",  # the encoder-decoder translation transformer
    "nerf": "genlab.families.nerf",                # neural radiance fields
}

# What the core itself declares: image and toy datasets every family uses, metrics and figures that
# apply to any model with the right abilities, and the experiments that span families.
CORE: dict[str, Any] = {
    "MODELS": {},
    "DATASETS": {
        **{name: "genlab.data.images" for name in ("digits", "mnist", "fashion-mnist")},
        **{name: "genlab.data.toy" for name in
           ("moons", "circles", "8gaussians", "checkerboard", "pinwheel", "2spirals", "gmm1d", "gmm2d")},
    },
    "EXPERIMENTS": {"likelihood-table": "genlab.experiments.report", "all": "genlab.experiments.report"},
    "METRICS": {"fid": "genlab.eval.fid", "data_nll": "genlab.eval.data_nll"},
    "FIGURES": ["genlab.viz.report"],
}

_KINDS = {"model": "MODELS", "dataset": "DATASETS", "experiment": "EXPERIMENTS", "metric": "METRICS"}
_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in (*_KINDS, "figure")}
_HINT = {"model": "`genlab train --help` lists them", "dataset": "`genlab data list` lists them",
         "experiment": "`genlab experiment list` lists them", "metric": ""}
_TABLES: dict[str, Any] | None = None
_FAMILY_OF: dict[tuple[str, str], str] = {}


def _tables() -> dict[str, Any]:
    """The merged tables (absolute module names), read once from the family packages."""
    global _TABLES
    if _TABLES is None:
        tables: dict[str, Any] = {key: dict(CORE[key]) for key in _KINDS.values()}
        tables["FIGURES"] = list(CORE["FIGURES"])
        for family, package in FAMILIES.items():
            pkg = importlib.import_module(package)
            for kind, key in _KINDS.items():
                for name, module in getattr(pkg, key, {}).items():
                    if name in tables[key]:
                        raise ValueError(f"catalog: {kind} {name!r} declared by two families")
                    tables[key][name] = f"{package}.{module}"
                    _FAMILY_OF[(kind, name)] = family
            tables["FIGURES"] += [f"{package}.{module}" for module in getattr(pkg, "FIGURES", [])]
        _TABLES = tables
    return _TABLES


def __getattr__(attr: str) -> Any:
    """``catalog.MODELS``, ``DATASETS``, ``EXPERIMENTS``, ``METRICS`` (name -> module), ``FIGURES`` (modules),
    ``SECTIONS`` (kind -> table), built on first use."""
    if attr in ("MODELS", "DATASETS", "EXPERIMENTS", "METRICS", "FIGURES"):
        return _tables()[attr]
    if attr == "SECTIONS":
        return {kind: _tables()[key] for kind, key in _KINDS.items()}
    raise AttributeError(f"module 'genlab.catalog' has no attribute {attr!r}")


def family_of(kind: str, name: str) -> str | None:
    """The family that declares ``name`` (None for the core's own names)."""
    _tables()
    return _FAMILY_OF.get((kind, name))


def register(kind: str, name: str, obj: Any) -> Any:
    """Called by the ``register_*`` decorators when a declaring module is imported."""
    table = _REGISTRY[kind]
    if name in table and table[name] is not obj:
        raise ValueError(f"{kind} {name!r} declared twice")
    table[name] = obj
    return obj


def get(kind: str, name: str) -> Any:
    """The declaration of ``name`` (importing its module on first use)."""
    section = _tables()[_KINDS[kind]]
    if name not in section:
        hint = f"; {_HINT[kind]}" if _HINT[kind] else ""
        raise ConfigError(f"unknown {kind} {name!r}{hint}: {', '.join(sorted(section))}")
    if name not in _REGISTRY[kind]:
        importlib.import_module(section[name])
        if name not in _REGISTRY[kind]:
            raise RuntimeError(f"catalog: {section[name]} does not declare {kind} {name!r}")
    return _REGISTRY[kind][name]


def names(kind: str) -> list[str]:
    return sorted(_tables()[_KINDS[kind]])


def load_all(kind: str) -> dict[str, Any]:
    """Every declaration of ``kind`` (imports all their modules)."""
    if kind == "figure":
        for module in _tables()["FIGURES"]:
            importlib.import_module(module)
        return dict(_REGISTRY["figure"])
    return {name: get(kind, name) for name in names(kind)}


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for a family's ``__init__``: ``from genlab.families.translation
    import bleu`` imports ``scores`` only then, so reading the family's tables stays cheap."""
    def __getattr__(attr: str) -> Any:
        if attr not in exports:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(f"{package}.{exports[attr]}"), attr)
    return __getattr__
