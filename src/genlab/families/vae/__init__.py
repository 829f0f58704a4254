"""Autoencoders and variational autoencoders (Kingma & Welling 2014; Rezende et al. 2014).

- ``model.py``: the ``ae`` and ``vae`` models (MLP or CNN encoder/decoder, the SGVB and analytic-KL ELBO,
  the importance-weighted bound of Burda et al. 2016).
- ``likelihoods.py``: the decoders' likelihoods p(x|z) as objects (Bernoulli, categorical, Gaussian,
  discretized Gaussian) behind one interface.
- ``experiments.py``: the KL check, SGVB vs analytic KL, the 2-D autoencoder, interpolation, the CNN VAE
  on 4-bit MNIST and the Bernoulli MLP VAE.
"""
MODELS = {"ae": "model", "vae": "model"}
EXPERIMENTS = {name: "experiments" for name in
               ("kl-check", "vae-sgvb-vs-analytic", "ae-mnist", "vae-interpolation", "vae-categorical-cnn",
                "vae-bernoulli-mlp")}
