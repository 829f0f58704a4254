"""Experiments of the adversarial family (Makhzani et al. 2015; Goodfellow et al. 2014), as declarations.

Full versions train on MNIST (``--data-dir`` or $GENLAB_DATA, else download); ``--quick`` ones on the
bundled 8x8 digits. The AAE works on pixels in [-1, 1] with a tanh decoder, so its reconstruction
loss compares with the course reference listed in docs/COURSES.md (below 0.05 for z=8, lambda=0.995).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import distributions as D

from genlab.eval.fid import sample_quality
from genlab.experiments.common import (
    Both,
    device_of,
    held_out,
    reconstruction_spread,
    relative,
    snapshot_callbacks,
    test_metrics,
)
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare
from genlab.viz.figures import labelled_grid, save_rows, scatter2d

FAMILY = "adversarial"
REFERENCE_REC = 0.05          # course reference (docs/COURSES.md): reconstruction MSE below 0.05, pixels in [-1, 1]
AAE_EPOCHS = Both(full=[0, 20, 50, 100], quick=[0, 2, 5, 10])   # the course's epochs 0/20/50/100
AAE_Z8_EPOCHS = Both(full=[0, 20, 50, 100], quick=[0, 2, 5, 20])
AAE_2D_EPOCHS = Both(full=[0, 20, 50, 100], quick=[0, 5, 15, 30])
AAE = {"lr": 1e-3, "batch_size": 128, "epochs": 100}
AAE_QUICK = {"batch_size": 64, "epochs": 10}      # two runs per experiment: 10 epochs each
FID_SAMPLES = Both(full=2000, quick=500)
DIGITS_NOTE = "quick run on 8x8 digits, not the 28x28 MNIST of the full run"
NOTE = Both(full="", quick=DIGITS_NOTE)      # under every figure


def draw_aae(ctx: Context, s: Setting, trainer, epoch: int) -> None:
    """Reconstructions of 16 held-out images and 64 prior samples after ``epoch``."""
    x, model = held_out(trainer, 16), trainer.model
    note = NOTE(ctx)
    save_rows([x, model.reconstruct(x)], ctx.figures / f"{s.name}_reconstructions_epoch{epoch:03d}.png",
              row_labels=["input", "reconstruction"], note=note,
              title=f"{s.name}: held-out images and reconstructions after epoch {epoch}")
    labelled_grid(model.sample(64), ctx.figures / f"{s.name}_samples_epoch{epoch:03d}.png", nrow=8, note=note,
                  title=f"{s.name}: decoded prior samples after epoch {epoch}")


def aae_metrics(ctx: Context, run) -> dict:
    m = test_metrics(run)
    rec = m.get("rec_mse_pm1", m.get("rec_mse"))
    q = sample_quality(run, n=FID_SAMPLES(ctx), progress=False)
    x = run.data("test").tensors[0][:256]
    return {"test_rec_mse_pm1": rec, "test_rec_mse": m.get("rec_mse"), "fid_local": round(q["fid"], 3),
            "fid_real_floor": round(q.get("fid_real_floor", float("nan")), 3), "fid_samples": q["fid_samples"],
            "classifier_score": round(q["classifier_score"], 3),
            "classifier_score_data": round(q["classifier_score_data"], 3),
            "classifier_test_acc": q["classifier_test_acc"],
            "reconstruction_spread": reconstruction_spread(run.model, x)}


def check_aae_mnist(s: dict) -> Check:
    rec, spread = s["test_rec_mse_pm1"], s["reconstruction_spread"]
    return Check(rec is not None and rec < REFERENCE_REC and spread >= 0.5,
                 f"test reconstruction MSE {rec} on [-1, 1], reconstruction spread {spread} ({s['data']})",
                 f"MSE < {REFERENCE_REC} (course reference) and spread >= 0.5 (reconstructions differ across inputs)")


# ------------------------------------------------------------------ AAE on MNIST, z = 8
def aae_mnist(ctx: Context) -> dict:
    run = ctx.runs["aae_z8"]
    metrics = aae_metrics(ctx, run)
    return {"data": run.data_name, "epochs_shown": AAE_Z8_EPOCHS(ctx), "z_dim": 8, "lam": 0.995, **metrics,
            "reference_rec_mse": REFERENCE_REC}


declare(Experiment(
    "aae-mnist", FAMILY,
    "AAE, z=8, lambda=0.995: reconstructions and samples after 0/20/50/100 epochs (course reference: "
    "reconstruction MSE < 0.05)",
    runs=[Setting("aae_z8", "aae", {**AAE, "z_dim": 8, "lam": 0.995}, quick={**AAE_QUICK, "epochs": 20},
                  callbacks=snapshot_callbacks(AAE_Z8_EPOCHS, draw_aae))],
    analyze=aae_mnist, one_thread_quick=True,
    claim="an adversarial autoencoder (Makhzani et al. 2015) with z = 8, lambda = 0.995 reconstructs MNIST with "
          "MSE below 0.05 on [-1, 1] pixels, each input its own reconstruction (UvA Practical 3, Q2.5)",
    check=check_aae_mnist,
    quick_cannot="the course's reference is for 28x28 MNIST after 100 epochs; 20 epochs on 8x8 digits stay above "
                 "0.05: `genlab experiment run aae-mnist --data-dir DIR`",
    examples=({"data": "mnist", "test_rec_mse_pm1": 0.04, "reconstruction_spread": 0.9},
              {"data": "mnist", "test_rec_mse_pm1": 0.27, "reconstruction_spread": 0.02}),
    quick_note="20 epochs on 8x8 digits: reconstructions and samples improve through training, but the course's "
               "reference (below 0.05 on MNIST after 100 epochs) is out of reach in a minute (0.069 after 30 epochs, "
               "measured)"))


# ------------------------------------------------------------------ z = 2: plain AE vs AAE
def latent_figure(run, path: Path, title: str, n: int = 2000, note: str = "") -> Path:
    """Test codes coloured by label over the prior's density (2-D latents)."""
    d = run.data("test")
    model = run.model.eval()
    with torch.no_grad():
        z = model.encode(d.tensors[0][:n].to(device_of(model))).cpu().numpy()
        lim = max(3.5, float(np.abs(z).max()) * 1.05)
        g = torch.linspace(-lim, lim, 150)
        gx, gy = torch.meshgrid(g, g, indexing="xy")
        dens = model.prior.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).exp().reshape(150, 150)
    return scatter2d(z, path, labels=d.tensors[1][:n].numpy(), title=title, xlabel="z1", ylabel="z2", note=note,
                     background=(gx.numpy(), gy.numpy(), dens.numpy()))


