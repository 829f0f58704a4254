"""Attention written out: scaled dot-product attention and multi-head attention.

API
---
Masks are boolean and broadcastable to ``[B, nh, Tq, Tk]``; **True means "may attend"** (the convention of
``F.scaled_dot_product_attention``). Every query row must keep at least one key.

* ``attention(q, k, v, mask=None, causal=False, dropout_p=0.0, impl="auto", need_weights=False)``
  -> ``(out, weights)``: q ``[B, nh, Tq, hs]``, k and v ``[B, nh, Tk, hs]``, out ``[B, nh, Tq, hs]``;
  ``weights`` ``[B, nh, Tq, Tk]`` when ``need_weights`` (math path), else ``None``.
  ``impl``: ``"math"`` (the formula below, step by step), ``"sdpa"`` (``F.scaled_dot_product_attention``,
  tested equal), ``"auto"`` (= sdpa); ``need_weights`` always takes the math path. With ``causal`` and
  Tq < Tk (a KV cache holds the first Tk - Tq positions) the queries are the *last* Tq positions.
* ``causal_mask(Tq, Tk)`` -> ``[Tq, Tk]``: query i (position Tk - Tq + i) sees keys j <= Tk - Tq + i.
* ``padding_mask(key_padding)``: ``[B, Tk]`` with True at padding tokens -> ``[B, 1, 1, Tk]`` "may attend".
* ``KVCache()``: keys and values of the positions seen so far, for one attention layer; ``append(k, v)``
  returns all of them; ``len(cache)`` is the number of cached positions; ``reorder(index)`` picks batch
  rows (beam search).
* ``MultiHeadAttention(dim, n_heads, cross=False, kv_dim=None, bias=True, dropout=0.0, qk_norm=False,
  rotary=False)``: ``forward(x, context=None, mask=None, causal=False, cache=None) -> [B, Tq, dim]``.
  Self-attention (``cross=False``) projects q, k, v from ``x``; cross-attention (``cross=True``) projects
  q from ``x`` and k, v from ``context`` ``[B, Tk, kv_dim]`` (with a cache, once: later calls may pass
  ``context=None``). ``rotary`` rotates q and k by their positions (self-attention only; the offset is
  the cache length). ``qk_norm`` RMS-normalizes q and k per head. Set ``record_weights = True`` on a
  module to keep its last attention map in ``.weights`` (for figures; uses the math path).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError
from genlab.nn.norms import RMSNorm
from genlab.nn.positions import Rotary


# ------------------------------------------------------------------ masks
def causal_mask(Tq: int, Tk: int, device=None) -> torch.Tensor:
    """[Tq, Tk] bool: query i, at absolute position Tk - Tq + i, may attend keys j <= Tk - Tq + i."""
    i = torch.arange(Tq, device=device)[:, None] + (Tk - Tq)       # [Tq, 1] absolute query positions
    j = torch.arange(Tk, device=device)[None, :]                    # [1, Tk] key positions
    return j <= i


def padding_mask(key_padding: torch.Tensor) -> torch.Tensor:
    """[B, Tk] bool with True at padding keys -> [B, 1, 1, Tk] bool with True where attention is allowed."""
    return ~key_padding[:, None, None, :]                          # [B, Tk] -> [B, 1, 1, Tk]


def _full_mask(mask, causal: bool, Tq: int, Tk: int, device):
    """One boolean "may attend" mask from an optional user mask and the causal rule, or None."""
    if causal and Tq > 1:
        c = causal_mask(Tq, Tk, device)
        mask = c if mask is None else mask & c
    return mask


# ------------------------------------------------------------------ scaled dot-product attention
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False, dropout_p: float = 0.0, impl: str = "auto",
              need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V (Vaswani et al. 2017, Eq. 1).

    Row i of the output is o_i = sum_j alpha_ij v_j with alpha_ij = exp(q_i.k_j / sqrt(d)) /
    sum_l exp(q_i.k_l / sqrt(d)); masked pairs get score -inf, i.e. alpha_ij = 0.
    """
    if impl not in ("auto", "math", "sdpa"):
        raise ConfigError(f"unknown attention impl {impl!r}; use auto, math or sdpa")
    Tq, Tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    if not need_weights and impl in ("sdpa", "auto"):              # the kernel returns no weights
        if causal and mask is None and Tq == Tk:      # the kernel's own (top-left) causal rule is right here
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
        full = _full_mask(mask, causal, Tq, Tk, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=full, dropout_p=dropout_p), None
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)            # [B, nh, Tq, hs] @ [B, nh, hs, Tk] -> [B, nh, Tq, Tk]
    full = _full_mask(mask, causal, Tq, Tk, q.device)
    if full is not None:
        scores = scores.masked_fill(~full, float("-inf"))
    weights = torch.softmax(scores, dim=-1)                        # alpha_ij, each row sums to 1
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, (weights if need_weights else None)       # [B, nh, Tq, Tk] @ [B, nh, Tk, hs] -> [B, nh, Tq, hs]


