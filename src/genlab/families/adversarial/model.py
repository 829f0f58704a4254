"""The adversarial family: adversarial autoencoders (Makhzani et al. 2015) and GANs (Goodfellow et al. 2014).

AAE (Makhzani et al., 2015), encoder E (the generator of codes), decoder R, discriminator D on codes,
prior p(z), 0 <= lambda <= 1, the lambda-weighted AAE loss L_AAE:

  min_{E,R} (1 - lambda) max_D V(D, E) + lambda Rec(R, E)                      (L_AAE)
  V(D, E)  = E_p(x)[log(1 - D(E(x)))] + E_p(z)[log D(z)]              (Goodfellow et al. 2014, Eq. 1, on codes)
  Rec(R,E) = E_p(x)[||x - R(E(x))||^2]                                (mean over pixels here)

Pixels on [-1, 1] and a tanh decoder (``output="tanh"``, the default), so that Rec is the
reconstruction loss of the course reference in docs/COURSES.md (below 0.05 for z=8, lambda=0.995) and
lambda weighs it on that scale; ``output="sigmoid"`` keeps x in [0, 1] (Rec a quarter as large).
The model's public ``encode``/``decode``/``sample`` take and give images in [0, 1] either way.

Training (``schedule="joint"``, the default) takes two steps on every batch: the discriminator minimises
(1 - lambda) * BCE(prior codes real, encoder codes fake) = -(1 - lambda) V, then the encoder and the decoder,
with one optimizer, minimise L_AAE's outer objective lambda * Rec + (1 - lambda) * G, G the encoder's
adversarial (generator) loss -log D(E(x)) (or log(1 - D(E(x))) for the min-max form). One optimizer on the
weighted sum is what makes lambda weigh the two gradients.

``schedule="phased"`` is the literal procedure of Makhzani et al. 2015, Sec. 2: a reconstruction step (E, R on
lambda * Rec), then the regularization phase, a discriminator step and a generator step (E on (1 - lambda) * G),
each phase with its own optimizer. With SGD (the paper's optimizer) the weights scale the steps; Adam's step
is invariant to a constant scale of its loss (Kingma & Ba 2015, Sec. 2.1), so lambda and 1 - lambda cancel
and the encoder's adversarial step is as large as its reconstruction step: at z = 8, lambda = 0.995 on MNIST
with Adam (lr 1e-3, batch 128, 12 epochs) the codes stop carrying the input and every reconstruction is the
mean digit (test MSE 0.270 on [-1, 1]; the joint schedule: 0.070, and the samples are digits).

GAN (Goodfellow et al. 2014, Eq. 1):  min_G max_D E_data[log D(x)] + E_z[log(1 - D(G(z)))],
generator loss min-max log(1 - D(G(z))) or non-saturating -log D(G(z)); with ``divergence`` other
than "gan", the critic maximises the f-GAN bound of :mod:`genlab.families.adversarial.fdiv` instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.abilities import Decodes, Encodes, Reconstructs, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.adversarial import fdiv
from genlab.maths.densities import log_normal_pdf, reparameterize
from genlab.model import GenerativeModel, register_model
from genlab.nn.blocks import build_decoder, build_encoder, mlp

Act = Literal["auto", "relu", "gelu", "leaky_relu", "tanh", "silu"]


# ----------------------------------------------------------------- priors p(z)
class NormalPrior(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def sample(self, n: int, device=None) -> torch.Tensor:
        return torch.randn(n, self.dim, device=device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))


class MixturePrior(nn.Module):
    """p(z) = 1/K sum_k N(z; m_k, s^2 I), the means m_k evenly spaced on a circle of radius r in the
    first two coordinates (the other coordinates have mean 0)."""

    def __init__(self, dim: int, components: int, radius: float, std: float):
        super().__init__()
        angles = 2 * math.pi * torch.arange(components) / components
        means = torch.zeros(components, dim)
        means[:, 0] = radius * torch.cos(angles)
        if dim > 1:
            means[:, 1] = radius * torch.sin(angles)
        self.register_buffer("means", means, persistent=False)
        self.log_var = 2 * math.log(std)

    def sample(self, n: int, device=None) -> torch.Tensor:
        k = torch.randint(len(self.means), (n,), device=self.means.device)
        z = self.means[k] + math.exp(0.5 * self.log_var) * torch.randn(n, self.means.shape[1], device=self.means.device)
        return z.to(device) if device is not None else z

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k [log N(z; m_k, s^2 I)] - log K."""
        zz = z.unsqueeze(-2)
        lp = log_normal_pdf(zz, self.means, torch.full_like(self.means, self.log_var))
        return torch.logsumexp(lp, -1) - math.log(len(self.means))


