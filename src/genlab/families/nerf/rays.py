"""Rays for neural radiance fields: turntable poses and ray-box intersection. The camera geometry
itself (intrinsics K, look-at poses, one ray per pixel and its inverse projection, in the OpenGL
convention: the camera looks down its local -z axis) lives in :mod:`genlab.maths.cameras`.
"""
from __future__ import annotations

import math

import torch

from genlab.maths.cameras import look_at


def orbit_poses(n: int, radius: float, elevation_deg: float = 30.0, target=(0.0, 0.0, 0.0),
                up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """``n`` poses on a circle of the given radius and elevation around ``target`` (a turntable), [n, 4, 4]."""
    el = math.radians(elevation_deg)
    poses = []
    for k in range(n):
        az = 2 * math.pi * k / n
        eye = (radius * math.cos(el) * math.cos(az) + target[0], radius * math.cos(el) * math.sin(az) + target[1],
               radius * math.sin(el) + target[2])
        poses.append(look_at(eye, target, up))
    return torch.stack(poses)


def ray_aabb(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (t0, t1) of rays [..., 3] through the box [lo, hi] (the slab method).

    A ray that misses the box gets t0 >= t1.
    """
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    ta, tb = (lo - o) * inv, (hi - o) * inv                                   # [..., 3] each
    t0 = torch.minimum(ta, tb).amax(dim=-1)
    t1 = torch.maximum(ta, tb).amin(dim=-1)
    return t0, t1
