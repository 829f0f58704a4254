"""Autoencoders and variational autoencoders (Kingma & Welling, 2014), with the math in the open.

Notation: x data, z latent, q(z|x) = N(mu, diag(exp(logvar))) the encoder, p(z) = N(0, I) the
prior, p(x|z) the decoder's likelihood (Bernoulli, categorical over K levels, discretized Gaussian, or
Gaussian). The densities, the KL, the reparameterization, the IWAE combination and bits/dim live in
:mod:`genlab.maths.densities`; the encoder/decoder builders in :mod:`genlab.nn.blocks`.

  ELBO(x) = E_q[log p(x|z) + log p(z) - log q(z|x)]                  (generic SGVB estimate, L samples; K&W Eq. 6)
          = E_q[log p(x|z)] - KL(q(z|x) || p(z))                     (analytic-KL form; K&W Eqs. 7, 10)
  KL      = 1/2 sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)       (K&W Appendix B)
  IWAE_k  = log 1/k sum_i p(x, z_i) / q(z_i|x),  z_i ~ q(z|x)        (Burda et al., 2016, Eq. 8)
  bpd     = nll * log2(e) / prod(dims)                                (van den Oord et al. 2016)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from genlab.abilities import Decodes, Encodes, GaussianPrior, MeanSamples, Reconstructs, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.families.vae.likelihoods import Likelihood, make_likelihood
from genlab.maths.densities import (
    bits_per_dim,
    iwae_log_likelihood,
    kl_normal_std_normal,
    log_normal_pdf,
    reparameterize,
)
from genlab.model import GenerativeModel, register_model
from genlab.nn.blocks import build_decoder, build_encoder


@dataclass
class AEConfig:
    arch: Literal["mlp", "cnn"] = field("mlp", "encoder/decoder: MLP or the small CNN of genlab.nn.blocks")
    hidden: tuple[int, ...] = field((256, 256), "MLP hidden sizes (decoder mirrors them)")
    channels: int = field(32, "CNN base channels")
    z_dim: int = field(2, "latent dimension")
    act: Literal["auto", "relu", "gelu", "leaky_relu", "tanh", "silu"] = field(
        "auto", "activation (auto: relu for mlp, gelu for cnn)")
    rec_loss: Literal["bce", "mse"] = field("bce", "reconstruction loss: binary cross-entropy or squared error")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(all(h > 0 for h in self.hidden), "hidden sizes must be positive")
        require(self.channels > 0, f"channels must be positive, got {self.channels}")

    @property
    def activation(self) -> str:
        return ("gelu" if self.arch == "cnn" else "relu") if self.act == "auto" else self.act


@register_model("ae", AEConfig, "deterministic autoencoder (MLP or CNN)", data_defaults={"view": "continuous"},
                abilities={Encodes, Decodes, Reconstructs}, data_kinds=("image", "points"))
class AE(GenerativeModel):
    """x -> z = enc(x) -> x_hat = dec(z); loss = reconstruction error summed over pixels."""

    def __init__(self, config: AEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.latent_dim = c.z_dim
        self.encoder = build_encoder(c.arch, data_info.shape, c.z_dim, c.hidden, c.channels, c.activation)
        self.decoder_net = build_decoder(c.arch, data_info.shape, c.z_dim, 1, c.hidden, c.channels, c.activation)

    def _scale(self, x):
        return x / (self.data_info.levels - 1) if self.data_info.view == "quantized" else x

    def encode(self, x):
        return self.encoder(self._scale(x))

    def decoder_logits(self, z):
        return self.decoder_net(z).view(-1, *self.data_info.shape)          # [B, D] or [B, C, H, W] -> [B, *shape]

    def decode(self, z):
        out = self.decoder_logits(z)
        return torch.sigmoid(out) if self.config.rec_loss == "bce" else out

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def reconstruction_error(self, x) -> torch.Tensor:
        """Per-example BCE (with logits) or squared error, summed over pixels."""
        x = self._scale(x)
        out = self.decoder_logits(self.encoder(x))
        if self.config.rec_loss == "bce":
            err = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            err = (out - x) ** 2
        return err.flatten(1).sum(-1)

    def loss(self, batch, phase="main"):
        rec = self.reconstruction_error(batch[0]).mean()
        return rec, {"rec": rec}

    def eval_metrics(self, batch, **options):
        x = self._scale(batch[0])
        err = self.reconstruction_error(batch[0])
        mse = ((self.reconstruct(batch[0]) - x) ** 2).flatten(1).mean(-1)
        return {"rec_loss": err, "mse": mse}


@dataclass
class VAEConfig:
    arch: Literal["mlp", "cnn"] = field("mlp", "encoder/decoder: MLP or the small CNN of genlab.nn.blocks")
    hidden: tuple[int, ...] = field((256, 256, 256), "MLP hidden sizes (decoder mirrors them)")
    channels: int = field(32, "CNN base channels")
    z_dim: int = field(20, "latent dimension")
    act: Literal["auto", "relu", "gelu", "leaky_relu", "tanh", "silu"] = field(
        "auto", "activation (auto: relu for mlp, gelu for cnn)")
    likelihood: Literal["auto", "bernoulli", "categorical", "gaussian", "discretized_gaussian"] = field(
        "auto", "p(x|z); auto: bernoulli for binarized/dynamic, categorical for quantized, discretized_gaussian "
        "for continuous images, gaussian for points (on images gaussian is a density of dequantized pixels)")
    gaussian_std: float | None = field(None, "gaussian likelihoods: fixed std (default: learned per dimension)")
    objective: Literal["analytic", "sgvb"] = field(
        "analytic", "ELBO estimator: analytic KL or the SGVB Monte-Carlo form")
    coeff: float = field(1.0, "weight (beta) on the KL term during training; 1 is the true ELBO")
    n_samples: int = field(1, "Monte-Carlo samples L per example in the training ELBO")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(all(h > 0 for h in self.hidden), f"hidden sizes must be positive, got {self.hidden}")
        require(self.channels > 0, f"channels must be positive, got {self.channels}")
        require(self.n_samples >= 1, "n_samples must be >= 1")
        require(self.coeff >= 0, "coeff must be >= 0")
        require(self.gaussian_std is None or self.gaussian_std > 0, "gaussian_std must be positive")

    @property
    def activation(self) -> str:
        return ("gelu" if self.arch == "cnn" else "relu") if self.act == "auto" else self.act


@dataclass
class VAEEvalConfig:
    iwae_k: int = field(100, "importance samples of the IWAE bound reported as nll_nats (1: the ELBO itself)")

    def validate(self):
        require(self.iwae_k >= 1, f"iwae_k must be >= 1 (k=1 is the ELBO; more samples tighten the bound), "
                                  f"got {self.iwae_k}")


@register_model("vae", VAEConfig, "variational autoencoder: MLP/CNN, Bernoulli/categorical/(discretized) Gaussian "
                "p(x|z), analytic-KL or SGVB ELBO", data_defaults={"view": "binarized"}, eval_config=VAEEvalConfig,
                abilities={Samples, MeanSamples, Encodes, Decodes, Reconstructs, GaussianPrior},
                data_kinds=("image", "points"))
class VAE(GenerativeModel):
    """q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) from the decoder.

    p(x|z) is one :class:`~genlab.families.vae.likelihoods.Likelihood` object (``self.likelihood``:
    Bernoulli, categorical, Gaussian or discretized Gaussian, chosen by ``--likelihood``). Every
    likelihood on images is a likelihood of the discrete pixels, so ``nll_nats`` and ``bpd`` are >= 0
    and sit in one table with the flows' (see :mod:`genlab.families.vae.likelihoods`).
    """

    def __init__(self, config: VAEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.likelihood: Likelihood = make_likelihood(c.likelihood, data_info, c.gaussian_std)
        self.latent_dim = c.z_dim
        self.levels = data_info.levels or 0
        per_pixel = self.likelihood.params_per_dim
        self.encoder = build_encoder(c.arch, data_info.shape, 2 * c.z_dim, c.hidden, c.channels, c.activation)
        self.decoder_net = build_decoder(c.arch, data_info.shape, c.z_dim, per_pixel, c.hidden, c.channels,
                                         c.activation)
        self.per_pixel = per_pixel

    # ------------------------------------------------------------- parts
    def _scale(self, x):
        """The encoder's input: quantized levels scaled to [0, 1], other views as they are."""
        return x / (self.levels - 1) if self.data_info.view == "quantized" else x

    def posterior(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder: (mu, logvar) of q(z|x)."""
        mu, logvar = self.encoder(self._scale(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for z of shape [..., z_dim]: [..., P, D], P values for each of the D data dimensions."""
        lead = z.shape[:-1]
        out = self.decoder_net(z.reshape(-1, z.shape[-1]))           # [..., z_dim] -> [N, z_dim]
        return out.reshape(*lead, self.per_pixel, -1)                 # [N, P * D] -> [..., P, D]

    def log_likelihood(self, target: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats for z of shape [..., B, z_dim] and ``target = self.likelihood.target(x)`` [B, D]."""
        return self.likelihood.log_prob(target, self.decoder_params(z))

    def elbo(self, x: torch.Tensor, objective: str | None = None, n_samples: int | None = None,
             coeff: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-example ELBO terms, averaged over L samples of z ~ q(z|x) (Kingma & Welling 2014):

        analytic: E[log p(x|z)] - coeff * KL(q||p)                              (ibid., Eqs. 7, 10)
        sgvb:     E[log p(x|z) + coeff * (log p(z) - log q(z|x))]               (ibid., Eq. 6)
        """
        objective = objective or self.config.objective
        mu, logvar = self.posterior(x)
        n = n_samples or self.config.n_samples
        z = reparameterize(mu, logvar, n if n > 1 else None)      # [L, B, d], or [B, d] when L = 1
        average = (lambda t: t.mean(0)) if n > 1 else (lambda t: t)
        rec = average(self.log_likelihood(self.likelihood.target(x), z))
        if objective == "analytic":
            kl = kl_normal_std_normal(mu, logvar)
        else:
            log_pz = log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
            kl = average(log_normal_pdf(z, mu, logvar) - log_pz)
        return {"elbo": rec - coeff * kl, "rec": rec, "kl": kl}

    def iwae(self, x: torch.Tensor, k: int, chunk: int | None = None) -> torch.Tensor:
        """The importance-weighted bound log p(x) >= IWAE_k (Burda et al. 2016, Eq. 8), per example,
        computed in chunks; one dequantized draw of x is shared by all k samples."""
        mu, logvar = self.posterior(x)
        target = self.likelihood.target(x)
        chunk = chunk or max(1, int(4e7 // (len(x) * math.prod(self.data_info.shape) * self.per_pixel)))

        def log_weights(c):
            z = reparameterize(mu, logvar, c)
            return (self.log_likelihood(target, z) + log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
                    - log_normal_pdf(z, mu, logvar))
        return iwae_log_likelihood(log_weights, k, chunk)

    # ------------------------------------------------------------- protocol
    def loss(self, batch, phase="main"):
        """-mean(rec - coeff * KL). Logs: ``rec``, ``kl``; on images ``bpd`` = the true ELBO's bits/dim
        (coeff 1) and, when coeff != 1, ``loss_bpd`` = the weighted loss in bits/dim."""
        x = batch[0]
        terms = self.elbo(x, coeff=self.config.coeff)
        loss = -terms["elbo"].mean()
        rec, kl = terms["rec"].mean(), terms["kl"].mean()
        logs = {"rec": -rec, "kl": kl}
        if self.data_info.kind == "image":
            logs["bpd"] = bits_per_dim((kl - rec).detach() if self.config.coeff != 1 else loss.detach(),
                                       self.data_info.shape)
            if self.config.coeff != 1:
                logs["loss_bpd"] = bits_per_dim(loss.detach(), self.data_info.shape)
        return loss, logs

    def eval_metrics(self, batch, iwae_k: int = 0, **options):
        """Per-example [B]: ``elbo_nats``, ``rec_nats``, ``kl_nats``, ``nll_nats`` (IWAE_k, or -ELBO when
        iwae_k = 0) and on images ``bpd`` (of nll_nats) and ``elbo_bpd``."""
        x = batch[0]
        terms = self.elbo(x, objective="analytic", n_samples=1)
        out = {"elbo_nats": terms["elbo"], "rec_nats": -terms["rec"], "kl_nats": terms["kl"]}
        nll = -terms["elbo"]
        if iwae_k:
            nll = -self.iwae(x, iwae_k)
        out["nll_nats"] = nll
        if self.data_info.kind == "image":
            out["bpd"] = bits_per_dim(nll, self.data_info.shape)
            out["elbo_bpd"] = bits_per_dim(-terms["elbo"], self.data_info.shape)
        return out

    def _unflatten(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], *self.data_info.shape)       # [..., D] -> [..., *shape]

    def encode(self, x):
        return self.posterior(x)[0]

    def decode(self, z):
        return self._unflatten(self.likelihood.mean(self.decoder_params(z)))

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, draw: bool = False) -> torch.Tensor:
        """n samples from the model: z ~ N(0, I), then E[x|z] (``draw=True``: x ~ p(x|z) in data space, e.g.
        binary pixels for a Bernoulli decoder; ``MeanSamples``)."""
        z = torch.randn(n, self.latent_dim, device=next(self.parameters()).device)
        out = self.decoder_params(z)
        return self._unflatten(self.likelihood.sample(out) if draw else self.likelihood.mean(out))