# ----------------------------------------------------------------- adversarial autoencoder
@dataclass
class AAEConfig:
    arch: Literal["mlp", "cnn"] = field("mlp", "encoder/decoder: MLP or the small CNN of genlab.nn.blocks")
    hidden: tuple[int, ...] = field((512, 512), "encoder MLP hidden sizes (decoder mirrors them)")
    channels: int = field(32, "CNN base channels")
    z_dim: int = field(8, "latent dimension")
    lam: float = field(0.995, "lambda of L_AAE: weight of reconstruction vs (1 - lambda) adversarial")
    encoder: Literal["deterministic", "gaussian", "universal"] = field(
        "deterministic", "q(z|x): deterministic, Gaussian (mean, std), or universal approximator (noise input)")
    noise_dim: int = field(8, "universal encoder: dimension of the noise fed with x")
    prior: Literal["normal", "mixture"] = field("normal", "p(z): standard normal or a mixture of Gaussians on a circle")
    components: int = field(10, "mixture prior: number of components")
    radius: float = field(4.0, "mixture prior: radius of the circle of means")
    component_std: float = field(0.5, "mixture prior: std of each component")
    disc_hidden: tuple[int, ...] = field((512, 512), "discriminator (on codes) MLP hidden sizes")
    gen_loss: Literal["non_saturating", "minmax"] = field("non_saturating", "encoder's adversarial loss")
    schedule: Literal["joint", "phased"] = field(
        "joint", "joint: a discriminator step, then one encoder/decoder step on lambda * Rec + (1 - lambda) * "
        "adversarial; phased: reconstruction, discriminator, generator steps with one optimizer each "
        "(Makhzani 2015, for SGD: under Adam lambda then has no effect)")
    act: Act = field("auto", "activation (auto: relu for mlp, gelu for cnn)")
    output: Literal["tanh", "sigmoid"] = field(
        "tanh", "decoder output and pixel scale of Rec: tanh on pixels mapped to [-1, 1] (the default) "
        "or sigmoid on [0, 1]")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(all(h > 0 for h in (*self.hidden, *self.disc_hidden)), "hidden and disc_hidden sizes must be positive")
        require(self.channels > 0, f"channels must be positive, got {self.channels}")
        require(0.0 <= self.lam <= 1.0, f"lam must be in [0, 1], got {self.lam}")
        require(self.noise_dim > 0 and self.components > 0, "noise_dim and components must be positive")
        require(self.radius >= 0 and self.component_std > 0, "radius must be >= 0 and component_std > 0")

    @property
    def activation(self) -> str:
        return ("gelu" if self.arch == "cnn" else "relu") if self.act == "auto" else self.act


@register_model("aae", AAEConfig, "adversarial autoencoder (Makhzani et al. 2015): deterministic / Gaussian / "
                "universal encoder, normal or mixture prior, lambda-weighted L_AAE",
                data_defaults={"view": "continuous"}, abilities={Samples, Encodes, Decodes, Reconstructs},
                data_kinds=("image",))
