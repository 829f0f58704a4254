"""PixelCNN: an autoregressive model of discrete images with masked convolutions
(van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016, Sec. 3.4-3.5).

Pixels are ordered in raster order (rows top to bottom, left to right; within a pixel, channels in
order). With x_1..x_D the D = C*H*W grey levels of one image, each in {0, ..., L-1}:

  P(x)      = prod_i P(x_i | x_1, ..., x_{i-1})                       (Eq. 1 and 2)
  P(x_i|.)  = softmax(logits_i)[x_i], a 256-way (L-way) categorical    (Sec. 5.3: a discrete softmax)
  NLL(x)    = -sum_i log P(x_i | x_<i)    in nats, exact: no bound, no dequantization
  bpd       = NLL / (D log 2)                                          (van den Oord et al. 2016)

so on 8-bit MNIST (L = 256) ``bpd`` is the exact discrete likelihood in bits/dim; the uniform
distribution scores log2 L = 8 bits/dim.

The conditioning on x_<i only is enforced by masks on the convolution weights (Sec. 3.4, Fig. 2):
mask A (first layer) hides the centre pixel itself, mask B (every later layer) lets a feature at
position i see the features already computed at i. With C > 1 channels, feature maps are split into C
contiguous groups; at the centre, group g sees input groups < g (A) or <= g (B). This plain PixelCNN
has the "blind spot" of stacked masked convolutions (van den Oord et al. 2016b, Gated PixelCNN, Sec. 2.2):
some pixels above-right are never seen; the likelihood stays exact, it is only less sharp.

``--arch gated`` (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
Generation with PixelCNN Decoders", NeurIPS 2016, Sec. 2.1-2.2, Fig. 2) removes the blind spot with two
stacks: a vertical stack whose features at row r see only the rows above r (every column of them within
its reach), and a horizontal stack whose features at (r, c) see row r to the left of c plus, through a
1x1 link, the vertical features at (r, c). Each layer is gated, y = tanh(W_f * x) . sigmoid(W_g * x) (Eq. 2),
and the horizontal stack is residual. Stacked, the dependence region grows as a triangle above and a
segment to the left, with no pixel above-right left out.

Sampling draws one sub-pixel at a time, D forward passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.abilities import LogProb, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.maths.densities import bits_per_dim, categorical_log_likelihood, grey_levels, to_levels
from genlab.model import GenerativeModel, register_model


def causal_mask(out_channels: int, in_channels: int, kernel: int, data_channels: int, kind: str) -> torch.Tensor:
    """The {0,1} mask [out, in, k, k] of a masked convolution (van den Oord et al. 2016, Fig. 2).

    Positions after the centre in raster order are hidden; positions before it are visible to every
    channel; at the centre, output group g = o * C // out sees input group h = i * C // in only when
    h < g (kind "A") or h <= g (kind "B")."""
    if kind not in ("A", "B"):
        raise ValueError(f"mask kind must be 'A' or 'B', got {kind!r}")
    c = kernel // 2
    mask = torch.ones(out_channels, in_channels, kernel, kernel)
    mask[:, :, c, c + 1:] = 0
    mask[:, :, c + 1:, :] = 0
    g_out = torch.arange(out_channels) * data_channels // out_channels
    g_in = torch.arange(in_channels) * data_channels // in_channels
    seen = (g_in[None, :] < g_out[:, None]) if kind == "A" else (g_in[None, :] <= g_out[:, None])
    mask[:, :, c, c] = seen.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose weights are multiplied by :func:`causal_mask` on every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, data_channels: int, kind: str):
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(out_channels, in_channels, kernel, data_channels, kind))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class MaskedResidualBlock(nn.Module):
    """h -> h + 1x1(ReLU(kxk mask B(ReLU(h)))): the residual block of Sec. 3.5 / Fig. 5, one conv shorter."""

    def __init__(self, channels: int, kernel: int, data_channels: int):
        super().__init__()
        self.conv = MaskedConv2d(channels, channels, kernel, data_channels, "B")
        self.mix = MaskedConv2d(channels, channels, 1, data_channels, "B")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mix(F.relu(self.conv(F.relu(h))))


def gate(h: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) of the two halves [a; b] of the feature maps (van den Oord et al. 2016b, Eq. 2)."""
    a, b = h.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


