"""Experiments of the adversarial family (001 section 2, 003 Problem 3).

Full versions train on MNIST (``data_dir`` or $GENLAB_DATA, else download); ``quick`` ones on the
bundled 8x8 digits with few epochs, each in well under a minute on 2 cores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..eval.fid import sample_quality
from ..eval.evaluate import evaluate
from ..train.run import train
from ..viz.figures import save_image_grid, save_rows, scatter2d
from .common import mnist_or_digits as _data, one_thread_when_quick, snapshots
from .registry import register_experiment


def test_batch(data: str, data_dir_opts: dict, n: int = 16):
    from ..data.registry import load_dataset
    d = load_dataset(data, "test", view="continuous", **data_dir_opts)
    return d.tensors[0][:n], d.tensors[1]


def recon_and_sample_grids(figures: Path, tag: str, x: torch.Tensor):
    """Callback body: save reconstructions of ``x`` and 64 prior samples as ``{tag}_*_epoch{E}.png``."""
    def draw(model, epoch):
        xd = x.to(next(model.parameters()).device)
        save_rows([xd, model.reconstruct(xd)], figures / f"{tag}_reconstructions_epoch{epoch:03d}.png")
        save_image_grid(model.sample(64), figures / f"{tag}_samples_epoch{epoch:03d}.png", nrow=8)
    return draw


def _metrics(run, quick: bool) -> dict:
    m = evaluate(run, extras=False)["metrics"]
    q = sample_quality(run, n=500 if quick else 2000)
    return {"test_rec_mse": m.get("rec_mse"), "fid_local": q["fid"], "fid_samples": q["fid_samples"],
            "classifier_score": q["classifier_score"], "classifier_test_acc": q["classifier_test_acc"]}


def _train_aae(out: Path, tag: str, quick: bool, data_dir, epochs_shown, **model_options):
    data, dopts = _data(quick, data_dir)
    x, _ = test_batch(data, dopts)
    cb = snapshots(epochs_shown, recon_and_sample_grids(out / "figures", tag, x))
    run = train("aae", data, out / "runs" / tag, callbacks=[cb], data_options=dopts,
                epochs=max(epochs_shown), lr=1e-3, batch_size=64 if quick else 128, progress=False,
                model_options=model_options)
    return run


@register_experiment("aae-mnist", "AAE, z=8, lambda=0.995: reconstructions and samples after 0/20/50/100 epochs "
                     "(001 Q2.5; reference: reconstruction MSE < 0.05)", "adversarial")
@one_thread_when_quick
def aae_mnist(out: Path, quick: bool, data_dir: str | None) -> dict:
    shown = [0, 2, 5, 10] if quick else [0, 20, 50, 100]
    run = _train_aae(out, "aae_z8", quick, data_dir, shown, z_dim=8, lam=0.995)
    history = run.state.history
    return {"data": run.data_name, "epochs_shown": shown, "z_dim": 8, "lam": 0.995,
            "reference_rec_mse": 0.05, **_metrics(run, quick),
            "final_val_rec_mse": history[-1].get("val/rec_mse") if history else None}


def latent_figure(run, path: Path, title: str, n: int = 2000):
    """Test codes coloured by label over the prior's density (2-D latents)."""
    d = run.data("test")
    model = run.model.eval()
    with torch.no_grad():
        z = model.encode(d.tensors[0][:n]).cpu().numpy()
        lim = max(3.5, float(np.abs(z).max()) * 1.05)
        g = torch.linspace(-lim, lim, 150)
        gx, gy = torch.meshgrid(g, g, indexing="xy")
        dens = model.prior.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).exp().reshape(150, 150)
    return scatter2d(z, path, labels=d.tensors[1][:n].numpy(), title=title,
                     background=(gx.numpy(), gy.numpy(), dens.numpy()))


@register_experiment("aae-vs-ae-2d", "z=2: plain AE (lambda=1) vs AAE (lambda=0.995): reconstructions, prior samples, "
                     "test codes over the prior density (001 Q2.6)", "adversarial")
@one_thread_when_quick
def aae_vs_ae_2d(out: Path, quick: bool, data_dir: str | None) -> dict:
    shown = [0, 2, 5, 10] if quick else [0, 20, 50, 100]
    summary = {"epochs_shown": shown, "z_dim": 2}
    for tag, lam in (("ae", 1.0), ("aae", 0.995)):
        run = _train_aae(out, f"{tag}_z2", quick, data_dir, shown, z_dim=2, lam=lam)
        latent_figure(run, out / "figures" / f"{tag}_z2_latents.png", f"{tag.upper()} (lambda={lam}) test codes")
        with torch.no_grad():
            z = run.model.encode(run.data("test").tensors[0][:2000])
        summary[tag] = {"lam": lam, **_metrics(run, quick),
                        "code_mean": z.mean(0).tolist(), "code_std": z.std(0).tolist()}
        summary["data"] = run.data_name
    return summary


@register_experiment("aae-stochastic-z20", "z=20, lambda=0.995: deterministic vs Gaussian (stochastic) encoder "
                     "samples through training (001 Q2.7)", "adversarial")
@one_thread_when_quick
def aae_stochastic_z20(out: Path, quick: bool, data_dir: str | None) -> dict:
    shown = [0, 2, 5, 10] if quick else [0, 20, 50, 100]
    summary = {"epochs_shown": shown, "z_dim": 20}
    for kind in ("deterministic", "gaussian"):
        run = _train_aae(out, f"{kind}_z20", quick, data_dir, shown, z_dim=20, lam=0.995, encoder=kind)
        summary[kind] = _metrics(run, quick)
        summary["data"] = run.data_name
    return summary


@register_experiment("gan-mnist", "GAN (003 P3): fixed-noise sample grids through training, FID (local features)",
                     "adversarial")
@one_thread_when_quick
def gan_mnist(out: Path, quick: bool, data_dir: str | None) -> dict:
    data, dopts = _data(quick, data_dir)
    shown = [0, 5, 10, 20, 30] if quick else [0, 1, 5, 10, 20]
    z_fixed = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))

    def draw(model, epoch):
        grid = model.sample(64, z=z_fixed.to(next(model.parameters()).device))
        save_image_grid(grid, out / "figures" / f"gan_fixed_noise_epoch{epoch:03d}.png", nrow=8)

    arch = "mlp" if quick else "dcgan"
    run = train("gan", data, out / "runs" / "gan", callbacks=[snapshots(shown, draw)], data_options=dopts,
                epochs=max(shown), lr=2e-4, batch_size=64, arch=arch, z_dim=32, progress=False)
    last = run.state.history[-1] if run.state.history else {}
    q = sample_quality(run, n=500 if quick else 2000)
    return {"data": run.data_name, "arch": arch, "epochs_shown": shown, "gen_loss": "non_saturating",
            "fid_local": q["fid"], "fid_samples": q["fid_samples"], "classifier_score": q["classifier_score"],
            "classifier_test_acc": q["classifier_test_acc"], "val_bound": last.get("val/bound")}
