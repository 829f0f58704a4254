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
# # Diffusion models: DDPM and its samplers on the 8×8 digits
#
# A diffusion model (Ho et al. 2020) destroys data with a fixed Markov chain that adds Gaussian noise,
# q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I) (Eq. 2), whose marginal has a closed form (Eq. 4):
#
# q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),  ᾱ_t = Π_{s≤t} (1 − β_s),
#
# and learns to reverse it. The network ε_θ(x_t, t) predicts the noise that was added, trained with the
# simple loss ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² at a uniformly drawn t (Ho et al. 2020, Eq. 14). Sampling
# runs the learned reverse chain from pure noise (Algorithm 2), or a faster solver of the same process
# (DDIM, DPM-Solver++).

# %%
import os
from pathlib import Path

from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch

from genlab.families.diffusion.schedule import NoiseSchedule

# %% [markdown]
# ## The forward process, checked
#
# Running the single steps of Eq. 2 from x_0 for t steps must give the same distribution as one draw from
# the marginal of Eq. 4. With many chains from one x_0 we compare the empirical mean and variance with
# √ᾱ_t x_0 and 1 − ᾱ_t.

# %%
schedule = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
x0 = torch.full((4000, 1), 0.7, dtype=torch.float64)
x, t = x0.clone(), 300
gen = torch.Generator().manual_seed(0)
for s in range(t):
    x = schedule.q_step(x, torch.full((len(x),), s), torch.randn(x.shape, generator=gen, dtype=torch.float64))
mean, var = schedule.q_mean_variance(x0[:1], torch.tensor([t - 1]))
print(f"after {t} steps: mean {float(x.mean()):.4f} (Eq. 4: {float(mean):.4f}), "
      f"variance {float(x.var()):.4f} (Eq. 4: {float(var):.4f})")

# %% [markdown]
# ## Train
#
# A small U-Net (width 16) with a constant learning rate and an EMA of the weights; the quick settings
# train for 200 steps, enough for digit-like shapes.

# %%
run = genlab.train("ddpm", "digits", out=OUT / "ddpm", overwrite=True, channels=16, mults=(1, 2),
                   batch_size=64, lr=2e-3, ema=0.99, schedule="constant", warmup_steps=0,
                   max_steps=200 if QUICK else 3000, progress=False)
for png in sorted(run.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## Evaluate
#
# `bpd` is the variational bound on the data's own 17 grey levels: the prior term L_T, the KL terms
# L_{t−1} between Gaussians and a discretized decoder L_0 (Ho et al. 2020, Eq. 5 and Eq. 13), estimated with
# a few stratified timesteps per image (after a short training it can still be above the uniform model's
# log₂ 17). `fid` uses the default sampler.

# %%
m = genlab.evaluate(run, vlb_samples=2)["metrics"]
print(f"bound {m['bpd']:.3f} bits/dim on {m['bpd_levels']} levels (uniform {m['uniform_bpd']}), "
      f"FID {m['fid']:.2f} (real images {m['fid_real_floor']:.2f})")

# %% [markdown]
# ## Samplers from one seed
#
# Every sampler starts from the same noise (seed 0). DDPM is the ancestral sampler of Algorithm 2, DDIM
# (Song et al. 2021) its deterministic η = 0 version, `dpm++2m-sde` genlab's default.

# %%
for sampler in ("ddpm", "ddim", "dpm++2m-sde"):
    path = genlab.sample(run, 16, seed=0, sampler=sampler, steps=10 if sampler != "ddpm" else 100)[0]
    print(sampler)
    display(Image(filename=path))
