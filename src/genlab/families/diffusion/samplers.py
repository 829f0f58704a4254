"""Samplers for a trained noise predictor, behind one contract (the one diffusers' schedulers use):

    sampler.set_timesteps(n)                   # choose n inference steps; resets the sampler
    x = noise * sampler.init_noise_sigma
    for t in sampler.timesteps:
        out = model(sampler.scale_model_input(x, t), t)
        x = sampler.step(out, t, x, generator)  # -> x_prev
    # x is now a sample of the data

Two coordinate systems. DDPM, DDIM and DPM-Solver++ move x_t itself (variance preserving,
x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps). Euler, Euler-ancestral, Heun and LMS move
x = x_t / sqrt(abar_t) = x_0 + sigma eps with sigma = sqrt((1 - abar) / abar) (variance exploding,
Karras et al. 2022, Sec. 2); ``scale_model_input`` divides by sqrt(sigma^2 + 1) to hand the network
the x_t it was trained on, and ``init_noise_sigma`` is sigma_max.

Each ``step`` is a numbered sequence of formulas; the formulas are pure functions at module level.
The only state a sampler keeps is its position in ``timesteps`` and, for the multistep methods
(Heun, LMS, DPM-Solver++(2M) and its SDE form), the few previous derivatives / predictions the method needs.
Defaults (timestep spacing, clipping off) follow diffusers (0.42) so that the tests can compare them
step by step; ``clip_sample=True`` clips x0_hat to [-1, 1] for image models.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genlab.errors import ConfigError
from genlab.families.diffusion.schedule import NoiseSchedule

SPACINGS = ("leading", "linspace", "trailing")


# ----------------------------------------------------------------- pure formulas
def inference_timesteps(num_train: int, n: int, spacing: str, integer: bool) -> np.ndarray:
    """n timesteps from high to low noise (Lin et al. 2024, "Common diffusion noise schedules and sample
    steps are flawed", Table 2): ``leading`` k*(T//n), ``linspace`` evenly spaced in [0, T-1] (fractional
    unless ``integer``), ``trailing`` round(T - k*T/n) - 1."""
    if spacing == "linspace":
        ts = np.linspace(0, num_train - 1, n, dtype=np.float64 if integer else np.float32)[::-1]
        ts = ts.round() if integer else ts
    elif spacing == "leading":
        ts = (np.arange(0, n) * (num_train // n)).round()[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(num_train, 0, -num_train / n)) - 1
    else:
        raise ConfigError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return ts.copy().astype(np.int64 if integer else np.float32)


def x0_from_output(output: torch.Tensor, x: torch.Tensor, abar, prediction: str) -> torch.Tensor:
    """x0_hat from a network output at x_t with cumulative alpha ``abar`` (Ho et al. 2020, Eq. 15;
    Salimans & Ho 2022, Sec. 4 for v)."""
    if prediction == "epsilon":
        return (x - (1 - abar) ** 0.5 * output) / abar ** 0.5
    if prediction == "sample":
        return output
    if prediction == "v_prediction":
        return abar ** 0.5 * x - (1 - abar) ** 0.5 * output
    raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")


def denoised_from_output(output: torch.Tensor, x: torch.Tensor, sigma, prediction: str) -> torch.Tensor:
    """x0_hat in the variance-exploding view x = x_0 + sigma eps, the network having seen
    x / sqrt(sigma^2 + 1) (Karras et al. 2022, Eq. 7 preconditioning): eps: x - sigma eps_hat;
    v: -sigma / sqrt(sigma^2 + 1) v_hat + x / (sigma^2 + 1)."""
    if prediction == "epsilon":
        return x - sigma * output
    if prediction == "sample":
        return output
    if prediction == "v_prediction":
        return output * (-sigma / (sigma ** 2 + 1) ** 0.5) + x / (sigma ** 2 + 1)
    raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")


def ddpm_step(x0: torch.Tensor, x: torch.Tensor, abar_t, abar_prev, noise: torch.Tensor | None,
              variance: str = "small") -> torch.Tensor:
    """x_{t'} ~ q(x_{t'} | x_t, x0_hat) for the previous inference step t' < t (Ho et al. 2020,
    Eq. 6-7 and Algorithm 2, generalised to skipped steps with beta' = 1 - abar_t / abar_t'):
    mean = sqrt(abar_t') beta' / (1 - abar_t) x0 + sqrt(alpha') (1 - abar_t') / (1 - abar_t) x_t,
    variance beta~' = (1 - abar_t') / (1 - abar_t) beta' (``small``) or beta' (``large``)."""
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    mean = abar_prev ** 0.5 * beta / (1 - abar_t) * x0 + alpha ** 0.5 * (1 - abar_prev) / (1 - abar_t) * x
    if noise is None:
        return mean
    var = beta if variance == "large" else torch.clamp((1 - abar_prev) / (1 - abar_t) * beta, min=1e-20)
    return mean + var ** 0.5 * noise


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, abar_t, abar_prev, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t' - s^2) eps + s z with
    s = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t') (Song et al. 2021, DDIM, Eq. 12
    and Eq. 16); eta = 0 is the deterministic DDIM, eta = 1 the DDPM posterior."""
    std = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
    x_prev = abar_prev ** 0.5 * x0 + (1 - abar_prev - std ** 2) ** 0.5 * eps
    return x_prev + std * noise if noise is not None else x_prev


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
    (Karras et al. 2022, Eq. 3 with sigma(t) = t; Algorithm 1 without its correction)."""
    return x + (x - denoised) / sigma * (sigma_next - sigma)


def ancestral_sigmas(sigma_from, sigma_to) -> tuple:
    """Split a step sigma_from -> sigma_to into a deterministic step to sigma_down and fresh noise of
    scale sigma_up with sigma_down^2 + sigma_up^2 = sigma_to^2, sigma_up = sigma_to sqrt(1 - sigma_to^2 /
    sigma_from^2) (the ancestral step of k-diffusion; Karras et al. 2022, Sec. 4 on stochastic sampling)."""
    sigma_up = (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def lms_coefficients(sigmas: np.ndarray, i: int, order: int) -> list[float]:
    """Linear multistep (Adams-Bashforth family) weights over sigma: c_k = integral from sigma_i to
    sigma_{i+1} of the Lagrange basis polynomial l_k(tau) through sigma_i, ..., sigma_{i-order+1}
    (the classic construction, e.g. Hairer, Norsett & Wanner, Sec. III.1; k-diffusion's sample_lms).
    Integrated exactly (the polynomial's antiderivative), not by quadrature."""
    nodes = [float(sigmas[i - k]) for k in range(order)]
    coeffs = []
    for k in range(order):
        basis = np.poly1d([1.0])
        for j in range(order):
            if j != k:
                basis = basis * np.poly1d([1.0, -nodes[j]]) / (nodes[k] - nodes[j])
        antideriv = basis.integ()
        coeffs.append(float(antideriv(float(sigmas[i + 1])) - antideriv(float(sigmas[i]))))
    return coeffs


def vp_alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) = (1 / sqrt(1 + s^2), s / sqrt(1 + s^2)): the variance-preserving scales of the
    noise level s = sqrt((1 - abar) / abar); lambda = log(alpha_t / sigma_t) (Lu et al. 2022, Sec. 2)."""
    alpha = 1 / (sigma ** 2 + 1) ** 0.5
    return alpha, sigma * alpha


def vp_lambda(sigma) -> torch.Tensor:
    """lambda = log(alpha_t / sigma_t), the half log-SNR in which DPM-Solver++ steps (Lu et al. 2022b, Sec. 3)."""
    alpha, s = vp_alpha_sigma(sigma)
    return torch.log(alpha) - torch.log(s)


def dpmpp_first_order(x: torch.Tensor, x0: torch.Tensor, sigma_s, sigma_t) -> torch.Tensor:
    """DPM-Solver++ order 1 (= DDIM): x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_hat,
    h = lambda_t - lambda_s (Lu et al. 2022b, "DPM-Solver++", the first step of Algorithm 2)."""
    if float(sigma_t) == 0.0:      # the last step lands on the data: alpha = 1, sigma = 0
        return x0
    (alpha_t, s_t), (_, s_s) = vp_alpha_sigma(sigma_t), vp_alpha_sigma(sigma_s)
    h = vp_lambda(sigma_t) - vp_lambda(sigma_s)
    return s_t / s_s * x - alpha_t * (torch.exp(-h) - 1.0) * x0


def dpmpp_sde_first_order(x: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, sigma_s, sigma_t) -> torch.Tensor:
    """The SDE form of DPM-Solver++ at order 1, the exact solution of the reverse diffusion SDE's linear part
    with x0_hat held fixed over the step (Lu et al. 2022b, "DPM-Solver++", the SDE variant):
    x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) x0_hat + sigma_t sqrt(1 - e^{-2h}) z.
    It is the DDPM posterior draw (Ho et al. 2020, Eqs. 6-7; DDIM with eta = 1) written in lambda."""
    if float(sigma_t) == 0.0:      # the last step lands on the data: alpha = 1, sigma = 0, no noise
        return x0
    (alpha_t, s_t), (_, s_s) = vp_alpha_sigma(sigma_t), vp_alpha_sigma(sigma_s)
    h = vp_lambda(sigma_t) - vp_lambda(sigma_s)
    return (s_t / s_s * torch.exp(-h)) * x + alpha_t * (1 - torch.exp(-2 * h)) * x0 \
        + s_t * torch.sqrt(1 - torch.exp(-2 * h)) * noise


def dpmpp_2m_x0(x0: torch.Tensor, x0_prev: torch.Tensor, sigma_prev, sigma_s, sigma_t) -> torch.Tensor:
    """The multistep second order of DPM-Solver++(2M), ODE and SDE alike: the order-1 step taken with
    D0 + D1 / 2 in place of x0_hat, D0 = x0_hat_s, D1 = (x0_hat_s - x0_hat_prev) / r, r = h_prev / h
    (Lu et al. 2022b, Algorithm 2, the "midpoint" form)."""
    lam_p, lam_s, lam_t = vp_lambda(sigma_prev), vp_lambda(sigma_s), vp_lambda(sigma_t)
    r = (lam_s - lam_p) / (lam_t - lam_s)
    return x0 + 0.5 * (x0 - x0_prev) / r


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device (CPU generators also
    serve models on a GPU: the same seed gives the same noise everywhere)."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


# ----------------------------------------------------------------- the contract
class Sampler:
    """Base class: ``set_timesteps``, ``timesteps``, ``init_noise_sigma``, ``scale_model_input``,
    ``step``. ``model_calls(n)`` is the number of network evaluations for n steps."""
    name = ""
    stochastic = False
    diffusers_equivalent = ""      # the diffusers scheduler class it matches step by step (tested to 1e-5)
    diffusers_config: dict = {}    # ... and the options that scheduler needs to be this sampler

    def __init__(self, schedule: NoiseSchedule, prediction: str = "epsilon", clip_sample: bool = False,
                 spacing: str | None = None):
        if prediction not in ("epsilon", "sample", "v_prediction"):
            raise ConfigError(f"unknown prediction type {prediction!r}; choose epsilon, sample or v_prediction")
        self.schedule = schedule
        self.prediction = prediction
        self.clip_sample = clip_sample
        self.spacing = spacing or self.default_spacing
        if self.spacing not in SPACINGS:
            raise ConfigError(f"unknown timestep spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")
        self.num_train = schedule.num_steps
        self.timesteps = torch.empty(0)
        self.num_inference_steps = 0
        self._index = 0

    default_spacing = "linspace"
    init_noise_sigma: float = 1.0

    def set_timesteps(self, n: int) -> None:
        if not 1 <= n <= self.num_train:
            raise ConfigError(f"steps must be between 1 and {self.num_train} (the training steps), got {n}")
        self.num_inference_steps = n
        self._index = 0
        self._set(n)

    def _set(self, n: int) -> None:
        """Integer timesteps of the inference schedule (DDPM, DDIM); the sigma samplers override it."""
        self.timesteps = torch.from_numpy(inference_timesteps(self.num_train, n, self.spacing, integer=True))

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        return x

    def step(self, model_output: torch.Tensor, t, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def model_calls(self, n: int) -> int:
        return n

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(-1, 1) if self.clip_sample else x0


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) on any subset of the training steps."""
    name, stochastic, default_spacing = "ddpm", True, "leading"
    diffusers_equivalent = "DDPMScheduler"

    def __init__(self, schedule, prediction="epsilon", clip_sample=False, spacing=None, variance="small"):
        super().__init__(schedule, prediction, clip_sample, spacing)
        self.variance = variance

    def step(self, model_output, t, x, generator=None):
        # 1. the current and previous timesteps of the inference schedule (-1 after the last one)
        i = self._index
        t = int(self.timesteps[i])
        prev_t = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1
        # 2. abar_t and abar_{t'} (abar before the first step is 1)
        abar = self.schedule.alphas_cumprod
        abar_t, abar_prev = abar[t], (abar[prev_t] if prev_t >= 0 else torch.ones((), dtype=abar.dtype))
        # 3. predicted x0 from the network output (Ho et al. 2020, Eq. 15), optionally clipped
        x0 = self._clip(x0_from_output(model_output, x, abar_t, self.prediction))
        # 4. draw x_{t'} from the posterior q(x_{t'} | x_t, x0); no noise on the last step (Algorithm 2, z = 0 at t = 1)
        noise = _noise(model_output, generator) if t > 0 else None
        self._index += 1
        return ddpm_step(x0, x, abar_t, abar_prev, noise, self.variance)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021): deterministic for eta = 0, DDPM-like for eta = 1."""
    name, default_spacing = "ddim", "leading"
    diffusers_equivalent = "DDIMScheduler"

    def __init__(self, schedule, prediction="epsilon", clip_sample=False, spacing=None, eta: float = 0.0,
                 clipped_eps: bool = False):
        super().__init__(schedule, prediction, clip_sample, spacing)
        self.eta = eta
        self.stochastic = eta > 0
        # with clipping, recompute eps from the clipped x0 (diffusers' use_clipped_model_output): without it
        # the update mixes a clipped x0 with the unclipped direction (measured: FID 33 vs 13 at 100 steps
        # on a briefly trained digits model)
        self.clipped_eps = clipped_eps

    def step(self, model_output, t, x, generator=None):
        # 1. the current and previous timesteps (-1 after the last one, where abar = 1)
        i = self._index
        t = int(self.timesteps[i])
        prev_t = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1
        # 2. abar_t and abar_{t'}
        abar = self.schedule.alphas_cumprod
        abar_t, abar_prev = abar[t], (abar[prev_t] if prev_t >= 0 else torch.ones((), dtype=abar.dtype))
        # 3. predicted x0 and eps ("predicted x0" and "direction pointing to x_t" of DDIM Eq. 12)
        x0_raw = x0_from_output(model_output, x, abar_t, self.prediction)
        eps = model_output if self.prediction == "epsilon" else (x - abar_t ** 0.5 * x0_raw) / (1 - abar_t) ** 0.5
        x0 = self._clip(x0_raw)
        if self.clip_sample and self.clipped_eps:
            eps = (x - abar_t ** 0.5 * x0) / (1 - abar_t) ** 0.5
        # 4. x_{t'} = sqrt(abar') x0 + sqrt(1 - abar' - s^2) eps + s z
        noise = _noise(model_output, generator) if self.eta > 0 else None
        self._index += 1
        return ddim_step(x0, eps, abar_t, abar_prev, self.eta, noise)


class _SigmaSampler(Sampler):
    """Shared by the samplers that integrate over sigma (Euler, Euler-ancestral, Heun, LMS)."""
    default_spacing = "linspace"

    def _set(self, n):
        ts = inference_timesteps(self.num_train, n, self.spacing, integer=False)
        sig = self.schedule.sigmas().float().numpy()
        sig = np.interp(ts, np.arange(len(sig)), sig)                  # sigma at fractional timesteps
        self.timesteps = torch.from_numpy(ts.astype(np.float32))
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))

    @property
    def init_noise_sigma(self) -> float:
        smax = float(self.sigmas.max())
        return smax if self.spacing in ("linspace", "trailing") else (smax ** 2 + 1) ** 0.5

    def scale_model_input(self, x, t):
        """x / sqrt(sigma^2 + 1): the variance-preserving x_t the network was trained on."""
        return x / (self.sigmas[self._index] ** 2 + 1) ** 0.5


class EulerSampler(_SigmaSampler):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 without the
    second-order correction and without churn)."""
    name, diffusers_equivalent = "euler", "EulerDiscreteScheduler"

    def step(self, model_output, t, x, generator=None):
        # 1. sigma now and at the next step
        sigma, sigma_next = self.sigmas[self._index], self.sigmas[self._index + 1]
        # 2. denoised estimate D(x; sigma) = x0_hat
        denoised = self._clip(denoised_from_output(model_output, x, sigma, self.prediction))
        # 3. x <- x + (x - D) / sigma * (sigma_next - sigma)
        self._index += 1
        return euler_step(x, denoised, sigma, sigma_next)


