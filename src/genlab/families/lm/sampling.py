"""Next-token losses and decoding rules shared by the language models.

* ``token_nll(logits, targets) -> [B, T]``: -log p_theta(x_t | x_<t) per token, the teacher-forced loss
  (Williams & Zipser 1989): inputs (x_0 .. x_{T-1}), targets (x_1 .. x_T), L = -sum_t log softmax(W h_t)[x_t].
* ``filter_logits(logits, top_k=None, top_p=None)``: top-k (Fan et al. 2018) and nucleus / top-p
  (Holtzman et al. 2020, Eq. 3) truncation; removed tokens get logit -inf.
* ``next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None) -> [B]``: temperature 0 is
  greedy (argmax), otherwise a draw from softmax(logits / T) after truncation (at inference
  the model's own sample becomes the next input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.errors import ConfigError


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood in nats: [B, T, V], [B, T] -> [B, T]."""
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T),  # [B, T, V] -> [B*T, V]
                          reduction="none")
    return nll.view(B, T)                                                           # [B*T] -> [B, T]


def check_decoding(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"top-p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Keep the k most likely tokens and/or the smallest set whose probability reaches p; [B, V] -> [B, V]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]                    # [B, 1] k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs                                # mass of strictly better tokens
        drop_sorted = before >= top_p                                               # the top token is always kept
        drop = drop_sorted.scatter(-1, order, drop_sorted)                          # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` [B, V] -> [B]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)             # [B, 1] -> [B]
