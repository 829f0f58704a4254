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
# # PixelCNN: an exact likelihood, one pixel at a time
#
# An autoregressive model writes the probability of an image as a product of conditionals in raster
# order (van den Oord et al. 2016, Eq. 1):
#
# P(x) = Π_i P(x_i | x_1, …, x_{i−1}),
#
# with each conditional a softmax over the grey levels. PixelCNN computes all the conditionals in one
# pass with masked convolutions (van den Oord et al. 2016, Sec. 3.4, Fig. 2): mask A in the first layer
# hides the pixel itself, mask B in later layers lets a feature see what was computed at its own position.
# The negative log-likelihood is exact — no bound, no dequantization — and bits per dimension are
# NLL / (D ln 2). Sampling needs D forward passes, one per pixel.
#
# The 8×8 digits have 17 grey levels (0…16), so the uniform model scores log₂ 17 = 4.09 bits/dim.

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

EPOCHS = 8 if QUICK else 40

# %% [markdown]
# ## Train

# %%
run = genlab.train("pixelcnn", "digits", out=OUT / "pixelcnn", overwrite=True, channels=32 if QUICK else 64,
                   layers=3 if QUICK else 5, epochs=EPOCHS, progress=False)
for png in sorted(run.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## The masks make it autoregressive
#
# The logits of pixel i may depend only on pixels before i. We check it with autograd: the gradient of
# the logits at one pixel with respect to the input is zero at that pixel and at every later one.

# %%
model = run.model.eval()
k = torch.randint(0, model.levels, (1, 1, 8, 8)).float().requires_grad_(True)
row, col = 4, 3
model.logits(k)[0, :, 0, row, col].sum().backward()
seen = (k.grad[0, 0] != 0).int()
print(seen)
order = torch.arange(64).reshape(8, 8)
assert not seen[order >= row * 8 + col].any(), "a pixel sees itself or a later pixel"

plt.imshow(seen, cmap="Greys")
plt.plot(col, row, "r*", ms=14)
plt.title("pixels the red one's logits depend on")
plt.show()

# %% [markdown]
# ## Evaluate
#
# The test NLL in bits/dim against the uniform model's log₂ 17.

# %%
m = genlab.evaluate(run)["metrics"]
print(f"test NLL {m['nll_nats']:.2f} nats = {m['bpd']:.3f} bits/dim (uniform: {math.log2(17):.3f}); "
      f"FID {m['fid']:.2f} (real images {m['fid_real_floor']:.2f})")
assert m["bpd"] < math.log2(17)

# %%
paths = genlab.sample(run, 64, seed=1)
display(Image(filename=paths[0]))
