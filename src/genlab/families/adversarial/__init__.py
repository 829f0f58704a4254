"""Adversarial autoencoders (Makhzani et al. 2016), GANs (Goodfellow et al. 2014) and f-GANs
(Nowozin et al. 2016).

- ``model.py``: the ``aae`` and ``gan`` models and their optimizer phases.
- ``fdiv.py``: f-divergences: generator functions f, conjugates f*, output activations.
- ``experiments.py``: the AAE on MNIST, AE vs AAE in 2-D, deterministic vs stochastic encoders, the plain
  autoencoder (lambda = 1), KL as an f-divergence, the GAN.
"""
MODELS = {"aae": "model", "gan": "model"}
EXPERIMENTS = {name: "experiments" for name in ("aae-mnist", "aae-vs-ae-2d", "aae-stochastic-z20", "aae-lambda1-z8",
                                                  "kl-f-divergence", "gan-mnist")}
