"""The protocol every genlab model follows, and its declaration (``register_model``).

A model is an ``nn.Module`` built as ``Model(config, data_info)``. The trainer drives it through:

* ``phases() -> dict[name, ParamGroup]`` -- one optimizer per phase, stepped in order on every
  batch. Default: one phase ``"main"`` over all parameters. A phase may be a list of parameters or a
  dict ``{"params": [...], "lr": ..., "betas": ...}`` overriding the run's optimizer settings.
  Adversarial models return e.g. ``{"discriminator": ..., "generator": ...}``.
* ``loss(batch, phase) -> (loss, logs)`` -- a scalar to minimise for that phase and a dict of scalar
  tensors to log. ``batch`` is a tuple of tensors from the dataset's batch source.
* ``eval_metrics(batch, **options) -> dict[str, Tensor | Avg | Texts]`` -- what the eval layer averages
  over a split. A tensor of shape ``[B]`` holds per-example values (averaged per example); an :class:`Avg`
  holds a sum and a count (per token, per pixel, per image: the metric decides); :class:`Texts` holds
  strings the split's value is computed from at the end (e.g. translations for a corpus BLEU).
  ``options`` are the fields of the model's ``eval_config``.
* ``finalize_metrics(means) -> dict`` -- derived metrics from the split means (e.g. perplexity =
  exp(nll per token)) and from the lists of strings ``Texts`` gathered; default: unchanged.
* ``batch_hints() -> dict`` -- what the dataset's batch source needs from the model (e.g.
  ``{"block_size": 256}`` for windows of a token stream); default: nothing.
* ``step_hooks() -> list`` -- ``hook(trainer)`` functions run after every optimizer step.
* ``finalize_metrics`` may add strings (e.g. sacrebleu's signature beside ``bleu``).
* optional abilities (``genlab.abilities``): ``Samples``, ``Encodes``, ``Decodes``, ... -- declared in
  ``register_model(..., abilities={...})``; having a method of the same name grants nothing.

Models never import the trainer, the CLI or the figures.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab import catalog
from genlab.abilities import check_abilities
from genlab.config import from_dict
from genlab.data.registry import DATA_KINDS, DataInfo, get_spec
from genlab.errors import ConfigError, GenlabError


@dataclass
class Avg:
    """A metric as a sum and a count over a batch; a split's value is sum(total) / sum(count)."""
    total: torch.Tensor
    count: torch.Tensor | float

    @classmethod
    def of(cls, values: torch.Tensor) -> Avg:
        """Per-element mean of ``values`` (e.g. per-token NLLs of the real tokens)."""
        return cls(values.sum(), values.numel())


@dataclass
class Texts:
    """Strings of a batch (e.g. its translations) a split-level metric is computed from: the eval layer
    joins every batch's ``items`` in order and hands the list to ``finalize_metrics`` (corpus BLEU is
    not a mean of per-batch values). The lists are not metrics: they leave the record, and
    ``genlab eval --hypotheses FILE`` writes the one named ``hypotheses``."""
    items: list[str]


class GenerativeModel(nn.Module):
    """Base class with the defaults of the protocol above."""
    ABILITIES: frozenset = frozenset()   # set by register_model(..., abilities=...)

    def __init__(self, config, data_info: DataInfo):
        super().__init__()
        self.config = config
        self.data_info = data_info

    def phases(self) -> dict[str, Any]:
        return {"main": list(self.parameters())}

    def loss(self, batch, phase: str = "main") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def eval_metrics(self, batch, **options) -> dict[str, torch.Tensor | Avg]:
        with torch.no_grad():
            loss, _ = self.loss(batch, next(iter(self.phases())))
        return {"loss": Avg(loss * len(batch[0]), len(batch[0]))}

    def finalize_metrics(self, means: dict[str, float]) -> dict[str, float]:
        return means

    def batch_hints(self) -> dict[str, Any]:
        return {}

    def step_hooks(self) -> list[Callable]:
        """Functions ``hook(trainer)`` the loop calls after every optimizer step (e.g. logging
        per-layer gradient norms); default none."""
        return []


