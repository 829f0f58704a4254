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
# # Translation: an encoder–decoder transformer on a toy language pair
#
# The transformer of Vaswani et al. 2017 encodes the source sentence with self-attention and decodes the
# target one subword at a time, each decoder layer attending to its own prefix (causal self-attention) and
# to the encoder's output (cross-attention), Attention(Q, K, V) = softmax(QKᵀ/√d_k) V (Vaswani et al. 2017,
# Eq. 1). Training maximises log p(y | x) = Σ_j log p(y_j | y_{<j}, x) with teacher forcing; the learning rate
# warms up and then decays as 1/√step (Vaswani et al. 2017, Eq. 3). genlab's blocks are pre-norm,
# x + Sublayer(LN(x)) (Xiong et al. 2020, Fig. 1), which trains without a long warm-up.
#
# `synthetic-pairs` is an offline toy pair: an English-like SVO source and a verb-final target with
# adjectives after the noun and agreement in gender and number, so word-by-word translation fails
# (BLEU about 4) and the model has to learn reordering.

# %%
import os
from pathlib import Path

from IPython.display import Image, display

import genlab

OUT = Path(os.environ.get("GENLAB_NOTEBOOK_OUT", "runs/notebooks"))   # every run of this notebook goes here
QUICK = os.environ.get("GENLAB_NOTEBOOK_QUICK") == "1"                # the test suite's small settings

# %% [markdown]
# ## Train
#
# Two layers, 64 wide, Adam at 3e-3 with β₂ = 0.98 and an inverse-square-root schedule after 100 warm-up
# steps, as in the paper.

# %%
run = genlab.train("translator", "synthetic-pairs", out=OUT / "translator", overwrite=True,
                   d_model=64, heads=4, layers=2, dropout=0.0, label_smoothing=0.0,
                   n_train=4000, n_test=100, max_adjectives=1, pp_prob=0.0, nouns=8, vocab_size=200,
                   lr=3e-3, betas=(0.9, 0.98), schedule="inverse-sqrt", warmup_steps=100,
                   max_steps=250 if QUICK else 1500, progress=False)
for png in sorted(run.figures.glob("*.png")):
    display(Image(filename=str(png)))

# %% [markdown]
# ## Evaluate
#
# Corpus BLEU and chrF with sacrebleu's defaults on detokenized text, greedy and with beam search (beam 4,
# the GNMT length penalty of Wu et al. 2016, Eq. 14).

# %%
for beam in (1, 4):
    m = genlab.evaluate(run, beam=beam)["metrics"]
    print(f"beam {beam}: BLEU {m['bleu']:.1f}, chrF {m['chrf']:.1f}, test NLL {m['nll_nats']:.3f} nats/subword")

# %% [markdown]
# ## Translate unseen sentences

# %%
from genlab.families.translation.data import synthetic_text

test = synthetic_text(run.data_config, "test")           # the raw sentences of the test split
sources, references = test.src[:5], test.tgt[:5]
for src, hyp, ref in zip(sources, run.model.eval().translate(sources, beam=4), references):
    print(f"source     {src}\nmodel      {hyp}\nreference  {ref}\n")