class VerticalConv(nn.Module):
    """The vertical stack's convolution: output row r sees input rows r - k//2 .. r - 1 (``first``: the image)
    or r - k//2 .. r (later layers, whose inputs at row r already see only rows above r), columns c +- k//2.
    A (k//2 [+ 1]) x k kernel on the input padded k//2 rows at the top, so the stack never sees row r
    itself and needs no shift (van den Oord et al. 2016b, Sec. 2.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, first: bool):
        super().__init__()
        self.top = kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel // 2 + (0 if first else 1), kernel),
                              padding=(0, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 0, self.top, 0)))[:, :, : x.shape[2]]   # first: H + 1 rows -> H


class HorizontalConv(nn.Module):
    """The horizontal stack's 1 x (k//2 + 1) convolution: output (r, c) sees row r, columns c - k//2 .. c;
    at column c itself only the channel groups :func:`causal_mask` allows (kind "A" on the image hides
    pixel (r, c); "B" on features that already exclude it). ``halves=2``: the output maps are the two
    halves [a; b] of a gate, each with the full group structure."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, data_channels: int, kind: str,
                 halves: int = 1):
        super().__init__()
        self.left = kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (1, kernel // 2 + 1))
        mask = torch.ones(out_channels, in_channels, 1, kernel // 2 + 1)
        centre = causal_mask(out_channels // halves, in_channels, 1, data_channels, kind)   # [out/halves, in, 1, 1]
        mask[..., -1:] = centre.repeat(halves, 1, 1, 1)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.left, 0, 0, 0)), self.conv.weight * self.mask, self.conv.bias)


class GatedBlock(nn.Module):
    """One layer of the gated PixelCNN (van den Oord et al. 2016b, Fig. 2), p feature maps per stack:

      v' = W_v * v                          (VerticalConv, 2p maps)
      h' = W_h * h + W_link v'              (HorizontalConv, 2p maps, plus the 1x1 vertical-to-horizontal link)
      v_out = gate(v'),   h_out = h + W_o gate(h')      (W_o 1x1; no residual in the first layer)"""

    def __init__(self, in_channels: int, p: int, kernel: int, data_channels: int, first: bool):
        super().__init__()
        self.first = first
        self.vertical = VerticalConv(in_channels, 2 * p, kernel, first)
        self.horizontal = HorizontalConv(in_channels, 2 * p, kernel, data_channels, "A" if first else "B", halves=2)
        self.link = nn.Conv2d(2 * p, 2 * p, 1)      # vertical features see only rows above: no mask needed
        self.out = MaskedConv2d(p, p, 1, data_channels, "B")

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.vertical(v)
        h_out = self.out(gate(self.horizontal(h) + self.link(v)))
        return gate(v), h_out if self.first else h + h_out