@dataclass
class NoOptions:
    """A model without evaluation or sampling options."""


@dataclass
class ModelSpec:
    """How ``genlab train NAME`` builds a model, and what ``eval`` / ``sample`` offer for it.

    ``eval_config``: a dataclass whose fields become flags of ``genlab eval`` and keywords of the
    model's ``eval_metrics``. ``sample_config`` and ``sample``: the flags of ``genlab sample`` and its
    writer ``sample(run, cfg, n, out, seed) -> list[str]`` (lines to print: paths or text), named as
    ``"module:function"`` of the family's package (e.g. ``"figures:sample_images"``, imported only when
    ``genlab sample`` runs, so model modules write no files); without one, ``genlab sample`` draws
    ``model.sample(n)`` and writes them as the data kind says. ``abilities``: what the model can do
    (classes of ``genlab.abilities``), also set on the class as ``ABILITIES`` for ``can(model, ...)``.
    ``train_defaults``: the family's preferred training settings (shown as the defaults of
    ``genlab train MODEL --help``; flags and keywords still override them). ``data_kinds``: the
    ``DataInfo`` kinds the model models; the datasets registered with one of those kinds fit it
    (:func:`fitting_datasets`), the others are refused before anything is written (:func:`check_data_fits`).
    """
    name: str
    cls: type
    config: type
    description: str
    data_defaults: dict = field(default_factory=dict)   # e.g. {"view": "binarized"}
    default_data: str = "digits"
    eval_config: type = NoOptions
    sample_config: type = NoOptions
    sample: str | None = None   # "module:function" in the family's package, e.g. "figures:sample_images"
    family: str = ""
    train_defaults: dict = field(default_factory=dict)   # e.g. {"schedule": "warmup-cosine", "ema": 0.999}
    sample_example: str | Callable = ""   # flags of a typical `genlab sample RUN ...` (shown after training),
    # or run -> those flags where they depend on the run's data (a sentence in its source language)
    abilities: frozenset = frozenset()   # e.g. frozenset({Samples, Encodes, Decodes})
    data_kinds: tuple = ()   # the DataInfo kinds it models, e.g. ("image", "points")

    def sample_writer(self) -> Callable | None:
        """The family's ``sample`` writer, imported on first use (None when the family declares none)."""
        if self.sample is None:
            return None
        module, _, function = self.sample.partition(":")
        package = self.cls.__module__.rpartition(".")[0]
        return getattr(importlib.import_module(f"{package}.{module}"), function)


def register_model(name: str, config: type, description: str, data_defaults: dict | None = None,
                   default_data: str = "digits", eval_config: type = NoOptions,
                   sample_config: type = NoOptions, sample: str | None = None,
                   train_defaults: dict | None = None, sample_example: str | Callable = "", abilities=(), *,
                   data_kinds: tuple[str, ...] | None = None):
    """Class decorator declaring ``genlab train NAME`` (list NAME in ``genlab.catalog.MODELS``), what
    the model can do (``abilities``: classes of ``genlab.abilities``, stored as ``cls.ABILITIES``) and
    the data it models (``data_kinds``: ``DataInfo`` kinds; the datasets of those kinds fit it). Its family
    is the folder that lists it (``catalog.family_of``), never a name of its own."""
    declared = check_abilities(abilities)
    if sample is not None and (not isinstance(sample, str) or ":" not in sample):
        raise TypeError(f"model {name}: sample= names the writer as 'module:function', got {sample!r}")
    if not data_kinds or any(k not in DATA_KINDS for k in data_kinds):
        raise TypeError(f"model {name}: data_kinds= names some of {', '.join(DATA_KINDS)}, got {data_kinds!r}")

    def deco(cls):
        cls.ABILITIES = declared
        catalog.register("model", name, ModelSpec(name, cls, config, description, dict(data_defaults or {}),
                                                  default_data, eval_config, sample_config, sample,
                                                  catalog.family_of("model", name) or "", dict(train_defaults or {}),
                                                  sample_example, declared, tuple(data_kinds)))
        return cls
    return deco


