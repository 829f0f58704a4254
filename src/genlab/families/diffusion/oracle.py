"""The optimal noise predictor in closed form, for data that is Gaussian or a mixture of Gaussians.

The minimiser of E||eps_theta(x_t, t) - eps||^2 is the posterior mean E[eps | x_t], and by Tweedie's
formula E[eps | x_t] = -sqrt(1 - abar_t) grad log p_t(x_t) (Efron 2011, "Tweedie's formula and selection
bias"; the score view of Song et al. 2021, "Score-based generative modeling through SDEs").
For x_0 ~ sum_k pi_k N(mu_k, diag(s_k^2)) the marginal of x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is again a mixture,

  p_t(x_t) = sum_k pi_k N(x_t; sqrt(abar) mu_k, diag(v_k)),   v_k = abar s_k^2 + 1 - abar,

so  E[eps | x_t] = sum_k r_k(x_t) sqrt(1 - abar) (x_t - sqrt(abar) mu_k) / v_k,  r_k the posterior
responsibilities pi_k N(x_t; ...) / p_t(x_t). One Gaussian is the case K = 1. A sampler driven by this
predictor must return the data distribution: no training, no approximation but the sampler's own.
"""
from __future__ import annotations

import math

import torch

from genlab.errors import ConfigError
from genlab.families.diffusion.schedule import NoiseSchedule


class GaussianMixture:
    """x_0 ~ sum_k weights_k N(means_k, diag(stds_k^2)); ``means`` [K, D], ``stds`` [K] or [K, D]."""

    def __init__(self, weights, means, stds):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if self.means.dim() != 2 or self.weights.shape != self.means.shape[:1]:
            raise ConfigError("a mixture needs weights [K] and means [K, D]")
        self.stds = stds.reshape(-1, 1).expand_as(self.means) if stds.dim() <= 1 else stds  # [K] -> [K, D]
        if not bool((self.weights > 0).all()) or abs(float(self.weights.sum()) - 1) > 1e-6:
            raise ConfigError("mixture weights must be positive and sum to 1")

    @classmethod
    def gaussian(cls, mean, std) -> GaussianMixture:
        """One Gaussian N(mean, diag(std^2))."""
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)  # [D] -> [1, D]
        std = torch.as_tensor(std, dtype=torch.float64)
        std = std.reshape(1, -1).expand_as(mean) if std.dim() else std.reshape(1)   # [D] -> [1, D] or [] -> [1]
        return cls([1.0], mean, std)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws [n, D] and their component indices [n]."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k] * z, k

    def noised(self, abar) -> tuple[torch.Tensor, torch.Tensor]:
        """Component means [.., K, D] and variances of the marginal p_t for cumulative alpha ``abar`` ([B])."""
        abar = torch.as_tensor(abar, dtype=torch.float64).reshape(-1, 1, 1)           # [B] -> [B, 1, 1]
        return abar ** 0.5 * self.means, abar * self.stds ** 2 + (1 - abar)          # [B, K, D] each

    def log_prob_t(self, x: torch.Tensor, abar) -> torch.Tensor:
        """log p_t(x_t) for x [B, D] (abar = 1 gives the data density)."""
        mean, var = self.noised(abar)
        diff = x.double().unsqueeze(1) - mean                                          # [B, D] -> [B, K, D]
        comp = -0.5 * (diff ** 2 / var + torch.log(2 * math.pi * var)).sum(-1)         # [B, K]
        return torch.logsumexp(torch.log(self.weights) + comp, dim=1)

    def _posterior(self, x: torch.Tensor, abar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Responsibilities r_k(x_t) [B, K], x_t - sqrt(abar) mu_k [B, K, D] and v_k [B, K, D]."""
        mean, var = self.noised(abar)
        diff = x.double().unsqueeze(1) - mean                                          # [B, D] -> [B, K, D]
        comp = -0.5 * (diff ** 2 / var + torch.log(var)).sum(-1)                       # [B, K]
        return torch.softmax(torch.log(self.weights) + comp, dim=1), diff, var

    def responsibilities(self, x: torch.Tensor, abar) -> torch.Tensor:
        """r_k(x_t) = pi_k N(x_t; sqrt(abar) mu_k, v_k) / p_t(x_t), [B, K]."""
        return self._posterior(x, abar)[0]

    def optimal_eps(self, x: torch.Tensor, abar) -> torch.Tensor:
        """E[eps | x_t] = sum_k r_k sqrt(1 - abar) (x_t - sqrt(abar) mu_k) / v_k, x [B, D] -> [B, D]."""
        r, diff, var = self._posterior(x, abar)
        abar = torch.as_tensor(abar, dtype=torch.float64).reshape(-1, 1, 1)            # [B] -> [B, 1, 1]
        return (r.unsqueeze(-1) * (1 - abar) ** 0.5 * diff / var).sum(1)               # [B, K, D] -> [B, D]


class OracleDenoiser:
    """``model(x_t, t) -> output`` from the closed form, for any sampler: the timestep (an integer or,
    for sigma-based samplers, fractional) is turned into abar by ``schedule.alpha_bar_at``. ``event_shape``
    lets x be [B, *event] with prod(event) = D."""

    def __init__(self, data: GaussianMixture, schedule: NoiseSchedule, prediction: str = "epsilon"):
        self.data, self.schedule, self.prediction = data, schedule, prediction
        self.calls = 0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        self.calls += 1
        b = x.shape[0]
        t = torch.as_tensor(t).reshape(-1)  # [] or [B] -> [1] or [B]
        abar = self.schedule.alpha_bar_at(t).double().expand(b)                        # [1] or [B] -> [B]
        flat = x.reshape(b, -1).double()                                               # [B, *event] -> [B, D]
        eps = self.data.optimal_eps(flat, abar)
        a = abar.reshape(-1, 1)  # [B] -> [B, 1]
        if self.prediction == "epsilon":
            out = eps
        elif self.prediction == "sample":
            out = (flat - (1 - a) ** 0.5 * eps) / a ** 0.5
        elif self.prediction == "v_prediction":
            x0 = (flat - (1 - a) ** 0.5 * eps) / a ** 0.5
            out = a ** 0.5 * eps - (1 - a) ** 0.5 * x0
        else:
            raise ConfigError(f"unknown prediction type {self.prediction!r}")
        return out.reshape(x.shape).to(x.dtype)                                        # [B, D] -> [B, *event]


def distribution_errors(samples: torch.Tensor, data: GaussianMixture) -> dict[str, float]:
    """How far ``samples`` [N, D] are from ``data``: the error of the mean (max over dims), of the
    per-dimension variance (max relative error), and of the mixture weights (max absolute error of
    the share of samples assigned to each component by its posterior at t = 0)."""
    samples = samples.double().reshape(len(samples), -1)  # [N, *event] -> [N, D]
    true_mean = (data.weights.reshape(-1, 1) * data.means).sum(0)  # [K, 1] * [K, D] -> [D]
    second = (data.weights.reshape(-1, 1) * (data.stds ** 2 + data.means ** 2)).sum(0)  # -> [D]
    true_var = second - true_mean ** 2
    share = torch.bincount(data.responsibilities(samples, 1.0).argmax(1), minlength=len(data.weights)).double()
    return {
        "mean_error": float((samples.mean(0) - true_mean).abs().max()),
        "var_rel_error": float(((samples.var(0) - true_var) / true_var).abs().max()),
        "weight_error": float((share / len(samples) - data.weights).abs().max()),
    }
