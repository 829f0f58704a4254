"""Shared pinhole camera geometry (genlab.maths.cameras): focal length, K, look-at poses (including a
camera looking straight along "up") and pixel rays, against hand-computed cases."""
import math

import pytest
import torch

from genlab.maths import cameras

pytestmark = pytest.mark.unit


def test_focal_from_fov_and_intrinsics_by_hand():
    assert cameras.focal_from_fov(math.pi / 2, 100) == pytest.approx(50.0)      # tan 45 deg = 1
    assert cameras.focal_from_fov(2 * math.atan(0.5), 64) == pytest.approx(64.0)
    K = cameras.intrinsics(40.0, 24, 18, focal_y=35.0, cx=11.0)
    assert torch.equal(K, torch.tensor([[40.0, 0, 11.0], [0, 35.0, 9.0], [0, 0, 1]], dtype=torch.float64))


@pytest.mark.parametrize("eye,target", [((2.0, -3.0, 1.5), (0.1, 0.0, 0.2)), ((0.0, 0.0, 4.0), (0.0, 0.0, 0.0)),
                                        ((0.0, 0.0, -2.0), (0.0, 0.0, 1.0)), ((1.0, 5.0, 0.0), (1.0, -1.0, 0.0))])
def test_look_at_is_a_rotation_whose_minus_z_axis_points_at_the_target(eye, target):
    pose = cameras.look_at(eye, target)
    R = pose[:3, :3]
    assert torch.allclose(R.T @ R, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.det(R).item() == pytest.approx(1.0)                            # right-handed, no reflection
    view = torch.tensor(target, dtype=torch.float64) - torch.tensor(eye, dtype=torch.float64)
    assert torch.allclose(-R[:, 2], view / view.norm())
    assert torch.equal(pose[:3, 3], torch.tensor(eye, dtype=torch.float64))
    assert torch.equal(pose[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64))


def test_look_at_by_hand():
    # at (4, 0, 0) facing the origin with z up: -z = -x, so z = +x; right = up x z = +y; true up = z x right = +z
    pose = cameras.look_at((4.0, 0.0, 0.0))
    want = torch.tensor([[0.0, 0, 1, 4], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(pose, want, atol=1e-15)


def test_look_at_straight_along_up_is_finite():
    for up in [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]:
        pose = cameras.look_at(torch.tensor(up) * 3, (0.0, 0.0, 0.0), up)
        assert torch.isfinite(pose).all()
        assert torch.allclose(pose[:3, :3].T @ pose[:3, :3], torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_the_centre_ray_runs_along_minus_z_and_every_ray_projects_back_to_its_pixel():
    pose = cameras.look_at((1.0, -3.0, 2.0), target=(0.1, 0.2, -0.3))
    K = cameras.intrinsics(30.0, 20, 16)
    o, d = cameras.camera_rays(K, pose, 16, 20)
    assert o.shape == d.shape == (16, 20, 3) and torch.allclose(d.norm(dim=-1), torch.ones(16, 20, dtype=torch.float64))
    centre = (d[7, 9] + d[7, 10] + d[8, 9] + d[8, 10]) / 4                    # the four rays around (cx, cy)
    assert torch.allclose(centre / centre.norm(), -pose[:3, 2], atol=1e-12)
    uv = cameras.project(K, pose, (o + 2.5 * d).reshape(-1, 3)).reshape(16, 20, 2)   # [H W, 2] -> [H, W, 2]
    v, u = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    assert torch.allclose(uv, torch.stack([u + 0.5, v + 0.5], -1).double(), atol=1e-9)
