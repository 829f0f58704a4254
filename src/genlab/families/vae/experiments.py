"""The autoencoder / VAE experiments (Kingma & Welling 2014; the course items they answer: docs/COURSES.md),
as declarations: the runs with their full and ``--quick`` settings, and an analysis of the trained runs.

Full versions train on MNIST (a local folder via --data-dir / GENLAB_DATA, else a checked download);
``--quick`` versions train on the bundled 8x8 digits so they finish in under a minute.
"""
from __future__ import annotations

import torch

from genlab.eval.evaluate import evaluate
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
from genlab.maths.densities import kl_normal_std_normal, log_normal_pdf, reparameterize
from genlab.training.logger import read_jsonl
from genlab.viz import make_figures
from genlab.viz.figures import labelled_grid, line_plot, save_rows
from genlab.viz.report import interpolation_figure, interpolation_images, latent_grid_figure, test_images

FAMILY = "vae"
DIGITS_NOTE = "quick run on 8x8 digits: its numbers are not comparable with the MNIST references of docs/COURSES.md"
NOTE = Both(full="", quick=DIGITS_NOTE)      # under figures and in summaries


# ------------------------------------------------------------------ analytic KL vs Monte Carlo
KL_SAMPLES = Both(full=[1, 10, 100, 1000, 10_000, 100_000, 1_000_000], quick=[1, 10, 100, 1000, 10_000, 100_000])


def kl_check(ctx: Context) -> dict:
    """Analytic KL(q||p) of a 20-d diagonal Gaussian against the mean of log q(z) - log p(z) over n
    reparameterized draws, for growing n."""
    torch.manual_seed(0)
    mu, logvar = torch.randn(20) * 0.8, torch.randn(20) * 0.5 - 0.5
    analytic = float(kl_normal_std_normal(mu, logvar))
    counts = KL_SAMPLES(ctx)
    estimates, stderrs = [], []
    for n in counts:
        z = reparameterize(mu, logvar, n)
        terms = log_normal_pdf(z, mu, logvar) - log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
        estimates.append(float(terms.mean()))
        stderrs.append(float(terms.std() / n ** 0.5) if n > 1 else float("nan"))
    error = abs(estimates[-1] - analytic)
    fig = line_plot({"Monte-Carlo estimate": (counts, estimates)}, ctx.figures / "kl_check.png",
                    title="KL(q||p): analytic vs Monte Carlo (d=20)", xlabel="samples n", ylabel="KL (nats)",
                    hlines={f"analytic {analytic:.4f}": analytic}, logx=True)
    return {"analytic_kl": analytic, "samples": counts, "mc_estimates": estimates, "mc_stderr": stderrs,
            "abs_error_at_max": error, "figures": relative(ctx, [fig])}


def check_kl(s: dict) -> Check:
    error, se = s["abs_error_at_max"], s["mc_stderr"][-1]
    return Check(error <= 3 * se, f"|estimate - analytic| {error:.3g} at n = {s['samples'][-1]} (standard error "
                 f"{se:.3g})", "within 3 standard errors")


declare(Experiment(
    "kl-check", FAMILY, "analytic KL(q||p) vs its Monte-Carlo estimate as samples grow (Kingma & Welling 2014, App. B)",
    analyze=kl_check,
    claim="the Monte-Carlo estimate of KL(q||p) from reparameterized draws converges to the closed form of "
          "Kingma & Welling 2014, App. B (Homework 2, Problem 4e; MIT 6.S978 PS1, Problem 3b)",
    check=check_kl,
    examples=({"abs_error_at_max": 0.001, "mc_stderr": [float("nan"), 0.002], "samples": [1, 10]},
              {"abs_error_at_max": 0.1, "mc_stderr": [float("nan"), 0.002], "samples": [1, 10]})))


# ------------------------------------------------------------------ SGVB vs analytic-KL ELBO
ESTIMATOR_REPEATS = 200          # noise draws of each estimator on one test batch
ESTIMATOR_BATCH = 500            # test images in that batch (all of them when fewer)


