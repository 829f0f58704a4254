"""Image quality of rendered views: PSNR and SSIM.

PSNR = 10 log10(R^2 / MSE) for images with values in [0, R] (R = 1 here).

SSIM (Wang, Bovik, Sheikh and Simoncelli 2004, Eq. 13), per channel, with local statistics under an
11x11 Gaussian window (std 1.5) and C1 = (0.01 R)^2, C2 = (0.03 R)^2:

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),

averaged over the pixels whose window lies inside the image and over the channels (the setting the
NeRF papers report; scikit-image's ``structural_similarity`` with ``gaussian_weights=True``, ``sigma=1.5``,
``use_sample_covariance=False``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of images [..., H, W, C] (all but the leading batch dims are averaged)."""
    mse = ((pred - target) ** 2).flatten(-3).mean(dim=-1)                          # [..., H, W, C] -> [...]
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))


def mse_to_psnr(mse: float, data_range: float = 1.0) -> float:
    return 10.0 * math.log10(data_range ** 2 / max(mse, 1e-20))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps, [size]."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of images [H, W, C] or [B, H, W, C] (Wang et al. 2004, Eq. 13) -> [] or [B]."""
    single = pred.dim() == 3
    x = (pred[None] if single else pred).permute(0, 3, 1, 2).double()               # [B, H, W, C] -> [B, C, H, W]
    y = (target[None] if single else target).permute(0, 3, 1, 2).double()          # [B, H, W, C] -> [B, C, H, W]
    B, C, H, W = x.shape
    if H < size or W < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels, got {H}x{W}")
    g = gaussian_window(size, sigma).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(C, 1, size, size)                     # [C, 1, k, k]

    def blur(z):                                                                    # valid region only
        return F.conv2d(z, kernel, groups=C)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    out = s.flatten(1).mean(dim=1).to(pred.dtype)                                   # [B, C, h, w] -> [B]
    return out[0] if single else out
