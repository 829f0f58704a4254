"""Experiments of the neural-radiance-field family (Mildenhall et al. 2020; Chen et al. 2022).

* ``nerf-render-gradient``: the hand-derived dL/dc_i and dL/dsigma_i against autograd on random
  rays, a figure of dL/dsigma_i along one ray, and the custom autograd Function that uses them measured
  against autograd's own backward (bytes kept for backward, seconds per forward + backward).
* ``nerf-offline``: the fast field on the generated scene (no download): held-out PSNR/SSIM, renders,
  depth maps against the ray caster's exact depth.
* ``nerf-lego`` (NeRF's slowness, the first of its known limits): vanilla NeRF against the fast grid
  field on Lego at 100 x 100, validation PSNR (views 80-89) against training wall-clock minutes on one plot,
  test PSNR (views 90-99, full frame and object pixels only) once at the end, beside two baselines that learn
  nothing: a blank white image and the nearest training view.
"""
from __future__ import annotations

import json
import time

import torch

from genlab.eval.evaluate import evaluate
from genlab.experiments.common import Both, Budget, budget_rows, single_thread, training_budget
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare
from genlab.families.nerf import render, sampling
from genlab.families.nerf.figures import gradient_figure, views_figure
from genlab.families.nerf.metrics import baselines, image_scores, object_mask, render_split
from genlab.maths.image_quality import psnr, ssim
from genlab.viz.figures import line_plot

FAMILY = "nerf"
LEGO_FILE = "tiny_lego_100px.npz"

# The fast field's recipe (the benchmark's): rays per step and learning rate of the SH basis.
GRID_TRAIN = dict(batch_size=1024, lr=1e-3)
# Vanilla NeRF sized for a CPU (the paper's 256 x 8 with 64 + 128 samples is ~10x slower per step).
VANILLA = dict(width=128, depth=8, n_coarse=32, n_fine=64)
VANILLA_TRAIN = dict(batch_size=512, lr=5e-4)


