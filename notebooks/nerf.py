# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Neural radiance fields on a generated scene
#
# A radiance field maps a 3-D point x and a viewing direction d to a colour and a density,
# F(x, d) → (c, σ) (Mildenhall et al. 2020, Sec. 3). A pixel's colour is the volume rendering of the
# field along its camera ray r(t) = o + t d; with samples t_1 < … < t_N and spacings δ_i (Mildenhall et al.
# 2020, Eq. 3):
#
# Ĉ(r) = Σ_i T_i (1 − exp(−σ_i δ_i)) c_i,  T_i = exp(−Σ_{j<i} σ_j δ_j),
#
# and the field is fitted to posed photographs by the squared error Σ_r ‖Ĉ(r) − C(r)‖² (Eq. 6). Everything
# in Ĉ is differentiable, so the images alone teach the field its 3-D shape.
#
# `synthetic-scene` is rendered offline by an exact ray caster (three spheres and two boxes on a checkered
# slab) that shares no code with the NeRF renderer, so its ground truth, depth included, is not made by the
# code under test. `nerf-grid` is genlab's fast field: a factorised grid (TensoRF's planes and lines) with a
# tiny colour MLP, trained from scratch.

# %%
import os
from pathlib import Path

from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch

from genlab.families.nerf.render import mse_loss_grads, render_color

# %% [markdown]
# ## The rendering gradient, by hand and by autograd
#
# With g = 2(Ĉ − C), the chain rule through Eq. 3 gives ∂L/∂c_i = g T_i α_i and
# ∂L/∂σ_i = δ_i [T_{i+1} g·c_i − Σ_{k>i} T_k α_k g·c_k]. genlab's renderer uses this backward pass; we
# check it against autograd on random rays in double precision.

# %%
gen = torch.Generator().manual_seed(0)
R, N = 256, 64
sigma = torch.rand(R, N, generator=gen, dtype=torch.float64).mul(5).requires_grad_(True)
rgb = torch.rand(R, N, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
deltas = torch.full((R, N), 1 / N, dtype=torch.float64)
target = torch.rand(R, 3, generator=gen, dtype=torch.float64)
loss = ((render_color(sigma, rgb, deltas, analytic=False) - target) ** 2).sum()
d_sigma, d_rgb = torch.autograd.grad(loss, (sigma, rgb))
hand_rgb, hand_sigma = mse_loss_grads(sigma.detach(), rgb.detach(), deltas, target)
print(f"max |hand − autograd|: colour {float((hand_rgb - d_rgb).abs().max()):.1e}, "
      f"density {float((hand_sigma - d_sigma).abs().max()):.1e}")

# %% [markdown]
# ## Train the fast field
#
# The quick settings use 16 training views of 32 × 32 pixels and 200 steps of 1,024 rays: a coarse field.

# %%
small = dict(size=32, views=16, supersample=1, resolution=64, init_resolution=16, grow_every=60)
run = genlab.train("nerf-grid", "synthetic-scene", out=OUT / "nerf", overwrite=True, batch_size=1024, lr=1e-3,
                   max_steps=200 if QUICK else 1500, eval_every=0, progress=False,
                   **(small if QUICK else dict(size=64, views=40)))
for png in sorted(run.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## Evaluate on held-out views
#
# PSNR = 10 log₁₀(1 / MSE) in dB and SSIM (Wang et al. 2004) of renders of views the field never saw.

# %%
m = genlab.evaluate(run)["metrics"]
print(f"held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, {m['render_s_per_view']:.3f} s per view")
