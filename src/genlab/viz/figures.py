"""The figure toolkit, and the one place that labels figures: image grids with a title and labels
for their rows and columns (``labelled_grid``), line plots with integer epoch ticks, 2-D and 3-D
scatter plots with equal axes, and a note line under any figure (e.g. what a ``--quick`` run cannot
show). Plots use matplotlib (Agg, no screen); plain grids and GIFs for ``samples/`` are written with Pillow.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def pyplot():
    """matplotlib's pyplot, imported on first use on the Agg backend (no screen). A session that imported
    pyplot itself keeps its backend (a notebook's inline figures): every figure drawn here is written
    and closed, so none is shown."""
    import sys

    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def grid_array(images: torch.Tensor, nrow: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile images [N, C, H, W] with values in [0, 1] into one uint8 array (H', W', C); ``nrow`` is
    the number of images per row."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        canvas[:, top: top + h, left: left + w] = images[i]
    return (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Write a bare PNG grid of images [N, C, H, W] in [0, 1] (no labels: the files of ``genlab
    sample``); small images are upscaled (nearest). Figures use :func:`labelled_grid`."""
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


def write_gif(frames: torch.Tensor, path: str | Path, fps: int = 20) -> Path:
    """Write frames [n, H, W, 3] with values in [0, 1] as a looping GIF (Pillow), ``fps`` frames a second."""
    images = [Image.fromarray((f.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
              for f in frames.detach().float().cpu()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path


def labelled_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, title: str = "",
                  row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                  xlabel: str = "", ylabel: str = "", note: str = "", cell_px: int = 48) -> Path:
    """An image grid [N, C, H, W] (values in [0, 1], ``nrow`` images per row) as a figure with a
    title, a label left of each row (e.g. "input", "reconstruction"), a label under each column
    (e.g. "α = 0.3"; empty strings skip a column), axis labels and a note line at the bottom.
    Each image is drawn ``cell_px`` pixels wide, nearest-neighbour (pixels stay pixels)."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    arr = grid_array(images, nrow)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != nrow:
        raise ValueError(f"{len(col_labels)} column labels for {nrow} columns")
    plt = pyplot()
    dpi = 100
    img_w, img_h = nrow * cell_px / dpi, rows * cell_px * h / w / dpi
    # room for the longest row label at fontsize 9 (about 0.08 inch a character)
    left = max(1.3, 0.3 + 0.08 * max(map(len, row_labels))) if row_labels else (0.45 if ylabel else 0.15)
    bottom = 0.25 + (0.3 if col_labels is not None else 0) + (0.25 if xlabel else 0)
    top = 0.45 if title else 0.15
    note_lines = textwrap.wrap(note, max(30, int((img_w + left + 0.3) * 12))) if note else []
    bottom += 0.2 * len(note_lines)
    fig_w, fig_h = max(img_w + left + 0.3, 3.0), img_h + bottom + top
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(arr[..., 0] if c == 1 else arr, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
              interpolation="nearest", aspect="auto")
    for side in ax.spines.values():
        side.set_visible(False)
    centre = lambda k, size: 1 + k * (size + 1) + (size - 1) / 2   # noqa: E731 (pixel centre of cell k)
    if col_labels is not None:
        ax.set_xticks([centre(k, w) for k in range(nrow)], list(col_labels), fontsize=8)
    else:
        ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([centre(k, h) for k in range(rows)], list(row_labels), fontsize=9)
    else:
        ax.set_yticks([])
    ax.tick_params(length=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        fig.text(0.5, 1 - 0.1 / fig_h, title, ha="center", va="top", fontsize=10, wrap=True)
    if note_lines:
        fig.text(0.02, 0.05 / fig_h, "\n".join(note_lines), ha="left", va="bottom", fontsize=7, style="italic",
                 color="0.3")
    return _write(fig, path)


def save_rows(rows: Sequence[torch.Tensor], path: str | Path, row_labels: Sequence[str] | None = None,
              title: str = "", col_labels: Sequence[str] | None = None, note: str = "") -> Path:
    """Equal-length rows of images, one labelled row each (e.g. inputs above reconstructions)."""
    ncol = len(rows[0])
    return labelled_grid(torch.cat(list(rows)), path, nrow=ncol, title=title, note=note,
                         row_labels=row_labels, col_labels=col_labels)


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str = "",
              xlabel: str = "", ylabel: str = "", hlines: dict[str, float] | None = None,
              logx: bool = False, logy: bool = False, integer_x: bool | None = None, note: str = "") -> Path:
    """One figure of named (x, y) series, optional labelled horizontal reference lines.
    ``integer_x``: ticks only at whole numbers (default: when the x label is an epoch or step count)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", color=f"C{len(series) + i}", label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if integer_x is None:
        integer_x = xlabel.split(" ")[0] in ("epoch", "epochs", "step", "steps") and not logx
    if integer_x:
        integer_ticks(ax.xaxis)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if series or hlines:
        ax.legend(fontsize=8)
    return save_figure(fig, path, note)


def line_panels(panels: dict[str, dict], path: str | Path, title: str = "", xlabel: str = "",
                integer_x: bool | None = None, note: str = "") -> Path:
    """Side-by-side line plots sharing one x axis: ``{ylabel: {"series": {name: (x, y)},
    "hlines": {name: y}}}`` (e.g. a loss panel and a perplexity panel of one run)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), dpi=110, squeeze=False)
    if integer_x is None:
        integer_x = xlabel.split(" ")[0] in ("epoch", "epochs", "step", "steps")
    for ax, (ylabel, panel) in zip(axes[0], panels.items()):
        series, hlines = panel.get("series", {}), panel.get("hlines", {})
        for name, (x, y) in series.items():
            ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=name)
        for i, (name, y) in enumerate(hlines.items()):
            ax.axhline(y, ls="--", color=f"C{len(series) + i}", label=name)
        if integer_x:
            integer_ticks(ax.xaxis)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, note)


def integer_ticks(axis) -> None:
    """Ticks at whole numbers only (an axis of epochs never shows 0.5)."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def _write(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def save_figure(fig, path, note: str = "") -> Path:
    """Lay out and write a figure; ``note`` goes in small italics under it."""
    fig.tight_layout()
    if note:
        add_note(fig, note)
    return _write(fig, path)


def add_note(fig, note: str) -> None:
    """A wrapped note line under the figure's axes (the figure grows to make room)."""
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(note, max(40, int(width * 13)))
    extra = 0.16 * len(lines) + 0.1
    fig.set_size_inches(width, height + extra, forward=True)
    for ax in fig.axes:     # keep every axes where it was, in inches from the top
        box = ax.get_position()
        ax.set_position((box.x0, (box.y0 * height + extra) / (height + extra), box.width,
                         box.height * height / (height + extra)))
    fig.text(0.02, 0.04 / (height + extra), "\n".join(lines), ha="left", va="bottom", fontsize=7,
             style="italic", color="0.3")


def scatter2d(points: np.ndarray, path: str | Path, labels: np.ndarray | None = None, title: str = "",
              background: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, xlabel: str = "",
              ylabel: str = "", note: str = "") -> Path:
    """2-D scatter coloured by label, optionally over a density image (X, Y, Z); equal axes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    if background is not None:
        ax.contourf(*background, levels=30, cmap="Greys")
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=4, cmap="tab10" if labels is not None else None)
    if labels is not None:
        fig.colorbar(sc, ax=ax, ticks=sorted(set(np.asarray(labels).tolist())), label="label")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_aspect("equal", "datalim")
    return save_figure(fig, path, note)


def equal_axes_3d(ax, points: np.ndarray) -> None:
    """One unit as long on every axis: limits centred on the points' box, box aspect = its extents
    (a torus keeps its hole instead of being squashed into a disc)."""
    lo, hi = points.min(0), points.max(0)
    extent = np.maximum(hi - lo, 1e-6) * 1.05
    centre = (lo + hi) / 2
    ax.set_xlim(centre[0] - extent[0] / 2, centre[0] + extent[0] / 2)
    ax.set_ylim(centre[1] - extent[1] / 2, centre[1] + extent[1] / 2)
    ax.set_zlim(centre[2] - extent[2] / 2, centre[2] + extent[2] / 2)
    ax.set_box_aspect(extent)


def scatter3d(clouds: dict[str, np.ndarray], path: str | Path, title: str = "",
              paths: dict[str, np.ndarray] | None = None, equal_aspect: bool = True, note: str = "",
              elev: float = 35.0) -> Path:
    """3-D scatter of named point clouds, with optional named trajectories drawn as lines.
    ``equal_aspect`` (default): one unit is as long on every axis (shapes are not stretched)."""
    plt = pyplot()
    fig = plt.figure(figsize=(7, 5.5), dpi=110)
    ax = fig.add_subplot(projection="3d")
    for name, pts in clouds.items():
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=3, alpha=0.35, label=name, depthshade=False)
    for name, pts in (paths or {}).items():
        ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-o", ms=3, lw=2, label=name)
    if equal_aspect:
        allpts = np.concatenate([np.asarray(p).reshape(-1, 3) for p in [*clouds.values(), *(paths or {}).values()]])
        equal_axes_3d(ax, allpts)
    ax.view_init(elev=elev, azim=-60)
    ax.set(title=title, xlabel="x", ylabel="y", zlabel="z")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path, note)


def heatmap(values: np.ndarray, extent: Sequence[float], path: str | Path, title: str = "", note: str = "") -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.imshow(values, origin="lower", extent=extent, cmap="viridis", aspect="auto")
    ax.set(title=title)
    return save_figure(fig, path, note)
