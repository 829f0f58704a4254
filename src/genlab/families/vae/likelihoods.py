"""The decoder's likelihood p(x|z) as an object, one class per distribution (the decoder classes of
normflows, ``BaseDecoder.log_prob(x, z)``, in spirit): the VAE holds one and never branches on a name.

The decoder emits ``params`` of shape [..., P, D]: P values for each of the D data dimensions
(``params_per_dim``; leading sample dims allowed). Every likelihood then gives

* ``target(x)``: what it scores, [B, D]: the pixels, their integer levels, or one dequantized draw;
* ``log_prob(target, params)``: log p(x|z) in nats per example, [..., B];
* ``mean(params)`` and ``sample(params)``: E[x|z] and a draw x ~ p(x|z), [..., D], images in [0, 1].

On images every likelihood is one of the discrete pixels (see :mod:`genlab.maths.densities`):

* :class:`Bernoulli` (binary pixels): log p = sum_i x_i log p_i + (1 - x_i) log(1 - p_i), p = sigmoid(logits);
* :class:`Categorical` (K levels): log p = sum_i log softmax(logits_i)[k_i];
* :class:`DiscretizedGaussian`: N(m, s^2) on the pixel scale integrated over each grey level's bin
  (PixelCNN++, Salimans et al. 2017, Eq. 2, with the Gaussian CDF);
* :class:`Gaussian`: a density; on images of u = (k + U) / L, scored as log p(u|z) - D log L (the
  uniform-dequantization bound of Theis et al. 2016, Eq. 3); on points the plain density of x.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.maths.densities import (
    bernoulli_log_likelihood,
    categorical_log_likelihood,
    dequantize,
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    grey_levels,
    to_levels,
)

NAMES = ("bernoulli", "categorical", "gaussian", "discretized_gaussian")


class Likelihood(ABC):
    """p(x|z) from decoder parameters [..., P, D]; see the module docstring for the contract."""

    name: str
    params_per_dim: int

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What ``log_prob`` scores, flattened to [B, D] (here: the data as it is)."""
        return x.flatten(1)                                           # [B, *shape] -> [B, D]

    @abstractmethod
    def log_prob(self, target: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over the D dimensions: target [B, D], params [..., B, P, D] -> [..., B]."""

    @abstractmethod
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z]: params [..., P, D] -> [..., D]."""

    @abstractmethod
    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """One draw x ~ p(x|z): params [..., P, D] -> [..., D]."""


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with logits params[..., 0, :]."""

    name, params_per_dim = "bernoulli", 1

    def log_prob(self, target, params):
        return bernoulli_log_likelihood(target, params[..., 0, :])

    def mean(self, params):
        return torch.sigmoid(params[..., 0, :])

    def sample(self, params):
        return torch.bernoulli(torch.sigmoid(params[..., 0, :]))


class Categorical(Likelihood):
    """A K-way softmax per pixel over the levels 0..K-1 (params are the K logits); mean and samples
    are scaled to [0, 1] by 1 / (K - 1)."""

    name = "categorical"

    def __init__(self, levels: int):
        self.levels = self.params_per_dim = levels

    def log_prob(self, target, params):
        return categorical_log_likelihood(target, params)

    def mean(self, params):
        levels = torch.arange(self.levels, dtype=params.dtype, device=params.device).unsqueeze(-1)   # [K, 1]
        return (torch.softmax(params, dim=-2) * levels).sum(-2) / (self.levels - 1)

    def sample(self, params):
        k = torch.distributions.Categorical(logits=params.transpose(-1, -2)).sample()   # [..., D, K] -> [..., D]
        return k.float() / (self.levels - 1)


class Gaussian(Likelihood):
    """N(mean, diag var): params[..., 0, :] the mean, params[..., 1, :] the log-variance (clamped to
    [-12, 6]) unless ``std`` is fixed. With ``grey_levels`` L > 0 (images) it scores one dequantized
    draw u = (k + U) / L of the levels k = ``to_levels(x, info)`` as log p(u|z) - D log L."""

    name = "gaussian"

    def __init__(self, std: float | None = None, grey_levels: int = 0, info: DataInfo | None = None):
        self.std, self.grey_levels, self.info = std, grey_levels, info
        self.params_per_dim = 1 if std else 2

    def mean_logvar(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each [..., D], from params [..., P, D]."""
        mean = params[..., 0, :]
        if self.std:
            return mean, torch.full_like(mean, 2 * math.log(self.std))
        return mean, params[..., 1, :].clamp(-12.0, 6.0)

    def target(self, x):
        x = x.flatten(1)                                              # [B, *shape] -> [B, D]
        return dequantize(to_levels(x, self.info), self.grey_levels) if self.grey_levels else x

    def log_prob(self, target, params):
        ll = gaussian_log_likelihood(target, *self.mean_logvar(params))
        return ll - target.shape[-1] * math.log(self.grey_levels) if self.grey_levels else ll

    def mean(self, params):
        return params[..., 0, :]

    def sample(self, params):
        mean, logvar = self.mean_logvar(params)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


class DiscretizedGaussian(Gaussian):
    """N(mean, var) on the pixel scale k / (L-1), integrated over each of the L grey levels' bins; its
    mean is the Gaussian's mean clipped to [0, 1], its sample the bin a Gaussian draw falls in."""

    name = "discretized_gaussian"

    def __init__(self, grey_levels: int, info: DataInfo, std: float | None = None):
        super().__init__(std, grey_levels, info)

    def target(self, x):
        return to_levels(x.flatten(1), self.info)                    # [B, *shape] -> [B, D] levels

    def log_prob(self, target, params):
        return discretized_gaussian_log_likelihood(target, *self.mean_logvar(params), self.grey_levels)

    def mean(self, params):
        return params[..., 0, :].clamp(0, 1)

    def sample(self, params):
        top = self.grey_levels - 1
        return torch.round(super().sample(params) * top).clamp(0, top) / top


def auto_likelihood(info: DataInfo) -> str:
    """bernoulli for binarized/dynamic pixels, categorical for quantized ones, discretized_gaussian for
    continuous images, gaussian for points."""
    if info.view in ("binarized", "dynamic"):
        return "bernoulli"
    if info.view == "quantized":
        return "categorical"
    return "discretized_gaussian" if info.kind == "image" else "gaussian"


def make_likelihood(name: str, info: DataInfo, gaussian_std: float | None = None) -> Likelihood:
    """The likelihood called ``name`` ("auto" or one of :data:`NAMES`) for data described by ``info``;
    a choice that does not fit the data raises ``ConfigError``."""
    name = auto_likelihood(info) if name == "auto" else name
    image = info.kind == "image"
    if name == "bernoulli":
        if info.view == "quantized":
            raise ConfigError("a Bernoulli likelihood needs pixels in [0,1], not quantized levels; "
                              "use --likelihood categorical or --view binarized")
        return Bernoulli()
    if name == "categorical":
        if not info.levels:
            raise ConfigError("a categorical likelihood needs quantized data: add --view quantized")
        return Categorical(int(info.levels))
    if name == "discretized_gaussian":
        if not image:
            raise ConfigError("a discretized Gaussian likelihood needs images with grey levels; "
                              "use --likelihood gaussian for points")
        return DiscretizedGaussian(grey_levels(info), info, gaussian_std)
    if name == "gaussian":
        return Gaussian(gaussian_std, grey_levels(info) if image else 0, info)
    raise ConfigError(f"unknown likelihood {name!r}; choose one of auto, {', '.join(NAMES)}")
