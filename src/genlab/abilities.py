"""What a model can do, declared by its family and never guessed from its method names.

A family names its model's abilities in its declaration, ``@register_model(..., abilities={Samples,
Encodes, Decodes})``; evaluation, figures and ``genlab sample`` ask ``can(model, Samples)``, which reads
that declaration only. A class with a method called ``sample`` that does not declare ``Samples`` gets no
sample figures and no FID; a class that declares an ability promises the method and the shapes below
(``tests/contract/test_models.py`` checks both on every model of the catalog).

Each ability is a :class:`typing.Protocol`: its methods' signatures and docstrings are the contract (a
model's method may add keyword arguments with defaults). Shapes use ``B`` for a batch and ``*shape`` for
``data_info.shape``, the shape of one example as the data's batches hold it.
"""
from __future__ import annotations

from typing import Protocol

import torch


class Samples(Protocol):
    """Draws from the model's distribution in data space."""

    def sample(self, n: int) -> torch.Tensor:
        """``n`` examples, a finite tensor ``[n, *shape]``: points in the data's coordinates, images in
        [0, 1] (or in quantization levels for a quantized view)."""
        ...


class MeanSamples(Protocol):
    """A latent-variable model whose ``sample(n)`` gives the decoder's mean E[x|z] of each prior draw z (a
    smooth image, what sample figures show) rather than a draw, and whose ``sample(n, draw=True)`` draws
    x ~ p(x|z) in the data's own space (binary pixels for a Bernoulli decoder on binary data). Sample
    quality on binary data (FID) compares such draws with the binary test images."""

    def sample(self, n: int, draw: bool = False) -> torch.Tensor:
        """``n`` examples ``[n, *shape]``: decoder means, or with ``draw`` draws of p(x|z) in data space."""
        ...


class Encodes(Protocol):
    """Maps data to a latent code of ``latent_dim`` numbers (the posterior mean for a VAE, the
    mean angles for a VAE on a torus): not any other summary of the input."""
    latent_dim: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, latent_dim]`` of examples ``x`` ``[B, *shape]``."""
        ...


class Decodes(Protocol):
    """Maps a latent code back to data space, the inverse direction of :class:`Encodes`."""
    latent_dim: int

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The expected example ``[B, *shape]`` (e.g. E[x|z]) of codes ``z`` ``[B, latent_dim]``."""
        ...


class Reconstructs(Protocol):
    """Reconstructs its input through the model (an autoencoder's decode(encode(x)))."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``[B, *shape]`` of examples ``x`` ``[B, *shape]``; images in [0, 1]."""
        ...


class GaussianPrior(Protocol):
    """A latent-variable model whose prior is the standard normal p(z) = N(0, I) over ``latent_dim``
    dimensions (Kingma & Welling 2014, Sec. 3), and whose samples are decoded prior draws: with the same
    random state, ``sample(n)`` equals ``decode(torch.randn(n, latent_dim))``. A latent grid may then
    place its points by the inverse normal CDF of an even grid (Kingma & Welling 2014, Fig. 4b). A model
    with any other prior (uniform on a torus, a learned mixture) does not declare it."""
    latent_dim: int


class LogProb(Protocol):
    """An exact log-density or log-probability (not a bound)."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats, ``[B]``, of examples ``x`` ``[B, *shape]``."""
        ...


class HasStages(Protocol):
    """A flow made of stages (layers, or times along an ODE)."""

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Examples ``x`` ``[B, *shape]`` after each stage: a list of ``[B, ...]`` tensors, the first being
        ``x`` itself (flattened to ``[B, D]`` by a continuous flow)."""
        ...


class HasTrajectory(Protocol):
    """A continuous flow: a neural ODE dz/dt = f(z, t) (Chen et al. 2018)."""

    def trajectory(self, z: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """The solution ``[T, B, D]`` at ``times`` ``[T]`` of the ODE started at ``z`` ``[B, D]`` at
        ``times[0]``."""
        ...


class RendersViews(Protocol):
    """A radiance field rendered by volume rendering (Mildenhall et al. 2020, Eq. 3)."""

    def render_chunks(self, o: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
        """For rays with origins ``o`` and directions ``d`` ``[R, 3]``: ``{"rgb": [R, 3], "depth": [R],
        "opacity": [R]}``."""
        ...

    def render_view(self, pose: torch.Tensor, height: int | None = None,
                    width: int | None = None) -> dict[str, torch.Tensor]:
        """The whole image of a camera-to-world ``pose`` ``[3, 4]`` or ``[4, 4]``: ``{"rgb": [H, W, 3],
        "depth": [H, W], "opacity": [H, W]}`` (the data's camera size unless ``height``/``width``)."""
        ...


class HasAttentionMaps(Protocol):
    """A transformer that exposes its attention weights (Vaswani et al. 2017, Eq. 1)."""

    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """The softmax weights ``[layers, heads, T, T]`` (query rows, key columns) of every block and
        head for one token sequence ``idx`` ``[1, T]``."""
        ...


ABILITIES: tuple[type, ...] = (Samples, MeanSamples, Encodes, Decodes, Reconstructs, GaussianPrior, LogProb, HasStages,
                               HasTrajectory, RendersViews, HasAttentionMaps)


def check_abilities(abilities) -> frozenset[type]:
    """``abilities`` as a frozenset, each one of :data:`ABILITIES` (a TypeError names any other)."""
    out = frozenset(abilities)
    unknown = [a for a in out if a not in ABILITIES]
    if unknown:
        raise TypeError(f"unknown abilities {unknown}: declare classes of genlab.abilities.ABILITIES")
    return out


def declared(model) -> frozenset[type]:
    """The abilities ``model`` (an instance or a class) declares through ``register_model``."""
    return getattr(model, "ABILITIES", frozenset())


def can(model, *abilities: type) -> bool:
    """True when ``model`` declares every ability given (its declaration, never its method names)."""
    return set(abilities) <= declared(model)


def ability_methods(ability: type) -> dict[str, object]:
    """The methods a protocol names (name -> function), to check a model's signatures against."""
    return {k: v for k, v in vars(ability).items() if callable(v) and not k.startswith("_")}


def ability_attributes(ability: type) -> tuple[str, ...]:
    """The attributes a protocol names (e.g. ``latent_dim``)."""
    return tuple(vars(ability).get("__annotations__", {}))
