"""The diffusion experiments (Ho et al. 2020; Kingma et al. 2021; Lu et al. 2022; Ho & Salimans 2022).

* ``diffusion-forward``: a noising strip over t, the marginal checked by iterating single steps, the
  posterior checked against Bayes' rule on a grid, SNR(t) of the linear and cosine schedules beside the
  per-image SNR ||mu||^2 / tr(Sigma) of q(x_t | x_0).
* ``diffusion-bound-terms``: the bound's terms L_0, L_t-1, L_T against t for Gaussian data and its exact
  denoiser, closed form against the DDPM code's Monte-Carlo estimate.
* ``sampler-oracle``: every sampler driven by the closed-form optimal denoiser of a Gaussian mixture:
  how far its samples are from the data distribution, against the number of steps (no training).
* ``ddpm-mnist``: DDPM training with sample grids through training, FID (local features), bits/dim.
* ``sampler-compare``: every sampler x {10, 20, 100, 1000} steps from one fixed seed on one trained
  model: the grid, and FID and seconds per 64 images for each cell. With ``--pretrained DIR`` (a local
  Stable Diffusion pipeline, optional extra) the same comparison on a prompt, genlab's samplers in
  diffusers' pipeline (``models/diffusion/pretrained.py``): the grid and seconds per image, no FID.
* ``negative-prompt``: a class-conditional model, the same seed with and without a negative
  prompt, and a guidance-scale sweep scored by the local classifier.
"""
from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass, fields

import torch
from torch.distributions import Normal

from genlab.config import field, flag_name, require
from genlab.data.registry import load_dataset
from genlab.eval.fid import (
    features_and_probs,
    frechet_distance,
    gaussian_stats,
    get_classifier,
    reference_subset,
    sample_quality,
    unit_view,
)
from genlab.experiments.common import Both, relative, snapshot_callbacks, test_metrics
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare
from genlab.families.diffusion.oracle import GaussianMixture, OracleDenoiser, distribution_errors
from genlab.families.diffusion.pretrained import load_pipeline, use_sampler
from genlab.families.diffusion.samplers import SAMPLERS, make_sampler, sample_loop
from genlab.families.diffusion.schedule import NoiseSchedule
from genlab.maths.densities import bits_per_dim
from genlab.viz.figures import labelled_grid, line_plot

STRIP_T = (0, 25, 50, 100, 200, 400, 600, 800, 999)
FORWARD_DATA = Both(full="mnist", quick="digits")
CHAINS = Both(full=20000, quick=2000)            # Monte-Carlo chains of the marginal check


# ----------------------------------------------------------------- diffusion-forward
def forward_process(ctx: Context) -> dict:
    """Figures and numerical checks of the forward process (no training)."""
    data = FORWARD_DATA(ctx)
    images = load_dataset(data, "test", **({"data_dir": ctx.data_dir} if ctx.data_dir and data != "digits" else {}))
    x0 = images.tensors[0][:4] * 2 - 1                                          # [4, C, H, W] in [-1, 1]
    g = torch.Generator().manual_seed(0)
    paths, rows = [], []
    for kind in ("linear", "cosine"):
        sch = NoiseSchedule.make(kind, 1000, dtype=torch.float64)
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        for img, e in zip(x0.double(), eps):
            t = torch.tensor(STRIP_T)
            rows.append(sch.q_sample(img.expand(len(t), *img.shape), t, e.expand(len(t), *e.shape)))
    strip = ((torch.cat(rows) + 1) / 2).clamp(0, 1).float()
    paths.append(labelled_grid(strip, ctx.figures / "noising_strip.png", nrow=len(STRIP_T),
                               title="x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps",
                               row_labels=[f"{k} #{i}" for k in ("linear", "cosine") for i in range(4)],
                               col_labels=[f"t={t}" for t in STRIP_T]))

    # the marginal: iterate q(x_t | x_{t-1}) on many draws and compare the moments with Eq. 4
    n = CHAINS(ctx)
    sch = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
    x = torch.full((n, 1), 0.8, dtype=torch.float64)
    checkpoints, it_mean, it_std, cf_mean, cf_std = [], [], [], [], []
    for i in range(1000):
        x = sch.q_step(x, torch.full((n,), i), torch.randn(x.shape, generator=g, dtype=torch.float64))
        if i % 50 == 0 or i == 999:
            m, v = sch.q_mean_variance(torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([i]))
            checkpoints.append(i + 1)
            it_mean.append(float(x.mean()))
            it_std.append(float(x.std()))
            cf_mean.append(float(m))
            cf_std.append(float(v.sqrt()))
    se = max(cf_std) / math.sqrt(n)
    paths.append(line_plot({"mean, iterated": (checkpoints, it_mean), "mean, closed form": (checkpoints, cf_mean),
                            "std, iterated": (checkpoints, it_std), "std, closed form": (checkpoints, cf_std)},
                           ctx.figures / "marginal_check.png", "q(x_t | x_0 = 0.8): iterated steps vs Eq. 4",
                           "t", "value", note=f"{n} chains; Monte-Carlo standard error about {se:.3f}"))
    marginal_err = max(abs(a - b) for a, b in zip(it_mean + it_std, cf_mean + cf_std))

    # the posterior: Bayes' rule on a grid against Eq. 6-7
    post_err = 0.0
    grid = torch.linspace(-6, 6, 120001, dtype=torch.float64)
    for i in (1, 10, 100, 500, 999):
        x0v, xtv = 0.6, -0.4
        abar_prev = float(sch.alphas_cumprod[i - 1])
        xt_value = torch.tensor(xtv, dtype=torch.float64)
        logw = (Normal(sch.alphas[i] ** 0.5 * grid, sch.betas[i] ** 0.5).log_prob(xt_value)
                + Normal(abar_prev ** 0.5 * x0v, (1 - abar_prev) ** 0.5).log_prob(grid))
        w = torch.softmax(logw, 0)
        mean_num = float((w * grid).sum())
        var_num = float((w * (grid - mean_num) ** 2).sum())
        mean, var = sch.posterior_mean_variance(torch.tensor([[x0v]], dtype=torch.float64),
                                                torch.tensor([[xtv]], dtype=torch.float64), torch.tensor([i]))
        post_err = max(post_err, abs(float(mean) - mean_num), abs(float(var) - var_num) / var_num)

    # SNR(t) of both schedules, and the per-example SNR ||mu||^2 / tr(Sigma) of q(x_t | x_0) on the images
    t = list(range(1, 1001))
    steps = torch.arange(1000)
    snr = {f"SNR(t), {kind}": (t, NoiseSchedule.make(kind, 1000, dtype=torch.float64).snr(steps).tolist())
           for kind in ("linear", "cosine")}
    flat = x0.double().flatten(1)                                               # [4, C, H, W] -> [4, D]
    power = (flat ** 2).mean(1)                                                 # ||x_0||^2 / D per image
    ratio_err = 0.0
    for i, img in enumerate(flat):
        mean, var = sch.q_mean_variance(img.expand(1000, -1), steps)           # [1000, D] each (linear)
        per_example = (mean ** 2).sum(1) / var.sum(1)                          # ||mu||^2 / tr(Sigma), [1000]
        ratio_err = max(ratio_err, float((per_example / sch.snr(steps) / power[i] - 1).abs().max()))
        snr[f"image #{i}: ||mu||^2 / tr(Sigma), linear (||x_0||^2/D = {float(power[i]):.2f})"] = (
            t, per_example.tolist())
    paths.append(line_plot(snr, ctx.figures / "snr.png", "SNR(t) = abar/(1 - abar) and per image ||mu||^2 / tr(Sigma)",
                           "t", "SNR", logy=True,
                           note="||mu||^2 / tr(Sigma) of q(x_t | x_0) = SNR(t) ||x_0||^2 / D: each image's curve is "
                                "SNR(t) shifted by its mean power"))
    return {"figures": relative(ctx, paths), "marginal_max_error": round(marginal_err, 4),
            "marginal_standard_error": round(se, 4), "posterior_max_error": post_err,
            "snr_power": [round(float(p), 4) for p in power], "snr_ratio_max_error": ratio_err}


