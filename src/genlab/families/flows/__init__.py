"""Normalizing flows (Dinh et al. 2017) and continuous normalizing flows (Chen et al. 2018; Grathwohl et al. 2019).

- ``bijections.py``: invertible layers with their log-determinants (couplings, ActNorm, triangular layers).
- ``exact.py``: the exact-likelihood base shared by both (dequantized bits/dim on images).
- ``model.py``: the ``invertible-mlp`` and ``realnvp`` models.
- ``cnf.py``: the ``cnf`` model (FFJORD: exact or Hutchinson trace, adjoint).
- ``figures.py``: density maps, samples, a grid carried through the flow or along the ODE.
- ``experiments.py``: toy flows, the change of variables checked, CNFs, RealNVP on MNIST.
"""
MODELS = {"invertible-mlp": "model", "realnvp": "model", "cnf": "cnf"}
EXPERIMENTS = {name: "experiments" for name in ("cnf-change-of-variables", "flow-toy", "cnf-toy", "flow-mnist")}
FIGURES = ["figures"]
