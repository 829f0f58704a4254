"""DDPM: a denoising diffusion model of images (Ho et al. 2020), trainable by genlab's loop.

Training (Ho et al. 2020, Algorithm 1): x_0 from the data scaled to [-1, 1], t uniform,
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, minimise w(t) ||target - net(x_t, t, y)||^2 with the
target eps, x_0 or v and the weighting of ``schedule.NoiseSchedule.loss``. With ``conditional``, the
class y is replaced by the null token with probability ``p_uncond`` (Ho & Salimans 2022, Algorithm 1),
so one network is both conditional and unconditional for classifier-free guidance.

Sampling: any sampler of ``samplers.SAMPLERS`` (``--sampler``, ``--steps``). Evaluation: the
variational bound in nats and bits/dim on the data's own K grey levels (Ho et al. 2020, Eq. 5 with the
decoder of Eq. 13, their 255 replaced by K - 1: K = 256 on MNIST, 17 on the 8x8 digits, 2 on binarized
pixels), estimated per image with stratified timesteps (``--vlb-samples``; T gives the exact sum).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from genlab.abilities import Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.diffusion.guidance import class_names, classifier_free_guidance, resolve_prompt
from genlab.families.diffusion.samplers import SAMPLERS, make_sampler, sample_loop
from genlab.families.diffusion.schedule import NoiseSchedule, to_model_range
from genlab.families.diffusion.unet import UNet, UNetConfig
from genlab.maths.densities import bits_per_dim, grey_levels, to_levels
from genlab.model import Avg, GenerativeModel, register_model


@dataclass
class DDPMConfig:
    beta_schedule: Literal["linear", "cosine", "scaled_linear"] = field(
        "linear", "noise schedule: linear 1e-4 -> 0.02 (Ho et al.), cosine, or scaled_linear (Stable Diffusion's)")
    timesteps: int = field(1000, "diffusion steps T")
    prediction: Literal["epsilon", "sample", "v_prediction"] = field("epsilon", "what the network predicts")
    weighting: Literal["uniform", "snr", "min_snr"] = field(
        "uniform", "loss weighting: uniform (L_simple), snr (the bound's weights, Kingma et al. 2021), min_snr")
    snr_gamma: float = field(5.0, "gamma of min-SNR weighting")
    variance: Literal["small", "large"] = field("small", "reverse variance: small (beta~_t) or large (beta_t)")
    channels: int = field(16, "U-Net width at full resolution (16 learned fastest per CPU-second on MNIST)")
    mults: tuple[int, ...] = field((1, 2, 2), "U-Net width multipliers per resolution")
    attention: bool = field(True, "self-attention at the lowest resolution")
    heads: int = field(4, "attention heads")
    dropout: float = field(0.0, "dropout in residual blocks")
    conditional: bool = field(False, "class-conditional (prompts by class name, classifier-free guidance)")
    p_uncond: float = field(0.1, "probability of dropping the label during training (conditional models)")
    sampler: str = field("dpm++2m-sde", f"default sampler: {', '.join(SAMPLERS)} (the SDE form of DPM-Solver++ "
                         "scored best at 10-100 steps on briefly trained models)")
    sample_steps: int = field(25, "default number of sampling steps")
    guidance: float = field(2.0, "default classifier-free guidance scale w of conditional models (1 = none)")
    clip_sample: bool = field(True, "clip predicted x0 to [-1, 1] while sampling")

    def validate(self):
        require(self.timesteps >= 2, f"timesteps must be at least 2, got {self.timesteps}")
        require(self.sampler in SAMPLERS, f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        require(1 <= self.sample_steps <= self.timesteps,
                f"sample_steps must be in [1, timesteps], got {self.sample_steps}")
        require(0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}")
        require(self.snr_gamma > 0, "snr_gamma must be positive")
        UNetConfig(self.channels, tuple(self.mults), self.attention, self.heads, self.dropout).validate()


@dataclass
class DDPMEvalConfig:
    vlb_samples: int = field(4, "timesteps t > 1 per image for the bound (stratified, unbiased; L_T and L_0 are "
                                "exact); timesteps - 1 gives the exact sum")


@dataclass
class DDPMSampleConfig:
    sampler: str | None = field(None, f"sampler: {', '.join(SAMPLERS)} (default: the model's --sampler)")
    steps: int | None = field(None, "sampling steps (default: the model's --sample-steps)")
    prompt: str = field("", "class to draw, by name or number (\"seven\", \"7\", \"ankle boot\")")
    negative_prompt: str = field("", "class to steer away from: replaces the unconditional branch of guidance")
    guidance: float | None = field(None, "classifier-free guidance scale, 1 = none (default: the model's --guidance)")
    eta: float = field(0.0, "DDIM's eta (0 deterministic, 1 like DDPM)")

    def validate(self):
        require(self.sampler is None or self.sampler in SAMPLERS,
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        require(self.steps is None or 1 <= self.steps <= 10_000, f"steps must be in 1..10000, got {self.steps}")
        require(self.guidance is None or self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")


@register_model("ddpm", DDPMConfig, "denoising diffusion (Ho et al. 2020): compact U-Net, 8 samplers, "
                "classifier-free guidance, variational bound in bits/dim", data_defaults={"view": "continuous"},
                default_data="digits", eval_config=DDPMEvalConfig, sample_config=DDPMSampleConfig,
                sample="figures:sample_images", abilities={Samples},
                sample_example="--sampler dpm++2m-sde --steps 20 --seed 42", data_kinds=("image",))
class DDPM(GenerativeModel):
    def __init__(self, config: DDPMConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        if data_info.kind != "image" or len(data_info.shape) != 3:
            raise ConfigError(f"ddpm models images (C, H, W); this data is {data_info.kind} {data_info.shape}")
        c, h, w = data_info.shape
        levels = len(config.mults) - 1
        if h % (2 ** levels) or w % (2 ** levels):
            raise ConfigError(f"images of {h}x{w} cannot be halved {levels} times; use fewer --mults")
        if config.conditional and not data_info.num_classes:
            raise ConfigError("--conditional needs labelled data (digits, mnist, fashion-mnist)")
        if data_info.view == "quantized":
            raise ConfigError("ddpm models pixels in [0, 1]; use --view continuous (or binarized)")
        self.num_classes = data_info.num_classes if config.conditional else 0
        self.schedule = NoiseSchedule.make(config.beta_schedule, config.timesteps, variance=config.variance)
        self.net = UNet(UNetConfig(config.channels, tuple(config.mults), config.attention, config.heads,
                                   config.dropout), c, self.num_classes)

    # ------------------------------------------------------------- training
    def loss(self, batch, phase="main"):
        x0 = batch[0] * 2 - 1                                                  # [0, 1] -> [-1, 1]
        b = x0.shape[0]
        t = torch.randint(0, self.config.timesteps, (b,), device=x0.device)
        eps = torch.randn_like(x0)
        xt = self.schedule.q_sample(x0, t, eps)
        y = None
        if self.num_classes:
            y = batch[1].long()
            drop = torch.rand(b, device=x0.device) < self.config.p_uncond    # label dropout -> null token
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        out = self.net(xt, t, y)
        loss = self.schedule.loss(out, x0, t, eps, self.config.prediction, self.config.weighting,
                                  self.config.snr_gamma).mean()
        return loss, {"loss": loss.detach()}

    # ------------------------------------------------------------- the variational bound
    @property
    def levels(self) -> int:
        """K, the number of grey levels of the data the bound is scored on (``grey_levels``)."""
        return grey_levels(self.data_info)

    def bound_x0(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the data's view -> x_0 on the data's K levels 2k/(K-1) - 1 in [-1, 1] (the points the
        discretized decoder of Ho et al. 2020, Eq. 13 scores, with 255 replaced by K - 1)."""
        return to_model_range(to_levels(x, self.data_info) / (self.levels - 1), self.levels)

    def vlb_terms(self, x01: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """L_{t-1} (or L_0 at index 0) of Ho et al. 2020, Eq. 5 for one draw of x_t per image, [B] nats."""
        x0 = self.bound_x0(x01)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        xt = self.schedule.q_sample(x0, t, noise)
        return self.schedule.vlb_term(self.net(xt, t, y), x0, xt, t, self.config.prediction, levels=self.levels)

    def vlb_nats(self, x01: torch.Tensor, samples: int, y: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """-log p(x_0) <= L_T + L_0 + sum_{t>1} L_{t-1} (Ho et al. 2020, Eq. 5), [B] nats. L_T and the decoder
        term L_0 are computed exactly; the T - 1 KL terms are estimated with ``samples`` strata of timesteps
        per image (one uniform t per stratum, weighted by the stratum's size): unbiased, and the exact sum
        when samples >= T - 1. The strata are geometric ([1, 2), [2, 6), ...): the terms at small t are
        by far the largest (two thirds of the bound within t < 10 for a briefly trained model), so they
        are drawn (nearly) exactly instead of rarely with a large weight."""
        T = self.config.timesteps
        b = x01.shape[0]
        total = self.schedule.prior_kl(self.bound_x0(x01))
        total = total + self.vlb_terms(x01, torch.zeros(b, dtype=torch.long, device=x01.device), y, generator)
        k = max(1, min(samples, T - 1))
        if k == T - 1:
            edges = torch.arange(1, T + 1)
        else:
            edges = torch.unique(torch.logspace(0, math.log10(T), k + 1, dtype=torch.float64).round().long())
        for i in range(len(edges) - 1):
            lo, hi = int(edges[i]), int(edges[i + 1])
            t = torch.randint(lo, hi, (b,), generator=generator).to(x01.device)
            total = total + (hi - lo) * self.vlb_terms(x01, t, y, generator)
        return total

    def eval_metrics(self, batch, vlb_samples: int = 4, **options):
        x = batch[0]
        y = batch[1].long() if self.num_classes else None
        nll = self.vlb_nats(x, vlb_samples, y)
        loss, _ = self.loss(batch)
        return {"nll_nats": nll, "bpd": bits_per_dim(nll, self.data_info.shape),
                "loss": Avg(loss * len(x), len(x))}

    # ------------------------------------------------------------- sampling
    def denoiser(self, labels: torch.Tensor | None = None, negative: torch.Tensor | None = None,
                 guidance: float = 1.0):
        """``model(x_t, t) -> output`` for a sampler: the network, guided when labels are given."""
        def model(x, t):
            if labels is None or not self.num_classes:
                return self.net(x, t)
            if guidance == 1.0 and negative is None:
                return self.net(x, t, labels)
            uncond = negative if negative is not None else torch.full_like(labels, self.num_classes)
            return classifier_free_guidance(self.net, x, t, labels, uncond, guidance)
        return model

    @torch.no_grad()
    def sample(self, n: int, sampler: str | None = None, steps: int | None = None,
               generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
               negative: torch.Tensor | None = None, guidance: float | None = None, eta: float = 0.0,
               noise: torch.Tensor | None = None,
               callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """n images [n, C, H, W] in [0, 1]. A conditional model without ``labels`` cycles through the
        classes (guidance ``config.guidance``); ``callback(i, x)`` after each sampler step (e.g. progress)."""
        cfg = self.config
        name = sampler or cfg.sampler
        options = {"eta": eta, "clipped_eps": True} if name == "ddim" else {}
        s = make_sampler(name, self.schedule, prediction=cfg.prediction, clip_sample=cfg.clip_sample, **options)
        device = next(self.parameters()).device
        if self.num_classes and labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        if noise is None:
            noise = torch.randn((n, *self.data_info.shape), generator=generator)
        model = self.denoiser(labels, negative, cfg.guidance if guidance is None else guidance)
        x = sample_loop(s, model, noise.to(device), steps or cfg.sample_steps, generator, callback)
        return ((x + 1) / 2).clamp(0, 1)

    def class_names(self) -> tuple[str, ...]:
        return class_names(self.data_info.extras.get("dataset", ""), self.data_info.num_classes or 0)

    def prompt_label(self, prompt: str) -> int:
        if not self.num_classes:
            raise ConfigError("this model is unconditional: train it with --conditional to use prompts")
        return resolve_prompt(prompt, self.class_names())
