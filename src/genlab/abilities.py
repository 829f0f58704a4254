"""What a model can do, as small typed protocols. Eval, figures and the CLI choose by these, never by
a model's name: ``isinstance(model, Samples)``.

A protocol names methods only; a model that has them has the ability.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Samples(Protocol):
    """Draws ``n`` examples in data space: ``sample(n) -> Tensor [n, *shape]``."""
    def sample(self, n: int) -> torch.Tensor: ...


@runtime_checkable
class Encodes(Protocol):
    """Maps data to codes: ``encode(x) -> Tensor [B, latent_dim]`` (the posterior mean for a VAE)."""
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Decodes(Protocol):
    """Maps codes to data space: ``decode(z) -> Tensor [B, *shape]``; ``latent_dim`` is z's size."""
    latent_dim: int

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Reconstructs(Protocol):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasPrior(Protocol):
    """A latent-variable model with a standard-normal prior, so latent grids can use its inverse CDF."""
    def posterior(self, x: torch.Tensor): ...


@runtime_checkable
class LogProb(Protocol):
    """An exact (or exactly computed) log-density: ``log_prob(x) -> Tensor [B]`` in nats."""
    def log_prob(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class HasStages(Protocol):
    """A flow made of discrete stages: ``stages(x) -> list[Tensor]`` (x through each layer)."""
    def stages(self, x: torch.Tensor) -> list[torch.Tensor]: ...


@runtime_checkable
class HasTrajectory(Protocol):
    """A continuous flow: ``trajectory(x, times) -> Tensor [len(times), B, D]`` along its ODE."""
    def trajectory(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class RendersViews(Protocol):
    """A radiance field: ``render_chunks(origins, dirs) -> {"rgb", "depth", "opacity"}`` for rays, and
    ``render_view(pose)`` for a whole camera."""
    def render_chunks(self, o: torch.Tensor, d: torch.Tensor) -> dict: ...

    def render_view(self, pose: torch.Tensor, height: int | None = None, width: int | None = None): ...


@runtime_checkable
class HasAttentionMaps(Protocol):
    """A transformer that can return its attention maps for a batch of tokens."""
    def attention_maps(self, idx: torch.Tensor): ...


def can(model, *protocols) -> bool:
    """True when ``model`` follows every protocol given."""
    return all(isinstance(model, p) for p in protocols)