class EulerAncestralSampler(_SigmaSampler):
    """Euler step to sigma_down, then fresh noise of scale sigma_up (k-diffusion's sample_euler_ancestral)."""
    name, stochastic, diffusers_equivalent = "euler-a", True, "EulerAncestralDiscreteScheduler"

    def step(self, model_output, t, x, generator=None):
        # 1. sigma now and at the next step, split into sigma_down (deterministic) and sigma_up (noise)
        sigma, sigma_next = self.sigmas[self._index], self.sigmas[self._index + 1]
        sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next)
        # 2. denoised estimate
        denoised = self._clip(denoised_from_output(model_output, x, sigma, self.prediction))
        # 3. Euler step to sigma_down, then add sigma_up z (z is drawn on every step, also the last)
        x_prev = euler_step(x, denoised, sigma, sigma_down)
        self._index += 1
        return x_prev + _noise(model_output, generator) * sigma_up


class HeunSampler(_SigmaSampler):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, no churn). Each step but the last
    evaluates the network twice: ``timesteps`` repeats every inner timestep, like diffusers."""
    name, diffusers_equivalent = "heun", "HeunDiscreteScheduler"

    def _set(self, n):
        super()._set(n)
        s = self.sigmas                                                  # [n + 1]: s_0 .. s_{n-1}, 0
        self.sigmas = torch.cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]])   # [n+1] -> [2n]
        ts = self.timesteps
        self.timesteps = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])        # [n] -> [2n - 1]
        self._first = None          # (derivative, dt, x) saved by the first half of a step

    def model_calls(self, n):
        return 2 * n - 1

    def step(self, model_output, t, x, generator=None):
        i = self._index
        self._index += 1
        if self._first is None:
            # 1. predictor: Euler from sigma_i to sigma_{i+1} with d_i = (x - D(x; sigma_i)) / sigma_i
            sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
            denoised = self._clip(denoised_from_output(model_output, x, sigma, self.prediction))
            d = (x - denoised) / sigma
            if float(sigma_next) == 0.0:        # the last step stays first order (no division by 0)
                return x + d * (sigma_next - sigma)
            self._first = (d, sigma_next - sigma, x)
            return x + d * (sigma_next - sigma)
        # 2. corrector: average d_i with d at the predicted point, restart from the saved x
        d_first, dt, x_start = self._first
        sigma_next = self.sigmas[i]
        denoised = self._clip(denoised_from_output(model_output, x, sigma_next, self.prediction))
        d = ((x - denoised) / sigma_next + d_first) / 2
        self._first = None
        return x_start + d * dt


class LMSSampler(_SigmaSampler):
    """Linear multistep of order 4 over sigma (k-diffusion's sample_lms)."""
    name, diffusers_equivalent = "lms", "LMSDiscreteScheduler"

    def __init__(self, schedule, prediction="epsilon", clip_sample=False, spacing=None, order: int = 4):
        super().__init__(schedule, prediction, clip_sample, spacing)
        self.order = order

    def _set(self, n):
        super()._set(n)
        self._derivatives: list[torch.Tensor] = []

    def step(self, model_output, t, x, generator=None):
        i = self._index
        # 1. derivative d_i = (x - D(x; sigma_i)) / sigma_i, keep the last `order` of them
        sigma = self.sigmas[i]
        denoised = self._clip(denoised_from_output(model_output, x, sigma, self.prediction))
        self._derivatives = (self._derivatives + [(x - denoised) / sigma])[-self.order:]
        # 2. the order available so far, and the exact integrals of the Lagrange basis over [sigma_i, sigma_{i+1}]
        order = min(i + 1, self.order)
        coeffs = lms_coefficients(self.sigmas.double().numpy(), i, order)
        # 3. x <- x + sum_k c_k d_{i-k}
        self._index += 1
        return x + sum(c * d for c, d in zip(coeffs, reversed(self._derivatives)))


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022b): multistep second order in x0-prediction form; first order on
    the first and last steps."""
    name, default_spacing = "dpm++2m", "linspace"
    diffusers_equivalent = "DPMSolverMultistepScheduler"

    def _set(self, n):
        if self.spacing == "linspace":   # n + 1 points over [0, T-1], the last (t = 0) dropped
            ts = np.linspace(0, self.num_train - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        else:
            ts = inference_timesteps(self.num_train, n, self.spacing, integer=True)
        # near n = T rounding repeats a timestep (h = 0, then 0/0 in the 2M step; diffusers 0.42 returns
        # NaN there): repeats are dropped, so the sampler may take slightly fewer than n steps
        ts = ts[np.concatenate([[True], np.diff(ts) != 0])]
        sig = self.schedule.sigmas().float().numpy()
        sig = np.interp(ts, np.arange(len(sig)), sig)
        self.timesteps = torch.from_numpy(ts)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        self._x0_prev: torch.Tensor | None = None

    def step(self, model_output, t, x, generator=None):
        i = self._index
        sigma_s, sigma_t = self.sigmas[i], self.sigmas[i + 1]
        # 1. x0_hat in the VP coordinates (alpha_s, sigma_s) of the current noise level
        alpha_s, s_s = vp_alpha_sigma(sigma_s)
        x0 = self._clip(x0_from_output(model_output, x, alpha_s ** 2, self.prediction))
        # 2. first order on the first step (no history) and on the last (to sigma = 0); 2M otherwise
        last = i == len(self.timesteps) - 1
        d = x0 if self._x0_prev is None or last else dpmpp_2m_x0(x0, self._x0_prev, self.sigmas[i - 1], sigma_s,
                                                                 sigma_t)
        # 3. the order-1 update with D in place of x0_hat
        x_prev = self._update(x.float(), d, sigma_s, sigma_t, generator)
        # 4. remember x0_hat for the next step
        self._x0_prev = x0
        self._index += 1
        return x_prev.to(model_output.dtype)

    def _update(self, x, d, sigma_s, sigma_t, generator):
        return dpmpp_first_order(x, d, sigma_s, sigma_t)


class DPMSolverPP2MSDESampler(DPMSolverPP2MSampler):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, the SDE variant): the same multistep x0 extrapolation as
    DPM-Solver++(2M), applied to the reverse diffusion SDE instead of the probability-flow ODE. Fresh noise
    at every step, like DDPM, lets it forget the errors an imperfect network makes early on, which the ODE
    carries to the end (Karras et al. 2022, Sec. 4)."""
    name, stochastic = "dpm++2m-sde", True
    diffusers_config = {"algorithm_type": "sde-dpmsolver++"}

    def _update(self, x, d, sigma_s, sigma_t, generator):
        # fresh noise z ~ N(0, I) at every step (drawn on the last one too, where its weight is zero)
        return dpmpp_sde_first_order(x, d, _noise(x, generator), sigma_s, sigma_t)


SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (
    DDPMSampler, DDIMSampler, EulerSampler, EulerAncestralSampler, HeunSampler, LMSSampler, DPMSolverPP2MSampler,
    DPMSolverPP2MSDESampler)}


def make_sampler(name: str, schedule: NoiseSchedule, **options) -> Sampler:
    """The sampler called ``name`` (``genlab sample --sampler``), or a clear error listing them."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](schedule, **options)


def sample_loop(sampler: Sampler, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                noise: torch.Tensor, steps: int, generator: torch.Generator | None = None,
                callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run ``sampler`` for ``steps`` from ``noise`` ~ N(0, I) with ``model(x_t, t) -> output``
    (``t`` a 0-d tensor); returns the final x (data scale)."""
    sampler.set_timesteps(steps)
    x = noise * sampler.init_noise_sigma
    for i, t in enumerate(sampler.timesteps):
        out = model(sampler.scale_model_input(x, t), t)
        x = sampler.step(out, t, x, generator)
        if callback is not None:
            callback(i, x)
    return x
