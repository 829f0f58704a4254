"""The math of denoising diffusion in the open: noise schedules, the forward marginal, the posterior,
SNR, the training losses and the variational bound in bits per dimension.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):

  beta_t                      variance schedule, t = 1..T
  alpha_t = 1 - beta_t,       abar_t = prod_{s<=t} alpha_s
  q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)                       Ho Eq. 2
  q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I)                      Ho Eq. 4
  q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                  Ho Eq. 6-7
      mu~_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
      beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
  SNR(t) = abar_t / (1 - abar_t)                                 Kingma et al. 2021 (VDM), Sec. 2
  -log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0                                 Ho Eq. 5

Indexing. Tensors are indexed like diffusers' schedulers: index ``i = 0..T-1`` holds the paper's
``t = i + 1`` (so ``abar[0] = alpha_1`` and the "abar_0 = 1" of the paper is the value before index 0).
Data live in [-1, 1]; images of K grey levels map level k to 2k/(K-1) - 1 (2k/255 - 1 for 8 bits).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from genlab.errors import ConfigError

Prediction = Literal["epsilon", "sample", "v_prediction"]
Weighting = Literal["uniform", "snr", "min_snr"]
SCHEDULES = ("linear", "cosine", "scaled_linear")


# ----------------------------------------------------------------- beta schedules
def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """beta_t linear from 1e-4 to 0.02 over T = 1000 steps (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=dtype)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021, Eq. 17): abar(t) = f(t) / f(0),
    f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), beta_t = min(1 - abar_t / abar_{t-1}, 0.999)."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=dtype)


def scaled_linear_betas(num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """sqrt(beta_t) linear from sqrt(0.00085) to sqrt(0.012) over T = 1000 steps: the schedule of latent
    diffusion and Stable Diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
    Diffusion Models"; ``linear_start``/``linear_end`` of the LDM configs, diffusers' "scaled_linear")."""
    return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps, dtype=dtype) ** 2


