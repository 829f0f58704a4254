"""Toy point clouds (group "toy"), generated offline, deterministic per (seed, split).

Sets: moons, circles, 8gaussians, checkerboard, pinwheel, 2spirals (the FFJORD toy sets, on a
scale of a few units) and Gaussian mixtures gmm1d / gmm2d. ``noise`` is each set's noise level
(default per set, see ``DEFAULT_NOISE``).

Where the true density is known (gmm1d, gmm2d, 8gaussians, checkerboard) ``log_density(name, x,
noise)`` returns log p(x); the eval layer then reports ``data_nll_nats``, the cross-entropy
-1/N sum_i log p(x_i) of the true density on the evaluated split: the best ``nll_nats`` a model
can reach in expectation (it estimates the entropy H(p)).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from genlab.config import field, require
from genlab.data.registry import SPLITS, DataInfo, TensorData, register_dataset
from genlab.errors import ConfigError

DEFAULT_NOISE = {"moons": 0.1, "circles": 0.08, "8gaussians": 0.35, "checkerboard": 0.0,
                 "pinwheel": 0.3, "2spirals": 0.1, "gmm1d": 0.5, "gmm2d": 0.5}
NOISE_MEANING = {"moons": "Gaussian std", "circles": "Gaussian std", "8gaussians": "component std",
                 "checkerboard": "Gaussian blur std (0: exactly uniform squares)",
                 "pinwheel": "radial std", "2spirals": "Gaussian std", "gmm1d": "std scale of the components",
                 "gmm2d": "std scale of the components"}


@dataclass
class ToyDataConfig:
    n: int = field(2000, "examples per split (train, val and test each)")
    noise: float | None = field(None, "noise level (default per set: " +
                                ", ".join(f"{k} {v}" for k, v in DEFAULT_NOISE.items()) + ")")
    seed: int = field(0, "generator seed; each split uses its own stream derived from it")

    def validate(self):
        require(self.n > 0, f"n must be positive, got {self.n}")
        require(self.noise is None or self.noise >= 0, f"noise must be >= 0, got {self.noise}")


def noise_of(name: str, cfg: ToyDataConfig) -> float:
    return DEFAULT_NOISE[name] if cfg.noise is None else cfg.noise


# ----------------------------------------------------------------- mixtures (known densities)
R8 = 2.0 * math.sqrt(2.0)                      # radius of the 8 Gaussians' centres
GMM1D = {"means": [[-2.0], [0.5], [3.0]], "weights": [0.3, 0.5, 0.2], "std_scale": [1.0, 0.6, 1.4]}
GMM2D = {"means": [[-2.0, -2.0], [2.0, -1.0], [0.0, 2.5], [-2.5, 1.5]], "weights": [0.25, 0.35, 0.25, 0.15],
         "std_scale": [1.0, 0.8, 1.2, 0.6]}


def eight_gaussians_params(noise: float) -> dict:
    angles = [2 * math.pi * k / 8 for k in range(8)]
    return {"means": [[R8 * math.cos(a), R8 * math.sin(a)] for a in angles], "weights": [1 / 8] * 8,
            "std_scale": [1.0] * 8}


def mixture_params(name: str, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means [K, D], weights [K], stds [K]) of an isotropic Gaussian mixture."""
    p = {"gmm1d": GMM1D, "gmm2d": GMM2D}.get(name) or eight_gaussians_params(noise)
    return np.array(p["means"]), np.array(p["weights"]), noise * np.array(p["std_scale"])


def mixture_log_density(x: torch.Tensor, means, weights, stds) -> torch.Tensor:
    """log sum_k w_k N(x; mu_k, s_k^2 I) = logsumexp_k [log w_k - |x-mu_k|^2/(2 s_k^2) - D/2 log(2 pi s_k^2)]."""
    mu, w, s = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (means, weights, stds))
    d = x.shape[-1]
    sq = ((x.unsqueeze(-2) - mu) ** 2).sum(-1)                       # [N, K]
    comp = torch.log(w) - sq / (2 * s ** 2) - 0.5 * d * torch.log(2 * math.pi * s ** 2)
    return torch.logsumexp(comp, dim=-1)


def sample_mixture(n: int, means, weights, stds, rng: np.random.Generator) -> np.ndarray:
    k = rng.choice(len(weights), size=n, p=weights)
    return means[k] + stds[k, None] * rng.standard_normal((n, means.shape[1]))


# ----------------------------------------------------------------- checkerboard
def checkerboard_cells() -> list[tuple[float, float]]:
    """Lower-left corners of the 8 squares (side 2) in [-4, 4)^2 whose cell indices sum to an even number."""
    return [(2.0 * i, 2.0 * j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]


def checkerboard_log_density(x: torch.Tensor, noise: float) -> torch.Tensor:
    """Uniform density 1/32 on the 8 squares, convolved with N(0, noise^2 I) when noise > 0:
    p(x) = 1/8 sum_cells prod_d (1/2) [Phi((x_d - a_d)/s) - Phi((x_d - a_d - 2)/s)].

    Without noise the squares are taken closed, p(x) = 1/32 on their union (edges and corners included,
    counted once): edges have measure zero, so this is the same density, and a point that float32 rounds
    onto an edge keeps a finite log-density (with half-open squares it got log 0 = -inf)."""
    if noise <= 0:
        inside = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for a, b in checkerboard_cells():
            lo = torch.tensor([a, b], dtype=x.dtype, device=x.device)
            inside |= ((x >= lo) & (x <= lo + 2)).all(-1)
        return torch.where(inside, -math.log(32.0), -math.inf).to(x.dtype)
    total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    normal = torch.distributions.Normal(0.0, 1.0)
    for a, b in checkerboard_cells():
        lo = torch.tensor([a, b], dtype=x.dtype, device=x.device)
        box = normal.cdf((x - lo) / noise) - normal.cdf((x - lo - 2) / noise)
        total = total + box.prod(-1) / 4.0
    return torch.log(total / 8.0)


def sample_checkerboard(n, noise, rng):
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], 1) + noise * rng.standard_normal((n, 2))


