"""Object-pixel PSNR and the no-learning baselines of NeRF's held-out views, against hand-computed values."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from genlab.families.nerf import data as scenes
from genlab.families.nerf import metrics as nm

pytestmark = pytest.mark.unit


def _scene(images, poses=None, alpha=None, depth=None, background=(1.0, 1.0, 1.0), names=None):
    n, H, W = images.shape[:3]
    poses = torch.eye(4).repeat(n, 1, 1) if poses is None else poses
    K = torch.tensor([[2.0, 0, W / 2], [0, 2.0, H / 2], [0, 0, 1]], dtype=torch.float64)
    return scenes.Scene(images, poses, K, 2.0, 6.0, background, names or [str(i) for i in range(n)], depth, alpha)


def test_masked_psnr_against_hand_computed_mse():
    target = torch.zeros(3, 4, 4, 3)
    pred = torch.full((3, 4, 4, 3), 0.5)             # unmasked pixels are off by 0.5: they must not count
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True                           # view 0: 4 pixels off by 0.1 in every channel: MSE 0.01
    pred[0, :2, :2] = 0.1
    mask[1, 0, :2] = True                            # view 1: 2 pixels, one off by 0.2 in one channel:
    pred[1, 0, :2] = 0.0                             # MSE = 0.04 / (2 pixels * 3 channels)
    pred[1, 0, 0, 1] = 0.2
    got = nm.masked_psnr(pred, target, mask)         # view 2: no object pixel
    assert got[0].item() == pytest.approx(20.0, abs=1e-4)
    assert got[1].item() == pytest.approx(10 * math.log10(6 / 0.04), abs=1e-4)
    assert math.isnan(got[2].item())
    scores = nm.image_scores(pred, target, mask)     # full frame: MSE 0.25 except where fixed above
    full = [(12 * 0.25 + 4 * 0.01) / 16, (14 * 0.25 + 0.04 / 3) / 16, 0.25]
    assert scores["psnr"] == pytest.approx(sum(10 * math.log10(1 / m) for m in full) / 3, abs=1e-4)
    assert scores["psnr_object"] == pytest.approx((20.0 + 10 * math.log10(150)) / 2, abs=1e-4)


def test_object_mask_uses_alpha_then_depth_then_colour():
    images = torch.ones(1, 2, 2, 3)
    images[0, 0, 0] = torch.tensor([1.0, 1.0, 0.5])     # one pixel that differs from the white background
    alpha = torch.tensor([[[0.0, 0.3], [0.0, 0.0]]])
    depth = torch.tensor([[[math.inf, math.inf], [3.0, math.inf]]])
    mask, how = nm.object_mask(_scene(images, alpha=alpha, depth=depth))
    assert how == nm.MASK_ALPHA and mask.tolist() == [[[False, True], [False, False]]]
    mask, how = nm.object_mask(_scene(images, depth=depth))
    assert how == nm.MASK_DEPTH and mask.tolist() == [[[False, False], [True, False]]]
    mask, how = nm.object_mask(_scene(images))
    assert how == nm.MASK_COLOUR and mask.tolist() == [[[True, False], [False, False]]]
    images[0, 1, 1] = 1.0 - 0.4 / 255                   # within half an 8-bit level: still background
    assert nm.object_mask(_scene(images))[0].sum() == 1


def test_baselines_blank_and_nearest_view():
    """Object pixels 0.6 in the test view; the nearest training camera's view shows them at 0.5, the far one
    at 0.0: the copy's object MSE is 0.01 (20 dB), the blank white image's 0.16; full frame divides by 4."""
    def view(value):
        img = torch.ones(4, 4, 3)
        img[:2, :2] = value                                 # the object: a quarter of the frame
        return img
    poses = torch.eye(4).repeat(2, 1, 1)
    poses[0, :3, 3] = torch.tensor([4.0, 0.0, 0.0])
    poses[1, :3, 3] = torch.tensor([0.0, 4.0, 0.0])
    alpha = torch.zeros(2, 4, 4)
    alpha[:, :2, :2] = 1.0
    train = _scene(torch.stack([view(0.0), view(0.5)]), poses, alpha, names=["far", "near"])
    test_pose = torch.eye(4)[None].clone()
    test_pose[0, :3, 3] = torch.tensor([0.3, 3.9, 0.2])
    test = _scene(view(0.6)[None], test_pose, alpha[:1])
    b = nm.baselines(train, test)
    assert b["nearest_views"] == ["near"] and b["object_pixels"] == nm.MASK_ALPHA and b["object_fraction"] == 0.25
    assert b["nearest_training_view"]["psnr_object"] == pytest.approx(20.0, abs=1e-4)
    assert b["nearest_training_view"]["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)
    assert b["blank"]["psnr_object"] == pytest.approx(10 * math.log10(1 / 0.16), abs=1e-4)
    assert b["blank"]["psnr"] == pytest.approx(10 * math.log10(4 / 0.16), abs=1e-4)


class _ConstantField(torch.nn.Module):
    """A stand-in radiance field that renders every ray grey."""

    def __init__(self):
        super().__init__()
        self.register_buffer("background", torch.ones(3))

    def render_chunks(self, o, d):
        n = len(o)
        return {"rgb": torch.full((n, 3), 0.5), "depth": torch.zeros(n), "opacity": torch.ones(n)}


def test_nerf_views_reports_object_psnr_beside_full_frame():
    images = torch.ones(2, 12, 12, 3)                        # SSIM's window needs 11 x 11
    images[:, :6] = 0.6                                     # the object: the top half, grey 0.6
    alpha = torch.zeros(2, 12, 12)
    alpha[:, :6] = 1.0
    data = scenes.ray_data(_scene(images, alpha=alpha), "test", 1.5)
    out = nm.nerf_views(SimpleNamespace(model=_ConstantField()), data, {})
    assert out["object_pixels"] == nm.MASK_ALPHA and out["object_fraction"] == 0.5
    assert out["psnr_object"] == pytest.approx(20.0, abs=1e-4)                  # MSE 0.01 on the object
    assert out["psnr"] == pytest.approx(10 * math.log10(1 / ((0.01 + 0.25) / 2)), abs=1e-4)
    assert out["psnr_object_per_view"] == [20.0, 20.0]