def make_betas(kind: str, num_steps: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if kind == "linear":
        return linear_betas(num_steps, dtype=dtype)
    if kind == "cosine":
        return cosine_betas(num_steps, dtype=dtype)
    if kind == "scaled_linear":
        return scaled_linear_betas(num_steps, dtype=dtype)
    raise ConfigError(f"unknown beta schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


# ----------------------------------------------------------------- Gaussian helpers
def gaussian_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element (univariate; sum over dims for isotropic):
    1/2 [log(var2/var1) + (var1 + (mean1 - mean2)^2) / var2 - 1]."""
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log_sub_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) - exp(b)) for a >= b, stable."""
    return a + torch.log(-torch.expm1(torch.clamp(b - a, max=-1e-30)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                                        levels: int) -> torch.Tensor:
    """log p(x) per element for data on K = ``levels`` levels 2k/(K-1) - 1 in [-1, 1] under a Gaussian
    integrated over each level's bin (Ho et al. 2020, Eq. 13, with their 255 replaced by K - 1): the integral
    of N(mean, std^2) from delta_-(x) to delta_+(x), delta_+ = x + 1/(K-1) (+inf at x = 1),
    delta_- = x - 1/(K-1) (-inf at x = -1); bins of width 2/(K-1)."""
    if levels < 2:
        raise ConfigError(f"a discretized decoder needs at least 2 levels, got {levels}")
    half = 1.0 / (levels - 1)
    upper = (x + half - mean) / std                     # standardized bin edges
    lower = (x - half - mean) / std
    log_cdf_upper = torch.special.log_ndtr(upper)       # log Phi(upper): the bin at x = -1
    log_sf_lower = torch.special.log_ndtr(-lower)       # log (1 - Phi(lower)): the bin at x = +1
    # interior bins: Phi(upper) - Phi(lower); computed on the side of 0 that keeps precision
    mid_pos = _log_sub_exp(log_sf_lower, torch.special.log_ndtr(-upper))
    mid_neg = _log_sub_exp(log_cdf_upper, torch.special.log_ndtr(lower))
    mid = torch.where(lower > 0, mid_pos, mid_neg)
    out = torch.where(x < -1 + half / 2, log_cdf_upper, torch.where(x > 1 - half / 2, log_sf_lower, mid))
    return out.clamp(min=math.log(1e-12))


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] to broadcast against ``like`` of shape [B, *event]."""
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)   # [B] -> [B, 1, ..., 1]


# ----------------------------------------------------------------- the schedule
class NoiseSchedule:
    """beta_t, alpha_t, abar_t of a discrete schedule and every closed form that uses them.

    ``variance`` chooses the reverse-process variance sigma_t^2 (Ho et al. 2020, Sec. 3.2): ``"small"``
    is beta~_t (with beta~_1, which is 0, replaced by beta~_2 as in Ho et al.'s code), ``"large"`` is
    beta_t (beta_1 replaced by beta~_2, as in Nichol & Dhariwal's code).
    """

    def __init__(self, betas: torch.Tensor, variance: Literal["small", "large"] = "small"):
        if betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("betas must be a 1-D tensor with values in (0, 1)")
        self.betas = betas
        self.alphas = 1.0 - betas                                        # alpha_t
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)          # abar_t
        one = torch.ones(1, dtype=betas.dtype)
        self.alphas_cumprod_prev = torch.cat([one, self.alphas_cumprod[:-1]])   # abar_{t-1}, abar_0 = 1
        self.posterior_variance = (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod) * betas
        tilde_2 = self.posterior_variance[1:2]
        if variance == "small":
            self.reverse_variance = torch.cat([tilde_2, self.posterior_variance[1:]])
        elif variance == "large":
            self.reverse_variance = torch.cat([tilde_2, betas[1:]])
        else:
            raise ConfigError(f"variance must be 'small' or 'large', not {variance!r}")
        self.variance = variance

    @classmethod
    def make(cls, kind: str = "linear", num_steps: int = 1000, dtype: torch.dtype = torch.float32,
             variance: Literal["small", "large"] = "small") -> NoiseSchedule:
        return cls(make_betas(kind, num_steps, dtype), variance)

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any], dtype: torch.dtype = torch.float32,
                              variance: Literal["small", "large"] = "small") -> NoiseSchedule:
        """The schedule of a diffusers scheduler config (a pipeline's ``scheduler/scheduler_config.json``):
        ``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule`` (linear | scaled_linear |
        squaredcos_cap_v2) or explicit ``trained_betas``. The network's output type is
        ``prediction_from_diffusers_config``."""
        get = config.get
        if get("rescale_betas_zero_snr", False):
            raise ConfigError("schedules rescaled to zero terminal SNR (rescale_betas_zero_snr) are not supported")
        if get("trained_betas") is not None:
            return cls(torch.as_tensor(get("trained_betas"), dtype=dtype), variance)
        kind, steps = get("beta_schedule", "linear"), int(get("num_train_timesteps", 1000))
        start, end = float(get("beta_start", 0.0001)), float(get("beta_end", 0.02))
        if kind == "linear":
            betas = linear_betas(steps, start, end, dtype)
        elif kind == "scaled_linear":
            betas = scaled_linear_betas(steps, start, end, dtype)
        elif kind == "squaredcos_cap_v2":
            betas = cosine_betas(steps, dtype=dtype)
        else:
            raise ConfigError(f"unsupported beta_schedule {kind!r} in the scheduler config; "
                              "genlab reads linear, scaled_linear and squaredcos_cap_v2")
        return cls(betas, variance)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    def to(self, dtype: torch.dtype) -> NoiseSchedule:
        return NoiseSchedule(self.betas.to(dtype), self.variance)

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return _expand(values.to(like.device)[t.long()], like)

    # ------------------------------------------------------------- noise levels
    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """SNR(t) = abar_t / (1 - abar_t) (Kingma et al. 2021, Sec. 2); the per-example form
        ||mu||^2 / tr(Sigma) of q(x_t | x_0) is SNR(t) ||x_0||^2 / D."""
        abar = self.alphas_cumprod[t.long()]
        return abar / (1 - abar)

    def sigmas(self) -> torch.Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t): the noise level of x_t / sqrt(abar_t) (the variance-
        exploding view used by Euler-type samplers, Karras et al. 2022, Sec. 2); SNR(t) = 1 / sigma_t^2."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5

    def sigma_at(self, t: torch.Tensor) -> torch.Tensor:
        """sigma at a fractional timestep: linear interpolation of ``sigmas()`` between integer steps
        (as diffusers' Euler/Heun/LMS schedulers place their inference steps)."""
        sig = self.sigmas().double().numpy()
        t_np = torch.as_tensor(t).detach().double().cpu().numpy()
        return torch.from_numpy(np.asarray(np.interp(t_np, np.arange(len(sig)), sig)))

    def alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        """abar at a (possibly fractional) timestep, 1 / (1 + sigma(t)^2); exact at integer t."""
        t = torch.as_tensor(t)
        if not torch.is_floating_point(t) or bool((t == t.round()).all()):
            return self.alphas_cumprod[t.long()].double()
        return 1.0 / (1.0 + self.sigma_at(t) ** 2)

    # ------------------------------------------------------------- forward process
    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One forward step x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise (Ho et al. 2020, Eq. 2)."""
        return self._at(self.alphas, t, x_prev) ** 0.5 * x_prev + self._at(self.betas, t, x_prev) ** 0.5 * noise

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. 2020, Eq. 4)."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar ** 0.5 * x0, (1 - abar).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: a draw of q(x_t | x_0) (Ho et al. 2020, Eq. 4)."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar ** 0.5 * x0 + (1 - abar) ** 0.5 * noise

    def posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """mu~_t(x_t, x_0) and beta~_t of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eqs. 6-7)."""
        abar = self._at(self.alphas_cumprod, t, xt)
        abar_prev = self._at(self.alphas_cumprod_prev, t, xt)
        beta = self._at(self.betas, t, xt)
        alpha = self._at(self.alphas, t, xt)
        mean = abar_prev ** 0.5 * beta / (1 - abar) * x0 + alpha ** 0.5 * (1 - abar_prev) / (1 - abar) * xt
        return mean, self._at(self.posterior_variance, t, xt).expand_as(xt)

    # ------------------------------------------------------------- parameterizations
    def x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), Eq. 4 solved for x_0 (Ho et al. 2020, Eq. 15)."""
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar) ** 0.5 * eps) / abar ** 0.5

    def eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - abar ** 0.5 * x0) / (1 - abar) ** 0.5

    def velocity(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, Sec. 4)."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar ** 0.5 * eps - (1 - abar) ** 0.5 * x0

    def to_x0_eps(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, prediction: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from a network output of type ``prediction`` (epsilon | sample | v_prediction)."""
        abar = self._at(self.alphas_cumprod, t, xt)
        if prediction == "epsilon":
            return self.x0_from_eps(xt, t, output), output
        if prediction == "sample":
            return output, self.eps_from_x0(xt, t, output)
        if prediction == "v_prediction":   # x0 = sqrt(abar) x_t - sqrt(1-abar) v; eps = sqrt(1-abar) x_t + sqrt(abar) v
            return abar ** 0.5 * xt - (1 - abar) ** 0.5 * output, (1 - abar) ** 0.5 * xt + abar ** 0.5 * output
        raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")

    def p_mean_variance(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                        prediction: str = "epsilon", clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the reverse step p(x_{t-1} | x_t) = N(mu~_t(x_t, x0_hat), sigma_t^2 I):
        with eps-prediction and no clipping, mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t)
        (Ho et al. 2020, Eq. 11)."""
        x0, _ = self.to_x0_eps(output, xt, t, prediction)
        if clip:
            x0 = x0.clamp(-1, 1)
        mean, _ = self.posterior_mean_variance(x0, xt, t)
        return mean, self._at(self.reverse_variance, t, xt).expand_as(xt)

    # ------------------------------------------------------------- losses
    def loss_weight(self, t: torch.Tensor, prediction: str, weighting: str, gamma: float = 5.0) -> torch.Tensor:
        """Per-timestep weight on the MSE of the ``prediction`` target, shape [B].

        Every weighting is a weight w(t) on ||x0_hat - x_0||^2, converted to the target's MSE with
        ||eps_hat - eps||^2 = SNR ||x0_hat - x_0||^2 and ||v_hat - v||^2 = (SNR + 1) ||x0_hat - x_0||^2:
          uniform  w = SNR, 1 or SNR + 1: the plain MSE of the target (L_simple, Ho et al. 2020, Eq. 14)
          snr      w = (SNR(t-1) - SNR(t)) / 2: the bound's own weighting, the weight that makes
                   the loss the KL term L_{t-1} of the bound for sigma_t^2 = beta~_t (the discrete-time loss
                   of Kingma et al. 2021, VDM); at t = 1, where SNR(0) is infinite, the weight of t = 2 is used
          min_snr  w = min(SNR(t), gamma) (Hang et al. 2023, "Efficient diffusion training via Min-SNR
                   weighting strategy")
        """
        t = t.long()
        snr = self.snr(t)
        per_target = {"epsilon": snr, "sample": torch.ones_like(snr), "v_prediction": snr + 1}
        if prediction not in per_target:
            raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")
        if weighting == "uniform":
            return torch.ones_like(snr)
        if weighting == "snr":
            t = t.clamp(min=1)
            w = 0.5 * (self.snr(t - 1) - self.snr(t))
        elif weighting == "min_snr":
            w = snr.clamp(max=gamma)
        else:
            raise ConfigError(f"unknown weighting {weighting!r}; choose uniform, snr or min_snr")
        return w / per_target[prediction]

    def training_target(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, prediction: str) -> torch.Tensor:
        if prediction == "epsilon":
            return eps
        if prediction == "sample":
            return x0
        if prediction == "v_prediction":
            return self.velocity(x0, t, eps)
        raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")

    def loss(self, output: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             prediction: str = "epsilon", weighting: str = "uniform", gamma: float = 5.0,
             reduce: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        """w(t) ||target - output||^2 per example ([B]), averaged (``mean``) or summed over dimensions
        (Ho et al. 2020, Algorithm 1 / Eq. 14 for eps and uniform weights)."""
        sq = (self.training_target(x0, t, eps, prediction) - output) ** 2
        sq = sq.flatten(1).mean(1) if reduce == "mean" else sq.flatten(1).sum(1)  # [B, *event] -> [B]
        return self.loss_weight(t, prediction, weighting, gamma).to(sq) * sq

    # ------------------------------------------------------------- the variational bound
    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) summed over dimensions, [B] (Ho et al. 2020, Eq. 5)."""
        t = torch.full((len(x0),), self.num_steps - 1, dtype=torch.long)
        mean, var = self.q_mean_variance(x0, t)
        return gaussian_kl(mean, var, torch.zeros_like(mean), torch.ones_like(var)).flatten(1).sum(1)  # -> [B]

    def vlb_term(self, output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                 prediction: str = "epsilon", *, levels: int) -> torch.Tensor:
        """One term of the bound for a draw x_t ~ q(x_t | x_0), in nats, [B] (Ho et al. 2020, Eq. 5):
        L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 1, and
        L_0 = -log p(x_0 | x_1) with the discretized Gaussian decoder of Eq. 13 at t = 1 (index 0), on the
        data's own K = ``levels`` levels (x_0 = 2k/(K-1) - 1, see ``to_model_range``)."""
        mean_p, var_p = self.p_mean_variance(output, xt, t, prediction)
        mean_q, var_q = self.posterior_mean_variance(x0, xt, t)
        kl = gaussian_kl(mean_q, var_q.clamp(min=1e-20), mean_p, var_p).flatten(1).sum(1)  # -> [B]
        nll = -discretized_gaussian_log_likelihood(x0, mean_p, var_p ** 0.5, levels).flatten(1).sum(1)  # -> [B]
        return torch.where(t.long() == 0, nll, kl)


def prediction_from_diffusers_config(config: Mapping[str, Any]) -> str:
    """What the network of a diffusers scheduler config predicts: epsilon, sample or v_prediction."""
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "sample", "v_prediction"):
        raise ConfigError(f"unknown prediction_type {prediction!r} in the scheduler config; "
                          "choose epsilon, sample or v_prediction")
    return prediction


def to_model_range(x01: torch.Tensor, levels: int) -> torch.Tensor:
    """Pixels k/(K-1) in [0, 1] of data with K = ``levels`` grey levels -> the levels 2k/(K-1) - 1 in [-1, 1]
    that the bound is defined on (k = round(x (K-1)); K = 256 for 8-bit images, 17 for the 8x8 digits,
    2 for binary pixels)."""
    return torch.round(x01.clamp(0, 1) * (levels - 1)) / (levels - 1) * 2 - 1
