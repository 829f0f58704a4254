"""Greedy and batched beam-search decoding over an abstract next-token step function.

The decoders only see ``step(prefix, rows) -> log_probs``: ``prefix`` is a ``[N, t]`` LongTensor of
the tokens chosen so far (starting with ``<bos>``), ``rows`` a ``[N]`` LongTensor saying which source
sentence of the batch each prefix belongs to, and the result ``[N, V]`` holds
log p(y_t | y_<t, x_row). A model binds its encoder memory into ``step``; the decoders never touch it.

Beam search keeps the K best prefixes of every sentence (Sutskever, Vinyals and Le 2014; Graves 2012)
and ranks finished hypotheses by log p(Y|X) / lp(Y) with the length penalty of Wu et al. 2016
(GNMT), Eq. 14: lp(Y) = ((5 + |Y|) / 6)^alpha, alpha = ``length_penalty`` (0 ranks by log p alone).
A sentence stops once K hypotheses have finished (each step finalizes the candidates ending in
``<eos>`` that rank among the K best); with K = 1 this is exactly greedy decoding. Finished sentences
leave the batch; a step object with a ``reorder(index)`` method (e.g. one holding a KV cache) is told
which rows survive (and in which order) after each step.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def length_penalty(length: int | torch.Tensor, alpha: float):
    """Wu et al. 2016, Eq. 14: lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def _limits(max_len: int | list[int], batch_size: int) -> list[int]:
    """One length limit per sentence (a sentence's output never depends on its batch-mates)."""
    return [int(max_len)] * batch_size if isinstance(max_len, int) else [int(n) for n in max_len]


@torch.no_grad()
def greedy_decode(step: StepFn, batch_size: int, bos: int, eos: int, max_len: int | list[int],
                  device=None) -> list[list[int]]:
    """The argmax token at every step until ``<eos>`` (excluded from the output) or ``max_len`` tokens
    (one limit, or one per sentence). Finished sentences leave the batch (the step is told through
    ``reorder``)."""
    limits = _limits(max_len, batch_size)
    out: list[list[int]] = [[] for _ in range(batch_size)]
    alive = torch.arange(batch_size, device=device)                 # sentence of each row
    prefix = torch.full((batch_size, 1), bos, dtype=torch.long, device=device)
    for _ in range(max(limits, default=0)):
        nxt = step(prefix, alive).argmax(-1)                         # [N]
        running = []
        for r, (b, tok) in enumerate(zip(alive.tolist(), nxt.tolist())):
            if tok != eos:
                out[b].append(tok)
                if len(out[b]) < limits[b]:
                    running.append(r)
        keep = torch.tensor(running, dtype=torch.long, device=device)   # rows still running
        if len(keep) == 0:
            break
        prefix = torch.cat([prefix[keep], nxt[keep, None]], dim=1)   # [N, t] -> [N', t+1]
        alive = alive[keep]
        if len(keep) < len(nxt) and hasattr(step, "reorder"):
            step.reorder(keep)
    return out


@torch.no_grad()
def beam_search(step: StepFn, batch_size: int, bos: int, eos: int, max_len: int | list[int], beam: int = 4,
                alpha: float = 0.6, device=None, return_scores: bool = False):
    """The best hypothesis of each sentence under log p / lp (Wu et al. 2016, Eq. 14), batched.

    The K live prefixes of every unfinished sentence go through ``step`` together; a sentence leaves
    the batch once K of its hypotheses have ended, or when its prefixes reach its length limit
    (``max_len``: one, or one per sentence; its live beams then count as finished). Returns token lists
    without ``<bos>``/``<eos>`` (and their penalized scores when ``return_scores``).
    """
    K = beam
    limits = _limits(max_len, batch_size)
    alive = list(range(batch_size))                                  # unfinished sentences, in row order
    prefix = torch.full((batch_size * K, 1), bos, dtype=torch.long, device=device)
    scores = torch.full((batch_size, K), float("-inf"), device=device)
    scores[:, 0] = 0.0                                               # one live beam per sentence at first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]
    for t in range(1, max(limits, default=0) + 1):
        A = len(alive)
        rows = torch.tensor(alive, device=device).repeat_interleave(K)             # [A*K]
        logp = step(prefix, rows).float()                                          # [A*K, V]
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(A, K, V)).view(A, K * V)            # [A*K, V] -> [A, K*V]
        top, idx = cand.topk(min(2 * K, K * V), dim=1)                             # [A, 2K]
        new_scores = torch.full((A, K), float("-inf"), device=device)
        new_src = torch.zeros((A, K), dtype=torch.long, device=device)
        new_tok = torch.full((A, K), eos, dtype=torch.long, device=device)
        keep = []
        for a, (s_row, i_row) in enumerate(zip(top.tolist(), idx.tolist())):
            b, k = alive[a], 0
            for rank, (s, i) in enumerate(zip(s_row, i_row)):
                if s == float("-inf"):
                    break
                src_beam, tok = divmod(i, V)
                if tok == eos:
                    if rank < K:   # an <eos> among the K best candidates ends a hypothesis
                        hyp = prefix[a * K + src_beam, 1:].tolist()
                        finished[b].append((s / length_penalty(len(hyp) + 1, alpha), hyp))
                    continue
                if k < K:
                    new_scores[a, k], new_src[a, k], new_tok[a, k] = s, src_beam, tok
                    k += 1
            if len(finished[b]) >= K or k == 0:
                continue
            if t >= limits[b]:   # cut at its limit: the live beams (t tokens each) count as finished
                for j in range(k):
                    hyp = prefix[a * K + int(new_src[a, j]), 1:].tolist() + [int(new_tok[a, j])]
                    finished[b].append((float(new_scores[a, j]) / length_penalty(len(hyp), alpha), hyp))
                continue
            keep.append(a)
        if not keep:
            alive = []
            break
        kept = torch.tensor(keep, device=device)
        order = (kept[:, None] * K + new_src[kept]).view(-1)                      # [A', K] -> [A'*K]
        prefix = torch.cat([prefix[order], new_tok[kept].view(-1, 1)], dim=1)    # [A*K, t] -> [A'*K, t+1]
        scores = new_scores[kept]
        alive = [alive[a] for a in keep]
        if hasattr(step, "reorder"):   # a step with a KV cache follows its beams
            step.reorder(order)
    best = [max(f, key=lambda h: h[0]) if f else (float("-inf"), []) for f in finished]
    out = [[tok for tok in h if tok != eos] for _, h in best]
    return (out, [s for s, _ in best]) if return_scores else out
