"""Normalizing flows: exact likelihoods by the change of variables (003 Problem 4).

Direction convention: every :class:`Bijection` maps *data towards the base* in ``forward``
(the normalizing direction) and back in ``inverse``; both return the per-example log |det J|
of the map they apply. For a chain x -> z = f_K o ... o f_1(x) with z ~ N(0, I):

  log p(x) = log N(f(x); 0, I) + sum_k log |det d f_k / d h_{k-1}|          (change of variables)
  sample:    z ~ N(0, I),  x = f_1^{-1} o ... o f_K^{-1}(z)                  (inverse pass)

Layers: the seed's invertible MLP layer y = LeakyReLU(W x + b) with W triangular and a positive
(exp-parameterised) diagonal, permutations, ActNorm with data-dependent initialisation, RealNVP
affine coupling, and the logit transform for images.

Images (discrete data with L grey levels, intensities k/(L-1)): uniform dequantization
u = (k + U[0,1)) / L puts the data in [0, 1)^D; the flow models the density p(u) (logit Jacobian
included). Since each k owns a cell of volume L^-D, Jensen gives the discrete bound

  -log P(k) <= E_U[-log p(u)] + D log L          (nats; the "[0, L)-scaled" continuous NLL)
  bpd       = that / (D log 2)                   (``bits_per_dim`` of models/vae.py)

so with L = 256 (MNIST) the bits/dim are the usual 8-bit ones, comparable with a VAE's discrete NLL.
The logit squeeze a makes p(u) a density on (-a/(1-2a), (1-a)/(1-2a)), slightly wider than [0, 1):
the mass outside is lost, which only makes the reported NLL a (slightly) more conservative bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..config import field, require
from ..data.registry import DataInfo
from ..errors import ConfigError
from ..nn import mlp
from .base import GenerativeModel, register_model
from .vae import bits_per_dim, log_normal_pdf


# ----------------------------------------------------------------- the bijection interface
class Bijection(nn.Module):
    """``forward(x) -> (y, log|det dy/dx|)``, ``inverse(y) -> (x, log|det dx/dy|)``, both per example."""

    def forward(self, x):
        raise NotImplementedError

    def inverse(self, y):
        raise NotImplementedError


class Compose(Bijection):
    """f = f_K o ... o f_1; log|det J_f| = sum_k log|det J_{f_k}| (chain rule for determinants)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        total = x.new_zeros(len(x))
        for layer in self.layers:
            x, logdet = layer(x)
            total = total + logdet
        return x, total

    def inverse(self, y):
        total = y.new_zeros(len(y))
        for layer in reversed(self.layers):
            y, logdet = layer.inverse(y)
            total = total + logdet
        return y, total

    def stages(self, x) -> list[torch.Tensor]:
        """x and its image after each layer (for figures of the transformation)."""
        out = [x]
        for layer in self.layers:
            x, _ = layer(x)
            out.append(x)
        return out


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the batch dimension (the base distribution)."""
    flat = z.flatten(1)
    return log_normal_pdf(flat, torch.zeros_like(flat), torch.zeros_like(flat))


# ----------------------------------------------------------------- layers
class TriangularLeakyLayer(Bijection):
    """The seed's invertible MLP layer (003 Problem 4 b): y = sigma(W x + b).

    W lower triangular with W_ii = exp(s_i) > 0, so det W = prod_i exp(s_i); sigma = LeakyReLU
    with slope a > 0 is strictly increasing, sigma'(h) in {1, a}. Hence

      log|det dy/dx| = sum_i s_i + sum_i log sigma'(h_i),   h = W x + b
      inverse:  h = sigma^{-1}(y) (y / a where y <= 0),  x = W^{-1}(h - b)  (triangular solve)
    """

    def __init__(self, dim: int, slope: float = 0.2):
        super().__init__()
        if not slope > 0:
            raise ConfigError(f"LeakyReLU slope must be > 0 to be invertible, got {slope}")
        self.slope = slope
        self.lower = nn.Parameter(torch.randn(dim, dim) * (0.3 / math.sqrt(dim)))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def weight(self) -> torch.Tensor:
        return torch.tril(self.lower, -1) + torch.diag(torch.exp(self.log_diag))

    def forward(self, x):
        h = x @ self.weight().T + self.bias
        y = torch.where(h > 0, h, self.slope * h)
        log_act = (h <= 0).to(h.dtype).sum(-1) * math.log(self.slope)
        return y, self.log_diag.sum() + log_act

    def inverse(self, y):
        h = torch.where(y > 0, y, y / self.slope)
        x = torch.linalg.solve_triangular(self.weight(), (h - self.bias).T, upper=False).T
        log_act = (y <= 0).to(y.dtype).sum(-1) * math.log(self.slope)
        return x, -(self.log_diag.sum() + log_act)


class Permutation(Bijection):
    """y = x[perm] on the last dimension; |det| = 1."""

    def __init__(self, perm: torch.Tensor):
        super().__init__()
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x):
        return x[..., self.perm], x.new_zeros(len(x))

    def inverse(self, y):
        return y[..., self.inv_perm], y.new_zeros(len(y))


class Reshape(Bijection):
    """A change of shape (e.g. image -> vector); |det| = 1."""

    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return x.reshape(len(x), *self.out_shape), x.new_zeros(len(x))

    def inverse(self, y):
        return y.reshape(len(y), *self.in_shape), y.new_zeros(len(y))


class ActNorm(Bijection):
    """y = x * exp(log_scale) + loc, one (loc, log_scale) per feature / channel (Glow).

    log|det| = (number of positions sharing a parameter) * sum log_scale. Data-dependent init:
    the first training batch sets them so that y has zero mean and unit variance per feature.
    """

    def __init__(self, param_shape):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _reduce_dims(self, x):
        return [0] + [i + 1 for i, s in enumerate(self.loc.shape) if s == 1]

    @torch.no_grad()
    def initialize(self, x):
        dims = self._reduce_dims(x)
        mean, std = x.mean(dims), x.std(dims).clamp_min(1e-6)
        self.log_scale.copy_(-torch.log(std).reshape(self.loc.shape))
        self.loc.copy_((-mean / std).reshape(self.loc.shape))
        self.initialized.fill_(True)

    def _logdet(self, x):
        return self.log_scale.sum() * (x[0].numel() // self.log_scale.numel()) * x.new_ones(len(x))

    def forward(self, x):
        if self.training and not bool(self.initialized):
            self.initialize(x)
        return x * torch.exp(self.log_scale) + self.loc, self._logdet(x)

    def inverse(self, y):
        return (y - self.loc) * torch.exp(-self.log_scale), -self._logdet(y)


class AffineCoupling(Bijection):
    """RealNVP affine coupling with a binary ``mask`` (1 = passed through unchanged):

      y = m*x + (1-m) * (x * exp(s) + t),   (s, t) = net(m*x),  s = scale * tanh(raw)
      log|det| = sum (1-m) * s;             inverse: x = m*y + (1-m) * (y - t) * exp(-s)
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, param_shape):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.scale = nn.Parameter(torch.ones(param_shape))

    def _shift_scale(self, x_masked):
        raw_s, t = self.net(x_masked).chunk(2, dim=1)
        s = self.scale * torch.tanh(raw_s)
        free = 1 - self.mask
        return s * free, t * free

    def forward(self, x):
        s, t = self._shift_scale(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(-1)

    def inverse(self, y):
        s, t = self._shift_scale(y * self.mask)
        return (y - t) * torch.exp(-s), -s.flatten(1).sum(-1)


class ConvConditioner(nn.Module):
    """(s, t) for image couplings: the masked image and the mask itself -> 2C channels (last conv zero-init)."""

    def __init__(self, mask: torch.Tensor, channels_in: int, hidden: int):
        super().__init__()
        self.register_buffer("mask", mask[:1].unsqueeze(0))
        self.net = nn.Sequential(
            nn.Conv2d(channels_in + 1, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels_in, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        return self.net(torch.cat([x, self.mask.expand(len(x), -1, -1, -1)], 1))


def mlp_conditioner(dim: int, hidden, act: str) -> nn.Module:
    net = mlp([dim, *hidden, 2 * dim], act)
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class LogitTransform(Bijection):
    """u in (0,1) -> y = logit(p), p = a + (1 - 2a) u (RealNVP's squeeze away from 0 and 1):

      log|dy/du| = sum_i [log(1 - 2a) - log p_i - log(1 - p_i)]
    """

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def _logdet(self, p):
        return (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(-1)

    def forward(self, u):
        p = self.alpha + (1 - 2 * self.alpha) * u
        return torch.log(p) - torch.log1p(-p), self._logdet(p)

    def inverse(self, y):
        p = torch.sigmoid(y)
        return (p - self.alpha) / (1 - 2 * self.alpha), -self._logdet(p)


# ----------------------------------------------------------------- discrete images
def grey_levels(info: DataInfo) -> int:
    """Number of grey levels L of the image data (intensities k / (L-1), or levels k directly)."""
    if info.view == "quantized":
        return int(info.levels)
    if info.view in ("binarized", "dynamic"):
        return 2
    levels = info.extras.get("grey_levels")
    if not levels:
        raise ConfigError(f"the flow needs the number of grey levels of {info.extras.get('dataset', 'this data')}; "
                          "use --view quantized --levels L")
    return int(levels)


def to_levels(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Integer levels k in {0..L-1} of a batch of images in the data's view."""
    if info.view == "continuous":
        return torch.round(x * (grey_levels(info) - 1))
    return x


def dequantize(k: torch.Tensor, levels: int) -> torch.Tensor:
    """u = (k + U[0,1)) / L: uniform dequantization into [0, 1)."""
    return (k + torch.rand_like(k)) / levels


# ----------------------------------------------------------------- models
class ExactLikelihoodModel(GenerativeModel):
    """What flows and continuous flows share: subclasses give ``log_prob(x)``; for images the likelihood
    is that of the discrete data through uniform dequantization, NLL = -log p(u) + D log L."""

    def __init__(self, config, data_info: DataInfo):
        super().__init__(config, data_info)
        self.image = data_info.kind == "image"
        self.levels = grey_levels(data_info) if self.image else None
        self.dims = math.prod(data_info.shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def nll_nats(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example NLL; images: -log p(u) + D log L, u dequantized (an upper bound on the discrete NLL)."""
        if not self.image:
            return -self.log_prob(x)
        u = dequantize(to_levels(x, self.data_info), self.levels)
        return -self.log_prob(u) + self.dims * math.log(self.levels)

    def loss(self, batch, phase="main"):
        loss = self.nll_nats(batch[0]).mean()
        logs = {"bpd": bits_per_dim(loss.detach(), self.data_info.shape)} if self.image else {}
        return loss, logs

    def eval_metrics(self, batch, **options):
        nll = self.nll_nats(batch[0]).detach()
        out = {"nll_nats": nll}
        if self.image:
            out["bpd"] = bits_per_dim(nll, self.data_info.shape)
        return out


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
                "normalizing flow of triangular LeakyReLU layers y = sigma(Wx+b) (003 P4), exact NLL",
                data_defaults={}, default_data="8gaussians")
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
                data_defaults={}, default_data="8gaussians")
class RealNVP(FlowModel):
    def __init__(self, config: RealNVPConfig, data_info: DataInfo):
        super().__init__(config, data_info, config.logit_alpha)

    def build_layers(self, shape):
        c = self.config
        layers: list[Bijection] = []
        if len(shape) == 3:
            cin, h, w = shape
            parity = (torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)) % 2
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
