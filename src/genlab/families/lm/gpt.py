"""GPT: a decoder-only transformer language model (Radford et al. 2018/2019), as nanoGPT lays it out.

p(x_1 .. x_T) = prod_t p(x_t | x_<t) (Radford et al. 2018, Eq. 1). Tokens are embedded, positions added (learned,
sinusoidal) or rotated into the attention (rotary), ``n_layer`` causal :class:`DecoderBlock` s mix them, and a
linear head -- tied to the token embedding (Press & Wolf 2017) -- gives logits W h_t, so that
p_theta(x_{t+1} | x_<=t) = softmax(W h_t). Training is teacher-forced on shifted targets
(:func:`genlab.families.lm.sampling.token_nll`); generation feeds the model its own samples, reusing the keys
and values of past positions (a KV cache) so each new token costs one position's work while the context fits
the block (past it, the sliding window is rerun: see ``generate``).

API
---
* ``GPTConfig`` -- shapes and switches (all are CLI flags).
* ``GPT(cfg, vocab_size)``: ``forward(idx [B, T], caches=None) -> logits [B, T, V]``;
  ``new_caches()`` -> one :class:`LayerCache` per block; ``generate(idx, n, temperature=1.0, top_k=None,
  top_p=None, generator=None, use_cache=True) -> [B, T + n]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.config import field, require
from genlab.families.lm.sampling import check_decoding, next_token
from genlab.nn.norms import make_norm
from genlab.nn.positions import LearnedPositions, SinusoidalPositions
from genlab.nn.transformer import BlockConfig, DecoderBlock, LayerCache


@dataclass
class GPTConfig:
    n_layer: int = field(4, "transformer blocks")
    n_head: int = field(4, "attention heads per block")
    n_embd: int = field(128, "model width (embedding size)")
    block_size: int = field(64, "context length in tokens (training windows and the attention span)")
    dropout: float = field(0.0, "dropout on attention weights and residual branches")
    bias: bool = field(False, "biases in linear layers and LayerNorm (nanoGPT: no)")
    positions: Literal["learned", "sinusoidal", "rotary", "none"] = field(
        "learned", "position information: learned vectors, sinusoids, rotary q/k, or none")
    norm: Literal["pre", "post"] = field("pre", "normalize before each sublayer (pre) or after the residual sum (post)")
    norm_type: Literal["layernorm", "rmsnorm"] = field("layernorm", "normalization layer")
    activation: Literal["gelu", "relu", "relu2"] = field("gelu", "MLP activation (relu2: ReLU squared)")
    mlp_ratio: float = field(4.0, "MLP hidden width / model width")
    qk_norm: bool = field(False, "RMS-normalize queries and keys per head")
    tie_weights: bool = field(True, "share the token embedding and the output head")
    zero_init: bool = field(False, "zero the residual output projections (and an untied head) at init")
    init_std: float = field(0.02, "std of the normal initialization of weights")

    def validate(self):
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        require(self.n_embd % self.n_head == 0,
                f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        require(self.positions != "rotary" or (self.n_embd // self.n_head) % 2 == 0,
                "rotary positions need an even head size n_embd / n_head")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.mlp_ratio > 0 and self.init_std > 0, "mlp_ratio and init_std must be positive")

    def block_config(self) -> BlockConfig:
        return BlockConfig(self.n_embd, self.n_head, mlp_ratio=self.mlp_ratio, dropout=self.dropout,
                           activation=self.activation, norm=self.norm, norm_type=self.norm_type,
                           bias=self.bias, qk_norm=self.qk_norm, rotary=self.positions == "rotary")


class GPT(nn.Module):
    """Token embedding (+ positions) -> causal decoder blocks -> final norm -> tied linear head."""

    def __init__(self, cfg: GPTConfig, vocab_size: int):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.tok_emb = nn.Embedding(vocab_size, cfg.n_embd)
        if cfg.positions == "learned":
            self.pos_emb: nn.Module | None = LearnedPositions(cfg.n_embd, cfg.block_size)
        elif cfg.positions == "sinusoidal":
            self.pos_emb = SinusoidalPositions(cfg.n_embd, cfg.block_size)
        else:
            self.pos_emb = None                         # rotary lives inside attention; "none" has no positions
        self.drop = nn.Dropout(cfg.dropout)
        block_cfg = cfg.block_config()
        self.blocks = nn.ModuleList(DecoderBlock(block_cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg.norm_type, cfg.n_embd, cfg.bias) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight      # Press & Wolf 2017: one matrix embeds and predicts

    def _init_weights(self) -> None:
        """nanoGPT's init: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layer)
        (GPT-2, Radford et al. 2019, Sec. 2.3); or zero residual projections with ``zero_init``."""
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
        for blk in self.blocks:
            if self.cfg.zero_init:
                blk.zero_init_()
            else:
                for lin in (blk.attn.out_proj, blk.mlp.proj):
                    nn.init.normal_(lin.weight, 0.0, std / math.sqrt(2 * self.cfg.n_layer))
        if self.cfg.zero_init and not self.cfg.tie_weights:
            nn.init.zeros_(self.head.weight)

    def new_caches(self) -> list[LayerCache]:
        return [LayerCache() for _ in self.blocks]

    def forward(self, idx: torch.Tensor, caches: list[LayerCache] | None = None) -> torch.Tensor:
        """Logits of the next token after every prefix: [B, T] -> [B, T, V]. With ``caches`` ``idx`` holds
        only the new positions; the cached ones come first."""
        B, T = idx.shape
        offset = len(caches[0].self_attn) if caches else 0
        x = self.tok_emb(idx)                                                     # [B, T] -> [B, T, C]
        if self.pos_emb is not None:
            x = x + self.pos_emb(T, offset)                                      # [B, T, C] + [T, C]
        x = self.drop(x)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cache=caches[i] if caches else None)
        return self.head(self.norm_f(x))                                          # [B, T, C] -> [B, T, V]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, n: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Append ``n`` sampled tokens to ``idx`` [B, T0] -> [B, T0 + n].

        Each token is drawn from p(x_t | the last ``block_size`` tokens), as in nanoGPT: the model only
        ever sees windows of ``block_size`` positions numbered 0 .. block_size - 1, as in training. Without
        a cache every step reruns the window (O(T^2) attention work per token); with a cache a step runs
        one position while the context fits the block. Past the block the window slides and every step
        reruns it, cache or not: when the oldest token leaves the window, the hidden state of every
        token in it changes from the first block on (each attended to the one that left), so the cached
        keys and values of all layers but the first no longer belong to the window. A rolling cache of
        rotary keys would keep relative offsets right but still hold those stale deeper keys (a different
        model, the stacked sliding windows of Beltagy et al. 2020); learned positions also renumber the
        window. The cache is therefore exact -- equal to the uncached path at every step -- and speeds up
        the first ``block_size - T0`` tokens.
        """
        check_decoding(temperature, top_k, top_p)
        bs = self.cfg.block_size
        out = idx
        caches = self.new_caches() if use_cache else None
        logits = self(out[:, -bs:], caches)[:, -1]                               # [B, T, V] -> [B, V]
        for step in range(n):
            tok = next_token(logits, temperature, top_k, top_p, generator)      # [B]
            out = torch.cat([out, tok[:, None]], dim=1)                           # [B, T] -> [B, T+1]
            if step == n - 1:
                break
            if caches is not None and len(caches[0].self_attn) < bs:          # the context still fits the block
                logits = self(tok[:, None], caches)[:, -1]                        # [B, 1] -> [B, 1, V] -> [B, V]
            else:                                                                 # the window slides: rerun it
                caches = None
                logits = self(out[:, -bs:])[:, -1]                               # [B, bs, V] -> [B, V]
        return out
        caches = self.new_caches()
        logits = self(out[:, -bs:], caches)[:, -1]
        for step in range(n):
            tok = next_token(logits, temperature, top_k, top_p, generator)      # [B]
            out = torch.cat([out, tok[:, None]], dim=1)                           # [B, T] -> [B, T+1]
            if step == n - 1:
                break
            if len(caches[0].self_attn) >= bs:
                caches = self.new_caches()
                logits = self(out[:, -max(bs // 2, 1):], caches)[:, -1]
            else:
                logits = self(tok[:, None], caches)[:, -1]                        # [B, 1] -> [B, 1, V] -> [B, V]
        return out
