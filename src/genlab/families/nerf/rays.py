"""Camera rays from pinhole intrinsics and camera-to-world poses (Mildenhall et al. 2020, Fig. 2a).

Convention (NeRF-synthetic / Blender / OpenGL): a camera looks down its local -z axis, +x points
right and +y up in the image; ``c2w`` is the 4x4 (or 3x4) matrix whose first three columns are the
camera axes in world coordinates and whose last column is the camera centre o. Pixel (row v, column u)
has its centre at (u + 1/2, v + 1/2) in image coordinates, so with intrinsics K = [[fx, 0, cx],
[0, fy, cy], [0, 0, 1]] its ray is

    d_cam = ((u + 1/2 - cx) / fx, -(v + 1/2 - cy) / fy, -1),   d = R d_cam / |R d_cam|,   r(t) = o + t d

(Mildenhall et al. 2020, Sec. 4: r(t) = o + t d). Directions are unit vectors, so t
is the Euclidean distance from the camera centre and a depth map holds distances along the ray.
"""
from __future__ import annotations

import math

import torch


def intrinsics(focal: float, width: int, height: int, focal_y: float | None = None,
               cx: float | None = None, cy: float | None = None) -> torch.Tensor:
    """The 3x3 pinhole matrix K; the principal point defaults to the image centre."""
    fy = focal if focal_y is None else focal_y
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    return torch.tensor([[focal, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def focal_from_fov(camera_angle_x: float, width: int) -> float:
    """f = (W / 2) / tan(fov_x / 2): the focal length in pixels of a horizontal field of view."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def camera_rays(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions of every pixel's ray.

    K: [3, 3]; c2w: [..., 3 or 4, 4]. Returns (o, d), each [..., H, W, 3], in c2w's dtype.
    """
    dtype, device = c2w.dtype, c2w.device
    K = K.to(dtype=dtype, device=device)
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")   # [H, W] each
    d_cam = torch.stack([(u + 0.5 - K[0, 2]) / K[0, 0], -(v + 0.5 - K[1, 2]) / K[1, 1],
                         -torch.ones_like(u)], dim=-1)                                       # [H, W, 3]
    R = c2w[..., :3, :3]                                                                     # [..., 3, 3]
    d = torch.einsum("...ij,hwj->...hwi", R, d_cam)                                         # [..., H, W, 3]
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[..., None, None, :3, 3].expand_as(d)                                            # [..., 3] -> [..., H, W, 3]
    return o, d


def project(K: torch.Tensor, c2w: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (u, v) of world points [N, 3] seen by camera c2w (the inverse of camera_rays)."""
    R, o = c2w[:3, :3], c2w[:3, 3]
    p = (points - o) @ R                                  # world -> camera: R^T (x - o), [N, 3]
    z = -p[:, 2]                                          # distance in front of the camera
    u = K[0, 0] * p[:, 0] / z + K[0, 2]
    v = -K[1, 1] * p[:, 1] / z + K[1, 2]
    return torch.stack([u, v], dim=-1)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """The 4x4 camera-to-world pose of a camera at ``eye`` looking at ``target`` (OpenGL axes)."""
    eye, target, up = (torch.as_tensor(a, dtype=torch.float64) for a in (eye, target, up))
    back = eye - target
    back = back / back.norm()                             # +z axis points away from the target
    right = torch.linalg.cross(up, back)
    if right.norm() < 1e-9:                               # looking straight along `up`
        right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), back)
    right = right / right.norm()
    true_up = torch.linalg.cross(back, right)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, back, eye
    return pose


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