class AAE(GenerativeModel):
    def __init__(self, config: AAEConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        if data_info.view == "quantized":
            raise ConfigError("the AAE reconstructs pixels in [0, 1]; use --view continuous (or binarized)")
        self.latent_dim = c.z_dim
        enc_out = 2 * c.z_dim if c.encoder == "gaussian" else c.z_dim
        if c.encoder == "universal":
            self.encoder_net = nn.Sequential(nn.Flatten(), mlp([math.prod(data_info.shape) + c.noise_dim,
                                                               *c.hidden, c.z_dim], c.activation))
            if c.arch == "cnn":
                raise ConfigError("the universal encoder is an MLP on [x, noise]; use --arch mlp")
        else:
            self.encoder_net = build_encoder(c.arch, data_info.shape, enc_out, c.hidden, c.channels, c.activation)
        self.decoder_net = build_decoder(c.arch, data_info.shape, c.z_dim, 1, c.hidden, c.channels, c.activation)
        self.discriminator = mlp([c.z_dim, *c.disc_hidden, 1], "leaky_relu")
        self.prior = (MixturePrior(c.z_dim, c.components, c.radius, c.component_std) if c.prior == "mixture"
                      else NormalPrior(c.z_dim))

    # ------------------------------------------------------------- parts
    def to_model_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the scale the networks and Rec work on: 2x - 1 (tanh) or x (sigmoid)."""
        return 2 * x - 1 if self.config.output == "tanh" else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A code z ~ q(z|x) of images x in [0, 1]: E(x) (deterministic), mu + sigma * eps (Gaussian),
        E([x, eps]) (universal)."""
        c = self.config
        x = self.to_model_scale(x)
        if c.encoder == "universal":
            eps = torch.randn(len(x), c.noise_dim, device=x.device)
            return self.encoder_net[1](torch.cat([x.flatten(1), eps], 1))
        out = self.encoder_net(x)
        if c.encoder == "gaussian":
            mu, logvar = out.chunk(2, -1)
            return reparameterize(mu, logvar.clamp(-30.0, 20.0)) if self.training else mu
        return out

    def decode_scaled(self, z: torch.Tensor) -> torch.Tensor:
        """R(z) on the model's scale: tanh(.) in [-1, 1] or sigmoid(.) in [0, 1]."""
        out = self.decoder_net(z).view(-1, *self.data_info.shape)        # [B, D] -> [B, *shape]
        return torch.tanh(out) if self.config.output == "tanh" else torch.sigmoid(out)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """R(z) as an image in [0, 1]."""
        r = self.decode_scaled(z)
        return (r + 1) / 2 if self.config.output == "tanh" else r

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """z ~ p(z), x = R(z)."""
        return self.decode(self.prior.sample(n, next(self.parameters()).device))

    def discriminate(self, z: torch.Tensor) -> torch.Tensor:
        """D's logit: D(z) = sigmoid(logit), the probability that z came from the prior."""
        return self.discriminator(z).squeeze(-1)

    # ------------------------------------------------------------- the three terms of L_AAE
    def reconstruction_error(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Rec per example: ||x - R(z)||^2 averaged over pixels, on the model's scale ([-1, 1] for tanh)."""
        return ((self.to_model_scale(x) - self.decode_scaled(z)) ** 2).flatten(1).mean(-1)

    def discriminator_loss(self, z_fake: torch.Tensor, z_real: torch.Tensor) -> torch.Tensor:
        """-V(D, E) = BCE(D(z_prior), 1) + BCE(D(E(x)), 0) = -E[log D(z)] - E[log(1 - D(E(x)))]."""
        real, fake = self.discriminate(z_real), self.discriminate(z_fake)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def generator_loss(self, z_fake: torch.Tensor) -> torch.Tensor:
        """The encoder's adversarial loss: -E log D(E(x)) (non-saturating) or E log(1 - D(E(x))) (min-max)."""
        return fdiv.generator_loss(self.discriminate(z_fake), "gan", self.config.gen_loss)

    # ------------------------------------------------------------- protocol
    def phases(self):
        autoencoder = list(self.encoder_net.parameters()) + list(self.decoder_net.parameters())
        if self.config.lam == 1.0:                       # a plain autoencoder: no adversarial part
            return {"reconstruction": autoencoder}
        if self.config.schedule == "joint":
            return {"discriminator": list(self.discriminator.parameters()), "autoencoder": autoencoder}
        return {"reconstruction": autoencoder, "discriminator": list(self.discriminator.parameters()),
                "generator": list(self.encoder_net.parameters())}

    def loss(self, batch, phase="reconstruction"):
        x, lam = batch[0], self.config.lam
        z = self.encode(x)
        if phase == "reconstruction":
            rec = self.reconstruction_error(x, z).mean()
            return lam * rec, {"rec": rec.detach()}
        if phase == "discriminator":
            d_loss = self.discriminator_loss(z.detach(), self.prior.sample(len(x), x.device))
            return (1 - lam) * d_loss, {"d_loss": d_loss.detach()}
        if phase == "generator":
            g_loss = self.generator_loss(z)
            return (1 - lam) * g_loss, {"g_loss": g_loss.detach()}
        if phase == "autoencoder":
            rec, g_loss = self.reconstruction_error(x, z).mean(), self.generator_loss(z)
            return lam * rec + (1 - lam) * g_loss, {"rec": rec.detach(), "g_loss": g_loss.detach()}
        raise ValueError(f"unknown phase {phase!r}")

    def eval_metrics(self, batch, **options):
        """Per example [B]: ``rec_mse`` (Rec on the model's scale, the training loss), ``rec_mse_pm1``
        (pixels on [-1, 1]: the scale of the course reference below 0.05, docs/COURSES.md), ``rec_mse_01``
        (pixels on [0, 1], a quarter of it) and ``d_accuracy`` when there is a discriminator."""
        x = batch[0]
        z = self.encode(x)
        mse01 = ((x - self.decode(z)) ** 2).flatten(1).mean(-1)
        out = {"rec_mse": self.reconstruction_error(x, z), "rec_mse_pm1": 4 * mse01, "rec_mse_01": mse01}
        if self.config.lam < 1.0:
            real = self.discriminate(self.prior.sample(len(x), x.device))
            out["d_accuracy"] = 0.5 * ((real > 0).float() + (self.discriminate(z) < 0).float())
        return out


# ----------------------------------------------------------------- GAN
class DCGenerator(nn.Module):
    """DCGAN-style generator: linear -> (4C, H/4, W/4) -> two stride-2 transposed convs -> (C_out, H, W)."""

    def __init__(self, z_dim: int, shape, channels: int):
        super().__init__()
        c, h, w = shape
        self.start = (2 * channels, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(z_dim, math.prod(self.start)), nn.BatchNorm1d(math.prod(self.start)), nn.ReLU(),
            nn.Unflatten(1, self.start),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, 2, 1))

    def forward(self, z):
        return self.net(z)


class DCDiscriminator(nn.Module):
    """DCGAN-style critic: two stride-2 convs with LeakyReLU(0.2) -> linear -> one logit."""

    def __init__(self, shape, channels: int):
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.BatchNorm2d(2 * channels), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), 1))

    def forward(self, x):
        return self.net(x)


