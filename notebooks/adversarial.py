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
# # Adversarial models: an adversarial autoencoder and a GAN on the 8×8 digits
#
# A GAN (Goodfellow et al. 2014) trains a generator G(z) against a discriminator D(x) on the min-max game
# (Goodfellow et al. 2014, Eq. 1)
#
# min_G max_D  E_{x~data}[log D(x)] + E_{z~p(z)}[log(1 − D(G(z)))].
#
# For a fixed G the best discriminator is D* = p_data / (p_data + p_G), and the game then minimises the
# Jensen–Shannon divergence between data and model. genlab's generator uses the non-saturating loss
# −log D(G(z)) (the same fixed point, stronger gradients early on).
#
# An adversarial autoencoder (Makhzani et al. 2015, Sec. 2) moves the game into the latent space: an
# autoencoder reconstructs x, and a discriminator on codes makes the aggregated posterior q(z) =
# ∫ q(z|x) p_data(x) dx match a prior p(z), so that decoding prior draws gives data. genlab weighs the two
# terms as λ · reconstruction + (1 − λ) · adversarial.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings

AAE_EPOCHS = 10 if QUICK else 50
GAN_EPOCHS = 50

# %% [markdown]
# ## An adversarial autoencoder with a 2-D latent
#
# With z = 2 we can see q(z): the figures show reconstructions, decoded prior samples and the test codes
# over the prior.

# %%
aae = genlab.train("aae", "digits", out=OUT / "aae", overwrite=True, z_dim=2, lam=0.995, lr=1e-3,
                   batch_size=64, epochs=AAE_EPOCHS, progress=False)
for png in sorted(aae.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# How close is q(z) to the prior N(0, I)? The mean and covariance of the test codes should approach
# 0 and the identity as the discriminator wins less often.

# %%
import torch

x, y = aae.data("test").tensors[:2]
with torch.no_grad():
    z = aae.model.encode(x)   # [360, 2]
print("code mean", z.mean(0).numpy().round(3), "\ncode covariance\n", torch.cov(z.T).numpy().round(3))
plt.figure(figsize=(4.5, 4))
plt.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=8)
plt.colorbar(label="digit")
plt.title("AAE test codes")
plt.show()

# %% [markdown]
# ## A GAN
#
# MLP generator and discriminator at learning rate 1e-3 (at 2e-4 every sample was the same digit on
# the small digits set). There is no likelihood to report; `genlab.evaluate` gives the FID in the features
# of a small classifier genlab trains on the digits (lower is better; `fid_real_floor` is the FID of
# real images against the same reference).

# %%
gan = genlab.train("gan", "digits", out=OUT / "gan", overwrite=True, arch="mlp", lr=1e-3,
                   epochs=GAN_EPOCHS, progress=False)
for png in sorted(gan.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %%
for name, run in (("aae", aae), ("gan", gan)):
    m = genlab.evaluate(run)["metrics"]
    print(f"{name}: FID {m['fid']:.2f} (real images {m['fid_real_floor']:.2f}), "
          f"classifier score {m['classifier_score']:.2f} of {m['classifier_score_data']:.2f} for data")

# %% [markdown]
# ## f-divergences
#
# The GAN game is one member of a family: for any convex f with f(1) = 0, D_f(P‖Q) = E_Q[f(p/q)]
# (Nowozin et al. 2016, Eq. 1), and with f* the convex conjugate every critic T gives the lower bound
# D_f(P‖Q) ≥ E_P[T(x)] − E_Q[f*(T(x))], tight at T* = f′(p/q). On two discrete distributions we check
# that genlab's bound at the optimal critic equals the divergence, for every f it knows.

# %%
from genlab.families.adversarial import fdiv

p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
for name, div in fdiv.DIVERGENCES.items():
    t = fdiv.optimal_critic(p / q, name)
    bound = float((p * t).sum() - (q * div.conjugate(t)).sum())
    exact = float(fdiv.f_divergence(p, q, name))
    print(f"{name:11s} D_f = {exact:.6f}   bound at T* = {bound:.6f}")
    assert abs(bound - exact) < 1e-9
