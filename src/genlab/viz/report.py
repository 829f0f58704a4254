"""Figures of a run, chosen by what its model can do (never by its family's name).

Each maker is ``fn(run, out_dir) -> list[Path]`` declared with
``@register_figures(needs=(Samples,), kinds=("image",))``: it is drawn only for models that declare
every ability in ``needs`` (``genlab.abilities``) on data of one of ``kinds``. The modules
that declare makers are listed in ``genlab.catalog.FIGURES``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

from genlab import catalog
from genlab.abilities import Decodes, Encodes, GaussianPrior, Reconstructs, Samples, can
from genlab.training.logger import read_jsonl
from genlab.viz.figures import labelled_grid, line_panels, save_rows


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
        spec = FigureSpec(f.__name__, f, tuple(needs), tuple(kinds))
        catalog.register("figure", f"{f.__module__}.{f.__name__}", spec)
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


def run_title(run) -> str:
    return f"{run.model_name} on {run.data_name}"


@register_figures(needs=(Reconstructs,), kinds=("image",))
def reconstructions(run, out: Path):
    x, _ = test_images(run, 16)
    return [save_rows([to_unit(run, x), run.model.reconstruct(x)], out / "reconstructions.png",
                      row_labels=["input", "reconstruction"],
                      title=f"{run_title(run)}: 16 test images and their reconstructions")]


@register_figures(needs=(Samples,), kinds=("image",))
def samples(run, out: Path):
    return [labelled_grid(run.model.sample(64), out / "samples.png", nrow=8,
                          title=f"{run_title(run)}: 64 samples")]


def latent_grid(run, n: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The 2-D latent grid: for a model with a ``GaussianPrior`` (a VAE) the inverse normal CDF of an
    even grid in (0, 1) (Kingma & Welling Fig. 4b); for another autoencoder (an AE, an AAE) an even
    grid over the range of the test codes. Returns the decoded
    images [n*n, ...] (rows from the top: z2 decreasing; columns: z1 increasing), the z1 values of
    the columns and the z2 values of the rows; None for a model without a 2-D latent."""
    model = run.model
    if not can(model, Decodes, Encodes) or model.latent_dim != 2:
        return None
    if can(model, GaussianPrior):     # a prior N(0, I) to invert
        u = torch.linspace(0.5 / n, 1 - 0.5 / n, n)
        axis = torch.from_numpy(norm.ppf(u.numpy())).float()
        ys, xs = axis.flip(0), axis
    else:
        x, _ = test_images(run, 2000)
        codes = model.encode(x)
        lo, hi = codes.min(0).values.cpu(), codes.max(0).values.cpu()
        xs, ys = torch.linspace(lo[0], hi[0], n), torch.linspace(hi[1], lo[1], n)
    z = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
    return model.decode(z.to(next(model.parameters()).device)), xs, ys


def latent_grid_figure(run, path: Path, title: str = "", note: str = "", n: int = 20) -> Path | None:
    """The decoded 2-D latent grid with its z1 / z2 values on the axes (every fourth labelled)."""
    grid = latent_grid(run, n)
    if grid is None:
        return None
    images, xs, ys = grid
    label = lambda v, k: f"{float(v):.1f}" if k % 4 == 0 or k == n - 1 else ""   # noqa: E731
    how = "inverse normal CDF of an even grid" if can(run.model, GaussianPrior) else "even grid over the test codes"
    return labelled_grid(images, path, nrow=n, title=title or f"{run_title(run)}: decoded 2-D latent grid ({how})",
                         col_labels=[label(v, k) for k, v in enumerate(xs)],
                         row_labels=[label(v, k) for k, v in enumerate(ys)], xlabel="z1", ylabel="z2",
                         note=note, cell_px=28)


@register_figures(needs=(Decodes, Encodes), kinds=("image",))
def manifold(run, out: Path):
    path = latent_grid_figure(run, out / "latent_grid.png")
    return [] if path is None else [path]