@dataclass
class GANConfig:
    arch: Literal["mlp", "dcgan"] = field("mlp", "networks: MLPs or DCGAN-style convolutions")
    z_dim: int = field(32, "noise dimension")
    hidden: tuple[int, ...] = field((256, 512), "generator MLP hidden sizes (the discriminator mirrors them)")
    channels: int = field(64, "dcgan: base channels")
    gen_loss: Literal["non_saturating", "minmax"] = field(
        "non_saturating", "generator loss: -log D(G(z)) or the min-max log(1 - D(G(z))) (Goodfellow 2014)")
    divergence: Literal["gan", "kl", "reverse_kl", "js", "pearson", "tv", "hellinger"] = field(
        "gan", "f-divergence of the critic's bound (gan: the original GAN objective)")
    gan_betas: tuple[float, float] = field((0.5, 0.999), "Adam betas of both phases (DCGAN's choice)")
    d_lr: float | None = field(None, "discriminator learning rate (default: the run's --lr)")
    g_lr: float | None = field(None, "generator learning rate (default: the run's --lr)")

    def validate(self):
        require(self.z_dim > 0, f"z_dim must be positive, got {self.z_dim}")
        require(all(h > 0 for h in self.hidden), f"hidden sizes must be positive, got {self.hidden}")
        require(self.channels > 0, f"channels must be positive, got {self.channels}")
        require(all(0 <= b < 1 for b in self.gan_betas), "gan_betas must be in [0, 1)")


