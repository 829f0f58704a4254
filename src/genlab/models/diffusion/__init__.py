"""Diffusion models: the math (``schedule``), samplers behind one contract (``samplers``), the closed-form
optimal denoiser (``oracle``), classifier-free guidance (``guidance``), a compact U-Net (``unet``) and the
DDPM model (``model``, imported lazily by the catalog)."""
from .guidance import classifier_free_guidance, resolve_prompt
from .oracle import GaussianMixture, OracleDenoiser, distribution_errors
from .samplers import SAMPLERS, Sampler, make_sampler, sample_loop
from .schedule import NoiseSchedule, bits_per_dim, to_model_range
from .unet import UNet, UNetConfig

__all__ = ["SAMPLERS", "GaussianMixture", "NoiseSchedule", "OracleDenoiser", "Sampler", "UNet", "UNetConfig",
           "bits_per_dim", "classifier_free_guidance", "distribution_errors", "make_sampler", "resolve_prompt",
           "sample_loop", "to_model_range"]
