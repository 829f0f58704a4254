"""Diffusion models (Ho et al. 2020) and their samplers.

- ``schedule.py``: the noise schedule, forward marginal, posterior and the variational bound.
- ``samplers.py``: DDPM, DDIM, Euler, Euler-ancestral, LMS, DPM-Solver++ behind one ``step()`` contract.
- ``oracle.py``: the closed-form optimal denoiser of a Gaussian mixture.
- ``guidance.py``: classifier-free guidance (Ho & Salimans 2022).
- ``unet.py``: a compact U-Net; ``model.py``: the ``ddpm`` model.
- ``pretrained.py``: genlab's samplers inside a pretrained Stable Diffusion pipeline.
- ``figures.py``: the image grids ``genlab sample`` writes; ``experiments.py``: forward process, oracles,
  MNIST, sampler comparison.
"""
from genlab.catalog import lazy_exports

MODELS = {"ddpm": "model"}
EXPERIMENTS = {name: "experiments" for name in
               ("diffusion-forward", "diffusion-bound-terms", "sampler-oracle", "ddpm-mnist", "sampler-compare",
                "negative-prompt")}

__getattr__ = lazy_exports(__name__, {
    "classifier_free_guidance": "guidance", "resolve_prompt": "guidance",
    "GaussianMixture": "oracle", "OracleDenoiser": "oracle", "distribution_errors": "oracle",
    "SAMPLERS": "samplers", "Sampler": "samplers", "make_sampler": "samplers", "sample_loop": "samplers",
    "NoiseSchedule": "schedule", "to_model_range": "schedule", "UNet": "unet", "UNetConfig": "unet"})
