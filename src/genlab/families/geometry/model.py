"""A VAE whose latent space is a torus S^1 x S^1 (in the spirit of Davidson et al. 2018), with the math in the open.

Latent: two angles theta = (theta_1, theta_2). Prior: uniform on the torus, p(theta) = (2 pi)^-2.
Posterior, independently on each circle: the von Mises distribution

  q(theta | x) = exp(kappa cos(theta - mu)) / (2 pi I0(kappa))                        (vM density)

with mean angle mu(x) and concentration kappa(x) > 0 from the encoder. With A(kappa) = I1(kappa)/I0(kappa)
= E_q[cos(theta - mu)], the KL to the uniform circle prior is, per circle,

  KL(vM(mu, kappa) || U) = E_q[log q] + log 2 pi = kappa A(kappa) - log I0(kappa)      (vM KL)

Sampling with a gradient (implicit reparameterization, Figurnov et al. 2018). theta = mu + eps with
eps ~ vM(0, kappa) drawn by rejection (no gradient). Differentiating F(eps; kappa) = u (F the CDF, u
held fixed) gives d eps / d kappa = -(dF/dkappa)(eps) / q(eps). Because dq/dkappa = (cos t - A) q(t)
is even in t and integrates to zero over the circle, dF/dkappa(eps) = int_0^eps (cos t - A) q(t) dt,
and the normaliser cancels:

  d eps / d kappa = -int_0^eps (cos t - A(kappa)) exp(kappa (cos t - cos eps)) dt      (implicit grad)

computed with Gauss-Legendre quadrature on [0, eps] in double precision.

ELBO(x) = E_q[log p(x|theta)] - sum_circles KL. The decoder sees (cos, sin) of both angles, so it is
a continuous function on the torus; interpolation follows the shortest arc on each circle:

  theta(a) = theta_1 + a * wrap(theta_2 - theta_1),  wrap(d) in (-pi, pi]               (geodesic)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genlab.abilities import Decodes, Encodes, Reconstructs, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.maths.densities import LOG_2PI, gaussian_log_likelihood, iwae_log_likelihood
from genlab.model import GenerativeModel, register_model
from genlab.nn.blocks import mlp

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(48)


# ----------------------------------------------------------------- the von Mises posterior
def log_bessel_i0(kappa: torch.Tensor) -> torch.Tensor:
    """log I0(kappa) = log(i0e(kappa)) + kappa, stable for large kappa."""
    return torch.log(torch.special.i0e(kappa)) + kappa


def mean_resultant(kappa: torch.Tensor) -> torch.Tensor:
    """A(kappa) = I1(kappa) / I0(kappa) = E[cos(theta - mu)] under vM(mu, kappa)."""
    return torch.special.i1e(kappa) / torch.special.i0e(kappa)


def von_mises_log_prob(theta: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log vM(theta; mu, kappa) = kappa (cos(theta - mu) - 1) - log(2 pi) - log i0e(kappa)   (vM density)

    (the same as kappa cos(theta - mu) - log(2 pi I0(kappa)), written without cancellation:
    cos d - 1 = -2 sin^2(d / 2))."""
    return -2.0 * kappa * torch.sin(0.5 * (theta - mu)) ** 2 - LOG_2PI - torch.log(torch.special.i0e(kappa))


