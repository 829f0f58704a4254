"""Autoencoders and variational autoencoders (Kingma & Welling, 2014), with the math in the open.

Notation: x data, z latent, q(z|x) = N(mu, diag(exp(logvar))) the encoder, p(z) = N(0, I) the
prior, p(x|z) the decoder's likelihood (Bernoulli, categorical over K levels, or Gaussian).

  ELBO(x) = E_q[log p(x|z) + log p(z) - log q(z|x)]                  (SGVB estimate, L samples)
          = E_q[log p(x|z)] - KL(q(z|x) || p(z))                     (analytic-KL form)
  KL      = 1/2 sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)
  IWAE_k  = log 1/k sum_i p(x, z_i) / q(z_i|x),  z_i ~ q(z|x)        (Burda et al., 2016)
  bpd     = nll * log2(e) / prod(dims)                                (001, section 1.6)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import field, require
from ..data.registry import DataInfo
from ..errors import ConfigError
from ..nn import ConvDecoder, ConvEncoder, mlp
from .base import GenerativeModel, register_model

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------- densities and estimators
def log_normal_pdf(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))), summed over the last dimension.

    = -1/2 sum_d [log(2 pi) + logvar_d + (x_d - mean_d)^2 / exp(logvar_d)]
    """
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I): a sample whose gradient flows to mean and
    logvar (the reparameterization trick). With ``n``, returns ``n`` samples stacked in front."""
    shape = mean.shape if n is None else (n, *mean.shape)
    eps = torch.randn(shape, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_normal_std_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(mean, diag(exp(logvar))) || N(0, I)) = 1/2 sum_d (mean^2 + exp(logvar) - 1 - logvar)."""
    return 0.5 * (mean ** 2 + torch.exp(logvar) - 1.0 - logvar).sum(-1)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)], p = sigmoid(logits), summed over one
    example's dimensions (all of ``x``'s but the first); ``logits`` may carry extra leading sample dims."""
    n_event = x.dim() - 1
    ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return ll.flatten(start_dim=-n_event).sum(-1) if n_event > 1 else ll.sum(-1)


def categorical_log_likelihood(x_levels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i log softmax(logits_i)[x_i] for integer levels ``x_levels`` of shape [B, *event]
    and ``logits`` of shape [..., B, K, *event] (K levels; extra leading sample dims allowed)."""
    n_event = x_levels.dim() - 1
    k_dim = -(n_event + 1)
    logp = torch.log_softmax(logits, dim=k_dim)
    index = x_levels.long().unsqueeze(k_dim).expand(*logits.shape[:k_dim], 1, *logits.shape[k_dim + 1:])
    ll = logp.gather(k_dim, index).squeeze(k_dim)
    return ll.flatten(start_dim=-n_event).sum(-1) if n_event > 1 else ll.sum(-1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))) over all dimensions of one example."""
    n_event = x.dim() - 1
    x = x.expand_as(mean)
    return log_normal_pdf(x.flatten(-n_event), mean.flatten(-n_event), logvar.expand_as(mean).flatten(-n_event))


def bits_per_dim(nll_nats: torch.Tensor, shape) -> torch.Tensor:
    """bpd = nll * log2(e) / prod(d_i), the d_i being one example's dimensions (001, section 1.6)."""
    return nll_nats * math.log2(math.e) / math.prod(shape)


