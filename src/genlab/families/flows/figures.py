"""Figures of likelihood models on points: density heat maps (model vs data), samples, and the
transformation of data points through a flow's layers or along a CNF's ODE trajectory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.abilities import HasStages, HasTrajectory, LogProb, Samples, can
from genlab.viz.figures import pyplot, save_figure
from genlab.viz.report import register_figures


def _is_density_model(run) -> bool:
    return run.data_info.kind == "points" and can(run.model, LogProb, Samples)


def _device(run):
    return next(run.model.parameters()).device


def data_box(x: np.ndarray, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x.min(0), x.max(0)
    pad = margin * (hi - lo)
    return lo - pad, hi + pad


def log_density_grid(log_prob, lo, hi, n: int = 80, chunk: int = 4096):
    """(X, Y, log p) of ``log_prob`` (points [N, 2] -> [N]) on an n x n grid over the box [lo, hi]."""
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1)).float()
    vals = torch.cat([log_prob(pts[i:i + chunk]).detach().cpu() for i in range(0, len(pts), chunk)])
    return X, Y, vals.numpy().reshape(n, n)


def _true_log_prob(run):
    extras = run.data_info.extras
    if not extras.get("known_density"):
        return None
    from genlab.data import toy
    return lambda x: toy.log_density(extras["dataset"], x.double(), extras.get("noise")).float()


@register_figures(needs=(LogProb, Samples), kinds=("points",))
def density_2d(run, out: Path):
    """Three panels: the data (true density when known, else a histogram), the model's density, samples."""
    if not (_is_density_model(run) and run.data_info.shape == (2,)):
        return []
    x = run.data("test").tensors[0].numpy()
    lo, hi = data_box(x)
    dev = _device(run)
    X, Y, model_lp = log_density_grid(lambda p: run.model.log_prob(p.to(dev)), lo, hi)
    samples = run.model.sample(2000).cpu().numpy()
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), dpi=100)
    true = _true_log_prob(run)
    if true is not None:
        axes[0].pcolormesh(X, Y, np.exp(log_density_grid(true, lo, hi)[2]), shading="auto")
        axes[0].set_title("true density")
    else:
        axes[0].hist2d(x[:, 0], x[:, 1], bins=80, range=[[lo[0], hi[0]], [lo[1], hi[1]]])
        axes[0].set_title("test data (histogram)")
    axes[1].pcolormesh(X, Y, np.exp(model_lp), shading="auto")
    axes[1].set_title(f"{run.model_name} density")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
    axes[2].set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), title=f"{run.model_name} samples")
    for ax in axes:
        ax.set_aspect("equal")
    fig.suptitle(f"{run.model_name} on {run.data_name}: density and samples (test NLL in eval.json)", fontsize=11)
    return [save_figure(fig, out / "density.png")]


@register_figures(needs=(LogProb, Samples), kinds=("points",))
def density_1d(run, out: Path):
    """Histogram of the test data, the model's density and the true one when known."""
    if not (_is_density_model(run) and run.data_info.shape == (1,)):
        return []
    x = run.data("test").tensors[0]
    lo, hi = data_box(x.numpy())
    grid = torch.linspace(float(lo[0]), float(hi[0]), 400).unsqueeze(1)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.hist(x[:, 0].numpy(), bins=80, density=True, alpha=0.4, label="test data")
    ax.plot(grid[:, 0], run.model.log_prob(grid.to(_device(run))).exp().cpu(), label=run.model_name)
    true = _true_log_prob(run)
    if true is not None:
        ax.plot(grid[:, 0], true(grid).exp(), "--", label="true density")
    ax.set(title=f"{run.model_name} on {run.data_name}: density", xlabel="x", ylabel="density")
    ax.legend()
    return [save_figure(fig, out / "density.png")]


def pick_stages(stages: list, keep: int = 6) -> list[tuple[int, torch.Tensor]]:
    idx = sorted(set(np.linspace(0, len(stages) - 1, min(keep, len(stages))).round().astype(int).tolist()))
    return [(i, stages[i]) for i in idx]


@register_figures(needs=(LogProb, Samples), kinds=("points",))
def transformation(run, out: Path):
    """Test points, coloured by their angle in data space, after each layer of a flow (or at
    equally spaced times along a CNF's trajectory): data (left) to base N(0, I) (right)."""
    if not (_is_density_model(run) and run.data_info.shape == (2,) and can(run.model, HasStages)):
        return []
    x = run.data("test").tensors[0][:1500].to(_device(run))
    stages = [s.reshape(len(x), -1).cpu().numpy() for s in run.model.stages(x)]
    colour = np.arctan2(stages[0][:, 1], stages[0][:, 0])
    chosen = pick_stages(stages)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(chosen), figsize=(3 * len(chosen), 3.2), dpi=100)
    label = "t" if can(run.model, HasTrajectory) else "layer"   # a continuous flow: stages are times
    for ax, (i, pts) in zip(np.atleast_1d(axes), chosen):
        ax.scatter(pts[:, 0], pts[:, 1], c=colour, cmap="hsv", s=1)
        ax.set_title(f"{label} {i}" if label == "layer" else f"t = {i / (len(stages) - 1) * run.model.config.T:.2f}")
        ax.set_aspect("equal", "datalim")
    fig.suptitle(f"{run.model_name} on {run.data_name}: test points (coloured by angle) from data (left) to the "
                 f"base N(0, I) (right)", fontsize=10)
    return [save_figure(fig, out / "transformation.png")]
