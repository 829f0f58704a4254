"""Normalization layers written out: LayerNorm and RMSNorm.

API
---
* ``LayerNorm(dim, eps=1e-5, bias=True)`` -- y = (x - mean) / sqrt(var + eps) * weight + bias over the
  last dimension (Ba et al. 2016, "Layer Normalization", Eq. 4 with the gain and bias of Sec. 3.1).
* ``RMSNorm(dim, eps=1e-6, affine=True)`` -- y = x / sqrt(mean(x^2) + eps) * weight
  (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", Eq. 4).
* ``make_norm(kind, dim)`` -- ``kind`` is ``"layernorm"`` or ``"rmsnorm"``.

Both act on the last dimension of a tensor of any shape, e.g. ``[B, T, C]``. The formulas are written out
in :func:`layer_norm` and :func:`rms_norm`; the modules run torch's fused kernels (``F.layer_norm``,
``F.rms_norm``: one pass instead of five), which the tests check equal to the written-out formulas.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError

NORMS = ("layernorm", "rmsnorm")


def layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalize the last dimension to mean 0 and (biased) variance 1 (Ba et al. 2016, Eq. 4).

    mu = mean_i x_i, sigma^2 = mean_i (x_i - mu)^2, x_hat = (x - mu) / sqrt(sigma^2 + eps).
    A worked example: x = [2, 1] has mu = 1.5, sigma = 0.5 and
    normalizes to [1, -1]; any 2-vector with distinct entries goes to +-[1, -1].
    """
    mu = x.mean(dim=-1, keepdim=True)
    var = (x - mu).pow(2).mean(dim=-1, keepdim=True)   # biased variance, as nn.LayerNorm
    return (x - mu) * torch.rsqrt(var + eps)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / RMS(x) with RMS(x) = sqrt(mean_i x_i^2 + eps) (Zhang & Sennrich 2019, Eq. 4); no centring."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class LayerNorm(nn.Module):
    """Layer normalization with a learned gain (init 1) and optional bias (init 0) (Ba et al. 2016)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)   # = layer_norm(x) * w + b


class RMSNorm(nn.Module):
    """Root-mean-square normalization with an optional learned gain (Zhang & Sennrich 2019, Eq. 4)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if w is not None and w.dtype != x.dtype:       # bf16 queries/keys under autocast: keep the fused kernel
            w = w.to(x.dtype)
        return F.rms_norm(x, (x.shape[-1],), w, self.eps)                                # = rms_norm(x) * w


def make_norm(kind: str, dim: int, bias: bool = True) -> nn.Module:
    """``"layernorm"`` -> :class:`LayerNorm`, ``"rmsnorm"`` -> :class:`RMSNorm`."""
    if kind == "layernorm":
        return LayerNorm(dim, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim)
    raise ConfigError(f"unknown norm {kind!r}; use one of {', '.join(NORMS)}")
