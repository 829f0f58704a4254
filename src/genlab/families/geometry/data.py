"""Point clouds on known surfaces: a torus in R^3, sampled uniformly by surface area.

The torus with major radius R (centre of the tube to the z axis) and minor radius r (the tube) is

  x = (R + r cos v) cos u,   y = (R + r cos v) sin u,   z = r sin v,      u, v in [-pi, pi)

Its area element is dA = r (R + r cos v) du dv, so a point uniform by area has u ~ U[-pi, pi) and,
independently, the tube angle v with density

  p(v) = (R + r cos v) / (2 pi R) = (1 + (r/R) cos v) / (2 pi)                       (area density)

which is drawn here by rejection: propose v ~ U[-pi, pi), accept with probability
(R + r cos v) / (R + r). (Uniform-in-angle sampling over-fills the inner side of the tube.)

The distance of a point to the surface is analytic:

  d(x) = | sqrt((sqrt(x^2 + y^2) - R)^2 + z^2) - r |                                 (surface distance)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from genlab.config import field, require
from genlab.data.registry import DataInfo, TensorData, register_dataset
from genlab.errors import DataError

SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


# ----------------------------------------------------------------- the torus, analytically
def torus_point(u, v, R: float, r: float):
    """The embedding (u, v) -> (x, y, z) above; works on numpy arrays and torch tensors alike."""
    lib = torch if isinstance(u, torch.Tensor) else np
    ring = R + r * lib.cos(v)
    return lib.stack([ring * lib.cos(u), ring * lib.sin(u), r * lib.sin(v)], -1)


def tube_angle_density(v, R: float, r: float):
    """The area density of the tube angle, p(v) = (1 + (r/R) cos v) / (2 pi) on [-pi, pi)."""
    lib = torch if isinstance(v, torch.Tensor) else np
    return (1.0 + (r / R) * lib.cos(v)) / (2 * math.pi)


def torus_surface_distance(points, R: float, r: float):
    """Euclidean distance of points [..., 3] to the torus: |sqrt((rho - R)^2 + z^2) - r|, rho = sqrt(x^2+y^2)."""
    lib = torch if isinstance(points, torch.Tensor) else np
    rho = lib.sqrt(points[..., 0] ** 2 + points[..., 1] ** 2)
    return lib.abs(lib.sqrt((rho - R) ** 2 + points[..., 2] ** 2) - r)


def torus_angles(points, R: float):
    """The angles (u, v) of the closest point on the torus to each point [..., 3] (inverse of torus_point)."""
    lib = torch if isinstance(points, torch.Tensor) else np
    u = lib.arctan2(points[..., 1], points[..., 0])
    rho = lib.sqrt(points[..., 0] ** 2 + points[..., 1] ** 2)
    v = lib.arctan2(points[..., 2], rho - R)
    return lib.stack([u, v], -1)


def sample_tube_angles(n: int, R: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """n draws of v from the area density by rejection (acceptance rate R / (R + r))."""
    out = np.empty(0)
    while len(out) < n:
        m = int(1.2 * (n - len(out)) * (R + r) / R) + 16
        v = rng.uniform(-math.pi, math.pi, m)
        keep = rng.uniform(0.0, 1.0, m) < (R + r * np.cos(v)) / (R + r)
        out = np.concatenate([out, v[keep]])
    return out[:n]


def sample_torus(n: int, R: float, r: float, rng: np.random.Generator, noise_std: float = 0.0) -> np.ndarray:
    """n points uniform by area on the torus (plus isotropic Gaussian noise of std ``noise_std``)."""
    u = rng.uniform(-math.pi, math.pi, n)
    v = sample_tube_angles(n, R, r, rng)
    pts = torus_point(u, v, R, r)
    if noise_std > 0:
        pts = pts + noise_std * rng.standard_normal(pts.shape)
    return pts


def surface_distance(points, info: DataInfo):
    """The distance to the surface named in ``info.extras`` (so code can stay generic over surfaces)."""
    extras = info.extras
    if extras.get("surface") != "torus":
        raise DataError(f"no analytic surface for data {extras.get('dataset', info.kind)!r}; "
                        f"surface distances need the torus dataset (--data torus)")
    return torus_surface_distance(points, extras["R"], extras["r"])


# ----------------------------------------------------------------- the dataset
@dataclass
class TorusConfig:
    major_radius: float = field(2.0, "major radius R: from the z axis to the centre of the tube")
    minor_radius: float = field(0.5, "minor radius r: the radius of the tube (r < R)")
    n_train: int = field(5000, "points in the train split")
    n_val: int = field(1000, "points in the validation split")
    n_test: int = field(1000, "points in the test split")
    noise_std: float = field(0.0, "std of isotropic Gaussian noise added to each point")
    data_seed: int = field(0, "seed of the point cloud (each split draws from its own seed)")

    def validate(self):
        require(0 < self.minor_radius < self.major_radius,
                f"need 0 < minor_radius < major_radius (a ring torus), got r={self.minor_radius}, "
                f"R={self.major_radius}")
        require(min(self.n_train, self.n_val, self.n_test) > 0, "n_train, n_val and n_test must be positive")
        require(self.noise_std >= 0, f"noise_std must be >= 0, got {self.noise_std}")


def _details(cfg: TorusConfig) -> dict:
    return {"splits": f"train {cfg.n_train} / val {cfg.n_val} / test {cfg.n_test} (generated, seeded per split)",
            "shape": "3 (x, y, z), no labels",
            "surface": f"torus R={cfg.major_radius}, r={cfg.minor_radius}, uniform by area, "
                       f"noise std {cfg.noise_std}"}


@register_dataset("torus", TorusConfig, "points on a torus, uniform by surface area (offline)",
                  "geometry", _details, kind="points")
def load_torus(cfg: TorusConfig, split: str) -> TensorData:
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    rng = np.random.default_rng([cfg.data_seed, SPLIT_OFFSETS[split]])
    R, r = cfg.major_radius, cfg.minor_radius
    pts = torch.from_numpy(sample_torus(n, R, r, rng, cfg.noise_std).astype(np.float32))
    info = DataInfo(kind="points", shape=(3,), extras={"dataset": "torus", "surface": "torus", "R": R, "r": r,
                                                        "noise_std": cfg.noise_std})
    return TensorData((pts,), info)
