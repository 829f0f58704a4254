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
# # Latent geometry: a VAE whose latent space is a torus
#
# Points sampled on a torus (radius R = 2 around the axis, r = 0.5 around the tube) have two angles as
# their natural coordinates. A Gaussian latent in R² cannot wrap around: somewhere the encoder must cut
# the surface open, and a straight line between two codes may pass through that cut. Davidson et al. 2018
# replace the Gaussian with von Mises posteriors on circles; genlab's `torus-vae` uses the latent
# S¹ × S¹ with q(θ|x) = Π_c vM(μ_c(x), κ_c(x)) and a uniform prior, so the ELBO (Kingma & Welling 2014,
# Eq. 3) has the analytic KL of a von Mises against the uniform distribution,
#
# KL(vM(μ, κ) ‖ U) = κ I₁(κ)/I₀(κ) − log I₀(κ) per circle (the von Mises entropy against log 2π),
#
# and the sample θ = μ + ε, ε ~ vM(0, κ), is differentiated implicitly in κ (Figurnov et al. 2018).
# We train it beside an ordinary Euclidean VAE and compare their interpolations.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch

from genlab.families.geometry.data import surface_distance
from genlab.families.geometry.experiments import decoded_paths

EPOCHS = 20 if QUICK else 100
COMMON = dict(epochs=EPOCHS, lr=3e-3 if QUICK else 1e-3, act="silu", gaussian_std=0.05, hidden=(128, 128),
              n_train=5000, n_test=500, batch_size=128, progress=False)

# %% [markdown]
# ## Train both latents on the same cloud
#
# Both decoders are Gaussians with a fixed standard deviation of 0.05 (with a learned one the posterior
# collapses on a noise-free cloud). The Euclidean arm is genlab's `vae` on the same points.

# %%
runs = {
    "euclidean": genlab.train("vae", "torus", out=OUT / "torus-euclidean", overwrite=True, z_dim=2,
                              objective="analytic", **COMMON),
    "toroidal": genlab.train("torus-vae", "torus", out=OUT / "torus-toroidal", overwrite=True, **COMMON),
}
for name, run in runs.items():
    print(name, sorted(p.name for p in run.figures.glob("*.png")))

# %%
for png in sorted(runs["toroidal"].figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## Interpolate and measure how far the path leaves the surface
#
# Between the codes of 20 random pairs of test points each model interpolates in its own latent space
# (a straight line in R²; the shortest arc on each circle of the torus latent) and decodes 11 points per
# path. The distance of a point to the torus is d = |√((ρ − R)² + z²) − r| with ρ the distance to the
# axis; we report the mean of d/r.

# %%
test = runs["toroidal"].data("test")
x, info = test.tensors[0], test.info
pairs = torch.randint(len(x), (20, 2), generator=torch.Generator().manual_seed(0))
errors, paths = {}, {}
with torch.no_grad():
    for name, run in runs.items():
        paths[name] = decoded_paths(run.model.eval(), x, pairs, 11)   # [20, 11, 3]
        errors[name] = float(surface_distance(paths[name], info).mean() / info.extras["r"])
        print(f"{name:10s} surface error of interpolations: {errors[name]:.3f} r")

# %%
k = int(surface_distance(paths["euclidean"], info).mean(1).argmax())   # the pair where the two differ most
fig = plt.figure(figsize=(9, 4.5))
for i, name in enumerate(paths):
    ax = fig.add_subplot(1, 2, i + 1, projection="3d")
    ax.scatter(*x[:, :3].T, s=1, alpha=0.15, color="grey")
    ax.plot(*paths[name][k].T, "o-", color="C3", ms=3)
    ax.set_title(f"{name} latent: error {errors[name]:.3f} r")
    ax.set_zlim(-2, 2)
plt.show()

# %% [markdown]
# ## Evaluate
#
# `nll_nats` is the importance-weighted bound (Burda et al. 2016, Eq. 8) on test points; both models are
# densities on R³ with the same fixed decoder noise, so their numbers compare.

# %%
for name, run in runs.items():
    m = genlab.evaluate(run, iwae_k=50)["metrics"]
    print(f"{name:10s} ELBO {m['elbo_nats']:.3f}   IWAE NLL {m['nll_nats']:.3f} nats")