class GatedStack(nn.Module):
    """Image -> gated layers (the first with ``first_kernel`` and mask A) -> ReLU, 1x1, ReLU, 1x1 logits
    from the horizontal stack, as the plain network's head."""

    def __init__(self, data_channels: int, p: int, layers: int, kernel: int, first_kernel: int, out_channels: int):
        super().__init__()
        c = data_channels
        self.blocks = nn.ModuleList([GatedBlock(c, p, first_kernel, c, first=True)]
                                    + [GatedBlock(p, p, kernel, c, first=False) for _ in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), MaskedConv2d(p, p, 1, c, "B"), nn.ReLU(),
                                  MaskedConv2d(p, out_channels, 1, c, "B"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = x
        for block in self.blocks:
            v, h = block(v, h)
        return self.head(h)


@dataclass
class PixelCNNConfig:
    arch: Literal["plain", "gated"] = field(
        "plain", "plain: masked convolutions (van den Oord et al. 2016a, with a blind spot); gated: vertical and "
        "horizontal stacks of gated layers, no blind spot (van den Oord et al. 2016b)")
    channels: int = field(64, "hidden feature maps (a multiple of the image's channels); gated: per stack")
    layers: int = field(5, "layers after the first type-A one: masked residual blocks (plain) or gated layers (gated)")
    kernel: int = field(3, "kernel size k of the later layers (odd); gated: (k//2+1) x k vertical, 1 x (k//2+1) "
                        "horizontal")
    first_kernel: int = field(7, "kernel size of the first (type A) layer (odd)")

    def validate(self):
        require(self.channels > 0, f"channels must be positive, got {self.channels}")
        require(self.layers >= 0, f"layers must be >= 0, got {self.layers}")
        require(self.kernel % 2 == 1 and self.first_kernel % 2 == 1 and self.first_kernel >= 3,
                f"kernel sizes must be odd (first_kernel >= 3), got {self.kernel} and {self.first_kernel}")


@register_model("pixelcnn", PixelCNNConfig,
                "PixelCNN: masked convolutions (--arch gated: gated stacks, no blind spot), a 256-way (L-way) "
                "softmax per pixel, exact discrete NLL / bpd",
                data_defaults={"view": "continuous"},
                abilities={Samples, LogProb}, data_kinds=("image",))
class PixelCNN(GenerativeModel):
    """log P(x) = sum_i log softmax(logits_i(x_<i))[x_i] over the grey levels of an image."""

    CONTRACT = {"model_options": {"channels": 8, "layers": 1}, "data": "digits", "data_options": {"limit": 64}}

    def __init__(self, config: PixelCNNConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        if data_info.kind != "image" or len(data_info.shape) != 3:
            raise ConfigError("pixelcnn models images with grey levels; choose an image dataset (e.g. --data digits)")
        self.levels = grey_levels(data_info)
        c, self.height, self.width = data_info.shape
        self.data_channels = c
        if config.channels % c:
            raise ConfigError(f"pixelcnn: --channels must be a multiple of the image's {c} channels")
        if config.arch == "gated":
            self.net = GatedStack(c, config.channels, config.layers, config.kernel, config.first_kernel,
                                  c * self.levels)
        else:
            self.net = nn.Sequential(
                MaskedConv2d(c, config.channels, config.first_kernel, c, "A"),
                *[MaskedResidualBlock(config.channels, config.kernel, c) for _ in range(config.layers)],
                nn.ReLU(),
                MaskedConv2d(config.channels, config.channels, 1, c, "B"),
                nn.ReLU(),
                MaskedConv2d(config.channels, c * self.levels, 1, c, "B"))

    # ---------------------------------------------------------------- the likelihood
    def logits(self, k: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, C, H, W] of P(x_i | x_<i) for every sub-pixel i, from levels k [B, C, H, W]."""
        h = self.net(2 * k / (self.levels - 1) - 1)                       # levels scaled to [-1, 1]
        b, _, height, width = h.shape
        return h.view(b, self.data_channels, self.levels, height, width).transpose(1, 2)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log P(x) in nats [B]: the exact probability of the discrete image (Eq. 1)."""
        k = to_levels(x, self.data_info)
        return categorical_log_likelihood(k, self.logits(k))

    def loss(self, batch, phase="main"):
        nll = -self.log_prob(batch[0])
        loss = nll.mean()
        return loss, {"bpd": bits_per_dim(loss.detach(), self.data_info.shape)}

    def eval_metrics(self, batch, **options):
        """Per-example [B]: ``nll_nats`` = -log P(x) (exact) and ``bpd`` = nll / (D log 2)."""
        nll = -self.log_prob(batch[0]).detach()
        return {"nll_nats": nll, "bpd": bits_per_dim(nll, self.data_info.shape)}

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Ancestral sampling in raster order, one sub-pixel per forward pass; images in [0, 1]."""
        device = next(self.parameters()).device
        k = torch.zeros(n, self.data_channels, self.height, self.width, device=device)
        for row in range(self.height):
            for col in range(self.width):
                for ch in range(self.data_channels):
                    logits = self.logits(k)[:, :, ch, row, col]
                    k[:, ch, row, col] = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1).float()
        return k / (self.levels - 1)