def interpolation_images(run, alphas=None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Decode z(a) = (1-a) z1 + a z2 for a in {0, 0.1, ..., 1}, z1 and z2 the codes of the first two
    test images with different labels (a straight line in latent space). Returns (images, alphas, (label1, label2))."""
    alphas = torch.linspace(0, 1, 11) if alphas is None else alphas
    x, y = test_images(run, 200)
    j = int(torch.nonzero(y != y[0])[0])
    z = run.model.encode(torch.stack([x[0], x[j]]))
    a = alphas.to(z.device).unsqueeze(1)
    return run.model.decode((1 - a) * z[0] + a * z[1]), alphas, (int(y[0]), int(y[j]))


def interpolation_figure(run, path: Path, title: str = "", note: str = "") -> Path:
    """One row of decoded interpolation frames, each labelled with its alpha."""
    images, alphas, (a, b) = interpolation_images(run)
    return labelled_grid(images, path, nrow=len(alphas), note=note,
                         title=title or f"{run_title(run)}: decode (1-α)·z1 + α·z2 between a test {a} and a test {b}",
                         col_labels=[f"α={float(v):.1f}" for v in alphas])


@register_figures(needs=(Encodes, Decodes), kinds=("image",))
def interpolation(run, out: Path):
    return [interpolation_figure(run, out / "interpolation.png")]


# ------------------------------------------------------------------ training curves
HEADLINE = ("perplexity", "psnr", "bits_per_token", "bleu")   # val metrics worth a panel of their own


def _base(key: str) -> str:
    """The quantity a logged key measures: 'val/elbo_bpd' and 'bpd' -> 'bpd'; 'loss/generator' -> 'loss'."""
    key = key.removeprefix("val/").removeprefix("elbo_")
    return key.split("/")[0]


def curve_keys(model, logged: set[str]) -> list[str]:
    """The keys the training-curves figure draws: the model's ``curve_keys`` class attribute when it
    has one (those of them that were logged), else the loss the run trained on (``bpd`` when logged,
    else ``loss``, else every ``loss/<phase>``), its validation counterpart, and headline validation
    metrics (perplexity, PSNR, ...)."""
    preferred = getattr(model, "curve_keys", None)
    if preferred:
        return [k for k in preferred if k in logged]
    train = (["bpd"] if "bpd" in logged else ["loss"] if "loss" in logged
             else sorted(k for k in logged if k.startswith("loss/")))
    keys = list(train)
    for k in train:
        keys += [v for v in (f"val/elbo_{k}", f"val/{k}") if v in logged][:1]
    keys += [f"val/{h}" for h in HEADLINE if f"val/{h}" in logged and f"val/{h}" not in keys]
    return keys


@register_figures
def training_curves(run, out: Path):
    """Training curves of any run, the keys picked from what it logged (see :func:`curve_keys`; a
    model may declare its own, e.g. ``curve_keys = ("bpd", "val/elbo_bpd")`` as a class attribute:
    train keys are read from the training rows, ``val/...`` keys from the validation rows). Keys
    measuring one quantity share a panel (``bpd`` with ``val/elbo_bpd``; ``loss`` with ``val/loss``);
    the x axis is the epoch (integer ticks) for epoch-based runs, else the optimizer step; a final
    test value from ``eval.json`` is drawn as a dashed line."""
    rows = read_jsonl(run.folder.metrics_jsonl) if run.dir else []
    train_rows = [r for r in rows if r.get("split") == "train"]
    val_rows = [r for r in rows if r.get("split") in ("val", "epoch") and any(k.startswith("val/") for k in r)]
    epochs = [r for r in rows if r.get("split") == "epoch"]
    if not train_rows:
        return []
    logged = {k for r in train_rows for k in r if not k.startswith("val/")}
    logged |= {k for r in val_rows for k in r if k.startswith("val/")}
    keys = curve_keys(run.model, logged)
    if not keys:
        return []
    by_epoch = (run.train_config.max_steps is None and len(epochs) >= 2
                and not any(r.get("split") == "val" for r in rows))
    panels: dict[str, dict] = {}
    for key in keys:
        if key.startswith("val/"):
            pts = [(r["epoch"] if by_epoch else r["step"], r[key]) for r in val_rows if key in r]
        elif by_epoch:   # the mean of an epoch's logged training rows, at the epoch's end
            per: dict[int, list[float]] = {}
            for r in train_rows:
                if key in r:
                    per.setdefault(r["epoch"] + 1, []).append(r[key])
            pts = [(e, float(np.mean(v))) for e, v in per.items()]
        else:
            pts = [(r["step"], r[key]) for r in train_rows if key in r]
        if pts:
            label = f"val {key[4:]}" if key.startswith("val/") else f"train {key}"
            panels.setdefault(_base(key), {"series": {}, "hlines": {}})["series"][label] = tuple(map(list, zip(*pts)))
    test = run.folder.read_eval().get("metrics", {}) if run.dir else {}
    for key in keys:
        name = key.removeprefix("val/")
        if key.startswith("val/") and isinstance(test.get(name), (int, float)) and _base(key) in panels:
            panels[_base(key)]["hlines"][f"test {name} {test[name]:.3f}"] = test[name]
    if not panels:
        return []
    return [line_panels(panels, out / "training_curves.png", title=run_title(run),
                        xlabel="epoch" if by_epoch else "step")]
