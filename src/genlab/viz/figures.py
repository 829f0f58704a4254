"""The figure toolkit: image grids written with Pillow, plots with matplotlib (Agg, no screen)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def grid_array(images: torch.Tensor, nrow: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile images [N, C, H, W] with values in [0, 1] into one uint8 array (H', W', C)."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
    return (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Write a PNG grid of images [N, C, H, W] in [0, 1]; small images are upscaled (nearest)."""
    arr = grid_array(images, nrow)
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    h = images.shape[-2]
    scale = scale or max(1, 28 // h) * (2 if h <= 28 else 1)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_rows(rows: Sequence[torch.Tensor], path: str | Path, scale: int | None = None) -> Path:
    """Stack equal-length rows of images into one grid (e.g. inputs above reconstructions)."""
    ncol = len(rows[0])
    return save_image_grid(torch.cat(list(rows)), path, nrow=ncol, scale=scale)


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str = "",
              xlabel: str = "", ylabel: str = "", hlines: dict[str, float] | None = None,
              logx: bool = False, logy: bool = False) -> Path:
    """One figure of named (x, y) series, optional labelled horizontal reference lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", color=f"C{len(series) + i}", label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def scatter2d(points: np.ndarray, path: str | Path, labels: np.ndarray | None = None, title: str = "",
              background: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """2-D scatter coloured by label, optionally over a density image (X, Y, Z)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    if background is not None:
        ax.contourf(*background, levels=30, cmap="Greys")
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=4, cmap="tab10" if labels is not None else None)
    if labels is not None:
        fig.colorbar(sc, ax=ax, ticks=sorted(set(np.asarray(labels).tolist())))
    ax.set(title=title)
    ax.set_aspect("equal", "datalim")
    return _save(fig, path)


def scatter3d(clouds: dict[str, np.ndarray], path: str | Path, title: str = "",
              paths: dict[str, np.ndarray] | None = None, equal_aspect: bool = False) -> Path:
    """3-D scatter of named point clouds, with optional named trajectories drawn as lines.
    ``equal_aspect``: one unit is as long on every axis (shapes are not stretched)."""
    plt = _plt()
    fig = plt.figure(figsize=(6, 5), dpi=110)
    ax = fig.add_subplot(projection="3d")
    for name, pts in clouds.items():
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=2, alpha=0.3, label=name)
    for name, pts in (paths or {}).items():
        ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-o", ms=3, lw=2, label=name)
    if equal_aspect:
        allpts = np.concatenate([np.asarray(p).reshape(-1, 3) for p in [*clouds.values(), *(paths or {}).values()]])
        ax.set_box_aspect(np.maximum(np.ptp(allpts, 0), 1e-6))
    ax.set(title=title)
    ax.legend()
    return _save(fig, path)


def heatmap(values: np.ndarray, extent: Sequence[float], path: str | Path, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.imshow(values, origin="lower", extent=extent, cmap="viridis", aspect="auto")
    ax.set(title=title)
    return _save(fig, path)
