"""Positional information for attention, which by itself ignores order (Vaswani et al. 2017, Sec. 3.5).

Self-attention is permutation-equivariant: shuffle the input tokens and the outputs shuffle the same
way. A model learns order only when positions enter somewhere. Three ways:

API
---
* ``SinusoidalPositions(dim, max_len=1024)`` -- ``forward(T, offset=0) -> [T, dim]`` fixed vectors added to
  the token embeddings: PE(p, 2i) = sin(p / 10000^(2i/dim)), PE(p, 2i+1) = cos(p / 10000^(2i/dim))
  (Vaswani et al. 2017, "Attention Is All You Need", Sec. 3.5). Grows on demand past ``max_len``.
* ``LearnedPositions(dim, max_len)`` -- ``forward(T, offset=0) -> [T, dim]``, one trained vector per position
  (GPT-2); positions past ``max_len`` raise ``GenlabError``.
* ``Rotary(head_dim, base=10000)`` -- ``forward(x, offset=0)`` rotates queries or keys ``[B, nh, T, hs]``:
  each pair of coordinates (x_j, x_{j+hs/2}) at position p is turned by the angle p * theta_j,
  theta_j = base^(-2j/hs) (Su et al. 2021, "RoFormer", Eq. 34, with the pairs split in halves instead of
  interleaved, a fixed permutation of the head's coordinates). Rotations keep norms, and
  <R_m q, R_n k> depends on m - n only (RoFormer Eq. 16), so attention sees relative positions.
"""
from __future__ import annotations

import torch
from torch import nn

from genlab.errors import GenlabError


def sinusoidal_table(n: int, dim: int, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """The [n, dim] table of Vaswani et al. 2017, Sec. 3.5 for positions offset .. offset+n-1."""
    pos = torch.arange(offset, offset + n, dtype=torch.float32)[:, None]        # [n, 1]
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)    # [ceil(dim/2)] = 1/10000^(2i/d)
    angles = pos * inv_freq[None, :]                                             # [n, 1] * [1, d/2] -> [n, d/2]
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors (Vaswani et al. 2017, Sec. 3.5), added to the embeddings."""

    def __init__(self, dim: int, max_len: int = 1024):
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > len(self.table):
            self.table = sinusoidal_table(2 * (offset + T), self.dim).to(self.table.device)
        return self.table[offset: offset + T]


class LearnedPositions(nn.Module):
    """One learned vector per position up to ``max_len`` (Radford et al. 2018/2019, GPT / GPT-2)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, dim)

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > self.max_len:
            raise GenlabError(f"position {offset + T - 1} is past the model's context of {self.max_len} tokens; "
                              f"use a shorter input or a model with positions 'rotary' or 'sinusoidal'")
        return self.embedding.weight[offset: offset + T]


def rotary_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Angles p * theta_j, theta_j = base^(-2j/hs), j < hs/2 (RoFormer Eq. 15): [T] -> [T, hs/2]."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    return positions.float()[:, None] * inv_freq[None, :]                       # [T, 1] * [1, hs/2] -> [T, hs/2]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_j, x_{j+hs/2}) by the angle whose cos/sin are given (RoFormer Eq. 34).

    x: [..., T, hs]; cos, sin: [T, hs/2]. Returns [..., T, hs].
    """
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]                                              # [..., T, hs] -> 2 x [..., T, hs/2]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)         # 2 x [..., T, hs/2] -> [..., T, hs]


class Rotary(nn.Module):
    """Rotary position embedding for queries and keys (Su et al. 2021, RoFormer, Eq. 34)."""

    def __init__(self, head_dim: int, base: float = 10000.0, max_len: int = 1024):
        super().__init__()
        if head_dim % 2:
            raise GenlabError(f"rotary positions need an even head size, got {head_dim}; "
                              f"choose n_embd / n_head even")
        self.head_dim, self.base = head_dim, base
        self._build(max_len, torch.device("cpu"))

    def _build(self, n: int, device) -> None:
        angles = rotary_angles(torch.arange(n, device=device), self.head_dim, self.base)   # [n, hs/2]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.shape[-2]
        if offset + T > len(self.cos):
            self._build(2 * (offset + T), self.cos.device)
        cos = self.cos[offset: offset + T].to(x.dtype)
        sin = self.sin[offset: offset + T].to(x.dtype)
        return apply_rotary(x, cos, sin)