def get_model_spec(name: str) -> ModelSpec:
    return catalog.get("model", name)


def fitting_datasets(model: str) -> list[str]:
    """The datasets model ``model`` can train on: those whose declared kind it models."""
    kinds = get_model_spec(model).data_kinds
    return [n for n in catalog.names("dataset") if catalog.get("dataset", n).kind in kinds]


def check_data_fits(model: str, data: str) -> None:
    """ConfigError (one line) when dataset ``data`` is not of a kind model ``model`` declares."""
    kinds, kind = get_model_spec(model).data_kinds, get_spec(data).kind
    if kind not in kinds:
        raise ConfigError(f"model {model} models {' or '.join(kinds)} data, and --data {data} is {kind} data; "
                          f"pass --data with one of {', '.join(fitting_datasets(model))}")


# weights, their gradients and Adam's two moments, float32 each: what training holds per parameter
BYTES_PER_PARAMETER = 16
MAX_MODULES = 20_000   # genlab's largest defaults have about 100; each module costs Python memory and calls


def memory_limit() -> int:
    """Bytes of this machine's physical memory (what a model and its optimizer state must fit in)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2 ** 30


class _TooLarge(Exception):
    pass


def check_model_size(spec: ModelSpec, config, data_info: DataInfo) -> int | None:
    """Refuse a model that cannot fit before any of it is allocated: build it on the meta device (shapes
    only, no memory), counting every parameter, buffer and submodule as it is registered, and stop as
    soon as the parameters' training state (``BYTES_PER_PARAMETER`` each) plus the buffers exceed
    :func:`memory_limit`, or the submodules exceed ``MAX_MODULES``. Returns the parameter count (None
    when the model does not build on the meta device; the real build then reports its own error)."""
    from torch.nn.modules import module as torch_module
    limit, counts = memory_limit(), {"bytes": 0, "parameters": 0, "modules": 0}

    def tensor_added(module, name, tensor):
        if tensor is not None:
            parameter = isinstance(tensor, nn.Parameter)
            counts["parameters"] += tensor.numel() if parameter else 0
            counts["bytes"] += tensor.numel() * (BYTES_PER_PARAMETER if parameter else tensor.element_size())
            if counts["bytes"] > limit:
                raise _TooLarge

    def module_added(module, name, submodule):
        counts["modules"] += 1
        if counts["modules"] > MAX_MODULES:
            raise _TooLarge

    hooks = [torch_module.register_module_parameter_registration_hook(tensor_added),
             torch_module.register_module_buffer_registration_hook(tensor_added),
             torch_module.register_module_module_registration_hook(module_added)]
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            spec.cls(config, data_info)
    except _TooLarge:
        need = (f"more than {MAX_MODULES:,} modules (the limit; genlab's largest defaults have about 100)"
                if counts["modules"] > MAX_MODULES else
                f"more than {counts['parameters']:,} parameters, over {counts['bytes'] / 2 ** 30:,.1f} GiB for "
                f"weights, gradients and Adam moments (the limit: this machine's memory)")
        raise GenlabError(f"model {spec.name}: these settings need {need}; choose smaller sizes (e.g. fewer "
                          f"layers or a narrower width)") from None
    except Exception:   # noqa: BLE001 -- a model that needs real tensors to build: the real build decides
        return None
    finally:
        for h in hooks:
            h.remove()
    return counts["parameters"]


def build_model(name: str, data_info: DataInfo, config=None, **overrides) -> GenerativeModel:
    """Build registered model ``name`` for data described by ``data_info``, after
    :func:`check_model_size` has seen that it fits."""
    spec = get_model_spec(name)
    if config is None:
        config = from_dict(spec.config, overrides, where=f"model {name}")
    check_model_size(spec, config, data_info)
    return spec.cls(config, data_info)
