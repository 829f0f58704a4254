"""Image quality of a radiance field's held-out views: PSNR and SSIM per view, seconds per rendered view.

The model's own ``eval_metrics`` already reports PSNR and render time per view; SSIM (Wang et al. 2004)
lives in the eval layer (``image_quality.py``), so this metric renders every view of the split once more
and adds ``ssim`` (and the per-view PSNR/SSIM lists, for the figures and the benchmark).

Full-frame PSNR counts the background: 66% of a Lego frame is white, so a blank white image already
scores about 9.4 dB. ``psnr_object`` is the PSNR over the object's pixels only (``object_mask``), and
``baselines`` gives the two reference scores a reader needs beside a model's: the blank background image
and a copy of the training view whose camera is nearest.
"""
from __future__ import annotations

import math
import time

import torch

from genlab.abilities import RendersViews
from genlab.eval.evaluate import register_metric
from genlab.maths.image_quality import psnr, ssim
from genlab.progress import progress as progress_bar

# the object's pixels, by the best evidence the data has (recorded beside psnr_object as ``object_pixels``)
MASK_ALPHA, MASK_DEPTH, MASK_COLOUR = "alpha > 0", "finite ground-truth depth", "colour differs from the background"


def object_mask(scene) -> tuple[torch.Tensor, str]:
    """The object's pixels of every view of ``scene``, [N, H, W] bool, and how they were found: alpha > 0
    where the data has alpha; else a finite ground-truth depth (the ray hits a surface); else the pixels whose
    ground-truth colour differs from the background colour by more than half an 8-bit level in some channel."""
    if scene.alpha is not None:
        return scene.alpha > 0, MASK_ALPHA
    if scene.depth is not None:
        return torch.isfinite(scene.depth), MASK_DEPTH
    bg = torch.tensor(scene.background, dtype=scene.images.dtype)
    return ((scene.images - bg).abs() > 0.5 / 255).any(-1), MASK_COLOUR


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each image [N, H, W, C] over its masked pixels [N, H, W] only: 10 log10(R^2 / MSE), the MSE
    averaged over the masked pixels and all channels; NaN for an image without a masked pixel. [N]"""
    se = ((pred.double() - target.double()) ** 2).sum(-1)                             # [N, H, W, C] -> [N, H, W]
    m = mask.to(se.dtype)
    count = m.flatten(1).sum(-1) * pred.shape[-1]                                      # [N, H, W] -> [N]
    mse = (se * m).flatten(1).sum(-1) / count.clamp_min(1)                             # [N, H, W] -> [N]
    out = 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))
    return torch.where(count > 0, out, torch.full_like(out, math.nan)).float()


def image_scores(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
    """Mean full-frame PSNR and mean object-only PSNR (over the views that show the object) of images
    [N, H, W, 3] against their targets, in dB."""
    obj = masked_psnr(pred, target, mask)
    return {"psnr": float(psnr(pred, target).mean()), "psnr_object": float(obj.nanmean())}


def baselines(train, test) -> dict:
    """Two models that learn nothing, scored on the ``test`` views (full frame and object only):

    * ``blank``: every pixel the background colour (the Lego frames' white);
    * ``nearest_training_view``: the training image whose camera centre is nearest the test camera's,
      copied unchanged (same intrinsics and size assumed)."""
    mask, how = object_mask(test)
    bg = torch.tensor(test.background, dtype=test.images.dtype)
    blank = bg.expand_as(test.images)
    c_train, c_test = train.poses[:, :3, 3].double(), test.poses[:, :3, 3].double()
    nearest = torch.cdist(c_test, c_train).argmin(dim=1)                              # [N_test]
    return {"object_pixels": how, "object_fraction": round(float(mask.float().mean()), 4),
            "blank": image_scores(blank, test.images, mask),
            "nearest_training_view": image_scores(train.images[nearest], test.images, mask),
            "nearest_views": [train.names[i] if train.names else int(i) for i in nearest.tolist()]}


def render_split(model, data, max_views: int | None = None, progress: bool = False) -> dict:
    """Render every view of ``data`` (a ``RayData``): predictions, targets, depth, opacity, and the wall-clock
    and process-CPU seconds of each view (the CPU time is the fairer number on a shared machine).
    ``progress``: per view rendered (outside the timed part)."""
    H, W = data.scene.height, data.scene.width
    device = model.background.device
    preds, depths, opacities, seconds, cpu = [], [], [], [], []
    model.eval()
    views = len(data) if max_views is None else min(len(data), max_views)
    for i, (o, d, _) in enumerate(progress_bar(data.eval_batches(1), "render views", views, enabled=progress,
                                               unit="view")):
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
                 description="PSNR (full frame and object pixels only), SSIM per held-out view and seconds per view")
def nerf_views(run, data, options) -> dict:
    with torch.no_grad():
        r = render_split(run.model, data, progress=options.get("progress", False))
    p, s = psnr(r["pred"], r["target"]), ssim(r["pred"], r["target"])
    mask, how = object_mask(data.scene)
    obj = masked_psnr(r["pred"], r["target"], mask[: len(p)])
    return {"psnr": float(p.mean()), "psnr_object": float(obj.nanmean()), "object_pixels": how,
            "object_fraction": round(float(mask.float().mean()), 4), "ssim": float(s.mean()),
            "render_s_per_view": float(sum(r["seconds"]) / len(r["seconds"])),
            "render_cpu_s_per_view": float(sum(r["cpu_seconds"]) / len(r["cpu_seconds"])),
            "psnr_per_view": [round(float(v), 3) for v in p], "ssim_per_view": [round(float(v), 4) for v in s],
            "psnr_object_per_view": [round(float(v), 3) for v in obj]}
