"""Shared math of the likelihood models: log-densities, the analytic Gaussian KL, the
reparameterization trick, the importance-weighted bound, bits per dimension and the treatment of
discrete pixels (uniform dequantization, discretized Gaussian). Every family imports these from here.

  log N(x; m, diag s^2)   = -1/2 sum_d [log 2 pi + log s_d^2 + (x_d - m_d)^2 / s_d^2]
  KL(N(m, s^2) || N(0,I)) = 1/2 sum_d (m_d^2 + s_d^2 - 1 - log s_d^2)     (Kingma & Welling 2014, App. B)
  z = m + s * eps,  eps ~ N(0, I)                                        (ibid., Eq. 10: reparameterization)
  IWAE_k = log 1/k sum_i w_i,  w_i = p(x, z_i) / q(z_i | x)              (Burda et al. 2016, Eq. 8)
  bpd    = nll_nats / (D log 2)                                          (van den Oord et al. 2016, PixelRNN)

Discrete pixels. An image with L grey levels has integer levels k in {0..L-1}^D. Two ways to give it a
valid discrete likelihood (so its bits/dim lie in [0, log2 L] for a uniform model and never below 0):

* uniform dequantization (Theis, van den Oord & Bethge 2016, Eq. 3; RealNVP, Dinh et al. 2017, 4.1):
  u = (k + U[0,1)^D) / L; a density p on [0,1)^D gives -log P(k) <= E_U[-log p(u)] + D log L (Jensen),
  so ``dequantized_nll`` is an upper bound on the discrete NLL, exactly D log L for the uniform p = 1;
* a discretized Gaussian (the discretized logistic of PixelCNN++, Salimans et al. 2017, Eq. 2, with a
  Gaussian CDF): P(k) = Phi((e_k+ - m)/s) - Phi((e_k- - m)/s), bin edges halfway between the pixel
  values k/(L-1), the first and last bins open to -inf and +inf, so the L probabilities sum to 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genlab.data.registry import DataInfo
from genlab.errors import ConfigError

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------- Gaussians
def log_normal_pdf(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))), summed over the last dimension.

    = -1/2 sum_d [log(2 pi) + logvar_d + (x_d - mean_d)^2 / exp(logvar_d)]
    """
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the batch dimension (a flow's base distribution)."""
    flat = z.flatten(1)                                          # [B, *event] -> [B, D]
    return -0.5 * (LOG_2PI + flat ** 2).sum(-1)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, Eq. 10): a sample whose
    gradient flows to mean and logvar. With ``n``, returns ``n`` samples stacked in front."""
    shape = mean.shape if n is None else (n, *mean.shape)
    eps = torch.randn(shape, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_normal_std_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(mean, diag(exp(logvar))) || N(0, I)) = 1/2 sum_d (mean^2 + exp(logvar) - 1 - logvar)
    (Kingma & Welling 2014, Appendix B), summed over the last dimension."""
    return 0.5 * (mean ** 2 + torch.exp(logvar) - 1.0 - logvar).sum(-1)


