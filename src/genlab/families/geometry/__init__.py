"""Latent geometry: a VAE whose latent space is a torus S¹×S¹ (von Mises posteriors, a uniform prior).

- ``model.py``: the ``torus-vae`` model and its analytic KL.
- ``data.py``: the ``torus`` dataset (points uniform by area on a torus in R³).
- ``figures.py``: the latent torus and decoded paths.
- ``experiments.py``: Euclidean against toroidal latent interpolation.
"""
MODELS = {"torus-vae": "model"}
DATASETS = {"torus": "data"}
EXPERIMENTS = {"torus-interpolation": "experiments"}
FIGURES = ["figures"]