# ------------------------------------------------------------------ KV cache
class KVCache:
    """Keys and values ``[B, nh, T, hs]`` of past positions for one attention layer.

    Storage grows by doubling, so appending one position costs O(1) amortized copies.
    """

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.length + k.shape[2]
        if self.k is None or n > self.k.shape[2]:
            cap = max(n, 2 * (self.k.shape[2] if self.k is not None else 0), 16)
            new_k = k.new_empty(*k.shape[:2], cap, k.shape[3])     # [B, nh, cap, hs]
            new_v = v.new_empty(*v.shape[:2], cap, v.shape[3])
            if self.length:
                new_k[:, :, : self.length] = self.k[:, :, : self.length]
                new_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = new_k, new_v
        self.k[:, :, self.length: n] = k
        self.v[:, :, self.length: n] = v
        self.length = n
        return self.k[:, :, :n], self.v[:, :, :n]

    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (in that order), e.g. the surviving beams of a beam search."""
        if self.k is not None:
            self.k, self.v = self.k[index], self.v[index]


# ------------------------------------------------------------------ multi-head attention
class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    (Vaswani et al. 2017, Sec. 3.2.2), with optional rotary positions (Su et al. 2021) and QK-norm
    (Henry et al. 2020, "Query-Key Normalization for Transformers", here with RMSNorm per head)."""

    def __init__(self, dim: int, n_heads: int, cross: bool = False, kv_dim: int | None = None,
                 bias: bool = True, dropout: float = 0.0, qk_norm: bool = False, rotary: bool = False,
                 rotary_base: float = 10000.0, impl: str = "auto"):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"model width {dim} is not divisible by {n_heads} heads; choose a width that is")
        if rotary and cross:
            raise ConfigError("rotary positions apply to self-attention only; use rotary=False for cross-attention")
        self.dim, self.n_heads, self.head_dim = dim, n_heads, dim // n_heads
        self.cross, self.dropout, self.impl = cross, dropout, impl
        if cross:
            self.q_proj = nn.Linear(dim, dim, bias=bias)
            self.kv_proj = nn.Linear(kv_dim or dim, 2 * dim, bias=bias)
        else:
            self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else None
        self.rotary = Rotary(self.head_dim, rotary_base) if rotary else None
        self.record_weights = False
        self.weights: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)   # [B, T, C] -> [B, nh, T, hs]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                causal: bool = False, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        offset = len(cache) if cache is not None else 0
        if self.cross:
            q = self._heads(self.q_proj(x))                                # [B, Tq, C] -> [B, nh, Tq, hs]
            if cache is not None and len(cache):
                k, v = cache.get()                                         # the context's keys, computed once
            else:
                if context is None:
                    raise ConfigError("cross-attention needs a context (the encoder's output)")
                k, v = self.kv_proj(context).split(C, dim=-1)              # [B, Tk, kv_dim] -> 2 x [B, Tk, C]
                k, v = self._heads(k), self._heads(v)                      # [B, Tk, C] -> [B, nh, Tk, hs]
                if self.k_norm is not None:
                    k = self.k_norm(k)
                if cache is not None:
                    k, v = cache.append(k, v)
            if self.q_norm is not None:
                q = self.q_norm(q)
        else:
            q, k, v = self.qkv_proj(x).split(C, dim=-1)                    # [B, T, C] -> 3 x [B, T, C]
            q, k, v = self._heads(q), self._heads(k), self._heads(v)       # [B, T, C] -> [B, nh, T, hs]
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            if self.rotary is not None:
                q, k = self.rotary(q, offset), self.rotary(k, offset)
            if cache is not None:
                k, v = cache.append(k, v)                                  # [B, nh, offset+T, hs]
        p = self.dropout if self.training else 0.0
        impl = "math" if self.record_weights else self.impl
        y, w = attention(q, k, v, mask=mask, causal=causal and not self.cross, dropout_p=p, impl=impl,
                         need_weights=self.record_weights)
        if self.record_weights:
            self.weights = w.detach()
        y = y.transpose(1, 2).reshape(B, T, C)                             # [B, nh, T, hs] -> [B, T, C]
        return self.out_proj(y)