class _KLVonMisesUniform(torch.autograd.Function):
    """KL(vM(mu, kappa) || U) and its analytic derivative, computed in float64 from i0e and i1e."""

    @staticmethod
    def forward(ctx, kappa):
        k = kappa.double()
        i0, i1 = torch.special.i0e(k), torch.special.i1e(k)
        b = (i0 - i1) / i0                                   # B = 1 - A(kappa) in (0, 1], no cancellation in A
        kl = -k * b - torch.log(i0)                          # kappa (A - 1) - log i0e(kappa)
        ctx.save_for_backward(2 * k * b - k * b * b - 1 + b)      # kappa A'(kappa), A' = 1 - A / kappa - A^2
        return kl.to(kappa.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (slope,) = ctx.saved_tensors
        return (grad_out.double() * slope).to(grad_out.dtype)


def kl_von_mises_uniform(kappa: torch.Tensor) -> torch.Tensor:
    """KL(vM(mu, kappa) || U[-pi, pi)) = kappa A(kappa) - log I0(kappa)                     (vM KL)

    written without the cancellation of two terms of size kappa: with log I0 = log i0e(kappa) + kappa,

      KL = kappa (A(kappa) - 1) - log i0e(kappa),   A - 1 = (i1e - i0e) / i0e,
      dKL/dkappa = kappa A'(kappa),  A' = 1 - A / kappa - A^2   (the Bessel recurrences I0' = I1,
                                                                 I1' = I0 - I1 / kappa),

    evaluated in float64 and returned in kappa's dtype, with this analytic gradient (float32 autograd
    of the direct form is wrong by orders of magnitude at kappa >= 1e3; the test checks 1e-2 .. 1e5).
    """
    return _KLVonMisesUniform.apply(kappa)


def von_mises_offset_grad(eps: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """d eps / d kappa at fixed CDF value, for eps ~ vM(0, kappa) in [-pi, pi)             (implicit grad)

    = -int_0^eps (cos t - A(kappa)) exp(kappa (cos t - cos eps)) dt, by 48-point Gauss-Legendre in float64.
    """
    eps64, k64 = eps.detach().double(), kappa.detach().double()
    nodes = torch.as_tensor(_GL_NODES, dtype=torch.float64, device=eps.device)
    weights = torch.as_tensor(_GL_WEIGHTS, dtype=torch.float64, device=eps.device)
    t = 0.5 * eps64.unsqueeze(-1) * (nodes + 1.0)                          # [..., n] nodes on [0, eps]
    k, e = k64.unsqueeze(-1), eps64.unsqueeze(-1)
    # cos t - cos eps = 2 sin((eps - t)/2) sin((eps + t)/2), exact for t near eps
    expo = k * 2.0 * torch.sin(0.5 * (e - t)) * torch.sin(0.5 * (e + t))
    integrand = (torch.cos(t) - mean_resultant(k)) * torch.exp(expo)
    integral = 0.5 * eps64 * (integrand * weights).sum(-1)
    return (-integral).to(eps.dtype)


def sample_von_mises(mu: torch.Tensor, kappa: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """theta = mu + eps, eps ~ vM(0, kappa), differentiable in mu (directly) and kappa (implicitly).

    With ``n``, ``n`` samples are stacked in front. The value is the exact draw; its gradient in kappa
    is d eps / d kappa from :func:`von_mises_offset_grad` (a straight-through form with the same value).
    """
    shape = mu.shape if n is None else (n, *mu.shape)
    k = kappa.expand(shape)
    eps = torch.distributions.VonMises(torch.zeros_like(k, dtype=torch.float64), k.detach().double()).sample()
    eps = eps.to(mu.dtype)
    slope = von_mises_offset_grad(eps, k)
    return mu + eps + (k - k.detach()) * slope


def wrap_angle(d: torch.Tensor) -> torch.Tensor:
    """The representative of the angle d in (-pi, pi]: pi - ((pi - d) mod 2 pi)."""
    return math.pi - torch.remainder(math.pi - d, 2 * math.pi)


def geodesic_interpolation(theta1: torch.Tensor, theta2: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """theta(a) = theta1 + a * wrap(theta2 - theta1) per circle: the shortest path on the torus. [A, d]"""
    a = alphas.to(theta1).unsqueeze(-1)
    return theta1 + a * wrap_angle(theta2 - theta1)


def angle_features(theta: torch.Tensor) -> torch.Tensor:
    """(cos theta_1, sin theta_1, cos theta_2, sin theta_2, ...): a continuous function on the torus."""
    return torch.cat([torch.cos(theta), torch.sin(theta)], -1)


# ----------------------------------------------------------------- the model
@dataclass
class TorusVAEConfig:
    hidden: tuple[int, ...] = field((128, 128), "MLP hidden sizes of the encoder (the decoder mirrors them)")
    circles: int = field(2, "number of latent circles (2: the torus S1 x S1)")
    act: Literal["relu", "gelu", "leaky_relu", "tanh", "silu", "softplus"] = field("silu", "activation")
    gaussian_std: float = field(0.05, "p(x|theta) = N(mean(theta), std^2 I) with this fixed std; 0 learns one std "
                                "per dimension (on noise-free clouds that collapses the posterior: KL -> 0)")
    kappa_min: float = field(1e-2, "smallest posterior concentration")
    kappa_max: float = field(1e5, "largest posterior concentration (keeps rejection sampling and KL finite)")
    coeff: float = field(1.0, "weight (beta) on the KL term during training; 1 is the true ELBO")
    n_samples: int = field(1, "Monte-Carlo samples L per example in the training ELBO")

    def validate(self):
        require(self.circles >= 1, f"circles must be >= 1, got {self.circles}")
        require(0 < self.kappa_min < self.kappa_max, "need 0 < kappa_min < kappa_max")
        require(self.n_samples >= 1, "n_samples must be >= 1")
        require(self.coeff >= 0, "coeff must be >= 0")
        require(self.gaussian_std >= 0, "gaussian_std must be >= 0 (0: learned)")
        require(all(h > 0 for h in self.hidden), "hidden sizes must be positive")


@dataclass
class IWAEEvalConfig:
    """``genlab eval`` options of a latent-variable model."""
    iwae_k: int = field(100, "importance samples for nll_nats, the IWAE bound (Burda et al. 2016, Eq. 8)")

    def validate(self):
        require(self.iwae_k >= 1, f"iwae_k must be >= 1 (1 gives the ELBO), got {self.iwae_k}")


@register_model("torus-vae", TorusVAEConfig, "VAE with a toroidal latent S1 x S1: von Mises posterior, uniform "
                "prior, analytic KL, implicit reparameterization (Figurnov et al. 2018)", default_data="torus",
                eval_config=IWAEEvalConfig, abilities={Samples, Encodes, Decodes, Reconstructs}, data_kinds=("points",))
class TorusVAE(GenerativeModel):
    """q(theta|x) = prod_c vM(mu_c(x), kappa_c(x)), p(theta) uniform, p(x|theta) Gaussian on points."""

    def __init__(self, config: TorusVAEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        if data_info.kind != "points" or len(data_info.shape) != 1:
            raise ConfigError(f"torus-vae models point clouds (vectors); this data is {data_info.kind} of shape "
                              f"{data_info.shape}. Use --data torus")
        c = config
        self.latent_dim = c.circles
        dim = data_info.shape[0]
        self.out_params = 1 if c.gaussian_std else 2
        self.encoder = mlp([dim, *c.hidden, 3 * c.circles], c.act)            # (a, b, raw kappa) per circle
        self.decoder_net = mlp([2 * c.circles, *list(c.hidden)[::-1], self.out_params * dim], c.act)

    # ------------------------------------------------------------- parts
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder: (mu, kappa) of each circle, [B, circles] each; mu = atan2(b, a)."""
        a, b, raw = self.encoder(x).view(len(x), 3, self.latent_dim).unbind(1)     # [B, 3 * circles] -> [B, 3, circles]
        kappa = (F.softplus(raw) + self.config.kappa_min).clamp(max=self.config.kappa_max)
        return torch.atan2(b, a), kappa

    def decoder_params(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of p(x|theta) for angles [..., circles]."""
        out = self.decoder_net(angle_features(theta))
        mean = out[..., : self.data_info.shape[0]]
        if self.config.gaussian_std:
            return mean, torch.full_like(mean, 2 * math.log(self.config.gaussian_std))
        return mean, out[..., self.data_info.shape[0]:].clamp(-12.0, 6.0)

    def log_likelihood(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """log p(x|theta) = log N(x; mean(theta), diag exp(logvar(theta))), theta [..., B, circles]."""
        mean, logvar = self.decoder_params(theta)
        return gaussian_log_likelihood(x, mean, logvar)

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """log p(theta) = -circles * log(2 pi) (uniform on the torus)."""
        return torch.full(theta.shape[:-1], -self.latent_dim * LOG_2PI, dtype=theta.dtype, device=theta.device)

    def elbo(self, x: torch.Tensor, n_samples: int | None = None, coeff: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-example E_q[log p(x|theta)] - coeff * sum_c KL(vM(mu_c, kappa_c) || U)."""
        mu, kappa = self.posterior(x)
        theta = sample_von_mises(mu, kappa, n_samples or self.config.n_samples)       # [L, B, circles]
        rec = self.log_likelihood(x, theta).mean(0)
        kl = kl_von_mises_uniform(kappa).sum(-1)
        return {"elbo": rec - coeff * kl, "rec": rec, "kl": kl}

    def iwae(self, x: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
        """log p(x) >= log 1/k sum_i p(x, theta_i) / q(theta_i|x), theta_i ~ q (Burda et al.)."""
        mu, kappa = self.posterior(x)

        def log_weights(c):
            theta = sample_von_mises(mu, kappa, c)
            return (self.log_likelihood(x, theta) + self.log_prior(theta)
                    - von_mises_log_prob(theta, mu, kappa).sum(-1))
        return iwae_log_likelihood(log_weights, k, chunk)

    # ------------------------------------------------------------- protocol
    def loss(self, batch, phase="main"):
        terms = self.elbo(batch[0], coeff=self.config.coeff)
        return -terms["elbo"].mean(), {"rec": -terms["rec"].mean(), "kl": terms["kl"].mean()}

    def eval_metrics(self, batch, iwae_k: int = 0, **options):
        x = batch[0]
        terms = self.elbo(x, n_samples=1)
        nll = -self.iwae(x, iwae_k) if iwae_k else -terms["elbo"]
        return {"elbo_nats": terms["elbo"], "rec_nats": -terms["rec"], "kl_nats": terms["kl"], "nll_nats": nll}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean angles mu(x), [B, circles], in (-pi, pi]."""
        return self.posterior(x)[0]

    def decode(self, theta: torch.Tensor) -> torch.Tensor:
        """E[x|theta] for angles [..., circles]."""
        return self.decoder_params(theta)[0]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def interpolate_latents(self, theta1: torch.Tensor, theta2: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """The shortest path on the latent torus (see :func:`geodesic_interpolation`)."""
        return geodesic_interpolation(theta1, theta2, alphas)

    @torch.no_grad()
    def sample(self, n: int, draw: bool = False) -> torch.Tensor:
        """n points: theta ~ U(torus), then E[x|theta] (``draw=True``: x ~ p(x|theta))."""
        device = next(self.parameters()).device
        theta = (torch.rand(n, self.latent_dim, device=device) * 2 - 1) * math.pi
        mean, logvar = self.decoder_params(theta)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if draw else mean
