"""A recurrent language model: embedding -> LSTM or GRU layers -> linear head.

The RNN carries the past in a state h_t = f(h_{t-1}, x_t) (LSTM: Hochreiter & Schmidhuber 1997; GRU:
Cho et al. 2014, Eq. 5-8), so p(x_{t+1} | x_<=t) = softmax(W h_t + b). Training still teacher-forces
shifted targets, but step t must wait for step t-1: O(n) sequential work per sequence, where a
transformer does O(n^2) work in parallel; generation costs O(1) per token (Vaswani et al. 2017, Table 1).

API
---
* ``RNNLMConfig`` -- cell, sizes (all CLI flags).
* ``RNNLM(cfg, vocab_size)``: ``forward(idx [B, T], state=None) -> (logits [B, T, V], state)``;
  ``generate(idx, n, temperature=1.0, top_k=None, top_p=None, generator=None) -> [B, T + n]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.config import field, require
from genlab.families.lm.sampling import check_decoding, next_token


@dataclass
class RNNLMConfig:
    cell: Literal["lstm", "gru"] = field("lstm", "recurrent cell")
    n_layer: int = field(2, "stacked recurrent layers")
    n_embd: int = field(128, "token embedding size")
    hidden: int = field(256, "hidden state size")
    dropout: float = field(0.0, "dropout between layers and before the head")
    block_size: int = field(64, "training window length in tokens (truncated backpropagation through time)")
    tie_weights: bool = field(False, "share embedding and head (projects the state to n_embd first)")

    def validate(self):
        for name in ("n_layer", "n_embd", "hidden", "block_size"):
            require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")


class RNNLM(nn.Module):
    """Embedding -> ``n_layer`` LSTM/GRU layers -> (projection) -> linear head."""

    def __init__(self, cfg: RNNLMConfig, vocab_size: int):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.tok_emb = nn.Embedding(vocab_size, cfg.n_embd)
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn(cfg.n_embd, cfg.hidden, num_layers=cfg.n_layer, batch_first=True,
                       dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.hidden, cfg.n_embd) if cfg.tie_weights else nn.Identity()
        self.head = nn.Linear(cfg.n_embd if cfg.tie_weights else cfg.hidden, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight

    def forward(self, idx: torch.Tensor, state=None):
        x = self.tok_emb(idx)                                         # [B, T] -> [B, T, E]
        h, state = self.rnn(x, state)                                 # [B, T, E] -> [B, T, H]
        return self.head(self.proj(self.drop(h))), state              # [B, T, H] -> [B, T, V]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, n: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``n`` sampled tokens to ``idx`` [B, T0]; the state carries the whole prefix."""
        check_decoding(temperature, top_k, top_p)
        logits, state = self(idx)
        logits = logits[:, -1]
        out = idx
        for step in range(n):
            tok = next_token(logits, temperature, top_k, top_p, generator)
            out = torch.cat([out, tok[:, None]], dim=1)                 # [B, T] -> [B, T+1]
            if step < n - 1:
                logits, state = self(tok[:, None], state)
                logits = logits[:, -1]                                  # [B, 1, V] -> [B, V]
        return out
