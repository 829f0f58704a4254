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
# # Deep Learning (Prof. T. Pang), Homework 2 (2025), computational problems, with genlab
#
# Three of the homework's problems answered with genlab code on built-in data; every number is computed
# when the notebook runs (docs/COURSES.md lists the commands and the full measurements).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch
from torchdiffeq import odeint

from genlab.families.nerf.render import mse_loss_grads, render_color

# %% [markdown]
# ## Problem 1b: the rendering loss and its gradient
#
# With Ĉ = Σ_i T_i α_i c_i (Mildenhall et al. 2020, Eq. 3) and L = ‖Ĉ − C‖², g = 2(Ĉ − C):
# ∂L/∂c_i = g T_i α_i and ∂L/∂σ_i = δ_i [T_{i+1} g·c_i − Σ_{k>i} T_k α_k g·c_k]. genlab's hand-derived
# gradient against autograd on random rays:

# %%
gen = torch.Generator().manual_seed(0)
sigma = torch.rand(128, 32, generator=gen, dtype=torch.float64).mul(4).requires_grad_(True)
rgb = torch.rand(128, 32, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
deltas = torch.full((128, 32), 1 / 32, dtype=torch.float64)
target = torch.rand(128, 3, generator=gen, dtype=torch.float64)
loss = ((render_color(sigma, rgb, deltas, analytic=False) - target) ** 2).sum()
d_sigma, d_rgb = torch.autograd.grad(loss, (sigma, rgb))
hand_rgb, hand_sigma = mse_loss_grads(sigma.detach(), rgb.detach(), deltas, target)
print(f"max |hand − autograd|: colour {float((hand_rgb - d_rgb).abs().max()):.1e}, "
      f"density {float((hand_sigma - d_sigma).abs().max()):.1e}")

# %% [markdown]
# ## Problem 2: the instantaneous change of variables
#
# For dz/dt = f(z, t), d log p(z(t))/dt = −tr(∂f/∂z) (Chen et al. 2018, Theorem 1). Integrating the trace
# along the ODE must give −log |det ∂z(T)/∂z(0)|, the log-determinant of the flow map that autograd can
# differentiate through the solver. We check it for a nonlinear field in 2-D.

# %%
W = torch.tensor([[0.3, -1.2], [0.9, 0.2]], dtype=torch.float64)


def field(t, z):
    return torch.tanh(z @ W.T + t)


def augmented(t, state):
    z = state[:2].detach().requires_grad_(True) if not state.requires_grad else state[:2]
    with torch.enable_grad():
        f = field(t, z)
        trace = sum(torch.autograd.grad(f[i], z, create_graph=True)[0][i] for i in range(2))
    return torch.cat([f, -trace.reshape(1)])


z0 = torch.tensor([0.4, -0.7], dtype=torch.float64)
T = torch.tensor([0.0, 1.0], dtype=torch.float64)
delta = odeint(augmented, torch.cat([z0, torch.zeros(1, dtype=torch.float64)]), T, rtol=1e-10, atol=1e-10)[-1, 2]
jac = torch.autograd.functional.jacobian(lambda z: odeint(field, z, T, rtol=1e-10, atol=1e-10)[-1], z0)
print(f"∫ −tr(∂f/∂z) dt = {float(delta.detach()):.8f},  −log|det ∂z(T)/∂z(0)| = {-float(torch.linalg.slogdet(jac)[1]):.8f}")

# %% [markdown]
# ## Problem 4g: interpolating between two digits in a VAE's latent space
#
# Decode z(α) = (1 − α) z₁ + α z₂ for α = 0, 0.1, …, 1 between the codes of two test digits of different
# labels (`genlab experiment run vae-interpolation` is the full version).

# %%
run = genlab.train("vae", "digits", out=OUT / "hw2-vae", overwrite=True, z_dim=20, hidden=(256, 256),
                   epochs=15 if QUICK else 80, progress=False)
x, y = run.data("test").tensors[:2]
i, j = 0, int((y != y[0]).nonzero()[0])                   # the first test digit and the first of another label
with torch.no_grad():
    z1, z2 = run.model.encode(x[i:i + 1]), run.model.encode(x[j:j + 1])
    alphas = torch.linspace(0, 1, 11).unsqueeze(1)          # [11, 1]
    images = run.model.decode((1 - alphas) * z1 + alphas * z2)   # [11, 1, 8, 8]
plt.figure(figsize=(9, 1.4))
plt.imshow(torch.cat(list(images[:, 0]), dim=1), cmap="gray")
plt.axis("off")
plt.title(f"from a {int(y[i])} to a {int(y[j])}")
plt.show()
