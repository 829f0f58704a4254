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
# # MIT 6.S978 Deep Generative Models (Fall 2024), Problem Set 1, with genlab
#
# A few of the problem set's computational questions answered with genlab on the built-in data (the
# 8×8 digits stand in for MNIST; `--data mnist` in the commands of docs/COURSES.md gives the full
# versions). Every number below is computed when the notebook runs.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch

from genlab.maths.densities import kl_normal_std_normal, log_normal_pdf, standard_normal_log_prob

# %% [markdown]
# ## Problem 1: an autoencoder with a 2-D code
#
# A deterministic autoencoder minimises the reconstruction error ‖x − g(f(x))‖²; with a 2-D code we can
# decode a grid of codes (`genlab experiment run ae-mnist` is the full version).

# %%
ae = genlab.train("ae", "digits", out=OUT / "ps1-ae", overwrite=True, z_dim=2, hidden=(256, 256),
                  epochs=10 if QUICK else 40, progress=False)
for png in sorted(ae.figures.glob("*.png")):
    display(Image(filename=str(png)))
x = ae.data("test").tensors[0]
with torch.no_grad():
    mse = float(((ae.model.reconstruct(x) - x) ** 2).mean())
print(f"test reconstruction MSE per pixel: {mse:.4f}")

# %% [markdown]
# ## Problem 3b: the analytic KL against its Monte-Carlo estimate
#
# For q = N(μ, diag σ²) and p = N(0, I), KL(q‖p) = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²) (Kingma & Welling
# 2014, Appendix B). The Monte-Carlo estimate (1/L) Σ_l [log q(z_l) − log p(z_l)], z_l ~ q, is unbiased; its
# error should shrink as 1/√L.

# %%
gen = torch.Generator().manual_seed(0)
mean, logvar = torch.randn(20, generator=gen, dtype=torch.float64), torch.randn(20, generator=gen, dtype=torch.float64)
exact = float(kl_normal_std_normal(mean, logvar))
Ls, errors = [1, 10, 100, 1000, 10000], []
for L in Ls:
    z = mean + (0.5 * logvar).exp() * torch.randn(L, 20, generator=gen, dtype=torch.float64)   # [L, 20]
    estimate = float((log_normal_pdf(z, mean, logvar) - standard_normal_log_prob(z)).mean())
    errors.append(abs(estimate - exact))
    print(f"L = {L:5d}: Monte-Carlo {estimate:8.3f}   analytic {exact:.3f}")
plt.loglog(Ls, errors, "o-", label="|MC − analytic|")
plt.loglog(Ls, errors[0] / torch.tensor(Ls, dtype=torch.float64).sqrt(), "--", label="1/√L")
plt.xlabel("samples L")
plt.legend()
plt.show()

# %% [markdown]
# ## Problems 4a–c: a VAE on a torus; interpolations on and off the surface
#
# A Euclidean 2-D latent must cut the torus open, so some straight latent lines decode through the hole;
# a latent that is itself a torus (von Mises posteriors on S¹ × S¹, see the geometry notebook) follows the
# surface. We measure the mean distance of decoded interpolation points to the torus, divided by r.

# %%
from genlab.families.geometry.data import surface_distance
from genlab.families.geometry.experiments import decoded_paths

common = dict(epochs=20 if QUICK else 100, lr=3e-3 if QUICK else 1e-3, act="silu", gaussian_std=0.05,
              hidden=(128, 128), n_train=5000, n_test=500, batch_size=128, progress=False)
runs = {"euclidean": genlab.train("vae", "torus", out=OUT / "ps1-torus-euclidean", overwrite=True, z_dim=2,
                                  objective="analytic", **common),
        "toroidal": genlab.train("torus-vae", "torus", out=OUT / "ps1-torus-toroidal", overwrite=True, **common)}
test = runs["toroidal"].data("test")
pts, info = test.tensors[0], test.info
pairs = torch.randint(len(pts), (20, 2), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for name, run in runs.items():
        paths = decoded_paths(run.model.eval(), pts, pairs, 11)                      # [20, 11, 3]
        rec = run.model.reconstruct(pts)
        print(f"{name:10s} interpolation surface error {float(surface_distance(paths, info).mean()) / info.extras['r']:.3f} r, "
              f"reconstruction error {float((rec - pts).norm(dim=-1).mean()):.3f}")
