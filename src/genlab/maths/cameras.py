"""Pinhole camera geometry, shared by every family that renders or loads posed views (float64 torch).

Convention (NeRF-synthetic / Blender / OpenGL): a camera looks down its local -z axis, +x points
right and +y up in the image; ``c2w`` is the 4x4 (or 3x4) camera-to-world matrix whose first three
columns are the camera axes in world coordinates and whose last column is the camera centre o.
Pixel (row v, column u) has its centre at (u + 1/2, v + 1/2), so with intrinsics
K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] its ray is

    d_cam = ((u + 1/2 - cx) / fx, -(v + 1/2 - cy) / fy, -1),   d = R d_cam / |R d_cam|,   r(t) = o + t d

(Mildenhall et al. 2020, Sec. 4; Hartley & Zisserman 2004, Sec. 6.1 for the pinhole K). Directions are
unit vectors, so t is the Euclidean distance from the camera centre.
"""
from __future__ import annotations

import math

import torch


def focal_from_fov(fov_x: float, width: int) -> float:
    """f = (W / 2) / tan(fov_x / 2): the focal length in pixels of a horizontal field of view (radians)."""
    return 0.5 * width / math.tan(0.5 * fov_x)


def intrinsics(focal: float, width: int, height: int, focal_y: float | None = None,
               cx: float | None = None, cy: float | None = None) -> torch.Tensor:
    """The 3x3 pinhole matrix K (float64); fy defaults to fx, the principal point to the image centre."""
    fy = focal if focal_y is None else focal_y
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    return torch.tensor([[focal, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """The 4x4 camera-to-world pose (float64) of a camera at ``eye`` facing ``target`` along its -z axis,
    its +y axis as close to ``up`` as possible. A camera looking straight along ``up`` (the cross product
    vanishes) takes world +y, or world +x if it also looks along +y, to fix its right axis."""
    eye, target, up = (torch.as_tensor(a, dtype=torch.float64) for a in (eye, target, up))
    back = eye - target
    back = back / back.norm()                             # +z axis points away from the target
    right = torch.linalg.cross(up, back)
    for fallback in ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)):  # looking straight along `up`
        if right.norm() >= 1e-9:
            break
        right = torch.linalg.cross(torch.tensor(fallback, dtype=torch.float64), back)
    right = right / right.norm()
    true_up = torch.linalg.cross(back, right)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, back, eye
    return pose


def camera_rays(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions of every pixel's ray through its centre.

    K: [3, 3]; c2w: [..., 3 or 4, 4]. Returns (o, d), each [..., H, W, 3], in c2w's dtype.
    """
    dtype, device = c2w.dtype, c2w.device
    K = torch.as_tensor(K).to(dtype=dtype, device=device)
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
