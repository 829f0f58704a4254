"""Greedy and batched beam-search decoding over an abstract next-token step function.

The decoders only see ``step(prefix, rows) -> log_probs``: ``prefix`` is a ``[N, t]`` LongTensor of
the tokens chosen so far (starting with ``<bos>``), ``rows`` a ``[N]`` LongTensor saying which source
sentence of the batch each prefix belongs to, and the result ``[N, V]`` holds
log p(y_t | y_<t, x_row). A model binds its encoder memory into ``step``; the decoders never touch it.

Beam search keeps the K best prefixes of every sentence (Sutskever, Vinyals and Le 2014; Graves 2012)
and ranks finished hypotheses by log p(Y|X) / lp(Y) with the length penalty of Wu et al. 2016
(GNMT), Eq. 14: lp(Y) = ((5 + |Y|) / 6)^alpha, alpha = ``length_penalty`` (0 ranks by log p alone).
A sentence stops once K hypotheses have finished (each step finalizes the candidates ending in
``<eos>`` that rank among the K best); with K = 1 this is exactly greedy decoding. A step object
with a ``reorder(index)`` method (e.g. one holding a KV cache) is told which rows survive each step.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def length_penalty(length: int | torch.Tensor, alpha: float):
    """Wu et al. 2016, Eq. 14: lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy_decode(step: StepFn, batch_size: int, bos: int, eos: int, max_len: int,
                  device=None) -> list[list[int]]:
    """The argmax token at every step until ``<eos>`` (excluded from the output) or ``max_len`` tokens."""
    prefix = torch.full((batch_size, 1), bos, dtype=torch.long, device=device)
    rows = torch.arange(batch_size, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = step(prefix, rows).argmax(-1)                  # [B]
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        prefix = torch.cat([prefix, nxt[:, None]], dim=1)   # [B, t] -> [B, t+1]
        done |= nxt == eos
        if bool(done.all()):
            break
    return [_strip(seq[1:].tolist(), eos) for seq in prefix]


def _strip(seq: list[int], eos: int) -> list[int]:
    return seq[: seq.index(eos)] if eos in seq else seq


@torch.no_grad()
def beam_search(step: StepFn, batch_size: int, bos: int, eos: int, max_len: int, beam: int = 4,
                alpha: float = 0.6, device=None, return_scores: bool = False):
    """The best hypothesis of each sentence under log p / lp (Wu et al. 2016, Eq. 14), batched.

    All B x K live prefixes go through ``step`` together. Returns token lists without ``<bos>``/``<eos>``
    (and their penalized scores when ``return_scores``).
    """
    B, K = batch_size, beam
    prefix = torch.full((B * K, 1), bos, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device).repeat_interleave(K)            # [B*K]
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0                                                     # one live beam at the start
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    active = torch.ones(B, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logp = step(prefix, rows).float()                                  # [B*K, V]
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(B, K, V)).view(B, K * V)    # [B*K, V] -> [B, K*V]
        top, idx = cand.topk(min(2 * K, K * V), dim=1)                     # [B, 2K]
        src_beam, token = idx // V, idx % V
        new_scores = torch.full((B, K), float("-inf"), device=device)
        new_src = torch.zeros((B, K), dtype=torch.long, device=device)
        new_tok = torch.full((B, K), eos, dtype=torch.long, device=device)
        top_l, sb_l, tok_l = top.tolist(), src_beam.tolist(), token.tolist()
        for b in range(B):
            if not active[b]:
                continue
            k = 0
            for rank, (s, sb, tok) in enumerate(zip(top_l[b], sb_l[b], tok_l[b])):
                if s == float("-inf"):
                    break
                if tok == eos:
                    if rank < K:   # an <eos> among the K best candidates ends a hypothesis
                        hyp = prefix[b * K + sb, 1:].tolist()
                        finished[b].append((s / length_penalty(len(hyp) + 1, alpha), hyp))
                    continue
                if k < K:
                    new_scores[b, k], new_src[b, k], new_tok[b, k] = s, sb, tok
                    k += 1
            if len(finished[b]) >= K or k == 0:
                active[b] = False
        if not bool(active.any()):
            break
        base = (torch.arange(B, device=device) * K)[:, None]               # [B, 1]
        order = (base + new_src).view(-1)                                  # [B, K] -> [B*K]
        prefix = torch.cat([prefix[order], new_tok.view(-1, 1)], dim=1)    # [B*K, t] -> [B*K, t+1]
        if hasattr(step, "reorder"):   # a step with a KV cache follows its beams
            step.reorder(order)
        scores = torch.where(active[:, None], new_scores, torch.full_like(new_scores, float("-inf")))
    # sentences still running at max_len: their live beams count as finished
    for b in range(B):
        if active[b] or not finished[b]:
            for k in range(K):
                s = float(scores[b, k])
                if s > float("-inf"):
                    hyp = prefix[b * K + k, 1:].tolist()
                    finished[b].append((s / length_penalty(len(hyp), alpha), hyp))
    best = [max(f, key=lambda h: h[0]) if f else (float("-inf"), []) for f in finished]
    out = [_strip(h, eos) for _, h in best]
    return (out, [s for s, _ in best]) if return_scores else out
