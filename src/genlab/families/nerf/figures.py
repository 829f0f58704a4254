"""Figures of a radiance-field run: held-out renders beside the ground truth (PSNR/SSIM per view), depth
maps and accumulated opacity; the turntable GIF of ``genlab sample``; and the rendering-gradient figure of
``nerf-render-gradient``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.abilities import RendersViews
from genlab.families.nerf.metrics import render_split
from genlab.families.nerf.model import NeRFSampleConfig
from genlab.maths.image_quality import psnr, ssim
from genlab.viz.figures import pyplot, save_figure, write_gif
from genlab.viz.report import register_figures


def views_figure(r: dict, path: Path, title: str = "held-out views") -> Path:
    """Rows: ground truth, render (with PSNR / SSIM), depth, opacity; one column per view."""
    plt = pyplot()
    n = len(r["pred"])
    p, s = psnr(r["pred"], r["target"]), ssim(r["pred"], r["target"])
    fig, axes = plt.subplots(4, n, figsize=(1.9 * n, 7.8), squeeze=False)
    hit = r["opacity"] > 0.5
    dmax = float(r["depth"][hit].max()) if hit.any() else 1.0
    dmin = float(r["depth"][hit].min()) if hit.any() else 0.0
    for i in range(n):
        depth = np.where(hit[i].numpy(), r["depth"][i].numpy(), np.nan)
        panels = [(r["target"][i].numpy(), None, "ground truth"),
                  (r["pred"][i].numpy(), None, f"{p[i]:.2f} dB, SSIM {s[i]:.3f}"),
                  (depth, "viridis", "depth (opacity > 0.5)"),
                  (r["opacity"][i].numpy(), "gray", "opacity")]
        for row, (img, cmap, label) in enumerate(panels):
            ax = axes[row, i]
            kw = {"vmin": dmin, "vmax": dmax} if row == 2 else ({"vmin": 0, "vmax": 1} if row == 3 else {})
            ax.imshow(img, cmap=cmap, **kw)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(label, fontsize=7)
    fig.suptitle(f"{title}: mean PSNR {float(p.mean()):.2f} dB, SSIM {float(s.mean()):.3f}")
    fig.tight_layout()
    return save_figure(fig, path)


@register_figures(needs=(RendersViews,), kinds=("rays",))
def nerf_views(run, out: Path) -> list[Path]:
    """Up to 6 held-out test views of a NeRF run."""
    r = render_split(run.model, run.data("test"), max_views=6)
    return [views_figure(r, Path(out) / "test_views.png")]


def sample_orbit(run, cfg: NeRFSampleConfig, n: int, out: Path | None, seed: int) -> list[str]:
    """``genlab sample RUN --orbit N``: a turntable GIF of N frames around the scene (``-n`` is not used)."""
    model = run.model.eval()
    frames = model.orbit(cfg.orbit, cfg.elevation, cfg.size)
    path = out if out is not None else run.folder.samples / f"orbit_{cfg.orbit}.gif"
    return [str(write_gif(frames, path, cfg.fps))]


def gradient_figure(t: torch.Tensor, sigma: torch.Tensor, analytic: torch.Tensor, autograd: torch.Tensor,
                    path: Path) -> Path:
    """dL/dsigma_i along one ray: the hand-derived formula over autograd's, with the density."""
    plt = pyplot()
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a0.plot(t, sigma, color="k")
    a0.set_ylabel("density sigma_i")
    a1.plot(t, autograd, lw=4, alpha=0.4, label="autograd")
    a1.plot(t, analytic, "--", color="k", label="analytic (by hand)")
    a1.axhline(0, color="gray", lw=0.5)
    a1.set_xlabel("t along the ray")
    a1.set_ylabel("dL / dsigma_i")
    a1.legend()
    fig.tight_layout()
    return save_figure(fig, path)
