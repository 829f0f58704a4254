"""Normalizing flows: exact likelihoods by the change of variables (Dinh et al. 2017). The bijections live
in :mod:`genlab.families.flows.bijections`, the dequantized image likelihood in :mod:`genlab.families.flows.exact`.

Direction convention: every :class:`Bijection` maps *data towards the base* in ``forward``
(the normalizing direction) and back in ``inverse``; both return the per-example log |det J|
of the map they apply. For a chain x -> z = f_K o ... o f_1(x) with z ~ N(0, I):

  log p(x) = log N(f(x); 0, I) + sum_k log |det d f_k / d h_{k-1}|          (change of variables)
  sample:    z ~ N(0, I),  x = f_1^{-1} o ... o f_K^{-1}(z)                  (inverse pass)

Layers: an invertible MLP layer y = LeakyReLU(W x + b) with W triangular and a positive
(exp-parameterised) diagonal, permutations, ActNorm with data-dependent initialisation, RealNVP
affine coupling, and the logit transform for images.

Images (discrete data with L grey levels, intensities k/(L-1)): uniform dequantization
u = (k + U[0,1)) / L puts the data in [0, 1)^D; the flow models the density p(u) (logit Jacobian
included). Since each k owns a cell of volume L^-D, Jensen gives the discrete bound

  -log P(k) <= E_U[-log p(u)] + D log L          (nats; the "[0, L)-scaled" continuous NLL)
  bpd       = that / (D log 2)                   (``bits_per_dim`` of models/densities.py)

so with L = 256 (MNIST) the bits/dim are the usual 8-bit ones, comparable with a VAE's discrete NLL.
The logit squeeze a makes p(u) a density on (-a/(1-2a), (1-a)/(1-2a)), slightly wider than [0, 1):
the mass outside is lost, which only makes the reported NLL a (slightly) more conservative bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from genlab.abilities import HasStages, LogProb, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.flows.bijections import (
    ActNorm,
    AffineCoupling,
    Bijection,
    Compose,
    ConvConditioner,
    LogitTransform,
    Permutation,
    Reshape,
    TriangularLeakyLayer,
    mlp_conditioner,
)
from genlab.families.flows.exact import ExactLikelihoodModel
from genlab.maths.densities import standard_normal_log_prob
from genlab.model import register_model


# ----------------------------------------------------------------- models
class FlowModel(ExactLikelihoodModel):
    """Base N(0, I) pushed through the inverse of a chain of bijections (see module docstring)."""

    def __init__(self, config, data_info: DataInfo, logit_alpha: float):
        super().__init__(config, data_info)
        pre = [LogitTransform(logit_alpha)] if self.image else []
        layers, self.latent_shape = self.build_layers(tuple(data_info.shape))
        self.flow = Compose(pre + layers)

    def build_layers(self, shape) -> tuple[list[Bijection], tuple]:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(f(x); 0, I) + log|det df/dx| (for images x is the dequantized u in [0,1))."""
        z, logdet = self.flow(x)
        return standard_normal_log_prob(z) + logdet

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """z ~ N(0, I), x = f^{-1}(z); images are clamped to [0, 1]."""
        z = torch.randn(n, *self.latent_shape, device=next(self.parameters()).device)
        x, _ = self.flow.inverse(z)
        return x.clamp(0, 1) if self.image else x

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.flow.stages(x)


@dataclass
class InvertibleMLPConfig:
    layers: int = field(8, "number of triangular LeakyReLU layers (a reversal permutation between them)")
    slope: float = field(0.5, "LeakyReLU negative slope a (> 0 keeps the layer invertible)")
    logit_alpha: float = field(0.05, "images: logit transform squeeze a")

    def validate(self):
        require(self.layers >= 1, "layers must be >= 1")
        require(0 < self.slope, f"slope must be > 0 (LeakyReLU must be strictly increasing), got {self.slope}")
        require(0 <= self.logit_alpha < 0.5, "logit_alpha must be in [0, 0.5)")


@register_model("invertible-mlp", InvertibleMLPConfig,
                "normalizing flow of triangular LeakyReLU layers y = sigma(Wx+b), exact NLL",
                data_defaults={}, default_data="8gaussians",
                abilities={Samples, LogProb, HasStages}, data_kinds=("image", "points"))
class InvertibleMLPFlow(FlowModel):
    def __init__(self, config: InvertibleMLPConfig, data_info: DataInfo):
        super().__init__(config, data_info, config.logit_alpha)

    def build_layers(self, shape):
        d = math.prod(shape)
        layers: list[Bijection] = [Reshape(shape, (d,))] if len(shape) > 1 else []
        for i in range(self.config.layers):
            layers.append(TriangularLeakyLayer(d, self.config.slope))
            if i < self.config.layers - 1 and d > 1:
                layers.append(Permutation(torch.arange(d - 1, -1, -1)))
        return layers, (d,)


# Toy sets: 60,000 points per split, so the run's default 10 epochs are 4,690 steps of batch 128; on
# 8gaussians that ends 0.15-0.16 nats above the true density's cross-entropy (issue 10; ~85 s on one
# thread). Image datasets have no ``n`` and ignore it.
REALNVP_DATA_DEFAULTS = {"n": 60000}


@dataclass
class RealNVPConfig:
    couplings: int = field(8, "number of affine coupling layers (masks alternate)")
    hidden: tuple[int, ...] = field((64, 64), "points: hidden sizes of each coupling's MLP")
    channels: int = field(32, "images: hidden channels of each coupling's CNN")
    act: Literal["relu", "gelu", "leaky_relu", "tanh", "silu"] = field("relu", "points: MLP activation")
    actnorm: bool = field(True, "ActNorm (data-dependent init) before each coupling")
    logit_alpha: float = field(0.05, "images: logit transform squeeze a")

    def validate(self):
        require(self.couplings >= 1, "couplings must be >= 1")
        require(self.channels > 0 and all(h > 0 for h in self.hidden), "sizes must be positive")
        require(0 <= self.logit_alpha < 0.5, "logit_alpha must be in [0, 0.5)")


@register_model("realnvp", RealNVPConfig,
                "RealNVP: affine couplings + ActNorm (points: MLP, images: checkerboard CNN), exact NLL / bpd",
                data_defaults=REALNVP_DATA_DEFAULTS, default_data="8gaussians",
                abilities={Samples, LogProb, HasStages}, data_kinds=("image", "points"))
class RealNVP(FlowModel):
    def __init__(self, config: RealNVPConfig, data_info: DataInfo):
        super().__init__(config, data_info, config.logit_alpha)

    def build_layers(self, shape):
        c = self.config
        layers: list[Bijection] = []
        if len(shape) == 3:
            cin, h, w = shape
            parity = (torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)) % 2   # [H, 1] + [1, W] -> [H, W]
            param_shape = (cin, 1, 1)
            for i in range(c.couplings):
                mask = ((parity + i) % 2).float().expand(cin, h, w).clone()
                if c.actnorm:
                    layers.append(ActNorm(param_shape))
                layers.append(AffineCoupling(mask, ConvConditioner(mask, cin, c.channels), param_shape))
            return layers, shape
        d = math.prod(shape)
        if d < 2:
            raise ConfigError("realnvp's coupling layers need at least 2 dimensions; for 1-D data use "
                              "invertible-mlp or cnf")
        for i in range(c.couplings):
            mask = ((torch.arange(d) + i) % 2).float()
            if c.actnorm:
                layers.append(ActNorm((d,)))
            layers.append(AffineCoupling(mask, mlp_conditioner(d, c.hidden, c.act), (d,)))
        return layers, (d,)