def iwae_log_likelihood(log_weights_fn, k: int, chunk: int) -> torch.Tensor:
    """log 1/k sum_{i<=k} w_i from chunks of log-weights: ``log_weights_fn(c)`` returns [c, B].

    Chunks are combined with logsumexp, so k=5000 needs only one chunk's memory.
    """
    total = None
    done = 0
    while done < k:
        c = min(chunk, k - done)
        lse = torch.logsumexp(log_weights_fn(c), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += c
    return total - math.log(k)


# ----------------------------------------------------------------- encoder / decoder builders
def _input_dims(info: DataInfo) -> int:
    return math.prod(info.shape)


def build_encoder(arch: str, info: DataInfo, out_dim: int, hidden, channels: int, act: str) -> nn.Module:
    if arch == "cnn":
        if len(info.shape) != 3:
            raise ConfigError(f"arch=cnn needs images (C,H,W); this data has shape {info.shape}. Use --arch mlp")
        return ConvEncoder(info.shape, out_dim, channels, act)
    return nn.Sequential(nn.Flatten(), mlp([_input_dims(info), *hidden, out_dim], act))


def build_decoder(arch: str, info: DataInfo, in_dim: int, out_channels_per_pixel: int, hidden,
                  channels: int, act: str) -> nn.Module:
    """A decoder producing ``out_channels_per_pixel`` values per data dimension, shaped
    [B, out_channels_per_pixel * C, H, W] for images (cnn) or [B, out * D] (mlp, reshaped later)."""
    if arch == "cnn":
        c, h, w = info.shape
        return ConvDecoder(in_dim, (out_channels_per_pixel * c, h, w), channels, act)
    return mlp([in_dim, *list(hidden)[::-1], out_channels_per_pixel * _input_dims(info)], act)


def _auto_likelihood(info: DataInfo) -> str:
    if info.view in ("binarized", "dynamic"):
        return "bernoulli"
    if info.view == "quantized":
        return "categorical"
    return "gaussian"


@dataclass
class AEConfig:
    arch: Literal["mlp", "cnn"] = field("mlp", "encoder/decoder: MLP or the CNN of 001 Q1.7")
    hidden: tuple[int, ...] = field((256, 256), "MLP hidden sizes (decoder mirrors them)")
    channels: int = field(32, "CNN base channels")
    z_dim: int = field(2, "latent dimension")
    act: Literal["auto", "relu", "gelu", "leaky_relu", "tanh", "silu"] = field("auto", "activation (auto: relu for mlp, gelu for cnn)")
    rec_loss: Literal["bce", "mse"] = field("bce", "reconstruction loss: binary cross-entropy or squared error")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(all(h > 0 for h in self.hidden), "hidden sizes must be positive")

    @property
    def activation(self) -> str:
        return ("gelu" if self.arch == "cnn" else "relu") if self.act == "auto" else self.act


@register_model("ae", AEConfig, "deterministic autoencoder (MLP or CNN)", data_defaults={"view": "continuous"})
class AE(GenerativeModel):
    """x -> z = enc(x) -> x_hat = dec(z); loss = reconstruction error summed over pixels."""

    def __init__(self, config: AEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.latent_dim = c.z_dim
        self.encoder = build_encoder(c.arch, data_info, c.z_dim, c.hidden, c.channels, c.activation)
        self.decoder_net = build_decoder(c.arch, data_info, c.z_dim, 1, c.hidden, c.channels, c.activation)

    def _scale(self, x):
        return x / (self.data_info.levels - 1) if self.data_info.view == "quantized" else x

    def encode(self, x):
        return self.encoder(self._scale(x))

    def decoder_logits(self, z):
        return self.decoder_net(z).view(-1, *self.data_info.shape)

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
    arch: Literal["mlp", "cnn"] = field("mlp", "encoder/decoder: MLP or the CNN of 001 Q1.7")
    hidden: tuple[int, ...] = field((256, 256, 256), "MLP hidden sizes (decoder mirrors them); 002 uses 3x256")
    channels: int = field(32, "CNN base channels")
    z_dim: int = field(20, "latent dimension")
    act: Literal["auto", "relu", "gelu", "leaky_relu", "tanh", "silu"] = field("auto", "activation (auto: relu for mlp, gelu for cnn)")
    likelihood: Literal["auto", "bernoulli", "categorical", "gaussian"] = field(
        "auto", "p(x|z); auto: bernoulli for binarized/dynamic, categorical for quantized, gaussian otherwise")
    gaussian_std: float | None = field(None, "gaussian likelihood: fixed std (default: learned per dimension)")
    objective: Literal["analytic", "sgvb"] = field("analytic", "ELBO estimator: analytic KL or the SGVB Monte-Carlo form")
    coeff: float = field(1.0, "weight (beta) on the KL term during training; 1 is the true ELBO")
    n_samples: int = field(1, "Monte-Carlo samples L per example in the training ELBO")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(self.n_samples >= 1, "n_samples must be >= 1")
        require(self.coeff >= 0, "coeff must be >= 0")
        require(self.gaussian_std is None or self.gaussian_std > 0, "gaussian_std must be positive")

    @property
    def activation(self) -> str:
        return ("gelu" if self.arch == "cnn" else "relu") if self.act == "auto" else self.act


@register_model("vae", VAEConfig, "variational autoencoder: MLP/CNN, Bernoulli/categorical/Gaussian p(x|z), "
                "analytic-KL or SGVB ELBO", data_defaults={"view": "binarized"})
class VAE(GenerativeModel):
    """q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) from the decoder."""

    def __init__(self, config: VAEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.likelihood = _auto_likelihood(data_info) if c.likelihood == "auto" else c.likelihood
        if self.likelihood == "categorical" and not data_info.levels:
            raise ConfigError("a categorical likelihood needs quantized data: add --view quantized")
        if self.likelihood == "bernoulli" and data_info.view == "quantized":
            raise ConfigError("a Bernoulli likelihood needs pixels in [0,1], not quantized levels; "
                              "use --likelihood categorical or --view binarized")
        self.latent_dim = c.z_dim
        self.levels = data_info.levels or 0
        per_pixel = {"bernoulli": 1, "categorical": self.levels,
                     "gaussian": 1 if c.gaussian_std else 2}[self.likelihood]
        self.encoder = build_encoder(c.arch, data_info, 2 * c.z_dim, c.hidden, c.channels, c.activation)
        self.decoder_net = build_decoder(c.arch, data_info, c.z_dim, per_pixel, c.hidden, c.channels, c.activation)
        self.per_pixel = per_pixel

    # ------------------------------------------------------------- parts
    def _scale(self, x):
        return x / (self.levels - 1) if self.likelihood == "categorical" else x

    def posterior(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder: (mu, logvar) of q(z|x)."""
        mu, logvar = self.encoder(self._scale(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for z of shape [..., z_dim]: [..., P, D], P values for each of the D data dimensions."""
        lead = z.shape[:-1]
        out = self.decoder_net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*lead, self.per_pixel, -1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z), for z of shape [..., B, z_dim] and x of shape [B, *data_shape]."""
        out, x = self.decoder_params(z), x.flatten(1)
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, out[..., 0, :])
        if self.likelihood == "categorical":
            return categorical_log_likelihood(x, out)
        mean = out[..., 0, :]
        if self.config.gaussian_std:
            logvar = torch.full_like(mean, 2 * math.log(self.config.gaussian_std))
        else:
            logvar = out[..., 1, :].clamp(-12.0, 6.0)
        return gaussian_log_likelihood(x, mean, logvar)

    def elbo(self, x: torch.Tensor, objective: str | None = None, n_samples: int | None = None,
             coeff: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-example ELBO terms, averaged over L samples of z ~ q(z|x).

        analytic: E[log p(x|z)] - coeff * KL(q||p)
        sgvb:     E[log p(x|z) + coeff * (log p(z) - log q(z|x))]
        """
        objective = objective or self.config.objective
        mu, logvar = self.posterior(x)
        n = n_samples or self.config.n_samples
        z = reparameterize(mu, logvar, n if n > 1 else None)      # [L, B, d], or [B, d] when L = 1
        average = (lambda t: t.mean(0)) if n > 1 else (lambda t: t)
        rec = average(self.log_likelihood(x, z))
        if objective == "analytic":
            kl = kl_normal_std_normal(mu, logvar)
        else:
            log_pz = log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
            kl = average(log_normal_pdf(z, mu, logvar) - log_pz)
        return {"elbo": rec - coeff * kl, "rec": rec, "kl": kl}

    def iwae(self, x: torch.Tensor, k: int, chunk: int | None = None) -> torch.Tensor:
        """The importance-weighted bound log p(x) >= IWAE_k, per example, computed in chunks."""
        mu, logvar = self.posterior(x)
        chunk = chunk or max(1, int(4e7 // (len(x) * math.prod(self.data_info.shape) * self.per_pixel)))

        def log_weights(c):
            z = reparameterize(mu, logvar, c)
            return (self.log_likelihood(x, z) + log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
                    - log_normal_pdf(z, mu, logvar))
        return iwae_log_likelihood(log_weights, k, chunk)

    # ------------------------------------------------------------- protocol
    def loss(self, batch, phase="main"):
        x = batch[0]
        terms = self.elbo(x, coeff=self.config.coeff)
        loss = -terms["elbo"].mean()
        logs = {"rec": -terms["rec"].mean(), "kl": terms["kl"].mean()}
        if self.data_info.kind == "image":
            logs["bpd"] = bits_per_dim(loss.detach(), self.data_info.shape)
        return loss, logs

    def eval_metrics(self, batch, iwae_k: int = 0, **options):
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
        return x.reshape(*x.shape[:-1], *self.data_info.shape)

    def mean_of(self, out: torch.Tensor) -> torch.Tensor:
        """E[x|z] from decoder output [..., P, D], shaped like the data (images in [0, 1])."""
        if self.likelihood == "bernoulli":
            return self._unflatten(torch.sigmoid(out[..., 0, :]))
        if self.likelihood == "categorical":
            levels = torch.arange(self.levels, dtype=out.dtype, device=out.device).unsqueeze(-1)
            return self._unflatten((torch.softmax(out, dim=-2) * levels).sum(-2) / (self.levels - 1))
        return self._unflatten(out[..., 0, :])

    def draw_of(self, out: torch.Tensor) -> torch.Tensor:
        """A sample x ~ p(x|z) from decoder output [..., P, D] (images scaled to [0, 1])."""
        if self.likelihood == "bernoulli":
            return self._unflatten(torch.bernoulli(torch.sigmoid(out[..., 0, :])))
        if self.likelihood == "categorical":
            x = torch.distributions.Categorical(logits=out.transpose(-1, -2)).sample()
            return self._unflatten(x.float() / (self.levels - 1))
        mean = out[..., 0, :]
        std = self.config.gaussian_std or torch.exp(0.5 * out[..., 1, :].clamp(-12.0, 6.0))
        return self._unflatten(mean + std * torch.randn_like(mean))

    def encode(self, x):
        return self.posterior(x)[0]

    def decode(self, z):
        return self.mean_of(self.decoder_params(z))

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, draw: bool = False) -> torch.Tensor:
        """n samples from the model: z ~ N(0, I), then E[x|z] (``draw=True``: x ~ p(x|z))."""
        z = torch.randn(n, self.latent_dim, device=next(self.parameters()).device)
        out = self.decoder_params(z)
        return self.draw_of(out) if draw else self.mean_of(out)
