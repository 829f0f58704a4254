"""Stable Diffusion with genlab's samplers: a diffusers ``StableDiffusionPipeline`` loaded from a local
folder, its scheduler replaced by a genlab ``Sampler`` (optional extra: ``pip install 'genlab[stable-diffusion]'``).

Stable Diffusion is a latent diffusion model (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models"): a DDPM (Ho et al. 2020) on the latents z = E(x) / c of an autoencoder (c the
VAE's ``scaling_factor``), with the scaled-linear schedule (``schedule.scaled_linear_betas``), a U-Net that
reads the prompt through cross-attention on CLIP text features (Radford et al. 2021), and
classifier-free guidance (Ho & Salimans 2022): eps = eps(z, "") + w (eps(z, prompt) - eps(z, "")), the
empty prompt replaced by the negative prompt when one is given. diffusers' pipeline does all of that; its
scheduler only turns each guided network output into the next latent, which is exactly the sampler
contract of ``samplers.py``. So a sampler plugs in behind the few scheduler members the pipeline's
``__call__`` touches (diffusers 0.42):

    scheduler.set_timesteps(n, device=...); scheduler.timesteps; scheduler.order   (len(timesteps) / n)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(cat([latents] * 2), t)          # [2B, 4, h, w]: uncond | cond
        eps = guided(unet(inp, t, text))                                    # [B, 4, h, w]
        latents = scheduler.step(eps, t, latents, generator=g, return_dict=False)[0]
    image = vae.decode(latents * c)

Use:

    pipe = load_pipeline("path/to/stable-diffusion")      # CPU, float32, local files only
    use_sampler(pipe, "dpm++2m")
    image = pipe("a red cube", num_inference_steps=20, generator=torch.Generator().manual_seed(0)).images[0]

The noise schedule (T, beta_t) and the prediction type come from the folder's own scheduler config; the
timestep spacing and every other convention are the genlab sampler's (diffusers' defaults for that
method, see ``samplers.py``), so e.g. genlab's DDIM differs from Stable Diffusion's shipped DDIM config,
which offsets the steps by one (``steps_offset=1``) and ends on abar_1 (``set_alpha_to_one=False``).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab.errors import ConfigError, DataError, GenlabError
from genlab.families.diffusion.samplers import Sampler, make_sampler
from genlab.families.diffusion.schedule import NoiseSchedule, prediction_from_diffusers_config

INSTALL = "pip install 'genlab[stable-diffusion]'"


@dataclass
class StepOutput:
    """What a diffusers scheduler's ``step`` returns: ``.prev_sample`` (or, with ``return_dict=False``,
    the tuple ``(prev_sample,)``)."""
    prev_sample: torch.Tensor


class SamplerScheduler:
    """A genlab ``Sampler`` behind the scheduler interface of diffusers' ``StableDiffusionPipeline``.

    ``config`` is the scheduler config the pipeline came with (num_train_timesteps, prediction_type, ...),
    plus ``genlab_sampler``: the name of the sampler now in its place."""

    def __init__(self, sampler: Sampler, config: dict[str, Any]):
        from diffusers.configuration_utils import FrozenDict  # the pipeline reads config.x and config["x"]
        self.sampler = sampler
        self.config = FrozenDict({**config, "genlab_sampler": sampler.name})
        self.timesteps = torch.empty(0)
        self.num_inference_steps: int | None = None

    def __repr__(self) -> str:
        return f"SamplerScheduler({self.sampler.name})"

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose the inference steps (and reset the sampler); ``timesteps`` go to ``device`` for the U-Net."""
        self.sampler.set_timesteps(num_inference_steps)
        self.num_inference_steps = num_inference_steps
        self.timesteps = self.sampler.timesteps.to(device) if device is not None else self.sampler.timesteps

    @property
    def order(self) -> int:
        """Network evaluations per inference step as the pipeline counts them (its progress bar): 2 for
        Heun, whose ``timesteps`` repeat each inner step, else 1. (Not LMS's multistep order.)"""
        if not self.num_inference_steps:
            return 1
        return math.ceil(len(self.timesteps) / self.num_inference_steps)

    @property
    def init_noise_sigma(self) -> float:
        return self.sampler.init_noise_sigma

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return self.sampler.scale_model_input(sample, timestep)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None,
             return_dict: bool = True) -> StepOutput | tuple[torch.Tensor]:
        """One sampler step x_t -> x_{t'} on the latents."""
        if isinstance(generator, list):
            if len(generator) != 1:
                raise ConfigError("genlab's samplers draw their noise from one torch.Generator, not a list")
            generator = generator[0]
        prev = self.sampler.step(model_output, timestep, sample, generator)
        return StepOutput(prev) if return_dict else (prev,)


def require_diffusers():
    """diffusers and transformers (the optional extra), or a one-line error saying how to install them."""
    try:
        import diffusers
        import transformers  # noqa: F401  (the pipeline's text encoder and tokenizer)
    except ImportError as e:
        raise GenlabError(f"Stable Diffusion pipelines need diffusers and transformers ({e.name} is not "
                          f"installed): {INSTALL}") from None
    return diffusers


def load_pipeline(path: str | Path, device: str | torch.device = "cpu"):
    """``StableDiffusionPipeline.from_pretrained(path)`` from local files only (no download), float32, on
    ``device``, without progress bars. ``path`` is a diffusers pipeline folder (``model_index.json``,
    ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``)."""
    diffusers = require_diffusers()
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (expected a Stable Diffusion pipeline folder in diffusers format)")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ConfigError(f"{folder} is not a diffusers pipeline folder (no model_index.json); write one with "
                          "StableDiffusionPipeline.save_pretrained(DIR)")
    try:
        kind = json.loads(index.read_text()).get("_class_name")
    except (ValueError, AttributeError):
        raise DataError(f"{index}: not a readable JSON object") from None
    if kind != "StableDiffusionPipeline":
        raise ConfigError(f"{folder} holds a {kind or 'pipeline of unknown type'}, not a StableDiffusionPipeline")
    try:
        with _quiet_loading():
            pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
            if any(p.dtype != torch.float32 for c in pipe.components.values()
                   if isinstance(c, torch.nn.Module) for p in c.parameters()):   # e.g. a float16 checkpoint
                pipe = pipe.to(dtype=torch.float32)
    except Exception as e:   # a user's folder: missing components, bad weights, configs of another version...
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{folder}: cannot load the Stable Diffusion pipeline ({type(e).__name__}: {first})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@contextmanager
def _quiet_loading():
    """No per-component progress bars or advice (e.g. to install accelerate) from diffusers and
    transformers while a pipeline loads: a failure then reads as one line."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def scheduler_config(pipe) -> dict[str, Any]:
    """The pipeline's own scheduler config (kept when a genlab sampler has taken the scheduler's place)."""
    return {k: v for k, v in dict(pipe.scheduler.config).items() if k != "genlab_sampler"}


def use_sampler(pipe, name: str, **options) -> SamplerScheduler:
    """Put genlab's sampler ``name`` in place of the pipeline's scheduler, on the schedule and prediction
    type of the pipeline's scheduler config; ``options`` go to the sampler (e.g. ``eta=0.5`` for DDIM)."""
    config = scheduler_config(pipe)
    schedule = NoiseSchedule.from_diffusers_config(config)
    sampler = make_sampler(name, schedule, prediction=prediction_from_diffusers_config(config), **options)
    pipe.scheduler = SamplerScheduler(sampler, config)
    return pipe.scheduler