def estimator_spread(model, x: torch.Tensor, repeats: int = ESTIMATOR_REPEATS, seed: int = 0) -> dict:
    """The two ELBO estimators of Kingma & Welling 2014, Sec. 2.3, on the batch ``x``, one z ~ q(z|x) per
    example: the generic SGVB estimator log p(x, z) - log q(z|x) (ibid., Eq. 6) and the one with the KL in
    closed form, log p(x|z) - KL(q(z|x) || p(z)) (ibid., Eqs. 7, 10). Each is drawn ``repeats`` times with
    fresh noise (both from the same z in a repeat, so their difference is the Monte-Carlo KL's error alone).

    Returned: the mean over repeats of each batch-mean estimate and its std across repeats; the mean
    difference SGVB - analytic with its standard error; and ``*_grad_var``, the total variance (summed over
    the encoder's parameters) of the estimate's gradient with respect to the encoder, the gradient that trains
    it (the decoder's gradient is the same for both estimators). The global random stream is left as it was."""
    model.eval()
    params = list(model.encoder.parameters())
    out: dict = {"repeats": repeats, "batch": len(x)}
    values = {}
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        for objective in ("sgvb", "analytic"):
            draws, total, squares = [], 0.0, 0.0
            for r in range(repeats):
                torch.manual_seed(seed + r)
                value = model.elbo(x, objective=objective, n_samples=1)["elbo"].mean()
                grad = torch.cat([g.flatten() for g in torch.autograd.grad(value, params)]).double()
                draws.append(value.detach())
                total, squares = total + grad, squares + grad ** 2
            mean = total / repeats
            grad_var = (squares / repeats - mean ** 2).sum() * repeats / (repeats - 1)     # unbiased, per parameter
            values[objective] = torch.stack(draws)                                         # [repeats]
            out |= {f"{objective}_mean": float(values[objective].mean()),
                    f"{objective}_std": float(values[objective].std()), f"{objective}_grad_var": float(grad_var)}
    diff = values["sgvb"] - values["analytic"]
    return out | {"difference_mean": float(diff.mean()), "difference_stderr": float(diff.std() / repeats ** 0.5)}


def sgvb_vs_analytic(ctx: Context) -> dict:
    summary, recons, figures, estimators = {}, [], [], {}
    note = NOTE(ctx)
    for name, run in ctx.runs.items():
        summary[name] = test_metrics(run, iwae_k=Both(full=500, quick=20)(ctx))
        batch = run.data("test").tensors[0][:ESTIMATOR_BATCH].to(device_of(run.model))
        estimators[name] = {k: round(v, 5) if isinstance(v, float) else v
                            for k, v in estimator_spread(run.model, batch).items()}
        x, _ = test_images(run, 12)
        recons.append(run.model.reconstruct(x))
        figures.append(labelled_grid(run.model.sample(64), ctx.figures / f"samples_{name}.png", nrow=8, note=note,
                                     title=f"64 samples of the VAE trained with the {name} ELBO"))
    figures.append(save_rows([x, *recons], ctx.figures / "reconstructions_sgvb_vs_analytic.png",
                             row_labels=["input", "SGVB", "analytic KL"], note=note,
                             title="test images and their reconstructions by the two VAEs"))
    gap = summary["sgvb"]["elbo_nats"] - summary["analytic"]["elbo_nats"]
    return {**summary, "test_elbo_difference_nats": round(gap, 4), "estimators": estimators,
            "note": "estimators: each trained VAE's test ELBO estimated by both estimators on the same "
                    f"{ESTIMATOR_BATCH} test images, {ESTIMATOR_REPEATS} noise draws each. The value's std can be "
                    "lower for SGVB (its KL noise is correlated with the reconstruction's, and is 0 when q is the "
                    "true posterior); the claim is about the encoder's gradient. The two trainings' test ELBOs "
                    "are for comparison and not checked",
            "figures": relative(ctx, figures)}


def check_estimators(s: dict) -> Check:
    e = s["estimators"]["analytic"]
    agree = abs(e["difference_mean"]) <= 3 * e["difference_stderr"]
    return Check(agree and e["analytic_grad_var"] < e["sgvb_grad_var"],
                 f"on the analytic-KL VAE over {e['repeats']} draws: mean ELBO SGVB {e['sgvb_mean']}, analytic "
                 f"{e['analytic_mean']} nats (difference {e['difference_mean']}, standard error "
                 f"{e['difference_stderr']}); variance of the encoder gradient SGVB {e['sgvb_grad_var']:.4g}, "
                 f"analytic {e['analytic_grad_var']:.4g}",
                 "|mean difference| <= 3 standard errors (one bound, two unbiased estimators) and "
                 "encoder-gradient variance analytic < SGVB")


