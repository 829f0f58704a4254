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
# # Variational autoencoders on the 8×8 digits
#
# A VAE (Kingma & Welling 2014) is a latent-variable model p(x, z) = p(z) p(x|z) with a standard
# normal prior p(z) and a decoder network that gives the parameters of p(x|z). The posterior
# p(z|x) is intractable, so an encoder network q(z|x) = N(μ(x), diag σ²(x)) approximates it, and
# both are trained together by maximising the evidence lower bound (ELBO, Kingma & Welling 2014,
# Eq. 3):
#
# log p(x) ≥ L(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ p(z)).
#
# The first term rewards reconstructions, the second keeps the codes close to the prior so that
# decoding prior draws gives data-like images. This notebook trains a VAE with a 2-D latent on the
# 8×8 digits bundled with scikit-learn (offline), looks at its figures and evaluates it.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
EPOCHS = 30 if QUICK else 60

# %% [markdown]
# ## Train
#
# `genlab.train` sends each keyword to the config that owns it: `z_dim` to the model, `epochs` to the
# training loop. On the binarized digits the decoder is a Bernoulli per pixel, and the KL term has a
# closed form for two Gaussians (Kingma & Welling 2014, Appendix B: −KL = ½ Σ_j (1 + log σ_j² − μ_j² −
# σ_j²)), so only the reconstruction term is estimated with a sample z = μ + σ ⊙ ε, ε ~ N(0, I) — the
# reparameterization trick that lets gradients flow through the sampling step (Sec. 2.4).
# After training, `genlab.train` evaluates the test split into `eval.json` and draws the run's figures.

# %%
run = genlab.train("vae", "digits", out=OUT / "vae", overwrite=True, epochs=EPOCHS, z_dim=2,
                   hidden=(256, 256), progress=False)
print(run.dir)

# %% [markdown]
# ## Figures
#
# The training curves show the negative ELBO on the train and validation splits. With a 2-D latent
# we can decode a regular grid of z values (mapped through the inverse normal CDF, as in Kingma &
# Welling 2014, Fig. 4): neighbouring codes decode to similar digits.

# %%
for name in ("training_curves.png", "reconstructions.png", "samples.png", "latent_grid.png"):
    display(Image(filename=str(run.figures / name)))

# %% [markdown]
# ## The model in Python
#
# `run.model` is the trained network. Encoding the test digits and colouring the codes by their label
# shows how the encoder arranges the classes around the prior's centre.

# %%
x, y = run.data("test").tensors[:2]
mu = run.model.encode(x).detach()   # [360, 2] posterior means
plt.figure(figsize=(4.5, 4))
plt.scatter(mu[:, 0], mu[:, 1], c=y, cmap="tab10", s=8)
plt.colorbar(label="digit")
plt.xlabel("z₁")
plt.ylabel("z₂")
plt.title("test codes (posterior means)")
plt.show()

# %% [markdown]
# ## Evaluate
#
# The ELBO is a bound; the importance-weighted bound with k samples (Burda et al. 2016, Eq. 8),
# log (1/k) Σ_i p(x, z_i)/q(z_i|x) with z_i ~ q(z|x), tightens towards log p(x) as k grows, so
# `nll_nats` (from k = 200) is below the negative ELBO. Bits per dimension divide the NLL by the number of
# pixels and ln 2. `fid` compares samples with test images in the features of a small classifier
# genlab trains on the digits (lower is better; `fid_real_floor` is what real images score).

# %%
metrics = genlab.evaluate(run, iwae_k=200)["metrics"]
for key in ("elbo_nats", "kl_nats", "nll_nats", "bpd", "fid", "fid_real_floor"):
    print(f"{key:15s} {metrics[key]:.3f}")
assert metrics["nll_nats"] <= -metrics["elbo_nats"] + 1e-6   # IWAE is at least as tight as the ELBO

# %% [markdown]
# ## Sample and load again
#
# `genlab.sample` writes what `genlab sample` writes (a grid) and returns its path; `genlab.load_run`
# rebuilds the model from the folder alone.

# %%
paths = genlab.sample(run, 64, seed=1)
display(Image(filename=paths[0]))
again = genlab.load_run(run.dir)
print(again.model_name, again.data_name, "epochs trained:", again.state["epoch"])
