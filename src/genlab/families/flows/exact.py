"""The exact-likelihood base shared by normalizing flows and continuous normalizing flows.

A subclass gives ``log_prob(x)`` (Dinh et al. 2017, Eq. 3 for flows; Chen et al. 2018, Eq. 4 for
ODE flows). On points the NLL is -log p(x). On images (discrete data with L grey levels, pixel values
k/(L-1)) the model is the density of the uniformly dequantized u = (k + U[0,1)) / L in [0, 1)^D and

  -log P(k) <= E_U[-log p(u)] + D log L         (nats; Theis, van den Oord & Bethge 2016, Eq. 3-4)
  bpd        = that / (D log 2)                 (van den Oord et al. 2016)

so with L = 256 (MNIST) the bits/dim are the usual 8-bit ones, in the same table as a VAE's discrete
NLL; a uniform density scores exactly log2 L = 8 bits/dim.
"""
from __future__ import annotations

import math

import torch

from genlab.data.registry import DataInfo
from genlab.maths.densities import bits_per_dim, dequantized_nll, grey_levels, to_levels
from genlab.model import GenerativeModel


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
        return dequantized_nll(self.log_prob, to_levels(x, self.data_info), self.levels)

    def loss(self, batch, phase="main"):
        loss = self.nll_nats(batch[0]).mean()
        logs = {"bpd": bits_per_dim(loss.detach(), self.data_info.shape)} if self.image else {}
        return loss, logs

    def eval_metrics(self, batch, **options):
        """Per-example ``nll_nats`` (and ``bpd`` for images), shape [B]."""
        nll = self.nll_nats(batch[0]).detach()
        out = {"nll_nats": nll}
        if self.image:
            out["bpd"] = bits_per_dim(nll, self.data_info.shape)
        return out
