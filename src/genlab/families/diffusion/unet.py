"""A compact U-Net noise predictor eps_theta(x_t, t, y) for small images (8x8 digits, 28x28 MNIST).

The architecture of Ho et al. 2020 (Sec. 4 and Appendix B: a PixelCNN++-style U-Net with sinusoidal
time embedding, residual blocks, GroupNorm and self-attention at low resolution), cut down for a CPU:
one residual block per resolution, attention only at the lowest one, and an optional class embedding
with an extra "null" class for classifier-free guidance (Ho & Salimans 2022, Sec. 3.2).

    x [B, C, H, W] -> conv_in -> (ResBlock -> Downsample) per level -> ResBlock, Attention, ResBlock
      -> (concat skip -> ResBlock -> Upsample) per level -> GroupNorm, SiLU, conv_out -> [B, C, H, W]

The time t may be fractional (sigma-based samplers evaluate between training steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import field, require


@dataclass
class UNetConfig:
    channels: int = field(32, "width of the first level; level l has channels * mults[l]")
    mults: tuple[int, ...] = field((1, 2, 2), "width multipliers per resolution (28 -> 14 -> 7 for (1, 2, 2))")
    attention: bool = field(True, "self-attention at the lowest resolution")
    heads: int = field(4, "attention heads")
    dropout: float = field(0.0, "dropout inside residual blocks")
    groups: int = field(8, "GroupNorm groups")

    def validate(self):
        require(self.channels > 0 and self.channels % self.groups == 0,
                f"channels ({self.channels}) must be a positive multiple of groups ({self.groups})")
        require(len(self.mults) >= 1 and all(m > 0 for m in self.mults), "mults must be positive integers")
        require(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        require(not self.attention or (self.channels * self.mults[-1]) % self.heads == 0,
                f"the lowest width ({self.channels * self.mults[-1]}) must be a multiple of heads ({self.heads})")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [sin(t w_i), cos(t w_i)], w_i = max_period^(-i / (dim/2)) (Vaswani et al. 2017,
    Sec. 3.5; used for the diffusion time by Ho et al. 2020, Appendix B). t [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().reshape(-1, 1) * freqs.reshape(1, -1)                 # [B, 1] * [1, half] -> [B, half]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)           # [B, half] x 2 -> [B, dim]


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 -> + Linear(embedding) -> GroupNorm -> SiLU -> dropout -> conv3x3, plus a
    (1x1-projected) skip connection (He et al. 2016; Ho et al. 2020, Appendix B)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)                 # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]                                # [B, C] -> [B, C, 1, 1]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, pre-normed, residual."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))                                              # [B, 3C, H, W]
        qkv = qkv.reshape(b, 3, self.heads, c // self.heads, h * w)               # -> [B, 3, nh, hs, HW]
        q, k, v = qkv.permute(1, 0, 2, 4, 3).unbind(0)                            # -> 3 x [B, nh, HW, hs]
        out = F.scaled_dot_product_attention(q, k, v)                             # [B, nh, HW, hs]
        out = out.permute(0, 1, 3, 2).reshape(b, c, h, w)                         # -> [B, C, H, W]
        return x + self.proj(out)


class UNet(nn.Module):
    """eps_theta(x_t, t, y): ``num_classes`` > 0 adds a class embedding with ``num_classes + 1`` rows,
    the last one (index ``num_classes``) being the null token of classifier-free guidance."""

    def __init__(self, cfg: UNetConfig, in_channels: int, num_classes: int = 0):
        super().__init__()
        c, g = cfg.channels, cfg.groups
        emb_dim = 4 * c
        self.base = c
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        widths = [c * m for m in cfg.mults]
        self.conv_in = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        ch = c
        for i, w in enumerate(widths):
            self.down_blocks.append(ResBlock(ch, w, emb_dim, g, cfg.dropout))
            ch = w
            last = i == len(widths) - 1
            self.downsamples.append(nn.Identity() if last else nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch, ch, emb_dim, g, cfg.dropout)
        self.mid_attn = Attention(ch, cfg.heads, g) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, g, cfg.dropout)
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up_blocks.append(ResBlock(ch + w, w, emb_dim, g, cfg.dropout))
            ch = w
            self.upsamples.append(nn.Conv2d(w, widths[i - 1], 3, padding=1) if i > 0 else nn.Identity())
            ch = widths[i - 1] if i > 0 else w
        self.norm_out = nn.GroupNorm(g, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])    # [] or [B] -> [B]
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))          # [B] -> [B, 4c]
        if self.class_emb is not None:
            if y is None:                                                          # unconditional: the null token
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_emb(y)
        h = self.conv_in(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block, up in zip(self.up_blocks, self.upsamples):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:                                    # 7 -> 14 -> 28: nearest x2
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)                            # [B, C+Cs, H, W] -> [B, C', H, W]
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))
