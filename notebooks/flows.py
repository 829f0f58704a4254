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
# # Normalizing flows on toy densities
#
# A normalizing flow is an invertible map x = g(z) from a simple base density p_Z (here N(0, I)) to the
# data. The change of variables gives the exact log-likelihood (Dinh et al. 2017, Eq. 3):
#
# log p_X(x) = log p_Z(f(x)) + log |det ∂f(x)/∂x|,  f = g⁻¹,
#
# so the model is trained by maximum likelihood with no bound. RealNVP makes the determinant cheap with
# affine coupling layers: half the coordinates pass unchanged and set a scale and shift for the other
# half, y₂ = x₂ ⊙ exp(s(x₁)) + t(x₁), whose Jacobian is triangular with log-determinant Σ s(x₁) (Dinh et al.
# 2017, Eqs. 4–6). A continuous normalizing flow (Chen et al. 2018) lets z follow an ODE dz/dt = f(z, t) and
# integrates the instantaneous change of variables d log p(z(t))/dt = −tr(∂f/∂z) (Chen et al. 2018, Eq. 4)
# alongside it.
#
# The toy sets are generated offline and their true densities are known, so `genlab.evaluate` gives the
# cross-entropy of the true density (`data_nll_nats`) beside the model's test NLL: the gap says how far
# the flow is from the best possible model.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings

EPOCHS = 10 if QUICK else 60

# %% [markdown]
# ## RealNVP on eight Gaussians

# %%
rnvp = genlab.train("realnvp", "8gaussians", out=OUT / "realnvp", overwrite=True, n=4000 if QUICK else 10000,
                    epochs=EPOCHS, batch_size=64 if QUICK else 256, lr=3e-3, progress=False)
for png in sorted(rnvp.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## The exact likelihood, checked
#
# `run.model.log_prob(x)` is the change-of-variables density. On a 2-D grid its integral must be 1 — a
# check that needs no reference model — and its mean on the test points is the test NLL.

# %%
import torch

lim, k = 4.5, 300
g = torch.linspace(-lim, lim, k)
grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)   # [k*k, 2]
with torch.no_grad():
    density = rnvp.model.log_prob(grid).exp().reshape(k, k)                   # [k*k] -> [k, k]
cell = (2 * lim / (k - 1)) ** 2
print(f"integral of p over [-{lim}, {lim}]²: {float(density.sum() * cell):.4f}")
plt.figure(figsize=(4, 4))
plt.imshow(density, extent=(-lim, lim, -lim, lim), origin="lower", cmap="magma")
plt.colorbar(label="p(x)")
plt.title("RealNVP density")
plt.show()

# %%
m = genlab.evaluate(rnvp)["metrics"]
print(f"test NLL {m['nll_nats']:.3f} nats, true density {m['data_nll_nats']:.3f} nats, "
      f"gap {m['nll_nats'] - m['data_nll_nats']:.3f}")

# %% [markdown]
# ## A continuous normalizing flow (FFJORD)
#
# The same data with a CNF: a small MLP vector field integrated by RK4 with the exact trace in 2-D.

# %%
cnf = genlab.train("cnf", "8gaussians", out=OUT / "cnf", overwrite=True, n=2000 if QUICK else 5000,
                   epochs=3 if QUICK else 40, batch_size=128, lr=3e-3, hidden=(32, 32) if QUICK else (64, 64, 64),
                   steps=4 if QUICK else 8, progress=False)
for png in sorted(cnf.figures.glob("*.png")):
    display(Image(filename=str(png)))
m = genlab.evaluate(cnf)["metrics"]
print(f"CNF test NLL {m['nll_nats']:.3f} nats (true density {m['data_nll_nats']:.3f})")
