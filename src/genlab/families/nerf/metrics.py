"""Image quality of a radiance field's held-out views: PSNR and SSIM per view, seconds per rendered view.

The model's own ``eval_metrics`` already reports PSNR and render time per view; SSIM (Wang et al. 2004)
lives in the eval layer (``image_quality.py``), so this metric renders every view of the split once more
and adds ``ssim`` (and the per-view PSNR/SSIM lists, for the figures and the benchmark).
"""
from __future__ import annotations

import time

import torch

from genlab.abilities import RendersViews
from genlab.eval.evaluate import register_metric
from genlab.maths.image_quality import psnr, ssim


def render_split(model, data, max_views: int | None = None) -> dict:
    """Render every view of ``data`` (a ``RayData``): predictions, targets, depth, opacity, and the wall-clock
    and process-CPU seconds of each view (the CPU time is the fairer number on a shared machine)."""
    H, W = data.scene.height, data.scene.width
    device = model.background.device
    preds, depths, opacities, seconds, cpu = [], [], [], [], []
    model.eval()
    for i, (o, d, _) in enumerate(data.eval_batches(1)):
        if max_views is not None and i >= max_views:
            break
        start, start_cpu = time.perf_counter(), time.process_time()
        out = model.render_chunks(o.to(device), d.to(device))
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        preds.append(out["rgb"].clamp(0, 1).view(H, W, 3).cpu())          # [H W, 3] -> [H, W, 3]
        depths.append(out["depth"].view(H, W).cpu())
        opacities.append(out["opacity"].view(H, W).cpu())
    n = len(preds)
    return {"pred": torch.stack(preds), "target": data.scene.images[:n], "depth": torch.stack(depths),
            "opacity": torch.stack(opacities), "seconds": seconds, "cpu_seconds": cpu}


@register_metric("nerf_views", needs=(RendersViews,), kinds=("rays",),
                 description="PSNR, SSIM per held-out view and seconds per view")
def nerf_views(run, data, options) -> dict:
    with torch.no_grad():
        r = render_split(run.model, data)
    p, s = psnr(r["pred"], r["target"]), ssim(r["pred"], r["target"])
    return {"psnr": float(p.mean()), "ssim": float(s.mean()),
            "render_s_per_view": float(sum(r["seconds"]) / len(r["seconds"])),
            "render_cpu_s_per_view": float(sum(r["cpu_seconds"]) / len(r["cpu_seconds"])),
            "psnr_per_view": [round(float(v), 3) for v in p], "ssim_per_view": [round(float(v), 4) for v in s]}