def code_prior_kl(z: torch.Tensor) -> float:
    """How far codes ``z`` [N, d] are from the prior N(0, I): KL(N(m, S) || N(0, I)) in nats, N(m, S) the
    Gaussian with the codes' mean and (full) covariance. 0 when their first two moments are the prior's."""
    fit = D.MultivariateNormal(z.mean(0), covariance_matrix=torch.cov(z.T))         # z.T: [d, N]
    return float(D.kl_divergence(fit, D.MultivariateNormal(torch.zeros(z.shape[1]), torch.eye(z.shape[1]))))


def aae_vs_ae_2d(ctx: Context) -> dict:
    summary, figures = {"epochs_shown": AAE_2D_EPOCHS(ctx), "z_dim": 2}, []
    for name, run in ctx.runs.items():
        lam = run.model.config.lam
        figures.append(latent_figure(run, ctx.figures / f"{name}_latents.png", note=NOTE(ctx),
                                     title=f"{'plain AE' if lam == 1 else 'AAE'} (lambda={lam}): test codes over "
                                           f"the prior density"))
        with torch.no_grad():
            z = run.model.encode(run.data("test").tensors[0][:2000].to(device_of(run.model))).cpu()
        summary[name] = {"lam": lam, **aae_metrics(ctx, run), "code_prior_kl_nats": round(code_prior_kl(z), 4),
                         "code_mean": [round(v, 3) for v in z.mean(0).tolist()],
                         "code_std": [round(v, 3) for v in z.std(0).tolist()]}
        summary["data"] = run.data_name
    return summary | {"note": "the AAE's codes should match the N(0, I) prior (mean ~0, std ~1); the plain AE's "
                              "need not. Measured on --quick (30 epochs of digits), KL of the codes' Gaussian fit "
                              "to N(0, I), seeds 0/1/2: AAE 0.053/0.114/0.094, plain AE 1.857/0.958/1.688 nats; "
                              "after 10 epochs, seed 1: AAE 0.187, AE 0.336 (not half)",
                      "figures": relative(ctx, figures)}