def check_forward(s: dict) -> Check:
    m, se, post = s["marginal_max_error"], s["marginal_standard_error"], s["posterior_max_error"]
    snr = s["snr_ratio_max_error"]
    return Check(m < 5 * se and post < 1e-4 and snr < 1e-9,
                 f"marginal error {m} (standard error {se}), posterior error {post:.2g}, per-image SNR / SNR(t) "
                 f"off ||x_0||^2/D by {snr:.2g}",
                 "marginal within 5 standard errors, posterior within 1e-4 of Bayes' rule, per-image SNR "
                 "= SNR(t) ||x_0||^2/D within 1e-9")


declare(Experiment("diffusion-forward", "diffusion",
                   "forward process: noising strip, marginal vs iterated steps, posterior vs Bayes, SNR "
                   "(Ho et al. 2020, Eqs. 4, 6-7)", analyze=forward_process, one_thread_quick=True,
                   claim="iterating the single steps q(x_t | x_t-1) gives the closed-form marginal q(x_t | x_0), "
                         "Bayes' rule gives the closed-form posterior q(x_t-1 | x_t, x_0) (Ho et al. 2020, Eqs. 4, "
                         "6-7), and the signal-to-noise ratio ||mu||^2 / tr(Sigma) of q(x_t | x_0) on each image is "
                         "SNR(t) = abar_t / (1 - abar_t) times its power ||x_0||^2 / D (Kingma et al. 2021, Sec. 2) "
                         "(midterm Problem 5a-c; MVA assignment, Questions 14 and 16)",
                   check=check_forward,
                   examples=({"marginal_max_error": 0.01, "marginal_standard_error": 0.007,
                              "posterior_max_error": 1e-9, "snr_ratio_max_error": 1e-15},
                             {"marginal_max_error": 0.2, "marginal_standard_error": 0.007,
                              "posterior_max_error": 1e-9, "snr_ratio_max_error": 1e-15}),
                   quick_note="same checks with fewer Monte-Carlo chains, on the 8x8 digits"))


# ----------------------------------------------------------------- diffusion-bound-terms
BOUND_MEANS = torch.linspace(-0.3, 0.3, 16, dtype=torch.float64)   # x_0 ~ N(mean, diag(std^2)), D = 16
BOUND_STDS = torch.linspace(0.1, 0.4, 16, dtype=torch.float64)
BOUND_DRAWS = Both(full=1024, quick=128)         # Monte-Carlo draws of (x_0, x_t) per timestep


