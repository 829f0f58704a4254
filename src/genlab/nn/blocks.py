"""Building blocks shared by the model families."""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from genlab.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.2),
               "tanh": nn.Tanh, "silu": nn.SiLU, "softplus": nn.Softplus}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str = "relu", final_act: str | None = None) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    if final_act:
        layers.append(activation(final_act))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """A small convolutional encoder for MNIST-sized images: three stride-2 stages.

    (C,H,W) -> conv s2 -> conv -> conv s2 -> conv -> conv s2 -> flatten -> linear(out_dim).
    For 28x28 the feature maps are 14, 7, 4; for 8x8 they are 4, 2, 1.
    """

    def __init__(self, in_shape: Sequence[int], out_dim: int, channels: int = 32, act: str = "gelu"):
        super().__init__()
        c, h, w = in_shape
        c2 = 2 * channels
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1, stride=2), activation(act),
            nn.Conv2d(channels, channels, 3, padding=1), activation(act),
            nn.Conv2d(channels, c2, 3, padding=1, stride=2), activation(act),
            nn.Conv2d(c2, c2, 3, padding=1), activation(act),
            nn.Conv2d(c2, c2, 3, padding=1, stride=2), activation(act),
            nn.Flatten(),
        )
        self.feature_shape = (c2, *conv_sizes(h, w)[-1])
        self.head = nn.Linear(math.prod(self.feature_shape), out_dim)

    def forward(self, x):
        return self.head(self.net(x))


def conv_sizes(h: int, w: int, stages: int = 3) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2, padding-1, kernel-3 convolution."""
    sizes = [(h, w)]
    for _ in range(stages):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: linear -> three transposed-conv stages -> (out_channels,H,W).

    Output paddings are chosen so the sizes retrace the encoder's exactly (for 28x28: 4 -> 7 -> 14 -> 28,
    the first transposed convolution having output padding 0).
    """

    def __init__(self, in_dim: int, out_shape: Sequence[int], channels: int = 32, act: str = "gelu"):
        super().__init__()
        c_out, h, w = out_shape
        c2 = 2 * channels
        sizes = conv_sizes(h, w)
        self.start = (c2, *sizes[-1])
        self.linear = nn.Sequential(nn.Linear(in_dim, math.prod(self.start)), activation(act))

        def up(cin, cout, target, source):
            pads = tuple(t - (2 * s - 1) for t, s in zip(target, source))
            return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=pads)

        self.net = nn.Sequential(
            up(c2, c2, sizes[2], sizes[3]), activation(act),
            nn.Conv2d(c2, c2, 3, padding=1), activation(act),
            up(c2, channels, sizes[1], sizes[2]), activation(act),
            nn.Conv2d(channels, channels, 3, padding=1), activation(act),
            up(channels, c_out, sizes[0], sizes[1]),
        )

    def forward(self, z):
        return self.net(self.linear(z).view(-1, *self.start))           # [B, prod(start)] -> [B, *start]


# ----------------------------------------------------------------- encoder / decoder builders
def build_encoder(arch: str, shape: Sequence[int], out_dim: int, hidden: Sequence[int], channels: int,
                  act: str) -> nn.Module:
    """An encoder from examples of ``shape`` to ``out_dim`` values: the small CNN
    (:class:`ConvEncoder`, images (C,H,W) only) or an MLP on the flattened example."""
    shape = tuple(shape)
    if arch == "cnn":
        if len(shape) != 3:
            raise ConfigError(f"arch=cnn needs images (C,H,W); this data has shape {shape}. Use --arch mlp")
        return ConvEncoder(shape, out_dim, channels, act)
    return nn.Sequential(nn.Flatten(), mlp([math.prod(shape), *hidden, out_dim], act))


def build_decoder(arch: str, shape: Sequence[int], in_dim: int, out_channels_per_pixel: int,
                  hidden: Sequence[int], channels: int, act: str) -> nn.Module:
    """A decoder producing ``out_channels_per_pixel`` values per data dimension, shaped
    [B, out_channels_per_pixel * C, H, W] for images (cnn) or [B, out * D] (mlp, reshaped by the model)."""
    shape = tuple(shape)
    if arch == "cnn":
        c, h, w = shape
        return ConvDecoder(in_dim, (out_channels_per_pixel * c, h, w), channels, act)
    return mlp([in_dim, *list(hidden)[::-1], out_channels_per_pixel * math.prod(shape)], act)
