"""Latent geometry (004 Problem 4): a Euclidean-latent VAE vs a toroidal-latent VAE on a torus point cloud.

Both models are trained on the same cloud. Between the codes of random pairs of test points each model
interpolates in its own latent space (a straight line in R^2; the shortest arc on each circle of the
latent torus), decodes the path, and we measure how far the decoded points leave the true surface:

  surface_error = mean over decoded path points of d(x) / r,  d = |sqrt((rho - R)^2 + z^2) - r|
  reconstruction_error = mean over test points of ||x - decode(encode(x))||
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.geometry import surface_distance
from ..train.run import train
from ..viz.geometry import interpolation_figure, reconstruction_figure
from .common import single_thread
from .registry import register_experiment

PAIRS, STEPS = 20, 11
STD = 0.05   # fixed decoder std for both models: with a learned one the posteriors collapse (KL -> 0)
#                 points per split, epochs, hidden sizes, batch size
FULL = {"n_train": 5000, "n_val": 1000, "n_test": 1000, "epochs": 100, "hidden": (128, 128), "batch_size": 128}
QUICK = {"n_train": 2000, "n_val": 200, "n_test": 500, "epochs": 20, "hidden": (64, 64), "batch_size": 64}


def linear_interpolation(z1: torch.Tensor, z2: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """z(a) = (1 - a) z1 + a z2: the straight line between two Euclidean codes. [A, d]"""
    a = alphas.to(z1).unsqueeze(-1)
    return (1 - a) * z1 + a * z2


def decoded_paths(model, x: torch.Tensor, pairs: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode the latent interpolation between the codes of x[i] and x[j] for each (i, j): [P, steps, 3].
    A model with ``interpolate_latents`` (e.g. the torus VAE) follows its own geometry; others go straight."""
    interpolate = getattr(model, "interpolate_latents", linear_interpolation)
    codes = model.encode(x)
    alphas = torch.linspace(0, 1, steps)
    latents = torch.stack([interpolate(codes[i], codes[j], alphas) for i, j in pairs.tolist()])
    return model.decode(latents)


def _train_settings(s: dict, seed: int) -> dict:
    return {"epochs": s["epochs"], "batch_size": s["batch_size"], "hidden": s["hidden"], "seed": seed,
            "progress": False, "n_train": s["n_train"], "n_val": s["n_val"], "n_test": s["n_test"]}


@register_experiment("torus-interpolation", "VAE on a torus point cloud: Euclidean vs toroidal latent, "
                     "interpolations on or off the surface (004 Problem 4)", "geometry")
def torus_interpolation(out: Path, quick: bool, data_dir: str | None = None) -> dict:
    with single_thread():
        return _compare(out, QUICK if quick else FULL)


def _compare(out: Path, s: dict) -> dict:
    common = _train_settings(s, seed=0)
    runs = {
        "euclidean": train("vae", "torus", out / "euclidean", arch="mlp", z_dim=2, likelihood="gaussian",
                           objective="analytic", act="silu", gaussian_std=STD, **common),
        "toroidal": train("torus-vae", "torus", out / "toroidal", act="silu", gaussian_std=STD, **common),
    }
    test = runs["toroidal"].data("test")
    x, info = test.tensors[0], test.info
    pairs = torch.randint(len(x), (PAIRS, 2), generator=torch.Generator().manual_seed(0))
    summary, figures, first_paths = {}, [], {}
    for name, run in runs.items():
        model = run.model.eval()
        with torch.no_grad():
            paths = decoded_paths(model, x, pairs, STEPS)
            x_hat = model.reconstruct(x)
        last = run.state.history[-1]
        summary[name] = {
            "surface_error": float(surface_distance(paths, info).mean() / info.extras["r"]),
            "reconstruction_error": float((x_hat - x).norm(dim=-1).mean()),
            "reconstruction_surface_error": float(surface_distance(x_hat, info).mean() / info.extras["r"]),
            "val_elbo_nats": last.get("val/elbo_nats"), "train_time_s": round(sum(r["time_s"] for r in run.state.history), 2)}
        first_paths[name] = paths[0]
        figures.append(interpolation_figure(x, {f"pair {k + 1}": paths[k] for k in range(3)},
                                            out / "figures" / f"interpolation_{name}.png",
                                            f"{name} latent: decoded interpolations"))
        figures.append(reconstruction_figure(x, x_hat, out / "figures" / f"reconstruction_{name}.png",
                                             f"{name} latent: test points and reconstructions"))
    figures.append(interpolation_figure(x, first_paths, out / "figures" / "interpolation_both.png",
                                        "one pair, both latents"))
    return {**summary, "pairs": PAIRS, "points_per_path": STEPS,
            "target": "toroidal surface_error <= 0.05 and well below the euclidean one",
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
            "figures": [str(p.relative_to(out)) for p in figures]}