# ----------------------------------------------------------------- likelihoods p(x|z) over an example
def _sum_event(ll: torch.Tensor, n_event: int) -> torch.Tensor:
    """Sum over the last ``n_event`` dimensions (one example's)."""
    return ll.flatten(start_dim=-n_event).sum(-1) if n_event > 1 else ll.sum(-1)   # [..., *event] -> [..., D]


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)], p = sigmoid(logits), summed over one
    example's dimensions (all of ``x``'s but the first); ``logits`` may carry extra leading sample dims."""
    n_event = x.dim() - 1
    ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return _sum_event(ll, n_event)


def categorical_log_likelihood(x_levels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i log softmax(logits_i)[x_i] for integer levels ``x_levels`` of shape [B, *event]
    and ``logits`` of shape [..., B, K, *event] (K levels; extra leading sample dims allowed)."""
    n_event = x_levels.dim() - 1
    k_dim = -(n_event + 1)
    logp = torch.log_softmax(logits, dim=k_dim)
    index = x_levels.long().unsqueeze(k_dim).expand(*logits.shape[:k_dim], 1, *logits.shape[k_dim + 1:])
    ll = logp.gather(k_dim, index).squeeze(k_dim)
    return _sum_event(ll, n_event)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))) over all dimensions of one example (a density, in nats)."""
    n_event = x.dim() - 1
    x = x.expand_as(mean)
    return log_normal_pdf(x.flatten(-n_event), mean.flatten(-n_event),             # [..., *event] -> [..., D]
                          logvar.expand_as(mean).flatten(-n_event))


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, accurate at both ends (Maechler 2012)."""
    a = a.clamp(max=-1e-30)
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def log_normal_interval(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for standardised edges lo < hi (either may be -inf / +inf), without
    cancellation: on the right of 0 the mirror Phi(-lo) - Phi(-hi) is used, and the difference is
    log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))) with log Phi from ``torch.special.log_ndtr``."""
    right = lo > 0                                   # both edges right of 0: mirror to the left tail
    a = torch.where(right, -hi, lo)
    b = torch.where(right, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    return log_b + _log1mexp(torch.special.log_ndtr(a) - log_b)


def discretized_gaussian_log_likelihood(x_levels: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                                        levels: int) -> torch.Tensor:
    """log P(k | z) of integer levels ``x_levels`` [B, *event] under a Gaussian N(mean, exp(logvar))
    on the pixel scale k/(L-1), discretized into L bins (PixelCNN++, Salimans et al. 2017, Eq. 2, with
    the Gaussian CDF Phi for the logistic one), summed over one example:

      P(k) = Phi((k/(L-1) + h - m) / s) - Phi((k/(L-1) - h - m) / s),   h = 1 / (2 (L-1)),
      with the edge below level 0 at -inf and the edge above level L-1 at +inf.

    ``mean`` and ``logvar`` have shape [..., B, D] (extra leading sample dims allowed), D the number
    of pixels. Every term is a log-probability, so the result is <= 0.
    """
    n_event = x_levels.dim() - 1
    k = x_levels.flatten(-n_event) if n_event > 1 else x_levels          # [B, *event] -> [B, D]
    k = k.to(mean.dtype).expand_as(mean)
    half = 0.5 / (levels - 1)
    centre = k / (levels - 1)
    inv_std = torch.exp(-0.5 * logvar).expand_as(mean)
    lo = torch.where(k <= 0, torch.full_like(centre, -math.inf), (centre - half - mean) * inv_std)
    hi = torch.where(k >= levels - 1, torch.full_like(centre, math.inf), (centre + half - mean) * inv_std)
    return log_normal_interval(lo, hi).sum(-1)


# ----------------------------------------------------------------- bounds and units
def iwae_log_likelihood(log_weights_fn: Callable[[int], torch.Tensor], k: int, chunk: int) -> torch.Tensor:
    """IWAE_k = log 1/k sum_{i<=k} w_i (Burda et al. 2016, Eq. 8) from chunks of log-weights:
    ``log_weights_fn(c)`` returns [c, B]. Chunks are combined with logsumexp, so k=5000 needs only
    one chunk's memory."""
    total = None
    done = 0
    while done < k:
        c = min(chunk, k - done)
        lse = torch.logsumexp(log_weights_fn(c), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += c
    return total - math.log(k)


def bits_per_dim(nll_nats: torch.Tensor, shape) -> torch.Tensor:
    """bpd = nll * log2(e) / prod(d_i), the d_i being one example's dimensions (van den Oord et al. 2016)."""
    return nll_nats * math.log2(math.e) / math.prod(shape)


# ----------------------------------------------------------------- discrete pixels
def grey_levels(info: DataInfo) -> int:
    """Number of grey levels L of image data (intensities k / (L-1), or levels k directly)."""
    if info.view == "quantized":
        return int(info.levels)
    if info.view in ("binarized", "dynamic"):
        return 2
    levels = info.extras.get("grey_levels")
    if not levels:
        raise ConfigError(f"the number of grey levels of {info.extras.get('dataset', 'this data')} is unknown; "
                          "use --view quantized --levels L")
    return int(levels)


def to_levels(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Integer levels k in {0..L-1} of a batch of images in the data's view (as floats)."""
    if info.view == "continuous":
        return torch.round(x * (grey_levels(info) - 1))
    return x


def dequantize(k: torch.Tensor, levels: int) -> torch.Tensor:
    """u = (k + U[0,1)) / L: uniform dequantization into [0, 1) (Theis et al. 2016, Eq. 3)."""
    return (k + torch.rand_like(k)) / levels


def dequantized_nll(log_prob: Callable[[torch.Tensor], torch.Tensor], k: torch.Tensor, levels: int) -> torch.Tensor:
    """Per-example -log p(u) + D log L with u = (k + U) / L: in expectation over U an upper bound on the
    discrete NLL -log P(k) >= 0 (Theis et al. 2016, Eq. 3-4); exactly D log L (log2 L bits/dim) for the
    uniform density p = 1 on [0, 1)^D."""
    dims = math.prod(k.shape[1:])
    return -log_prob(dequantize(k, levels)) + dims * math.log(levels)
