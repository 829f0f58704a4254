"""The autoencoder / VAE experiments of the course (seeds 000 P4, 001 Q1.7-1.9, 002 Q9-10, 004 P1-3).

Full versions train on MNIST (a local folder via --data-dir / GENLAB_DATA, else a checked download);
``--quick`` versions train briefly on the bundled digits so they finish in under a minute.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import load_dataset
from ..eval import evaluate
from ..models.vae import kl_normal_std_normal, log_normal_pdf, reparameterize
from ..train import train
from ..train.logger import read_jsonl
from ..viz import line_plot, make_figures, save_image_grid, save_rows
from ..viz.report import interpolation_images, latent_grid, test_images
from .common import mnist_or_digits as dataset, snapshots
from .registry import register_experiment


def epoch_marks(quick: bool) -> tuple[int, list[int]]:
    """(epochs, the epochs at which snapshots are drawn): 80 epochs and 0/10/80 as in the course."""
    return (6, [0, 2, 6]) if quick else (80, [0, 10, 80])


def metrics_of(run, iwae_k: int, limit: int | None = None) -> dict:
    options = {"iwae_k": iwae_k} if run.model_name == "vae" else {}
    return {k: round(v, 4) for k, v in evaluate(run, options=options, limit=limit, extras=False)["metrics"].items()}


# ------------------------------------------------------------------ 004 P3 b / 000 P4 e
@register_experiment("kl-check", "analytic KL(q||p) against its Monte-Carlo estimate as samples grow (004 P3b)", "vae")
def kl_check(out: Path, quick: bool, data_dir=None) -> dict:
    torch.manual_seed(0)
    mu, logvar = torch.randn(20) * 0.8, torch.randn(20) * 0.5 - 0.5
    analytic = float(kl_normal_std_normal(mu, logvar))
    counts = [1, 10, 100, 1000, 10_000] + ([] if quick else [100_000, 1_000_000])
    estimates, stderrs = [], []
    for n in counts:
        z = reparameterize(mu, logvar, n)
        terms = log_normal_pdf(z, mu, logvar) - log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
        estimates.append(float(terms.mean()))
        stderrs.append(float(terms.std() / n ** 0.5) if n > 1 else float("nan"))
    line_plot({"Monte-Carlo estimate": (counts, estimates)}, out / "figures" / "kl_check.png",
              title="KL(q||p): analytic vs Monte Carlo (d=20)", xlabel="samples", ylabel="KL (nats)",
              hlines={f"analytic {analytic:.4f}": analytic}, logx=True)
    return {"analytic_kl": analytic, "samples": counts, "mc_estimates": estimates, "mc_stderr": stderrs,
            "abs_error_at_max": abs(estimates[-1] - analytic)}


# ------------------------------------------------------------------ 004 P2-P3 c / 000 P4 f
@register_experiment("vae-sgvb-vs-analytic", "two VAEs, SGVB vs analytic-KL ELBO: reconstructions, samples, "
                     "test ELBO (004 P2-3, 000 P4f)", "vae")
def sgvb_vs_analytic(out: Path, quick: bool, data_dir=None) -> dict:
    data, opts = dataset(quick, data_dir)
    summary, recons, grids = {}, [], []
    for objective in ("sgvb", "analytic"):
        run = train("vae", data, out / objective, objective=objective, z_dim=20, view="binarized",
                    epochs=8 if quick else 30, **opts)
        make_figures(run)
        summary[objective] = metrics_of(run, iwae_k=10 if quick else 500, limit=None if quick else 2000)
        x, _ = test_images(run, 12)
        recons.append(run.model.reconstruct(x))
        grids.append(run.model.sample(64))
    save_rows([x, *recons], out / "figures" / "reconstructions_sgvb_vs_analytic.png")
    for name, g in zip(("sgvb", "analytic"), grids):
        save_image_grid(g, out / "figures" / f"samples_{name}.png", nrow=8)
    summary["note"] = "rows of reconstructions: input, SGVB, analytic KL"
    return summary


# ------------------------------------------------------------------ 004 P1
@register_experiment("ae-mnist", "autoencoder z=2: reconstructions and the 2-D grid of decoded latents (004 P1)", "vae")
def ae_mnist(out: Path, quick: bool, data_dir=None) -> dict:
    data, opts = dataset(quick, data_dir)
    run = train("ae", data, out / "ae", z_dim=2, epochs=10 if quick else 30, **opts)
    figures = make_figures(run)
    return {"test": metrics_of(run, 0), "figures": [str(p.relative_to(out)) for p in figures]}


# ------------------------------------------------------------------ 000 P4 g
@register_experiment("vae-interpolation", "decode (1-a) z1 + a z2 between two test digits of different labels, "
                     "a = 0, 0.1, ..., 1 (000 P4g)", "vae")
def vae_interpolation(out: Path, quick: bool, data_dir=None) -> dict:
    data, opts = dataset(quick, data_dir)
    run = train("vae", data, out / "vae", z_dim=20, view="binarized", epochs=8 if quick else 30, **opts)
    images = interpolation_images(run)
    save_image_grid(images, out / "figures" / "interpolation.png", nrow=11)
    x, y = test_images(run, 200)
    j = int(torch.nonzero(y != y[0])[0])
    return {"labels": [int(y[0]), int(y[j])], "alphas": [round(a / 10, 1) for a in range(11)],
            "test": metrics_of(run, 10 if quick else 100, limit=None if quick else 2000)}


# ------------------------------------------------------------------ 001 Q1.7-1.9
@register_experiment("vae-categorical-cnn", "CNN VAE on 4-bit MNIST, z=20: bpd curves, samples at epochs 0/10/80, "
                     "and the z=2 manifold (001 Q1.7-1.9)", "vae")
def categorical_cnn(out: Path, quick: bool, data_dir=None) -> dict:
    data, opts = dataset(quick, data_dir)
    epochs, marks = epoch_marks(quick)
    common = dict(arch="cnn", view="quantized", levels=16, lr=1e-3, batch_size=128, **opts)

    def draw(model, epoch):
        save_image_grid(model.sample(64, draw=True), out / "figures" / f"samples_epoch{epoch:03d}.png", nrow=8)

    run = train("vae", data, out / "z20", z_dim=20, epochs=epochs, callbacks=[snapshots(marks, draw)], **common)
    test = metrics_of(run, 0)
    (run.dir / "eval.json").write_text(json.dumps({"metrics": test}))
    make_figures(run)
    curve = {r["epoch"]: r.get("val/elbo_bpd") for r in run.state.history}
    manifold_run = train("vae", data, out / "z2", z_dim=2, epochs=max(2, epochs // 2) if quick else 40, **common)
    save_image_grid(latent_grid(manifold_run), out / "figures" / "manifold_z2.png", nrow=20)
    first_train = [r for r in read_jsonl(run.dir / "metrics.jsonl") if r.get("split") == "train" and "bpd" in r]
    return {"test_elbo_bpd_z20": test["elbo_bpd"], "val_elbo_bpd_by_epoch": curve,
            "first_logged_train_bpd": first_train[0]["bpd"] if first_train else None,
            "course_reference": "~4 bpd at start, < 2.0 after 2 epochs, ~0.52 after 80 epochs",
            "sample_epochs": marks, "test_z2": metrics_of(manifold_run, 0)}


# ------------------------------------------------------------------ 002 Q9-10
@register_experiment("vae-bernoulli-mlp", "Bernoulli VAE, 3x256 MLP, z=20, batch 64 on binarized MNIST: "
                     "reconstructions at epochs 0/10/80 (002 Q9-10)", "vae")
def bernoulli_mlp(out: Path, quick: bool, data_dir=None) -> dict:
    data, opts = dataset(quick, data_dir)
    epochs, marks = epoch_marks(quick)
    x = load_dataset(data, "test", view="binarized", **opts).tensors[0][:10]

    def draw(model, epoch):
        save_rows([x, model.reconstruct(x)], out / "figures" / f"reconstructions_epoch{epoch:03d}.png")

    run = train("vae", data, out / "vae", hidden=(256, 256, 256), z_dim=20, view="binarized", batch_size=64,
                epochs=epochs, callbacks=[snapshots(marks, draw)], **opts)
    make_figures(run)
    return {"reconstruction_epochs": marks, "test": metrics_of(run, 10 if quick else 100, limit=None if quick else 2000)}
