"""Experiments of the neural-radiance-field family (Mildenhall et al. 2020; Chen et al. 2022).

* ``nerf-render-gradient``: the hand-derived dL/dc_i and dL/dsigma_i against autograd on random
  rays, a figure of dL/dsigma_i along one ray, and the custom autograd Function that uses them measured
  against autograd's own backward (bytes kept for backward, seconds per forward + backward).
* ``nerf-offline``: the fast field on the generated scene (no download): held-out PSNR/SSIM, renders,
  depth maps against the ray caster's exact depth.
* ``nerf-lego`` (NeRF's slowness, the first of its known limits): vanilla NeRF against the fast grid
  field on Lego at 100 x 100 (views 90-99 held out), held-out PSNR against training wall-clock minutes on one plot.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from genlab.config import from_dict
from genlab.errors import DataError
from genlab.eval.evaluate import evaluate
from genlab.experiments.common import single_thread
from genlab.experiments.registry import Experiment, Setting, declare, register_experiment
from genlab.families.nerf import data as scenes
from genlab.families.nerf import render, sampling
from genlab.families.nerf.figures import gradient_figure, views_figure
from genlab.families.nerf.metrics import render_split
from genlab.maths.image_quality import psnr, ssim
from genlab.model import get_model_spec
from genlab.train.config import TrainConfig
from genlab.train.loop import Trainer
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


@register_experiment("nerf-render-gradient", "the analytic dL/dc_i, dL/dsigma_i of the rendering (Mildenhall Eq. 3) "
                     "against autograd; the custom autograd Function's memory and speed", FAMILY)
def nerf_render_gradient(out: Path, quick: bool, data_dir: str | None) -> dict:
    R, N = (256, 64) if quick else (2048, 128)
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
        cost = measure_backward(4096 if not quick else 1024, 128 if not quick else 64, 5 if quick else 10)
    return {"rays": R, "samples_per_ray": N, "max_abs_error_dL_dc": err_c, "max_abs_error_dL_dsigma": err_s,
            "max_abs_dL_dsigma": float(g_sigma.abs().max()), "agree": err_c < 1e-10 and err_s < 1e-10,
            "custom_function_vs_autograd": cost, "figure": str(fig.relative_to(out))}


# ------------------------------------------------------------------ nerf-offline
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
    target = 20.0 if ctx.quick else 28.0
    return {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "render_s_per_view": metrics["render_s_per_view"],
            "depth_mean_abs_error": depth_mae, "silhouette_agreement": mask_agree,
            "target_psnr": target, "target_met": metrics["psnr"] >= target}


declare(Experiment(
    "nerf-offline", FAMILY, "the fast grid field on the generated scene (exact ray-caster ground truth): held-out "
    "renders, PSNR/SSIM, depth against the exact depth",
    runs=[Setting("grid", "nerf-grid", dict(GRID_TRAIN, max_steps=1500, eval_every=0, size=64, views=40),
                  quick=dict(max_steps=200, size=32, views=16, supersample=1, resolution=64, init_resolution=16,
                             grow_every=60), report=True)],
    data="synthetic-scene", quick_data="synthetic-scene", analyze=analyze_offline, one_thread_quick=True,
    quick_note="16 training views of 32 x 32 and 200 steps: a coarse field (about 20 dB on new views); "
               "the full run (40 views of 64 x 64, 1500 steps) targets 28 dB"))


# ------------------------------------------------------------------ nerf-lego
def timed_training(model, train, test, minutes: float, batch_size: int, lr: float, eval_every_s: float,
                   seed: int = 0, log=None, eval_views: int | None = None) -> list[dict]:
    """Train with genlab's loop (Adam, random rays) for ``minutes`` of training wall-clock; held-out PSNR/SSIM
    every ``eval_every_s`` seconds of training (evaluation time excluded, measured by a step hook that stops
    the trainer when the budget is spent). Returns the curve (wall and process-CPU seconds)."""
    trainer = Trainer(model, train, TrainConfig(max_steps=10**9, batch_size=batch_size, lr=lr, seed=seed,
                                                progress=False, eval_every=0, log_every=10**9,
                                                checkpoint_every=10**9), distributed=False)
    clock = {"wall": 0.0, "cpu": 0.0, "next": eval_every_s, "w0": time.perf_counter(), "c0": time.process_time()}
    curve: list[dict] = []

    def hook(t: Trainer) -> None:
        clock["wall"] += time.perf_counter() - clock["w0"]
        clock["cpu"] += time.process_time() - clock["c0"]
        done = clock["wall"] >= minutes * 60
        if clock["wall"] >= clock["next"] or done:
            r = render_split(t.model, test, max_views=eval_views)
            row = {"step": t.state.global_step, "train_wall_s": round(clock["wall"], 2),
                   "train_cpu_s": round(clock["cpu"], 2),
                   "psnr": float(psnr(r["pred"], r["target"]).mean()),
                   "ssim": float(ssim(r["pred"], r["target"]).mean()),
                   "render_s_per_view": sum(r["seconds"]) / len(r["seconds"]),
                   "render_cpu_s_per_view": sum(r["cpu_seconds"]) / len(r["cpu_seconds"])}
            curve.append(row)
            if log:
                log(row)
            t.model.train()
            clock["next"] += eval_every_s
        if done:
            t.request_stop()
        clock["w0"], clock["c0"] = time.perf_counter(), time.process_time()

    trainer.step_hooks.append(hook)
    trainer.fit()
    model.eval()
    return curve


def build(name: str, options: dict, info):
    spec = get_model_spec(name)
    return spec.cls(from_dict(spec.config, options), info)


@register_experiment("nerf-lego", "vanilla NeRF vs the fast grid field on Lego 100x100 (views 90-99 held out): "
                     "held-out PSNR against training minutes (fixing NeRF's speed)", FAMILY)
def nerf_lego(out: Path, quick: bool, data_dir: str | None) -> dict:
    if quick:   # built-in data: the offline scene stands in for Lego
        cfg = scenes.SyntheticSceneConfig(size=32, views=16, supersample=1)
        train, test = scenes.synthetic_scene(cfg, "train"), scenes.synthetic_scene(cfg, "test")
        minutes, every, data = 0.2, 4.0, "synthetic-scene (quick)"
        grid_opts = dict(resolution=64, init_resolution=16, grow_every=60)
        vanilla_opts = dict(width=64, depth=4, n_coarse=16, n_fine=16)
    else:
        if not data_dir:
            raise DataError(f"nerf-lego needs the Lego views: pass --data-dir DIR with DIR/{LEGO_FILE} "
                            f"(or DIR/nerf/{LEGO_FILE}); --quick runs on the offline scene")
        cfg = scenes.TinyNerfConfig(file=LEGO_FILE, data_dir=data_dir, background="white", holdout="90-99")
        train, test = scenes.tiny_nerf(cfg, "train"), scenes.tiny_nerf(cfg, "test")
        minutes, every, data = 10.0, 60.0, LEGO_FILE
        grid_opts, vanilla_opts = {}, dict(VANILLA)
    curves = {}
    with single_thread():
        for name, model_name, opts, tr in (("fast grid field", "nerf-grid", grid_opts, GRID_TRAIN),
                                           ("vanilla NeRF", "nerf", vanilla_opts, VANILLA_TRAIN)):
            model = build(model_name, opts, train.info)
            curves[name] = timed_training(model, train, test, minutes, tr["batch_size"], tr["lr"], every)
            r = render_split(model, test, max_views=5)
            views_figure(r, out / "figures" / f"views_{model_name}.png", f"{name}, held-out views")
    line_plot({k: ([row["train_wall_s"] / 60 for row in v], [row["psnr"] for row in v]) for k, v in curves.items()},
              out / "figures" / "psnr_vs_minutes.png", "held-out PSNR against training time (1 thread)",
              "training wall-clock minutes", "PSNR (dB)")
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    final = {k: v[-1] for k, v in curves.items()}
    fast = final["fast grid field"]
    return {"data": data, "final": final, "target_psnr_db": 25.0, "target_render_s_per_view": 1.0,
            "target_met": (not quick) and fast["psnr"] >= 25.0 and fast["render_s_per_view"] <= 1.0,
            "figures": ["figures/psnr_vs_minutes.png", "figures/views_nerf-grid.png", "figures/views_nerf.png"]}