# ------------------------------------------------------------------ nerf-render-gradient
def random_rays(R: int, N: int, seed: int, dtype=torch.float64):
    """Random densities (zero in front), colours, stratified depths on [2, 6], targets and a background."""
    g = torch.Generator().manual_seed(seed)
    t = sampling.stratified_samples(2.0, 6.0, N, R, True, g, dtype=dtype)
    deltas = sampling.deltas_from_t(t, 6.0)
    sigma = torch.relu(torch.randn(R, N, generator=g, dtype=dtype) * 2 + torch.linspace(-3, 3, N, dtype=dtype))
    rgb = torch.rand(R, N, 3, generator=g, dtype=dtype)
    target = torch.rand(R, 3, generator=g, dtype=dtype)
    bg = torch.ones(3, dtype=dtype)
    return t, deltas, sigma, rgb, target, bg


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for the backward pass of ``fn()`` (its saved-tensor hooks)."""
    total = [0]

    def pack(x):
        total[0] += x.numel() * x.element_size()
        return x
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return total[0]


def measure_backward(R: int, N: int, repeats: int) -> dict:
    """Custom Function (the analytic gradient) against autograd: bytes saved for backward, and the fastest of
    ``repeats`` interleaved forward + backward passes (the minimum is robust to a busy machine)."""
    _, deltas, sigma, rgb, target, bg = random_rays(R, N, 0, torch.float32)
    leaves = {a: (sigma.clone().requires_grad_(), rgb.clone().requires_grad_()) for a in (True, False)}

    def step(analytic):
        s, c = leaves[analytic]
        ((render.render_color(s, c, deltas, bg, analytic=analytic) - target) ** 2).mean().backward()
    times = {True: [], False: []}
    for _ in range(repeats + 1):
        for analytic in (True, False):
            t0 = time.perf_counter()
            step(analytic)
            times[analytic].append(time.perf_counter() - t0)
    out = {}
    for name, analytic in (("analytic", True), ("autograd", False)):
        s, c = leaves[analytic]
        kept = saved_bytes(lambda s=s, c=c, a=analytic: render.render_color(s, c, deltas, bg, analytic=a))
        out[name] = {"saved_mb": kept / 2**20,
                     "seconds": min(times[analytic][1:])}
    out["saved_ratio_autograd_over_analytic"] = out["autograd"]["saved_mb"] / out["analytic"]["saved_mb"]
    out["speed_ratio_autograd_over_analytic"] = out["autograd"]["seconds"] / out["analytic"]["seconds"]
    return out


RAYS = Both(full=(2048, 128), quick=(256, 64))             # rays and samples per ray of the gradient check
COST = Both(full=(4096, 128, 10), quick=(1024, 64, 5))     # rays, samples and repeats of the cost measurement


def nerf_render_gradient(ctx: Context) -> dict:
    out = ctx.out
    R, N = RAYS(ctx)
    t, deltas, sigma, rgb, target, bg = random_rays(R, N, seed=1)
    s, c = sigma.clone().requires_grad_(), rgb.clone().requires_grad_()
    loss = ((render.volume_render(s, c, deltas, background=bg).rgb - target) ** 2).sum()
    g_sigma, g_rgb = torch.autograd.grad(loss, (s, c))
    a_rgb, a_sigma = render.mse_loss_grads(sigma, rgb, deltas, target, bg)
    err_c = float((a_rgb - g_rgb).abs().max())
    err_s = float((a_sigma - g_sigma).abs().max())
    ray = int(torch.argmax(g_sigma.abs().sum(-1)))
    fig = gradient_figure(t[ray], sigma[ray], a_sigma[ray], g_sigma[ray], out / "figures" / "dL_dsigma_along_a_ray.png")
    with single_thread():
        cost = measure_backward(*COST(ctx))
    return {"rays": R, "samples_per_ray": N, "max_abs_error_dL_dc": err_c, "max_abs_error_dL_dsigma": err_s,
            "max_abs_dL_dsigma": float(g_sigma.abs().max()), "agree": err_c < 1e-10 and err_s < 1e-10,
            "custom_function_vs_autograd": cost, "figure": str(fig.relative_to(out))}


def check_render_gradient(s: dict) -> Check:
    ec, es = s["max_abs_error_dL_dc"], s["max_abs_error_dL_dsigma"]
    saved = s["custom_function_vs_autograd"]["saved_ratio_autograd_over_analytic"]
    return Check(ec < 1e-10 and es < 1e-10 and saved > 1,
                 f"max |analytic - autograd|: dL/dc {ec:.2g}, dL/dsigma {es:.2g}; autograd keeps {saved:.2f}x the "
                 f"bytes for backward", "both < 1e-10 (float64) and the custom Function keeps fewer bytes")


declare(Experiment("nerf-render-gradient", FAMILY, "the analytic dL/dc_i, dL/dsigma_i of the rendering (Mildenhall "
                   "Eq. 3) against autograd; the custom autograd Function's memory and speed",
                   analyze=nerf_render_gradient,
                   claim="the hand-derived gradient of the rendering loss with respect to each sample's colour and "
                         "density (Mildenhall et al. 2020, Eq. 3) equals autograd's, and a Function using it keeps "
                         "fewer bytes for backward (Homework 2, Problem 1b)",
                   check=check_render_gradient,
                   examples=({"max_abs_error_dL_dc": 1e-16, "max_abs_error_dL_dsigma": 1e-16,
                              "custom_function_vs_autograd": {"saved_ratio_autograd_over_analytic": 2.0}},
                             {"max_abs_error_dL_dc": 1e-16, "max_abs_error_dL_dsigma": 0.01,
                              "custom_function_vs_autograd": {"saved_ratio_autograd_over_analytic": 2.0}})))


# ------------------------------------------------------------------ nerf-offline
TARGET_PSNR = Both(full=28.0, quick=20.0)


def analyze_offline(ctx) -> dict:
    run = ctx.runs["grid"]
    metrics = evaluate(run, extras=True)["metrics"]
    data = run.data("test")
    r = render_split(run.model, data)
    views_figure(r, ctx.figures / "test_views.png", "offline scene, held-out views")
    gt = data.scene.depth
    both = (r["opacity"] > 0.5) & torch.isfinite(gt)
    depth_mae = float((r["depth"][both] - gt[both]).abs().mean()) if both.any() else float("nan")
    mask_agree = float(((r["opacity"] > 0.5) == torch.isfinite(gt)).float().mean())
    target = TARGET_PSNR(ctx)
    return {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "render_s_per_view": metrics["render_s_per_view"],
            "depth_mean_abs_error": depth_mae, "silhouette_agreement": mask_agree, "target_psnr": target}


def check_offline(s: dict) -> Check:
    return Check(s["psnr"] >= s["target_psnr"] and s["silhouette_agreement"] >= 0.9,
                 f"held-out PSNR {s['psnr']:.2f} dB, silhouette agreement {s['silhouette_agreement']:.3f}",
                 f"PSNR >= {s['target_psnr']} dB and silhouettes agree on >= 90% of the pixels")


declare(Experiment(
    "nerf-offline", FAMILY, "the fast grid field on the generated scene (exact ray-caster ground truth): held-out "
    "renders, PSNR/SSIM, depth against the exact depth",
    runs=[Setting("grid", "nerf-grid", dict(GRID_TRAIN, max_steps=1500, eval_every=0, size=64, views=40),
                  quick=dict(max_steps=200, size=32, views=16, supersample=1, resolution=64, init_resolution=16,
                             grow_every=60), report=True)],
    data="synthetic-scene", quick_data="synthetic-scene", analyze=analyze_offline, one_thread_quick=True,
    quick_note="16 training views of 32 x 32 and 200 steps: a coarse field (about 20 dB on new views); "
               "the full run (40 views of 64 x 64, 1500 steps) targets 28 dB",
    claim="NeRF's pipeline (rays, encoded samples, a field, volume rendering; Mildenhall et al. 2020) learns a scene "
          "from posed images: held-out views and silhouettes match the exact ray-caster's (UvA Practical 3, "
          "Section 3, Figure 6)",
    check=check_offline,
    examples=({"psnr": 29.0, "target_psnr": 28.0, "silhouette_agreement": 0.98},
              {"psnr": 12.0, "target_psnr": 28.0, "silhouette_agreement": 0.6})))


# ------------------------------------------------------------------ nerf-lego
LEGO = dict(file=LEGO_FILE, background="white", holdout="90-99", val_holdout="80-89")   # tiny-nerf data options
QUICK_SCENE = dict(size=32, views=16, supersample=1)                  # --quick: the offline scene stands in for Lego
QUICK_STEPS = 200                                                    # --quick: a step budget, the same on any machine
# Genlab's loop (Adam, random rays) for a training-time budget: no step count, log or checkpoint interval of its own.
BUDGET_TRAIN = dict(max_steps=10**9, eval_every=0, log_every=10**9, checkpoint_every=10**9, progress=False)
CURVES = {"grid": "fast grid field", "vanilla": "vanilla NeRF"}      # setting -> the name its curve carries


def held_out_views(trainer, val) -> dict:
    """Validation PSNR / SSIM and render time per view of the model in training (``training_budget``'s measure,
    on the validation views: the test views are rendered once, after training)."""
    r = render_split(trainer.model, val)
    return {"psnr": float(psnr(r["pred"], r["target"]).mean()), "ssim": float(ssim(r["pred"], r["target"]).mean()),
            "render_s_per_view": sum(r["seconds"]) / len(r["seconds"]),
            "render_cpu_s_per_view": sum(r["cpu_seconds"]) / len(r["cpu_seconds"])}


# 10 minutes of training each, held-out views every minute (--quick: the same steps for both, every 50 steps)
LEGO_BUDGET = training_budget(Both(full=Budget(minutes=10.0, every=60.0), quick=Budget(steps=QUICK_STEPS, every=50)),
                              measure=held_out_views, split="val")


def lego_settings(data: str, data_options: dict, grid: dict, vanilla: dict) -> list[Setting]:
    return [Setting("grid", "nerf-grid", data_options | grid | GRID_TRAIN | BUDGET_TRAIN, data=data,
                    quick_data=data, step_hooks=LEGO_BUDGET),
            Setting("vanilla", "nerf", data_options | vanilla | VANILLA_TRAIN | BUDGET_TRAIN, data=data,
                    quick_data=data, step_hooks=LEGO_BUDGET)]


def score_test_views(run) -> tuple[dict, dict]:
    """The trained run's test views, rendered once: the renders, and PSNR (full frame and object pixels only),
    SSIM and render seconds per view."""
    test = run.data("test")
    r = render_split(run.model.eval(), test)
    scores = image_scores(r["pred"], r["target"], object_mask(test.scene)[0]) | {
        "ssim": float(ssim(r["pred"], r["target"]).mean()),
        "render_s_per_view": sum(r["seconds"]) / len(r["seconds"]),
        "render_cpu_s_per_view": sum(r["cpu_seconds"]) / len(r["cpu_seconds"])}
    return r, scores


def lego_baselines(run) -> dict:
    """The blank image's and the nearest training view's test PSNR (``metrics.baselines``), printed."""
    b = baselines(run.data("train").scene, run.data("test").scene)
    print(f"baselines on the test views (object pixels: {b['object_pixels']}, {b['object_fraction']:.0%} of the "
          f"frame): blank image {b['blank']['psnr']:.2f} dB (object {b['blank']['psnr_object']:.2f} dB), nearest "
          f"training view {b['nearest_training_view']['psnr']:.2f} dB "
          f"(object {b['nearest_training_view']['psnr_object']:.2f} dB)")
    return b


def nerf_lego(ctx: Context) -> dict:
    curves, final = {}, {}
    for name, run in ctx.runs.items():
        curves[CURVES[name]] = budget_rows(run)
        r, final[CURVES[name]] = score_test_views(run)
        first = {k: v[:5] for k, v in r.items()}
        views_figure(first, ctx.figures / f"views_{run.model_name}.png", f"{CURVES[name]}, test views")
    line_plot({k: ([row["train_wall_s"] / 60 for row in v], [row["psnr"] for row in v]) for k, v in curves.items()},
              ctx.figures / "psnr_vs_minutes.png", "validation PSNR against training time (1 thread)",
              "training wall-clock minutes", "PSNR (dB)")
    (ctx.out / "curves.json").write_text(json.dumps(curves, indent=1))
    for k, v in final.items():
        print(f"{k}: test PSNR {v['psnr']:.2f} dB (object {v['psnr_object']:.2f} dB)")
    return {"data": DATA_LABEL(ctx), "final": final, "final_val": {k: v[-1] for k, v in curves.items()},
            "baselines": lego_baselines(next(iter(ctx.runs.values()))), "budget": LEGO_BUDGET_LABEL(ctx),
            "figures": ["figures/psnr_vs_minutes.png", "figures/views_nerf-grid.png", "figures/views_nerf.png"]}


DATA_LABEL = Both(full=LEGO_FILE, quick="synthetic-scene (quick)")
LEGO_BUDGET_LABEL = Both(full="10 minutes of training each", quick=f"{QUICK_STEPS} steps each")


def check_lego(s: dict) -> Check:
    fast, vanilla = s["final"]["fast grid field"], s["final"]["vanilla NeRF"]
    return Check(s["data"] == LEGO_FILE and fast["psnr"] >= 25.0 and fast["psnr"] >= vanilla["psnr"] + 3
                 and fast["render_s_per_view"] <= 1.0,
                 f"{s['data']}, {s['budget']}: held-out PSNR fast field {fast['psnr']:.2f} dB, vanilla "
                 f"{vanilla['psnr']:.2f} dB; {fast['render_s_per_view']:.2f} s per view",
                 "on Lego: fast field >= 25 dB and >= 3 dB above vanilla, <= 1 s per view")
declare(Experiment(
    "nerf-lego", FAMILY, "vanilla NeRF vs the fast grid field on Lego 100x100 (views 90-99 held out): "
    "held-out PSNR against training minutes (fixing NeRF's speed)",
    runs=Both(full=lego_settings("tiny-nerf", LEGO, {}, VANILLA),
              quick=lego_settings("synthetic-scene", QUICK_SCENE, dict(resolution=64, init_resolution=16,
                                                                       grow_every=60),
                                  dict(width=64, depth=4, n_coarse=16, n_fine=16))),
    analyze=nerf_lego, one_thread=True,
    claim="a grid field fixes NeRF's slowness (Sun et al. 2022; Mueller et al. 2022): in the same 10 training "
          "minutes it reaches >= 25 dB on held-out Lego views where vanilla NeRF stays far below (UvA Practical 3, "
          "Q3.1)",
    check=check_lego,
    quick_cannot="the claim is about Lego (a downloaded file) and minutes of training; the quick run trains both "
                 "fields for the same steps on the generated scene: `genlab experiment run nerf-lego --data-dir DIR`",
    examples=({"data": LEGO_FILE, "budget": "10 minutes", "final": {
                  "fast grid field": {"psnr": 31.1, "render_s_per_view": 0.32},
                  "vanilla NeRF": {"psnr": 11.9, "render_s_per_view": 2.0}}},
              {"data": LEGO_FILE, "budget": "10 minutes", "final": {
                  "fast grid field": {"psnr": 7.9, "render_s_per_view": 0.32},
                  "vanilla NeRF": {"psnr": 9.6, "render_s_per_view": 2.0}}})))