def _estimator_example(difference: float, analytic_grad_var: float) -> dict:
    e = {"repeats": 200, "sgvb_mean": -20.0 + difference, "analytic_mean": -20.0, "difference_mean": difference,
         "difference_stderr": 0.01, "sgvb_grad_var": 10.0, "analytic_grad_var": analytic_grad_var}
    return {"estimators": {"analytic": e}}


BINARIZED_VAE = {"z_dim": 20, "view": "binarized"}
# --quick on 8x8 binarized digits: 40 short epochs of a wider, shallower MLP (measured: test KL ~5 nats;
# 8 epochs of batch 128 left the posterior collapsed at 0.1 nats and every decoded frame the same)
BINARIZED_QUICK = {"epochs": 40, "batch_size": 32, "hidden": (512, 256)}
declare(Experiment(
    "vae-sgvb-vs-analytic", FAMILY,
    "two VAEs, SGVB vs analytic-KL ELBO: reconstructions, samples, test ELBO, and the two estimators' means and "
    "spreads on one test batch (Kingma & Welling 2014, Sec. 2.3)",
    runs=[Setting(objective, "vae", {**BINARIZED_VAE, "objective": objective, "epochs": 30},
                  quick=BINARIZED_QUICK)
          for objective in ("sgvb", "analytic")],
    analyze=sgvb_vs_analytic, one_thread_quick=True,
    claim="the generic SGVB estimator and the analytic-KL estimator are unbiased estimators of the same ELBO, and "
          "the analytic one gives the encoder a lower-variance gradient: on one test batch their means agree and "
          "its gradient varies less across noise draws (Kingma & Welling 2014, Sec. 2.3, Eqs. 6-7; Homework 2, "
          "Problem 4b-d; PS1, Problems 2, 3c)",
    check=check_estimators,
    examples=(_estimator_example(0.005, 2.0), _estimator_example(0.5, 30.0))))


# ------------------------------------------------------------------ plain autoencoder, z = 2
def ae_mnist(ctx: Context) -> dict:
    run = ctx.runs["ae"]
    figures = make_figures(run, ctx.figures)
    x = run.data("test").tensors[0][:256]
    return {"test": test_metrics(run), "reconstruction_spread": reconstruction_spread(run.model, x),
            "figures": relative(ctx, figures)}


declare(Experiment(
    "ae-mnist", FAMILY, "autoencoder z=2: reconstructions and the 2-D grid of decoded latents",
    runs=[Setting("ae", "ae", {"z_dim": 2, "epochs": 30}, quick={"epochs": 20, "batch_size": 32})],
    analyze=ae_mnist, one_thread_quick=True,
    claim="an autoencoder with a 2-D code reconstructs each digit from its own code, so its reconstructions differ "
          "as the inputs do (MIT 6.S978 PS1, Problem 1)",
    check=lambda s: Check(s["reconstruction_spread"] >= 0.6, f"reconstruction spread {s['reconstruction_spread']}",
                          ">= 0.6 (std across reconstructions over std across inputs; 0 when collapsed)"),
    examples=({"reconstruction_spread": 0.8}, {"reconstruction_spread": 0.05})))


# ------------------------------------------------------------------ latent interpolation
def vae_interpolation(ctx: Context) -> dict:
    run = ctx.runs["vae"]
    fig = interpolation_figure(run, ctx.figures / "interpolation.png", note=NOTE(ctx))
    with torch.no_grad():
        images, alphas, labels = interpolation_images(run)
    change = float((images[1:] - images[:-1]).abs().mean())       # mean pixel change between frames
    test = test_metrics(run, iwae_k=Both(full=100, quick=20)(ctx))
    return {"labels": list(labels), "alphas": [round(float(a), 1) for a in alphas], "test": test,
            "mean_frame_change": round(change, 4), "figures": relative(ctx, [fig])}


declare(Experiment(
    "vae-interpolation", FAMILY,
    "decode (1-a) z1 + a z2 between two test digits of different labels, a = 0, 0.1, ..., 1",
    runs=[Setting("vae", "vae", {**BINARIZED_VAE, "epochs": 30}, quick=BINARIZED_QUICK)],
    analyze=vae_interpolation, one_thread_quick=True,
    claim="decoding the linear interpolation between the codes of two test digits of different labels gives "
          "frames that change from one digit to the other (Homework 2, Problem 4g)",
    check=lambda s: Check(s["test"]["kl_nats"] >= 2 and s["mean_frame_change"] >= 0.01,
                          f"test KL {s['test']['kl_nats']} nats, mean pixel change between frames "
                          f"{s['mean_frame_change']}", "KL >= 2 nats (the code is used) and change >= 0.01"),
    examples=({"test": {"kl_nats": 5.0}, "mean_frame_change": 0.05},
              {"test": {"kl_nats": 0.1}, "mean_frame_change": 0.0})))


