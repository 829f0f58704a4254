"""Figures of a run, chosen by what its model can do (never by its family's name).

Each maker is ``fn(run, out_dir) -> list[Path]`` declared with
``@register_figures(needs=(Samples,), kinds=("image",))``: it is drawn only for models that follow
every protocol in ``needs`` (``genlab.models.protocols``) on data of one of ``kinds``. The modules
that declare makers are listed in ``genlab.catalog.FIGURES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import norm

from .. import catalog
from ..models.protocols import Decodes, Encodes, HasPrior, Reconstructs, Samples, can
from ..train.logger import read_jsonl
from .figures import line_plot, save_image_grid, save_rows

@dataclass
class FigureSpec:
    name: str
    fn: Callable
    needs: tuple = ()
    kinds: tuple = ()

    def applies(self, run) -> bool:
        return can(run.model, *self.needs) and (not self.kinds or run.data_info.kind in self.kinds)


def register_figures(fn: Callable | None = None, *, needs: tuple = (), kinds: tuple = ()):
    """Declare a figure maker ``fn(run, out) -> list[Path]`` (its module listed in ``catalog.FIGURES``)."""
    def deco(f):
        catalog.register("figure", f"{f.__module__}.{f.__name__}", FigureSpec(f.__name__, f, tuple(needs), tuple(kinds)))
        return f
    return deco(fn) if fn is not None else deco


def make_figures(run, out: Path | None = None, seed: int = 0) -> list[Path]:
    """Draw every figure that applies to ``run`` into ``out`` (default: the run's ``figures/``)."""
    out = Path(out or run.figures)
    paths = []
    with torch.random.fork_rng(devices=[]):
        for spec in catalog.load_all("figure").values():
            if not spec.applies(run):
                continue
            torch.manual_seed(seed)
            run.model.eval()
            with torch.no_grad():
                paths += spec.fn(run, out) or []
    return paths


def test_images(run, n: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    data = run.data(split)
    x, y = data.tensors[0][:n], data.tensors[1][:n]
    return x.to(next(run.model.parameters()).device), y


def to_unit(run, x: torch.Tensor) -> torch.Tensor:
    """Data-space images to [0, 1] for display (quantized levels are rescaled)."""
    levels = run.data_info.levels
    return x / (levels - 1) if run.data_info.view == "quantized" and levels else x


@register_figures(needs=(Reconstructs,), kinds=("image",))
def reconstructions(run, out: Path):
    x, _ = test_images(run, 16)
    return [save_rows([to_unit(run, x), run.model.reconstruct(x)], out / "reconstructions.png")]


@register_figures(needs=(Samples,), kinds=("image",))
def samples(run, out: Path):
    return [save_image_grid(run.model.sample(64), out / "samples.png", nrow=8)]


def latent_grid(run, n: int = 20) -> torch.Tensor | None:
    """The 2-D latent grid: for a VAE the inverse normal CDF of an even grid in (0, 1) (Kingma &
    Welling Fig. 4b); for an AE an even grid over the range of the test codes."""
    model = run.model
    if not can(model, Decodes, Encodes) or model.latent_dim != 2:
        return None
    if can(model, Samples, HasPrior):     # a prior N(0, I) to invert
        u = torch.linspace(0.5 / n, 1 - 0.5 / n, n)
        axis = torch.from_numpy(norm.ppf(u.numpy())).float()
        ys, xs = axis.flip(0), axis
    else:
        x, _ = test_images(run, 2000)
        codes = model.encode(x)
        lo, hi = codes.min(0).values.cpu(), codes.max(0).values.cpu()
        xs, ys = torch.linspace(lo[0], hi[0], n), torch.linspace(hi[1], lo[1], n)
    z = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
    return model.decode(z.to(next(model.parameters()).device))


@register_figures(needs=(Decodes, Encodes), kinds=("image",))
def manifold(run, out: Path):
    images = latent_grid(run)
    return [] if images is None else [save_image_grid(images, out / "latent_grid.png", nrow=20)]


def interpolation_images(run, alphas=None) -> torch.Tensor:
    """Decode z(a) = (1-a) z1 + a z2 for a in {0, 0.1, ..., 1}, z1 and z2 the codes of the first two
    test images with different labels (000 Problem 4 g)."""
    alphas = torch.linspace(0, 1, 11) if alphas is None else alphas
    x, y = test_images(run, 200)
    j = int(torch.nonzero(y != y[0])[0])
    z = run.model.encode(torch.stack([x[0], x[j]]))
    a = alphas.to(z.device).unsqueeze(1)
    return run.model.decode((1 - a) * z[0] + a * z[1])


@register_figures(needs=(Encodes, Decodes), kinds=("image",))
def interpolation(run, out: Path):
    return [save_image_grid(interpolation_images(run), out / "interpolation.png", nrow=11)]


@register_figures
def training_curves(run, out: Path):
    """Train/val bpd (or loss) per epoch, with the final test value marked when known."""
    rows = read_jsonl(run.dir / "metrics.jsonl") if run.dir else []
    epochs = [r for r in rows if r.get("split") == "epoch"]
    train_rows = [r for r in rows if r.get("split") == "train"]
    if not epochs:
        return []
    key = "bpd" if any("bpd" in r for r in train_rows) else "loss"
    by_epoch: dict[int, list[float]] = {}
    for r in train_rows:
        if key in r:
            by_epoch.setdefault(r["epoch"] + 1, []).append(r[key])
    series = {f"train {key}": (list(by_epoch), [float(np.mean(v)) for v in by_epoch.values()])}
    val_key = "val/elbo_bpd" if key == "bpd" else None
    vals = [(r["epoch"], r[val_key]) for r in epochs if val_key and val_key in r]
    if vals:
        series[f"val {key} (ELBO)"] = tuple(map(list, zip(*vals)))
    hl = {}
    test = (run.dir / "eval.json") if run.dir else None
    if test and test.exists():
        import json
        m = json.loads(test.read_text()).get("metrics", {})
        if "elbo_bpd" in m:
            hl[f"test {key} (ELBO) {m['elbo_bpd']:.3f}"] = m["elbo_bpd"]
    return [line_plot(series, out / "training_curves.png", title=f"{run.model_name} on {run.data_name}",
                      xlabel="epoch", ylabel=key, hlines=hl)]