def gaussian_bound_terms(schedule: NoiseSchedule, mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact terms of the bound -E log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0 (Ho et al. 2020, Eq. 5) for
    data x_0 ~ N(mean, diag(std^2)) and the optimal model: the reverse mean mu~_t(x_t, E[x_0 | x_t]) with the
    schedule's reverse variances (``sigma_t^2 = beta~_t`` for the "small" variance), and the continuous Gaussian
    decoder p(x_0 | x_1) = N(E[x_0 | x_1], sigma_1^2). With v_t = Var(x_0 | x_t) = s^2 (1 - abar_t) /
    (abar_t s^2 + 1 - abar_t) per dimension,

      L_{t-1} = sum_d [log(sigma_t^2 / beta~_t) + beta~_t / sigma_t^2 - 1 + c_t^2 v_t / sigma_t^2] / 2,
      c_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) (the coefficient of x_0 in mu~_t, Eq. 7);

    for sigma_t^2 = beta~_t this is (SNR(t-1) - SNR(t)) / 2 sum_d v_t, the weighted denoising error of
    Kingma et al. 2021 (VDM), the discrete-time loss; L_0 = sum_d [log(2 pi sigma_1^2) + v_1 / sigma_1^2] / 2;
    L_T = KL(q(x_T | x_0) || N(0, I)) averaged over x_0. Returns ``diffusion`` [T-1] (t = 2..T), ``L0``, ``LT``
    and ``entropy``, the data's differential entropy sum_d log(2 pi e s^2) / 2, which the bound exceeds."""
    abar = schedule.alphas_cumprod.double().reshape(-1, 1)                      # [T] -> [T, 1]
    abar_prev = schedule.alphas_cumprod_prev.double().reshape(-1, 1)
    beta = schedule.betas.double().reshape(-1, 1)
    s2 = std.double() ** 2
    v = s2 * (1 - abar) / (abar * s2 + 1 - abar)                                # [T, D]
    tilde = schedule.posterior_variance.double().reshape(-1, 1)
    sigma2 = schedule.reverse_variance.double().reshape(-1, 1)
    coef2 = abar_prev * beta ** 2 / (1 - abar) ** 2
    kl = 0.5 * (torch.log(sigma2[1:] / tilde[1:]) + tilde[1:] / sigma2[1:] - 1 + coef2[1:] * v[1:] / sigma2[1:])
    a_T = abar[-1]
    prior = 0.5 * (-torch.log(1 - a_T) + (1 - a_T) + a_T * (mean.double() ** 2 + s2) - 1)
    return {"diffusion": kl.sum(1), "L0": (0.5 * (torch.log(2 * math.pi * sigma2[0]) + v[0] / sigma2[0])).sum(),
            "LT": prior.sum(), "entropy": (0.5 * torch.log(2 * math.pi * math.e * s2)).sum()}