# ----------------------------------------------------------------- shapes without closed-form density
def sample_moons(n, noise, rng):
    from sklearn.datasets import make_moons
    x, _ = make_moons(n, noise=noise, random_state=int(rng.integers(2 ** 31)))
    return (x - np.array([0.5, 0.25])) * 2.0


def sample_circles(n, noise, rng):
    from sklearn.datasets import make_circles
    x, _ = make_circles(n, noise=noise, factor=0.5, random_state=int(rng.integers(2 ** 31)))
    return x * 3.0


def sample_pinwheel(n, noise, rng, arms: int = 5, tangential_std: float = 0.1, rate: float = 0.25):
    labels = np.arange(n) % arms
    feats = rng.standard_normal((n, 2)) * np.array([noise, tangential_std])
    feats[:, 0] += 1.0
    angles = 2 * np.pi * labels / arms + rate * np.exp(feats[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    rotated = np.stack([feats[:, 0] * c - feats[:, 1] * s, feats[:, 0] * s + feats[:, 1] * c], 1)
    return 2 * rotated[rng.permutation(n)]


def sample_2spirals(n, noise, rng):
    m = (n + 1) // 2
    t = np.sqrt(rng.random(m)) * 3 * np.pi
    arm = np.stack([-np.cos(t) * t + rng.random(m) * 0.5, np.sin(t) * t + rng.random(m) * 0.5], 1)
    x = np.concatenate([arm, -arm])[:n] / 3
    return x[rng.permutation(n)] + noise * rng.standard_normal((n, 2))


def _mixture_sampler(name):
    def sample(n, noise, rng):
        return sample_mixture(n, *mixture_params(name, noise), rng)
    return sample


SAMPLERS = {"moons": sample_moons, "circles": sample_circles, "8gaussians": _mixture_sampler("8gaussians"),
            "checkerboard": sample_checkerboard, "pinwheel": sample_pinwheel, "2spirals": sample_2spirals,
            "gmm1d": _mixture_sampler("gmm1d"), "gmm2d": _mixture_sampler("gmm2d")}
KNOWN_DENSITY = ("8gaussians", "checkerboard", "gmm1d", "gmm2d")
DESCRIPTIONS = {"moons": "two interleaved half circles", "circles": "two concentric circles",
                "8gaussians": "8 Gaussians on a circle of radius 2.83 (known density)",
                "checkerboard": "uniform on 8 squares of a 4x4 checkerboard (known density)",
                "pinwheel": "5 curved arms", "2spirals": "two interleaved spirals",
                "gmm1d": "1-D mixture of 3 Gaussians (known density)",
                "gmm2d": "2-D mixture of 4 Gaussians (known density)"}


def log_density(name: str, x: torch.Tensor, noise: float | None = None) -> torch.Tensor:
    """True log p(x) of a toy set with a known density (see ``KNOWN_DENSITY``)."""
    if name not in KNOWN_DENSITY:
        raise ConfigError(f"toy set {name!r} has no closed-form density; known: {', '.join(KNOWN_DENSITY)}")
    noise = DEFAULT_NOISE[name] if noise is None else noise
    if name == "checkerboard":
        return checkerboard_log_density(x, noise)
    if noise <= 0:
        raise ConfigError(f"{name}: the density needs noise > 0")
    return mixture_log_density(x, *mixture_params(name, noise))


def generate(name: str, n: int, noise: float, seed: int, split: str) -> torch.Tensor:
    rng = np.random.default_rng([seed, SPLITS.index(split), zlib.crc32(name.encode())])
    return torch.from_numpy(SAMPLERS[name](n, noise, rng).astype(np.float32))


def _loader(name: str):
    def load(cfg: ToyDataConfig, split: str) -> TensorData:
        noise = noise_of(name, cfg)
        if name in ("8gaussians", "gmm1d", "gmm2d") and noise <= 0:
            raise ConfigError(f"{name}: noise must be > 0 (it is the components' std scale)")
        x = generate(name, cfg.n, noise, cfg.seed, split)
        info = DataInfo(kind="points", shape=(x.shape[1],),
                        extras={"dataset": name, "noise": noise, "known_density": name in KNOWN_DENSITY})
        return TensorData((x,), info)
    return load


def _details(name: str):
    def details(cfg: ToyDataConfig) -> dict:
        return {"kind": f"points in {2 if name != 'gmm1d' else 1}-D, generated offline",
                "noise": f"{noise_of(name, cfg)} ({NOISE_MEANING[name]})",
                "true density": "known (eval reports data_nll_nats)" if name in KNOWN_DENSITY else "not closed-form"}
    return details


for _name in SAMPLERS:
    register_dataset(_name, ToyDataConfig, DESCRIPTIONS[_name], "toy", _details(_name), kind="points")(_loader(_name))
