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
# # UvA Deep Learning 2022, Practical 3 (deep generative models), with genlab
#
# A few of the practical's computational questions answered with genlab on the built-in 8×8 digits
# (docs/COURSES.md gives the MNIST commands and the full-size numbers). Every number is computed here.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import math

import torch

# %% [markdown]
# ## Q1.1 and Q1.7: train a VAE and sample from its decoder
#
# Sampling is ancestral: z ~ p(z) = N(0, I), then x ~ p(x|z). We train a VAE with z = 20 on the digits
# (the practical's CNN on 4-bit MNIST is `genlab experiment run vae-categorical-cnn`).

# %%
run = genlab.train("vae", "digits", out=OUT / "uva-vae", overwrite=True, z_dim=20, hidden=(256, 256),
                   epochs=30 if QUICK else 80, progress=False)
display(Image(filename=str(run.figures / "training_curves.png")))
with torch.no_grad():
    z = torch.randn(16, 20)
    x = run.model.decode(z)                    # E[x|z], [16, 1, 8, 8]
plt.figure(figsize=(6, 1.6))
plt.imshow(torch.cat(list(x[:, 0]), dim=1), cmap="gray")
plt.axis("off")
plt.title("decoded prior samples (means of p(x|z))")
plt.show()

# %% [markdown]
# ## Section 1.6: bits per dimension
#
# bpd = NLL · log₂ e / Π_i d_i: the negative log-likelihood in nats divided by the number of dimensions
# and by ln 2. We recompute genlab's `bpd` from its `nll_nats` and the image shape.

# %%
m = genlab.evaluate(run, iwae_k=100)["metrics"]
dims = math.prod(run.data_info.shape)
print(f"nll {m['nll_nats']:.3f} nats, {dims} dimensions: {m['nll_nats'] * math.log2(math.e) / dims:.4f} "
      f"bits/dim by hand, genlab's bpd {m['bpd']:.4f}")

# %% [markdown]
# ## Q1.2: why sampling z from the prior is an inefficient estimate of log p(x)
#
# log p(x) = log E_{p(z)}[p(x|z)] can be estimated with K prior draws, but almost every z ~ p(z) explains
# x badly, so the average is dominated by rare lucky draws: the estimate is biased low and noisy, and it
# gets worse with the latent dimension. Importance sampling from q(z|x) (the IWAE bound, Burda et al. 2016,
# Eq. 8) puts the draws where p(x|z) is large. We compare both with the same K on the test digits.

# %%
x = run.data("test").tensors[0][:100]
model = run.model.eval()
target = model.likelihood.target(x)
with torch.no_grad():
    for K in (10, 100, 1000):
        z = torch.randn(K, len(x), 20)                                            # [K, B, 20]
        log_px_prior = torch.logsumexp(model.log_likelihood(target, z), 0) - math.log(K)
        iwae = model.iwae(x, K)
        print(f"K = {K:4d}: prior sampling {float(log_px_prior.mean()):8.2f} nats, "
              f"importance sampling (IWAE) {float(iwae.mean()):7.2f} nats")

# %% [markdown]
# ## Q2.5: an adversarial autoencoder, z = 8, λ = 0.995
#
# The reconstruction error in [−1, 1] pixels (the practical's target: below 0.05 on MNIST after 100 epochs),
# and the samples from the prior.

# %%
aae = genlab.train("aae", "digits", out=OUT / "uva-aae", overwrite=True, z_dim=8, lam=0.995, lr=1e-3,
                   batch_size=64, epochs=10 if QUICK else 100, progress=False)
for png in sorted(aae.figures.glob("*.png")):
    display(Image(filename=str(png)))
x = aae.data("test").tensors[0]
with torch.no_grad():
    mse = float(((2 * aae.model.reconstruct(x) - 1) - (2 * x - 1)).pow(2).mean())
m = genlab.evaluate(aae)["metrics"]
print(f"test reconstruction MSE on [-1, 1] pixels: {mse:.4f} by hand, genlab's rec_mse_pm1 {m['rec_mse_pm1']:.4f} "
      f"(the course's target on MNIST: below 0.05)")
