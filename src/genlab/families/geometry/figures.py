"""Figures of models trained on 3-D point clouds: reconstructions, samples, latent paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.abilities import Reconstructs, Samples, can
from genlab.viz.figures import scatter3d
from genlab.viz.report import register_figures


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def is_point_cloud_model(run) -> bool:
    return run.data_info.kind == "points" and tuple(run.data_info.shape) == (3,)


def reconstruction_figure(x: torch.Tensor, x_hat: torch.Tensor, path: Path, title: str = "", note: str = "") -> Path:
    """Test points and their reconstructions decode(encode(x)), overlaid in 3-D (equal axes)."""
    return scatter3d({"data": _np(x), "reconstruction": _np(x_hat)}, path, title=title, equal_aspect=True, note=note)


def interpolation_figure(cloud: torch.Tensor, paths: dict[str, torch.Tensor], path: Path, title: str = "",
                         note: str = "") -> Path:
    """Decoded latent interpolations (named [A, 3] trajectories) drawn over the data cloud (equal axes)."""
    return scatter3d({"data": _np(cloud)}, path, title=title, paths={k: _np(v) for k, v in paths.items()},
                     equal_aspect=True, note=note)


@register_figures(kinds=("points",))
def point_cloud_figures(run, out: Path):
    """For a 3-D point-cloud run: reconstructions of 1,000 test points and 1,000 samples."""
    if not is_point_cloud_model(run):
        return []
    x = run.data("test").tensors[0][:1000].to(next(run.model.parameters()).device)
    paths = []
    if can(run.model, Reconstructs):
        paths.append(reconstruction_figure(x, run.model.reconstruct(x), Path(out) / "reconstructions_3d.png",
                                           f"{run.model_name}: test points and reconstructions"))
    if can(run.model, Samples):
        paths.append(scatter3d({"data": _np(x), "samples": _np(run.model.sample(1000))}, Path(out) / "samples_3d.png",
                               title=f"{run.model_name}: samples (decoded prior draws)", equal_aspect=True))
    return paths
