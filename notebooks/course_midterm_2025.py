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
# # Generative models midterm (2025), computational parts, with genlab
#
# Four of the midterm's questions answered with genlab code; every number is computed when the notebook
# runs (docs/COURSES.md lists the matching commands and the full-size measurements).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings

import torch

# %% [markdown]
# ## Problem 1d: LayerNorm of x = [2, 1]
#
# LayerNorm centres and scales each vector over its features (Ba et al. 2016, Eq. 4): μ = mean x_i,
# σ² = mean (x_i − μ)², x̂ = (x − μ)/σ. For [2, 1]: μ = 1.5, σ = 0.5, so x̂ = [1, −1]; any 2-vector with
# distinct entries maps to ±[1, −1].

# %%
from genlab.nn.norms import layer_norm

xs = torch.tensor([[2.0, 1.0], [1.0, 3.0], [0.5, -2.0], [7.0, 6.0]])
for x, y in zip(xs, layer_norm(xs, eps=0.0)):
    print(x.tolist(), "->", y.tolist())

# %% [markdown]
# ## Problem 1b: why attention needs positions
#
# Self-attention treats its input as a set: permuting the tokens of a block without positional encodings
# permutes its outputs the same way, f(Px) = P f(x). Adding sinusoidal positions (Vaswani et al. 2017,
# Sec. 3.5) breaks the symmetry. We measure max |f(Px) − P f(x)| on a random encoder block in float64.

# %%
from genlab.families.lm.experiments import block_equivariance_gap

print(f"no positions:         {block_equivariance_gap(False):.1e}")
print(f"sinusoidal positions: {block_equivariance_gap(True):.3f}")

# %% [markdown]
# ## Problems 4a–c: an invertible MLP flow
#
# Layers y = σ(Wx + b) with W triangular and σ a LeakyReLU are invertible, and the change of variables
# gives log p(x) = log p_Z(f(x)) + Σ_layers (log |det W| + Σ_i log σ′(·)), with log |det W| = Σ_i log |W_ii|
# for a triangular W (Dinh et al. 2017, Eq. 3). We train one on a 1-D Gaussian mixture and check that the
# density integrates to 1 and how far its test NLL is from the true density's.
# A stack of LeakyReLU layers is piecewise linear, so its density is piecewise smooth with kinks; on the
# quick settings (20 epochs) it catches the spread but only roughly the three modes.

# %%
flow = genlab.train("invertible-mlp", "gmm1d", out=OUT / "midterm-imlp", overwrite=True, n=2000,
                    epochs=20 if QUICK else 60, batch_size=32, lr=3e-3, progress=False)
grid = torch.linspace(-30, 30, 60001).unsqueeze(1)                              # [60001, 1]
with torch.no_grad():
    p = flow.model.log_prob(grid).exp()
print(f"integral of p: {float(torch.trapezoid(p, grid[:, 0])):.4f}")
m = genlab.evaluate(flow)["metrics"]
print(f"test NLL {m['nll_nats']:.3f} nats, true density {m['data_nll_nats']:.3f}, gap {m['nll_nats'] - m['data_nll_nats']:.3f}")
inside = grid[:, 0].abs() < 8
plt.plot(grid[inside, 0], p[inside], label="flow")
plt.hist(flow.data("test").tensors[0][:, 0], bins=60, density=True, alpha=0.4, label="test points")
plt.legend()
plt.show()

# %% [markdown]
# ## Problems 5a–c: the diffusion posterior q(x_{t−1} | x_t, x_0)
#
# Bayes' rule with the single step q(x_t|x_{t−1}) and the marginal q(x_{t−1}|x_0) gives a Gaussian with
# mean μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t and variance
# β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (Ho et al. 2020, Eqs. 6–7). We compare genlab's closed form with the
# product of the two densities normalised numerically on a grid.

# %%
from genlab.families.diffusion.schedule import NoiseSchedule

s = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
x0, xt = torch.tensor([0.6], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
u = torch.linspace(-4, 4, 200001, dtype=torch.float64)                            # candidate x_{t-1}
for t in (10, 300, 900):
    a, abar_prev = s.alphas[t], s.alphas_cumprod[t - 1]
    log_w = (-(xt - a.sqrt() * u) ** 2 / (2 * (1 - a))                            # q(x_t | x_{t-1})
             - (u - abar_prev.sqrt() * x0) ** 2 / (2 * (1 - abar_prev)))          # q(x_{t-1} | x_0)
    w = (log_w - log_w.max()).exp()
    w = w / w.sum()
    mean_num = float((w * u).sum())
    var_num = float((w * (u - mean_num) ** 2).sum())
    mean, var = s.posterior_mean_variance(x0, xt, torch.tensor([t]))
    print(f"t = {t:3d}: mean {float(mean):.6f} (Bayes on a grid {mean_num:.6f}), "
          f"variance {float(var):.3e} ({var_num:.3e})")
