"""f-divergences and the f-GAN variational bound (Nowozin, Cseke & Tomioka, 2016).

  D_f(P || Q) = int q(x) f(p(x) / q(x)) dx,   f convex, f(1) = 0      (Nowozin et al. 2016, Eq. 1)
  f*(t)       = sup_u [u t - f(u)]            (convex conjugate, Fenchel)
  D_f(P || Q) >= sup_T E_P[T(x)] - E_Q[f*(T(x))]                                    (f-GAN bound)

A critic's raw output v in R is mapped into the domain of f* by an output activation T = g_f(v).
Each :class:`Divergence` below carries f, f*, g_f and the composition f*(g_f(v)) written in a
numerically stable form (tests check it against the plain composition).

Conventions: "js" is the Jensen-Shannon divergence itself, 1/2 KL(P||M) + 1/2 KL(Q||M) with
M = (P+Q)/2 (at most log 2); "gan" is the divergence the original GAN minimises, 2 JS - log 4,
whose f-GAN bound is exactly E_P[log D] + E_Q[log(1 - D)] with D = sigmoid(v) (Goodfellow et al. 2014, Eq. 1).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    name: str
    f: Callable[[torch.Tensor], torch.Tensor]            # generator function, on u = p/q > 0
    conjugate: Callable[[torch.Tensor], torch.Tensor]    # f*(t), on its domain
    activation: Callable[[torch.Tensor], torch.Tensor]   # g_f: R -> dom f*
    conj_activation: Callable[[torch.Tensor], torch.Tensor]   # f*(g_f(v)), stable form
    domain: tuple[float, float]                          # open interval containing dom f*
    description: str


def _xlogx(u: torch.Tensor) -> torch.Tensor:
    return torch.xlogy(u, u)


DIVERGENCES: dict[str, Divergence] = {
    "kl": Divergence(
        "kl", f=lambda u: _xlogx(u), conjugate=lambda t: torch.exp(t - 1.0),
        activation=lambda v: v, conj_activation=lambda v: torch.exp(v - 1.0),
        domain=(-math.inf, math.inf), description="KL(P||Q): f(u) = u log u"),
    "reverse_kl": Divergence(
        "reverse_kl", f=lambda u: -torch.log(u), conjugate=lambda t: -1.0 - torch.log(-t),
        activation=lambda v: -torch.exp(-v), conj_activation=lambda v: v - 1.0,
        domain=(-math.inf, 0.0), description="KL(Q||P): f(u) = -log u"),
    "js": Divergence(
        "js", f=lambda u: 0.5 * (_xlogx(u) - (u + 1.0) * torch.log((u + 1.0) / 2.0)),
        conjugate=lambda t: -0.5 * torch.log(2.0 - torch.exp(2.0 * t)),
        activation=lambda v: 0.5 * (LOG2 - F.softplus(-v)),
        conj_activation=lambda v: 0.5 * (F.softplus(v) - LOG2),
        domain=(-math.inf, 0.5 * LOG2),
        description="Jensen-Shannon: f(u) = 1/2 [u log u - (u+1) log((u+1)/2)]"),
    "gan": Divergence(
        "gan", f=lambda u: _xlogx(u) - (u + 1.0) * torch.log(u + 1.0),
        conjugate=lambda t: -torch.log1p(-torch.exp(t)),
        activation=lambda v: -F.softplus(-v), conj_activation=lambda v: F.softplus(v),
        domain=(-math.inf, 0.0), description="original GAN (2 JS - log 4): f(u) = u log u - (u+1) log(u+1)"),
    "pearson": Divergence(
        "pearson", f=lambda u: (u - 1.0) ** 2, conjugate=lambda t: 0.25 * t ** 2 + t,
        activation=lambda v: v, conj_activation=lambda v: 0.25 * v ** 2 + v,
        domain=(-math.inf, math.inf), description="Pearson chi^2: f(u) = (u - 1)^2"),
    "tv": Divergence(
        "tv", f=lambda u: 0.5 * torch.abs(u - 1.0), conjugate=lambda t: t,
        activation=lambda v: 0.5 * torch.tanh(v), conj_activation=lambda v: 0.5 * torch.tanh(v),
        domain=(-0.5, 0.5), description="total variation 1/2 int |p - q|: f(u) = |u - 1| / 2"),
    "hellinger": Divergence(
        "hellinger", f=lambda u: (torch.sqrt(u) - 1.0) ** 2, conjugate=lambda t: t / (1.0 - t),
        activation=lambda v: 1.0 - torch.exp(-v), conj_activation=lambda v: torch.expm1(v),
        domain=(-math.inf, 1.0), description="squared Hellinger: f(u) = (sqrt(u) - 1)^2"),
}


def get_divergence(name: str) -> Divergence:
    from genlab.errors import ConfigError
    if name not in DIVERGENCES:
        raise ConfigError(f"unknown divergence {name!r}; choose one of {', '.join(DIVERGENCES)}")
    return DIVERGENCES[name]


def f_divergence(p: torch.Tensor, q: torch.Tensor, name: str) -> torch.Tensor:
    """D_f(P||Q) = sum_i q_i f(p_i / q_i) for discrete distributions (last dimension), q > 0."""
    return (q * get_divergence(name).f(p / q)).sum(-1)


def variational_bound(v_real: torch.Tensor, v_fake: torch.Tensor, name: str) -> torch.Tensor:
    """The f-GAN lower bound E_P[g_f(v)] - E_Q[f*(g_f(v))] on D_f(P||Q), from critic outputs on
    samples of P (real) and Q (generated). The critic maximises it; the generator minimises it."""
    div = get_divergence(name)
    return div.activation(v_real).mean() - div.conj_activation(v_fake).mean()


def generator_loss(v_fake: torch.Tensor, name: str, kind: str = "non_saturating") -> torch.Tensor:
    """Generator loss from critic outputs on generated samples.

    minmax:          minimise the bound's Q term, -E_Q[f*(g_f(v))]   (GAN: E log(1 - D(G(z))))
    non_saturating:  minimise -E_Q[g_f(v)]                          (GAN: -E log D(G(z)))
    """
    div = get_divergence(name)
    if kind == "minmax":
        return -div.conj_activation(v_fake).mean()
    return -div.activation(v_fake).mean()


def optimal_critic(ratio: torch.Tensor, name: str) -> torch.Tensor:
    """The T maximising the bound pointwise: T*(x) = f'(p(x)/q(x)) (computed by autograd)."""
    u = ratio.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(get_divergence(name).f(u).sum(), u)
    return grad
