"""Transformer blocks shared by the GPT language model and the encoder-decoder translator.

API
---
* ``BlockConfig(dim, n_heads, mlp_ratio=4.0, dropout=0.0, activation="gelu", norm="pre",
  norm_type="layernorm", bias=True, qk_norm=False, rotary=False, kv_dim=None)``
  ``activation``: ``"gelu"`` | ``"relu"`` | ``"relu2"`` (ReLU squared); ``norm``: ``"pre"`` | ``"post"``;
  ``norm_type``: ``"layernorm"`` | ``"rmsnorm"``; ``kv_dim``: width of the cross-attention context
  (default ``dim``).
* ``EncoderBlock(cfg)``: ``forward(x, mask=None) -> x`` -- bidirectional self-attention + MLP.
  ``x`` ``[B, T, dim]``; ``mask`` "may attend" ``[B, 1, 1, T]``, e.g. ``padding_mask(src_pad)``.
* ``DecoderBlock(cfg, cross=False)``: ``forward(x, mask=None, memory=None, memory_mask=None, cache=None)``
  -- causal self-attention, then (``cross=True``) cross-attention to ``memory`` ``[B, S, kv_dim]``, then MLP.
  ``mask`` adds to the causal rule (e.g. target padding); ``memory_mask`` ``[B, 1, 1, S]``.
  ``cache``: a :class:`LayerCache` for incremental decoding (``x`` holds only the new positions).
* ``LayerCache()``: the self-attention and cross-attention :class:`KVCache` of one decoder block.
* ``block.zero_init_()`` zeroes the two output projections that write into the residual stream, so
  each block starts as the identity (modded-nanogpt's "zero-init projections").

Pre-norm (``norm="pre"``, Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture",
Fig. 1b): x + Sublayer(Norm(x)); a stack of pre-norm blocks needs one final norm after the last block.
Post-norm (``norm="post"``, Vaswani et al. 2017, Sec. 5.4): Norm(x + Sublayer(x)), no final norm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError
from genlab.nn.attention import KVCache, MultiHeadAttention
from genlab.nn.norms import make_norm

ACTIVATIONS = ("gelu", "relu", "relu2")


@dataclass
class BlockConfig:
    """Shapes and switches of one transformer block."""
    dim: int
    n_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    activation: str = "gelu"
    norm: str = "pre"
    norm_type: str = "layernorm"
    bias: bool = True
    qk_norm: bool = False
    rotary: bool = False
    kv_dim: int | None = None

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; use one of {', '.join(ACTIVATIONS)}")
        if self.norm not in ("pre", "post"):
            raise ConfigError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.dim % self.n_heads:
            raise ConfigError(f"width {self.dim} is not divisible by {self.n_heads} heads; choose a width that is")


@dataclass
class LayerCache:
    """KV caches of one decoder block: its self-attention and (if any) its cross-attention."""
    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=KVCache)


class MLP(nn.Module):
    """Position-wise feed-forward network W_2 act(W_1 x + b_1) + b_2 (Vaswani et al. 2017, Eq. 2).

    act: GELU (Hendrycks & Gimpel 2016), ReLU, or ReLU^2 (So et al. 2021, "Primer", Sec. 3).
    """

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.dim)
        self.fc = nn.Linear(cfg.dim, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.dim, bias=cfg.bias)
        self.activation = cfg.activation
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)                                        # [B, T, C] -> [B, T, hidden]
        if self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "relu":
            h = F.relu(h)
        else:
            h = F.relu(h).square()
        return self.drop(self.proj(h))                        # [B, T, hidden] -> [B, T, C]


class TransformerBlock(nn.Module):
    """Self-attention (causal or not), optional cross-attention, MLP; each a residual sublayer with
    dropout, normalized before (pre-norm) or after (post-norm) the residual sum."""

    def __init__(self, cfg: BlockConfig, cross: bool = False, causal: bool = False):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.causal = causal
        self.norm1 = make_norm(cfg.norm_type, cfg.dim, cfg.bias)
        self.attn = MultiHeadAttention(cfg.dim, cfg.n_heads, bias=cfg.bias, dropout=cfg.dropout,
                                       qk_norm=cfg.qk_norm, rotary=cfg.rotary)
        if cross:
            self.norm_cross = make_norm(cfg.norm_type, cfg.dim, cfg.bias)
            self.cross_attn = MultiHeadAttention(cfg.dim, cfg.n_heads, cross=True, kv_dim=cfg.kv_dim,
                                                 bias=cfg.bias, dropout=cfg.dropout, qk_norm=cfg.qk_norm)
        else:
            self.cross_attn = None
        self.norm2 = make_norm(cfg.norm_type, cfg.dim, cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, f) -> torch.Tensor:
        if self.pre:
            return x + self.drop(f(norm(x)))                  # Xiong et al. 2020, Fig. 1b
        return norm(x + self.drop(f(x)))                      # Vaswani et al. 2017, Sec. 5.4

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        self_cache = cache.self_attn if cache is not None else None
        x = self._sublayer(x, self.norm1, lambda h: self.attn(h, mask=mask, causal=self.causal, cache=self_cache))
        if self.cross_attn is not None:
            cross_cache = cache.cross_attn if cache is not None else None
            x = self._sublayer(x, self.norm_cross,
                               lambda h: self.cross_attn(h, context=memory, mask=memory_mask, cache=cross_cache))
        return self._sublayer(x, self.norm2, self.mlp)

    def zero_init_(self) -> None:
        """Zero the output projections that write into the residual stream (block starts as identity)."""
        projections = [self.attn.out_proj, self.mlp.proj]
        if self.cross_attn is not None:
            projections.append(self.cross_attn.out_proj)
        for lin in projections:
            nn.init.zeros_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)


class EncoderBlock(TransformerBlock):
    """An encoder layer (Vaswani et al. 2017, Sec. 3.1): bidirectional self-attention + MLP."""

    def __init__(self, cfg: BlockConfig):
        super().__init__(cfg, cross=False, causal=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, mask=mask)


class DecoderBlock(TransformerBlock):
    """A decoder layer (Vaswani et al. 2017, Sec. 3.1): masked (causal) self-attention, cross-attention
    to the encoder's output when ``cross`` (the translator), then MLP. With ``cross=False`` it is a
    GPT block (Radford et al. 2018)."""

    def __init__(self, cfg: BlockConfig, cross: bool = False):
        super().__init__(cfg, cross=cross, causal=True)