def check_aae_vs_ae(s: dict) -> Check:
    aae, ae = s["aae_z2"]["code_prior_kl_nats"], s["ae_z2"]["code_prior_kl_nats"]
    return Check(aae <= 0.5 * ae, f"KL(Gaussian fit of the test codes || N(0, I)): AAE {aae}, plain AE {ae} nats",
                 "AAE <= half the plain AE's")


declare(Experiment(
    "aae-vs-ae-2d", FAMILY,
    "z=2: plain AE (lambda=1) vs AAE (lambda=0.995): reconstructions, prior samples, test codes over the "
    "prior density",
    runs=[Setting(name, "aae", {**AAE, "z_dim": 2, "lam": lam}, quick={**AAE_QUICK, "epochs": 30},
                  callbacks=snapshot_callbacks(AAE_2D_EPOCHS, draw_aae))
          for name, lam in (("ae_z2", 1.0), ("aae_z2", 0.995))],
    analyze=aae_vs_ae_2d, one_thread_quick=True,
    claim="with z = 2 the adversarial term pulls the AAE's test codes onto the N(0, I) prior, while a plain "
          "autoencoder's (lambda = 1) codes need not match it (UvA Practical 3, Q2.6; Makhzani et al. 2015)",
    check=check_aae_vs_ae,
    examples=({"aae_z2": {"code_prior_kl_nats": 0.05}, "ae_z2": {"code_prior_kl_nats": 1.9}},
              {"aae_z2": {"code_prior_kl_nats": 0.19}, "ae_z2": {"code_prior_kl_nats": 0.34}})))


# ------------------------------------------------------------------ z = 20: stochastic encoder
def aae_stochastic_z20(ctx: Context) -> dict:
    summary = {"epochs_shown": AAE_EPOCHS(ctx), "z_dim": 20}
    for name, run in ctx.runs.items():
        summary[name] = aae_metrics(ctx, run)
        summary["data"] = run.data_name
    return summary | {"note": "the full MNIST run has not been measured yet, so whether it shows the claim is not "
                              "known; on --quick digits the ordering changes with the seed (quick_cannot)"}


declare(Experiment(
    "aae-stochastic-z20", FAMILY,
    "z=20, lambda=0.995: deterministic vs Gaussian (stochastic) encoder samples through training",
    runs=[Setting(kind, "aae", {**AAE, "z_dim": 20, "lam": 0.995, "encoder": kind}, quick=AAE_QUICK,
                  callbacks=snapshot_callbacks(AAE_EPOCHS, draw_aae))
          for kind in ("deterministic", "gaussian")],
    analyze=aae_stochastic_z20, one_thread_quick=True,
    claim="with z = 20 a Gaussian (stochastic) encoder gives the AAE better prior samples than a deterministic "
          "one: a lower FID (UvA Practical 3, Q2.7; Makhzani et al. 2015, Sec. 2.1)",
    check=lambda s: Check(s["gaussian"]["fid_local"] < s["deterministic"]["fid_local"],
                          f"FID (local) Gaussian {s['gaussian']['fid_local']}, deterministic "
                          f"{s['deterministic']['fid_local']}", "Gaussian < deterministic"),
    quick_cannot="on 8x8 digits neither encoder wins within a minute, the ordering changes with the seed (measured, "
                 "joint schedule, local FID on the 360 test digits, Gaussian vs deterministic, seeds 0/1/2: "
                 "after 10 epochs 52.97/24.60/56.69 vs 20.25/28.35/17.61, after 40 epochs 15.04/11.06/9.93 vs "
                 "15.10/9.66/26.59); the full MNIST run, not yet measured: "
                 "`genlab experiment run aae-stochastic-z20 --data-dir DIR`",
    examples=({"gaussian": {"fid_local": 20.0}, "deterministic": {"fid_local": 30.0}},
              {"gaussian": {"fid_local": 47.6}, "deterministic": {"fid_local": 32.3}})))


