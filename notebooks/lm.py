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
# # Language models: a small GPT on text with a known entropy rate
#
# An autoregressive language model factorises the probability of a token sequence by the chain rule,
# p(u_1, …, u_n) = Π_i p(u_i | u_{<i}), and is trained to maximise Σ_i log p(u_i | u_{i−k}, …, u_{i−1}; Θ)
# (Radford et al. 2018, Eq. 1). A GPT computes every conditional at once with causal self-attention,
# softmax(QKᵀ/√d_k) V with the future masked out (Vaswani et al. 2017, Eq. 1): the input is the sequence and
# the target the same sequence shifted by one token (teacher forcing).
#
# `synthetic-text` is generated offline by a hidden word-level Markov source whose entropy rate has a closed
# form, so the evaluation reports `data_nll_nats`, the best per-character NLL any model can reach, beside the
# model's own.

# %%
import os
from pathlib import Path

from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings
import torch

STEPS = 200 if QUICK else 2000

# %% [markdown]
# ## Train
#
# A 2-layer, 4-head, 64-wide GPT on 64-character windows; the learning rate warms up, then follows a cosine.

# %%
run = genlab.train("gpt", "synthetic-text", out=OUT / "gpt", overwrite=True, n_layer=2, n_head=4, n_embd=64,
                   block_size=64, lr=3e-3, batch_size=32, schedule="warmup-cosine", warmup_steps=50,
                   eval_every=0, max_steps=STEPS, words=20_000 if QUICK else 200_000, progress=False)
for png in sorted(run.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## Teacher forcing, by hand
#
# The loss of one window is the mean cross-entropy of the logits at positions 1…T−1 against the tokens
# 2…T. We compute it from `run.model`'s logits and compare with the model's own per-token NLL.

# %%
test = run.data("test")
tokens = test.tokens[:65].unsqueeze(0)                  # [1, 65]
inputs, targets = tokens[:, :-1], tokens[:, 1:]         # the targets: the inputs shifted by one
model = run.model.eval()
with torch.no_grad():
    logits = model.logits(inputs)                       # [1, 64, V]
nll = torch.nn.functional.cross_entropy(logits[0], targets[0])
print("first characters :", repr(model.tokenizer.decode(inputs[0, :40].tolist())))
print(f"teacher-forced NLL of this window: {float(nll):.3f} nats/char")

# %% [markdown]
# ## Evaluate
#
# The test NLL per character (and in bits, and as perplexity) beside the source's entropy rate.

# %%
m = genlab.evaluate(run)["metrics"]
print(f"test NLL {m['nll_nats']:.3f} nats/char ({m['bits_per_token']:.3f} bits), perplexity "
      f"{m['perplexity']:.2f}; the source's entropy rate: {m['data_nll_nats']:.3f} nats/char")

# %% [markdown]
# ## Generate
#
# Generation feeds the model its own samples (with a KV cache), at temperature 0.8.

# %%
print(genlab.sample(run, 300, seed=1, temperature=0.8)[0])
