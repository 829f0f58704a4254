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
# # MVA Deep Learning assignment (2025), computational questions, with genlab
#
# Three of the assignment's questions answered with genlab code on built-in data; every number is computed
# when the notebook runs (docs/COURSES.md lists the full commands and measurements).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import json

import torch

from genlab.families.diffusion.schedule import NoiseSchedule

# %% [markdown]
# ## Question 14: q(z_t | z_0) by induction
#
# If q(z_{t−1}|z_0) = N(√ᾱ_{t−1} z_0, (1 − ᾱ_{t−1}) I), one more step z_t = √α_t z_{t−1} + √β_t ε gives mean
# √(α_t ᾱ_{t−1}) z_0 = √ᾱ_t z_0 and variance α_t (1 − ᾱ_{t−1}) + β_t = 1 − ᾱ_t (Ho et al. 2020, Eq. 4). We
# iterate the single steps on many chains and compare with the closed form.

# %%
s = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
z0 = torch.full((20000, 1), -0.4, dtype=torch.float64)
z, gen = z0.clone(), torch.Generator().manual_seed(0)
for t in range(500):
    z = s.q_step(z, torch.full((len(z),), t), torch.randn(z.shape, generator=gen, dtype=torch.float64))
    if t + 1 in (10, 100, 500):
        mean, var = s.q_mean_variance(z0[:1], torch.tensor([t]))
        print(f"t = {t + 1:3d}: chains mean {float(z.mean()):+.4f} var {float(z.var()):.4f} | "
              f"Eq. 4 mean {float(mean):+.4f} var {float(var):.4f}")

# %% [markdown]
# ## Question 16: the SNR of q(z_t | z_0)
#
# Per example, SNR = ‖μ‖² / tr(Σ) = ᾱ_t ‖z_0‖² / ((1 − ᾱ_t) D): the schedule's SNR(t) = ᾱ_t/(1 − ᾱ_t)
# times the example's mean squared value. We compute both forms on a digit in [−1, 1].

# %%
import genlab.data.registry as registry

x0 = 2 * registry.load_dataset("digits", "test").tensors[0][0].double() - 1     # [1, 8, 8] in [-1, 1]
D = x0.numel()
for t in (50, 250, 750):
    mean, var = s.q_mean_variance(x0, torch.tensor([t]))
    direct = float((mean ** 2).sum() / var.sum())
    from_schedule = float(s.snr(torch.tensor([t]))) * float((x0 ** 2).sum()) / D
    print(f"t = {t}: ‖μ‖²/tr Σ = {direct:.5f}, SNR(t)·‖z0‖²/D = {from_schedule:.5f}")

# %% [markdown]
# ## Question 22: per-layer gradient norms of deep pre- and post-norm transformers
#
# Xiong et al. 2020 (Theorem 1) show that at initialisation the gradients of a post-norm transformer,
# LN(x + Sublayer(x)), grow towards the output layers, while pre-norm, x + Sublayer(LN(x)), keeps them
# flat (Fig. 1). We train 12-layer translators of both kinds for a few steps on the toy pair with genlab's
# step hook `grad_norm_hook`, which writes every decoder and encoder layer's gradient norm to
# `metrics.jsonl`, and compare the decoder's last layer with its first at step 1.

# %%
from genlab.families.translation import grad_norm_hook

ratios = {}
for norm in ("pre", "post"):
    run = genlab.train("translator", "synthetic-pairs", out=OUT / f"mva-{norm}", overwrite=True, norm=norm,
                       layers=12, d_model=32, heads=2, mlp_ratio=2.0, dropout=0.0, n_train=500, n_test=20,
                       vocab_size=200, max_steps=3, lr=3e-3, warmup_steps=0, schedule="constant",
                       step_hooks=[grad_norm_hook], report=False, progress=False)
    rows = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r.get("split") == "grad")
    dec = [n for name, n in zip(first["layers"], first["grad_norm"]) if name.startswith("dec")]
    ratios[norm] = dec[-1] / dec[0]
    plt.semilogy(range(1, len(dec) + 1), dec, "o-", label=f"{norm}-norm")
    print(f"{norm}-norm: decoder last/first layer gradient norm at step 1 = {ratios[norm]:.2f}")
plt.xlabel("decoder layer")
plt.ylabel("gradient norm at step 1")
plt.legend()
plt.show()