# ------------------------------------------------------------------ GAN
GAN_EPOCHS = Both(full=[0, 1, 5, 10, 20], quick=[0, 5, 10, 25, 50])
Z_DIM = 32


def fixed_noise() -> torch.Tensor:
    return torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(0))


def draw_gan(ctx: Context, s: Setting, trainer, epoch: int) -> None:
    model = trainer.model
    labelled_grid(model.sample(64, z=fixed_noise().to(device_of(model))),
                  ctx.figures / f"gan_fixed_noise_epoch{epoch:03d}.png", nrow=8,
                  note=NOTE(ctx),
                  title=f"generator on 64 fixed noise vectors after epoch {epoch}")


def gan_mnist(ctx: Context) -> dict:
    run = ctx.runs["gan"]
    last = run.state.history[-1] if run.state.history else {}
    q = sample_quality(run, n=FID_SAMPLES(ctx), progress=False)
    with torch.no_grad():
        x = run.model.sample(64, z=fixed_noise().to(device_of(run.model)))
    spread = float(x.flatten(1).std(0).mean())      # pixel std across the 64 samples: ~0 when they collapse
    return {"data": run.data_name, "arch": run.model.config.arch, "epochs_shown": GAN_EPOCHS(ctx),
            "gen_loss": run.model.config.gen_loss, "fid_local": round(q["fid"], 3),
            "fid_real_floor": round(q.get("fid_real_floor", float("nan")), 3), "fid_samples": q["fid_samples"],
            "classifier_score": round(q["classifier_score"], 3),
            "classifier_score_data": round(q.get("classifier_score_data", float("nan")), 3),
            "classifier_test_acc": q["classifier_test_acc"], "val_bound": last.get("val/bound"),
            "sample_pixel_std": round(spread, 4)}


def check_gan(s: dict) -> Check:
    spread, score, data = s["sample_pixel_std"], s["classifier_score"], s["classifier_score_data"]
    return Check(spread >= 0.1 and score >= 0.5 * data,
                 f"pixel std across 64 samples {spread}, classifier score {score} (real images {data})",
                 "std >= 0.1 (no collapse) and classifier score >= half the real images'")


declare(Experiment(
    "gan-mnist", FAMILY, "GAN (Goodfellow 2014): fixed-noise sample grids through training, FID (local features)",
    runs=[Setting("gan", "gan", {"arch": "dcgan", "z_dim": Z_DIM, "lr": 2e-4, "batch_size": 64, "epochs": 20},
                  quick={"arch": "mlp", "lr": 1e-3, "epochs": 50}, callbacks=snapshot_callbacks(GAN_EPOCHS, draw_gan))],
    analyze=gan_mnist, one_thread_quick=True,
    claim="a GAN (Goodfellow et al. 2014) generates varied digits that the local classifier recognises about as "
          "confidently as real ones (midterm Problem 3a)",
    check=check_gan,
    examples=({"sample_pixel_std": 0.3, "classifier_score": 6.0, "classifier_score_data": 8.0},
              {"sample_pixel_std": 0.01, "classifier_score": 1.2, "classifier_score_data": 8.0}),
    quick_note="MLP networks at lr 1e-3 for 50 epochs of 8x8 digits (at lr 2e-4 and 30 epochs every sample was the "
               "same image); FID compares runs on the digits only"))
