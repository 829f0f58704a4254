"""The protocol every genlab model follows, and the model registry.

A model is an ``nn.Module`` built as ``Model(config, data_info)``. The trainer drives it through:

* ``phases() -> dict[name, ParamGroup]`` -- one optimizer per phase, stepped in order on every
  batch. Default: one phase ``"main"`` over all parameters. A phase may be a list of parameters or a
  dict ``{"params": [...], "lr": ..., "betas": ...}`` overriding the run's optimizer settings.
  Adversarial models return e.g. ``{"discriminator": ..., "generator": ...}``.
* ``loss(batch, phase) -> (loss, logs)`` -- a scalar to minimise for that phase and a dict of scalar
  tensors to log. ``batch`` is the tuple of tensors of a :class:`~genlab.data.TensorData`.
* ``eval_metrics(batch, **options) -> dict[str, Tensor]`` -- per-example values (shape ``[B]``)
  that the eval layer averages over a split; keys such as ``nll_nats``, ``elbo_nats``.
* optional capabilities used by eval / figures when present: ``sample(n)``, ``encode(x)``,
  ``decode(z)``, ``reconstruct(x)``, ``latent_dim``.

Models never import the trainer, the CLI or the figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import from_dict
from ..data.registry import DataInfo
from ..errors import ConfigError


class GenerativeModel(nn.Module):
    """Base class with the defaults of the protocol above."""

    def __init__(self, config, data_info: DataInfo):
        super().__init__()
        self.config = config
        self.data_info = data_info

    def phases(self) -> dict[str, Any]:
        return {"main": list(self.parameters())}

    def loss(self, batch, phase: str = "main") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def eval_metrics(self, batch, **options) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            loss, _ = self.loss(batch, next(iter(self.phases())))
        return {"loss": loss.expand(len(batch[0]))}


@dataclass
class ModelSpec:
    name: str
    cls: type
    config: type
    description: str
    data_defaults: dict = field(default_factory=dict)   # e.g. {"view": "binarized"}
    default_data: str = "digits"


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config: type, description: str, data_defaults: dict | None = None,
                   default_data: str = "digits"):
    """Class decorator: make ``genlab train NAME`` build this model."""
    def deco(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelSpec(name, cls, config, description, dict(data_defaults or {}), default_data)
        return cls
    return deco


def get_model_spec(name: str) -> ModelSpec:
    from . import BUILTIN_MODULES  # noqa: F401  (importing registers them)
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, data_info: DataInfo, config=None, **overrides) -> GenerativeModel:
    """Build registered model ``name`` for data described by ``data_info``."""
    spec = get_model_spec(name)
    if config is None:
        config = from_dict(spec.config, overrides, where=f"model {name}")
    return spec.cls(config, data_info)