# ------------------------------------------------------------------ CNN VAE on 4-bit MNIST
SAMPLE_EPOCHS = Both(full=[0, 10, 80], quick=[0, 2, 20])     # the course's epochs 0/10/80


def draw_samples(ctx: Context, s: Setting, trainer, epoch: int) -> None:
    labelled_grid(trainer.model.sample(64, draw=True), ctx.figures / f"samples_epoch{epoch:03d}.png", nrow=8,
                  title=f"64 samples (z ~ N(0, I), x ~ p(x|z)) after epoch {epoch}",
                  note=NOTE(ctx))


def categorical_cnn(ctx: Context) -> dict:
    run, run2 = ctx.runs["z20"], ctx.runs["z2"]
    record = evaluate(run, options={"iwae_k": 1}, extras=False)      # elbo_* is the ELBO (the course reference's bound)
    run.folder.write_eval(record)            # the training-curves figure marks the test value
    test = {k: round(float(v), 4) for k, v in record["metrics"].items()}
    figures = make_figures(run, ctx.figures / "z20")
    figures.append(latent_grid_figure(run2, ctx.figures / "manifold_z2.png", note=NOTE(ctx),
                                      title=f"z=2 {run2.model.config.arch.upper()} VAE: decoded latent grid "
                                            f"(inverse normal CDF of an even grid)"))
    curve = {r["epoch"]: round(r["val/elbo_bpd"], 4) for r in run.state.history if "val/elbo_bpd" in r}
    first = _first_train_bpd(run)
    summary = {"arch": run.model.config.arch, "test_elbo_bpd_z20": test["elbo_bpd"],
               "test_kl_nats_z20": test["kl_nats"], "val_elbo_bpd_by_epoch": curve, "first_logged_train_bpd": first,
               "sample_epochs": SAMPLE_EPOCHS(ctx),
               "test_z2": test_metrics(run2, iwae_k=1),
               "course_reference": "~4 bpd at start, < 2.0 after 2 epochs, ~0.52 after 80 epochs (28x28 MNIST)"}
    return summary | {"data": run.data_name, "figures": relative(ctx, figures)}


def check_categorical_cnn(s: dict) -> Check:
    after2, test = s["val_elbo_bpd_by_epoch"].get(2, s["val_elbo_bpd_by_epoch"].get("2")), s["test_elbo_bpd_z20"]
    return Check(s["data"] == "mnist" and s["arch"] == "cnn" and after2 is not None and after2 < 2.0 and test <= 0.6,
                 f"{s['arch']} on {s['data']}: validation ELBO {after2} bpd after 2 epochs, test {test} bpd",
                 "a CNN on 4-bit MNIST: < 2.0 bpd after 2 epochs and <= 0.6 at the end (course reference)")


def _first_train_bpd(run):
    rows = read_jsonl(run.folder.metrics_jsonl)
    return next((r["bpd"] for r in rows if r.get("split") == "train" and "bpd" in r), None)