def monte_carlo_bound_terms(schedule: NoiseSchedule, data: GaussianMixture, draws: int, generator: torch.Generator,
                            denoiser=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each term of the bound estimated by the code that scores a trained DDPM (``NoiseSchedule.vlb_term`` and
    ``prior_kl``, as ``DDPM.vlb_nats``) with ``denoiser`` (default: the closed-form optimal one) in place of the
    network: ``draws`` pairs (x_0, x_t) per timestep. L_0 is scored by the continuous Gaussian decoder (the data
    are not on grey levels). Returns the per-timestep means [T] (index 0: L_0), their standard errors [T], and
    L_T."""
    T = schedule.num_steps
    denoiser = denoiser or OracleDenoiser(data, schedule)
    block = max(1, 2 ** 16 // draws)                                            # timesteps per batch
    means, errors, prior = [], [], []
    for start in range(0, T, block):
        t = torch.arange(start, min(T, start + block)).repeat_interleave(draws)     # [k*draws]
        x0 = data.sample(len(t), generator)[0]                                  # [k*draws, D]
        xt = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator, dtype=torch.float64))
        out = denoiser(xt, t)
        kl = schedule.vlb_term(out, x0, xt, t, levels=256)
        mean_p, var_p = schedule.p_mean_variance(out, xt, t)
        decoder = -Normal(mean_p, var_p ** 0.5).log_prob(x0).sum(1)
        terms = torch.where(t == 0, decoder, kl).reshape(-1, draws)             # [k*draws] -> [k, draws]
        means.append(terms.mean(1))
        errors.append(terms.std(1) / math.sqrt(draws))
        prior.append(schedule.prior_kl(x0))
    return torch.cat(means), torch.cat(errors), torch.cat(prior).mean()


def bound_terms(ctx: Context) -> dict:
    """The bound's terms against t for Gaussian data and its exact denoiser: closed form against the code's
    Monte-Carlo estimate, and where along t the bound lies."""
    sch = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
    exact = gaussian_bound_terms(sch, BOUND_MEANS, BOUND_STDS)
    data = GaussianMixture.gaussian(BOUND_MEANS, BOUND_STDS)
    n = BOUND_DRAWS(ctx)
    mc, mc_se, prior_mc = monte_carlo_bound_terms(sch, data, n, torch.Generator().manual_seed(0))
    d = len(BOUND_MEANS)
    total = float(exact["L0"] + exact["diffusion"].sum() + exact["LT"])
    total_mc = float(mc.sum() + prior_mc)
    se = float((mc_se ** 2).sum().sqrt())
    diffusion = exact["diffusion"]
    share = torch.cumsum(diffusion, 0) / diffusion.sum()                         # [T-1], t = 2..T
    tenth = sch.num_steps // 10
    t = list(range(2, sch.num_steps + 1))
    paths = [line_plot({f"L_t-1, Monte Carlo ({n} draws per t, NoiseSchedule.vlb_term)": (t, mc[1:].tolist()),
                        "L_t-1, closed form": (t, diffusion.tolist())},
                       ctx.figures / "bound_terms.png", "terms of the bound against t (Gaussian data, exact denoiser)",
                       "t", "nats", logx=True, logy=True, hlines={"L_T (prior matching)": float(exact["LT"])},
                       note=f"L_0 (reconstruction) = {float(exact['L0']):.2f} nats (Monte Carlo {float(mc[0]):.2f}); "
                            f"sum of L_t-1 = {float(diffusion.sum()):.2f}; L_T = {float(exact['LT']):.2g}; "
                            f"D = {d}"),
             line_plot({"share of sum_t L_t-1 at or below t": (t, share.tolist())},
                       ctx.figures / "bound_share.png", "where along t the consistency terms lie", "t", "share",
                       logx=True, hlines={"half": 0.5})]
    return {"figures": relative(ctx, paths), "dims": d, "draws_per_t": n,
            "L0": round(float(exact["L0"]), 4), "L0_monte_carlo": round(float(mc[0]), 4),
            "LT": float(exact["LT"]), "LT_monte_carlo": float(prior_mc),
            "diffusion_sum": round(float(diffusion.sum()), 4),
            "diffusion_sum_monte_carlo": round(float(mc[1:].sum()), 4),
            "bound_nats": round(total, 4), "bound_nats_monte_carlo": round(total_mc, 4),
            "monte_carlo_standard_error": round(se, 4),
            "bound_bits_per_dim": round(float(bits_per_dim(torch.tensor(total), (d,))), 4),
            "entropy_nats": round(float(exact["entropy"]), 4),
            "gap_nats_per_dim": round((total - float(exact["entropy"])) / d, 4),
            "share_first_tenth": round(float(share[tenth - 2]), 4), "share_first_tenth_t": tenth,
            "share_t10": round(float(share[8]), 4)}


def check_bound_terms(s: dict) -> Check:
    total, mc, se = s["bound_nats"], s["bound_nats_monte_carlo"], s["monte_carlo_standard_error"]
    prior_share = s["LT"] / s["diffusion_sum"]
    gap, share = s["gap_nats_per_dim"], s["share_first_tenth"]
    return Check(abs(mc - total) <= 4 * se and prior_share < 1e-4 and gap >= 0 and share > 0.5,
                 f"bound {total} nats closed form, {mc} ± {se} by the DDPM code; L_T / sum L_t-1 = {prior_share:.2g}; "
                 f"bound - entropy = {gap} nats/dim; {share} of sum L_t-1 at t <= {s['share_first_tenth_t']}",
                 "the code's estimate within 4 standard errors of the closed form, L_T < 1e-4 of the consistency "
                 "terms, the bound above the data's entropy, and over half of the consistency terms in the first "
                 "tenth of t")


declare(Experiment("diffusion-bound-terms", "diffusion",
                   "the bound's reconstruction, prior-matching and consistency terms against t, for Gaussian data "
                   "and its exact denoiser: closed form vs the DDPM code's estimate", analyze=bound_terms,
                   one_thread_quick=True,
                   claim="for Gaussian data and its exact denoiser, the bound of Ho et al. 2020 (Eq. 5) splits into a "
                         "reconstruction term L_0, a prior-matching term L_T that is negligible, and consistency "
                         "terms L_t-1 = (SNR(t-1) - SNR(t)) / 2 E||x_0 - E[x_0 | x_t]||^2 (Kingma et al. 2021) "
                         "concentrated at small t; the DDPM code's estimate of the bound matches the closed form "
                         "(MVA assignment, Questions 11-13)",
                   check=check_bound_terms,
                   examples=({"bound_nats": 8.02, "bound_nats_monte_carlo": 8.2, "monte_carlo_standard_error": 0.5,
                              "LT": 3e-5, "diffusion_sum": 57.2, "gap_nats_per_dim": 0.55, "share_first_tenth": 0.94,
                              "share_first_tenth_t": 100},
                             {"bound_nats": 8.02, "bound_nats_monte_carlo": 12.0, "monte_carlo_standard_error": 0.5,
                              "LT": 3e-5, "diffusion_sum": 57.2, "gap_nats_per_dim": 0.55, "share_first_tenth": 0.94,
                              "share_first_tenth_t": 100}),
                   quick_note="128 Monte-Carlo draws per timestep instead of 1024; the closed form is the same"))


# ----------------------------------------------------------------- sampler-oracle
ORACLE_STEPS = Both(full=(10, 30, 100, 300, 1000), quick=(10, 30, 100))
ORACLE_SAMPLES = Both(full=20000, quick=4000)


def oracle_curves(ctx: Context) -> dict:
    """Every sampler with the exact E[eps | x_t] of a 1-D Gaussian mixture: variance and weight errors vs steps."""
    steps = ORACLE_STEPS(ctx)
    n = ORACLE_SAMPLES(ctx)
    sch = NoiseSchedule.make("linear", 1000)
    mix = GaussianMixture([0.3, 0.7], [[-1.5], [1.0]], [0.2, 0.3])
    table, var_series, w_series = {}, {}, {}
    for name in SAMPLERS:
        rows = []
        for k in steps:
            g = torch.Generator().manual_seed(0)
            x = sample_loop(make_sampler(name, sch), OracleDenoiser(mix, sch), torch.randn(n, 1, generator=g), k, g)
            rows.append(distribution_errors(x, mix))
        table[name] = {str(k): {m: round(v, 4) for m, v in r.items()} for k, r in zip(steps, rows)}
        var_series[name] = (list(steps), [max(r["var_rel_error"], 1e-4) for r in rows])
        w_series[name] = (list(steps), [max(r["weight_error"], 1e-4) for r in rows])
    floor = math.sqrt(2 / n)
    paths = [line_plot(var_series, ctx.figures / "oracle_variance_error.png",
                       "samplers with the exact denoiser: variance error", "steps", "relative variance error",
                       logx=True, logy=True, hlines={"Monte-Carlo level": floor}),
             line_plot(w_series, ctx.figures / "oracle_weight_error.png",
                       "samplers with the exact denoiser: mixture-weight error", "steps", "abs. weight error",
                       logx=True, logy=True, hlines={"Monte-Carlo level": 1 / math.sqrt(n)})]
    best = {name: table[name][str(steps[-1])]["var_rel_error"] for name in SAMPLERS}
    return {"figures": relative(ctx, paths), "errors": table, "samples": n,
            "variance_error_at_most_steps": best, "most_steps": steps[-1]}


def check_oracle(s: dict) -> Check:
    worst = max(s["variance_error_at_most_steps"], key=s["variance_error_at_most_steps"].get)
    error = s["variance_error_at_most_steps"][worst]
    return Check(error < 0.05, f"largest variance error at {s['most_steps']} steps: {worst} {error}",
                 "every sampler below 5%")


declare(Experiment("sampler-oracle", "diffusion",
                   "every sampler driven by the closed-form optimal denoiser of a Gaussian mixture: error vs steps",
                   analyze=oracle_curves, one_thread_quick=True, quick_note="steps 10/30/100 and 4000 samples",
                   claim="driven by the exact denoiser E[eps | x_t] of a Gaussian mixture, every sampler's output "
                         "approaches the mixture as its steps grow: relative variance error below 5% "
                         "(Ho et al. 2020; Song et al. 2021; Lu et al. 2022)",
                   check=check_oracle,
                   examples=({"variance_error_at_most_steps": {"ddpm": 0.01, "ddim": 0.02}, "most_steps": 100},
                             {"variance_error_at_most_steps": {"ddpm": 0.01, "ddim": 0.2}, "most_steps": 100})))


# ----------------------------------------------------------------- training experiments
# 15 CPU-minutes on MNIST: width 16 and batch 32 learned fastest per second in 2.5-minute trials
# (FID 275 vs 395 at batch 64 and 1057 for width 32 at batch 128, benchmarks/bench_diffusion.py quality);
# the steps are what 2 threads train in 15 minutes (25,672 steps, FID 23.5 with DDPM-1000), EMA 0.999 and the
# learning rate annealed to zero as in that run
DDPM_FULL = {"channels": 16, "mults": (1, 2, 2), "batch_size": 32, "lr": 2e-3, "ema": 0.999,
             "schedule": "warmup-cosine", "warmup_steps": 200, "max_steps": 24000, "eval_every": 0}
DDPM_QUICK = {"channels": 16, "mults": (1, 2), "timesteps": 1000, "batch_size": 64, "lr": 2e-3, "ema": 0.99,
              "max_steps": 200, "schedule": "constant", "warmup_steps": 0}


def _draw_grid(ctx, s, trainer, epoch):
    """Samples through training (the EMA weights when the run keeps them), always from the same noise."""
    model = getattr(trainer, "eval_model", None) or trainer.model
    noise = torch.randn((16, *model.data_info.shape), generator=torch.Generator().manual_seed(0))
    images = model.sample(16, generator=torch.Generator().manual_seed(1), noise=noise)
    labelled_grid(images, ctx.figures / f"samples_epoch{epoch:03d}.png", nrow=8,
                  title=f"{_sampler_title(model)}, epoch {epoch} (step {trainer.state.global_step})")


def _sampler_title(model) -> str:
    """"dpm++2m-sde, 25 steps": the model's default sampler, which draws the grids and the FID samples."""
    return f"{model.config.sampler}, {model.config.sample_steps} steps"


SNAPSHOTS = Both(full=[0, 1, 3, 6, 12], quick=[0, 5, 10])   # full: through the ~13 epochs of 24k steps


FID_SAMPLES = Both(full=2000, quick=300)
VLB_SAMPLES = Both(full=8, quick=2)
MNIST_TARGET = Both(full=True, quick=False)      # the 20-step solver comparison: full runs only


def analyze_ddpm(ctx: Context) -> dict:
    run = ctx.runs["ddpm"]
    images = run.model.sample(64, generator=torch.Generator().manual_seed(0))
    paths = [labelled_grid(images, ctx.figures / "samples_final.png", nrow=8, title=_sampler_title(run.model))]
    q = sample_quality(run, n=FID_SAMPLES(ctx), progress=False, data_dir=ctx.data_dir)
    m = test_metrics(run, vlb_samples=VLB_SAMPLES(ctx))
    fid = round(q["fid"], 2)
    return {"figures": relative(ctx, paths), "fid_local": fid, "fid_real_floor": round(q["fid_real_floor"], 2),
            "fid_samples": q["fid_samples"], "bpd": m.get("bpd"), "nll_nats": m.get("nll_nats"),
            "classifier_score": round(q["classifier_score"], 3),
            "classifier_score_data": round(q["classifier_score_data"], 3)}


def check_ddpm(s: dict) -> Check:
    fid, floor, score, data = s["fid_local"], s["fid_real_floor"], s["classifier_score"], s["classifier_score_data"]
    return Check(fid <= 5 * floor and score >= 0.5 * data,
                 f"FID (local) {fid}, real floor {floor}; classifier score {score} (real images {data})",
                 "FID <= 5x the real floor and classifier score >= half the real images' (samples are digits)")


declare(Experiment("ddpm-mnist", "diffusion", "DDPM on MNIST: samples through training, FID (local), bits/dim",
                   runs=[Setting("ddpm", "ddpm", DDPM_FULL, quick=DDPM_QUICK,
                                 callbacks=snapshot_callbacks(SNAPSHOTS, _draw_grid))],
                   analyze=analyze_ddpm, one_thread_quick=True,
                   claim="a DDPM (Ho et al. 2020) trained by denoising samples digits: the local classifier "
                         "recognises them and their FID is within a few times the real-vs-real floor "
                         "(midterm Problem 5d)",
                   check=check_ddpm,
                   examples=({"fid_local": 21.6, "fid_real_floor": 5.2, "classifier_score": 8.0,
                              "classifier_score_data": 9.0},
                             {"fid_local": 120.0, "fid_real_floor": 5.2, "classifier_score": 2.0,
                              "classifier_score_data": 9.0}),
                   quick_note="200 steps of a tiny U-Net on the 8x8 digits (about 10 s): digit-like samples; "
                              "the FID is against the 8x8 digits, not MNIST"))


def _fid(run, samples: torch.Tensor, ctx: Context) -> float:
    classifier, _ = get_classifier(run.data_name, run.data_config, progress=False)
    ref = reference_subset(unit_view(run.data_name, run.data_config, "test").tensors[0], len(samples))
    return frechet_distance(*gaussian_stats(features_and_probs(classifier, samples)[0]),
                            *gaussian_stats(features_and_probs(classifier, ref)[0]))


SEED_PROMPT = "A photograph of an astronaut riding a horse on Mars, high resolution, high definition."


@dataclass
class SamplerCompareOptions:
    pretrained: str | None = field(
        None, "a local Stable Diffusion pipeline folder in diffusers format (needs `pip install "
              "'genlab[stable-diffusion]'`): instead of training a model, run that pipeline with every genlab "
              "sampler swapped in for its scheduler, from one seed; writes the grid and seconds per image (no FID)")
    prompt: str = field(SEED_PROMPT, "the prompt (with --pretrained); the default: the Stable Diffusion example")
    negative_prompt: str = field("", "negative prompt (with --pretrained)")
    guidance: float = field(7.5, "classifier-free guidance scale w (with --pretrained; <= 1: no guidance)")
    steps: tuple[int, ...] | None = field(
        None, "numbers of sampling steps, one column each (with --pretrained); None: 10 100 1000, or 10 with --quick")
    height: int | None = field(None, "image height, a multiple of 8 (with --pretrained); None: the model's")
    width: int | None = field(None, "image width, a multiple of 8 (with --pretrained); None: the model's")
    seed: int = field(99, "seed of the initial latents and of the samplers' noise (with --pretrained)")
    device: str = field("cpu", "device of the pipeline, e.g. cuda (with --pretrained)")

    def validate(self):
        if self.pretrained is None:
            typed = [flag_name(f.name) for f in fields(self) if getattr(self, f.name) != f.default]
            require(not typed, f"{', '.join(typed)}: only with --pretrained DIR (a Stable Diffusion pipeline folder)")
        require(self.steps is None or (len(self.steps) > 0 and min(self.steps) >= 1), "steps must be positive")
        require(self.guidance >= 0, "guidance must be >= 0")
        for name in ("height", "width"):
            value = getattr(self, name)
            require(value is None or (value > 0 and value % 8 == 0), f"{name} must be a positive multiple of 8")


def _sampler_compare_runs(quick: bool, options: SamplerCompareOptions) -> list[Setting]:
    """Train the small DDPM, unless the comparison runs on a pretrained pipeline."""
    return [] if options.pretrained else [Setting("ddpm", "ddpm", DDPM_FULL, quick=DDPM_QUICK)]


PRETRAINED_STEPS = Both(full=(10, 100, 1000), quick=(10,))
COMPARE_STEPS = Both(full=(10, 20, 100, 1000), quick=(10, 20, 100))
COMPARE_FID_SAMPLES = Both(full=1000, quick=128)


def compare_pretrained(ctx: Context) -> dict:
    """Sampler comparison on Stable Diffusion: the pipeline with each genlab sampler at each step count, one seed."""
    o = ctx.options
    pipe = load_pipeline(o.pretrained, o.device)
    steps = o.steps or PRETRAINED_STEPS(ctx)
    cells, images, flagged = {}, [], 0
    for name in SAMPLERS:
        scheduler = use_sampler(pipe, name)
        for k in steps:
            start = time.perf_counter()
            result = pipe(o.prompt, negative_prompt=o.negative_prompt or None, num_inference_steps=k,
                          guidance_scale=o.guidance, height=o.height, width=o.width, output_type="pt",
                          generator=torch.Generator().manual_seed(o.seed))
            seconds = time.perf_counter() - start
            images.append(result.images[0].float().cpu())          # [3, H, W] in [0, 1]
            flagged += sum(result.nsfw_content_detected or [])
            cells[f"{name}@{k}"] = {"seconds": round(seconds, 3), "model_calls": scheduler.sampler.model_calls(k)}
    h, w = images[0].shape[-2:]
    note = (f"guidance {o.guidance:g}" + (f", negative prompt: {o.negative_prompt}" if o.negative_prompt else "")
            + (f"; {flagged} image(s) blacked out by the pipeline's safety checker" if flagged else ""))
    path = labelled_grid(torch.stack(images), ctx.figures / "sampler_grid.png", nrow=len(steps),   # [S*K, 3, H, W]
                         row_labels=list(SAMPLERS), col_labels=[f"{k} steps" for k in steps],
                         title=f'"{textwrap.shorten(o.prompt, 70)}", seed {o.seed}', note=note,
                         cell_px=max(48, min(256, w)))
    return {"figures": relative(ctx, [path]), "pretrained": str(o.pretrained), "prompt": o.prompt,
            "negative_prompt": o.negative_prompt, "guidance": o.guidance, "seed": o.seed, "steps": list(steps),
            "image_size": [h, w], "device": o.device, "cells": cells}


def analyze_samplers(ctx: Context) -> dict:
    """Each sampler at 10 / 20 / 100 / 1000 steps (quick: 10 / 20 / 100) from the same seed (99)."""
    if ctx.options is not None and ctx.options.pretrained:
        return compare_pretrained(ctx)
    run = ctx.runs["ddpm"]
    model = run.model.eval()
    steps = COMPARE_STEPS(ctx)
    n_fid = COMPARE_FID_SAMPLES(ctx)
    cells, grid, labels = {}, [], []
    for name in SAMPLERS:
        for k in steps:
            noise = torch.randn((n_fid, *model.data_info.shape), generator=torch.Generator().manual_seed(99))
            start = time.perf_counter()
            x = model.sample(n_fid, name, k, torch.Generator().manual_seed(100), noise=noise)
            seconds = time.perf_counter() - start
            cells[f"{name}@{k}"] = {"fid": round(_fid(run, x, ctx), 2),
                                    "seconds_per_64": round(seconds * 64 / n_fid, 3),
                                    "model_calls": make_sampler(name, model.schedule).model_calls(k)}
            grid.append(x[:8])
            labels.append(f"{name} {k}")
    path = labelled_grid(torch.cat(grid), ctx.figures / "sampler_grid.png", nrow=8, row_labels=labels,
                         title="same noise (seed 99), every sampler and number of steps")
    ref = cells.get(f"ddpm@{steps[-1]}")
    out = {"figures": relative(ctx, [path]), "cells": cells, "fid_samples": n_fid}
    if MNIST_TARGET(ctx):     # 20 solver steps against DDPM-1000, timed on batches of 64 images (the median of 3)
        ref_seconds = seconds_per_64(model, "ddpm", steps[-1])
        for name in ("dpm++2m", "dpm++2m-sde"):
            noise = torch.randn((n_fid, *model.data_info.shape), generator=torch.Generator().manual_seed(99))
            x = model.sample(n_fid, name, 20, torch.Generator().manual_seed(100), noise=noise)
            fid, seconds = _fid(run, x, ctx), seconds_per_64(model, name, 20)
            out[f"{name}@20"] = {"fid": round(fid, 2), "seconds_per_64": round(seconds, 3),
                                 "fid_ratio_to_ddpm_1000": round(fid / ref["fid"], 3),
                                 "speedup_over_ddpm_1000": round(ref_seconds / seconds, 1)}
    return out


def check_samplers(s: dict) -> Check:
    """DPM-Solver++(2M) converges in few steps: at 20 steps its FID within 10% of its own at the most steps (the
    probability-flow ODE's samples, from the same noise), with >= 5x fewer network evaluations. Network
    evaluations do not depend on how busy the machine is. The stochastic variant against DDPM at the most steps is
    reported, not checked (one seed's FID moves by several units; BENCHMARKS "Samplers")."""
    if "pretrained" in s:
        return Check(False, "no FID on a pretrained pipeline (a grid of images only)", "a trained model's FIDs")
    most = max(int(k.split("@")[1]) for k in s["cells"])
    cells = s["cells"]
    fast, ode = cells["dpm++2m@20"], cells[f"dpm++2m@{most}"]
    fewer = ode["model_calls"] / fast["model_calls"]
    sde, ddpm = cells["dpm++2m-sde@20"], cells[f"ddpm@{most}"]
    return Check(fast["fid"] <= 1.1 * ode["fid"] and fewer >= 5,
                 f"FID DPM-Solver++(2M) 20 steps {fast['fid']}, {most} steps {ode['fid']} ({fewer:g}x fewer network "
                 f"evaluations); SDE-DPM-Solver++(2M) 20 steps {sde['fid']} against DDPM {most} steps {ddpm['fid']}",
                 f"DPM-Solver++(2M) at 20 steps within 10% of its FID at {most} steps, >= 5x fewer evaluations")


def seconds_per_64(model, name: str, steps: int, reps: int = 3) -> float:
    """The median wall time of sampling a batch of 64 images with sampler ``name`` (also the benchmark's clock)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        model.sample(64, name, steps, torch.Generator().manual_seed(1))
        times.append(time.perf_counter() - start)
    return sorted(times)[reps // 2]


declare(Experiment("sampler-compare", "diffusion",
                   "every sampler x {10, 20, 100, 1000} steps from one seed on one model: grid, FID and time; "
                   "or on a Stable Diffusion pipeline (--pretrained DIR --prompt TEXT)",
                   runs=_sampler_compare_runs, analyze=analyze_samplers, options=SamplerCompareOptions,
                   one_thread_quick=True,
                   claim="a higher-order solver of the probability-flow ODE converges in few steps: "
                         "DPM-Solver++(2M) (Lu et al. 2022) at 20 steps within 10% of its own FID at the most steps "
                         "(MVA assignment, Question 18); whether the ODE's samples match DDPM's depends on the model "
                         "(Karras et al. 2022, Sec. 4: the ODE carries an imperfect score's errors, so "
                         "SDE-DPM-Solver++(2M) is the one compared with DDPM at the most steps)",
                   check=check_samplers,
                   examples=({"cells": {"dpm++2m@20": {"fid": 40.0, "model_calls": 20},
                                        "dpm++2m@100": {"fid": 38.7, "model_calls": 100},
                                        "dpm++2m-sde@20": {"fid": 24.0, "model_calls": 20},
                                        "ddpm@100": {"fid": 23.0, "model_calls": 100}}},
                             {"cells": {"dpm++2m@20": {"fid": 48.5, "model_calls": 20},
                                        "dpm++2m@100": {"fid": 38.7, "model_calls": 100},
                                        "dpm++2m-sde@20": {"fid": 24.0, "model_calls": 20},
                                        "ddpm@100": {"fid": 23.0, "model_calls": 100}}}),
                   quick_note="a 200-step tiny model on 8x8 digits at 10/20/100 steps: the grid and timing show, "
                              "the FID is rough (with --pretrained: 10 steps only)"))


NEG_FULL = DDPM_FULL | {"conditional": True}
NEG_QUICK = DDPM_QUICK | {"conditional": True}
GUIDANCE = (0.0, 1.0, 2.0, 3.0, 5.0)
NEG_SAMPLES = Both(full=64, quick=32)            # same-seed pairs with and without the negative prompt
NEG_SHOWN = 8                                    # of them in the figure
SWEEP_SAMPLES = Both(full=256, quick=64)         # images per guidance scale


def analyze_negative(ctx: Context) -> dict:
    """Prompt "seven" with and without the negative prompt "one", same seed (42); a guidance sweep. The
    negative prompt replaces the unconditional branch of guidance, eps = eps(one) + w (eps(seven) - eps(one))
    (classifier-free guidance, Ho & Salimans 2022, Eq. 6 written with w = 1 + theirs, the null label swapped for
    "one"), so it moves the samples away from
    "one": the local classifier's log p(one) is compared pair by pair."""
    run = ctx.runs["ddpm"]
    model = run.model.eval()
    n = NEG_SAMPLES(ctx)
    pos, neg = model.prompt_label("seven"), model.prompt_label("one")
    noise = torch.randn((n, *model.data_info.shape), generator=torch.Generator().manual_seed(42))
    labels = torch.full((n,), pos)
    draw = dict(sampler="dpm++2m", steps=20, labels=labels, guidance=3.0, noise=noise)
    plain = model.sample(n, generator=torch.Generator().manual_seed(43), **draw)
    negative = model.sample(n, generator=torch.Generator().manual_seed(43), negative=torch.full((n,), neg), **draw)
    classifier, _ = get_classifier(run.data_name, run.data_config, progress=False)
    pp = features_and_probs(classifier, plain)[1]
    pn = features_and_probs(classifier, negative)[1]
    log_without, log_with = pp[:, neg].clamp(min=1e-30).log(), pn[:, neg].clamp(min=1e-30).log()   # [n] each
    k = NEG_SHOWN
    paths = [labelled_grid(torch.cat([plain[:k], negative[:k]]), ctx.figures / "negative_prompt.png", nrow=k,
                           row_labels=[f"seven: log p(one) {float(log_without.mean()):.1f}",
                                       f"seven, not one: {float(log_with.mean()):.1f}"],
                           col_labels=[f"{float(a - b):+.1f}" for a, b in zip(log_with[:k], log_without[:k])],
                           title="same seed (42), guidance 3, DPM-Solver++ 20",
                           note="column labels: change of the local classifier's log p(one) with the negative prompt; "
                                "the plain samples are already far from 'one', so the images change little")]
    classifier, _ = get_classifier(run.data_name, run.data_config, progress=False)
    m = SWEEP_SAMPLES(ctx)
    sweep, rows = {}, []
    noise = torch.randn((m, *model.data_info.shape), generator=torch.Generator().manual_seed(7))
    for w in GUIDANCE:
        x = model.sample(m, "dpm++2m", 20, torch.Generator().manual_seed(8), labels=torch.full((m,), pos),
                         guidance=w, noise=noise)
        probs = features_and_probs(classifier, x)[1]
        sweep[str(w)] = {"prompt_rate": round(float((probs.argmax(1) == pos).float().mean()), 3),
                         "mean_prob": round(float(probs[:, pos].mean()), 3)}
        rows.append(x[:8])
    paths.append(labelled_grid(torch.cat(rows), ctx.figures / "guidance_sweep.png", nrow=8,
                               row_labels=[f"w = {w}" for w in GUIDANCE], title="prompt 'seven', guidance scale w"))
    return {"figures": relative(ctx, paths), "guidance_sweep": sweep, "pairs": n,
            "one_prob_without_negative": float(f"{float(pp[:, neg].mean()):.3g}"),
            "one_prob_with_negative": float(f"{float(pn[:, neg].mean()):.3g}"),
            "one_log_prob_without_negative": round(float(log_without.mean()), 3),
            "one_log_prob_with_negative": round(float(log_with.mean()), 3),
            "pairs_one_lower_fraction": round(float((log_with < log_without).float().mean()), 3),
            "changed_pixels_fraction": round(float(((plain - negative).abs() > 0.1).float().mean()), 3)}


def check_negative(s: dict) -> Check:
    """The negative prompt lowers the classifier's log p(one) by at least log 2 on average (p(one) halved in
    geometric mean) and in at least 90% of the same-seed pairs; guidance raises the prompt's rate."""
    without, with_ = s["one_log_prob_without_negative"], s["one_log_prob_with_negative"]
    lower, changed = s["pairs_one_lower_fraction"], s["changed_pixels_fraction"]
    sweep = s["guidance_sweep"]
    rate0, rate3 = sweep["0.0"]["prompt_rate"], sweep["3.0"]["prompt_rate"]
    return Check(without - with_ >= math.log(2) and lower >= 0.9 and rate3 > rate0,
                 f"mean log p(one) {without} without, {with_} with the negative prompt (p(one) "
                 f"{s['one_prob_without_negative']} -> {s['one_prob_with_negative']}), lower in {lower} of the pairs; "
                 f"{changed} of the pixels changed; 'seven' rate {rate0} at w = 0, {rate3} at w = 3",
                 "mean log p(one) lower by >= log 2 with the negative prompt and lower in >= 90% of the same-seed "
                 "pairs; guidance raises the prompt's rate")


declare(Experiment("negative-prompt", "diffusion",
                   "class-conditional DDPM: same seed with and without a negative prompt; guidance sweep (CFG)",
                   runs=[Setting("ddpm", "ddpm", NEG_FULL, quick=NEG_QUICK)], analyze=analyze_negative,
                   one_thread_quick=True,
                   claim="classifier-free guidance (Ho & Salimans 2022) raises the rate of the prompted digit, and a "
                         "negative prompt moves the same seed's samples away from the negative class "
                         "(MVA assignment, Question 19)",
                   check=check_negative,
                   examples=({"one_prob_without_negative": 6e-5, "one_prob_with_negative": 7e-7,
                              "one_log_prob_without_negative": -11.3, "one_log_prob_with_negative": -15.3,
                              "pairs_one_lower_fraction": 1.0, "changed_pixels_fraction": 0.38,
                              "guidance_sweep": {"0.0": {"prompt_rate": 0.1}, "3.0": {"prompt_rate": 1.0}}},
                             {"one_prob_without_negative": 6e-5, "one_prob_with_negative": 6e-5,
                              "one_log_prob_without_negative": -11.3, "one_log_prob_with_negative": -11.2,
                              "pairs_one_lower_fraction": 0.4, "changed_pixels_fraction": 0.0,
                              "guidance_sweep": {"0.0": {"prompt_rate": 0.1}, "3.0": {"prompt_rate": 1.0}}}),
                   quick_note="a 200-step tiny model on 8x8 digits (about 10 s of training); its guided sevens "
                              "are already far from 'one', so the pairs differ little to the eye and the check "
                              "reads the classifier's log p(one)"))