@register_model("gan", GANConfig, "GAN (Goodfellow 2014): MLP or DCGAN, min-max / non-saturating loss, f-GAN",
                data_defaults={"view": "continuous"}, abilities={Samples}, data_kinds=("image",))
class GAN(GenerativeModel):
    def __init__(self, config: GANConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c, shape = config, tuple(data_info.shape)
        self.latent_dim = c.z_dim
        if c.arch == "dcgan":
            if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
                raise ConfigError(f"arch=dcgan needs images whose height and width divide by 4 (28x28, 8x8); "
                                  f"got shape {shape}. Use --arch mlp")
            self.generator = DCGenerator(c.z_dim, shape, c.channels)
            self.discriminator = DCDiscriminator(shape, c.channels)
        else:
            d = math.prod(shape)
            self.generator = mlp([c.z_dim, *c.hidden, d], "leaky_relu")
            self.discriminator = nn.Sequential(nn.Flatten(), mlp([d, *c.hidden[::-1], 1], "leaky_relu"))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """x = G(z), pixels in [0, 1]."""
        return torch.sigmoid(self.generator(z)).view(-1, *self.data_info.shape)     # [B, D] -> [B, *shape]

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's raw output v (for "gan": D(x) = sigmoid(v))."""
        return self.discriminator(x).view(-1)                                       # [B, 1] -> [B]

    def noise(self, n: int, device) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, device=device)

    @torch.no_grad()
    def sample(self, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """z ~ N(0, I) (or the given z), x = G(z)."""
        z = self.noise(n, next(self.parameters()).device) if z is None else z
        return self.generate(z)

    def phases(self):
        c = self.config
        d = {"params": list(self.discriminator.parameters()), "betas": c.gan_betas}
        g = {"params": list(self.generator.parameters()), "betas": c.gan_betas}
        if c.d_lr:
            d["lr"] = c.d_lr
        if c.g_lr:
            g["lr"] = c.g_lr
        return {"discriminator": d, "generator": g}

    def discriminator_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-(E_data[g_f(v)] - E_z[f*(g_f(v))]); for "gan" -(E log D(x) + E log(1 - D(G(z)))) (Eq. 1)."""
        fake = self.generate(self.noise(len(x), x.device)).detach()
        v_real, v_fake = self.critic(x), self.critic(fake)
        return -fdiv.variational_bound(v_real, v_fake, self.config.divergence), (v_real, v_fake)

    def loss(self, batch, phase="discriminator"):
        x = batch[0]
        if phase == "discriminator":
            d_loss, (v_real, v_fake) = self.discriminator_loss(x)
            logs = {"d_loss": d_loss.detach()}
            if self.config.divergence == "gan":
                logs |= {"d_real": torch.sigmoid(v_real.detach()).mean(),
                         "d_fake": torch.sigmoid(v_fake.detach()).mean()}
            return d_loss, logs
        if phase == "generator":
            v_fake = self.critic(self.generate(self.noise(len(x), x.device)))
            g_loss = fdiv.generator_loss(v_fake, self.config.divergence, self.config.gen_loss)
            return g_loss, {"g_loss": g_loss.detach()}
        raise ValueError(f"unknown phase {phase!r}")

    def eval_metrics(self, batch, **options):
        """Per example: the critic's bound terms (for "gan": log D(x) and log(1 - D(G(z))))."""
        x = batch[0]
        div = fdiv.get_divergence(self.config.divergence)
        v_real = self.critic(x)
        v_fake = self.critic(self.generate(self.noise(len(x), x.device)))
        return {"bound": div.activation(v_real) - div.conj_activation(v_fake)}