CNN_4BIT = {"arch": "cnn", "view": "quantized", "levels": 16, "lr": 1e-3, "batch_size": 128}
# --quick: the CNN collapses its posterior on 8x8 digits within a minute (measured: KL 0.00 nats after
# 10 epochs at lr 1e-3 or 3e-3, 16 or 32 channels), so the quick run uses an MLP, which does not.
CNN_QUICK = {"arch": "mlp", "hidden": (512, 256), "epochs": 20, "batch_size": 32}
declare(Experiment(
    "vae-categorical-cnn", FAMILY,
    "CNN VAE on 4-bit MNIST, z=20: bpd curves, samples at epochs 0/10/80, the z=2 manifold (Kingma & Welling, Fig. 4)",
    runs=[Setting("z20", "vae", {**CNN_4BIT, "z_dim": 20, "epochs": 80}, quick=CNN_QUICK,
                  callbacks=snapshot_callbacks(SAMPLE_EPOCHS, draw_samples)),
          Setting("z2", "vae", {**CNN_4BIT, "z_dim": 2, "epochs": 40}, quick=CNN_QUICK)],
    analyze=categorical_cnn, one_thread_quick=True,
    claim="a CNN VAE with z = 20 on 4-bit MNIST goes below 2.0 bits/dim after 2 epochs and to about 0.52 after 80 "
          "(UvA Practical 3, Q1.7)",
    check=check_categorical_cnn,
    quick_cannot="the reference is for 28x28 MNIST, and the quick run swaps the CNN for an MLP: "
                 "`genlab experiment run vae-categorical-cnn --data-dir DIR`",
    examples=({"data": "mnist", "arch": "cnn", "val_elbo_bpd_by_epoch": {2: 0.67}, "test_elbo_bpd_z20": 0.52},
              {"data": "mnist", "arch": "cnn", "val_elbo_bpd_by_epoch": {2: 2.4}, "test_elbo_bpd_z20": 0.9}),
    quick_note="an MLP instead of the CNN (on 8x8 digits the CNN's posterior collapses within a minute: KL 0.00 "
               "nats), 20 epochs; the MNIST bpd reference is not checked"))


# ------------------------------------------------------------------ Bernoulli MLP VAE
def bernoulli_snapshots(ctx: Context, s: Setting) -> list:
    """Reconstructions of 10 held-out digits at the declared epochs: one figure per epoch and one with
    every epoch so far as a row."""
    rows: list[tuple[str, torch.Tensor]] = []

    def draw(ctx, s, trainer, epoch):
        x = held_out(trainer, 10)
        r = trainer.model.reconstruct(x)
        rows.append((f"epoch {epoch}", r.cpu()))
        note = NOTE(ctx)
        save_rows([x, r], ctx.figures / f"reconstructions_epoch{epoch:03d}.png", row_labels=["input", "reconstruction"],
                  title=f"held-out digits and their reconstructions after epoch {epoch}", note=note)
        save_rows([x.cpu(), *(t for _, t in rows)], ctx.figures / "reconstructions_by_epoch.png",
                  row_labels=["input", *(k for k, _ in rows)], note=note,
                  title="reconstructions of the same held-out digits through training")
    return snapshot_callbacks(RECON_EPOCHS, draw)(ctx, s)


def bernoulli_mlp(ctx: Context) -> dict:
    run = ctx.runs["vae"]
    figures = make_figures(run, ctx.figures / "vae")
    x = run.data("test").tensors[0][:256]
    return {"reconstruction_epochs": RECON_EPOCHS(ctx), "test": test_metrics(run, iwae_k=Both(full=100, quick=20)(ctx)),
            "reconstruction_spread": reconstruction_spread(run.model, x),
            "figures": relative(ctx, [ctx.figures / "reconstructions_by_epoch.png", *figures])}


RECON_EPOCHS = Both(full=[0, 10, 80], quick=[0, 5, 40])
declare(Experiment(
    "vae-bernoulli-mlp", FAMILY,
    "Bernoulli VAE, 3x256 MLP, z=20, batch 64 on binarized MNIST: reconstructions at epochs 0/10/80",
    runs=[Setting("vae", "vae", {"hidden": (256, 256, 256), "z_dim": 20, "view": "binarized", "batch_size": 64,
                                 "epochs": 80}, quick={"epochs": 40, "batch_size": 32},
                  callbacks=bernoulli_snapshots)],
    analyze=bernoulli_mlp, one_thread_quick=True,
    claim="a Bernoulli VAE (3 x 256 MLP, z = 20) on binarized digits uses its code: the test KL is well above "
          "zero and each input gets its own reconstruction (MVA assignment, Questions 9-10)",
    check=lambda s: Check(s["test"]["kl_nats"] >= 2 and s["reconstruction_spread"] >= 0.5,
                          f"test KL {s['test']['kl_nats']} nats, reconstruction spread {s['reconstruction_spread']}",
                          "KL >= 2 nats and spread >= 0.5 (0 when every reconstruction is the mean digit)"),
    examples=({"test": {"kl_nats": 20.0}, "reconstruction_spread": 0.8},
              {"test": {"kl_nats": 0.1}, "reconstruction_spread": 0.02}),
    quick_note="40 epochs of batch 32 on 8x8 digits (6 epochs of batch 64 left the posterior collapsed: every "
               "reconstruction the same mean digit)"))
